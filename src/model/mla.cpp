// Multi-head Latent Attention (DeepSeek-V2 §2.1; V3 reference `MLA`).
//
//   q            = q_b_proj(rmsnorm(q_a_proj x))  or  q_proj x        [H, nope + rope]
//   c_kv, k_pe   = kv_a_proj_with_mqa x                               [kv_lora_rank], [rope]
//   c_kv         = rmsnorm(c_kv);  q_pe, k_pe = RoPE(q_pe, k_pe)      (k_pe shared by all heads)
//   cache       <- (c_kv, k_pe)                                       576 values per token for V3
//   k_nope_h, v_h = W_UK_h c_kv, W_UV_h c_kv                          (kv_b_proj rows of head h)
//   o_h          = softmax(scale · (q_nope_h·k_nope_h + q_pe_h·k_pe)) · v_h
//   out          = o_proj concat_h(o_h)
//
// DeepSeek Sparse Attention (V3.2) adds a lightning indexer: from the same q latent and input,
// index queries (index_n_heads) and one index key per token, half-split RoPE on their first
// qk_rope_head_dim dims, then I[t, s] = Σ_h w_h(x_t) · ReLU(q_h(t) · k(s)) over the cached keys;
// each token attends only to its index_topk best positions (all of them while they fit).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention.h"
#include "kernels/indexer.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/sgemm.h"
#include "model/model.h"
#include "model/workspace.h"

namespace whale {

void Model::attention(const AttentionWeights& A, int64_t layer, const Batch& batch, KVPool& cache, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t T = int64_t(batch.tokens.size()), H = c.num_attention_heads, qk = c.qk_head_dim();
  const int64_t r = c.kv_lora_rank, nope = c.qk_nope_head_dim, P = c.qk_rope_head_dim / 2, kvd = c.kv_cache_dim();
  const float eps = float(c.rms_norm_eps);

  // The two products of the normed input run as one batch (one pass of the pool, their
  // activations quantized once when the types allow).
  const MatmulJob kv_a{&A.kv_a_proj_with_mqa, ws.xn.data(), T, ws.kva.data()};  // [T, r + rope]
  if (c.q_lora_rank > 0) {
    matmul_batch({{&A.q_a_proj, ws.xn.data(), T, ws.cq.data()}, kv_a}, pool_);    // [T, q_lora_rank]
    for (int64_t t = 0; t < T; ++t) {
      float* cq = &ws.cq[size_t(t * c.q_lora_rank)];
      rmsnorm(cq, A.q_a_layernorm.data(), c.q_lora_rank, eps, cq);
    }
    matmul(A.q_b_proj, ws.cq.data(), T, ws.q.data(), pool_);                    // [T, H·qk]
  } else {
    matmul_batch({{&A.q_proj, ws.xn.data(), T, ws.q.data()}, kv_a}, pool_);      // [T, H·qk]
  }

  const bool official = c.cache_numerics == CacheNumerics::Official && c.sparse_attention();
  for (int64_t t = 0; t < T; ++t) {
    const float* cs = &ws.cos[size_t(t * P)];
    const float* sn = &ws.sin[size_t(t * P)];
    float* kv = &ws.kva[size_t(t * kvd)];
    rmsnorm(kv, A.kv_a_layernorm.data(), r, eps, kv);
    if (official) fp8_round_blocks(kv, r);  // V3.2's FP8 latent cache (k_pe stays as is)
    rope_interleaved(kv + r, cs, sn, P);
    for (int64_t h = 0; h < H; ++h) rope_interleaved(&ws.q[size_t((t * H + h) * qk + nope)], cs, sn, P);
  }
  if (c.sparse_attention()) indexer_keys(A.indexer, T, ws);

  for (const BatchSeq& s : batch.seqs) {
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      std::memcpy(s.cache->slot(cache, layer, s.cache->length + i), &ws.kva[size_t((s.first + i) * kvd)],
                  size_t(kvd) * sizeof(float));
      if (c.sparse_attention())
        std::memcpy(s.cache->slot(cache, layer, s.cache->length + i, kIndexGroup),
                    &ws.ik[size_t((s.first + i) * c.index_head_dim)], size_t(c.index_head_dim) * sizeof(float));
    }
    const Selection sel = c.sparse_attention() ? select_tokens(layer, s, cache, ws) : Selection();
    AttentionForm form = attention_form_ != AttentionForm::Auto ? attention_form_
                         : s.form != AttentionForm::Auto ? s.form
                                                         : batch.attention;
    if (form == AttentionForm::Auto) form = s.n_tokens > 1 ? AttentionForm::MHA : AttentionForm::Absorbed;
    // Split GGUF layout: no decompression matrix, so prompt chunks take the absorbed form,
    // computed for the whole chunk at once.
    if (form == AttentionForm::MHA && A.kv_b_proj.empty()) attention_absorbed_chunk(A, layer, s, cache, sel, ws);
    else if (form == AttentionForm::MHA) attention_mha(A, layer, s, cache, sel, ws);
    else attention_absorbed(A, layer, s, cache, sel, ws);
  }
  matmul(A.o_proj, ws.attn.data(), T, ws.out.data(), pool_);                    // [T, hidden]
}

