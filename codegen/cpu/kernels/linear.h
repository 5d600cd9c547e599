// Dense linear layer of the CPU kernel library: y = x · Wᵀ (+ b) with an optional row gather,
// on the same GEMM engine as the expert FFN. Used for routers, shared experts and MoLoRA bases.
// It owns its OpenMP region; it never accumulates into y (results are plain stores).
//
//   struct LinearProblem { rows, in, out; x [*, in]; row_index [rows] or nullptr; w [out, in];
//                          bias [out] or nullptr; y [rows, out]; workspace; num_threads; };
//   template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
//   void linear(const LinearProblem &p, const TileConfig &t = default_tile_config());
//   size_t linear_workspace_size(rows, in, out, num_threads, tiles, path = MatmulPath::fma_f32);
// The bf16 paths (bf16 weights, builds with the instructions) pack the gathered x rows to bf16
// VNNI token blocks and run matrix_engines.h's loops when rows > tiles.small_m_max; fewer rows
// take the fma_f32 path (its scratch is part of the bf16 paths' workspace), or on avx512_bf16
// dp_small on the rows rounded to bf16. The fma_f32 path itself takes dp_small for bf16 weights
// from tiles.small_dp_rows rows (when set, and the build has AVX512-BF16).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "gemm.h"
#include "matrix_engines.h"

namespace mixtile::cpu {

struct LinearProblem {
  int64_t rows = 0, in = 0, out = 0;
  const float *x = nullptr;            // [*, in]
  const int32_t *row_index = nullptr;  // [rows]: x row of output row m; nullptr => m
  const void *w = nullptr;             // [out, in], f32 or uint16_t bits
  const float *bias = nullptr;         // [out] or nullptr
  float *y = nullptr;                  // [rows, out]
  void *workspace = nullptr;           // >= linear_workspace_size(...) bytes, 64-byte aligned
  int num_threads = 0;                 // <= 0: omp_get_max_threads()
};

namespace detail {
// Whether an fma_f32 call of `rows` rows with bf16 weights takes dp_small (TileConfig::small_dp_rows).
inline bool linear_small_dp(int64_t rows, const TileConfig &t) {
  return t.small_dp_rows > 0 && rows >= t.small_dp_rows && rows <= t.small_m_max;
}

struct LinearEpilogue {
  float *y;
  int64_t ldy;
  const float *bias;
  int64_t row_base;
  void row(int64_t i, int64_t col, int n, const float *v, const float *) {
    float *dst = y + (row_base + i) * ldy + col;
    if (bias != nullptr) {
      for (int j = 0; j < n; ++j) dst[j] = v[j] + bias[col + j];
    } else {
      for (int j = 0; j < n; ++j) dst[j] = v[j];
    }
  }
};
}  // namespace detail

namespace detail {
// Workspace of the bf16 engine paths of linear: packed x, then per thread the engine scratch and
// the partial results of depth-sliced GEMMs (in > engine_kc).
struct LinearEngineWorkspace {
  int64_t blocks, x_block, max_cols;
  size_t x_bytes, per_thread;
};
inline LinearEngineWorkspace linear_engine_workspace(int64_t rows, int64_t in, int64_t out, int threads,
                                                     const TileConfig &t) {
  LinearEngineWorkspace w;
  w.blocks = (std::max<int64_t>(rows, 0) + kTokenBlock - 1) / kTokenBlock;
  w.x_block = packed_block_elems(in);
  w.x_bytes = align64(sizeof(uint16_t) * w.blocks * w.x_block);
  // Widest column range one engine call runs at once: a thread's share of a split, or every
  // column when rows are split (column pieces are never wider).
  const int64_t units = (std::max<int64_t>(out, 1) + kColumnUnit - 1) / kColumnUnit;
  w.max_cols = std::max<int64_t>(kColumnUnit, (units + threads - 1) / threads * kColumnUnit);
  if (out < int64_t(threads) * kColumnUnit) w.max_cols = std::max(w.max_cols, out);
  const bool sliced = in > engine_min_slice(t);
  w.per_thread = engine_scratch_bytes(t) +
                 (sliced ? align64(sizeof(float) * engine_partial_floats(w.max_cols, engine_pass_blocks(w.blocks, t.engine_mc)))
                         : 0);
  return w;
}
}  // namespace detail

inline size_t linear_workspace_size(int64_t rows, int64_t in, int64_t out, int num_threads,
                                    const TileConfig &tiles = default_tile_config(),
                                    MatmulPath path = MatmulPath::fma_f32) {
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (!detail::workspace_sizes_fit({rows, in, out, nt})) return detail::kWorkspaceOverflow;
  const size_t fma = static_cast<size_t>(nt) * detail::gemm_scratch_bytes(tiles, std::max<int64_t>(rows, 1), in);
  if (path == MatmulPath::fma_f32) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
    if (detail::linear_small_dp(rows, tiles))  // the rows rounded to bf16 (any weight type: an upper bound)
      return std::max(fma, sizeof(uint16_t) * static_cast<size_t>(rows) * static_cast<size_t>(detail::padded_depth(in)));
#endif
    return fma;
  }
  const detail::LinearEngineWorkspace w = detail::linear_engine_workspace(rows, in, out, nt, tiles);
  // avx512_bf16 rounds the rows of a small call (at most small_m_max) to bf16 rows for dp_small.
  const size_t small = path == MatmulPath::avx512_bf16
                           ? sizeof(uint16_t) * static_cast<size_t>(std::clamp<int64_t>(rows, 0, std::max(tiles.small_m_max, 0))) *
                                 static_cast<size_t>(detail::padded_depth(in))
                           : 0;
  return std::max({fma, w.x_bytes + static_cast<size_t>(nt) * w.per_thread, small});
}

