// Grouped expert FFN of the CUDA kernel library: every expert's two-GEMM feed-forward block
// over the rows routed to it, as two launches of one grouped GEMM. bf16/f16 weights run on
// tensor cores (WMMA 16x16x16, f32 accumulate); f32 weights on a SIMT path. It does not
// route: segments (offsets on the device), tokens and gates come from the caller, and the
// kernels read the segment sizes themselves, so nothing is synchronized with the host.
//
//   first GEMM:  h = act(x[tokens] · W_gateᵀ) ⊙ (x[tokens] · W_upᵀ)   (or act(x · W_upᵀ))
//                rows gathered through `tokens` and rounded to the weight dtype in the
//                prologue; activation and the gate-up product in the epilogue; h stored in
//                the weight dtype (f32 for f32 weights) in the workspace.
//   second GEMM: y[out_rows[a]] += gates[a] · (h[a] · W_downᵀ)   (atomicAdd on f32), or a
//                plain store y[a] = h[a] · W_downᵀ when out_rows is null.
//
// Grid: blockIdx.x walks row-tile slots (an upper bound on the tiles of all segments, known
// from T on the host; a block past the last tile returns), blockIdx.y column tiles. Each block
// finds its expert and rows by a warp-wide scan of the offsets.
#pragma once

#include <mma.h>

#include <type_traits>

#include "common.cuh"