// The indexer's queries ws.iq, keys ws.ik and head weights ws.iw of the batch's tokens, from
// ws.cq (the normed q latent), ws.xn and the RoPE angles. Official numerics rotate queries and
// keys by a Hadamard transform and round them to FP8 (one scale per head), as DeepSeek's code.
void Model::indexer_keys(const IndexerWeights& I, int64_t T, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t nh = c.index_n_heads, hd = c.index_head_dim, P = c.qk_rope_head_dim / 2;
  const bool official = c.cache_numerics == CacheNumerics::Official;
  matmul_batch({{&I.wk, ws.xn.data(), T, ws.ik.data()}, {&I.weights_proj, ws.xn.data(), T, ws.iw.data()}}, pool_);
  matmul(I.wq_b, ws.cq.data(), T, ws.iq.data(), pool_);  // [T, nh·hd]
  const float w_scale = float(1.0 / std::sqrt(double(nh)));
  pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs = &ws.cos[size_t(t * P)];
      const float* sn = &ws.sin[size_t(t * P)];
      float* k = &ws.ik[size_t(t * hd)];
      layernorm(k, I.k_norm_weight.data(), I.k_norm_bias.data(), hd, 1e-6f, k);
      rope_half_split(k, cs, sn, P);
      if (official) {
        hadamard_rotate(k, hd);
        fp8_round_blocks(k, hd);
      }
      for (int64_t h = 0; h < nh; ++h) {
        float* q = &ws.iq[size_t((t * nh + h) * hd)];
        rope_half_split(q, cs, sn, P);
        if (official) {
          hadamard_rotate(q, hd);
          fp8_round_blocks(q, hd);
        }
      }
      for (int64_t h = 0; h < nh; ++h) ws.iw[size_t(t * nh + h)] *= w_scale;
    }
  }, 1);
}

// Top-k selection per new token over its whole context (the index keys are already cached).
// Scores are computed pair by pair (index_scores), so a token's choice does not depend on the
// batch or on how its prompt was chunked.
Model::Selection Model::select_tokens(int64_t layer, const BatchSeq& s, const KVPool& cache, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t nh = c.index_n_heads, hd = c.index_head_dim, K = c.index_topk;
  const int64_t p0 = s.cache->length, n = s.n_tokens, S = p0 + n;
  Selection sel(static_cast<size_t>(n));
  if (S <= K) return sel;
  std::vector<const float*> rows(static_cast<size_t>(S));
  for (int64_t j = 0; j < S; ++j) rows[size_t(j)] = s.cache->slot(cache, layer, j, kIndexGroup);
  const float scale = float(1.0 / std::sqrt(double(hd)));
  std::vector<float> scores(static_cast<size_t>(S));
  const int64_t grain = 64;  // keys per task
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = s.first + i, n_ctx = p0 + i + 1;
    if (n_ctx <= K) continue;
    pool_.parallel_for((n_ctx + grain - 1) / grain, [&](int64_t b0, int64_t b1) {
      std::vector<float> scratch(static_cast<size_t>(nh * grain));
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t j0 = b * grain, m = std::min(grain, n_ctx - j0);
        index_scores(&ws.iq[size_t(t * nh * hd)], &ws.iw[size_t(t * nh)], nh, hd, &rows[size_t(j0)], m, scale,
                     scratch.data(), &scores[size_t(j0)]);
      }
    });
    top_k_positions(scores.data(), n_ctx, K, sel[size_t(i)]);
  }
  return sel;
}

