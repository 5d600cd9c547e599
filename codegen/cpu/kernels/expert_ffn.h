// Grouped expert FFN of the CPU kernel library: every expert's two-GEMM feed-forward block over the
// token rows routed to it, in one OpenMP region, with gather, activation, gate scale and
// scatter-add fused into the GEMMs. It does not route: offsets/tokens/gates come from the caller.
//
// API (namespace mixtile::cpu):
//
//   enum class Activation { silu, gelu, gelu_tanh, relu, swiglu_oai };  // gelu = erf form
//   enum class WeightType { f32, bf16, f16, fp8_e4m3, mxfp4 };     // bf16/f16 stored as uint16_t bits
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
//     const float *const *gate_scale, *up_scale, *down_scale;  // fp8_e4m3 weights only: per expert,
//     int64_t scale_block_rows, scale_block_cols;              //   block scales as in fp8.h
//     const uint8_t *const *gate_mx_scale, *up_mx_scale, *down_mx_scale;  // mxfp4 weights only: per
//                                  // expert, e8m0 scales [rows, depth / 32] as in mxfp4.h
//     const float *gate_bias, *up_bias, *down_bias;  // f32 or null: [E, F], [E, F], [E, D] (gpt-oss)
//     ActParams act;               // Activation::swiglu_oai's alpha and limit
//     void *workspace;             // >= expert_ffn_workspace_size(A, E, D, F, num_threads, tiles, Path, W) bytes,
//                                  // 64-byte aligned; A = offsets[E] - offsets[0]
//     int num_threads;             // <= 0: omp_get_max_threads()
//   };
//
//   template <WeightType W, Activation Act, bool Gated, MatmulPath Path = MatmulPath::fma_f32>
//   void expert_ffn(const ExpertFFNProblem &p, const TileConfig &tiles = default_tile_config());
//   size_t expert_ffn_workspace_size(int64_t num_assignments, int64_t num_experts, int64_t D,
//                                    int64_t F, int num_threads, const TileConfig &tiles = default_tile_config(),
//                                    MatmulPath path = MatmulPath::fma_f32, WeightType weights = WeightType::f32);
//     weights: W of the call (fp8_e4m3 and mxfp4 need room for their slabs)
//
//   bool amx_ready();  // matrix_engines.h: call (once is enough) before a MatmulPath::amx_bf16 call
//
//   Path: fma_f32 for any W; avx512_bf16 / amx_bf16 for W = bf16, fp8_e4m3 or mxfp4 only, and
//   only in builds that enable their instructions (static_assert otherwise). The bf16 paths round
//   x and h to bf16. fp8_e4m3 weights (uint8_t codes with block scales) are read in place:
//   segments of up to 4 rows on avx512_bf16 (scale blocks of whole 32-deep steps) multiply the
//   codes' exact values in registers and scale each block's partial sum (dp_small_fp8); every
//   other segment reads slabs of at most 32 weight rows dequantized to bf16(code * scale) into the
//   thread's workspace (fp8.h), which the bf16 loops read as the weight. mxfp4 weights (OCP
//   MXFP4, gpt-oss: uint8_t [rows, depth / 2], two e2m1 codes a byte, low nibble first, with the
//   *_mx_scale e8m0 bytes; depth D and F multiples of 32, which the compiler guarantees and the
//   kernel assumes) are read in place the same way: each weight is bf16(e2m1 * 2^(s - 127)),
//   exactly as the runtime dequantizes them (mxfp4.h); segments of up to 4 rows on avx512_bf16
//   convert the codes in registers (dp_small_mxfp4), every other segment reads slabs.
//
//   Gated:  h = act(x · W_gateᵀ) ⊙ (x · W_upᵀ),  out = h · W_downᵀ
//   Plain:  h = act(x · W_upᵀ),                 out = h · W_downᵀ
//
// Schedule: phase 1 computes h [A, F] into the workspace in (expert, range of F columns) items;
// one barrier; phase 2 computes the down projection in ranges of D columns, each over every
// expert, so the scatter-add into y never races and needs no atomics. Threads take the items of
// a phase from a shared counter (WorkCounter, gemm.h), column_pieces per thread: each active
// expert's F columns are cut into column_pieces pieces (whole experts when there are many).
// An expert without assignments is skipped and its weights are never read. Segments with at most
// tiles.small_m_max rows use the weight-streaming GEMV path (decode), larger ones the blocked GEMM.
//
// bf16 matrix-engine paths (Path = avx512_bf16 / amx_bf16, bf16 weights only): a stage before
// phase 1 packs the x rows of all assignments into bf16 VNNI token blocks (matrix_engines.h),
// split over threads, then a barrier; an expert that runs on the engine loops starts a block
// (packed_rows), so its tiles hold no rows of its neighbours. h is kept in the same packed bf16 form (rounded once), so
// phase 2 reads it directly. Segments above small_m_max run the engine loops (weights read in
// place, never copied); smaller ones the same GEMV path as fma_f32, with h rows unpacked to f32
// per thread for the down projection. In scatter mode they do not zero y: between the phases one
// thread marks each y row's first contribution (mark_first_contributions), which phase 2 stores
// where the others add (Mixtral-style T=2048, bench/kernels/ab.sh: 1.024x, outputs bit-identical).
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fp8.h"
#include "gemm.h"
#include "matrix_engines.h"
#include "mxfp4.h"
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
  const float *const *gate_scale = nullptr;
  const float *const *up_scale = nullptr;
  const float *const *down_scale = nullptr;
  int64_t scale_block_rows = 0, scale_block_cols = 0;
  // MXFP4 weights' e8m0 scales, per expert [rows, depth / 32] (mxfp4.h).
  const uint8_t *const *gate_mx_scale = nullptr;
  const uint8_t *const *up_mx_scale = nullptr;
  const uint8_t *const *down_mx_scale = nullptr;
  // Expert biases (gpt-oss), f32 or null: gate and up [E, F], down [E, D] (added before the
  // gate scale); the clamped SwiGLU's constants for Activation::swiglu_oai.
  const float *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  ActParams act{};
  void *workspace = nullptr;
  int num_threads = 0;
};

