// Grouped expert FFN of the CPU kernel library: every expert's two-GEMM feed-forward block over the
// token rows routed to it, in one OpenMP region, with gather, activation, gate scale and
// scatter-add fused into the GEMMs. It does not route: offsets/tokens/gates come from the caller.
//
// API (namespace mixtile::cpu):
//
//   enum class Activation { silu, gelu, gelu_tanh, relu };        // gelu = erf form
//   enum class WeightType { f32, bf16, f16 };                      // bf16/f16 stored as uint16_t bits
//
//   struct ExpertFFNProblem {
//     int64_t num_experts, hidden /*D*/, inter /*F*/;
//     const float *x;              // token rows [num_rows, D]
//     const int32_t *offsets;      // [E+1], non-decreasing: expert e owns assignments [offsets[e], offsets[e+1])
//     const int32_t *tokens;       // [A] x row of each assignment; nullptr => x row == assignment index
//     const float *gates;          // [A] output scale of each assignment; nullptr => 1
//     const void *const *gate_w;   // per expert [F, D] (ignored when not gated)
//     const void *const *up_w;     // per expert [F, D] (the only input projection when not gated)
//     const void *const *down_w;   // per expert [D, F]
//     float *y;                    // output rows, row stride D
//     const int32_t *out_rows;     // [A] y row of each assignment, y[out_rows[a]] += gate * FFN(x);
//                                  // nullptr => y[a - offsets[0]] = gate * FFN(x) (plain store)
//     int64_t zero_rows = 0;       // scatter mode only: rows [0, zero_rows) of y are zeroed first
//     void *workspace;             // >= expert_ffn_workspace_size(A, D, F, num_threads, tiles) bytes,
//                                  // 64-byte aligned; A = offsets[E] - offsets[0]
//     int num_threads;             // <= 0: omp_get_max_threads()
//   };
//
//   template <WeightType W, Activation Act, bool Gated>
//   void expert_ffn(const ExpertFFNProblem &p, const TileConfig &tiles = default_tile_config());
//   size_t expert_ffn_workspace_size(int64_t num_assignments, int64_t D, int64_t F,
//                                    int num_threads, const TileConfig &tiles = default_tile_config());
//
//   Gated:  h = act(x · W_gateᵀ) ⊙ (x · W_upᵀ),  out = h · W_downᵀ
//   Plain:  h = act(x · W_upᵀ),                 out = h · W_downᵀ
//
// Schedule: phase 1 computes h [A, F] into the workspace, each thread owning a disjoint range of
// F columns for every expert (or, when F is narrower than a column panel per thread, whole
// experts); one barrier; phase 2 computes the down projection, each thread
// owning a disjoint range of D columns, so the scatter-add into y never races and needs no atomics.
// An expert without assignments is skipped and its weights are never read. Segments with at most
// tiles.small_m_max rows use the weight-streaming GEMV path (decode), larger ones the blocked GEMM.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "gemm.h"
#include "simd.h"