// MHA form: expand each head's keys and values from the latents of the whole context once,
// then ordinary causal attention for the new tokens.
void Model::attention_mha(const AttentionWeights& A, int64_t layer, const BatchSeq& s, const KVPool& cache,
                          const Selection& sel, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t H = c.num_attention_heads, qk = c.qk_head_dim(), r = c.kv_lora_rank, nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim, dv = c.v_head_dim, kvd = c.kv_cache_dim(), kv_row = nope + dv;
  const int64_t p0 = s.cache->length, S = p0 + s.n_tokens;

  std::vector<float> latent(static_cast<size_t>(S * kvd));                                   // [S, r + rope]
  for (int64_t p = 0; p < S; ++p)
    std::memcpy(&latent[size_t(p * kvd)], s.cache->slot(cache, layer, p), size_t(kvd) * sizeof(float));

  pool_.parallel_for(H, [&](int64_t h0, int64_t h1) {
    std::vector<float> kv(static_cast<size_t>(S * kv_row));                                  // [S, nope + dv] of one head
    std::vector<float> scores(static_cast<size_t>(S));
    for (int64_t h = h0; h < h1; ++h) {
      matmul_rows(A.kv_b_proj, h * kv_row, (h + 1) * kv_row, latent.data(), kvd, S, kv.data(), kv_row, pool_);
      for (int64_t i = 0; i < s.n_tokens; ++i) {
        const int64_t t = s.first + i;
        const std::vector<int32_t>* picked = sel.empty() || sel[size_t(i)].empty() ? nullptr : &sel[size_t(i)];
        const int64_t n_ctx = picked ? int64_t(picked->size()) : p0 + i + 1;
        auto pos = [&](int64_t m) { return picked ? int64_t((*picked)[size_t(m)]) : m; };
        const float* q = &ws.q[size_t((t * H + h) * qk)];
        for (int64_t m = 0; m < n_ctx; ++m) {
          const int64_t j = pos(m);
          scores[size_t(m)] = (dot(q, &kv[size_t(j * kv_row)], nope) + dot(q + nope, &latent[size_t(j * kvd + r)], rope)) *
                              rope_.softmax_scale;
        }
        softmax(scores.data(), n_ctx);
        float* o = &ws.attn[size_t((t * H + h) * dv)];
        std::fill(o, o + dv, 0.0f);
        for (int64_t m = 0; m < n_ctx; ++m) axpy(scores[size_t(m)], &kv[size_t(pos(m) * kv_row + nope)], o, dv);
      }
    }
  });
}