namespace mixtile::cuda {

/// Which rows each expert owns: offsets [E+1] on the device, or uniform segments (expert e
/// owns rows [e·R, (e+1)·R)) when offsets is null (dense FFNs, Mixture of Tokens).
struct SegmentTable {
  const int32_t *offsets = nullptr;
  int64_t uniform_rows = 0;
};

struct ExpertFFNProblem {
  int64_t num_experts = 0, hidden = 0, inter = 0;
  SegmentTable segments;
  int64_t max_assignments = 0;      // upper bound of offsets[E] (T·k), known on the host
  const float *x = nullptr;         // token rows [*, D]
  const int32_t *tokens = nullptr;  // [A] x row of each assignment; null => the assignment
  const float *gates = nullptr;     // [A] output scale; null => 1
  float *y = nullptr;               // output rows, stride D
  const int32_t *out_rows = nullptr;  // [A] y row of each assignment (scatter-add); null => y[a]
  int64_t zero_rows = 0;            // scatter mode: rows [0, zero_rows) of y zeroed first
  // Expert biases (gpt-oss), f32 on the device or null: gate and up [E, F], down [E, D]
  // (added before the gate scale); the clamped SwiGLU's constants.
  const float *gate_bias = nullptr, *up_bias = nullptr, *down_bias = nullptr;
  ActParams act{};
};

namespace detail {

/// Where a block's row tile lies: expert, assignment rows [begin, end), and the first
/// assignment of all segments (row 0 of h).
struct RowTile {
  int expert;
  int64_t begin, end, first;
};

/// Finds the `slot`-th row tile of BM rows over all segments in expert order; false when
/// the slot is past the last tile. Called by every thread of the block (one __syncthreads).
template <int BM>
__device__ bool locate_row_tile(const SegmentTable &s, int experts, int64_t slot, RowTile &tile) {
  __shared__ RowTile found;
  __shared__ int ok;
  if (s.offsets == nullptr) {
    const int64_t per_expert = (s.uniform_rows + BM - 1) / BM;
    if (per_expert == 0 || slot >= per_expert * experts)
      return false;
    tile.expert = static_cast<int>(slot / per_expert);
    tile.begin = tile.expert * s.uniform_rows + (slot % per_expert) * BM;
    tile.end = min(tile.begin + BM, (tile.expert + 1) * s.uniform_rows);
    tile.first = 0;
    return true;
  }
  if (threadIdx.x < kWarp) {
    const int lane = threadIdx.x;
    int64_t before = 0;  // tiles of the experts already passed
    int hit = 0;
    for (int base = 0; base < experts && !hit; base += kWarp) {
      const int e = base + lane;
      const int64_t rows = e < experts ? s.offsets[e + 1] - s.offsets[e] : 0;
      const int64_t tiles = (rows + BM - 1) / BM;
      int64_t inclusive = tiles;
      for (int d = 1; d < kWarp; d *= 2) {
        const int64_t v = __shfl_up_sync(0xffffffffu, inclusive, d);
        if (lane >= d)
          inclusive += v;
      }
      const unsigned past = __ballot_sync(0xffffffffu, before + inclusive > slot);
      if (past) {
        hit = 1;
        if (lane == __ffs(past) - 1) {
          const int64_t index = slot - (before + inclusive - tiles);
          found.expert = e;
          found.begin = s.offsets[e] + index * BM;
          found.end = min(found.begin + BM, static_cast<int64_t>(s.offsets[e + 1]));
          found.first = s.offsets[0];
        }
      }
      before += __shfl_sync(0xffffffffu, inclusive, kWarp - 1);
    }
    if (lane == 0)
      ok = hit;
  }
  __syncthreads();
  if (!ok)
    return false;
  tile = found;
  return true;
}

/// A operand of the first GEMM: f32 token rows, gathered through `rows` (null: identity).
struct GatherRows {
  const float *x;
  const int32_t *rows;
  __device__ int64_t source_row(int64_t a) const { return rows ? rows[a] : a; }
};
/// A operand of the second GEMM: h rows of the compute type, row a - first.
template <class C>
struct HiddenRows {
  const C *h;
};

__device__ inline const void *a_source_base(const GatherRows &a) { return a.x; }
template <class C> __device__ const void *a_source_base(const HiddenRows<C> &a) { return a.h; }

// Epilogues take expert e's sums of output column col for assignment a: v (the first
// weight's) and u (the second's when gated, else 0).

/// Epilogue of the first GEMM: h[a - first, col] = act(g + b1) (⊙ (u + b2)), the biases of the
/// first and second weights ([E, F] rows, or null).
template <class C, Activation Act, bool Gated>
struct HiddenEpilogue {
  C *h;
  int64_t ld;
  const float *first_bias = nullptr, *second_bias = nullptr;
  ActParams act{};
  __device__ void store(int e, int64_t a, int64_t first, int64_t col, float v, float u) const {
    if (first_bias)
      v += first_bias[static_cast<int64_t>(e) * ld + col];
    if (Gated && second_bias)
      u += second_bias[static_cast<int64_t>(e) * ld + col];
    h[(a - first) * ld + col] = from_float<C>(gated_activate<Act, Gated>(v, u, act));
  }
};

/// Epilogue of the second GEMM: the down bias ([E, D] or null), the gate scale, then
/// scatter-add or plain store.
struct OutputEpilogue {
  float *y;
  int64_t ld;
  const int32_t *out_rows;
  const float *gates;
  const float *bias = nullptr;
  __device__ void store(int e, int64_t a, int64_t first, int64_t col, float v, float) const {
    if (bias)
      v += bias[static_cast<int64_t>(e) * ld + col];
    const float g = gates ? gates[a] : 1.0f;
    if (out_rows)
      atomicAdd(&y[static_cast<int64_t>(out_rows[a]) * ld + col], g * v);
    else
      y[(a - first) * ld + col] = g * v;
  }
};

/// Epilogue of a dense linear map: y[row, col] = v + bias[col].
struct LinearEpilogue {
  float *y;
  int64_t ld;
  ExpertVector bias;
  __device__ void store(int, int64_t a, int64_t first, int64_t col, float v, float) const {
    y[(a - first) * ld + col] = v + (bias.data ? bias.at(col) : 0.0f);
  }
};

/// One GEMM of the grouped engine: C[a, n] = Σ_k A[a, k] · B_e[n, k] over every segment,
/// B_e [N, K] the expert's weight (row-major [out, in], as stored); with Gated, a second
/// weight B'_e and combine(first, second) in the epilogue.
template <class ASource, class Epilogue>
struct GroupedGemm {
  int experts;
  int64_t depth, columns;  // K, N
  SegmentTable segments;
  ASource a;
  Epilogue epilogue;
};

/// The warp grid of a BM x BN tile over `warps` warps: WM warps along M (the most square
/// warp tile of 16-multiples).
__host__ __device__ constexpr int warp_rows(int bm, int bn, int warps) {
  int best = 0;
  long best_score = -1;
  for (int wm = 1; wm <= warps; wm *= 2) {
    const int wn = warps / wm;
    if (warps % wm || bm % (16 * wm) || bn % (16 * wn))
      continue;
    const long tm = bm / wm, tn = bn / wn;
    const long score = tm > tn ? tm / tn : tn / tm;  // 1 is square
    if (best == 0 || score < best_score) {
      best = wm;
      best_score = score;
    }
  }
  return best;
}

/// Tensor-core grouped GEMM (bf16/f16 weights). Shared tiles are row-major [BM][BK+8] for A
/// and [BN][BK+8] for B (B as WMMA col_major: B(k, n) at n·ld + k); the padding keeps WMMA
/// pointers 32-byte aligned and spreads banks.
template <WeightType W, class ASource, class Epilogue, bool Gated, int BM, int BN, int BK,
          int WARPS, int N>
__global__ void __launch_bounds__(WARPS * 32)
    grouped_gemm_tensor_cores(const __grid_constant__ GroupedGemm<ASource, Epilogue> g,
                              const __grid_constant__ ExpertPointers<N> first_w,
                              const __grid_constant__ ExpertPointers<N> second_w) {
  using C = Compute<W>;
  namespace wmma = nvcuda::wmma;
  constexpr int WM = warp_rows(BM, BN, WARPS), WN = WARPS / (WM ? WM : 1);
  static_assert(WM > 0, "tile: no warp grid of 16x16 fragments fits BM x BN over WARPS warps");
  static_assert(BK % 16 == 0, "tile: block_k must be a multiple of 16");
  constexpr int FM = BM / WM / 16, FN = BN / WN / 16;
  constexpr int LD = BK + 8;
  constexpr int THREADS = WARPS * 32;
  __shared__ __align__(128) C a_tile[BM * LD];
  __shared__ __align__(128) C b_tile[(Gated ? 2 : 1) * BN * LD];
  __shared__ __align__(128) float staging[WARPS][16 * 16];
  __shared__ int64_t a_rows[BM];

  RowTile tile;
  if (!locate_row_tile<BM>(g.segments, g.experts, blockIdx.x, tile))
    return;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * BN;
  const int64_t K = g.depth, Ncols = g.columns;
  const int rows = static_cast<int>(tile.end - tile.begin);
  for (int r = threadIdx.x; r < BM; r += THREADS) {
    int64_t src = -1;
    if (r < rows) {
      if constexpr (std::is_same_v<ASource, GatherRows>)
        src = g.a.source_row(tile.begin + r);
      else
        src = tile.begin + r - tile.first;
    }
    a_rows[r] = src;
  }
  const Storage<W> *w0 = static_cast<const Storage<W> *>(first_w.at[tile.expert]);
  const Storage<W> *w1 = Gated ? static_cast<const Storage<W> *>(second_w.at[tile.expert]) : nullptr;
  const bool a_vector = K % 4 == 0 && (reinterpret_cast<uintptr_t>(a_source_base(g.a)) & 15) == 0;
  const bool b_vector = K % 8 == 0 && (reinterpret_cast<uintptr_t>(w0) & 15) == 0 &&
                        (!Gated || (reinterpret_cast<uintptr_t>(w1) & 15) == 0);
  __syncthreads();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int warp_m = warp / WN, warp_n = warp % WN;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc0[FM][FN], acc1[Gated ? FM : 1][Gated ? FN : 1];
  #pragma unroll
  for (int i = 0; i < FM; ++i)
    #pragma unroll
    for (int j = 0; j < FN; ++j) {
      wmma::fill_fragment(acc0[i][j], 0.0f);
      if constexpr (Gated)
        wmma::fill_fragment(acc1[i][j], 0.0f);
    }

  for (int64_t k0 = 0; k0 < K; k0 += BK) {
    // A tile: rows gathered (f32 rounded to the compute type) or h rows.
    if constexpr (std::is_same_v<ASource, GatherRows>) {
      for (int idx = threadIdx.x; idx < BM * BK / 4; idx += THREADS) {
        const int r = idx / (BK / 4), kk = (idx % (BK / 4)) * 4;
        const int64_t src = a_rows[r];
        float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (src >= 0) {
          const float *row = g.a.x + src * K + k0 + kk;
          if (a_vector && k0 + kk + 4 <= K) {
            const float4 q = *reinterpret_cast<const float4 *>(row);
            v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
          } else {
            for (int u = 0; u < 4; ++u)
              if (k0 + kk + u < K)
                v[u] = row[u];
          }
        }
        for (int u = 0; u < 4; ++u)
          a_tile[r * LD + kk + u] = from_float<C>(v[u]);
      }
    } else {
      for (int idx = threadIdx.x; idx < BM * BK / 8; idx += THREADS) {
        const int r = idx / (BK / 8), kk = (idx % (BK / 8)) * 8;
        const int64_t src = a_rows[r];
        C *dst = a_tile + r * LD + kk;
        if (src >= 0 && a_vector && K % 8 == 0 && k0 + kk + 8 <= K) {
          *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(g.a.h + src * K + k0 + kk);
        } else {
          for (int u = 0; u < 8; ++u)
            dst[u] = src >= 0 && k0 + kk + u < K ? g.a.h[src * K + k0 + kk + u] : from_float<C>(0.0f);
        }
      }
    }
    // B tiles: the weight rows [n0, n0 + BN) x [k0, k0 + BK), stored bits copied as they are.
    for (int m = 0; m < (Gated ? 2 : 1); ++m) {
      const Storage<W> *w = m == 0 ? w0 : w1;
      uint16_t *dst_tile = reinterpret_cast<uint16_t *>(b_tile + m * BN * LD);
      for (int idx = threadIdx.x; idx < BN * BK / 8; idx += THREADS) {
        const int n = idx / (BK / 8), kk = (idx % (BK / 8)) * 8;
        const int64_t col = n0 + n;
        uint16_t *dst = dst_tile + n * LD + kk;
        if (b_vector && col < Ncols && k0 + kk + 8 <= K) {
          *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(w + col * K + k0 + kk);
        } else {
          for (int u = 0; u < 8; ++u)
            dst[u] = col < Ncols && k0 + kk + u < K ? w[col * K + k0 + kk + u] : uint16_t(0);
        }
      }
    }
    __syncthreads();
    for (int ks = 0; ks < BK; ks += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, C, wmma::row_major> a_frag[FM];
      #pragma unroll
      for (int i = 0; i < FM; ++i)
        wmma::load_matrix_sync(a_frag[i], a_tile + (warp_m * FM * 16 + i * 16) * LD + ks, LD);
      #pragma unroll
      for (int j = 0; j < FN; ++j) {
        wmma::fragment<wmma::matrix_b, 16, 16, 16, C, wmma::col_major> b_frag;
        wmma::load_matrix_sync(b_frag, b_tile + (warp_n * FN * 16 + j * 16) * LD + ks, LD);
        #pragma unroll
        for (int i = 0; i < FM; ++i)
          wmma::mma_sync(acc0[i][j], a_frag[i], b_frag, acc0[i][j]);
        if constexpr (Gated) {
          wmma::load_matrix_sync(b_frag, b_tile + BN * LD + (warp_n * FN * 16 + j * 16) * LD + ks, LD);
          #pragma unroll
          for (int i = 0; i < FM; ++i)
            wmma::mma_sync(acc1[i][j], a_frag[i], b_frag, acc1[i][j]);
        }
      }
    }
    __syncthreads();
  }

  // Epilogue: stage each 16x16 fragment through this warp's shared buffer (the up fragment
  // first, its 8 values per lane kept in registers), then store with bounds checks; the
  // epilogue adds biases and combines gate and up knowing each value's column.
  #pragma unroll
  for (int i = 0; i < FM; ++i)
    #pragma unroll
    for (int j = 0; j < FN; ++j) {
      float second[8] = {};
      if constexpr (Gated) {
        wmma::store_matrix_sync(staging[warp], acc1[Gated ? i : 0][Gated ? j : 0], 16, wmma::mem_row_major);
        __syncwarp();
#pragma unroll
        for (int m = 0; m < 8; ++m)
          second[m] = staging[warp][lane + 32 * m];
        __syncwarp();
      }
      wmma::store_matrix_sync(staging[warp], acc0[i][j], 16, wmma::mem_row_major);
      __syncwarp();
      const int row0 = warp_m * FM * 16 + i * 16;
      const int64_t col0 = n0 + warp_n * FN * 16 + j * 16;
#pragma unroll
      for (int m = 0; m < 8; ++m) {
        const int idx = lane + 32 * m;
        const int r = row0 + idx / 16;
        const int64_t col = col0 + idx % 16;
        if (r < rows && col < Ncols)
          g.epilogue.store(tile.expert, tile.begin + r, tile.first, col, staging[warp][idx], second[m]);
      }
      __syncwarp();
    }
}

/// SIMT grouped GEMM (f32 weights): each thread owns a TM x TN register tile spread over the
/// block tile with strides BM/TM and BN/TN; shared tiles are k-major so a warp reads
/// consecutive addresses.
template <WeightType W, class ASource, class Epilogue, bool Gated, int BM, int BN, int BK,
          int WARPS, int N>
__global__ void __launch_bounds__(WARPS * 32)
    grouped_gemm_simt(const __grid_constant__ GroupedGemm<ASource, Epilogue> g,
                      const __grid_constant__ ExpertPointers<N> first_w,
                      const __grid_constant__ ExpertPointers<N> second_w) {
  constexpr int THREADS = WARPS * 32;
  constexpr int PER_THREAD = BM * BN / THREADS;
  static_assert(BM * BN % THREADS == 0, "tile: BM x BN must be a multiple of the thread count");
  constexpr int TN = PER_THREAD >= 8 && BN % 8 == 0 ? 8 : PER_THREAD >= 4 && BN % 4 == 0 ? 4 : 1;
  constexpr int TM = PER_THREAD / TN;
  static_assert(TM * TN == PER_THREAD && BM % TM == 0 && BN % TN == 0 &&
                    (BM / TM) * (BN / TN) == THREADS,
                "tile: no register tiling of BM x BN over the threads");
  constexpr int SM = BM / TM, SN = BN / TN;  // strides between a thread's rows / columns
  constexpr int KB = BK > 16 ? 16 : BK;        // f32 tiles are twice as wide: a shorter k step
  __shared__ float a_tile[KB][BM];
  __shared__ float b_tile[Gated ? 2 : 1][KB][BN + 1];
  __shared__ int64_t a_rows[BM];

  RowTile tile;
  if (!locate_row_tile<BM>(g.segments, g.experts, blockIdx.x, tile))
    return;
  const int64_t n0 = static_cast<int64_t>(blockIdx.y) * BN;
  const int64_t K = g.depth, Ncols = g.columns;
  const int rows = static_cast<int>(tile.end - tile.begin);
  for (int r = threadIdx.x; r < BM; r += THREADS) {
    int64_t src = -1;
    if (r < rows) {
      if constexpr (std::is_same_v<ASource, GatherRows>)
        src = g.a.source_row(tile.begin + r);
      else
        src = tile.begin + r - tile.first;
    }
    a_rows[r] = src;
  }
  const Storage<W> *w0 = static_cast<const Storage<W> *>(first_w.at[tile.expert]);
  const Storage<W> *w1 = Gated ? static_cast<const Storage<W> *>(second_w.at[tile.expert]) : nullptr;
  __syncthreads();

  const int ty = threadIdx.x / SN, tx = threadIdx.x % SN;
  float acc0[TM][TN] = {}, acc1[Gated ? TM : 1][Gated ? TN : 1] = {};
  for (int64_t k0 = 0; k0 < K; k0 += KB) {
    for (int idx = threadIdx.x; idx < BM * KB; idx += THREADS) {
      const int r = idx / KB, kk = idx % KB;
      const int64_t src = a_rows[r];
      float v = 0.0f;
      if (src >= 0 && k0 + kk < K) {
        if constexpr (std::is_same_v<ASource, GatherRows>)
          v = g.a.x[src * K + k0 + kk];
        else
          v = to_float(g.a.h[src * K + k0 + kk]);
      }
      a_tile[kk][r] = v;
    }
    for (int m = 0; m < (Gated ? 2 : 1); ++m) {
      const Storage<W> *w = m == 0 ? w0 : w1;
      for (int idx = threadIdx.x; idx < BN * KB; idx += THREADS) {
        const int n = idx / KB, kk = idx % KB;
        const int64_t col = n0 + n;
        b_tile[m][kk][n] = col < Ncols && k0 + kk < K ? load_weight<W>(w, col * K + k0 + kk) : 0.0f;
      }
    }
    __syncthreads();
#pragma unroll 4
    for (int kk = 0; kk < KB; ++kk) {
      float a[TM];
      #pragma unroll
      for (int i = 0; i < TM; ++i)
        a[i] = a_tile[kk][ty + i * SM];
      #pragma unroll
      for (int j = 0; j < TN; ++j) {
        const float b0 = b_tile[0][kk][tx + j * SN];
        #pragma unroll
        for (int i = 0; i < TM; ++i)
          acc0[i][j] += a[i] * b0;
        if constexpr (Gated) {
          const float b1 = b_tile[Gated ? 1 : 0][kk][tx + j * SN];
          #pragma unroll
          for (int i = 0; i < TM; ++i)
            acc1[i][j] += a[i] * b1;
        }
      }
    }
    __syncthreads();
  }
  #pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty + i * SM;
    if (r >= rows)
      continue;
    #pragma unroll
    for (int j = 0; j < TN; ++j) {
      const int64_t col = n0 + tx + j * SN;
      if (col < Ncols)
        g.epilogue.store(tile.expert, tile.begin + r, tile.first, col, acc0[i][j],
                         Gated ? acc1[Gated ? i : 0][Gated ? j : 0] : 0.0f);
    }
  }
}

/// Row-tile slots that cover every segment: exact for uniform segments, else an upper bound
/// (each expert adds at most one partial tile).
inline int64_t row_tile_slots(const SegmentTable &s, int64_t experts, int64_t max_rows, int bm) {
  if (s.offsets == nullptr)
    return experts * ((s.uniform_rows + bm - 1) / bm);
  return (max_rows + bm - 1) / bm + experts;
}

/// Launches one grouped GEMM on the path the weight dtype calls for.
template <WeightType W, bool Gated, int BM, int BN, int BK, int WARPS, int N, class ASource,
          class Epilogue>
cudaError_t launch_grouped_gemm(const GroupedGemm<ASource, Epilogue> &g, int64_t max_rows,
                                const ExpertPointers<N> &first_w, const ExpertPointers<N> &second_w,
                                cudaStream_t stream) {
  const int64_t slots = row_tile_slots(g.segments, g.experts, max_rows, BM);
  const int64_t column_tiles = (g.columns + BN - 1) / BN;
  if (slots <= 0 || column_tiles <= 0 || g.depth < 0)
    return cudaSuccess;
  if (slots > 0x7fffffff || column_tiles > 65535)
    return cudaErrorInvalidConfiguration;
  const dim3 grid(static_cast<unsigned>(slots), static_cast<unsigned>(column_tiles));
  if constexpr (W == WeightType::f32)
    grouped_gemm_simt<W, ASource, Epilogue, Gated, BM, BN, BK, WARPS, N>
        <<<grid, WARPS * 32, 0, stream>>>(g, first_w, second_w);
  else
    grouped_gemm_tensor_cores<W, ASource, Epilogue, Gated, BM, BN, BK, WARPS, N>
        <<<grid, WARPS * 32, 0, stream>>>(g, first_w, second_w);
  return cudaGetLastError();
}

} // namespace detail

