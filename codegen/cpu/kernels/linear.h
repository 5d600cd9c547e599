// Dense linear layer of the CPU kernel library: y = x · Wᵀ (+ b) with an optional row gather,
// on the same GEMM engine as the expert FFN. Used for routers, shared experts and MoLoRA bases.
// It owns its OpenMP region; it never accumulates into y (results are plain stores).
//
//   struct LinearProblem { rows, in, out; x [*, in]; row_index [rows] or nullptr; w [out, in];
//                          bias [out] or nullptr; y [rows, out]; workspace; num_threads; };
//   template <WeightType W> void linear(const LinearProblem &p, const TileConfig &t = default_tile_config());
//   size_t linear_workspace_size(rows, in, out, num_threads, tiles);
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "gemm.h"

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

inline size_t linear_workspace_size(int64_t rows, int64_t in, int64_t out, int num_threads,
                                    const TileConfig &tiles = default_tile_config()) {
  (void)out;
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  return static_cast<size_t>(nt) * detail::gemm_scratch_bytes(tiles, std::max<int64_t>(rows, 1), in);
}

template <WeightType W>
void linear(const LinearProblem &p, const TileConfig &tiles = default_tile_config()) {
  using WS = WeightStorage<W>;
  if (p.rows <= 0 || p.out <= 0) return;
  const int nt = p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
  const size_t per_thread = detail::gemm_scratch_bytes(tiles, p.rows, p.in);
  // Narrow outputs (routers: out = E) split rows across threads instead of columns.
  const bool split_rows = (p.out + kColumnUnit - 1) / kColumnUnit < nt && p.rows >= 2 * nt;
#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num(), nthreads = omp_get_num_threads();
    const detail::GemmScratch scratch =
        detail::carve_scratch(static_cast<char *>(p.workspace) + per_thread * tid, tiles, p.in);
    const WS *w = static_cast<const WS *>(p.w);
    if (split_rows) {
      const int64_t r0 = p.rows * tid / nthreads, r1 = p.rows * (tid + 1) / nthreads;
      const detail::RowSource src{p.x, p.in, p.row_index, r0};
      detail::LinearEpilogue ep{p.y, p.out, p.bias, r0};
      detail::gemm_columns<W, false>(r1 - r0, p.in, src, w, nullptr, 0, p.out, tiles, scratch, ep);
    } else {
      int64_t c0, c1;
      detail::split_columns(p.out, nthreads, tid, c0, c1);
      const detail::RowSource src{p.x, p.in, p.row_index, 0};
      detail::LinearEpilogue ep{p.y, p.out, p.bias, 0};
      detail::gemm_columns<W, false>(p.rows, p.in, src, w, nullptr, c0, c1, tiles, scratch, ep);
    }
  }
}

}  // namespace mixtile::cpu
