// Decode steps of multi-head latent attention (model.h `latent_attention`, DeepSeek-V2/V3) over a
// bf16 cache of latents already holding CONTEXT positions per sequence: BATCH tokens, one per
// sequence, each folding kv_b into its query, attending over its cached entries and unfolding.
// Runs the row path (MatmulPath::fma_f32: f32 FMAs on widened entries, heads in groups of up to
// 8) and, where the build has them, the bf16 tile paths (VDPBF16PS, AMX: a token's heads as the
// query rows of tiles), the calls alternating. Prints one JSON object per path with the times of
// every call (ms), the bytes of cache entries read per call and their output's relative L2
// difference from the row path's. Timings only; correctness lives in test_model_kernels.cpp.
// Usage: bench_latent_attention HEADS CONTEXT BATCH [RANK=512] [ROPE=64] [NOPE=128] [V=128]
//        [REPS=5] [THREADS=2]
// DeepSeek-V3: 128 heads; V2-Lite: 16.
#include <omp.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

struct Problem {
  LatentAttentionConfig c;
  std::vector<double> inv_freq;
  int64_t batch, context;
  std::vector<float> q, latent, rope_key;
  std::vector<uint16_t> kv_b, cache;
  std::vector<int32_t> positions, sequences;
};

template <MatmulPath Path>
double call(Problem &p, int threads, std::vector<float> &out) {
  const size_t ws = latent_attention_workspace_size<WeightType::bf16>(p.c, p.batch, p.batch, p.context + 1, threads,
                                                                      default_tile_config(), Path);
  void *workspace = std::aligned_alloc(64, (ws + 63) / 64 * 64);
  const double t0 = now();
  const int rc = latent_attention<WeightType::bf16, Path>(p.c, p.batch, p.q.data(), p.latent.data(), p.rope_key.data(),
                                                          p.kv_b.data(), p.positions.data(), p.sequences.data(),
                                                          p.batch, p.context + 1, p.cache.data(), out.data(),
                                                          workspace, threads);
  const double ms = (now() - t0) * 1e3;
  std::free(workspace);
  if (rc != 0) {
    std::fprintf(stderr, "latent_attention returned %d\n", rc);
    std::exit(1);
  }
  return ms;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s HEADS CONTEXT BATCH [RANK=512] [ROPE=64] [NOPE=128] [V=128] [REPS=5] [THREADS=2]\n",
                 argv[0]);
    return 2;
  }
  auto arg = [&](int i, long fallback) { return argc > i ? std::atol(argv[i]) : fallback; };
  Problem p;
  p.c.heads = arg(1, 128);
  p.context = arg(2, 4096);
  p.batch = arg(3, 1);
  p.c.rank = arg(4, 512);
  p.c.rope_dim = arg(5, 64);
  p.c.nope_dim = arg(6, 128);
  p.c.v_head_dim = arg(7, 128);
  const int reps = static_cast<int>(arg(8, 5)), threads = static_cast<int>(arg(9, 2));
  for (int64_t i = 0; i < p.c.rope_dim / 2; ++i) p.inv_freq.push_back(std::pow(10000.0, -2.0 * i / p.c.rope_dim));
  p.c.inv_freq = p.inv_freq.data();
  p.c.softmax_scale = 1.0f / std::sqrt(static_cast<float>(p.c.nope_dim + p.c.rope_dim));
  const int64_t H = p.c.heads, entry = p.c.rank + p.c.rope_dim;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  p.q.resize(p.batch * H * (p.c.nope_dim + p.c.rope_dim));
  p.latent.resize(p.batch * p.c.rank);
  p.rope_key.resize(p.batch * p.c.rope_dim);
  for (auto *v : {&p.q, &p.latent, &p.rope_key})
    for (float &x : *v) x = normal(rng);
  p.kv_b.resize(H * (p.c.nope_dim + p.c.v_head_dim) * p.c.rank);
  for (uint16_t &x : p.kv_b) x = to_bf16(normal(rng) / std::sqrt(static_cast<float>(p.c.rank)));
  // Each sequence's cache already holds `context` entries; the decode token goes after them.
  p.cache.resize(p.batch * (p.context + 1) * entry);
  for (uint16_t &x : p.cache) x = to_bf16(normal(rng));
  for (int64_t b = 0; b < p.batch; ++b) {
    p.positions.push_back(static_cast<int32_t>(p.context));
    p.sequences.push_back(static_cast<int32_t>(b));
  }
  const double bytes = static_cast<double>(p.batch) * (p.context + 1) * entry * 2;
  std::vector<float> ref(p.batch * H * p.c.v_head_dim), out(ref.size());
  struct Path {
    const char *name;
    double (*run)(Problem &, int, std::vector<float> &);
    std::vector<double> ms;
  };
  std::vector<Path> paths = {{"fma_f32 (row path)", &call<MatmulPath::fma_f32>, {}}};
#if defined(MIXTILE_HAVE_AVX512_BF16)
  paths.push_back({"avx512_bf16", &call<MatmulPath::avx512_bf16>, {}});
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (amx_ready()) paths.push_back({"amx_bf16", &call<MatmulPath::amx_bf16>, {}});
#endif
  std::vector<double> diff(paths.size(), 0.0);
  for (size_t i = 0; i < paths.size(); ++i) {  // warm-up, and each path's output against the row path's
    paths[i].run(p, threads, i == 0 ? ref : out);
    if (i > 0) {
      double num = 0, den = 0;
      for (size_t j = 0; j < ref.size(); ++j) {
        num += (out[j] - ref[j]) * (out[j] - ref[j]);
        den += ref[j] * ref[j];
      }
      diff[i] = std::sqrt(num / den);
    }
  }
  for (int r = 0; r < reps; ++r)
    for (Path &path : paths) path.ms.push_back(path.run(p, threads, out));
  for (size_t i = 0; i < paths.size(); ++i) {
    std::string ms;
    for (double m : paths[i].ms) ms += (ms.empty() ? "" : ", ") + std::to_string(m);
    std::printf("{\"path\": \"%s\", \"heads\": %ld, \"context\": %ld, \"batch\": %ld, \"threads\": %d, "
                "\"cache_bytes_per_call\": %.0f, \"ms\": [%s], \"rel_l2_vs_row_path\": %.2g}\n",
                paths[i].name, static_cast<long>(H), static_cast<long>(p.context), static_cast<long>(p.batch), threads,
                bytes, ms.c_str(), diff[i]);
  }
  return 0;
}
