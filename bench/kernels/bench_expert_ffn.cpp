// Benchmark of the CPU kernel library against the machine's own limits: streaming read bandwidth
// (1 GiB buffer), OpenBLAS sgemm GFLOP/s, and expert_ffn (Mixtral-like shape, top-2 of 8, gated
// SiLU) at T = 1, 32, 512, 2048 for f32 and bf16 weights, bf16 weights also on each bf16
// MatmulPath this build enables (avx512_bf16, amx_bf16); fp8 (block-scaled e4m3, 128 x 128
// blocks) and mxfp4 (OCP MXFP4: e2m1 codes with an e8m0 scale per 32, around 2^-6) weights on
// request. Timings only; correctness lives in test_expert_ffn.cpp. Usage: bench_expert_ffn
// [threads=2] [D=1024] [F=3584] [Ts=1,32,512,2048] [dtypes=f32,bf16,fp8,mxfp4]
// [paths=fma_f32,avx512_bf16,amx_bf16] [experts=8] [top_k=2] (Qwen3-30B-A3B: 2 2048 768 512 bf16
// amx_bf16 128 8; gpt-oss-20b's experts: 2 2880 2880 1,8,32,512 bf16,fp8,mxfp4 avx512_bf16 32 4)
// Tiles: each path's as mixtilec emits them for T tokens (its tuning table, passes/tuning/*.json;
// bench_common.h, compiler_tiles). Env: MIXTILE_TILES=mc,kc,nc,small_m_max[,engine_kc[,engine_mc[,
// small_prefetch_rows[,engine_stream_rows[,engine_panel_rows[,small_group_rows[,small_prefetch_l2_bytes]]]]]]]
// overrides them on every path (e.g. small_m_max 0 forces the engines, 1000000 the GEMV path: how
// the small_m_max crossover is measured). MIXTILE_BENCH_COLD=1 evicts the caches before every timed call (by
// default only for T <= 32), as a layer of a model whose weights exceed the L3 sees them.
// MIXTILE_BENCH_OFFSET=8 puts bf16 weights 8 bytes past a cache line, as in a checkpoint.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench/kernels/bench_common.h"
#include "bench/machine_limits.h"
#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

template <class T>
T *alloc_array(size_t n) {
  return static_cast<T *>(std::aligned_alloc(64, (n * sizeof(T) + 63) / 64 * 64));
}

bool cold_always() {
  static const bool cold = [] {
    const char *e = std::getenv("MIXTILE_BENCH_COLD");
    return e != nullptr && std::strcmp(e, "1") == 0;
  }();
  return cold;
}

double measure_sgemm(int threads, int M, int N, int K, double *seconds) {
  openblas_set_num_threads(threads);
  float *a = alloc_array<float>(size_t(M) * K), *b = alloc_array<float>(size_t(N) * K),
        *c = alloc_array<float>(size_t(M) * N);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  for (size_t i = 0; i < size_t(M) * K; ++i) a[i] = u(rng);
  for (size_t i = 0; i < size_t(N) * K; ++i) b[i] = u(rng);
  double best = 1e30;
  for (int rep = 0; rep < 6; ++rep) {
    auto t0 = Clock::now();
    // C = A · Bᵀ with B stored [N, K]: the layout of a torch.nn.Linear weight.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
    best = std::min(best, seconds_since(t0));
  }
  std::free(a);
  std::free(b);
  std::free(c);
  *seconds = best;
  return 2.0 * M * N * K / best / 1e9;
}

struct Routing {
  std::vector<int32_t> offsets, tokens;
  std::vector<float> gates;
  int active_experts = 0;
};

