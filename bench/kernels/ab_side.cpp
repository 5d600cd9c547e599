// One side of bench/kernels/ab.sh's in-process A/B: the kernel library of one source tree,
// compiled into its own namespace (-Dmixtile=mixtileA or mixtileB) with AB_SIDE naming the entry
// points, so two versions of the kernels run alternately in one process (see ab_main.cpp).
// AB_TILES_ENV names this side's MIXTILE_TILES-style variable (TILES_A / TILES_B).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <type_traits>

#include "codegen/cpu/kernels/kernels.h"

#define AB_CAT2(a, b) a##b
#define AB_CAT(a, b) AB_CAT2(a, b)
#define AB_STR2(a) #a
#define AB_STR(a) AB_STR2(a)

namespace {
using namespace mixtile::cpu;

TileConfig side_tiles(int64_t bucket_rows) {
  TileConfig t = default_tile_config(bucket_rows);
  // Fields in MIXTILE_TILES's order (bench_common.h); read field by field so that a side built
  // from an older tree ignores fields it does not have.
  if (const char *env = std::getenv(AB_STR(AB_TILES_ENV))) {
    int v[15];
    const int n = std::sscanf(env, "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", &v[0], &v[1], &v[2], &v[3], &v[4],
                              &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14]);
    // AB_FIELD_N: &t.<field> where this tree's TileConfig has the field, else nullptr (ab.sh).
    int *fields[] = {&t.mc, &t.kc, &t.nc, &t.small_m_max, &t.engine_kc, &t.engine_mc, &t.small_prefetch_rows,
                     &t.engine_stream_rows, &t.engine_panel_rows, &t.small_group_rows, AB_FIELD_11, AB_FIELD_12,
                     AB_FIELD_13, AB_FIELD_14, AB_FIELD_15};
    for (int i = 0; i < n && i < 15; ++i)
      if (fields[i] != nullptr) *fields[i] = v[i];
  }
  return t;
}

void *grow(void *&buf, size_t &have, size_t need) {
  if (need > have) {
    std::free(buf);
    buf = std::aligned_alloc(64, (need + 63) / 64 * 64);
    have = need;
  }
  return buf;
}
}  // namespace

// y [M, N] = x [M, K] · Wᵀ, bf16 W [N, K], on the fma_f32 path or (dp != 0, AVX512-BF16 builds)
// the avx512_bf16 path.
void AB_CAT(ab_linear_, AB_SIDE)(int64_t M, int64_t K, int64_t N, const float *x, const uint16_t *w, float *y,
                                 int threads, int dp) {
  static TileConfig t = side_tiles(M);
  static void *ws = nullptr;
  static size_t have = 0;
  LinearProblem p;
  p.rows = M, p.in = K, p.out = N, p.x = x, p.w = w, p.y = y, p.num_threads = threads;
#if defined(MIXTILE_HAVE_AVX512_BF16)
  if (dp) {
    p.workspace = grow(ws, have, linear_workspace_size(M, K, N, threads, t, MatmulPath::avx512_bf16) + 64);
    linear<WeightType::bf16, MatmulPath::avx512_bf16>(p, t);
    return;
  }
#else
  (void)dp;
#endif
  p.workspace = grow(ws, have, linear_workspace_size(M, K, N, threads, t, MatmulPath::fma_f32) + 64);
  linear<WeightType::bf16, MatmulPath::fma_f32>(p, t);
}

// Gated SiLU expert FFN, bf16 weights, scatter-add into y (zeroed first), on the fma_f32 path or
// (path 1, AMX builds on AMX hosts) amx_bf16 or (path 2, AVX512-BF16 builds) avx512_bf16.
void AB_CAT(ab_experts_, AB_SIDE)(int E, int64_t D, int64_t F, int64_t T, int64_t rows_per_expert,
                                  const float *x, const int32_t *offsets, const int32_t *tokens, const float *gates,
                                  const void *const *gate_w, const void *const *up_w, const void *const *down_w,
                                  float *y, int threads, int path) {
  static TileConfig t = side_tiles(rows_per_expert);
  static void *ws = nullptr;
  static size_t have = 0;
  ExpertFFNProblem p;
  p.num_experts = E, p.hidden = D, p.inter = F, p.x = x, p.offsets = offsets, p.tokens = tokens, p.gates = gates;
  p.gate_w = gate_w, p.up_w = up_w, p.down_w = down_w, p.y = y, p.out_rows = tokens, p.zero_rows = T;
  p.num_threads = threads;
  // The workspace for bf16 weights on the path, then the call.
  auto run = [&](auto path_constant) {
    constexpr MatmulPath kPath = decltype(path_constant)::value;
    const size_t bytes = expert_ffn_workspace_size(offsets[E], E, D, F, threads, t, kPath, WeightType::bf16);
    p.workspace = grow(ws, have, bytes + 64);
    expert_ffn<WeightType::bf16, Activation::silu, true, kPath>(p, t);
  };
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (path == 1) {
    if (!amx_ready()) {
      std::fprintf(stderr, "ab: this host grants no AMX tiles\n");
      std::exit(1);
    }
    return run(std::integral_constant<MatmulPath, MatmulPath::amx_bf16>{});
  }
#endif
#if defined(MIXTILE_HAVE_AVX512_BF16)
  if (path == 2) return run(std::integral_constant<MatmulPath, MatmulPath::avx512_bf16>{});
#endif
  if (path != 0) {
    std::fprintf(stderr, "ab: this build has no %s path\n", path == 1 ? "amx_bf16" : "avx512_bf16");
    std::exit(1);
  }
  run(std::integral_constant<MatmulPath, MatmulPath::fma_f32>{});
}