// Absorbed form: q_lat = W_UK_hᵀ q_nope scores directly against the cached latents, and the
// attention-weighted latent is mapped to values afterwards by W_UV_h. Every cached latent is
// read once per step for all heads (positions split across threads for the scores, latent
// columns for the weighted sum), so decode reads the cache once, not once per head.
void Model::attention_absorbed(const AttentionWeights& A, int64_t layer, const BatchSeq& s, const KVPool& cache,
                               const Selection& sel, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t H = c.num_attention_heads, qk = c.qk_head_dim(), r = c.kv_lora_rank, nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim, dv = c.v_head_dim, kv_row = nope + dv, kvd = c.kv_cache_dim();
  const int64_t p0 = s.cache->length, n = s.n_tokens, S = p0 + n;
  const bool split = A.kv_b_proj.empty();  // GGUF layout: k_b_proj / v_b_proj

  std::vector<float> q_lat(static_cast<size_t>(n * H * r));  // [n, H, r]
  std::vector<float> lat(static_cast<size_t>(n * H * r));    // [n, H, r] attention-weighted latents
  pool_.parallel_for(H, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      const float* q = &ws.q[size_t((s.first * H + h) * qk)];
      if (split) {
        matmul_rows(A.k_b_proj, h * r, (h + 1) * r, q, H * qk, n, &q_lat[size_t(h * r)], H * r, pool_);
      } else {
        for (int64_t i = 0; i < n; ++i)
          matvec_transposed(A.kv_b_proj, h * kv_row, h * kv_row + nope, q + i * H * qk, &q_lat[size_t((i * H + h) * r)]);
      }
    }
  });

  std::vector<float> qcat(static_cast<size_t>(H * kvd));  // [H, r + rope]: q_lat_h ‖ q_pe_h of one token
  std::vector<float> scores(static_cast<size_t>(H * S));  // [H, n_ctx] of one token
  std::vector<float> probs(static_cast<size_t>(S * H));   // [n_ctx, H] the same after softmax
  std::vector<const float*> all(static_cast<size_t>(S));  // the cache row of each position
  for (int64_t j = 0; j < S; ++j) all[size_t(j)] = s.cache->slot(cache, layer, j);
  std::vector<const float*> picked_rows;  // the rows a sparse token attends to
  const int64_t grain = 16;  // positions per task: 16 heads × 16 rows of 576 is ~9k multiply-adds
  for (int64_t i = 0; i < n; ++i) {
    const int64_t t = s.first + i;
    int64_t n_ctx = p0 + i + 1;
    const float* const* rows = all.data();
    if (!sel.empty() && !sel[size_t(i)].empty()) {
      picked_rows.clear();
      for (int32_t j : sel[size_t(i)]) picked_rows.push_back(all[size_t(j)]);
      rows = picked_rows.data();
      n_ctx = int64_t(picked_rows.size());
    }
    for (int64_t h = 0; h < H; ++h) {
      std::memcpy(&qcat[size_t(h * kvd)], &q_lat[size_t((i * H + h) * r)], size_t(r) * sizeof(float));
      std::memcpy(&qcat[size_t(h * kvd + r)], &ws.q[size_t((t * H + h) * qk + nope)], size_t(rope) * sizeof(float));
    }
    pool_.parallel_for(n_ctx, [&](int64_t j0, int64_t j1) {
      dot_rows(qcat.data(), H, kvd, rows + j0, j1 - j0, kvd, rope_.softmax_scale, &scores[size_t(j0)], n_ctx);
    }, grain);
    for (int64_t h = 0; h < H; ++h) softmax(&scores[size_t(h * n_ctx)], n_ctx);
    // Probabilities as [n_ctx, H]: all heads of a position together.
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < n_ctx; ++j) probs[size_t(j * H + h)] = scores[size_t(h * n_ctx + j)];
    float* li = &lat[size_t(i * H * r)];
    pool_.parallel_for((r + 15) / 16, [&](int64_t b0, int64_t b1) {  // bands of 16 latent columns
      weighted_rows(probs.data(), H, rows, n_ctx, b0 * 16, std::min(r, b1 * 16), li, r);
    }, 4);
  }

  pool_.parallel_for(H, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      float* o = &ws.attn[size_t((s.first * H + h) * dv)];
      if (split) matmul_rows(A.v_b_proj, h * dv, (h + 1) * dv, &lat[size_t(h * r)], H * r, n, o, H * dv, pool_);
      else matmul_rows(A.kv_b_proj, h * kv_row + nope, h * kv_row + kv_row, &lat[size_t(h * r)], H * r, n, o, H * dv, pool_);
    }
  });
}