namespace detail {

inline int resolve_threads(int requested) { return requested > 0 ? requested : omp_get_max_threads(); }

// What both drivers (f32 and bf16 engines) work on: the assignments [offsets[0], offsets[E]),
// counted from offsets[0], and the y rows a scatter zeroes first (a plain store zeroes none).
struct Extent {
  int64_t off0, A, zero_rows;
  bool empty;  // nothing to compute and nothing to zero
};
inline Extent extent_of(const ExpertFFNProblem &p) {
  Extent x;
  x.off0 = p.num_experts > 0 ? p.offsets[0] : 0;
  x.A = p.num_experts > 0 ? p.offsets[p.num_experts] - x.off0 : 0;
  x.zero_rows = p.out_rows != nullptr ? p.zero_rows : 0;
  x.empty = (x.A <= 0 && x.zero_rows <= 0) || p.hidden <= 0;
  return x;
}

// Experts with at least one assignment (how finely a phase cuts each one's columns).
inline int64_t active_experts(const ExpertFFNProblem &p) {
  int64_t n = 0;
  for (int64_t e = 0; e < p.num_experts; ++e) n += p.offsets[e + 1] > p.offsets[e] ? 1 : 0;
  return n;
}

// Zeroes columns [c0, c1) of y's first `rows` rows (this thread's share before its scatter).
inline void zero_columns(float *y, int64_t ld, int64_t rows, int64_t c0, int64_t c1) {
  if (c1 <= c0) return;
  for (int64_t r = 0; r < rows; ++r) std::memset(y + r * ld + c0, 0, sizeof(float) * (c1 - c0));
}

// Scatter mode without zeroing y first (the engine paths): first[a - off0] = 1 where assignment a,
// in the order phase 2 reaches them (experts in order, each one's assignments in order), is the
// first to reach its y row among rows [0, zero_rows), which it then stores instead of adding to;
// rows [0, zero_rows) that no assignment reaches are zeroed here, whole. Each row's first float
// serves as its seen mark (y is the caller's output, overwritten anyway): it is 0 for unseen
// rows, 1 once seen, and the first contribution's store overwrites the mark in phase 2. One
// thread, O(A + zero_rows); saves the zeroing pass over y and the first load of each row.
inline void mark_first_contributions(const ExpertFFNProblem &p, int64_t off0, int64_t A, int64_t zero_rows,
                                     uint8_t *first) {
  float *y = p.y;
  const int64_t D = p.hidden;
  for (int64_t r = 0; r < zero_rows; ++r) y[r * D] = 0.0f;
  for (int64_t i = 0; i < A; ++i) {
    const int64_t r = p.out_rows[off0 + i];
    const bool mark = r < zero_rows && y[r * D] == 0.0f;
    first[i] = mark ? 1 : 0;
    if (mark) y[r * D] = 1.0f;
  }
  for (int64_t r = 0; r < zero_rows; ++r)
    if (y[r * D] == 0.0f) std::memset(y + r * D, 0, sizeof(float) * D);
}

// ---- fp8 and MXFP4 weights: slabs of dequantized rows ------------------------------------------

// Whether weights of this type reach the GEMM loops as slabs of dequantized bf16 rows.
constexpr bool weights_in_slabs(WeightType w) { return w == WeightType::fp8_e4m3 || w == WeightType::mxfp4; }

// The weight type the GEMM loops read: fp8 and MXFP4 weights reach them as bf16 slabs.
template <WeightType W>
constexpr WeightType kernel_weight_type = weights_in_slabs(W) ? WeightType::bf16 : W;

// Weight rows per slab for depth K: 32 (a column step of every loop) while two slabs of them stay
// within half of a 1 MB L2, 16 beyond (DeepSeek-V3's D = 7168).
inline int64_t slab_rows(int64_t K) { return K <= 2048 ? 32 : 16; }
// Per-thread slab bytes: two matrices (gate and up) of 32 rows at the deeper of D and F.
inline size_t slab_bytes(int64_t D, int64_t F) {
  return align64(sizeof(uint16_t) * 2 * 32 * static_cast<size_t>(std::max<int64_t>({D, F, 0})));
}

// An epilogue whose columns are numbered from `shift`: the loops run over a slab's rows 0 .. n
// while the result belongs to columns shift .. shift + n.
template <class Epilogue>
struct ShiftedEpilogue {
  Epilogue &ep;
  int64_t shift;
  void row(int64_t i, int64_t col, int n, const float *v, const float *u) { ep.row(i, col + shift, n, v, u); }
  void tile(int64_t b, int64_t col, int ncols, const float *c, const float *u) { ep.tile(b, col + shift, ncols, c, u); }
  static constexpr int kTileParts = EpilogueTileParts<Epilogue>::value;
  void tile_part(int64_t b, int64_t col, int ncols, const float *c, const float *u, int part) {
    ep.tile_part(b, col + shift, ncols, c, u, part);
  }
};

#ifndef MIXTILE_DP_FP8_FUSED_ROWS
#define MIXTILE_DP_FP8_FUSED_ROWS 4
#endif
// Segments of at most this many rows multiply fp8 weights in the fused GEMV (dp_small_fp8), the
// larger ones through slabs. The fused GEMV re-converts the codes for each group of 4 rows, so
// 5-8 rows cost two conversions: bench_expert_ffn 2 2048 768 64,128,256 fp8 avx512_bf16 128 8
// (Zen 4, 2 threads, small_m_max 8, alternating), fused up to 4 / up to 8 rows, ms: T=64
// 44.3 46.7 / 56.2 51.3, T=128 79.1 80.5 / 89.7 87.0, T=256 127 129 / 134 130.
constexpr int64_t kDpFp8FusedRows = MIXTILE_DP_FP8_FUSED_ROWS;
#ifndef MIXTILE_DP_MXFP4_FUSED_ROWS
#define MIXTILE_DP_MXFP4_FUSED_ROWS 4
#endif
// The same for MXFP4 weights (dp_small_mxfp4, token groups of 4 rows as dp_small_fp8's; not
// measured on its own yet).
constexpr int64_t kDpMxfp4FusedRows = MIXTILE_DP_MXFP4_FUSED_ROWS;

// Expert e's scales of one of its matrices, as its weight type reads them (both empty for weights
// without scales).
struct WeightScales {
  Fp8Scales fp8;                // fp8_e4m3: block scales
  const uint8_t *mx = nullptr;  // mxfp4: e8m0 bytes [rows, depth / 32]
};
enum class ExpertMatrix { gate, up, down };
inline WeightScales scales_of(const ExpertFFNProblem &p, ExpertMatrix m, int64_t e) {
  const float *const *fp8 = m == ExpertMatrix::gate ? p.gate_scale : m == ExpertMatrix::up ? p.up_scale : p.down_scale;
  const uint8_t *const *mx =
      m == ExpertMatrix::gate ? p.gate_mx_scale : m == ExpertMatrix::up ? p.up_mx_scale : p.down_mx_scale;
  return {{fp8 != nullptr ? fp8[e] : nullptr, p.scale_block_rows, p.scale_block_cols}, mx != nullptr ? mx[e] : nullptr};
}
// Phase 1's matrices: the first (gate, or up when ungated) and the second (up when gated).
template <bool Gated>
inline WeightScales first_scales(const ExpertFFNProblem &p, int64_t e) {
  return scales_of(p, Gated ? ExpertMatrix::gate : ExpertMatrix::up, e);
}
template <bool Gated>
inline WeightScales second_scales(const ExpertFFNProblem &p, int64_t e) {
  return Gated ? scales_of(p, ExpertMatrix::up, e) : WeightScales{};
}

// Whether a segment of `rows` rows multiplies fp8 weights of these scales in the fused GEMV.
inline bool fp8_fused(const Fp8Scales &s, int64_t rows) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
  return rows <= kDpFp8FusedRows && dp_fp8_blocks_fit(s);
#else
  (void)s, (void)rows;
  return false;
#endif
}
// Whether a segment of `rows` rows multiplies MXFP4 weights in the fused GEMV.
inline bool mxfp4_fused(int64_t rows) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
  return rows <= kDpMxfp4FusedRows;
