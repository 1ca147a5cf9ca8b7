// The GGUF container of llama.cpp: a header, typed metadata (key -> value), tensor records
// (name, dims, ggml type, offset) and an aligned data section. Read through mmap like
// safetensors; every count, length and offset is checked against the file before use.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/mmap.h"
#include "formats/tensor_ref.h"

namespace whale {

// A metadata value. Arrays hold one element type; strings are byte strings.
struct GgufValue {
  enum Type : uint32_t {
    U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7, STRING = 8, ARRAY = 9, U64 = 10, I64 = 11,
    F64 = 12,
  };
  Type type = U32;
  Type elem_type = U32;  // for arrays
  std::variant<int64_t, uint64_t, double, bool, std::string> scalar;
  std::vector<GgufValue> array;

  bool is_integer() const;
  bool is_number() const;
  int64_t as_int() const;      // throws unless an integer that fits
  double as_double() const;    // throws unless a number
  const std::string& as_string() const;
};

// ggml type ids and whale dtypes.
bool dtype_from_ggml(uint32_t ggml_type, DType* out);
uint32_t ggml_type_of(DType t);  // throws for types GGUF cannot hold

class GgufFile {
 public:
  // A file, or the first part of a split set (PREFIX-00001-of-0000N.gguf, llama-gguf-split):
  // then every part is opened and their tensors are one list.
  static std::unique_ptr<GgufFile> open(const std::string& path, LoadMode mode = LoadMode::kMap);
  // Parses an in-memory image (for fuzzing); tensors point into `data`.
  static std::unique_ptr<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);

  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(const std::string& key) const;
  const GgufValue& get(const std::string& key) const;  // throws, naming the key and file
  const std::vector<TensorRef>& tensors() const { return tensors_; }
  const TensorRef* tensor(const std::string& name) const;
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t file_size() const;  // bytes of the mapped file(s) (0 for an in-memory image)
  bool copied() const;       // the file was copied into memory rather than mapped

 private:
  std::string path_;
  void open_split_parts(LoadMode mode);

  std::unique_ptr<MappedFile> map_;
  std::vector<std::unique_ptr<MappedFile>> parts_;  // a split set's parts after the first
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::vector<TensorRef> tensors_;
  std::map<std::string, size_t> by_name_;
};

// Writes GGUF v3 files: metadata in insertion order, then tensors streamed one at a time.
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue value);
  void set_u32(const std::string& key, uint32_t v);
  void set_i32(const std::string& key, int32_t v);
  void set_f32(const std::string& key, float v);
  void set_bool(const std::string& key, bool v);
  void set_string(const std::string& key, const std::string& v);
  void set_string_array(const std::string& key, const std::vector<std::string>& v);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& v);
  void set_f32_array(const std::string& key, const std::vector<float>& v);

  // shape in PyTorch order (outermost first), like TensorRef.
  void add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape);
  // fill(i, buf) writes the bytes of the i-th added tensor. Written atomically.
  void write(const std::string& path, const std::function<void(size_t, uint8_t*)>& fill) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  struct Info {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t bytes;
  };
  std::vector<Info> tensors_;
};

bool is_gguf_file(const std::string& path);  // a regular file starting with the GGUF magic

}  // namespace whale