namespace mixtile::cpu {

struct ExpertFFNProblem {
  int64_t num_experts = 0, hidden = 0, inter = 0;
  const float *x = nullptr;
  const int32_t *offsets = nullptr;
  const int32_t *tokens = nullptr;
  const float *gates = nullptr;
  const void *const *gate_w = nullptr;
  const void *const *up_w = nullptr;
  const void *const *down_w = nullptr;
  float *y = nullptr;
  const int32_t *out_rows = nullptr;
  int64_t zero_rows = 0;
  void *workspace = nullptr;
  int num_threads = 0;
};

namespace detail {

inline int resolve_threads(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

// Phase-1 epilogue: h[row] = act(g) (⊙ u).
template <Activation Act, bool Gated>
struct HiddenEpilogue {
  float *h;
  int64_t ldh;
  int64_t row_base;
  void row(int64_t i, int64_t col, int n, const float *v, const float *u) {
    float *dst = h + (row_base + i) * ldh + col;
    int j = 0;
    for (; j + kVecWidth <= n; j += kVecWidth) {
      VecF r = vactivate<Act>(vload(v + j));
      if constexpr (Gated) r = vmul(r, vload(u + j));
      vstore(dst + j, r);
    }
    if (j < n) activate_partial<Act>(dst + j, v + j, Gated ? u + j : nullptr, n - j);
  }
};

// Phase-2 epilogue: gate scale, then scatter-add (out_rows) or plain store.
struct OutputEpilogue {
  float *y;
  int64_t ldy;
  const int32_t *out_rows;
  const float *gates;
  int64_t assignment_base;  // global assignment index of local row 0
  int64_t offset0;          // offsets[0], so plain stores start at y row 0
  void row(int64_t i, int64_t col, int n, const float *v, const float *) {
    const int64_t a = assignment_base + i;
    const float g = gates != nullptr ? gates[a] : 1.0f;
    if (out_rows != nullptr) {
      float *dst = y + static_cast<int64_t>(out_rows[a]) * ldy + col;
      for (int j = 0; j < n; ++j) dst[j] += g * v[j];
    } else {
      float *dst = y + (a - offset0) * ldy + col;
      for (int j = 0; j < n; ++j) dst[j] = g * v[j];
    }
  }
};

inline size_t expert_ffn_thread_scratch_bytes(int64_t A, int64_t D, int64_t F, const TileConfig &t) {
  return gemm_scratch_bytes(t, A, std::max(D, F));
}

}  // namespace detail

inline size_t expert_ffn_workspace_size(int64_t num_assignments, int64_t D, int64_t F, int num_threads,
                                        const TileConfig &tiles = default_tile_config()) {
  const int nt = detail::resolve_threads(num_threads);
  const int64_t A = std::max<int64_t>(num_assignments, 0);
  return detail::align64(sizeof(float) * A * F) +
         static_cast<size_t>(nt) * detail::expert_ffn_thread_scratch_bytes(A, D, F, tiles);
}

template <WeightType W, Activation Act, bool Gated>
void expert_ffn(const ExpertFFNProblem &p, const TileConfig &tiles = default_tile_config()) {
  using WS = WeightStorage<W>;
  const int64_t E = p.num_experts, D = p.hidden, F = p.inter;
  const int64_t off0 = E > 0 ? p.offsets[0] : 0;
  const int64_t A = E > 0 ? p.offsets[E] - off0 : 0;
  const bool scatter = p.out_rows != nullptr;
  const int64_t zero_rows = scatter ? p.zero_rows : 0;
  if ((A <= 0 && zero_rows <= 0) || D <= 0) return;
  const int nt = detail::resolve_threads(p.num_threads);
  char *ws = static_cast<char *>(p.workspace);
  float *h = reinterpret_cast<float *>(ws);
  char *thread_ws = ws + detail::align64(sizeof(float) * std::max<int64_t>(A, 0) * F);
  const size_t per_thread = detail::expert_ffn_thread_scratch_bytes(A, D, F, tiles);

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int nthreads = omp_get_num_threads();
    const detail::GemmScratch scratch =
        detail::carve_scratch(thread_ws + per_thread * tid, tiles, std::max(D, F));
    int64_t c0, c1;

    // Phase 1: h = act(x · Wgᵀ) ⊙ (x · Wuᵀ)  or  act(x · Wuᵀ), this thread's F columns.
    // Narrow experts (Mixture of Tokens' F = 16) leave threads without a whole column panel:
    // then each thread takes whole experts instead. h rows belong to one expert each, so
    // either split is race-free.
    const bool by_expert = F < static_cast<int64_t>(nthreads) * kColumnUnit && E >= nthreads;
    if (by_expert) {
      c0 = 0;
      c1 = F;
    } else {
      detail::split_columns(F, nthreads, tid, c0, c1);
    }
    for (int64_t e = by_expert ? tid : 0; e < E && A > 0; e += by_expert ? nthreads : 1) {
      const int64_t begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
      if (rows <= 0) continue;
      const detail::RowSource src{p.x, D, p.tokens, begin};
      detail::HiddenEpilogue<Act, Gated> ep{h, F, begin - off0};
      const WS *first = static_cast<const WS *>(Gated ? p.gate_w[e] : p.up_w[e]);
      const WS *second = Gated ? static_cast<const WS *>(p.up_w[e]) : nullptr;
      detail::gemm_columns<W, Gated>(rows, D, src, first, second, c0, c1, tiles, scratch, ep);
    }

    // Phase 2 needs every F column of h: one barrier, then this thread's D columns of y.
#pragma omp barrier
    detail::split_columns(D, nthreads, tid, c0, c1);
    if (zero_rows > 0 && c1 > c0) {
      for (int64_t r = 0; r < zero_rows; ++r) std::memset(p.y + r * D + c0, 0, sizeof(float) * (c1 - c0));
    }
    for (int64_t e = 0; e < E && A > 0; ++e) {
      const int64_t begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
      if (rows <= 0) continue;
      const detail::RowSource src{h, F, nullptr, begin - off0};
      detail::OutputEpilogue ep{p.y, D, p.out_rows, p.gates, begin, off0};
      detail::gemm_columns<W, false>(rows, F, src, static_cast<const WS *>(p.down_w[e]), nullptr, c0, c1,
                                     tiles, scratch, ep);
    }
  }
}

}  // namespace mixtile::cpu
