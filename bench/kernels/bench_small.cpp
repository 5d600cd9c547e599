// Microbenchmark of the small-M (GEMV-shaped) path, one phase at a time: phase 1 (gated, K = D,
// N = F) and phase 2 (plain, K = F, N = D) over E experts with M rows each, threads splitting the
// output columns as expert_ffn does; weights evicted from the caches before every call.
// Usage: bench_small [threads=2] [D=1024] [F=3584] [Ms=1,4,8,16] [E=8] [reps=15] [dtypes=f32,bf16]
// [prefetch_rows=TileConfig default] (TileConfig::small_prefetch_rows: software prefetch from this many rows)
// [group_rows=0] (TileConfig::small_group_rows: token rows per block, 0 the kernel's most)
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/kernels/bench_common.h"
#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;
using Clock = std::chrono::steady_clock;

namespace {
TileConfig tiles = default_tile_config();
struct SinkEpilogue {
  float *out;
  int64_t ld;
  void row(int64_t i, int64_t col, int n, const float *v, const float *u) {
    for (int j = 0; j < n; ++j) out[i * ld + col + j] = v[j] + (u ? u[j] : 0.f);
  }
};

template <WeightType W>
void run(int threads, int64_t D, int64_t F, int64_t M, int E, int reps) {
  using WS = WeightStorage<W>;
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<std::vector<WS>> wg(E), wu(E), wd(E);
  auto fill = [&](std::vector<WS> &v, size_t n) {
    v.resize(n);
    for (auto &x : v) {
      const float f = u(rng) * 0.03f;
      if constexpr (W == WeightType::f32) x = f;
      else { uint32_t b; std::memcpy(&b, &f, 4); x = static_cast<uint16_t>(b >> 16); }
    }
  };
  for (int e = 0; e < E; ++e) fill(wg[e], F * D), fill(wu[e], F * D), fill(wd[e], D * F);
  std::vector<float> x(M * D), h(M * F), y(M * D);
  for (auto &v : x) v = u(rng);
  for (auto &v : h) v = u(rng);
  for (int phase = 1; phase <= 2; ++phase) {
    std::vector<double> t;
    for (int r = -1; r < reps; ++r) {
      mixtile_bench::evict_caches(threads, size_t(96) << 20);
      auto t0 = Clock::now();
#pragma omp parallel num_threads(threads)
      {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t c0, c1;
        detail::GemmScratch s{};
        for (int e = 0; e < E; ++e) {
          if (phase == 1) {
            detail::split_columns(F, nt, tid, c0, c1);
            detail::RowSource src{x.data(), D, nullptr, 0};
            SinkEpilogue ep{h.data(), F};
            detail::gemm_small<W, true>(M, D, src, wg[e].data(), wu[e].data(), D, c0, c1, tiles, ep);
          } else {
            detail::split_columns(D, nt, tid, c0, c1);
            detail::RowSource src{h.data(), F, nullptr, 0};
            SinkEpilogue ep{y.data(), D};
            detail::gemm_small<W, false>(M, F, src, wd[e].data(), nullptr, F, c0, c1, tiles, ep);
          }
        }
        (void)s;
      }
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      if (r >= 0) t.push_back(sec);
    }
    std::sort(t.begin(), t.end());
    const double bytes = (phase == 1 ? 2.0 : 1.0) * D * F * sizeof(WS) * E;
    std::printf("%-4s M=%-3ld phase %d: median %7.3f ms best %7.3f ms  %6.1f GB/s (best %6.1f)\n",
                W == WeightType::f32 ? "f32" : "bf16", (long)M, phase, t[t.size() / 2] * 1e3, t[0] * 1e3,
                bytes / t[t.size() / 2] / 1e9, bytes / t[0] / 1e9);
  }
}
}  // namespace

int main(int argc, char **argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t D = argc > 2 ? std::atoll(argv[2]) : 1024, F = argc > 3 ? std::atoll(argv[3]) : 3584;
  const std::vector<int64_t> Ms = mixtile_bench::int_list(argc > 4 ? argv[4] : "1,4,8,16");
  const int E = argc > 5 ? std::atoi(argv[5]) : 8;
  const int reps = argc > 6 ? std::atoi(argv[6]) : 15;
  const std::string dt = argc > 7 ? argv[7] : "f32,bf16";
  if (argc > 8) tiles.small_prefetch_rows = std::atoi(argv[8]);
  if (argc > 9) tiles.small_group_rows = std::atoi(argv[9]);
  for (int64_t M : Ms) {
    if (dt.find("f32") != std::string::npos) run<WeightType::f32>(threads, D, F, M, E, reps);
    if (dt.find("bf16") != std::string::npos) run<WeightType::bf16>(threads, D, F, M, E, reps);
  }
}
