#include "core/sha256.h"

#include <openssl/evp.h>

#include "core/error.h"

namespace whale {

struct Sha256::Ctx {
  EVP_MD_CTX* md = nullptr;
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  ctx_->md = EVP_MD_CTX_new();
  WHALE_CHECK(ctx_->md && EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr) == 1, "SHA-256: OpenSSL failed to initialise");
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_->md); }

Sha256& Sha256::update(const void* data, size_t n) {
  WHALE_CHECK(EVP_DigestUpdate(ctx_->md, data, n) == 1, "SHA-256: update failed");
  return *this;
}

Sha256& Sha256::update_u64(uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = uint8_t(v >> (8 * i));
  return update(b, 8);
}

Digest Sha256::finish() {
  Digest d;
  unsigned int n = 0;
  WHALE_CHECK(EVP_DigestFinal_ex(ctx_->md, d.bytes.data(), &n) == 1 && n == 32, "SHA-256: final failed");
  return d;
}

std::string Digest::hex() const {
  static const char* k = "0123456789abcdef";
  std::string s(64, '0');
  for (size_t i = 0; i < 32; ++i) {
    s[2 * i] = k[bytes[i] >> 4];
    s[2 * i + 1] = k[bytes[i] & 15];
  }
  return s;
}

std::optional<Digest> Digest::from_hex(std::string_view hex) {
  if (hex.size() != 64) return std::nullopt;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  Digest d;
  for (size_t i = 0; i < 32; ++i) {
    const int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d.bytes[i] = uint8_t(hi << 4 | lo);
  }
  return d;
}

uint64_t Digest::prefix64() const {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t(bytes[size_t(i)]) << (8 * i);
  return v;
}

}  // namespace whale