#else
  (void)rows;
  return false;
#endif
}

// Rows [row0, row0 + n) of a weight of type W (fp8 or MXFP4, depth K) dequantized into dst.
template <WeightType W>
inline void dequantize_slab(uint16_t *dst, const void *w, const WeightScales &s, int64_t K, int64_t row0, int64_t n) {
  if constexpr (W == WeightType::fp8_e4m3) {
    dequantize_fp8_rows(dst, static_cast<const uint8_t *>(w), s.fp8, K, row0, n);
  } else {
    static_assert(W == WeightType::mxfp4, "weights in slabs are fp8_e4m3 or mxfp4");
    dequantize_mxfp4_rows(dst, static_cast<const uint8_t *>(w), s.mx, K, row0, n);
  }
}
// Bytes of one stored row of depth K of such a weight (MXFP4's scales apart).
template <WeightType W>
constexpr int64_t stored_row_bytes(int64_t K) {
  return W == WeightType::mxfp4 ? K / 2 : K;
}

// Columns [c0, c1) of one expert's weight (w, and w2 when gated; depth K) as the GEMM loops read
// them: fn(w, w2, c0, c1, shift). In place with shift 0, or for fp8 and MXFP4 weights in slabs of
// slab_rows(K) rows dequantized into `slab` (w's, then w2's), fn(slab, slab2, 0, n, c).
template <WeightType W, class Fn>
inline void with_weight_columns(const void *w, const void *w2, const WeightScales &s, const WeightScales &s2,
                                int64_t K, int64_t c0, int64_t c1, uint16_t *slab, Fn &&fn) {
  using KS = WeightStorage<kernel_weight_type<W>>;
  if constexpr (!weights_in_slabs(W)) {
    (void)s, (void)s2, (void)K, (void)slab;
    fn(static_cast<const KS *>(w), static_cast<const KS *>(w2), c0, c1, int64_t(0));
  } else {
    const int64_t rows = slab_rows(K), row_bytes = stored_row_bytes<W>(K);
    for (int64_t c = c0; c < c1; c += rows) {
      const int64_t n = std::min(rows, c1 - c);
      dequantize_slab<W>(slab, w, s, K, c, n);
      uint16_t *slab2 = nullptr;
      if (w2 != nullptr) {
        slab2 = slab + rows * K;
        dequantize_slab<W>(slab2, w2, s2, K, c, n);
      }
      // The next slab's codes head for L2 while the loops run over this one (each slab is read
      // once, and the conversion alone would otherwise wait on DRAM with nothing to overlap);
      // MXFP4's scales too (fp8's block scales are few).
      const int64_t next = std::min(rows, c1 - c - n);
      for (int m = 0; m < 2 && next > 0; ++m) {
        const void *codes = m == 0 ? w : w2;
        if (codes == nullptr) continue;
        const char *base = static_cast<const char *>(codes) + (c + n) * row_bytes;
        for (int64_t b = 0; b < next * row_bytes; b += 64) _mm_prefetch(base + b, _MM_HINT_T1);
        if constexpr (W == WeightType::mxfp4) {
          const int64_t row_scales = K / kMxfp4Block;
          const char *sb = reinterpret_cast<const char *>((m == 0 ? s : s2).mx + (c + n) * row_scales);
          for (int64_t b = 0; b < next * row_scales; b += 64) _mm_prefetch(sb + b, _MM_HINT_T1);
        }
      }
      fn(static_cast<const KS *>(slab), static_cast<const KS *>(slab2), int64_t(0), n, c);
    }
  }
}

// One expert's phase-1 extras: the biases of its first matrix (gate, or up when ungated) and of
// its second (up), each [F] or null, and the activation's constants.
struct HiddenExtras {
  const float *first = nullptr, *second = nullptr;
  ActParams act{};
};
template <bool Gated>
inline HiddenExtras hidden_extras(const ExpertFFNProblem &p, int64_t e) {
  const float *gb = p.gate_bias != nullptr ? p.gate_bias + e * p.inter : nullptr;
  const float *ub = p.up_bias != nullptr ? p.up_bias + e * p.inter : nullptr;
  return {Gated ? gb : ub, Gated ? ub : nullptr, p.act};
}
// Expert e's down bias [D], or null.
inline const float *down_bias_of(const ExpertFFNProblem &p, int64_t e) {
  return p.down_bias != nullptr ? p.down_bias + e * p.hidden : nullptr;
}

// h values of n <= kVecWidth columns from col: act(v + b1) (⊙ (u + b2)).
template <Activation Act, bool Gated>
inline void hidden_values(const HiddenExtras &x, int64_t col, int n, const float *v, const float *u, float *dst) {
  if (n == kVecWidth) {
    VecF g = vload(v), w = Gated ? vload(u) : vzero();
    if (x.first != nullptr) g = vadd(g, vload(x.first + col));
    if (Gated && x.second != nullptr) w = vadd(w, vload(x.second + col));
    vstore(dst, vgated<Act, Gated>(g, w, x.act));
  } else {
    activate_partial<Act>(dst, v, Gated ? u : nullptr, n, x.act, x.first != nullptr ? x.first + col : nullptr,
                          Gated && x.second != nullptr ? x.second + col : nullptr);
  }
}

// Phase-1 epilogue: h[row] = act(g) (⊙ u).
template <Activation Act, bool Gated>
struct HiddenEpilogue {
  float *h;
  int64_t ldh;
  int64_t row_base;
  HiddenExtras extras{};
  void row(int64_t i, int64_t col, int n, const float *v, const float *u) {
    float *dst = h + (row_base + i) * ldh + col;
    for (int j = 0; j < n; j += kVecWidth)
      hidden_values<Act, Gated>(extras, col + j, std::min(kVecWidth, n - j), v + j, Gated ? u + j : nullptr,
                                dst + j);
  }
};

