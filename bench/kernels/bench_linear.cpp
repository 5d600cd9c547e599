// Microbenchmark of the dense linear kernel (linear.h) on bf16 weights, the shapes of a decode
// step's projections and lm head: y [M, out] = x [M, in] · Wᵀ for M in Ms, weights evicted from
// the caches before every call (a decode step reads them from memory), the kernel's own thread
// split. Reports the median and best time, the weight bytes per second and the GFLOP/s.
// Usage: bench_linear [threads=2] [in=2048] [out=50304] [Ms=1,2,4,8,16,32] [reps=15]
//        [path=native|fma_f32]
// Tiles: mixtilec's for the path and M (its tuning table's linear buckets; bench_common.h,
// compiler_tiles). Env: MIXTILE_TILES on top, as bench_expert_ffn's (mc,kc,nc,small_m_max[,engine_kc[,engine_mc[,
// small_prefetch_rows[,engine_stream_rows[,engine_panel_rows[,small_group_rows[,small_prefetch_l2_bytes]]]]]]]), e.g.
// small_m_max 0 forces the matrix-engine loops, 1000000 the small path. MIXTILE_BENCH_HOT=1 keeps
// the weights in the caches (no eviction): with a matrix that fits in L2 (e.g. 2048 x 256) that
// is the loop's compute-bound rate.
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
template <MatmulPath Path>
void run(int threads, int64_t in, int64_t out, int64_t M, int reps) {
  const TileConfig tiles = mixtile_bench::compiler_tiles("linear", Path, M);  // MIXTILE_TILES on top
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  // 8 bytes off a cache line, as a checkpoint's tensors are.
  std::vector<uint16_t> wbuf(in * out + 64);
  uint16_t *w = wbuf.data() + 4;
  for (int64_t i = 0; i < in * out; ++i) {
    const float f = u(rng) * 0.03f;
    uint32_t b;
    std::memcpy(&b, &f, 4);
    w[i] = static_cast<uint16_t>(b >> 16);
  }
  std::vector<float> x(M * in), y(M * out);
  for (auto &v : x) v = u(rng);
  const size_t ws_bytes = linear_workspace_size(M, in, out, threads, tiles, Path);
  void *ws = std::aligned_alloc(64, (ws_bytes + 63) / 64 * 64 + 64);
  LinearProblem p;
  p.rows = M, p.in = in, p.out = out, p.x = x.data(), p.w = w, p.y = y.data(), p.workspace = ws,
  p.num_threads = threads;
  std::vector<double> t;
  const bool hot = std::getenv("MIXTILE_BENCH_HOT") != nullptr && std::atoi(std::getenv("MIXTILE_BENCH_HOT")) != 0;
  for (int r = -1; r < reps; ++r) {
    if (!hot) mixtile_bench::evict_caches(threads, size_t(128) << 20);
    const auto t0 = Clock::now();
    linear<WeightType::bf16, Path>(p, tiles);
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    if (r >= 0) t.push_back(sec);
  }
  std::free(ws);
  std::sort(t.begin(), t.end());
  const double med = t[t.size() / 2], bytes = 2.0 * in * out, flops = 2.0 * M * in * out;
  std::printf("%-11s %s in=%-5ld out=%-6ld M=%-3ld median %8.3f ms best %8.3f ms  %6.1f GB/s  %6.1f GFLOP/s\n",
              Path == MatmulPath::fma_f32 ? "fma_f32" : "native", hot ? "hot " : "cold", (long)in, (long)out, (long)M, med * 1e3,
              t[0] * 1e3, bytes / med / 1e9, flops / med / 1e9);
}
}  // namespace

int main(int argc, char **argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t in = argc > 2 ? std::atoll(argv[2]) : 2048, out = argc > 3 ? std::atoll(argv[3]) : 50304;
  const std::vector<int64_t> Ms = mixtile_bench::int_list(argc > 4 ? argv[4] : "1,2,4,8,16,32");
  const int reps = argc > 5 ? std::atoi(argv[5]) : 15;
  const std::string path = argc > 6 ? argv[6] : "native";
  for (int64_t M : Ms) {
    if (path == "fma_f32") {
      run<MatmulPath::fma_f32>(threads, in, out, M, reps);
    } else {
#if defined(MIXTILE_HAVE_AMX_BF16)
      amx_ready();
      run<MatmulPath::amx_bf16>(threads, in, out, M, reps);
#elif defined(MIXTILE_HAVE_AVX512_BF16)
      run<MatmulPath::avx512_bf16>(threads, in, out, M, reps);
#else
      run<MatmulPath::fma_f32>(threads, in, out, M, reps);
#endif
    }
  }
}
