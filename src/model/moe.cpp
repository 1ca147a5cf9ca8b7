// Feed-forward sublayers: the dense SwiGLU MLP and DeepSeekMoE
//   y = Σ_k w_k · Expert_{idx_k}(x) + SharedExperts(x)
// Tokens are grouped per expert so each selected expert's weights are read once per step
// for all tokens routed to it. Every token sums its experts in ascending expert order, so
// its result does not depend on which other tokens share the batch.
#include <algorithm>
#include <cstring>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "model/model.h"
#include "model/workspace.h"

namespace whale {

void Model::dense_ffn(const MLPWeights& w, const float* x, int64_t n_tok, float* out, Workspace& ws) {
  const int64_t inter = w.gate_proj.rows;
  matmul(w.gate_proj, x, n_tok, ws.gate.data(), pool_);  // [n, inter]
  matmul(w.up_proj, x, n_tok, ws.up.data(), pool_);      // [n, inter]
  silu_mul(ws.gate.data(), ws.up.data(), n_tok * inter, ws.gate.data());
  matmul(w.down_proj, ws.gate.data(), n_tok, out, pool_);  // [n, hidden]
}

void Model::moe(const MoEWeights& M, const Router& router, int64_t T, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t D = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok;

  matmul(M.gate, ws.xn.data(), T, ws.router_logits.data(), pool_);  // [T, E]
  for (int64_t t = 0; t < T; ++t)
    router.route(&ws.router_logits[size_t(t * E)], &ws.topk_idx[size_t(t * K)], &ws.topk_weight[size_t(t * K)]);

  std::vector<std::vector<int64_t>> routed(static_cast<size_t>(E));  // expert -> entries t·K + k
  for (int64_t i = 0; i < T * K; ++i) routed[size_t(ws.topk_idx[size_t(i)])].push_back(i);

  std::fill(ws.out.begin(), ws.out.begin() + T * D, 0.0f);
  for (int64_t e = 0; e < E; ++e) {
    const std::vector<int64_t>& entries = routed[size_t(e)];
    if (entries.empty()) continue;
    const int64_t n = int64_t(entries.size());
    for (int64_t i = 0; i < n; ++i)
      std::memcpy(&ws.expert_in[size_t(i * D)], &ws.xn[size_t(entries[size_t(i)] / K * D)], size_t(D) * sizeof(float));
    dense_ffn(M.experts[size_t(e)], ws.expert_in.data(), n, ws.expert_out.data(), ws);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t entry = entries[size_t(i)];
      axpy(ws.topk_weight[size_t(entry)], &ws.expert_out[size_t(i * D)], &ws.out[size_t(entry / K * D)], D);
    }
  }
  if (!M.shared_experts.gate_proj.empty()) {
    dense_ffn(M.shared_experts, ws.xn.data(), T, ws.expert_out.data(), ws);
    for (int64_t i = 0; i < T * D; ++i) ws.out[size_t(i)] += ws.expert_out[size_t(i)];
  }
}

}  // namespace whale