// Phase-2 epilogue: the down bias, the gate scale, then scatter-add (out_rows) or plain store.
struct OutputEpilogue {
  float *y;
  int64_t ldy;
  const int32_t *out_rows;
  const float *gates;
  int64_t assignment_base;  // global assignment index of local row 0
  int64_t offset0;          // offsets[0], so plain stores start at y row 0
  const float *bias = nullptr;  // this expert's down bias [D], or null
  // Scatter mode, engine paths: first[a - offset0] != 0 where assignment a is the first to reach
  // its y row, which it then stores instead of adding to (mark_first_contributions); null: add.
  const uint8_t *first = nullptr;
  void row(int64_t i, int64_t col, int n, const float *v, const float *) {
    const int64_t a = assignment_base + i;
    const float g = gates != nullptr ? gates[a] : 1.0f;
    const float *b = bias != nullptr ? bias + col : nullptr;
    if (out_rows != nullptr) {
      float *dst = y + static_cast<int64_t>(out_rows[a]) * ldy + col;
      if (first != nullptr && first[a - offset0] != 0) {
        for (int j = 0; j < n; ++j) dst[j] = g * (b != nullptr ? v[j] + b[j] : v[j]);
        return;
      }
      for (int j = 0; j < n; ++j) dst[j] += g * (b != nullptr ? v[j] + b[j] : v[j]);
    } else {
      float *dst = y + (a - offset0) * ldy + col;
      for (int j = 0; j < n; ++j) dst[j] = g * (b != nullptr ? v[j] + b[j] : v[j]);
    }
  }
};

inline size_t expert_ffn_thread_scratch_bytes(int64_t A, int64_t D, int64_t F, const TileConfig &t, bool slabs) {
  return gemm_scratch_bytes(t, A, std::max(D, F)) + (slabs ? slab_bytes(D, F) : 0);
}

// Workspace of the bf16 engine paths: packed x, packed h, the packed row of each expert, a byte
// per assignment (mark_first_contributions), then per thread the engine scratch, the partial
// results of depth-sliced GEMMs (K > engine_kc), the h rows of one small segment (the GEMV path's down projection input) and, for fp8 and MXFP4
// weights (`slabs`), the slab of dequantized weight rows. Sized for `threads`
// threads; a smaller team runs its wider column ranges in pieces of max_cols.
//
// Packed rows: experts follow each other in the packed blocks, and each expert whose segment runs
// on the engine loops (more than small_m_max rows) starts at a block boundary (packed_rows), so
// its register tiles cover ceil(rows / 16) blocks instead of straddling one more on each side
// with rows of its neighbours. There are at most A / (small_m_max + 1) such experts (and at most
// E), each adding at most 15 rows.
struct EngineWorkspace {
  int64_t blocks, x_block, h_block;  // packed blocks (an upper bound); bf16 elements per x / h block
  size_t x_bytes, h_bytes, rows_bytes, first_bytes, per_thread;
  int64_t small_rows, max_cols_f, max_cols_d, partial_floats;  // max_cols_*: per thread, phase 1 / 2
};
inline EngineWorkspace engine_workspace(int64_t A, int64_t E, int64_t D, int64_t F, int threads,
                                        const TileConfig &t, bool slabs) {
  EngineWorkspace w;
  A = std::max<int64_t>(A, 0);
  E = std::max<int64_t>(E, 0);
  const int64_t aligned_experts = std::min(E, A / (std::max(t.small_m_max, 0) + 1));
  w.blocks = (A + (kTokenBlock - 1) * aligned_experts + kTokenBlock - 1) / kTokenBlock;
  w.x_block = packed_block_elems(D);
  w.h_block = packed_block_elems(F);
  w.x_bytes = align64(sizeof(uint16_t) * w.blocks * w.x_block);
  w.h_bytes = align64(sizeof(uint16_t) * w.blocks * w.h_block);
  w.rows_bytes = align64(sizeof(int64_t) * (E + 1));
  w.first_bytes = align64(static_cast<size_t>(A));  // mark_first_contributions' flags
  w.small_rows = std::clamp<int64_t>(t.small_m_max, 0, A);
  // Widest column range one engine_gemm call runs at once per phase (a wider item, such as a
  // whole expert's F columns, runs in pieces of this width).
  auto widest = [threads](int64_t n) {
    const int64_t units = (n + kColumnUnit - 1) / kColumnUnit;
    return std::max<int64_t>(kColumnUnit, (units + threads - 1) / threads * kColumnUnit);
  };
  w.max_cols_f = F < int64_t(threads) * kColumnUnit ? std::max(widest(F), F) : widest(F);
  w.max_cols_d = widest(D);
  const int64_t kc = engine_min_slice(t);  // the loops' shallowest slice
  const int64_t pass_blocks = engine_pass_blocks(w.blocks, t.engine_mc);
  w.partial_floats = std::max(D > kc ? engine_partial_floats(w.max_cols_f, pass_blocks) : 0,
                              F > kc ? engine_partial_floats(w.max_cols_d, pass_blocks) : 0);
  // The small segment's rows: f32 h rows (gemm_small), or bf16 x or h rows padded to whole
  // depth steps (avx512_bf16's dp_small).
  const int64_t small_row_bytes = std::max<int64_t>(sizeof(float) * F, sizeof(uint16_t) * padded_depth(std::max(D, F)));
  w.per_thread = engine_scratch_bytes(t) + align64(sizeof(float) * w.partial_floats) +
                 align64(static_cast<size_t>(w.small_rows * small_row_bytes)) + (slabs ? slab_bytes(D, F) : 0);
  return w;
}

// Packed row of each expert's first assignment into rows[0 .. E] (rows[E]: the rows in use), as
// engine_workspace lays them out; returns the packed blocks in use.
inline int64_t packed_rows(const ExpertFFNProblem &p, const TileConfig &t, int64_t *rows) {
  int64_t cursor = 0;
  for (int64_t e = 0; e < p.num_experts; ++e) {
    const int64_t n = p.offsets[e + 1] - p.offsets[e];
    if (n > t.small_m_max) cursor = (cursor + kTokenBlock - 1) / kTokenBlock * kTokenBlock;
    rows[e] = cursor;
    cursor += std::max<int64_t>(n, 0);
  }
  rows[p.num_experts] = cursor;
  return (cursor + kTokenBlock - 1) / kTokenBlock;
}

// The assignment at packed row r (-1: a gap before an aligned expert, or past the last), from
// packed_rows' table: the last expert starting at or before r owns it if r is within its rows.
inline int64_t assignment_at(const ExpertFFNProblem &p, const int64_t *rows, int64_t r) {
  const int64_t e = std::upper_bound(rows, rows + p.num_experts, r) - rows - 1;
  if (e < 0) return -1;
  const int64_t i = r - rows[e];
  return i < p.offsets[e + 1] - p.offsets[e] ? p.offsets[e] + i : -1;
}

#if defined(MIXTILE_HAVE_BF16_ENGINE)

