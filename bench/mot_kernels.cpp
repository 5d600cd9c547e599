// Per-kernel breakdown of a Mixture-of-Tokens layer (token_mix, the batched expert FFN,
// token_emit), called exactly as mixtilec's generated code calls them, and the peer "the two
// expert GEMMs alone" with OpenBLAS on the same already-mixed tokens. Caches are evicted before
// each layer run (as mixtile-run --cold does); every figure is a median over runs. Prints JSON.
// Usage: mot_kernels THREADS B S D E G F RUNS
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;
using Clock = std::chrono::steady_clock;

namespace {

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

float *alloc_floats(size_t n) { return static_cast<float *>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64)); }

void fill_normal(float *p, size_t n, float scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  for (size_t i = 0; i < n; ++i) p[i] = d(rng);
}

// Streams 4x the L3 (256 MiB to 2 GiB), as mixtile-run --cold does, so no weight or activation
// stays in cache.
void evict_caches(int threads) {
  static float *junk = nullptr;
  const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
  const size_t n = std::clamp<size_t>(llc > 0 ? 4 * size_t(llc) : 0, size_t(256) << 20, size_t(2048) << 20) /
                   sizeof(float);
  if (junk == nullptr) {
    junk = alloc_floats(n);
#pragma omp parallel for num_threads(threads)
    for (size_t i = 0; i < n; ++i) junk[i] = 1.0f;
  }
  float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
  for (size_t i = 0; i < n; i += 16) total += junk[i];
  volatile float sink = total;
  (void)sink;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: mot_kernels THREADS B S D E G F RUNS\n");
    return 1;
  }
  const int threads = std::atoi(argv[1]);
  const int64_t B = std::atoll(argv[2]), S = std::atoll(argv[3]), D = std::atoll(argv[4]),
                E = std::atoll(argv[5]), G = std::atoll(argv[6]), F = std::atoll(argv[7]);
  const int runs = std::atoi(argv[8]);
  const int64_t rows = B / G * S;  // mixed tokens per expert
  float *x = alloc_floats(B * S * D), *controller = alloc_floats(E * D);
  float *wi = alloc_floats(E * F * D), *wo = alloc_floats(E * D * F);
  float *mixed = alloc_floats(E * rows * D), *h = alloc_floats(E * rows * D), *y = alloc_floats(B * S * D);
  float *emit = alloc_floats(B * S * E), *logits = alloc_floats(B * S * E), *hidden = alloc_floats(E * rows * F);
  fill_normal(x, B * S * D, 1.0f, 1);
  fill_normal(controller, E * D, 1.0f / std::sqrt(float(D)), 2);
  fill_normal(wi, E * F * D, 1.0f / std::sqrt(float(D)), 3);
  fill_normal(wo, E * D * F, 1.0f / std::sqrt(float(F)), 4);

  std::vector<int32_t> offsets(E + 1);
  for (int64_t e = 0; e <= E; ++e) offsets[e] = static_cast<int32_t>(e * rows);
  std::vector<const void *> up(E), down(E);
  for (int64_t e = 0; e < E; ++e) {
    up[e] = wi + e * F * D;
    down[e] = wo + e * D * F;
  }
  const TileConfig tiles = default_tile_config(rows);
  const size_t ws_bytes = expert_ffn_workspace_size(E * rows, E, D, F, max_threads(), tiles);
  void *workspace = std::aligned_alloc(64, (ws_bytes + 63) / 64 * 64);
  void *mix_ws = std::aligned_alloc(64, (token_mix_workspace_size(B, S, D, E, max_threads()) + 63) / 64 * 64);
  ExpertFFNProblem p;
  p.num_experts = E;
  p.hidden = D;
  p.inter = F;
  p.x = mixed;
  p.offsets = offsets.data();
  p.up_w = up.data();
  p.down_w = down.data();
  p.y = h;
  p.workspace = workspace;
  p.num_threads = threads;

  std::vector<double> mix_t, ffn_t, emit_t, layer_t, blas_serial_t, blas_parallel_t;
  for (int r = 0; r < runs + 1; ++r) {
    evict_caches(threads);
    auto t0 = Clock::now();
    token_mix<WeightType::f32>(B, S, D, E, G, 1.0, false, x, controller, mixed, emit, logits, mix_ws, threads);
    const double a = since(t0);
    t0 = Clock::now();
    expert_ffn<WeightType::f32, Activation::relu, false>(p, tiles);
    const double b = since(t0);
    t0 = Clock::now();
    token_emit(B, S, D, E, G, h, emit, y, threads);
    const double c = since(t0);
    if (r == 0) continue;  // warm-up: page faults of the first touch
    mix_t.push_back(a);
    ffn_t.push_back(b);
    emit_t.push_back(c);
    layer_t.push_back(a + b + c);
  }

  // The same expert FFN engine with the experts split over threads (each thread one call of
  // expert_ffn on its half, single-threaded): what the engine does when F is narrower than a
  // column unit per thread, where its own schedule (F columns over threads) leaves threads idle.
  std::vector<double> by_expert_t;
  {
    std::vector<void *> ws(threads);
    for (int t = 0; t < threads; ++t) {
      const size_t bytes = expert_ffn_workspace_size((E / threads + 1) * rows, E / threads + 1, D, F, 1, tiles);
      ws[t] = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    }
    for (int r = 0; r < runs + 1; ++r) {
      evict_caches(threads);
      auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
      {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t e0 = E * t / n, e1 = E * (t + 1) / n;
        ExpertFFNProblem q = p;
        q.num_experts = e1 - e0;
        q.offsets = offsets.data() + e0;
        q.up_w = up.data() + e0;
        q.down_w = down.data() + e0;
        q.y = h + e0 * rows * D;
        q.workspace = ws[t];
        q.num_threads = 1;
        expert_ffn<WeightType::f32, Activation::relu, false>(q, tiles);
      }
      if (r > 0) by_expert_t.push_back(since(t0));
    }
  }

  // The controller GEMM alone (the first step of token_mix), to split token_mix's time.
  std::vector<double> controller_t;
  for (int r = 0; r < runs + 1; ++r) {
    LinearProblem lp;
    lp.rows = B * S;
    lp.in = D;
    lp.out = E;
    lp.x = x;
    lp.w = controller;
    lp.y = logits;
    lp.workspace = mix_ws;
    lp.num_threads = threads;
    evict_caches(threads);
    auto t0 = Clock::now();
    linear<WeightType::f32>(lp);
    if (r > 0) controller_t.push_back(since(t0));
  }

  // The two expert GEMMs alone on the mixed tokens, with OpenBLAS: (serial) one 2-thread sgemm
  // per expert in turn; (parallel) experts split over OpenMP threads, single-threaded sgemm each.
  auto blas_expert = [&](int64_t e) {
    float *hid = hidden + e * rows * F;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, F, D, 1.0f, mixed + e * rows * D, D,
                wi + e * F * D, D, 0.0f, hid, F);
    for (int64_t i = 0; i < rows * F; ++i) hid[i] = std::max(hid[i], 0.0f);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, D, F, 1.0f, hid, F, wo + e * D * F, F, 0.0f,
                h + e * rows * D, D);
  };
  for (int r = 0; r < runs + 1; ++r) {
    openblas_set_num_threads(threads);
    evict_caches(threads);
    auto t0 = Clock::now();
    for (int64_t e = 0; e < E; ++e) blas_expert(e);
    const double a = since(t0);
    openblas_set_num_threads(1);
    evict_caches(threads);
    t0 = Clock::now();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t e = 0; e < E; ++e) blas_expert(e);
    const double b = since(t0);
    if (r == 0) continue;
    blas_serial_t.push_back(a);
    blas_parallel_t.push_back(b);
  }
  std::printf("{\"controller_gemm_s\": %.6f, \"token_mix_s\": %.6f, \"expert_ffn_s\": %.6f, \"token_emit_s\": %.6f, \"sum_s\": %.6f, \"expert_ffn_split_experts_s\": %.6f, "
              "\"openblas_experts_serial_s\": %.6f, \"openblas_experts_parallel_s\": %.6f}\n",
              median(controller_t), median(mix_t), median(ffn_t), median(emit_t), median(layer_t), median(by_expert_t), median(blas_serial_t),
              median(blas_parallel_t));
  return 0;
}