/// Workspace of expert_ffn: h [A, F] in the compute type.
template <WeightType W>
inline size_t expert_ffn_workspace_size(int64_t max_assignments, int64_t inter) {
  if (!detail::workspace_product_fits({max_assignments, inter})) return detail::kWorkspaceOverflow;
  return detail::align256(sizeof(Compute<W>) * static_cast<size_t>(std::max<int64_t>(max_assignments, 0)) *
                          static_cast<size_t>(inter));
}

/// The grouped expert FFN: zero the output rows the scatter starts from (if asked), then the
/// two grouped GEMMs. `workspace` holds expert_ffn_workspace_size<W>(A, F) bytes, 256-aligned.
template <WeightType W, Activation Act, bool Gated, int BM, int BN, int BK, int WARPS, int N>
cudaError_t expert_ffn(const ExpertFFNProblem &p, const ExpertPointers<N> &gate_w,
                       const ExpertPointers<N> &up_w, const ExpertPointers<N> &down_w,
                       void *workspace, cudaStream_t stream) {
  using C = Compute<W>;
  cudaError_t status = cudaSuccess;
  if (p.out_rows && p.zero_rows > 0 &&
      (status = zero_floats(p.y, p.zero_rows * p.hidden, stream)) != cudaSuccess)
    return status;
  if (p.hidden <= 0 || p.inter <= 0)
    return cudaSuccess;
  C *h = static_cast<C *>(workspace);
  const int experts = static_cast<int>(p.num_experts);
  detail::GroupedGemm<detail::GatherRows, detail::HiddenEpilogue<C, Act, Gated>> first{
      experts, p.hidden, p.inter, p.segments, {p.x, p.tokens},
      {h, p.inter, Gated ? p.gate_bias : p.up_bias, Gated ? p.up_bias : nullptr, p.act}};
  status = detail::launch_grouped_gemm<W, Gated, BM, BN, BK, WARPS, N>(
      first, p.max_assignments, Gated ? gate_w : up_w, up_w, stream);
  if (status != cudaSuccess)
    return status;
  detail::GroupedGemm<detail::HiddenRows<C>, detail::OutputEpilogue> second{
      experts, p.inter, p.hidden, p.segments, {h}, {p.y, p.hidden, p.out_rows, p.gates, p.down_bias}};
  return detail::launch_grouped_gemm<W, false, BM, BN, BK, WARPS, N>(second, p.max_assignments,
                                                                     down_w, down_w, stream);
}

/// Dense linear map y = x · Wᵀ (+ bias) over `rows` rows on the grouped engine (one segment).
template <WeightType W, int BM, int BN, int BK, int WARPS>
cudaError_t linear(int64_t rows, int64_t in, int64_t out, const float *x, const Storage<W> *weight,
                   ExpertVector bias, float *y, cudaStream_t stream) {
  if (rows <= 0 || out <= 0)
    return cudaSuccess;
  ExpertPointers<1> w{{weight}};
  SegmentTable one{nullptr, rows};
  detail::GroupedGemm<detail::GatherRows, detail::LinearEpilogue> g{
      1, in, out, one, {x, nullptr}, {y, out, bias}};
  return detail::launch_grouped_gemm<W, false, BM, BN, BK, WARPS, 1>(g, rows, w, w, stream);
}

} // namespace mixtile::cuda
