#include "formats/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <regex>
#include <unistd.h>

#include "core/error.h"

namespace whale {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint64_t kMaxCount = 1 << 24;  // tensors, metadata entries, array elements
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS

struct GgmlTypeEntry {
  uint32_t id;
  DType dtype;
};
constexpr GgmlTypeEntry kGgmlTypes[] = {
    {0, DType::F32}, {1, DType::F16}, {2, DType::Q4_0}, {6, DType::Q5_0}, {8, DType::Q8_0}, {12, DType::Q4_K}, {14, DType::Q6_K}, {30, DType::BF16},
    {26, DType::I32}, {39, DType::MXFP4},
};

const char* ggml_type_name(uint32_t id) {
  static const char* names[] = {"F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
                                "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
                                "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16",
                                "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
                                "IQ4_NL_8_8", "MXFP4", "NVFP4", "Q1_0", "Q2_0"};
  return id < sizeof(names) / sizeof(names[0]) ? names[id] : "unknown";
}

// A bounds-checked cursor over the file image; every read names the file on failure.
class Reader {
 public:
  Reader(const uint8_t* p, size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}
  template <class T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string string(const char* what) {
    const uint64_t len = read<uint64_t>(what);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), size_t(len));
    pos_ += size_t(len);
    return s;
  }
  void need(uint64_t bytes, const char* what) const {
    if (bytes > n_ - pos_) fail(name_, ": truncated while reading ", what, " (at byte ", pos_, " of ", n_, ")");
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return n_ - pos_; }

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  const std::string& name_;
};

GgufValue read_value(Reader& r, uint32_t type, const std::string& key, const std::string& name, bool in_array) {
  GgufValue v;
  v.type = GgufValue::Type(type);
  const std::string what = "metadata '" + key + "'";
  switch (type) {
    case GgufValue::U8: v.scalar = uint64_t(r.read<uint8_t>(what.c_str())); break;
    case GgufValue::I8: v.scalar = int64_t(r.read<int8_t>(what.c_str())); break;
    case GgufValue::U16: v.scalar = uint64_t(r.read<uint16_t>(what.c_str())); break;
    case GgufValue::I16: v.scalar = int64_t(r.read<int16_t>(what.c_str())); break;
    case GgufValue::U32: v.scalar = uint64_t(r.read<uint32_t>(what.c_str())); break;
    case GgufValue::I32: v.scalar = int64_t(r.read<int32_t>(what.c_str())); break;
    case GgufValue::U64: v.scalar = r.read<uint64_t>(what.c_str()); break;
    case GgufValue::I64: v.scalar = r.read<int64_t>(what.c_str()); break;
    case GgufValue::F32: v.scalar = double(r.read<float>(what.c_str())); break;
    case GgufValue::F64: v.scalar = r.read<double>(what.c_str()); break;
    case GgufValue::BOOL: {
      const uint8_t b = r.read<uint8_t>(what.c_str());
      if (b > 1) fail(name, ": metadata '", key, "': boolean byte ", int(b));
      v.scalar = bool(b);
      break;
    }
    case GgufValue::STRING: v.scalar = r.string(what.c_str()); break;
    case GgufValue::ARRAY: {
      if (in_array) fail(name, ": metadata '", key, "': nested arrays are not supported");
      const uint32_t et = r.read<uint32_t>(what.c_str());
      const uint64_t n = r.read<uint64_t>(what.c_str());
      if (et > GgufValue::F64 || et == GgufValue::ARRAY) fail(name, ": metadata '", key, "': bad array element type ", et);
      if (n > kMaxCount || n > r.remaining()) fail(name, ": metadata '", key, "': array of ", n, " elements exceeds the file");
      v.elem_type = GgufValue::Type(et);
      v.array.reserve(size_t(n));
      for (uint64_t i = 0; i < n; ++i) v.array.push_back(read_value(r, et, key, name, true));
      break;
    }
    default: fail(name, ": metadata '", key, "' has unknown value type ", type);
  }
  return v;
}

