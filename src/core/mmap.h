// Read-only memory mapping of a file. Weights are used straight from the page cache,
// never copied: a model directory of any size costs only address space until touched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace whale {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws whale::Error naming the path
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Whole-file read for small text files (config.json, index files). Rejects files over max_bytes.
std::string read_text_file(const std::string& path, size_t max_bytes = size_t(64) << 20);
bool file_exists(const std::string& path);
bool is_directory(const std::string& path);

}  // namespace whale