// silu(g) (⊙ u) for values rounded to bf16 right after (the engine paths' packed h): exp as a
// degree-4 polynomial of 2^f and a 14-bit reciprocal instead of the division. Relative error at
// most 9e-5 where |silu(g)| >= 1e-30 (checked over every 251st f32 bit pattern against float64),
// under 1e-29 absolute below; bf16 rounding itself is up to 2^-9 = 2e-3. NaN stays NaN, silu(+inf)
// = inf, silu(-inf) = NaN (as x / (1 + exp(-x)) in float64). Alone, 0.17 ms against vgated's
// 0.27 ms for one expert's 512 x 1792 values (SPR core); within amx_gemm_pass 3-4% of the GEMM.
template <bool Gated>
inline __m512 silu_for_bf16(__m512 g, __m512 u) {
  __m512 t = _mm512_mul_ps(g, _mm512_set1_ps(-1.44269504088896341f));  // exp(-g) = 2^t
  t = _mm512_max_ps(_mm512_set1_ps(-150.0f), _mm512_min_ps(_mm512_set1_ps(128.0f), t));  // NaN stays
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);  // [-0.5, 0.5]
  __m512 p = _mm512_set1_ps(0.00961812910762847716f);  // Taylor of 2^f: (ln 2)^i / i!
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.0555041086648215800f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240226506959100712f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.693147180559945309f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  const __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(p, n));
  const __m512 s = _mm512_mul_ps(g, _mm512_rcp14_ps(d));  // before u: g * u may overflow
  return Gated ? _mm512_mul_ps(s, u) : s;
}

// Phase-1 epilogue of the engine loops: h = act(g) (⊙ u) for the tokens of one expert, written as
// bf16 pairs of adjacent columns into the packed block (col is even: column ranges start at
// multiples of 32, engine column steps are even).
template <Activation Act, bool Gated>
struct HiddenTileEpilogue {
  uint16_t *packed_h;
  int64_t h_block;
  int64_t r0, r1;  // this expert's rows, relative to offsets[0]
  HiddenExtras extras{};
  // Column j (16 tokens at c + j * 16): its biases broadcast, then the activation.
  __m512 column(int64_t j, const float *c, const float *u) const {
    VecF g{_mm512_loadu_ps(c + j * 16)};
    VecF w = Gated ? VecF{_mm512_loadu_ps(u + j * 16)} : vzero();
    if (extras.first != nullptr) g = vadd(g, vset1(extras.first[j]));
    if (Gated && extras.second != nullptr) w = vadd(w, vset1(extras.second[j]));
    if constexpr (Act == Activation::silu) return silu_for_bf16<Gated>(g.v, w.v);
    return vgated<Act, Gated>(g, w, extras.act).v;
  }
  void tile(int64_t b, int64_t col, int ncols, const float *c, const float *u) {
    for (int part = 0; part < kTileParts; ++part) tile_part(b, col, ncols, c, u, part);
  }
  // Column pairs [2 * part, 2 * part + 2) of the tile's 8 (amx_gemm_pass's deferred epilogue).
  static constexpr int kTileParts = 4;
  void tile_part(int64_t b, int64_t col, int ncols, const float *c, const float *u, int part) {
    const int64_t t0 = b * kTokenBlock;
    const int lo = static_cast<int>(std::max<int64_t>(0, r0 - t0));
    const int hi = static_cast<int>(std::min<int64_t>(kTokenBlock, r1 - t0));
    const __mmask16 tokens = static_cast<__mmask16>(((1u << hi) - 1) & ~((1u << lo) - 1));
    uint16_t *dst = packed_h + b * h_block + (col / 2) * 32;
    // Bias pointers moved to this tile's first column.
    HiddenTileEpilogue at = *this;
    if (at.extras.first != nullptr) at.extras.first += col;
    if (at.extras.second != nullptr) at.extras.second += col;
    for (int q = 2 * part; q < 2 * part + 2 && 2 * q < ncols; ++q) {
      const __m512 v0 = at.column(2 * q, c, u);
      const __m512 v1 = 2 * q + 1 < ncols ? at.column(2 * q + 1, c, u) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(dst + q * 32, tokens, bf16_pairs(v0, v1));
    }
  }
};

// Phase-1 epilogue of the GEMV path on the engine paths: one token row into the packed h.
template <Activation Act, bool Gated>
struct HiddenPackedRowEpilogue {
  uint16_t *packed_h;
  int64_t h_block;
  int64_t row_base;  // relative row of local row 0
  HiddenExtras extras{};
  void row(int64_t i, int64_t col, int n, const float *v, const float *u) {
    const int64_t r = row_base + i;
    uint16_t *dst = packed_h + (r / kTokenBlock) * h_block + (r % kTokenBlock) * 2;
    alignas(64) float vals[kVecWidth] = {};
    alignas(64) uint32_t bits[kVecWidth];
    for (int j = 0; j < n; j += kVecWidth) {
      const int m = std::min(kVecWidth, n - j);
      hidden_values<Act, Gated>(extras, col + j, m, v + j, Gated ? u + j : nullptr, vals);
      _mm512_store_si512(bits, bf16_bits(_mm512_load_ps(vals)));
      for (int q = 0; q < m; ++q) {
        const int64_t c = col + j + q;
        dst[(c / 2) * 32 + (c & 1)] = static_cast<uint16_t>(bits[q]);
      }
    }
  }
};

// Phase-2 epilogue of the engine loops: transpose C^T to token rows, gate scale, scatter-add or
// plain store of this expert's tokens.
struct OutputTileEpilogue {
  float *y;
  int64_t ldy;
  const int32_t *out_rows;
  const float *gates;
  int64_t offset0;
  int64_t r0, r1;  // this expert's packed rows
  int64_t begin;   // its first assignment (offsets[e])
  const float *bias = nullptr;  // this expert's down bias [D], or null
  const uint8_t *first = nullptr;  // as OutputEpilogue::first
  void tile(int64_t b, int64_t col, int ncols, const float *c, const float *) {
    const int64_t t0 = b * kTokenBlock;
    const int lo = static_cast<int>(std::max<int64_t>(0, r0 - t0));
    const int hi = static_cast<int>(std::min<int64_t>(kTokenBlock, r1 - t0));
    __m512i r[16];
    for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_si512(c + j * 16);
    transpose16x16_epi32(r);
    const __mmask16 cols = static_cast<__mmask16>((1u << ncols) - 1);
    const __m512 bv = bias != nullptr ? _mm512_maskz_loadu_ps(cols, bias + col) : _mm512_setzero_ps();
    for (int t = lo; t < hi; ++t) {
      const int64_t a = begin + (t0 + t - r0);
      __m512 sum = _mm512_castsi512_ps(r[t]);
      if (bias != nullptr) sum = _mm512_add_ps(sum, bv);
      const __m512 v = _mm512_mul_ps(_mm512_set1_ps(gates != nullptr ? gates[a] : 1.0f), sum);
      if (out_rows != nullptr) {
        float *dst = y + static_cast<int64_t>(out_rows[a]) * ldy + col;
        if (first != nullptr && first[a - offset0] != 0)
          _mm512_mask_storeu_ps(dst, cols, v);
        else
          _mm512_mask_storeu_ps(dst, cols, _mm512_add_ps(_mm512_maskz_loadu_ps(cols, dst), v));
      } else {
        _mm512_mask_storeu_ps(y + (a - offset0) * ldy + col, cols, v);
      }
    }
  }
};