void write_bytes(FILE* f, const void* p, size_t n, bool& ok) { ok = ok && std::fwrite(p, 1, n, f) == n; }
template <class T>
void write_pod(FILE* f, T v, bool& ok) {
  write_bytes(f, &v, sizeof v, ok);
}
void write_string(FILE* f, const std::string& s, bool& ok) {
  write_pod<uint64_t>(f, s.size(), ok);
  write_bytes(f, s.data(), s.size(), ok);
}
void write_value(FILE* f, const GgufValue& v, bool& ok) {
  switch (v.type) {
    case GgufValue::U8: write_pod<uint8_t>(f, uint8_t(std::get<uint64_t>(v.scalar)), ok); break;
    case GgufValue::I8: write_pod<int8_t>(f, int8_t(std::get<int64_t>(v.scalar)), ok); break;
    case GgufValue::U16: write_pod<uint16_t>(f, uint16_t(std::get<uint64_t>(v.scalar)), ok); break;
    case GgufValue::I16: write_pod<int16_t>(f, int16_t(std::get<int64_t>(v.scalar)), ok); break;
    case GgufValue::U32: write_pod<uint32_t>(f, uint32_t(std::get<uint64_t>(v.scalar)), ok); break;
    case GgufValue::I32: write_pod<int32_t>(f, int32_t(std::get<int64_t>(v.scalar)), ok); break;
    case GgufValue::U64: write_pod<uint64_t>(f, std::get<uint64_t>(v.scalar), ok); break;
    case GgufValue::I64: write_pod<int64_t>(f, std::get<int64_t>(v.scalar), ok); break;
    case GgufValue::F32: write_pod<float>(f, float(std::get<double>(v.scalar)), ok); break;
    case GgufValue::F64: write_pod<double>(f, std::get<double>(v.scalar), ok); break;
    case GgufValue::BOOL: write_pod<uint8_t>(f, std::get<bool>(v.scalar) ? 1 : 0, ok); break;
    case GgufValue::STRING: write_string(f, std::get<std::string>(v.scalar), ok); break;
    case GgufValue::ARRAY:
      write_pod<uint32_t>(f, v.elem_type, ok);
      write_pod<uint64_t>(f, v.array.size(), ok);
      for (const auto& e : v.array) write_value(f, e, ok);
      break;
  }
}

}  // namespace

bool GgufValue::is_integer() const { return std::holds_alternative<int64_t>(scalar) || std::holds_alternative<uint64_t>(scalar); }
bool GgufValue::is_number() const { return is_integer() || std::holds_alternative<double>(scalar); }

int64_t GgufValue::as_int() const {
  if (auto* i = std::get_if<int64_t>(&scalar)) return *i;
  if (auto* u = std::get_if<uint64_t>(&scalar)) {
    if (*u > uint64_t(std::numeric_limits<int64_t>::max())) fail("metadata integer ", *u, " is too large");
    return int64_t(*u);
  }
  if (auto* b = std::get_if<bool>(&scalar)) return *b;
  fail("metadata value is not an integer");
}

double GgufValue::as_double() const {
  if (auto* d = std::get_if<double>(&scalar)) return *d;
  if (is_integer()) return double(as_int());
  fail("metadata value is not a number");
}

const std::string& GgufValue::as_string() const {
  if (auto* s = std::get_if<std::string>(&scalar)) return *s;
  fail("metadata value is not a string");
}

bool dtype_from_ggml(uint32_t ggml_type, DType* out) {
  for (const auto& e : kGgmlTypes)
    if (e.id == ggml_type) {
      *out = e.dtype;
      return true;
    }
  return false;
}

uint32_t ggml_type_of(DType t) {
  for (const auto& e : kGgmlTypes)
    if (e.dtype == t) return e.id;
  fail("GGUF cannot store tensors of type ", dtype_name(t));
}

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path, LoadMode mode) {
  auto map = std::make_unique<MappedFile>(path, mode);
  auto f = parse(map->data(), map->size(), path);
  f->map_ = std::move(map);
  f->open_split_parts(mode);
  return f;
}