// Fixed pseudo-random top-2: token t picks two distinct experts from an LCG stream seeded by `seed`.
Routing route(int64_t T, int E, int k, uint32_t seed) {
  std::vector<std::vector<std::pair<int32_t, float>>> per(E);
  uint32_t s = seed * 2654435761u + 12345u;
  auto next = [&] { s = s * 1664525u + 1013904223u; return s >> 8; };
  for (int64_t t = 0; t < T; ++t) {
    int chosen[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
    float wsum = 0;
    float w[8];
    for (int j = 0; j < k; ++j) {
      int e;
      do {
        e = next() % E;
      } while (std::find(chosen, chosen + j, e) != chosen + j);
      chosen[j] = e;
      w[j] = 0.5f + (next() % 1000) / 1000.0f;
      wsum += w[j];
    }
    for (int j = 0; j < k; ++j) per[chosen[j]].push_back({static_cast<int32_t>(t), w[j] / wsum});
  }
  Routing r;
  r.offsets.assign(E + 1, 0);
  for (int e = 0; e < E; ++e) {
    for (auto &p : per[e]) r.tokens.push_back(p.first), r.gates.push_back(p.second);
    r.offsets[e + 1] = static_cast<int32_t>(r.tokens.size());
    r.active_experts += per[e].empty() ? 0 : 1;
  }
  return r;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// Nearest e4m3 code of v (|v| <= 448), ties away from zero (enough for a benchmark's data).
uint8_t to_e4m3(float v) {
  const uint8_t sign = v < 0 ? 0x80 : 0;
  const float a = std::fabs(v);
  if (a < 1.0f / 64) return sign | static_cast<uint8_t>(std::lround(a * 512.0f));  // subnormal (8: 2^-6)
  int e = static_cast<int>(std::floor(std::log2(a)));
  long m = std::lround((a / std::ldexp(1.0f, e) - 1.0f) * 8.0f);
  if (m == 8) m = 0, ++e;
  return sign | static_cast<uint8_t>(std::min(e + 7, 15) << 3) | static_cast<uint8_t>(e + 7 > 15 ? 6 : m);
}

struct Experts {
  std::vector<const void *> gate, up, down;
  std::vector<const float *> gate_s, up_s, down_s;  // fp8: 128 x 128 block scales
  std::vector<const uint8_t *> gate_mx, up_mx, down_mx;  // mxfp4: e8m0 scales [rows, depth / 32]
  std::vector<void *> owned;
};

Experts make_experts(int E, int64_t D, int64_t F, WeightType w) {
  Experts ex;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  const float sd = 1.0f / std::sqrt(static_cast<float>(D)), sf = 1.0f / std::sqrt(static_cast<float>(F));
  auto make = [&](int64_t n, float scale) -> const void * {
    void *p;
    if (w == WeightType::mxfp4) {
      // Random codes, two a byte (every e2m1 value equally likely).
      uint8_t *c = alloc_array<uint8_t>(n / 2);
      for (int64_t i = 0; i < n / 2; ++i) c[i] = static_cast<uint8_t>(rng() & 0xff);
      p = c;
    } else if (w == WeightType::fp8_e4m3) {
      // The codes of uniform values over +-0.9 of each block's range, as a fine-grained fp8
      // checkpoint quantizes (scale = block max / 448; subnormal codes as rare as there), with
      // scales of 1/448 of the target range below.
      uint8_t *c = alloc_array<uint8_t>(n);
      for (int64_t i = 0; i < n; ++i) c[i] = to_e4m3(u(rng) * 403.0f);
      p = c;
    } else if (w == WeightType::f32) {
      float *f = alloc_array<float>(n);
      for (int64_t i = 0; i < n; ++i) f[i] = u(rng) * scale;
      p = f;
    } else {
      // MIXTILE_BENCH_OFFSET=B (bytes, even): bf16 weights B bytes past a 64-byte line, as a
      // checkpoint's tensors lie (safetensors aligns its data to 8 bytes).
      static const int64_t offset = [] {
        const char *e = std::getenv("MIXTILE_BENCH_OFFSET");
        return e != nullptr ? std::clamp<int64_t>(std::atoll(e), 0, 62) / 2 : int64_t(0);
      }();
      uint16_t *base = alloc_array<uint16_t>(n + 32);
      ex.owned.push_back(base);
      uint16_t *h = base + offset;
      for (int64_t i = 0; i < n; ++i) h[i] = to_bf16(u(rng) * scale);
      return static_cast<const void *>(h);
    }
    ex.owned.push_back(p);
    return p;
  };
  auto scales = [&](int64_t rows, int64_t cols, float scale) -> const float * {
    const int64_t n = ((rows + 127) / 128) * ((cols + 127) / 128);
    float *s = alloc_array<float>(n);
    for (int64_t i = 0; i < n; ++i) s[i] = scale / 448.0f * (1.0f + 0.1f * u(rng));
    ex.owned.push_back(s);
    return s;
  };
  // MXFP4 scales around 2^-6 (gpt-oss's are of that order): 2^-7 .. 2^-5.
  auto mx_scales = [&](int64_t rows, int64_t depth) -> const uint8_t * {
    uint8_t *s = alloc_array<uint8_t>(rows * depth / 32);
    for (int64_t i = 0; i < rows * depth / 32; ++i) s[i] = static_cast<uint8_t>(120 + rng() % 3);
    ex.owned.push_back(s);
    return s;
  };
  for (int e = 0; e < E; ++e) {
    ex.gate.push_back(make(F * D, sd));
    ex.up.push_back(make(F * D, sd));
    ex.down.push_back(make(D * F, sf));
    if (w == WeightType::fp8_e4m3) {
      ex.gate_s.push_back(scales(F, D, sd));
      ex.up_s.push_back(scales(F, D, sd));
      ex.down_s.push_back(scales(D, F, sf));
    }
    if (w == WeightType::mxfp4) {
      ex.gate_mx.push_back(mx_scales(F, D));
      ex.up_mx.push_back(mx_scales(F, D));
      ex.down_mx.push_back(mx_scales(D, F));
    }
  }
  return ex;
}

// Bytes per weight as stored (mxfp4: half a byte of code and 1/32 of a scale byte).
double weight_bytes(WeightType w) {
  return w == WeightType::f32 ? 4.0 : w == WeightType::fp8_e4m3 ? 1.0 : w == WeightType::mxfp4 ? 0.5 + 1.0 / 32 : 2.0;
}

struct Result {
  double seconds, best, weight_bytes, flops;  // seconds: median per call
};

template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
Result bench_ffn(const Experts &ex, int E, int k, int64_t T, int64_t D, int64_t F, int threads, int reps) {
  // Several routings, cycled through, so decode reads different experts call after call instead of
  // re-reading what the previous call left in the 32 MiB L3.
  const int nroutes = T == 1 ? 16 : 2;
  std::vector<Routing> routes;
  for (int i = 0; i < nroutes; ++i) routes.push_back(route(T, E, k, 1000 + i));
  std::vector<float> x(std::max<int64_t>(T, 1) * D), y(std::max<int64_t>(T, 1) * D);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  for (auto &v : x) v = u(rng);
  const TileConfig tiles = mixtile_bench::compiler_tiles("moe_experts", Path, T);  // MIXTILE_TILES on top
  const size_t ws_bytes = expert_ffn_workspace_size(T * k, E, D, F, threads, tiles, Path, W);
  void *ws = std::aligned_alloc(64, (ws_bytes + 63) / 64 * 64 + 64);
  std::memset(ws, 0, ws_bytes);
  std::vector<double> times;
  double bytes = 0, flops = 0;
  int calls = 0;
  for (int rep = -1; rep < reps; ++rep) {
    const Routing &r = routes[(rep + 1) % nroutes];
    ExpertFFNProblem p;
    p.num_experts = E;
    p.hidden = D;
    p.inter = F;
    p.x = x.data();
    p.offsets = r.offsets.data();
    p.tokens = r.tokens.data();
    p.gates = r.gates.data();
    p.gate_w = ex.gate.data();
    p.up_w = ex.up.data();
    p.down_w = ex.down.data();
    if (W == WeightType::fp8_e4m3) {
      p.gate_scale = ex.gate_s.data();
      p.up_scale = ex.up_s.data();
      p.down_scale = ex.down_s.data();
      p.scale_block_rows = p.scale_block_cols = 128;
    }
    if (W == WeightType::mxfp4) {
      p.gate_mx_scale = ex.gate_mx.data();
      p.up_mx_scale = ex.up_mx.data();
      p.down_mx_scale = ex.down_mx.data();
    }
    p.y = y.data();
    p.out_rows = r.tokens.data();
    p.zero_rows = T;
    p.workspace = ws;
    p.num_threads = threads;
    // Decode-like calls, and every call under MIXTILE_BENCH_COLD=1 (a model's experts, gigabytes,
    // never stay in cache between layers): expert weights come from DRAM.
    if (T <= 32 || cold_always()) mixtile_bench::evict_caches(threads, size_t(64) << 20);
    auto t0 = Clock::now();
    expert_ffn<W, Activation::silu, true, Path>(p, tiles);
    const double s = seconds_since(t0);
    if (rep < 0) continue;  // warm-up (page faults of the workspace, thread pool start)
    times.push_back(s);
    ++calls;
    bytes += 3.0 * D * F * weight_bytes(W) * r.active_experts;
    flops += 2.0 * 3.0 * D * F * static_cast<double>(r.tokens.size());
  }
  std::free(ws);
  // Median: robust against the occasional descheduled call on a shared 2-core VM.
  std::sort(times.begin(), times.end());
  if (std::getenv("MIXTILE_BENCH_VERBOSE"))
    std::printf("  T=%ld min %.3f ms median %.3f ms max %.3f ms\n", (long)T, times.front() * 1e3,
                times[times.size() / 2] * 1e3, times.back() * 1e3);
  return {times[times.size() / 2], times.front(), bytes / calls, flops / calls};
}

// The loop a compiler would emit without this library: gather, dot products, scatter-add.
double naive_ffn_seconds(const Experts &ex, int E, int64_t T, int64_t D, int64_t F) {
  Routing r = route(T, E, 2, 1000);
  std::vector<float> x(T * D, 0.5f), y(T * D, 0.0f), h(F);
  auto t0 = Clock::now();
  for (int e = 0; e < E; ++e) {
    const float *g = static_cast<const float *>(ex.gate[e]), *u = static_cast<const float *>(ex.up[e]),
                *d = static_cast<const float *>(ex.down[e]);
    for (int32_t a = r.offsets[e]; a < r.offsets[e + 1]; ++a) {
      const float *xr = x.data() + int64_t(r.tokens[a]) * D;
      for (int64_t f = 0; f < F; ++f) {
        float sg = 0, su = 0;
        for (int64_t j = 0; j < D; ++j) sg += xr[j] * g[f * D + j], su += xr[j] * u[f * D + j];
        h[f] = sg / (1.0f + std::exp(-sg)) * su;
      }
      float *yr = y.data() + int64_t(r.tokens[a]) * D;
      for (int64_t j = 0; j < D; ++j) {
        float s = 0;
        for (int64_t f = 0; f < F; ++f) s += h[f] * d[j * F + f];
        yr[j] += r.gates[a] * s;
      }
    }
  }
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char **argv) {
  mixtile_bench::use_openblas_avx512_kernels(argv);
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const int64_t D = argc > 2 ? std::atoll(argv[2]) : 1024, F = argc > 3 ? std::atoll(argv[3]) : 3584;
  const int E = argc > 7 ? std::atoi(argv[7]) : 8, k = argc > 8 ? std::atoi(argv[8]) : 2;
  if (E < 1 || k < 1 || k > 8 || k > E) {
    std::fprintf(stderr, "bench_expert_ffn: need 1 <= top_k <= min(8, experts)\n");
    return 1;
  }
  const std::vector<int64_t> Ts = mixtile_bench::int_list(argc > 4 ? argv[4] : "1,32,512,2048");
  const std::string dtypes = argc > 5 ? argv[5] : "f32,bf16";
  const std::string path_list = argc > 6 ? argv[6] : "fma_f32,avx512_bf16,amx_bf16";
  std::vector<MatmulPath> bf16_paths;
  if (path_list.find("fma_f32") != std::string::npos) bf16_paths.push_back(MatmulPath::fma_f32);
#if defined(MIXTILE_HAVE_AVX512_BF16)
  if (path_list.find("avx512_bf16") != std::string::npos) bf16_paths.push_back(MatmulPath::avx512_bf16);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (path_list.find("amx_bf16") != std::string::npos) {
    if (amx_ready()) bf16_paths.push_back(MatmulPath::amx_bf16);
    else std::printf("amx_bf16: the OS refuses AMX tiles, skipped\n");
  }
#endif
  std::vector<WeightType> wts;
  if (dtypes.find("f32") != std::string::npos) wts.push_back(WeightType::f32);
  if (dtypes.find("bf16") != std::string::npos) wts.push_back(WeightType::bf16);
  if (dtypes.find("fp8") != std::string::npos) wts.push_back(WeightType::fp8_e4m3);
  if (dtypes.find("mxfp4") != std::string::npos) {
    if (D % 32 != 0 || F % 32 != 0) {
      std::fprintf(stderr, "bench_expert_ffn: mxfp4 needs D and F to be multiples of 32\n");
      return 1;
    }
    wts.push_back(WeightType::mxfp4);
  }

  // Bandwidth before and after the kernels (best of both): the host may be shared.
  double bw = mixtile_bench::measure_read_bandwidth(threads).median_gbs;
  struct Row {
    WeightType w;
    MatmulPath path;
    int64_t T;
    Result r;
  };
  std::vector<Row> rows;
  double naive_s = 0;
  for (WeightType w : wts) {
    Experts ex = make_experts(E, D, F, w);
    const std::vector<MatmulPath> paths =
        w == WeightType::f32 ? std::vector<MatmulPath>{MatmulPath::fma_f32} : bf16_paths;
    for (MatmulPath path : paths) {
      for (int64_t T : Ts) {
        const int reps = T == 1 ? 64 : T <= 32 ? 16 : T <= 512 ? 7 : 5;
        Result r{};
        if (w == WeightType::f32) {
          r = bench_ffn<WeightType::f32>(ex, E, k, T, D, F, threads, reps);
        } else if (w == WeightType::mxfp4) {
          if (path == MatmulPath::fma_f32) r = bench_ffn<WeightType::mxfp4>(ex, E, k, T, D, F, threads, reps);
#if defined(MIXTILE_HAVE_AVX512_BF16)
          if (path == MatmulPath::avx512_bf16)
            r = bench_ffn<WeightType::mxfp4, MatmulPath::avx512_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
          if (path == MatmulPath::amx_bf16)
            r = bench_ffn<WeightType::mxfp4, MatmulPath::amx_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
        } else if (w == WeightType::fp8_e4m3) {
          if (path == MatmulPath::fma_f32) r = bench_ffn<WeightType::fp8_e4m3>(ex, E, k, T, D, F, threads, reps);
#if defined(MIXTILE_HAVE_AVX512_BF16)
          if (path == MatmulPath::avx512_bf16)
            r = bench_ffn<WeightType::fp8_e4m3, MatmulPath::avx512_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
          if (path == MatmulPath::amx_bf16)
            r = bench_ffn<WeightType::fp8_e4m3, MatmulPath::amx_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
        } else if (path == MatmulPath::fma_f32) {
          r = bench_ffn<WeightType::bf16>(ex, E, k, T, D, F, threads, reps);
#if defined(MIXTILE_HAVE_AVX512_BF16)
        } else if (path == MatmulPath::avx512_bf16) {
          r = bench_ffn<WeightType::bf16, MatmulPath::avx512_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
        } else if (path == MatmulPath::amx_bf16) {
          r = bench_ffn<WeightType::bf16, MatmulPath::amx_bf16>(ex, E, k, T, D, F, threads, reps);
#endif
        }
        rows.push_back({w, path, T, r});
      }
    }
    if (w == WeightType::f32 && std::find(Ts.begin(), Ts.end(), 32) != Ts.end())
      naive_s = naive_ffn_seconds(ex, E, 32, D, F);
    for (void *p : ex.owned) std::free(p);
  }
  bw = std::max(bw, mixtile_bench::measure_read_bandwidth(threads).median_gbs);
  // OpenBLAS last: its worker threads keep spinning after a call and would steal our cores.
  double sgemm_s = 1;
  const double sgemm = measure_sgemm(threads, 512, static_cast<int>(F), static_cast<int>(D), &sgemm_s);

  std::printf("threads %d, D %ld, F %ld, E %d, top-%d, gated SiLU, scatter-add with gates\n", threads, (long)D,
              (long)F, E, k);
  std::printf("tiles: mixtilec's for each path and T (fma_f32: %s.json, avx512_bf16: cpu-avx512_bf16.json, amx_bf16: "
              "cpu-amx_bf16.json)%s; f32 microkernel MR %d NR %d\n",
              mixtile_bench::tuning_table_name(MatmulPath::fma_f32).c_str(),
              std::getenv("MIXTILE_TILES") ? ", MIXTILE_TILES on top" : "", kMicroRows, kMicroCols);
  std::printf("read bandwidth (1 GiB, %d threads, bench/machine_limits.h, median pass): %.1f GB/s\n", threads, bw);
  std::printf("%s, core %s\n", openblas_get_config(), openblas_get_corename());
  std::printf("OpenBLAS sgemm M=512 N=%ld K=%ld (C = A·Bᵀ): %.1f GFLOP/s (%.2f ms)\n", (long)F, (long)D, sgemm,
              sgemm_s * 1e3);
  std::printf("\n%-5s %-12s %-5s %9s %9s %11s %9s %9s %9s %8s\n", "dtype", "path", "T", "median ms", "best ms",
              "weight GB/s", "BW ratio", "GFLOP/s", "vs sgemm", "experts");
  const char *path_names[] = {"fma_f32", "avx512_bf16", "amx_bf16"};
  double f32_decode = 0, bf16_decode = 0;
  for (const Row &row : rows) {
    const Result &r = row.r;
    const bool f32 = row.w == WeightType::f32;
    const char *dtype = f32                              ? "f32"
                        : row.w == WeightType::bf16      ? "bf16"
                        : row.w == WeightType::fp8_e4m3 ? "fp8"
                                                         : "mxfp4";
    const double elem = weight_bytes(row.w);
    if (row.T == 1 && row.path == MatmulPath::fma_f32 && (f32 || row.w == WeightType::bf16))
      (f32 ? f32_decode : bf16_decode) = r.seconds;
    const double gbs = r.weight_bytes / r.seconds / 1e9, gf = r.flops / r.seconds / 1e9;
    std::printf("%-5s %-12s %-5ld %9.3f %9.3f %11.1f %9.2f %9.1f %9.2f %8.1f\n", dtype,
                path_names[static_cast<int>(row.path)], (long)row.T, r.seconds * 1e3, r.best * 1e3, gbs, gbs / bw, gf,
                gf / sgemm,
                r.weight_bytes / (3.0 * D * F * elem));
  }
  if (naive_s > 0) std::printf("naive single-thread loop, f32 T=32: %.1f ms\n", naive_s * 1e3);
  if (f32_decode > 0 && bf16_decode > 0)
    std::printf("bf16 / f32 decode time: %.2f\n", bf16_decode / f32_decode);
  std::printf("(BW ratio: active experts' weight bytes / median time / read bandwidth; vs sgemm: GFLOP/s at\n"
              " the median over OpenBLAS sgemm GFLOP/s)\n");
  return 0;
}
