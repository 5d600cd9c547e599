// Prefill attention of the CPU kernel library (model.h `attention`) on one shape: a prompt of S
// tokens of one sequence written into an empty bf16 KV cache, on the f32 tiles (fma_f32), on AMX
// tiles (amx_bf16) where the build and the host have AMX, and on VDPBF16PS (avx512_bf16) where the
// build has AVX512-BF16. Prints one JSON object per path with the times of every call (ms) and its
// output's relative L2 difference from the f32 path's. Timings only; correctness lives in
// test_model_kernels.cpp. Used by bench/cpu_attention.py, which runs PyTorch beside it.
// Usage: bench_attention S HEADS KV_HEADS HEAD_DIM [V_HEAD_DIM=HEAD_DIM] [REPS=3] [THREADS=2]
#include <omp.h>

#include <algorithm>
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

struct Problem {
  AttentionConfig c;
  std::vector<double> inv_freq;
  int64_t S;
  std::vector<float> q, k, v;
  std::vector<int32_t> positions, sequences;
  std::vector<uint16_t> k_cache, v_cache;
};

template <MatmulPath Path>
std::vector<double> run(Problem &p, int reps, int threads, std::vector<float> &out) {
  const size_t ws = attention_workspace_size(p.c, p.S, p.S, threads, Path);
  void *workspace = std::aligned_alloc(64, (ws + 63) / 64 * 64);
  std::vector<double> ms;
  for (int r = -1; r < reps; ++r) {  // r = -1: warm-up (page faults, thread pool)
    const double t0 = now();
    const int rc = attention<WeightType::bf16, Path>(p.c, p.S, p.q.data(), p.k.data(), p.v.data(), nullptr,
                                                     p.positions.data(), p.sequences.data(), 1, p.S, p.k_cache.data(),
                                                     p.v_cache.data(), out.data(), workspace, threads);
    const double t = (now() - t0) * 1e3;
    if (rc != 0) {
      std::fprintf(stderr, "bench_attention: attention returned %d\n", rc);
      std::exit(1);
    }
    if (r >= 0) ms.push_back(t);
  }
  std::free(workspace);
  return ms;
}

void print(const char *path, const std::vector<double> &ms, double diff) {
  std::printf("{\"path\": \"%s\", \"ms\": [", path);
  for (size_t i = 0; i < ms.size(); ++i) std::printf("%s%.4f", i ? ", " : "", ms[i]);
  std::printf("], \"rel_l2_vs_fma_f32\": %.3g}\n", diff);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_attention S HEADS KV_HEADS HEAD_DIM [V_HEAD_DIM] [REPS] [THREADS]\n");
    return 1;
  }
  Problem p;
  p.S = std::atoll(argv[1]);
  const int64_t heads = std::atoll(argv[2]), kv_heads = std::atoll(argv[3]), dim = std::atoll(argv[4]);
  const int64_t vdim = argc > 5 ? std::atoll(argv[5]) : dim;
  const int reps = argc > 6 ? std::atoi(argv[6]) : 3, threads = argc > 7 ? std::atoi(argv[7]) : 2;
  p.c.heads = heads;
  p.c.kv_heads = kv_heads;
  p.c.head_dim = dim;
  p.c.v_head_dim = vdim;
  p.c.rotary_dim = dim;
  for (int64_t i = 0; i < dim / 2; ++i) p.inv_freq.push_back(std::pow(1e6, -2.0 * i / dim));
  p.c.inv_freq = p.inv_freq.data();
  p.c.softmax_scale = 1.0f / std::sqrt(static_cast<float>(dim));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  p.q.resize(p.S * heads * dim);
  p.k.resize(p.S * kv_heads * dim);
  p.v.resize(p.S * kv_heads * vdim);
  for (auto *t : {&p.q, &p.k, &p.v})
    for (float &x : *t) x = normal(rng);
  for (int64_t t = 0; t < p.S; ++t) {
    p.positions.push_back(static_cast<int32_t>(t));
    p.sequences.push_back(0);
  }
  p.k_cache.assign(p.S * kv_heads * dim, 0);
  p.v_cache.assign(p.S * kv_heads * vdim, 0);
  std::vector<float> ref(p.S * heads * vdim), out(p.S * heads * vdim);
  print("fma_f32", run<MatmulPath::fma_f32>(p, reps, threads, ref), 0.0);
  auto diff = [&] {
    double e = 0, n = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      e += (out[i] - ref[i]) * double(out[i] - ref[i]);
      n += ref[i] * double(ref[i]);
    }
    return std::sqrt(e / n);
  };
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (amx_ready()) {
    const std::vector<double> ms = run<MatmulPath::amx_bf16>(p, reps, threads, out);
    print("amx_bf16", ms, diff());
  }
#endif
#if defined(MIXTILE_HAVE_AVX512_BF16)
  {
    const std::vector<double> ms = run<MatmulPath::avx512_bf16>(p, reps, threads, out);
    print("avx512_bf16", ms, diff());
  }
#endif
  return 0;
}
