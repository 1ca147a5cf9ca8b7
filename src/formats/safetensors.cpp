#include "formats/safetensors.h"

#include <dirent.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"

namespace whale {

using json = nlohmann::json;

namespace {
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;  // the format's own limit
constexpr size_t kMaxDims = 8;

std::string base_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string dir_name(const std::string& path) {
  auto slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

std::vector<std::string> list_safetensors(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) fail(dir, ": cannot open directory");
  while (dirent* e = readdir(d)) {
    std::string n = e->d_name;
    if (n.size() > 12 && n.compare(n.size() - 12, 12, ".safetensors") == 0) out.push_back(dir + "/" + n);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<SafetensorsEntry> parse_safetensors_header(std::string_view header_json, uint64_t data_bytes,
                                                        const std::string& file) {
  json header = json::parse(header_json.begin(), header_json.end(), nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded()) fail(file, ": safetensors header is not valid JSON");
  if (!header.is_object()) fail(file, ": safetensors header is not a JSON object");

  std::vector<SafetensorsEntry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& info = it.value();
    if (name == "__metadata__") continue;
    auto bad = [&](const char* what) { fail(file, ": tensor '", name, "': ", what); };
    if (!info.is_object()) bad("entry is not an object");
    auto dt = info.find("dtype");
    auto sh = info.find("shape");
    auto off = info.find("data_offsets");
    if (dt == info.end() || !dt->is_string()) bad("missing or non-string \"dtype\"");
    if (sh == info.end() || !sh->is_array()) bad("missing or non-array \"shape\"");
    if (off == info.end() || !off->is_array() || off->size() != 2) bad("\"data_offsets\" must be [begin, end]");

    SafetensorsEntry e;
    e.name = name;
    if (!dtype_from_safetensors(dt->get<std::string>(), &e.dtype))
      fail(file, ": tensor '", name, "': unknown dtype \"", dt->get<std::string>(), "\"");
    if (sh->size() > kMaxDims) bad("too many dimensions");
    uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) bad("shape entries must be non-negative integers");
      uint64_t v = d.get<uint64_t>();
      if (v > uint64_t(std::numeric_limits<int64_t>::max()) || (v && numel > UINT64_MAX / v)) bad("shape overflows");
      numel *= v;
      e.shape.push_back(int64_t(v));
    }
    for (const auto& o : *off)
      if (!o.is_number_unsigned()) bad("data_offsets must be non-negative integers");
    e.begin = (*off)[0].get<uint64_t>();
    e.end = (*off)[1].get<uint64_t>();
    if (e.begin > e.end) bad("data_offsets begin after end");
    if (e.end > data_bytes)
      fail(file, ": tensor '", name, "': data_offsets end ", e.end, " is past the end of the data (", data_bytes,
           " bytes; file truncated?)");
    const uint64_t elem = dtype_size(e.dtype);
    if (numel > UINT64_MAX / elem || numel * elem != e.end - e.begin)
      fail(file, ": tensor '", name, "': ", e.end - e.begin, " bytes of data do not match shape ", shape_str(e.shape),
           " of ", dtype_name(e.dtype));
    entries.push_back(std::move(e));
  }

  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(file, ": tensors '", by_offset[i - 1]->name, "' and '", by_offset[i]->name, "' overlap");
  return entries;
}

std::vector<SafetensorsEntry> parse_safetensors_image(const uint8_t* data, size_t size, const std::string& file) {
  if (size < 8) fail(file, ": too small to be a safetensors file (", size, " bytes)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | data[i];
  if (header_len > kMaxHeaderBytes) fail(file, ": safetensors header length ", header_len, " is implausible");
  if (header_len > size - 8)
    fail(file, ": safetensors header length ", header_len, " exceeds the file size (", size, " bytes; truncated?)");
  std::string_view header(reinterpret_cast<const char*>(data + 8), header_len);
  auto entries = parse_safetensors_header(header, size - 8 - header_len, file);
  for (auto& e : entries) {
    e.begin += 8 + header_len;
    e.end += 8 + header_len;
  }
  return entries;
}

std::unique_ptr<TensorSet> TensorSet::open(const std::string& path, LoadMode mode) {
  auto set = std::make_unique<TensorSet>();
  set->root_ = path;
  if (!is_directory(path)) {
    if (!file_exists(path)) fail(path, ": no such file or directory");
    set->add_file(path, nullptr, mode);
    return set;
  }
  const std::string index_path = path + "/model.safetensors.index.json";
  if (file_exists(index_path)) {
    json index = json::parse(read_text_file(index_path), nullptr, false);
    if (index.is_discarded() || !index.is_object()) fail(index_path, ": not a valid JSON object");
    auto wm = index.find("weight_map");
    if (wm == index.end() || !wm->is_object()) fail(index_path, ": missing \"weight_map\" object");
    std::map<std::string, std::vector<std::string>> by_file;
    for (auto& [name, file] : wm->items()) {
      if (!file.is_string()) fail(index_path, ": weight_map entry for '", name, "' is not a file name");
      std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
        fail(index_path, ": weight_map entry for '", name, "' names an invalid file \"", f, "\"");
      by_file[f].push_back(name);
    }
    for (auto& [file, names] : by_file) set->add_file(path + "/" + file, &names, mode);
    return set;
  }
  auto files = list_safetensors(path);
  if (files.empty()) fail(path, ": no *.safetensors files (and no model.safetensors.index.json)");
  for (const auto& f : files) set->add_file(f, nullptr, mode);
  return set;
}

std::unique_ptr<TensorSet> TensorSet::from_refs(const std::string& root, std::vector<TensorRef> refs,
                                                std::shared_ptr<const void> owner, size_t file_bytes, bool copied) {
  auto set = std::make_unique<TensorSet>();
  set->root_ = root;
  set->owner_ = std::move(owner);
  set->owner_bytes_ = file_bytes;
  set->owner_copied_ = copied;
  for (TensorRef& t : refs) {
    if (set->tensors_.count(t.name)) fail(root, ": tensor '", t.name, "' appears twice");
    std::string name = t.name;
    set->tensors_.emplace(std::move(name), std::move(t));
  }
  return set;
}

void TensorSet::add_file(const std::string& path, const std::vector<std::string>* only, LoadMode mode) {
  auto map = std::make_unique<MappedFile>(path, mode);
  auto entries = parse_safetensors_image(map->data(), map->size(), path);
  std::set<std::string> wanted;
  if (only) wanted.insert(only->begin(), only->end());
  for (auto& e : entries) {
    if (only && !wanted.erase(e.name)) continue;  // the index is the authority on what is where
    if (tensors_.count(e.name)) fail(path, ": tensor '", e.name, "' also appears in ", tensors_[e.name].file);
    TensorRef t;
    t.name = e.name;
    t.dtype = e.dtype;
    t.shape = e.shape;
    t.data = map->data() + e.begin;
    t.nbytes = e.end - e.begin;
    t.file = path;
    tensors_.emplace(e.name, std::move(t));
  }
  if (!wanted.empty())
    fail(dir_name(path), "/model.safetensors.index.json: says tensor '", *wanted.begin(), "' is in ",
         base_name(path), ", but that file does not contain it");
  maps_.push_back(std::move(map));
}

const TensorRef* TensorSet::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

const TensorRef& TensorSet::get(const std::string& name) const {
  const TensorRef* t = find(name);
  if (!t) fail(root_, ": missing tensor '", name, "'");
  return *t;
}

size_t TensorSet::total_bytes() const {
  size_t n = owner_bytes_;
  for (const auto& m : maps_) n += m->size();
  return n;
}

size_t TensorSet::copied_bytes() const {
  size_t n = owner_copied_ ? owner_bytes_ : 0;
  for (const auto& m : maps_) n += m->copied() ? m->size() : 0;
  return n;
}

std::vector<std::string> TensorSet::files() const {
  std::vector<std::string> out;
  if (owner_) out.push_back(root_);
  for (const auto& m : maps_) out.push_back(m->path());
  return out;
}

}  // namespace whale
