// SHA-256 (OpenSSL's libcrypto): content addresses of KV-cache blocks and model identities.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace whale {

struct Digest {
  std::array<uint8_t, 32> bytes{};

  std::string hex() const;  // 64 lowercase hex digits
  static std::optional<Digest> from_hex(std::string_view hex);
  uint64_t prefix64() const;  // the first 8 bytes, for hash tables
  friend bool operator==(const Digest&, const Digest&) = default;
};

struct DigestHash {
  size_t operator()(const Digest& d) const { return size_t(d.prefix64()); }
};

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& update(const void* data, size_t n);
  Sha256& update(std::string_view s) { return update(s.data(), s.size()); }
  Sha256& update_u64(uint64_t v);  // little-endian, 8 bytes
  Digest finish();                 // the object can't be updated afterwards

  static Digest of(std::string_view s) { return Sha256().update(s).finish(); }

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace whale
