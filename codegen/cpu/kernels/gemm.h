// The GEMM engine of the CPU kernel library: C[m, n] = sum_k A[row(m), k] * W[n, k] for one thread's
// range of output columns, with the row gather in the A-packing prologue and a caller-supplied
// epilogue per finished output row segment. It never spawns threads; callers (expert_ffn.h,
// linear) own the OpenMP region and hand each thread disjoint columns or rows.
//
// Two paths:
//  * blocked (M > TileConfig::small_m_max): BLIS-style. W panels of NR columns are packed k-major
//    (bf16/f16 widened to f32 while packing), gathered A rows are packed MR-interleaved, and an
//    MR x NR register-blocked microkernel runs over kc-deep slices, prefetching the next slice's
//    weights into L2 as it goes. Partial sums between kc slices live in a per-thread buffer; the
//    epilogue runs once per output element after the last slice.
//  * small-M (GEMV-shaped, decode, M <= small_m_max): weight rows are read unpacked, each loaded
//    vector feeding up to kSmallMaxTokens token rows with independent vector accumulators, reduced
//    horizontally at the end; sums are buffered per 16 columns so the epilogue runs on vectors.
//    When a token group's rows exceed the L1 budget (down projection, K = F), the depth is split
//    into k-slices and per-row partial sums of 64-column panels are carried across the slices.
// Gated (SwiGLU/GeGLU) mode packs gate rows into the first half of each NR panel and up rows into
// the second half, so one pass produces both projections of the same output columns.
// These are MatmulPath::fma_f32; the bf16 matrix engines (AMX, AVX512-BF16) live in
// matrix_engines.h and reuse the small-M path here for segments of at most small_m_max rows.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

#include "simd.h"

