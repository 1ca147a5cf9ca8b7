// DeepSeek-V4's attention (V4 reference `Attention`, `Compressor`, `Indexer`).
//
//   q      = rmsnorm_h(wq_b(q_norm(wq_a x)))  per head, weightless;  RoPE on its last 64 dims
//   kv     = RoPE(kv_norm(wkv x))              one key = value vector per token, head_dim wide
//   keys   = the last sliding_window tokens' kv
//          + compressed entries (HCA: all, one per 128 tokens; CSA: the indexer's top-k, one per 4)
//   o_h    = Σ_j softmax_j(scale · q_h·k_j  ∪  sink_h) · k_j, then RoPE⁻¹ at the query's position
//   out    = wo_b concat_g(wo_a_g o_g)         grouped low-rank output, heads in o_groups groups
//
// Sliding layers rotate with rope_theta; CSA / HCA layers with compress_rope_theta and YaRN, for
// every rotation (queries, window keys, entries, indexer).
//
// Caches (kv_pool.h groups, all appended per token like MLA's latents, so chunking, batching,
// prefix reuse and truncation keep working unchanged): every token's kv; for CSA / HCA layers
// every token's compressor inputs (kv and gate + ape, the indexer's too) and the entries,
// computed when the token completing their window arrives. The reference's ring buffer and
// running compressor state are views of these. The kv and the compressor inputs are windowed
// groups: the pool keeps them only for a sequence's last blocks (what the reads below reach
// back to, declared in cache_groups_of), the entries for the whole context.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/attention.h"
#include "kernels/indexer.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "model/workspace.h"

