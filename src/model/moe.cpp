// Feed-forward sublayers: the dense SwiGLU MLP and DeepSeekMoE
//   y = Σ_k w_k · Expert_{idx_k}(x) + SharedExperts(x)
// Tokens are grouped per expert so each selected expert's weights are read once per step
// for all tokens routed to it. Every token sums its experts in ascending expert order, so
// its result does not depend on which other tokens share the batch.
#include <algorithm>
#include <cstring>

#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "kernels/swiglu.h"
#include "model/model.h"
#include "model/workspace.h"

namespace whale {

namespace {
void clamp_swiglu_inputs(float* gate, float* up, int64_t n, float limit) {
  for (int64_t i = 0; i < n; ++i) {
    gate[i] = std::min(gate[i], limit);
    up[i] = std::clamp(up[i], -limit, limit);
  }
}
}  // namespace

void Model::dense_ffn(const MLPWeights& w, const float* x, int64_t n_tok, float* out, Workspace& ws) {
  const int64_t inter = w.gate_proj.rows;
  matmul_batch({{&w.gate_proj, x, n_tok, ws.gate.data()}, {&w.up_proj, x, n_tok, ws.up.data()}}, pool_);  // [n, inter]
  swiglu_forward(ws.gate.data(), ws.up.data(), n_tok * inter, ws.gate.data(), pool_);
  matmul(w.down_proj, ws.gate.data(), n_tok, out, pool_);  // [n, hidden]
}

void Model::moe(const MoEWeights& M, const Router& router, const Batch& batch, Workspace& ws) {
  const ModelConfig& c = config_;
  const int64_t T = int64_t(batch.tokens.size());
  const int64_t D = c.hidden_size, E = c.n_routed_experts, K = c.num_experts_per_tok, I = c.moe_intermediate_size;

  matmul(M.gate, ws.xn.data(), T, ws.router_logits.data(), pool_);  // [T, E]
  for (int64_t t = 0; t < T; ++t) {
    // V4 hash layers: the experts of the input token, fixed (tid2eid); the gate only weights them.
    const int32_t* fixed = M.tid2eid.empty() ? nullptr : &M.tid2eid[size_t(batch.tokens[size_t(t)]) * size_t(K)];
    router.route(&ws.router_logits[size_t(t * E)], &ws.topk_idx[size_t(t * K)], &ws.topk_weight[size_t(t * K)], fixed);
  }

  std::vector<std::vector<int64_t>> routed(static_cast<size_t>(E));  // expert -> entries t·K + k
  for (int64_t i = 0; i < T * K; ++i) routed[size_t(ws.topk_idx[size_t(i)])].push_back(i);

  // Experts in ascending order, in groups of at most `cap` entries (one expert never exceeds T).
  // A group's tokens are gathered expert after expert into expert_in; its experts' gate and up
  // products run as one batch, then their down products as another. The shared experts join
  // the first group.
  const int64_t cap = moe_group_entries(c, T);
  const bool shared = !M.shared_experts.gate_proj.empty();
  std::fill(ws.out.begin(), ws.out.begin() + T * D, 0.0f);
  for (int64_t e0 = 0, group = 0; e0 < E; ++group) {
    std::vector<int64_t> offset;  // rows of expert e0 + k in the group's buffers
    int64_t rows = 0, e1 = e0;
    for (; e1 < E && rows + int64_t(routed[size_t(e1)].size()) <= cap; ++e1) {
      offset.push_back(rows);
      rows += int64_t(routed[size_t(e1)].size());
    }
    std::vector<MatmulJob> gate_up, down;
    for (int64_t e = e0; e < e1; ++e) {
      const std::vector<int64_t>& entries = routed[size_t(e)];
      if (entries.empty()) continue;
      const int64_t n = int64_t(entries.size()), r = offset[size_t(e - e0)];
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(&ws.expert_in[size_t((r + i) * D)], &ws.xn[size_t(entries[size_t(i)] / K * D)], size_t(D) * sizeof(float));
      const MLPWeights& w = M.experts[size_t(e)];
      gate_up.push_back({&w.gate_proj, &ws.expert_in[size_t(r * D)], n, &ws.expert_gate[size_t(r * I)]});  // [n, I]
      gate_up.push_back({&w.up_proj, &ws.expert_in[size_t(r * D)], n, &ws.expert_up[size_t(r * I)]});
      down.push_back({&w.down_proj, &ws.expert_gate[size_t(r * I)], n, &ws.expert_out[size_t(r * D)]});  // [n, D]
    }
    const MLPWeights& s = M.shared_experts;
    const bool with_shared = shared && group == 0;
    if (with_shared) {
      gate_up.push_back({&s.gate_proj, ws.xn.data(), T, ws.gate.data()});  // [T, shared inter]
      gate_up.push_back({&s.up_proj, ws.xn.data(), T, ws.up.data()});
      down.push_back({&s.down_proj, ws.gate.data(), T, ws.shared_out.data()});  // [T, D]
    }
    matmul_batch(gate_up, pool_);
    if (c.swiglu_limit > 0) {  // V4: gate clamped from above, up on both sides, shared experts too
      clamp_swiglu_inputs(ws.expert_gate.data(), ws.expert_up.data(), rows * I, float(c.swiglu_limit));
      if (with_shared) clamp_swiglu_inputs(ws.gate.data(), ws.up.data(), T * s.gate_proj.rows, float(c.swiglu_limit));
    }
    swiglu_forward(ws.expert_gate.data(), ws.expert_up.data(), rows * I, ws.expert_gate.data(), pool_);
    if (with_shared) swiglu_forward(ws.gate.data(), ws.up.data(), T * s.gate_proj.rows, ws.gate.data(), pool_);
    matmul_batch(down, pool_);
    for (int64_t e = e0; e < e1; ++e) {
      const std::vector<int64_t>& entries = routed[size_t(e)];
      for (size_t i = 0; i < entries.size(); ++i)
        axpy(ws.topk_weight[size_t(entries[i])], &ws.expert_out[size_t((offset[size_t(e - e0)] + int64_t(i)) * D)],
             &ws.out[size_t(entries[i] / K * D)], D);
    }
    e0 = e1;
  }
  if (shared)
    for (int64_t i = 0; i < T * D; ++i) ws.out[size_t(i)] += ws.shared_out[size_t(i)];
}

}  // namespace whale