#if defined(MIXTILE_HAVE_BF16_ENGINE)
namespace detail {
// Engine epilogue of linear: C^T tile -> rows of y, plus bias, for the valid rows of the block.
struct LinearTileEpilogue {
  float *y;
  int64_t ldy, rows;
  const float *bias;
  void tile(int64_t b, int64_t col, int ncols, const float *c, const float *) {
    __m512i r[16];
    for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_si512(c + j * 16);
    transpose16x16_epi32(r);
    const __mmask16 cols = static_cast<__mmask16>((1u << ncols) - 1);
    const __m512 add = bias != nullptr ? _mm512_maskz_loadu_ps(cols, bias + col) : _mm512_setzero_ps();
    const int64_t t0 = b * kTokenBlock;
    const int n = static_cast<int>(std::min<int64_t>(kTokenBlock, rows - t0));
    for (int t = 0; t < n; ++t)
      _mm512_mask_storeu_ps(y + (t0 + t) * ldy + col, cols, _mm512_add_ps(_mm512_castsi512_ps(r[t]), add));
  }
};

template <WeightType W, MatmulPath Path>
void linear_engine(const LinearProblem &p, const TileConfig &tiles) {
  const int nt = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  const LinearEngineWorkspace layout = linear_engine_workspace(p.rows, p.in, p.out, nt, tiles);
  uint16_t *packed = static_cast<uint16_t *>(p.workspace);
  char *thread_ws = static_cast<char *>(p.workspace) + layout.x_bytes;
  const bool split_rows = (p.out + kColumnUnit - 1) / kColumnUnit < nt && layout.blocks >= nt;
  const uint16_t *w = static_cast<const uint16_t *>(p.w);
  WorkCounter pieces;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nthreads = omp_get_num_threads();
    char *mine = thread_ws + layout.per_thread * tid;
    const EngineScratch scratch = carve_engine_scratch(mine);
    float *partial = reinterpret_cast<float *>(mine + engine_scratch_bytes(tiles));
    for (int64_t b = tid; b < layout.blocks; b += nthreads) {
      const float *rows[kTokenBlock];
      for (int t = 0; t < kTokenBlock; ++t) {
        const int64_t m = b * kTokenBlock + t;
        rows[t] = m < p.rows ? p.x + (p.row_index != nullptr ? static_cast<int64_t>(p.row_index[m]) : m) * p.in
                             : nullptr;
      }
      pack_token_block(packed + b * layout.x_block, rows, p.in);
    }
#pragma omp barrier
    LinearTileEpilogue ep{p.y, p.out, p.rows, p.bias};
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_configure_tiles();
#endif
    // Blocks [b0, b1) x columns [c0, c1), in pieces of at most max_cols columns.
    auto run = [&](int64_t b0, int64_t b1, int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1 && b0 < b1; c += layout.max_cols) {
        const int64_t ce = std::min(c1, c + layout.max_cols);
        if constexpr (Path == MatmulPath::amx_bf16) {
#if defined(MIXTILE_HAVE_AMX_BF16)
          amx_gemm<false>(w, nullptr, p.in, packed, b0, b1, c, ce, tiles.engine_kc, tiles.engine_mc,
                          tiles.engine_stream_rows, tiles.engine_panel_rows, tiles.engine_l1_rows, tiles.engine_l1_kc,
                          tiles.engine_whole_depth_bytes, partial, scratch, ep);
#endif
        } else {
#if defined(MIXTILE_HAVE_AVX512_BF16)
          const int last_rows = static_cast<int>(std::min<int64_t>(kTokenBlock, p.rows - (b1 - 1) * kTokenBlock));
          dp_gemm<false>(w, nullptr, p.in, packed, b0, b1, last_rows, c, ce, tiles.engine_kc, tiles.engine_mc,
                         tiles.engine_stream_rows, partial, scratch, ep);
#endif
        }
      }
    };
    // Narrow outputs: row blocks split evenly. Otherwise column pieces from a WorkCounter.
    if (split_rows) {
      run(layout.blocks * tid / nthreads, layout.blocks * (tid + 1) / nthreads, 0, p.out);
    } else {
      const int64_t n_pieces = column_pieces(p.out, 1, nthreads, kSharedPiecesPerThread);
      int64_t c0, c1;
      for (int64_t i; (i = pieces.take()) < n_pieces;) {
        split_columns(p.out, n_pieces, i, c0, c1);
        run(0, layout.blocks, c0, c1);
      }
    }
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_release_tiles();
#endif
  }
}
}  // namespace detail
#endif  // MIXTILE_HAVE_BF16_ENGINE