// llama-gguf-split's sets: PREFIX-00001-of-0000N.gguf holds the metadata and the first tensors,
// every part has split.no (0-based), split.count and split.tensors.count (the set's total).
void GgufFile::open_split_parts(LoadMode mode) {
  const GgufValue* count = find("split.count");
  if (!count) return;
  auto int_of = [&](const char* key) {
    const GgufValue* v = find(key);
    if (!v || !v->is_integer()) fail(path_, ": split GGUF metadata '", key, "' is missing or not an integer");
    return v->as_int();
  };
  const int64_t n = int_of("split.count"), no = int_of("split.no");
  if (n <= 1) return;
  if (n > 9999) fail(path_, ": split.count ", n, " is implausible");
  static const std::regex name_re(R"((.*)-(\d{5})-of-(\d{5})\.gguf)");
  std::smatch m;
  if (!std::regex_match(path_, m, name_re) || std::stoll(m[3].str()) != n)
    fail(path_, ": part of a split GGUF set of ", n, " files, but not named PREFIX-0000K-of-", n, ".gguf as llama-gguf-split names them");
  if (no != 0 || std::stoll(m[2].str()) != 1) {
    char first[32];
    std::snprintf(first, sizeof first, "-00001-of-%05lld.gguf", (long long)n);
    fail(path_, ": part ", no + 1, " of a split GGUF set; open its first part, ", m[1].str(), first);
  }
  const int64_t total = int_of("split.tensors.count");
  for (int64_t i = 2; i <= n; ++i) {
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, "-%05lld-of-%05lld.gguf", (long long)i, (long long)n);
    const std::string part_path = m[1].str() + suffix;
    if (!std::filesystem::exists(part_path)) fail(path_, ": part ", i, " of ", n, " of the split set is missing (", part_path, ")");
    auto part_map = std::make_unique<MappedFile>(part_path, mode);
    auto part = parse(part_map->data(), part_map->size(), part_path);
    if (!part->find("split.no") || part->get("split.no").as_int() != i - 1 || !part->find("split.count") ||
        part->get("split.count").as_int() != n)
      fail(part_path, ": its split.no / split.count do not make it part ", i, " of ", n, " of ", path_);
    for (TensorRef& t : part->tensors_) {
      if (!by_name_.emplace(t.name, tensors_.size()).second) fail(part_path, ": tensor '", t.name, "' is also in another part");
      tensors_.push_back(std::move(t));
    }
    parts_.push_back(std::move(part_map));
  }
  if (int64_t(tensors_.size()) != total)
    fail(path_, ": the split set holds ", tensors_.size(), " tensors, its split.tensors.count says ", total);
}

size_t GgufFile::file_size() const {
  size_t n = map_ ? map_->size() : 0;
  for (const auto& p : parts_) n += p->size();
  return n;
}
bool GgufFile::copied() const {
  return map_ && map_->copied() && std::all_of(parts_.begin(), parts_.end(), [](const auto& p) { return p->copied(); });
}

