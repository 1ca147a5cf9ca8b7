#include "model/random_checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "formats/safetensors_writer.h"
#include "kernels/indexer.h"
#include "model/param_specs.h"

namespace whale {

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// Deterministic N(0, std) values, filled in parallel chunks with a seed per chunk.
void fill_normal(float* out, int64_t n, float stddev, uint64_t seed, ThreadPool& pool) {
  constexpr int64_t kChunk = 1 << 16;
  pool.parallel_for((n + kChunk - 1) / kChunk, [&](int64_t b, int64_t e) {
    for (int64_t c = b; c < e; ++c) {
      uint64_t s = seed ^ (uint64_t(c) * 0xd1b54a32d192ed03ull);
      const int64_t end = std::min(n, (c + 1) * kChunk);
      for (int64_t i = c * kChunk; i < end; i += 2) {
        const double u1 = (double(splitmix64(s) >> 11) + 0.5) * 0x1.0p-53, u2 = double(splitmix64(s) >> 11) * 0x1.0p-53;
        const double r = std::sqrt(-2.0 * std::log(u1)) * stddev;
        out[i] = float(r * std::cos(2 * M_PI * u2));
        if (i + 1 < end) out[i + 1] = float(r * std::sin(2 * M_PI * u2));
      }
    }
  });
}

struct Planned {
  TensorHeader header;
  const ParamSpec* spec;  // nullptr for a scale tensor, which follows its weight
};

// DeepSeek-V4's released FP8 layout: these projections are FP8 e4m3 with a power-of-two F8_E8M0
// `.scale` per 128x128 tile, the routed experts FP4 (e2m1, I8-packed) with one per 32 values of a
// row; the other matrices (router, compressors, indexer head weights, embedding, head) are BF16.
bool v4_fp8_projection(const std::string& name) {
  for (const char* suffix : {"attn.wq_a.weight", "attn.wq_b.weight", "attn.wkv.weight", "attn.wo_a.weight", "attn.wo_b.weight",
                             "shared_experts.w1.weight", "shared_experts.w2.weight", "shared_experts.w3.weight",
                             "indexer.wq_b.weight"})
    if (name.ends_with(suffix)) return true;
  return false;
}
bool v4_routed_expert(const std::string& name) { return name.find(".ffn.experts.") != std::string::npos; }
std::string v4_scale_name(const std::string& weight) { return weight.substr(0, weight.size() - 7) + ".scale"; }
uint8_t e8m0_of_pow2(float s) {  // s = 2^k exactly
  int e = 0;
  std::frexp(s, &e);
  return uint8_t(e - 1 + 127);
}

}  // namespace