template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
void linear(const LinearProblem &p, const TileConfig &tiles = default_tile_config()) {
  static_assert(detail::MatmulPathCheck<W, Path>::ok, "");
  using WS = WeightStorage<W>;
  if (p.rows <= 0 || p.out <= 0) return;
#if defined(MIXTILE_HAVE_BF16_ENGINE)
  if constexpr (Path != MatmulPath::fma_f32) {
    if (p.rows > tiles.small_m_max && p.in > 0) {
      detail::linear_engine<W, Path>(p, tiles);
      return;
    }
  }
#endif
  const int nt = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  const size_t per_thread = detail::gemm_scratch_bytes(tiles, p.rows, p.in);
  // avx512_bf16 (calls of at most small_m_max rows here): the rows rounded to bf16 once into the
  // workspace (the engine loops round them too), then dp_small instead of the f32 small path.
  // fma_f32 on bf16 weights takes the same route from tiles.small_dp_rows rows.
  [[maybe_unused]] constexpr bool kDpCapable =
      Path == MatmulPath::avx512_bf16 || (Path == MatmulPath::fma_f32 && W == WeightType::bf16);
  [[maybe_unused]] bool dp = Path == MatmulPath::avx512_bf16 && p.in > 0;
#if defined(MIXTILE_HAVE_AVX512_BF16)
  if constexpr (Path == MatmulPath::fma_f32 && W == WeightType::bf16)
    dp = p.in > 0 && detail::linear_small_dp(p.rows, tiles);
#endif
  [[maybe_unused]] const int64_t ldx = detail::padded_depth(p.in);
  [[maybe_unused]] uint16_t *xr = static_cast<uint16_t *>(p.workspace);
  // Narrow outputs (routers: out = E) split rows across threads instead of columns.
  const bool split_rows = (p.out + kColumnUnit - 1) / kColumnUnit < nt && p.rows >= 2 * nt;
  detail::WorkCounter pieces;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nthreads = omp_get_num_threads();
    const detail::GemmScratch scratch =
        detail::carve_scratch(static_cast<char *>(p.workspace) + per_thread * tid, tiles, p.in);
    const WS *w = static_cast<const WS *>(p.w);
    const int64_t q0 = p.rows * tid / nthreads, q1 = p.rows * (tid + 1) / nthreads;
#if defined(MIXTILE_HAVE_AVX512_BF16)
    if constexpr (kDpCapable) {
      if (dp) {
        detail::round_rows_bf16(xr + q0 * ldx, detail::RowSource{p.x, p.in, p.row_index, q0}, q1 - q0, p.in);
#pragma omp barrier
      }
    }
#endif
    // Rows [r0, r0 + n) x columns [c0, c1) of y.
    auto run = [&](int64_t r0, int64_t n, int64_t c0, int64_t c1) {
      detail::LinearEpilogue ep{p.y, p.out, p.bias, r0};
#if defined(MIXTILE_HAVE_AVX512_BF16)
      if constexpr (kDpCapable) {
        if (dp) {
          detail::dp_small<false>(n, p.in, detail::RowsOf<uint16_t>{xr, ldx, nullptr, r0}, w, nullptr, p.in, c0, c1,
                                  tiles, ep);
          return;
        }
      }
#endif
      const detail::RowSource src{p.x, p.in, p.row_index, r0};
      detail::gemm_columns<W, false>(n, p.in, src, w, nullptr, c0, c1, tiles, scratch, ep);
    };
    if (split_rows) {
      run(q0, q1 - q0, 0, p.out);
    } else {  // column pieces from a WorkCounter
      const int64_t n_pieces = detail::column_pieces(p.out, 1, nthreads, detail::kSharedPiecesPerThread);
      int64_t c0, c1;
      for (int64_t i; (i = pieces.take()) < n_pieces;) {
        detail::split_columns(p.out, n_pieces, i, c0, c1);
        run(0, p.rows, c0, c1);
      }
    }
  }
}

}  // namespace mixtile::cpu