std::unique_ptr<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  auto f = std::unique_ptr<GgufFile>(new GgufFile());
  f->path_ = name;
  Reader r(data, size, name);
  if (size < 4 || r.read<uint32_t>("magic") != kMagic) fail(name, ": not a GGUF file (bad magic)");
  f->version_ = r.read<uint32_t>("version");
  if (f->version_ < 2 || f->version_ > 3) fail(name, ": GGUF version ", f->version_, " is not supported (2 or 3)");
  const uint64_t n_tensors = r.read<uint64_t>("tensor count"), n_kv = r.read<uint64_t>("metadata count");
  if (n_tensors > kMaxCount || n_kv > kMaxCount) fail(name, ": implausible counts (", n_tensors, " tensors, ", n_kv, " metadata)");
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.string("metadata key");
    const uint32_t type = r.read<uint32_t>("metadata type");
    GgufValue v = read_value(r, type, key, name, false);
    if (!f->metadata_.emplace(key, std::move(v)).second) fail(name, ": metadata key '", key, "' appears twice");
  }
  uint64_t alignment = 32;
  if (const GgufValue* a = f->find("general.alignment")) {
    if (!a->is_integer() || a->as_int() <= 0 || a->as_int() > (1 << 20) || (a->as_int() & (a->as_int() - 1)))
      fail(name, ": general.alignment must be a power of two");
    alignment = uint64_t(a->as_int());
  }
  struct Raw {
    std::string name;
    uint32_t type;
    std::vector<int64_t> ne;
    uint64_t offset;
  };
  std::vector<Raw> raw;
  raw.reserve(size_t(n_tensors));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    Raw t;
    t.name = r.string("tensor name");
    const uint32_t nd = r.read<uint32_t>("tensor dims");
    if (nd == 0 || nd > kMaxDims) fail(name, ": tensor '", t.name, "' has ", nd, " dimensions (1..4 allowed)");
    for (uint32_t d = 0; d < nd; ++d) {
      const uint64_t v = r.read<uint64_t>("tensor dims");
      if (v == 0 || v > (uint64_t(1) << 40)) fail(name, ": tensor '", t.name, "' has dimension ", v);
      t.ne.push_back(int64_t(v));
    }
    t.type = r.read<uint32_t>("tensor type");
    t.offset = r.read<uint64_t>("tensor offset");
    raw.push_back(std::move(t));
  }
  const uint64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  if (data_start > size) fail(name, ": truncated before the tensor data");
  const uint64_t data_bytes = size - data_start;

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto& t : raw) {
    TensorRef ref;
    ref.name = t.name;
    ref.file = name;
    if (!dtype_from_ggml(t.type, &ref.dtype))
      fail(name, ": tensor '", t.name, "' has ggml type ", ggml_type_name(t.type), " (", t.type,
           "), which whale does not support (F32, F16, BF16, I32, Q8_0, Q4_0, Q5_0, Q4_K, Q6_K, MXFP4)");
    if (t.ne[0] % dtype_block_elems(ref.dtype))
      fail(name, ": tensor '", t.name, "': row of ", t.ne[0], " values is not a whole number of ", dtype_name(ref.dtype), " blocks");
    uint64_t bytes = dtype_row_bytes(ref.dtype, t.ne[0]);
    for (size_t d = 1; d < t.ne.size(); ++d) {
      if (bytes > std::numeric_limits<uint64_t>::max() / uint64_t(t.ne[d])) fail(name, ": tensor '", t.name, "' overflows");
      bytes *= uint64_t(t.ne[d]);
    }
    if (t.offset % alignment) fail(name, ": tensor '", t.name, "' offset ", t.offset, " is not aligned to ", alignment);
    if (t.offset > data_bytes || bytes > data_bytes - t.offset)
      fail(name, ": tensor '", t.name, "' data [", t.offset, ", +", bytes, ") is past the end of the file (truncated?)");
    ref.shape.assign(t.ne.rbegin(), t.ne.rend());  // PyTorch order: outermost first
    ref.data = data + data_start + t.offset;
    ref.nbytes = size_t(bytes);
    ranges.emplace_back(t.offset, t.offset + bytes);
    if (!f->by_name_.emplace(ref.name, f->tensors_.size()).second) fail(name, ": tensor '", t.name, "' appears twice");
    f->tensors_.push_back(std::move(ref));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(name, ": tensor data ranges overlap");
  return f;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufValue& GgufFile::get(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail(path_, ": missing metadata '", key, "'");
  return *v;
}

const TensorRef* GgufFile::tensor(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::set_u32(const std::string& key, uint32_t v) { set(key, {GgufValue::U32, GgufValue::U32, uint64_t(v), {}}); }
void GgufWriter::set_i32(const std::string& key, int32_t v) { set(key, {GgufValue::I32, GgufValue::U32, int64_t(v), {}}); }
void GgufWriter::set_f32(const std::string& key, float v) { set(key, {GgufValue::F32, GgufValue::U32, double(v), {}}); }
void GgufWriter::set_bool(const std::string& key, bool v) { set(key, {GgufValue::BOOL, GgufValue::U32, v, {}}); }
void GgufWriter::set_string(const std::string& key, const std::string& v) {
  set(key, {GgufValue::STRING, GgufValue::U32, v, {}});
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& v) {
  GgufValue a{GgufValue::ARRAY, GgufValue::STRING, uint64_t(0), {}};
  for (const auto& s : v) a.array.push_back({GgufValue::STRING, GgufValue::U32, s, {}});
  set(key, std::move(a));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& v) {
  GgufValue a{GgufValue::ARRAY, GgufValue::I32, uint64_t(0), {}};
  for (int32_t x : v) a.array.push_back({GgufValue::I32, GgufValue::U32, int64_t(x), {}});
  set(key, std::move(a));
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& v) {
  GgufValue a{GgufValue::ARRAY, GgufValue::F32, uint64_t(0), {}};
  for (float x : v) a.array.push_back({GgufValue::F32, GgufValue::U32, double(x), {}});
  set(key, std::move(a));
}

void GgufWriter::add_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape) {
  ggml_type_of(dtype);
  WHALE_CHECK(!shape.empty() && shape.back() % dtype_block_elems(dtype) == 0, "GGUF tensor '", name, "': row of ",
              shape.empty() ? 0 : shape.back(), " is not a whole number of ", dtype_name(dtype), " blocks");
  size_t bytes = dtype_row_bytes(dtype, shape.back());
  for (size_t i = 0; i + 1 < shape.size(); ++i) bytes *= size_t(shape[i]);
  tensors_.push_back({name, dtype, std::move(shape), bytes});
}

void GgufWriter::write(const std::string& path, const std::function<void(size_t, uint8_t*)>& fill) const {
  constexpr uint64_t kAlign = 32;
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(tmp, ": cannot create file");
  bool ok = true;
  write_pod<uint32_t>(f, kMagic, ok);
  write_pod<uint32_t>(f, 3, ok);
  write_pod<uint64_t>(f, tensors_.size(), ok);
  write_pod<uint64_t>(f, kv_.size(), ok);
  for (const auto& [key, v] : kv_) {
    write_string(f, key, ok);
    write_pod<uint32_t>(f, v.type, ok);
    write_value(f, v, ok);
  }
  uint64_t offset = 0;
  size_t largest = 0;
  for (const Info& t : tensors_) {
    write_string(f, t.name, ok);
    write_pod<uint32_t>(f, uint32_t(t.shape.size()), ok);
    for (auto it = t.shape.rbegin(); it != t.shape.rend(); ++it) write_pod<uint64_t>(f, uint64_t(*it), ok);
    write_pod<uint32_t>(f, ggml_type_of(t.dtype), ok);
    write_pod<uint64_t>(f, offset, ok);
    offset += (t.bytes + kAlign - 1) / kAlign * kAlign;
    largest = std::max(largest, t.bytes);
  }
  const long pos = std::ftell(f);
  std::vector<uint8_t> pad(kAlign, 0);
  write_bytes(f, pad.data(), size_t((kAlign - uint64_t(pos) % kAlign) % kAlign), ok);
  std::vector<uint8_t> buf(largest);
  for (size_t i = 0; ok && i < tensors_.size(); ++i) {
    fill(i, buf.data());
    write_bytes(f, buf.data(), tensors_[i].bytes, ok);
    write_bytes(f, pad.data(), size_t((kAlign - tensors_[i].bytes % kAlign) % kAlign), ok);
  }
  ok = (std::fflush(f) == 0) && (::fsync(fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": write failed (disk full?)");
  }
}

bool is_gguf_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[4] = {};
  const bool ok = std::fread(magic, 1, 4, f) == 4 && std::memcmp(magic, "GGUF", 4) == 0;
  std::fclose(f);
  return ok;
}

}  // namespace whale