// Absorbed form for a chunk of prompt tokens of a split-layout (k_b_proj / v_b_proj) model.
// The same math as attention_absorbed, but all n·H query rows of a tile are scored against
// the chunk's context with one matrix product (against the latents transposed), and the
// attention-weighted latents come from a second one, instead of a pass over the cache per token.
// Each query row's result depends only on its own inputs and the cache, never on how the
// prompt was split into chunks: the context is zero-padded to a multiple of 64 positions,
// which leaves every sum unchanged (padding adds exact zeros), so a prefix-cache hit
// recomputes exactly what a miss computed.
void Model::attention_absorbed_chunk(const AttentionWeights& A, int64_t layer, const BatchSeq& s, const KVPool& cache,
                                     const Selection& sel, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t H = c.num_attention_heads, qk = c.qk_head_dim(), r = c.kv_lora_rank, nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim, dv = c.v_head_dim, kvd = c.kv_cache_dim();
  const int64_t p0 = s.cache->length, n = s.n_tokens, S = p0 + n, S_pad = (S + 63) / 64 * 64;

  std::vector<float> ctx(static_cast<size_t>(S_pad * kvd), 0.0f);    // [S_pad, r + rope] the context's latents
  std::vector<float> ctx_t(static_cast<size_t>(kvd * S_pad), 0.0f);  // [r + rope, S_pad] the same, transposed
  pool_.parallel_for(S, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const float* src = s.cache->slot(cache, layer, j);
      std::memcpy(&ctx[size_t(j * kvd)], src, size_t(kvd) * sizeof(float));
      for (int64_t k = 0; k < kvd; ++k) ctx_t[size_t(k * S_pad + j)] = src[k];
    }
  }, 64);

  // Query tiles of at most kCausalTile tokens, and the score matrix ([tile·H, S_pad]) bounded to
  // about 32 MiB. A tile scores only the positions its last query can see, rounded up to 64
  // (S_tile): a prompt's tiles then skip the future half of the chunk's causal square (one
  // tile for the whole chunk scored and summed it all, then masked it).
  constexpr int64_t kCausalTile = 64;
  const int64_t tile = std::clamp<int64_t>((int64_t(8) << 20) / (H * S_pad), 1, std::min(n, kCausalTile));
  std::vector<float> qcat, scores, lat;
  for (int64_t i0 = 0; i0 < n; i0 += tile) {
    const int64_t m = std::min(tile, n - i0), rows = m * H;
    const int64_t S_tile = std::min(S_pad, (p0 + i0 + m + 63) / 64 * 64);
    qcat.assign(size_t(rows * kvd), 0.0f);  // [m, H, r + rope]: W_UK_hᵀ q_nope_h ‖ q_pe_h
    pool_.parallel_for(H, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        const float* q = &ws.q[size_t(((s.first + i0) * H + h) * qk)];
        matmul_rows(A.k_b_proj, h * r, (h + 1) * r, q, H * qk, m, &qcat[size_t(h * kvd)], H * kvd, pool_);
        for (int64_t i = 0; i < m; ++i)
          std::memcpy(&qcat[size_t((i * H + h) * kvd + r)], q + i * H * qk + nope, size_t(rope) * sizeof(float));
      }
    });
    // Both products go through the register-tiled GEMM (sgemm.h): every sum still runs over k
    // in order, so the result does not depend on the tile or the number of rows.
    scores.resize(size_t(rows * S_tile));  // [m·H, S_tile] = qcat · ctxᵀ
    sgemm(SgemmArgs{rows, S_tile, kvd, qcat.data(), kvd, ctx_t.data(), S_pad, scores.data(), S_tile, false}, pool_);
    pool_.parallel_for(rows, [&](int64_t a, int64_t b) {
      for (int64_t row = a; row < b; ++row) {
        const int64_t i = i0 + row / H, n_ctx = p0 + i + 1;
        float* sc = &scores[size_t(row * S_tile)];
        for (int64_t j = 0; j < n_ctx; ++j) sc[j] *= rope_.softmax_scale;
        if (!sel.empty() && !sel[size_t(i)].empty()) {  // unselected positions get probability 0
          std::vector<float> kept(static_cast<size_t>(n_ctx), -std::numeric_limits<float>::infinity());
          for (int32_t j : sel[size_t(i)]) kept[size_t(j)] = sc[j];
          std::copy(kept.begin(), kept.end(), sc);
        }
        softmax(sc, n_ctx);
        std::fill(sc + n_ctx, sc + S_tile, 0.0f);
      }
    }, 16);
    lat.resize(size_t(rows * r));  // [m, H, r] attention-weighted latents
    sgemm(SgemmArgs{rows, r, S_tile, scores.data(), S_tile, ctx.data(), kvd, lat.data(), r, false}, pool_);  // scores · c_kv
    pool_.parallel_for(H, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h)
        matmul_rows(A.v_b_proj, h * dv, (h + 1) * dv, &lat[size_t(h * r)], H * r, m,
                    &ws.attn[size_t(((s.first + i0) * H + h) * dv)], H * dv, pool_);
    });
  }
}

}  // namespace whale