namespace mixtile::cpu {

// Register tile of the blocked microkernel, fixed per ISA at build time.
#if defined(__AVX512F__)
constexpr int kMicroRows = 14;    // MR
constexpr int kMicroVectors = 2;  // NR = 2 x 16 = 32 columns
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kMicroRows = 6;
constexpr int kMicroVectors = 2;  // NR = 16
#else
constexpr int kMicroRows = 4;
constexpr int kMicroVectors = 2;  // NR = 8
#endif
constexpr int kMicroCols = kMicroVectors * detail::kVecWidth;  // NR
// Threads split output columns in multiples of this (a whole microkernel panel).
constexpr int kColumnUnit = kMicroCols;

// Default of TileConfig::small_prefetch_rows (a tuning/test hook; see prefetch_weights).
#ifndef MIXTILE_PF_MIN
#define MIXTILE_PF_MIN 4
#endif

// Cache blocking of the GEMM engine, passed into every call so the compiler can pick one per
// token-count bucket. Defaults per ISA come from default_tile_config().
struct TileConfig {
  int mc = 14 * 8;       // A rows packed per block (rounded down to a multiple of MR): A block in L2
  int kc = 256;          // depth of one packed slice: the kc x NR B micro-panel stays in L1
  int nc = 512;          // packed B columns per block (rounded up to NR): kc x nc B block in L2
  int small_m_max = 32;  // segments with at most this many rows take the GEMV-shaped path
  // The GEMV-shaped path prefetches its weight streams in software for token groups of at least
  // this many rows; fewer rely on the hardware prefetchers (a CPU-family choice: see
  // prefetch_weights).
  int small_prefetch_rows = MIXTILE_PF_MIN;
  // ... and takes at most this many token rows per block (0: as many as its accumulators allow,
  // up to kSmallMaxTokens). Fewer rows per weight vector run the loop faster per weight byte,
  // so more weight lines are in flight; the chunk's weights are then read again from L2 by the
  // next group (a CPU-family and kernel choice: see the avx512_bf16 table's linear bucket).
  int small_group_rows = 0;
  // ... and when > 0, its prefetching full-depth token groups (rows that fit the L1 budget, not
  // k-blocked) prefetch into L2 (prefetcht1) this many bytes ahead along the row, as the
  // VDPBF16PS small path does (matrix_engines.h, kDpSmallPrefetchBytes); 0 keeps the row rule of
  // prefetch_weights (into L1 2 KB ahead below kPrefetchL2MinTokens rows, into L2 4 KB ahead from
  // there). A CPU-family choice: see the Intel table.
  int small_prefetch_l2_bytes = 0;
  // ... and linear maps on the fma_f32 path with bf16 weights, in builds with AVX512-BF16, run
  // calls of at least this many rows (and at most small_m_max) on the VDPBF16PS small path
  // instead, their rows rounded to bf16 as the bf16 paths round them (0: never; linear.h). A
  // CPU-family choice: see the Intel table.
  int small_dp_rows = 0;
  // bf16 matrix-engine paths (matrix_engines.h): depth slice of the AMX / VDPBF16PS loops, a
  // multiple of 32; deeper GEMMs keep partial results between slices in the workspace.
  int engine_kc = 1024;
  // ... and token rows per pass (rounded to whole groups of 16-row blocks): the packed tokens of
  // a pass x engine_kc stay in L2 while the thread's weight columns stream past them.
  int engine_mc = 512;
  // ... and GEMMs of at most this many rows (whole 16-row blocks) stream their weights once:
  // depth unsliced, no software prefetch (matrix_engines.h, engine_streams).
  int engine_stream_rows = 0;
  // ... and AMX GEMMs of at least this many rows (whole 16-row blocks, not streaming) copy each
  // column step's weight tiles into a contiguous panel reused by every token pair (0: never;
  // matrix_engines.h, amx_gemm_pass).
  int engine_panel_rows = 0;
  // ... and AMX GEMMs of at least this many rows (whole 16-row blocks, not streaming) slice their
  // depth by engine_l1_kc instead of engine_kc (0: never): shallow enough that a column step's
  // weight panel stays in L1 while the token tiles stream past it (matrix_engines.h, amx_gemm).
  int engine_l1_rows = 0;
  int engine_l1_kc = 512;
  // ... and AMX GEMMs that neither stream nor take engine_l1_kc keep their depth whole (one slice,
  // no partial results) when one pass's packed tokens over the whole depth fit this many bytes
  // (0: never): they stay in L2 while the weights stream past (matrix_engines.h, amx_gemm).
  int engine_whole_depth_bytes = 0;
};

// Defaults per ISA, measured on Zen 5 (AVX-512) for the Mixtral-like D=1024/F=3584 expert shape:
// the GEMV-shaped path beats the blocked GEMM up to ~32 rows per expert (weights stream once,
// nothing is packed); above that the blocked GEMM wins. `rows_hint` (expected rows per GEMM, 0 if
// unknown) is the hook for per-bucket tuning; the measured optimum did not depend on it.
inline TileConfig default_tile_config(int64_t rows_hint = 0) {
  TileConfig c;
#if defined(__AVX512F__)
  c.mc = 14 * 8;
  c.kc = 256;
  c.nc = 512;
  c.small_m_max = 32;
#elif defined(__AVX2__) && defined(__FMA__)
  c.mc = 6 * 16;
  c.kc = 256;
  c.nc = 512;
  c.small_m_max = 16;
#else
  c.mc = 4 * 16;
  c.kc = 256;
  c.nc = 256;
  c.small_m_max = 8;
#endif
  (void)rows_hint;
  return c;
}

namespace detail {

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
inline size_t align64(size_t bytes) { return (bytes + 63) / 64 * 64; }

/// What a *_workspace_size function returns for sizes whose workspace would not fit 64 bits
/// (the runtime refuses the run by name; the kernels never see such sizes).
inline constexpr size_t kWorkspaceOverflow = ~size_t(0);

/// Whether a workspace function may compute with these sizes: every size at most 2^40 and the
/// two largest together at most 2^44. Each size product a workspace function or its kernel
/// forms involves at most two of them, times tile sizes, element bytes and the thread count
/// (below 2^16 together), so nothing overflows 64 bits.
inline bool workspace_sizes_fit(std::initializer_list<int64_t> sizes) {
  int64_t first = 1, second = 1;
  for (int64_t s : sizes) {
    if (s > (int64_t(1) << 40)) return false;
    if (s > first) { second = first; first = s; }
    else if (s > second) second = s;
  }
  return static_cast<double>(first) * static_cast<double>(second) <= 0x1p44;
}

// Rows of the A operand: row i is base + (index ? index[first + i] : first + i) * ld.
template <class T>
struct RowsOf {
  const T *base;
  int64_t ld;
  const int32_t *index;
  int64_t first;
  const T *row(int64_t i) const {
    const int64_t r = index != nullptr ? static_cast<int64_t>(index[first + i]) : first + i;
    return base + r * ld;
  }
};
using RowSource = RowsOf<float>;

// Per-thread buffers of the blocked path, carved out of the caller's workspace.
struct GemmScratch {
  float *a_pack;     // round_up(mc, MR) x kc
  float *b_pack;     // kc x round_up(nc, NR)
  float *c_partial;  // round_up(max rows, MR) x round_up(nc, NR), only when K > kc
  float *tile;       // MR x NR
};

struct ScratchShape {
  int mc, kc, nc;
};
inline ScratchShape scratch_shape(const TileConfig &cfg) {
  ScratchShape s;
  s.mc = std::max<int>(kMicroRows, cfg.mc / kMicroRows * kMicroRows);
  s.kc = std::max(1, cfg.kc);
  s.nc = static_cast<int>(round_up(std::max(1, cfg.nc), kMicroCols));
  return s;
}

// Bytes of one thread's GemmScratch for GEMMs with at most max_rows rows and depth max_depth.
inline size_t gemm_scratch_bytes(const TileConfig &cfg, int64_t max_rows, int64_t max_depth) {
  const ScratchShape s = scratch_shape(cfg);
  size_t bytes = align64(sizeof(float) * s.mc * s.kc) + align64(sizeof(float) * s.kc * s.nc) +
                 align64(sizeof(float) * kMicroRows * kMicroCols);
  if (max_depth > s.kc)
    bytes += align64(sizeof(float) * round_up(std::max<int64_t>(max_rows, 1), kMicroRows) * s.nc);
  return bytes;
}

inline GemmScratch carve_scratch(char *p, const TileConfig &cfg, int64_t max_depth) {
  const ScratchShape s = scratch_shape(cfg);
  GemmScratch g;
  g.a_pack = reinterpret_cast<float *>(p);
  p += align64(sizeof(float) * s.mc * s.kc);
  g.b_pack = reinterpret_cast<float *>(p);
  p += align64(sizeof(float) * s.kc * s.nc);
  g.tile = reinterpret_cast<float *>(p);
  p += align64(sizeof(float) * kMicroRows * kMicroCols);
  g.c_partial = max_depth > s.kc ? reinterpret_cast<float *>(p) : nullptr;
  return g;
}

// ---- packing --------------------------------------------------------------------------------------

#if defined(__AVX512F__)
// In-register transpose: on return r[k] holds element k of the 16 input rows r[0..15].
// Always inlined: called out of line, GCC passes the 16 registers through memory.
__attribute__((always_inline)) inline void transpose16x16(__m512 (&r)[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  // r[4i + j], 128-bit lane L, now holds rows 4i..4i+3 of column 4L + j.
  for (int j = 0; j < 4; ++j) {
    const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
    const __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
    const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
    const __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    t[j] = _mm512_shuffle_f32x4(u0, u2, 0x88);
    t[8 + j] = _mm512_shuffle_f32x4(u0, u2, 0xdd);
    t[4 + j] = _mm512_shuffle_f32x4(u1, u3, 0x88);
    t[12 + j] = _mm512_shuffle_f32x4(u1, u3, 0xdd);
  }
  for (int k = 0; k < 16; ++k) r[k] = t[k];
}
#endif

// dst[k * NR + lane0 + j] = W[row0 + j][k0 + k] for j < nvalid, 0 for nvalid <= j < nlanes.
// AVX-512: 16 rows x 16 weights (whole cache lines of each row) are loaded, widened from bf16/f16
// and transposed in registers. Weights usually come from DRAM here (each is packed once per
// call); reading 16 rows at once runs at ~20 GB/s on Zen 5, half the streaming rate, which is
// why small segments take the unpacked GEMV path instead.
template <WeightType W>
inline void pack_b_lanes(float *__restrict dst, int lane0, int nlanes, int nvalid,
                         const WeightStorage<W> *__restrict w, int64_t ldw, int64_t k0, int kc) {
  constexpr int NR = kMicroCols;
#if defined(__AVX512F__)
  // Whole groups of 16 valid lanes (a gated half panel, or both halves of a plain one) go
  // through the transpose; the rest of the lanes and of the depth take the scalar loop.
  const int groups = std::min(nlanes, nvalid) / 16;
  const int kvec = kc / 16 * 16;
  for (int g = 0; g < groups; ++g) {
    const WeightStorage<W> *src = w + static_cast<int64_t>(g) * 16 * ldw + k0;
    float *out = dst + lane0 + g * 16;
    for (int kb = 0; kb < kvec; kb += 16) {
      __m512 r[16];
      for (int j = 0; j < 16; ++j) r[j] = vload_weight<W>(src + j * ldw + kb).v;
      transpose16x16(r);
      for (int k = 0; k < 16; ++k) _mm512_storeu_ps(out + static_cast<int64_t>(kb + k) * NR, r[k]);
    }
    for (int j = 0; j < 16; ++j)
      for (int k = kvec; k < kc; ++k)
        out[static_cast<int64_t>(k) * NR + j] = load_weight_scalar<W>(src + j * ldw + k);
  }
  const int jdone = groups * 16;
#else
  const int jdone = 0;
#endif
  for (int j = jdone; j < nvalid; ++j) {
    const WeightStorage<W> *src = w + j * ldw + k0;
    for (int k = 0; k < kc; ++k) dst[static_cast<int64_t>(k) * NR + lane0 + j] = load_weight_scalar<W>(src + k);
  }
  for (int j = std::max(nvalid, jdone); j < nlanes; ++j)
    for (int k = 0; k < kc; ++k) dst[static_cast<int64_t>(k) * NR + lane0 + j] = 0.0f;
}

// Packs A rows [i0, i0 + mcur), depth [k0, k0 + kc) MR-interleaved: block b, dst[b*MR*kc + k*MR + i].
// Rows past mcur are zero so the microkernel always runs full tiles.
inline void pack_a(float *__restrict dst, const RowSource &a, int64_t i0, int mcur, int64_t k0, int kc) {
  constexpr int MR = kMicroRows;
  for (int ib = 0; ib < mcur; ib += MR) {
    float *blk = dst + static_cast<int64_t>(ib) * kc;
    const int rows = std::min(MR, mcur - ib);
    const float *src[MR];
    for (int i = 0; i < MR; ++i) src[i] = i < rows ? a.row(i0 + ib + i) + k0 : nullptr;
    int k = 0;
#if defined(__AVX512F__)
    // 16 depths of the tile's rows at a time, transposed in registers (missing rows are zeros).
    static_assert(MR <= 16, "one transpose covers the tile's rows");
    constexpr __mmask16 kRows = static_cast<__mmask16>((1u << MR) - 1);
    for (; k + 16 <= kc; k += 16) {
      __m512 r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < rows ? _mm512_loadu_ps(src[i] + k) : _mm512_setzero_ps();
      transpose16x16(r);
      for (int j = 0; j < 16; ++j) _mm512_mask_storeu_ps(blk + (k + j) * MR, kRows, r[j]);
    }
#endif
    for (; k < kc; ++k)
      for (int i = 0; i < MR; ++i) blk[k * MR + i] = i < rows ? src[i][k] : 0.0f;
  }
}

// ---- microkernel ----------------------------------------------------------------------------------

// acc[i][v] += sum_k a[k*MR + i] * b[k*NR + v*W .. ]
template <int MR, int NV>
inline void microkernel(int kc, const float *__restrict a, const float *__restrict b, VecF (&acc)[MR][NV]) {
  constexpr int NR = NV * kVecWidth;
  for (int k = 0; k < kc; ++k) {
    VecF bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + k * NR + v * kVecWidth);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const VecF ai = vset1(a[k * MR + i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(ai, bv[v], acc[i][v]);
    }
  }
}

// ---- blocked path ---------------------------------------------------------------------------------

// The weights of the next (column block, depth slice) that gemm_blocked packs come from DRAM: a
// model's experts are read once per call, and an expert's few rows (32-64 per expert in a
// 512-token prefill of Qwen3-30B-A3B or OLMoE) use each packed weight only that many times, so
// packing them on demand (16 rows at a time, each row's lines a page apart) stalled on memory
// for a quarter of the expert time. While this slice's microkernels run, its successor's lines
// are prefetched into L2, spread evenly over the slice's microkernel calls.
template <WeightType W>
struct NextSlicePrefetch {
  const char *w[2] = {nullptr, nullptr};  // gate (or the only) rows, up rows when gated
  int64_t row_bytes = 0;                  // ldb in bytes
  int lines = 0;                          // cache lines per row of the next slice
  int64_t total = 0, done = 0, per_step = 0;
  int line = 0, g = 0;  // the cursor: line of row `row` of matrix g
  int64_t row = 0;
  NextSlicePrefetch(const WeightStorage<W> *b, const WeightStorage<W> *b2, int64_t ldb, int64_t K,
                    int64_t c1, int64_t jc, int64_t pc, int64_t cols_per_block, int kc,
                    int64_t steps) {
    int64_t nj = jc, npc = pc + kc;
    if (npc >= K) {
      nj = jc + cols_per_block;
      npc = 0;
    }
    if (nj >= c1 || steps <= 0) return;
    const int64_t depth_bytes = std::min<int64_t>(kc, K - npc) * sizeof(WeightStorage<W>);
    row_bytes = ldb * static_cast<int64_t>(sizeof(WeightStorage<W>));
    const int64_t rows = std::min(cols_per_block, c1 - nj);
    lines = static_cast<int>((depth_bytes + 63) / 64 + 1);  // +1: rows are not line-aligned
    w[0] = reinterpret_cast<const char *>(b + nj * ldb + npc);
    if (b2 != nullptr) w[1] = reinterpret_cast<const char *>(b2 + nj * ldb + npc);
    total = rows * lines * (b2 != nullptr ? 2 : 1);
    per_step = (total + steps - 1) / steps;
  }
  void step() {
    for (int64_t n = 0; n < per_step && done < total; ++n, ++done) {
      __builtin_prefetch(w[g] + row * row_bytes + line * 64, 0, 2);
      if (++line < lines) continue;
      line = 0;
      if (w[1] != nullptr && ++g < 2) continue;
      g = 0;
      ++row;
    }
  }
};

// Epilogue concept: ep.row(int64_t i, int64_t col, int n, const float *v, const float *u) receives
// n finished sums of local row i for output columns [col, col + n); u is the up projection of the
// same columns in gated mode, nullptr otherwise.
template <WeightType W, bool Gated, class Epilogue>
void gemm_blocked(int64_t M, int64_t K, const RowSource &a, const WeightStorage<W> *b,
                  const WeightStorage<W> *b2, int64_t ldb, int64_t c0, int64_t c1,
                  const TileConfig &cfg, const GemmScratch &s, Epilogue &ep) {
  constexpr int MR = kMicroRows, NV = kMicroVectors, NR = kMicroCols;
  constexpr int NRo = Gated ? NR / 2 : NR;  // output columns per panel
  static_assert(!Gated || NV % 2 == 0, "gated panels split the vectors in halves");
  const ScratchShape sh = scratch_shape(cfg);
  const int64_t panels_per_block = sh.nc / NR;
  const int64_t cols_per_block = panels_per_block * NRo;
  const int64_t ldc = sh.nc;
  const int64_t row_tiles = (M + MR - 1) / MR;  // microkernel calls per panel
  for (int64_t jc = c0; jc < c1; jc += cols_per_block) {
    const int64_t ncur = std::min(cols_per_block, c1 - jc);
    const int np = static_cast<int>((ncur + NRo - 1) / NRo);
    for (int64_t pc = 0; pc < K; pc += sh.kc) {
      const int kcur = static_cast<int>(std::min<int64_t>(sh.kc, K - pc));
      const bool first = pc == 0, last = pc + kcur >= K;
      NextSlicePrefetch<W> next(b, Gated ? b2 : nullptr, ldb, K, c1, jc, pc, cols_per_block, sh.kc,
                                np * row_tiles);
      for (int p = 0; p < np; ++p) {
        const int64_t col = jc + static_cast<int64_t>(p) * NRo;
        const int nvalid = static_cast<int>(std::min<int64_t>(NRo, c1 - col));
        float *dst = s.b_pack + static_cast<int64_t>(p) * kcur * NR;
        pack_b_lanes<W>(dst, 0, NRo, nvalid, b + col * ldb, ldb, pc, kcur);
        if constexpr (Gated) pack_b_lanes<W>(dst, NRo, NRo, nvalid, b2 + col * ldb, ldb, pc, kcur);
      }
      for (int64_t ic = 0; ic < M; ic += sh.mc) {
        const int mcur = static_cast<int>(std::min<int64_t>(sh.mc, M - ic));
        pack_a(s.a_pack, a, ic, mcur, pc, kcur);
        for (int p = 0; p < np; ++p) {
          const float *bp = s.b_pack + static_cast<int64_t>(p) * kcur * NR;
          const int64_t col = jc + static_cast<int64_t>(p) * NRo;
          const int nvalid = static_cast<int>(std::min<int64_t>(NRo, c1 - col));
          for (int ir = 0; ir < mcur; ir += MR) {
            VecF acc[MR][NV];
            for (int i = 0; i < MR; ++i)
              for (int v = 0; v < NV; ++v) acc[i][v] = vzero();
            next.step();
            microkernel<MR, NV>(kcur, s.a_pack + static_cast<int64_t>(ir) * kcur, bp, acc);
            // c_partial exists only when K takes several blocks (null when first && last).
            float *cp = first && last ? nullptr
                                      : s.c_partial + (ic + ir) * ldc + static_cast<int64_t>(p) * NR;
            if (!first) {
              for (int i = 0; i < MR; ++i)
                for (int v = 0; v < NV; ++v) acc[i][v] = vadd(acc[i][v], vload(cp + i * ldc + v * kVecWidth));
            }
            if (!last) {
              for (int i = 0; i < MR; ++i)
                for (int v = 0; v < NV; ++v) vstore(cp + i * ldc + v * kVecWidth, acc[i][v]);
              continue;
            }
            for (int i = 0; i < MR; ++i)
              for (int v = 0; v < NV; ++v) vstore(s.tile + i * NR + v * kVecWidth, acc[i][v]);
            const int rows = std::min(MR, mcur - ir);
            for (int i = 0; i < rows; ++i)
              ep.row(ic + ir + i, col, nvalid, s.tile + i * NR, Gated ? s.tile + i * NR + NRo : nullptr);
          }
        }
      }
    }
  }
}

// ---- small-M (GEMV-shaped) path -------------------------------------------------------------------

// Keeps a loaded vector in a register: without it GCC folds the load into every FMA that uses it,
// which makes the small-M kernel load-bound instead of FMA-bound.
inline void keep_in_register(VecF &v) {
#if defined(__AVX512F__)
  __asm__("" : "+v"(v.v));
#elif defined(__AVX2__) && defined(__FMA__)
  __asm__("" : "+x"(v.v));
#else
  (void)v;
#endif
}

// Software prefetch of the weight streams into L2 (prefetcht1), `pf` elements ahead of the current
// load. It pays off when several tokens share each weight: the loop then runs too slowly for the
// L1 prefetcher to keep enough misses in flight, and fetching into L1 (prefetcht0) ties up the
// few L1 miss buffers. Measured on Zen 5 (D=1024/F=3584, 8 rows per expert): prefetcht0 2 KB
// ahead streams ~28 GB/s, prefetcht1 4 KB ahead ~38 GB/s; with 4-6 rows prefetcht0 2 KB ahead was
// the faster one, so blocks of fewer than kPrefetchL2MinTokens rows keep it. Below
// TileConfig::small_prefetch_rows rows nothing is prefetched in software: on Zen 5 pure decode
// (one to three tokens) streams faster on the hardware prefetcher alone (the default, 4); on
// Sapphire Rapids the opposite holds (bf16 lm head GEMV at one row: 0.64 of the read bandwidth
// without, 0.92 with prefetcht0 2 KB ahead), so its tuning table sets 1. On the Emerald Rapids
// VM the prefetcht0 rule starved 3-4-row blocks (the L1 miss buffers cap the lines in flight):
// TileConfig::small_prefetch_l2_bytes sends full-depth blocks' prefetches into L2 32 KB ahead
// instead (the Intel table; lm head 2048 x 50304, 3 / 4 rows: 1.32x / 1.40x). The MIXTILE_* macros
// here are tuning/test hooks (bench/kernels/build.sh forces the k-blocked path in one test
// build).
#ifndef MIXTILE_PF_DIST
#define MIXTILE_PF_DIST 2048
#endif
constexpr int kPrefetchDistance = MIXTILE_PF_DIST;  // bytes, full-depth streams, into L1
constexpr int kPrefetchDistanceL2 = 4096;           // bytes, full-depth streams, into L2
#ifndef MIXTILE_PF_L2_MIN
#define MIXTILE_PF_L2_MIN 8
#endif
constexpr int kPrefetchL2MinTokens = MIXTILE_PF_L2_MIN;
template <bool L2, class T>
inline void prefetch_weights(const T *p) {
  if constexpr (L2) {
    __builtin_prefetch(p, 0, 2);
  } else {
    __builtin_prefetch(p, 0, 3);
  }
}

constexpr int kSmallMaxTokens = 8;   // token rows per small-M block
constexpr int kSmallAccumulators = 16;  // MT x (gate+up) x R vector accumulators per block
constexpr int kSmallChunk = 16;         // output columns buffered per epilogue call
// k-blocking of the small path: when the token rows of one block (MT rows x K floats) exceed this
// many bytes they no longer stay in L1 next to the weight streams (the down projection, K = F =
// 3584: 8 rows = 114 KB), every x load misses to L2 and the miss buffers the weight streams need
// are taken. Then the depth is split into slices of at most this many bytes of x per block, and
// per-row partial sums of kSmallPanel columns are carried across the slices in a small buffer.
#ifndef MIXTILE_SMALL_X_BYTES
#define MIXTILE_SMALL_X_BYTES 32768
#endif
#ifndef MIXTILE_SMALL_PANEL
#define MIXTILE_SMALL_PANEL 64
#endif
#ifndef MIXTILE_SMALL_PF_BLOCKS
#define MIXTILE_SMALL_PF_BLOCKS 2
#endif
constexpr int64_t kSmallXBytes = MIXTILE_SMALL_X_BYTES;
#ifndef MIXTILE_SMALL_KB_MIN
#define MIXTILE_SMALL_KB_MIN 3
#endif
constexpr int kSmallKBlockMinTokens = MIXTILE_SMALL_KB_MIN;
constexpr int kSmallPanel = MIXTILE_SMALL_PANEL;    // output columns per k-blocked panel
constexpr int kSmallPanelRows = 32;                 // token rows whose partial sums a panel holds
constexpr int kSmallPrefetchBlocks = MIXTILE_SMALL_PF_BLOCKS;  // k-blocked: prefetch this many blocks ahead
static_assert(kSmallPanel % kSmallChunk == 0, "a panel holds whole chunks");
static_assert(kSmallPanelRows % kSmallMaxTokens == 0, "a panel holds whole token groups");

// MT token rows x R weight rows (x2 when gated): every weight vector loaded once feeds MT FMAs.
// Blocks with few accumulators unroll k into U independent chains to hide the FMA latency.
// Sums go to out[g * kSmallChunk * kSmallMaxTokens + t * kSmallChunk + r]. kPf: the prefetch
// kind (0 none, 1 into L1, 2 into L2), `pf` weight elements ahead.
template <WeightType W, bool Gated, int MT, int R, int kPf>
inline void small_block_loop(int64_t K, const float *const *x, const WeightStorage<W> *const *wg,
                             const WeightStorage<W> *const *wu, float *out, int64_t pf) {
  constexpr int G = Gated ? 2 : 1;
  constexpr int U = std::max(1, std::min(4, 8 / (MT * G * R)));
  VecF acc[U][G][MT][R];
  for (int u = 0; u < U; ++u)
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < MT; ++t)
        for (int r = 0; r < R; ++r) acc[u][g][t][r] = vzero();
  int64_t k = 0;
  for (; k + U * kVecWidth <= K; k += U * kVecWidth) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const int64_t ku = k + u * kVecWidth;
      VecF wv[G][R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if constexpr (kPf != 0) {
          prefetch_weights<kPf == 2>(wg[r] + ku + pf);
          if constexpr (Gated) prefetch_weights<kPf == 2>(wu[r] + ku + pf);
        }
        wv[0][r] = vload_weight<W>(wg[r] + ku);
        keep_in_register(wv[0][r]);
        if constexpr (Gated) {
          wv[G - 1][r] = vload_weight<W>(wu[r] + ku);
          keep_in_register(wv[G - 1][r]);
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) {
        VecF xv = vload(x[t] + ku);
        keep_in_register(xv);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[u][g][t][r] = vfma(xv, wv[g][r], acc[u][g][t][r]);
      }
    }
  }
  for (; k + kVecWidth <= K; k += kVecWidth) {
    for (int r = 0; r < R; ++r)
      for (int g = 0; g < G; ++g) {
        const VecF wv = vload_weight<W>((g == 0 ? wg[r] : wu[r]) + k);
        for (int t = 0; t < MT; ++t) acc[0][g][t][r] = vfma(vload(x[t] + k), wv, acc[0][g][t][r]);
      }
  }
  float sums[G][MT][R];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) {
        VecF v = acc[0][g][t][r];
        for (int u = 1; u < U; ++u) v = vadd(v, acc[u][g][t][r]);
        sums[g][t][r] = vhsum(v);
      }
  for (; k < K; ++k) {
    for (int r = 0; r < R; ++r) {
      const float w0 = load_weight_scalar<W>(wg[r] + k);
      const float w1 = Gated ? load_weight_scalar<W>(wu[r] + k) : 0.0f;
      for (int t = 0; t < MT; ++t) {
        sums[0][t][r] += x[t][k] * w0;
        if constexpr (Gated) sums[G - 1][t][r] += x[t][k] * w1;
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) out[(g * kSmallMaxTokens + t) * kSmallChunk + r] = sums[g][t][r];
}

// Software prefetch of a small-path block's weight streams: `ahead` weight elements between a load
// and its prefetch (0: none; kPrefetchByRows: the kernel's own full-depth distance for its MT
// rows), into L2 when `l2`, else by the kernel's row rule (prefetch_weights).
constexpr int64_t kPrefetchByRows = -1;
struct SmallPrefetch {
  int64_t ahead = 0;
  bool l2 = false;
};

template <WeightType W, bool Gated, int MT, int R>
inline void small_block(int64_t K, const float *const *x, const WeightStorage<W> *const *wg,
                        const WeightStorage<W> *const *wu, float *out, SmallPrefetch prefetch) {
  const bool l2 = prefetch.l2 || MT >= kPrefetchL2MinTokens;
  int64_t pf = prefetch.ahead;
  if (pf == kPrefetchByRows)
    pf = (l2 ? kPrefetchDistanceL2 : kPrefetchDistance) / static_cast<int64_t>(sizeof(WeightStorage<W>));
  if (pf == 0) {
    small_block_loop<W, Gated, MT, R, 0>(K, x, wg, wu, out, 0);
  } else if (l2) {
    small_block_loop<W, Gated, MT, R, 2>(K, x, wg, wu, out, pf);
  } else {
    small_block_loop<W, Gated, MT, R, 1>(K, x, wg, wu, out, pf);
  }
}

// The f32 block of the small path: f32 token rows, weights widened to f32 as they are loaded.
// A small-path kernel (gemm_small_with) names its token-row and weight element types, the
// multiple of the depth its k-slices keep, and its MT x R block (sums laid out as small_block's).
template <WeightType W>
struct FmaSmallKernel {
  using X = float;
  using Wt = WeightStorage<W>;
  static constexpr int kDepthMultiple = kVecWidth;
  template <bool Gated, int MT, int R>
  static void block(int64_t K, const X *const *x, const Wt *const *wg, const Wt *const *wu, float *out,
                    SmallPrefetch pf) {
    small_block<W, Gated, MT, R>(K, x, wg, wu, out, pf);
  }
};

// Runtime token count -> template MT, for MT <= MaxMT.
template <class Kernel, bool Gated, int R, int MaxMT>
inline void small_block_dispatch(int mt, int64_t K, const typename Kernel::X *const *x,
                                 const typename Kernel::Wt *const *wg, const typename Kernel::Wt *const *wu,
                                 float *out, SmallPrefetch pf) {
  if constexpr (MaxMT >= 1) {
    if (mt >= MaxMT) {
      Kernel::template block<Gated, MaxMT, R>(K, x, wg, wu, out, pf);
    } else {
      small_block_dispatch<Kernel, Gated, R, MaxMT - 1>(mt, K, x, wg, wu, out, pf);
    }
  }
}

// Depth of one k-slice of the small path for segments of M rows of `x_bytes`-byte elements, a
// multiple of `multiple`; K itself when the rows of a token group fit the L1 budget.
inline int64_t small_k_block(int64_t M, int64_t K, int max_mt, int64_t x_bytes = sizeof(float),
                             int64_t multiple = kVecWidth) {
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(M, max_mt));
  if (rows < kSmallKBlockMinTokens || rows * K * x_bytes <= kSmallXBytes) return K;
  const int64_t limit = std::max<int64_t>(multiple, kSmallXBytes / (rows * x_bytes));
  const int64_t slices = (K + limit - 1) / limit;
  return std::min(K, round_up((K + slices - 1) / slices, multiple));  // equal slices
}

// One block of R weight rows (or the column remainder one row at a time) at columns n0 + j.
template <class Kernel, bool Gated, int R, int MaxMT, int MaxMT1>
inline void small_blocks_of_chunk(int mt, int ncols, int64_t K, const typename Kernel::X *const *x,
                                  const typename Kernel::Wt *b, const typename Kernel::Wt *b2, int64_t ldb,
                                  int64_t n0, int64_t k0, float *buf, SmallPrefetch pf) {
  for (int j = 0; j < ncols; j += R) {
    const typename Kernel::Wt *wg[R], *wu[R];
    for (int r = 0; r < R; ++r) {
      wg[r] = b + (n0 + j + r) * ldb + k0;
      wu[r] = Gated ? b2 + (n0 + j + r) * ldb + k0 : nullptr;
    }
    if (j + R <= ncols) {
      small_block_dispatch<Kernel, Gated, R, MaxMT>(mt, K, x, wg, wu, buf + j, pf);
    } else {
      for (int r = 0; j + r < ncols; ++r)  // column remainder: one weight row at a time
        small_block_dispatch<Kernel, Gated, 1, MaxMT1>(mt, K, x, wg + r, Gated ? wu + r : wu, buf + j + r, pf);
    }
  }
}

// Columns [c0, c1) in chunks of kSmallChunk columns, token groups of at most MaxMT rows, R weight
// rows per block. Sums of a chunk are buffered so the epilogue runs on whole vectors. When the
// token rows of a group do not fit in L1 (small_k_block < K), panels of kSmallPanel columns are
// computed k-slice by k-slice instead, partial sums of up to kSmallPanelRows rows kept in a buffer.
// Token groups of at least tiles.small_prefetch_rows rows prefetch their weight streams in
// software (full-depth ones tiles.small_prefetch_l2_bytes ahead into L2, when set); groups hold
// at most tiles.small_group_rows rows (when set).
template <class Kernel, bool Gated, int R, class Epilogue>
void gemm_small_rows(int64_t M, int64_t K, const RowsOf<typename Kernel::X> &a, const typename Kernel::Wt *b,
                     const typename Kernel::Wt *b2, int64_t ldb, int64_t c0, int64_t c1, const TileConfig &tiles,
                     Epilogue &ep) {
  using X = typename Kernel::X;
  constexpr int G = Gated ? 2 : 1;
  constexpr int MaxMT = std::min(kSmallMaxTokens, std::max(1, kSmallAccumulators / (G * R)));
  constexpr int MaxMT1 = std::min(kSmallMaxTokens, std::max(1, kSmallAccumulators / G));
  static_assert(kSmallChunk % R == 0, "a chunk holds whole blocks");
  alignas(64) float buf[G * kSmallMaxTokens * kSmallChunk];
  const int group = tiles.small_group_rows > 0 ? std::min(MaxMT, tiles.small_group_rows) : MaxMT;
  const int64_t kb = small_k_block(M, K, group, sizeof(X), Kernel::kDepthMultiple);
  const bool far = tiles.small_prefetch_l2_bytes > 0;
  if (kb >= K) {
    for (int64_t n0 = c0; n0 < c1; n0 += kSmallChunk) {
      const int ncols = static_cast<int>(std::min<int64_t>(kSmallChunk, c1 - n0));
      for (int64_t m = 0; m < M; m += group) {
        const int mt = static_cast<int>(std::min<int64_t>(group, M - m));
        SmallPrefetch pf;
        if (mt >= tiles.small_prefetch_rows)
          pf = far ? SmallPrefetch{tiles.small_prefetch_l2_bytes / static_cast<int64_t>(sizeof(typename Kernel::Wt)), true}
                   : SmallPrefetch{kPrefetchByRows, false};
        const X *x[MaxMT1];
        for (int t = 0; t < MaxMT1; ++t) x[t] = a.row(m + std::min(t, mt - 1));
        small_blocks_of_chunk<Kernel, Gated, R, MaxMT, MaxMT1>(mt, ncols, K, x, b, b2, ldb, n0, 0, buf, pf);
        for (int t = 0; t < mt; ++t)
          ep.row(m + t, n0, ncols, buf + t * kSmallChunk,
                 Gated ? buf + (kSmallMaxTokens + t) * kSmallChunk : nullptr);
      }
    }
    return;
  }
  // k-blocked: the prefetch runs kSmallPrefetchBlocks blocks of R rows ahead at the same depth.
  const SmallPrefetch pf{kSmallPrefetchBlocks * R * ldb, false};
  alignas(64) float part[G][kSmallPanelRows][kSmallPanel];
  for (int64_t p0 = c0; p0 < c1; p0 += kSmallPanel) {
    const int pcols = static_cast<int>(std::min<int64_t>(kSmallPanel, c1 - p0));
    for (int64_t m0 = 0; m0 < M; m0 += kSmallPanelRows) {
      const int mrows = static_cast<int>(std::min<int64_t>(kSmallPanelRows, M - m0));
      for (int64_t k0 = 0; k0 < K; k0 += kb) {
        const int64_t kcur = std::min(kb, K - k0);
        for (int mg = 0; mg < mrows; mg += group) {
          const int mt = std::min(group, mrows - mg);
          const X *x[MaxMT1];
          for (int t = 0; t < MaxMT1; ++t) x[t] = a.row(m0 + mg + std::min(t, mt - 1)) + k0;
          for (int n = 0; n < pcols; n += kSmallChunk) {
            const int ncols = std::min(kSmallChunk, pcols - n);
            small_blocks_of_chunk<Kernel, Gated, R, MaxMT, MaxMT1>(mt, ncols, kcur, x, b, b2, ldb, p0 + n, k0, buf, pf);
            for (int g = 0; g < G; ++g)
              for (int t = 0; t < mt; ++t) {
                float *dst = &part[g][mg + t][n];
                const float *src = buf + (g * kSmallMaxTokens + t) * kSmallChunk;
                if (k0 == 0) {
                  for (int c = 0; c < ncols; ++c) dst[c] = src[c];
                } else {
                  for (int c = 0; c < ncols; ++c) dst[c] += src[c];
                }
              }
          }
        }
      }
      for (int t = 0; t < mrows; ++t)
        for (int n = 0; n < pcols; n += kSmallChunk)
          ep.row(m0 + t, p0 + n, std::min(kSmallChunk, pcols - n), &part[0][t][n],
                 Gated ? &part[G - 1][t][n] : nullptr);
    }
  }
}

// Picks the weight rows per block. Few concurrent DRAM streams keep the hardware prefetcher
// effective (measured on Zen 5: one gate + one up row streams at full bandwidth, eight do not),
// so gated blocks take one row of each matrix and plain blocks one or two rows; reuse comes from
// the token dimension (up to kSmallMaxTokens rows share every weight vector loaded).
template <class Kernel, bool Gated, class Epilogue>
void gemm_small_with(int64_t M, int64_t K, const RowsOf<typename Kernel::X> &a, const typename Kernel::Wt *b,
                     const typename Kernel::Wt *b2, int64_t ldb, int64_t c0, int64_t c1, const TileConfig &tiles,
                     Epilogue &ep) {
  if (Gated || M <= 2) {
    gemm_small_rows<Kernel, Gated, 1>(M, K, a, b, b2, ldb, c0, c1, tiles, ep);
  } else {
    gemm_small_rows<Kernel, Gated, 2>(M, K, a, b, b2, ldb, c0, c1, tiles, ep);
  }
}

// The small path on f32 token rows (every MatmulPath's default; see matrix_engines.h for the
// VDPBF16PS one on bf16 rows).
template <WeightType W, bool Gated, class Epilogue>
void gemm_small(int64_t M, int64_t K, const RowSource &a, const WeightStorage<W> *b,
                const WeightStorage<W> *b2, int64_t ldb, int64_t c0, int64_t c1, const TileConfig &tiles,
                Epilogue &ep) {
  gemm_small_with<FmaSmallKernel<W>, Gated>(M, K, a, b, b2, ldb, c0, c1, tiles, ep);
}

// One thread's share of C = A · Wᵀ restricted to output columns [c0, c1).
template <WeightType W, bool Gated, class Epilogue>
void gemm_columns(int64_t M, int64_t K, const RowSource &a, const WeightStorage<W> *b,
                  const WeightStorage<W> *b2, int64_t c0, int64_t c1, const TileConfig &cfg,
                  const GemmScratch &s, Epilogue &ep) {
  if (M <= 0 || c0 >= c1) return;
  if (M <= cfg.small_m_max || K <= 0) {
    gemm_small<W, Gated>(M, K, a, b, b2, K, c0, c1, cfg, ep);
  } else {
    gemm_blocked<W, Gated>(M, K, a, b, b2, K, c0, c1, cfg, s, ep);
  }
}

// Splits [0, n) into `parts` ranges aligned to kColumnUnit; returns part `i`.
inline void split_columns(int64_t n, int64_t parts, int64_t i, int64_t &begin, int64_t &end) {
  const int64_t units = (n + kColumnUnit - 1) / kColumnUnit;
  begin = std::min(n, units * i / parts * kColumnUnit);
  end = std::min(n, units * (i + 1) / parts * kColumnUnit);
}

// Dynamic split of one phase among a team: each thread takes the next item from a shared
// counter until none are left. A thread slowed by something outside the call (another process,
// a busy sibling hyperthread, a shared VM core) takes fewer items and the team reaches the next
// barrier together; with a fixed split everyone waits for the slowest. Measured on the 2-core
// Xeon VM (OLMoE's experts, 512 tokens): one thread's share of a fixed split took 10-100% longer
// than the other's, call after call, with no difference in the work.
class WorkCounter {
 public:
  int64_t take() { return next_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> next_{0};
};

// Column pieces per thread a phase aims at when it cuts columns into WorkCounter items: enough
// for the faster thread to take over the slower one's tail, few enough that a piece spans many
// column steps. Every piece of a GEMM re-reads its token rows (from L2 or L3), so a phase whose
// pieces share one set of token rows (linear, the experts' down projection: each piece runs over
// every expert) takes kSharedPiecesPerThread; pieces of different experts read different rows.
constexpr int64_t kPiecesPerThread = 8;
constexpr int64_t kSharedPiecesPerThread = 4;
// ... and on the AMX path, where the tile loop runs fast enough that re-reading each expert's
// packed h per piece shows: the down projection in half as many pieces. Same checkpoint, two
// builds in one process (bench/ab_artifacts.py, 2-core Xeon with AMX, outputs bitwise equal):
// Mixtral-style T=2048 0.954x the time [q1 0.942, q3 0.962], T=512 0.957x, T=1 and 32 cold
// 0.976x / 0.986x; Qwen3-30B-A3B's block T=32 cold 0.984x, 512 0.982x, 2048 0.990x;
// DeepSeek-V3-like T=512 / 2048 0.988x / 0.970x.
constexpr int64_t kAmxSharedPiecesPerThread = 2;

// Pieces to cut n columns into (aligned to kColumnUnit, at most one per unit) when `owners`
// independent owners (experts) each have their own n columns: about per_thread items per
// thread in all.
inline int64_t column_pieces(int64_t n, int64_t owners, int threads, int64_t per_thread) {
  const int64_t units = std::max<int64_t>(1, (n + kColumnUnit - 1) / kColumnUnit);
  const int64_t o = std::max<int64_t>(owners, 1);
  return std::clamp<int64_t>((per_thread * threads + o - 1) / o, 1, units);
}

}  // namespace detail
}  // namespace mixtile::cpu
