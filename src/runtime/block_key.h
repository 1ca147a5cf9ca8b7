// Content addresses of KV-cache blocks.
//
// A block's key is a SHA-256 chain: key(block i) = SHA-256(key(block i-1) || its tokens), and
// the chain starts at the cache's root, a SHA-256 over everything besides the tokens that
// decides what a block holds: the model's identity (its config and every weight byte, as
// stored: the quantization is part of it), the cache groups (kind, layers, width, f32) and
// the tokens per block. So a key names one model, one cache format and one exact token
// prefix, and may be looked up in any tier, in any process, on any later day.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/sha256.h"
#include "model/kv_pool.h"
#include "model/model.h"

namespace whale {

using BlockKey = Digest;

// Bumped whenever whale's cache contents for the same model and tokens change (numerics of
// the latents, block layout), so older blocks become unreachable instead of wrong.
inline constexpr int kCacheFormatVersion = 1;

// The root also names the SIMD target the kernels dispatch to: its sums run in another order,
// so a cache written by an AVX2 machine is not what an AVX-512 one would compute.
BlockKey cache_root(const Digest& model_identity, const std::vector<CacheGroupSpec>& groups, int64_t block_tokens);
BlockKey chain_key(const BlockKey& parent, std::span<const int32_t> tokens);
// Keys of the first n_blocks whole blocks of `tokens`. With `lookahead`, a block's key also
// covers the token after it (which must be there): for caches whose entry at a block's last
// position depends on the next token (the MTP module's latents), so a key fixes every byte.
std::vector<BlockKey> block_keys(const BlockKey& root, std::span<const int32_t> tokens, int64_t block_tokens,
                                 int64_t n_blocks, bool lookahead = false);

// SHA-256 over the model's config and every tensor (name, dtype, shape, bytes). Reads every
// weight once (~1.7 GB/s here). With a `memo_dir`, the weights' digest is remembered there
// under the identity of the files behind them (path, size, modification time, inode), so a
// restart does not read them again.
Digest model_identity(const Model& model, const std::string& memo_dir = "");

}  // namespace whale