namespace whale {

namespace {

// RoPE on the trailing 2·P dims of a `dim`-wide vector; `inverse` rotates back.
void rope_tail(float* x, int64_t dim, const float* cos, const float* sin, int64_t P, bool inverse = false) {
  if (!inverse) return rope_interleaved(x + dim - 2 * P, cos, sin, P);
  float neg[256];
  for (int64_t i = 0; i < P; ++i) neg[i] = -sin[i];
  rope_interleaved(x + dim - 2 * P, cos, neg, P);
}

}  // namespace

// Entries of the windows that tokens of `s` complete: from the per-token states (kv | gate) of
// the window, and for an overlapping (CSA) compressor the previous window's first halves too.
// Each entry is normed, rotated at its window's first position and stored at its slot.
void Model::compress_entries(const CompressorWeights& C, int64_t m, bool overlap, const BatchSeq& s, int64_t layer,
                             KVPool& cache, size_t state_group, int64_t state_offset, size_t entry_group,
                             int64_t entry_offset, bool index_key) {
  const ModelConfig& c = config_;
  const int64_t d = int64_t(C.norm.size()), width = (overlap ? 2 : 1) * d, P = c.qk_rope_head_dim / 2;
  const int64_t p0 = s.cache->length, p1 = p0 + s.n_tokens;
  const bool official = c.cache_numerics == CacheNumerics::Official;
  std::vector<int64_t> done;  // entries completed by this chunk
  for (int64_t p = p0; p < p1; ++p)
    if ((p + 1) % m == 0) done.push_back((p + 1) / m - 1);
  pool_.parallel_for(int64_t(done.size()), [&](int64_t a, int64_t b) {
    std::vector<const float*> kv, gate;
    std::vector<float> e(static_cast<size_t>(d)), cs(static_cast<size_t>(P)), sn(static_cast<size_t>(P));
    for (int64_t k = a; k < b; ++k) {
      const int64_t j = done[size_t(k)];
      kv.clear();
      gate.clear();
      if (overlap && j > 0)  // the previous window's first half (Ca)
        for (int64_t r = 0; r < m; ++r) {
          const float* st = s.cache->slot(cache, layer, (j - 1) * m + r, state_group) + state_offset;
          kv.push_back(st);
          gate.push_back(st + width);
        }
      for (int64_t r = 0; r < m; ++r) {  // this window (Cb: the second half when overlapping)
        const float* st = s.cache->slot(cache, layer, j * m + r, state_group) + state_offset + (overlap ? d : 0);
        kv.push_back(st);
        gate.push_back(st + width);
      }
      compress_slots(kv.data(), gate.data(), int64_t(kv.size()), d, e.data());
      rmsnorm(e.data(), C.norm.data(), d, float(c.rms_norm_eps), e.data());
      rope_compress_.angles(j * m, cs.data(), sn.data());
      rope_tail(e.data(), d, cs.data(), sn.data(), P);
      if (official && index_key) {
        hadamard_rotate(e.data(), d);
        fp4_round_blocks(e.data(), d);
      } else if (official) {
        fp8_round_blocks(e.data(), d - 2 * P, 64);
      }
      std::memcpy(s.cache->entry(cache, layer, j, entry_group) + entry_offset, e.data(), size_t(d) * sizeof(float));
    }
  });
}

void Model::attention_v4(const AttentionWeights& A, int64_t layer, const Batch& batch, KVPool& cache, Workspace& ws) {
  const ModelConfig& c = config_;
  const SharedKVWeights& V = A.v4;
  const int64_t T = int64_t(batch.tokens.size()), H = c.num_attention_heads, hd = c.head_dim;
  const int64_t P = c.qk_rope_head_dim / 2, ql = c.q_lora_rank, ih = c.index_n_heads, ihd = c.index_head_dim;
  const float eps = float(c.rms_norm_eps);
  // The type from the weights: `layer` is the cache layer, which for the MTP block is not its index.
  const LayerAttention type = V.compressor.empty()         ? LayerAttention::Sliding
                              : V.index_compressor.empty() ? LayerAttention::HCA
                                                           : LayerAttention::CSA;
  const int64_t m = c.compress_rate(type);
  const bool csa = type == LayerAttention::CSA, official = c.cache_numerics == CacheNumerics::Official;
  const std::vector<float>& cos = m > 0 ? ws.ccos : ws.cos;
  const std::vector<float>& sin = m > 0 ? ws.csin : ws.sin;

  // Projections of the normed input: query latent, kv, and the compressors' inputs.
  std::vector<MatmulJob> jobs{{&A.q_a_proj, ws.xn.data(), T, ws.cq.data()}, {&V.wkv, ws.xn.data(), T, ws.kva.data()}};
  std::vector<float> proj;  // [4, T, ...] kv and gate of the compressor, then of the indexer's
  const int64_t cw = (csa ? 2 : 1) * hd, iw = 2 * ihd;
  if (m > 0) {
    proj.resize(size_t(T * (2 * cw + (csa ? 2 * iw : 0))));
    jobs.push_back({&V.compressor.wkv, ws.xn.data(), T, proj.data()});
    jobs.push_back({&V.compressor.wgate, ws.xn.data(), T, proj.data() + T * cw});
    if (csa) {
      jobs.push_back({&V.index_compressor.wkv, ws.xn.data(), T, proj.data() + 2 * T * cw});
      jobs.push_back({&V.index_compressor.wgate, ws.xn.data(), T, proj.data() + 2 * T * cw + T * iw});
      jobs.push_back({&V.index_weights_proj, ws.xn.data(), T, ws.iw.data()});
    }
  }
  matmul_batch(jobs, pool_);
  for (int64_t t = 0; t < T; ++t) rmsnorm(&ws.cq[size_t(t * ql)], A.q_a_layernorm.data(), ql, eps, &ws.cq[size_t(t * ql)]);
  matmul(A.q_b_proj, ws.cq.data(), T, ws.q.data(), pool_);  // [T, H·hd]
  if (csa) matmul(V.index_wq_b, ws.cq.data(), T, ws.iq.data(), pool_);  // [T, ih·ihd]

  pool_.parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* cs = &cos[size_t(t * P)];
      const float* sn = &sin[size_t(t * P)];
      for (int64_t h = 0; h < H; ++h) {
        float* q = &ws.q[size_t((t * H + h) * hd)];
        rmsnorm_unweighted(q, hd, eps);
        rope_tail(q, hd, cs, sn, P);
      }
      float* kv = &ws.kva[size_t(t * hd)];
      rmsnorm(kv, V.kv_norm.data(), hd, eps, kv);
      rope_tail(kv, hd, cs, sn, P);
      if (official) fp8_round_blocks(kv, hd - 2 * P, 64);  // the window cache's FP8 nope part
      if (csa) {
        const float w_scale = float(1.0 / std::sqrt(double(ih)));
        for (int64_t h = 0; h < ih; ++h) {
          float* q = &ws.iq[size_t((t * ih + h) * ihd)];
          rope_tail(q, ihd, &ws.ccos[size_t(t * P)], &ws.csin[size_t(t * P)], P);
          if (official) {
            hadamard_rotate(q, ihd);
            fp4_round_blocks(q, ihd);
          }
          ws.iw[size_t(t * ih + h)] *= w_scale;
        }
      }
    }
  }, 1);

  const size_t g_state = size_t(csa ? v4_.csa_state : v4_.hca_state);
  const size_t g_entry = size_t(csa ? v4_.csa_entries : v4_.hca_entries);
  const int64_t gl = m > 0 ? v4_type_layer_[size_t(layer)] : -1;
  for (const BatchSeq& s : batch.seqs) {
    const int64_t p0 = s.cache->length;
    for (int64_t i = 0; i < s.n_tokens; ++i) {
      const int64_t t = s.first + i, pos = p0 + i;
      std::memcpy(s.cache->slot(cache, layer, pos, size_t(v4_.kv)), &ws.kva[size_t(t * hd)], size_t(hd) * sizeof(float));
      if (m == 0) continue;
      // State row: [kv | gate + ape] of the compressor, then (CSA) of the indexer's.
      float* st = s.cache->slot(cache, gl, pos, g_state);
      const float* ape = &V.compressor.ape[size_t((pos % m) * cw)];
      std::memcpy(st, &proj[size_t(t * cw)], size_t(cw) * sizeof(float));
      for (int64_t k = 0; k < cw; ++k) st[cw + k] = proj[size_t(T * cw + t * cw + k)] + ape[k];
      if (csa) {
        const float* iape = &V.index_compressor.ape[size_t((pos % m) * iw)];
        float* ist = st + 2 * cw;
        std::memcpy(ist, &proj[size_t(2 * T * cw + t * iw)], size_t(iw) * sizeof(float));
        for (int64_t k = 0; k < iw; ++k) ist[iw + k] = proj[size_t(2 * T * cw + T * iw + t * iw + k)] + iape[k];
      }
    }
    if (m > 0) {
      compress_entries(V.compressor, m, csa, s, gl, cache, g_state, 0, g_entry, 0, false);
      if (csa) compress_entries(V.index_compressor, m, true, s, gl, cache, g_state, 2 * cw, g_entry, hd, true);
    }
  }

  // Attention: first each token's keys (its window, its entries: for CSA the indexer's choice),
  // then every (token, band of heads) as one task, so a single decode token still uses every
  // thread. A head's result does not depend on its band (dot_rows / weighted_rows per head).
  const float scale = rope_.softmax_scale;
  for (const BatchSeq& s : batch.seqs) {
    const int64_t p0 = s.cache->length;
    std::vector<std::vector<const float*>> keys(static_cast<size_t>(s.n_tokens));
    pool_.parallel_for(s.n_tokens, [&](int64_t i0, int64_t i1) {
      std::vector<const float*> index_rows;
      std::vector<float> iscore, scratch;
      std::vector<int32_t> picked;
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t t = s.first + i, pos = p0 + i;
        std::vector<const float*>& rows = keys[size_t(i)];
        for (int64_t j = std::max<int64_t>(0, pos - c.sliding_window + 1); j <= pos; ++j)
          rows.push_back(s.cache->slot(cache, layer, j, size_t(v4_.kv)));
        const int64_t n_entries = m > 0 ? (pos + 1) / m : 0;
        if (m > 0 && !csa) {
          for (int64_t j = 0; j < n_entries; ++j) rows.push_back(s.cache->entry(cache, gl, j, g_entry));
        } else if (csa && n_entries > 0) {
          picked.clear();
          if (n_entries <= c.index_topk) {
            for (int64_t j = 0; j < n_entries; ++j) picked.push_back(int32_t(j));
          } else {
            index_rows.clear();
            for (int64_t j = 0; j < n_entries; ++j) index_rows.push_back(s.cache->entry(cache, gl, j, g_entry) + hd);
            iscore.resize(size_t(n_entries));
            scratch.resize(size_t(ih * n_entries));
            index_scores(&ws.iq[size_t(t * ih * ihd)], &ws.iw[size_t(t * ih)], ih, ihd, index_rows.data(), n_entries,
                         float(1.0 / std::sqrt(double(ihd))), scratch.data(), iscore.data());
            top_k_positions(iscore.data(), n_entries, c.index_topk, picked);
          }
          for (int32_t j : picked) rows.push_back(s.cache->entry(cache, gl, j, g_entry));
        }
      }
    });
    const int64_t band = std::max<int64_t>(1, std::min<int64_t>(H, 8));  // heads per task
    const int64_t bands = (H + band - 1) / band;
    pool_.parallel_for(s.n_tokens * bands, [&](int64_t k0, int64_t k1) {
      std::vector<float> scores, probs;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t i = k / bands, h0 = (k % bands) * band, nh = std::min(band, H - h0);
        const int64_t t = s.first + i;
        const std::vector<const float*>& rows = keys[size_t(i)];
        const int64_t n = int64_t(rows.size());
        scores.resize(size_t(nh * n));
        probs.resize(size_t(n * nh));
        dot_rows(&ws.q[size_t((t * H + h0) * hd)], nh, hd, rows.data(), n, hd, scale, scores.data(), n);
        for (int64_t h = 0; h < nh; ++h) {  // softmax over the keys and the head's sink (zero value)
          float* sc = &scores[size_t(h * n)];
          const float sink = V.attn_sink[size_t(h0 + h)];
          float mx = sink;
          for (int64_t j = 0; j < n; ++j) mx = std::max(mx, sc[j]);
          double sum = std::exp(double(sink - mx));
          for (int64_t j = 0; j < n; ++j) sum += std::exp(double(sc[j] - mx));
          for (int64_t j = 0; j < n; ++j) probs[size_t(j * nh + h)] = float(std::exp(double(sc[j] - mx)) / sum);
        }
        float* o = &ws.attn[size_t((t * H + h0) * hd)];
        weighted_rows(probs.data(), nh, rows.data(), n, 0, hd, o, hd);
        for (int64_t h = 0; h < nh; ++h) rope_tail(o + h * hd, hd, &cos[size_t(t * P)], &sin[size_t(t * P)], P, true);
      }
    });
  }

  // Grouped output: heads in o_groups groups, each group's (H/G)·hd values to o_lora_rank, then wo_b.
  const int64_t G = c.o_groups, R = c.o_lora_rank, in_g = H * hd / G;
  for (int64_t g = 0; g < G; ++g)
    matmul_rows(V.wo_a, g * R, (g + 1) * R, ws.attn.data() + g * in_g, H * hd, T, ws.z.data() + g * R, G * R, pool_);
  matmul(V.wo_b, ws.z.data(), T, ws.out.data(), pool_);  // [T, hidden]
}

}  // namespace whale
