#include "formats/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "core/error.h"

namespace whale {

size_t TensorHeader::nbytes() const {
  size_t n = dtype_size(dtype);
  for (int64_t d : shape) n *= size_t(d);
  return n;
}

void write_safetensors_streaming(const std::string& path, const std::vector<TensorHeader>& headers,
                                 const std::function<void(size_t, uint8_t*)>& fill,
                                 const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  size_t largest = 0;
  for (const TensorHeader& t : headers) {
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
    largest = std::max(largest, t.nbytes());
  }
  std::string text = header.dump();
  while (text.size() % 8) text += ' ';  // keeps every tensor 8-byte aligned

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(tmp, ": cannot create file");
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  std::vector<uint8_t> buf(largest);
  for (size_t i = 0; ok && i < headers.size(); ++i) {
    fill(i, buf.data());
    ok = std::fwrite(buf.data(), 1, headers[i].nbytes(), f) == headers[i].nbytes();
  }
  ok = (std::fflush(f) == 0) && (::fsync(fileno(f)) == 0) && ok;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(path, ": write failed (disk full?)");
  }
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<TensorHeader> headers;
  for (const TensorToWrite* t : order) {
    headers.push_back({t->name, t->dtype, t->shape});
    WHALE_CHECK(t->bytes.size() == headers.back().nbytes(), "write_safetensors: tensor '", t->name, "' has ",
                t->bytes.size(), " bytes for shape ", headers.back().nbytes() / dtype_size(t->dtype), " elements");
  }
  write_safetensors_streaming(path, headers,
                              [&](size_t i, uint8_t* buf) { std::memcpy(buf, order[i]->bytes.data(), order[i]->bytes.size()); },
                              metadata);
}

TensorToWrite tensor_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  TensorToWrite t{name, DType::F32, std::move(shape), std::vector<uint8_t>(values.size() * 4)};
  std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

TensorToWrite tensor_bf16(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& values) {
  TensorToWrite t{name, DType::BF16, std::move(shape), std::vector<uint8_t>(values.size() * 2)};
  for (size_t i = 0; i < values.size(); ++i) {
    const uint16_t h = f32_to_bf16(values[i]);
    std::memcpy(&t.bytes[2 * i], &h, 2);
  }
  return t;
}

}  // namespace whale