// Rows [r0, r1) of the packed h out of their blocks into dst (row r at dst + (r - r0) * ld), f32
// or bf16 (see unpack_token_block).
template <class T>
inline void unpack_segment(const uint16_t *packed_h, int64_t h_block, int64_t r0, int64_t r1, T *dst, int64_t ld,
                           int64_t F) {
  for (int64_t b = r0 / kTokenBlock; b * kTokenBlock < r1; ++b) {
    T *rows[kTokenBlock];
    for (int t = 0; t < kTokenBlock; ++t) {
      const int64_t r = b * kTokenBlock + t;
      rows[t] = r >= r0 && r < r1 ? dst + (r - r0) * ld : nullptr;
    }
    unpack_token_block(packed_h + b * h_block, rows, F);
  }
}

// Packed rows [r0, r1) (r0 at a block boundary) x columns [c0, c1), in pieces of at most max_cols
// columns, the width the partial buffer is sized for.
template <MatmulPath Path, bool Gated, class Epilogue>
inline void engine_gemm(const uint16_t *w, const uint16_t *w2, int64_t K, const uint16_t *packed, int64_t r0,
                        int64_t r1, int64_t c0, int64_t c1, int64_t max_cols, const TileConfig &tiles,
                        float *partial, const EngineScratch &s, Epilogue &ep) {
  const int64_t b0 = r0 / kTokenBlock, b1 = (r1 + kTokenBlock - 1) / kTokenBlock;
  for (int64_t c = c0; c < c1; c += max_cols) {
    const int64_t ce = std::min(c1, c + max_cols);
    if constexpr (Path == MatmulPath::amx_bf16) {
#if defined(MIXTILE_HAVE_AMX_BF16)
      amx_gemm<Gated>(w, w2, K, packed, b0, b1, c, ce, tiles.engine_kc, tiles.engine_mc, tiles.engine_stream_rows,
                      tiles.engine_panel_rows, tiles.engine_l1_rows, tiles.engine_l1_kc,
                      tiles.engine_whole_depth_bytes, partial, s, ep);
#endif
    } else {
#if defined(MIXTILE_HAVE_AVX512_BF16)
      dp_gemm<Gated>(w, w2, K, packed, b0, b1, r1 - (b1 - 1) * kTokenBlock, c, ce, tiles.engine_kc,
                     tiles.engine_mc, tiles.engine_stream_rows, partial, s, ep);
#endif
    }
  }
}

template <WeightType W, Activation Act, bool Gated, MatmulPath Path>
void expert_ffn_engine(const ExpertFFNProblem &p, const TileConfig &tiles) {
  const int64_t E = p.num_experts, D = p.hidden, F = p.inter;
  const Extent extent = extent_of(p);
  const int64_t off0 = extent.off0, A = extent.A, zero_rows = extent.zero_rows;
  if (extent.empty) return;
  const int nt = resolve_threads(p.num_threads);
  constexpr bool kFp8 = W == WeightType::fp8_e4m3, kMxfp4 = W == WeightType::mxfp4;
  constexpr bool kSlabs = weights_in_slabs(W);
  const EngineWorkspace layout = engine_workspace(A, E, D, F, nt, tiles, kSlabs);
  char *ws = static_cast<char *>(p.workspace);
  uint16_t *packed_x = reinterpret_cast<uint16_t *>(ws);
  uint16_t *packed_h = reinterpret_cast<uint16_t *>(ws + layout.x_bytes);
  int64_t *prow = reinterpret_cast<int64_t *>(ws + layout.x_bytes + layout.h_bytes);
  uint8_t *first = reinterpret_cast<uint8_t *>(ws + layout.x_bytes + layout.h_bytes + layout.rows_bytes);
  char *thread_ws = ws + layout.x_bytes + layout.h_bytes + layout.rows_bytes + layout.first_bytes;
  const bool first_stores = p.out_rows != nullptr;  // scatter mode: y is not zeroed first
  const uint8_t *first_or_null = first_stores ? first : nullptr;  // the output epilogues' `first`
  const int64_t blocks = packed_rows(p, tiles, prow);
  bool any_engine = false;  // x is packed only when some segment runs on the engine
  for (int64_t e = 0; e < E; ++e) any_engine |= p.offsets[e + 1] - p.offsets[e] > tiles.small_m_max;
  const int64_t active = active_experts(p);
  WorkCounter phase1, phase2;

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int nthreads = omp_get_num_threads();
    const int64_t f_pieces = column_pieces(F, active, nthreads, kPiecesPerThread);
    const int64_t d_pieces = column_pieces(
        D, 1, nthreads, Path == MatmulPath::amx_bf16 ? kAmxSharedPiecesPerThread : kSharedPiecesPerThread);
    char *mine = thread_ws + layout.per_thread * tid;
    const EngineScratch scratch = carve_engine_scratch(mine);
    float *partial = reinterpret_cast<float *>(mine + engine_scratch_bytes(tiles));
    float *small_h = partial + align64(sizeof(float) * layout.partial_floats) / sizeof(float);
    uint16_t *slab = reinterpret_cast<uint16_t *>(mine + layout.per_thread - (kSlabs ? slab_bytes(D, F) : 0));
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_configure_tiles();
#endif

    // Stage 0: pack x (gathered through tokens, rounded to bf16; gap rows zero) and zero what
    // phase 1 never writes in h: the depth padding past F, and whole blocks with gap rows.
    for (int64_t b = tid; b < blocks; b += nthreads) {
      const float *rows[kTokenBlock];
      bool full = true;
      for (int t = 0; t < kTokenBlock; ++t) {
        const int64_t a = assignment_at(p, prow, b * kTokenBlock + t);
        full &= a >= 0;
        rows[t] = a >= 0 ? p.x + (p.tokens != nullptr ? static_cast<int64_t>(p.tokens[a]) : a) * D
                         : nullptr;
      }
      if (any_engine) pack_token_block(packed_x + b * layout.x_block, rows, D);
      uint16_t *hb = packed_h + b * layout.h_block;
      if (!full) {
        std::memset(hb, 0, sizeof(uint16_t) * layout.h_block);
      } else {
        const int64_t first_pair = F / 2;  // a pair holding column F - 1 alone gets its zero here
        std::memset(hb + first_pair * 32, 0, sizeof(uint16_t) * (layout.h_block - first_pair * 32));
      }
    }
#pragma omp barrier

    // Phase 1: pieces of h's F columns, (expert, piece) items from a WorkCounter (see expert_ffn).
    int64_t c0, c1;
    for (int64_t i; A > 0 && (i = phase1.take()) < E * f_pieces;) {
      const int64_t e = i / f_pieces, begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
      split_columns(F, f_pieces, i % f_pieces, c0, c1);
      if (rows <= 0 || c0 >= c1) continue;
      const int64_t r0 = prow[e], r1 = r0 + rows;
      const void *first = Gated ? p.gate_w[e] : p.up_w[e];
      const void *second = Gated ? p.up_w[e] : nullptr;
      const WeightScales s1 = first_scales<Gated>(p, e), s2 = second_scales<Gated>(p, e);
      if (rows <= tiles.small_m_max) {
        const RowSource src{p.x, D, p.tokens, begin};
        HiddenPackedRowEpilogue<Act, Gated> inner{packed_h, layout.h_block, r0, hidden_extras<Gated>(p, e)};
        [[maybe_unused]] uint16_t *xr = reinterpret_cast<uint16_t *>(small_h);
#if defined(MIXTILE_HAVE_AVX512_BF16)
        if constexpr (Path == MatmulPath::avx512_bf16) {
          round_rows_bf16(xr, src, rows, D);
          if (kFp8 && fp8_fused(s1.fp8, rows)) {  // codes converted in registers, no slab
            dp_small_fp8<Gated>(rows, D, RowsOf<uint16_t>{xr, padded_depth(D), nullptr, 0},
                                static_cast<const uint8_t *>(first), static_cast<const uint8_t *>(second), s1.fp8,
                                s2.fp8, c0, c1, inner);
            continue;
          }
          if constexpr (kMxfp4) {
            if (mxfp4_fused(rows)) {  // the same for MXFP4 codes
              dp_small_mxfp4<Gated>(rows, D, RowsOf<uint16_t>{xr, padded_depth(D), nullptr, 0},
                                    static_cast<const uint8_t *>(first), static_cast<const uint8_t *>(second), s1.mx,
                                    s2.mx, c0, c1, inner);
              continue;
            }
          }
        }
#endif
        with_weight_columns<W>(first, second, s1, s2, D, c0, c1, slab,
                               [&](const uint16_t *w1, const uint16_t *w2, int64_t a, int64_t b, int64_t shift) {
                                 ShiftedEpilogue<decltype(inner)> ep{inner, shift};
                                 if constexpr (Path == MatmulPath::avx512_bf16) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
                                   dp_small<Gated>(rows, D, RowsOf<uint16_t>{xr, padded_depth(D), nullptr, 0}, w1,
                                                   w2, D, a, b, tiles, ep);
#endif
                                 } else {
                                   gemm_small<WeightType::bf16, Gated>(rows, D, src, w1, w2, D, a, b, tiles, ep);
                                 }
                               });
      } else {
        HiddenTileEpilogue<Act, Gated> inner{packed_h, layout.h_block, r0, r1, hidden_extras<Gated>(p, e)};
        with_weight_columns<W>(first, second, s1, s2, D, c0, c1, slab,
                               [&](const uint16_t *w1, const uint16_t *w2, int64_t a, int64_t b, int64_t shift) {
                                 ShiftedEpilogue<decltype(inner)> ep{inner, shift};
                                 engine_gemm<Path, Gated>(w1, w2, D, packed_x, r0, r1, a, b, layout.max_cols_f,
                                                          tiles, partial, scratch, ep);
                               });
      }
    }