void write_random_checkpoint(const std::string& config_json, const ModelConfig& c, const std::string& out_dir,
                             const RandomCheckpointOptions& o, ThreadPool& pool) {
  WHALE_CHECK(o.dtype == DType::F32 || o.dtype == DType::BF16 || o.dtype == DType::F8_E4M3,
              "random checkpoint: dtype must be F32, BF16 or F8_E4M3");
  if (::mkdir(out_dir.c_str(), 0755) != 0 && errno != EEXIST) fail(out_dir, ": cannot create directory");
  const bool fp8 = o.dtype == DType::F8_E4M3;
  const bool v4 = fp8 && c.shared_kv();  // the released V4 layout (above)
  const int64_t B = 128;

  const std::vector<ParamSpec> specs = hf_param_specs(c);
  std::vector<Planned> plan;
  for (const ParamSpec& s : specs) {
    DType t = o.dtype == DType::F32 ? DType::F32 : DType::BF16;
    if (s.role == ParamRole::Bias || s.role == ParamRole::Hyper || s.role == ParamRole::HyperBase ||
        s.role == ParamRole::HyperScale)
      t = DType::F32;  // mHC parameters and the router bias stay float32, as DeepSeek keeps them
    if (s.role == ParamRole::TokenTable) t = DType::I64;
    if (v4) {
      if (s.role == ParamRole::Linear && v4_routed_expert(s.name) && s.shape[1] % 32 == 0) {
        plan.push_back({{s.name, DType::I8, {s.shape[0], s.shape[1] / 2}}, &s});
        plan.push_back({{v4_scale_name(s.name), DType::E8M0, {s.shape[0], s.shape[1] / 32}}, nullptr});
      } else if (s.role == ParamRole::Linear && (v4_fp8_projection(s.name) || v4_routed_expert(s.name))) {  // FP8 where rows are not FP4 blocks
        plan.push_back({{s.name, DType::F8_E4M3, s.shape}, &s});
        plan.push_back({{v4_scale_name(s.name), DType::E8M0, {(s.shape[0] + B - 1) / B, (s.shape[1] + B - 1) / B}}, nullptr});
      } else {
        plan.push_back({{s.name, t, s.shape}, &s});
      }
      continue;
    }
    if (fp8 && s.role == ParamRole::Linear) t = DType::F8_E4M3;
    plan.push_back({{s.name, t, s.shape}, &s});
    if (t == DType::F8_E4M3)
      plan.push_back({{s.name + "_scale_inv", DType::F32, {(s.shape[0] + B - 1) / B, (s.shape[1] + B - 1) / B}}, nullptr});
  }

  // Shards of at most max_shard_bytes (a weight and its scale stay together).
  std::vector<std::vector<size_t>> shards(1);
  uint64_t in_shard = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    const uint64_t bytes = plan[i].header.nbytes();
    if (plan[i].spec && in_shard > 0 && in_shard + bytes > o.max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(i);
    in_shard += bytes;
  }

  std::vector<float> values, scale;
  std::vector<uint8_t> scale_e8m0;  // V4: the scales as F8_E8M0 bytes
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  for (size_t k = 0; k < shards.size(); ++k) {
    char name[64];
    if (shards.size() == 1) std::snprintf(name, sizeof name, "model.safetensors");
    else std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", k + 1, shards.size());
    std::vector<TensorHeader> headers;
    for (size_t i : shards[k]) {
      headers.push_back(plan[i].header);
      weight_map[plan[i].header.name] = name;
    }
    write_safetensors_streaming(out_dir + "/" + name, headers, [&](size_t j, uint8_t* buf) {
      const Planned& p = plan[shards[k][j]];
      if (!p.spec) {  // the scale computed with the preceding FP8 / FP4 weight
        if (p.header.dtype == DType::E8M0) std::memcpy(buf, scale_e8m0.data(), scale_e8m0.size());
        else std::memcpy(buf, scale.data(), scale.size() * sizeof(float));
        return;
      }
      // Values of the parameter (not of the stored header: an FP4 weight packs two per I8 byte).
      int64_t n = 1;
      for (int64_t d : p.spec->shape) n *= d;
      if (p.spec->role == ParamRole::TokenTable) {  // token t's k-th expert: (t·7 + k) mod E, distinct
        const int64_t K = p.spec->shape[1];
        for (int64_t i = 0; i < n; ++i) {
          const int64_t v = ((i / K) * 7 + i % K) % c.n_routed_experts;
          std::memcpy(buf + 8 * i, &v, 8);
        }
        return;
      }
      values.resize(size_t(n));
      const ParamSpec& s = *p.spec;
      if (s.role == ParamRole::Norm || s.role == ParamRole::HyperScale) std::fill(values.begin(), values.end(), 1.0f);
      else if (s.role == ParamRole::Bias || s.role == ParamRole::HyperBase) std::fill(values.begin(), values.end(), 0.0f);
      else {
        const bool embedding = s.name == "model.embed_tokens.weight" || s.name == "embed.weight";
        const float stddev = embedding ? 1.0f : float(1.0 / std::sqrt(double(s.shape[1])));
        fill_normal(values.data(), n, stddev, o.seed ^ name_hash(s.name), pool);
      }
      switch (p.header.dtype) {
        case DType::F32: std::memcpy(buf, values.data(), size_t(n) * 4); break;
        case DType::BF16:
          pool.parallel_for(n, [&](int64_t b, int64_t e) {
            for (int64_t i = b; i < e; ++i) {
              const uint16_t h = f32_to_bf16(values[size_t(i)]);
              std::memcpy(buf + 2 * i, &h, 2);
            }
          }, 1 << 16);
          break;
        case DType::I8: {  // V4's FP4 experts: e2m1 codes (2c low nibble, 2c+1 high), scale per 32
          const int64_t rows = s.shape[0], cols = s.shape[1];
          scale_e8m0.assign(size_t(rows * (cols / 32)), 0);
          pool.parallel_for(rows, [&](int64_t b, int64_t e) {
            uint8_t codes[32];
            for (int64_t r = b; r < e; ++r)
              for (int64_t k = 0; k < cols / 32; ++k) {
                const float sc = fp4_encode_block(&values[size_t(r * cols + k * 32)], 32, codes);
                scale_e8m0[size_t(r * (cols / 32) + k)] = e8m0_of_pow2(sc);
                auto code = [&](int i) { return codes[i] == 8 ? uint8_t(0) : codes[i]; };  // -0 is stored as 0
                for (int j = 0; j < 16; ++j) buf[r * (cols / 2) + k * 16 + j] = uint8_t(code(2 * j) | (code(2 * j + 1) << 4));
              }
          });
          break;
        }
        case DType::F8_E4M3: {
          const int64_t rows = s.shape[0], cols = s.shape[1], sc = (cols + B - 1) / B;
          scale.assign(size_t(((rows + B - 1) / B) * sc), 0.0f);
          for (int64_t r = 0; r < rows; ++r)
            for (int64_t col = 0; col < cols; ++col) {
              float& m = scale[size_t((r / B) * sc + col / B)];
              m = std::max(m, std::fabs(values[size_t(r * cols + col)]));
            }
          for (float& m : scale) m = std::max(m, 1e-4f) / 448.0f;
          if (v4) {  // power-of-two scales, stored as F8_E8M0
            scale_e8m0.clear();
            for (float& m : scale) {
              m = std::exp2(std::ceil(std::log2(m)));
              scale_e8m0.push_back(e8m0_of_pow2(m));
            }
          }
          pool.parallel_for(rows, [&](int64_t b, int64_t e) {
            for (int64_t r = b; r < e; ++r)
              for (int64_t col = 0; col < cols; ++col)
                buf[r * cols + col] = f32_to_fp8_e4m3(values[size_t(r * cols + col)] / scale[size_t((r / B) * sc + col / B)]);
          });
          break;
        }
        default: break;
      }
    }, {{"format", "pt"}});
  }
  if (shards.size() > 1) {
    nlohmann::ordered_json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}};
    uint64_t total = 0;
    for (const Planned& p : plan) total += p.header.nbytes();
    index["metadata"]["total_size"] = total;
    FILE* f = std::fopen((out_dir + "/model.safetensors.index.json").c_str(), "w");
    if (!f) fail(out_dir, ": cannot write model.safetensors.index.json");
    const std::string text = index.dump(2);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }

  nlohmann::ordered_json cfg = nlohmann::ordered_json::parse(config_json);
  if (v4)
    cfg["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                  {"weight_block_size", {B, B}}, {"scale_fmt", "ue8m0"}, {"expert_dtype", "fp4"}};
  else if (fp8)
    cfg["quantization_config"] = {{"quant_method", "fp8"}, {"fmt", "e4m3"}, {"activation_scheme", "dynamic"},
                                  {"weight_block_size", {B, B}}};
  else cfg.erase("quantization_config");
  FILE* f = std::fopen((out_dir + "/config.json").c_str(), "w");
  if (!f) fail(out_dir, ": cannot write config.json");
  const std::string text = cfg.dump(2) + "\n";
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

}  // namespace whale