#pragma omp barrier
    // Scatter mode: one thread marks each y row's first contribution, which phase 2 stores
    // instead of adding to a zeroed row. After phase 1, since y may be the caller's x.
    if (first_stores) {
      if (tid == nthreads - 1) mark_first_contributions(p, off0, A, zero_rows, first);
#pragma omp barrier
    }
    // Phase 2: pieces of y's D columns from a WorkCounter, each over every expert (the
    // scatter-add of one piece never races with another's).
    for (int64_t i; (i = phase2.take()) < d_pieces;) {
      split_columns(D, d_pieces, i, c0, c1);
      for (int64_t e = 0; e < E && A > 0 && c0 < c1; ++e) {
        const int64_t begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
        if (rows <= 0) continue;
        const int64_t r0 = prow[e], r1 = r0 + rows;
        const void *down = p.down_w[e];
        const WeightScales sd = scales_of(p, ExpertMatrix::down, e);
        if (rows <= tiles.small_m_max || F == 0) {  // F == 0: the GEMV path writes the zero sums
          OutputEpilogue inner{p.y, D, p.out_rows, p.gates, begin, off0, down_bias_of(p, e), first_or_null};
          // The GEMV path reads this segment's h rows out of their blocks, per thread: bf16 rows
          // (dp_small) or f32 ones (gemm_small, the rounded values).
          if constexpr (Path == MatmulPath::avx512_bf16)
            unpack_segment(packed_h, layout.h_block, r0, r1, reinterpret_cast<uint16_t *>(small_h), padded_depth(F), F);
          else
            unpack_segment(packed_h, layout.h_block, r0, r1, small_h, F, F);
#if defined(MIXTILE_HAVE_AVX512_BF16)
          if (Path == MatmulPath::avx512_bf16 && kFp8 && fp8_fused(sd.fp8, rows)) {  // in registers, no slab
            dp_small_fp8<false>(rows, F, RowsOf<uint16_t>{reinterpret_cast<uint16_t *>(small_h), padded_depth(F), nullptr, 0},
                                static_cast<const uint8_t *>(down), nullptr, sd.fp8, sd.fp8, c0, c1, inner);
            continue;
          }
          if constexpr (Path == MatmulPath::avx512_bf16 && kMxfp4) {
            if (mxfp4_fused(rows)) {
              dp_small_mxfp4<false>(rows, F,
                                    RowsOf<uint16_t>{reinterpret_cast<uint16_t *>(small_h), padded_depth(F), nullptr, 0},
                                    static_cast<const uint8_t *>(down), nullptr, sd.mx, nullptr, c0, c1, inner);
              continue;
            }
          }
#endif
          with_weight_columns<W>(down, nullptr, sd, WeightScales{}, F, c0, c1, slab,
                                 [&](const uint16_t *w1, const uint16_t *, int64_t a, int64_t b, int64_t shift) {
                                   ShiftedEpilogue<OutputEpilogue> ep{inner, shift};
                                   if constexpr (Path == MatmulPath::avx512_bf16) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
                                     const RowsOf<uint16_t> hr{reinterpret_cast<uint16_t *>(small_h), padded_depth(F),
                                                               nullptr, 0};
                                     dp_small<false>(rows, F, hr, w1, nullptr, F, a, b, tiles, ep);
#endif
                                   } else {
                                     const RowSource src{small_h, F, nullptr, 0};
                                     gemm_small<WeightType::bf16, false>(rows, F, src, w1, nullptr, F, a, b, tiles, ep);
                                   }
                                 });
        } else {
          OutputTileEpilogue inner{p.y, D, p.out_rows, p.gates, off0, r0, r1, begin, down_bias_of(p, e),
                                   first_or_null};
          with_weight_columns<W>(down, nullptr, sd, WeightScales{}, F, c0, c1, slab,
                                 [&](const uint16_t *w1, const uint16_t *, int64_t a, int64_t b, int64_t shift) {
                                   ShiftedEpilogue<OutputTileEpilogue> ep{inner, shift};
                                   engine_gemm<Path, false>(w1, nullptr, F, packed_h, r0, r1, a, b, layout.max_cols_d,
                                                            tiles, partial, scratch, ep);
                                 });
        }
      }
    }
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_release_tiles();
#endif
  }
}

#endif  // MIXTILE_HAVE_BF16_ENGINE

}  // namespace detail

inline size_t expert_ffn_workspace_size(int64_t num_assignments, int64_t num_experts, int64_t D, int64_t F,
                                        int num_threads, const TileConfig &tiles = default_tile_config(),
                                        MatmulPath path = MatmulPath::fma_f32,
                                        WeightType weights = WeightType::f32) {
  const int nt = detail::resolve_threads(num_threads);
  const int64_t A = std::max<int64_t>(num_assignments, 0);
  if (!detail::workspace_sizes_fit({A, num_experts, D, F, nt})) return detail::kWorkspaceOverflow;
  const bool slabs = detail::weights_in_slabs(weights);
  if (path != MatmulPath::fma_f32) {
    const detail::EngineWorkspace w = detail::engine_workspace(A, num_experts, D, F, nt, tiles, slabs);
    return w.x_bytes + w.h_bytes + w.rows_bytes + w.first_bytes + static_cast<size_t>(nt) * w.per_thread;
  }
  return detail::align64(sizeof(float) * A * F) +
         static_cast<size_t>(nt) * detail::expert_ffn_thread_scratch_bytes(A, D, F, tiles, slabs);
}

template <WeightType W, Activation Act, bool Gated, MatmulPath Path = MatmulPath::fma_f32>
void expert_ffn(const ExpertFFNProblem &p, const TileConfig &tiles = default_tile_config()) {
  static_assert(detail::MatmulPathCheck<W, Path>::ok, "");
#if defined(MIXTILE_HAVE_BF16_ENGINE)
  if constexpr (Path != MatmulPath::fma_f32) {
    detail::expert_ffn_engine<W, Act, Gated, Path>(p, tiles);
    return;
  }
#endif
  constexpr WeightType KW = detail::kernel_weight_type<W>;
  constexpr bool kSlabs = detail::weights_in_slabs(W);
  const int64_t E = p.num_experts, D = p.hidden, F = p.inter;
  const detail::Extent extent = detail::extent_of(p);
  const int64_t off0 = extent.off0, A = extent.A, zero_rows = extent.zero_rows;
  if (extent.empty) return;
  const int nt = detail::resolve_threads(p.num_threads);
  char *ws = static_cast<char *>(p.workspace);
  float *h = reinterpret_cast<float *>(ws);
  char *thread_ws = ws + detail::align64(sizeof(float) * std::max<int64_t>(A, 0) * F);
  const size_t per_thread = detail::expert_ffn_thread_scratch_bytes(A, D, F, tiles, kSlabs);
  const int64_t active = detail::active_experts(p);
  detail::WorkCounter phase1, phase2;

#pragma omp parallel num_threads(nt)
  {
    const int tid = omp_get_thread_num();
    const int nthreads = omp_get_num_threads();
    const detail::GemmScratch scratch =
        detail::carve_scratch(thread_ws + per_thread * tid, tiles, std::max(D, F));
    uint16_t *slab = reinterpret_cast<uint16_t *>(thread_ws + per_thread * (tid + 1) -
                                                  (kSlabs ? detail::slab_bytes(D, F) : 0));
    // Phase 1: h = act(x · Wgᵀ) ⊙ (x · Wuᵀ)  or  act(x · Wuᵀ), in (expert, column piece) items
    // taken from a WorkCounter: each active expert's F columns cut into column_pieces pieces
    // (whole experts when there are many; Mixture of Tokens' F = 16 is one piece). h rows
    // belong to one expert each, so any split is race-free.
    const int64_t f_pieces = detail::column_pieces(F, active, nthreads, detail::kPiecesPerThread);
    const int64_t d_pieces = detail::column_pieces(D, 1, nthreads, detail::kSharedPiecesPerThread);
    int64_t c0, c1;
    for (int64_t i; A > 0 && (i = phase1.take()) < E * f_pieces;) {
      const int64_t e = i / f_pieces, begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
      detail::split_columns(F, f_pieces, i % f_pieces, c0, c1);
      if (rows <= 0 || c0 >= c1) continue;
      const detail::RowSource src{p.x, D, p.tokens, begin};
      detail::HiddenEpilogue<Act, Gated> inner{h, F, begin - off0, detail::hidden_extras<Gated>(p, e)};
      detail::with_weight_columns<W>(
          Gated ? p.gate_w[e] : p.up_w[e], Gated ? p.up_w[e] : nullptr, detail::first_scales<Gated>(p, e),
          detail::second_scales<Gated>(p, e), D, c0, c1, slab, [&](const WeightStorage<KW> *w1, const WeightStorage<KW> *w2, int64_t a, int64_t b, int64_t shift) {
            detail::ShiftedEpilogue<decltype(inner)> ep{inner, shift};
            detail::gemm_columns<KW, Gated>(rows, D, src, w1, w2, a, b, tiles, scratch, ep);
          });
    }

    // Phase 2 needs every F column of h: one barrier, then pieces of y's D columns, each over
    // every expert (the scatter-add of one piece never races with another's).
#pragma omp barrier
    for (int64_t i; (i = phase2.take()) < d_pieces;) {
      detail::split_columns(D, d_pieces, i, c0, c1);
      detail::zero_columns(p.y, D, zero_rows, c0, c1);
      for (int64_t e = 0; e < E && A > 0; ++e) {
        const int64_t begin = p.offsets[e], rows = p.offsets[e + 1] - begin;
        if (rows <= 0) continue;
        const detail::RowSource src{h, F, nullptr, begin - off0};
        detail::OutputEpilogue inner{p.y, D, p.out_rows, p.gates, begin, off0, detail::down_bias_of(p, e)};
        detail::with_weight_columns<W>(
            p.down_w[e], nullptr, detail::scales_of(p, detail::ExpertMatrix::down, e), detail::WeightScales{}, F, c0,
            c1, slab,
            [&](const WeightStorage<KW> *w1, const WeightStorage<KW> *, int64_t a, int64_t b, int64_t shift) {
              detail::ShiftedEpilogue<detail::OutputEpilogue> ep{inner, shift};
              detail::gemm_columns<KW, false>(rows, F, src, w1, nullptr, a, b, tiles, scratch, ep);
            });
      }
    }
  }
}

}  // namespace mixtile::cpu
