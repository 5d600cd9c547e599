// Element-wise and small-GEMM kernels of the CPU kernel library that complete each layer
// kind: auxiliary losses, Mixture-of-Tokens mixing and emitting, MoV, MoLoRA, linear maps
// and the shared-expert sigmoid gate. Math: shared/spec/layers.md §3, §6, §7, §8.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "linear.h"
#include "routing.h"

namespace mixtile::cpu {

/// Switch/Hugging Face load-balancing loss E · Σ_e f_e · P_e; 0 when T = 0.
inline float load_balancing_loss(int64_t tokens, int64_t experts, int64_t k, const float *logits,
                                 const int32_t *choice) {
  if (tokens == 0)
    return 0.0f;
  std::vector<double> mean_prob(experts, 0.0), fraction(experts, 0.0);
  std::vector<float> p(experts);
  for (int64_t t = 0; t < tokens; ++t) {
    detail::softmax(logits + t * experts, p.data(), experts);
    for (int64_t e = 0; e < experts; ++e)
      mean_prob[e] += p[e];
    for (int64_t j = 0; j < k; ++j)
      if (choice[t * k + j] >= 0)
        fraction[choice[t * k + j]] += 1.0;
  }
  double loss = 0.0;
  for (int64_t e = 0; e < experts; ++e)
    loss += (fraction[e] / static_cast<double>(tokens * k)) *
            (mean_prob[e] / static_cast<double>(tokens));
  return static_cast<float>(loss * static_cast<double>(experts));
}

/// ST-MoE router z-loss mean_t (logsumexp_e logits)²; 0 when T = 0.
inline float z_loss(int64_t tokens, int64_t experts, const float *logits) {
  if (tokens == 0)
    return 0.0f;
  double total = 0.0;
  for (int64_t t = 0; t < tokens; ++t) {
    const float *l = logits + t * experts;
    float m = *std::max_element(l, l + experts);
    if (!std::isfinite(m))
      m = 0.0f;
    double sum = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      sum += std::exp(static_cast<double>(l[e] - m));
    double lse = std::log(sum) + m;
    total += lse * lse;
  }
  return static_cast<float>(total / static_cast<double>(tokens));
}

/// y = x · weightᵀ (+ bias), every row; weights [out, in] of any dtype.
template <WeightType W>
void linear_rows(int64_t rows, int64_t in, int64_t out, const float *x,
                 const WeightStorage<W> *weight, ExpertVector bias, float *y, int num_threads) {
#pragma omp parallel for collapse(2) num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t t = 0; t < rows; ++t)
    for (int64_t o = 0; o < out; ++o)
      y[t * out + o] = detail::dot<W>(x + t * in, weight + o * in, in) +
                       (bias.data ? bias.at(o) : 0.0f);
}

/// Qwen2-MoE shared_expert_gate: y[t] *= sigmoid(x[t] · w).
template <WeightType W>
void sigmoid_gate_rows(int64_t rows, int64_t hidden, int64_t width, const float *x,
                       const WeightStorage<W> *w, float *y, int num_threads) {
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const float g = 1.0f / (1.0f + std::exp(-detail::dot<W>(x + t * hidden, w, hidden)));
    for (int64_t i = 0; i < width; ++i)
      y[t * width + i] *= g;
  }
}

/// y = init; y[token_of[a]] += gate_of[a] · h[a]. Sequential over assignments per column
/// block so no two threads write one element.
inline void combine_rows(int64_t assignments, int64_t width, const float *h,
                         const int32_t *token_of, const float *gate_of, float *y,
                         int num_threads) {
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
#pragma omp parallel num_threads(threads)
  {
    const int id = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t begin = width * id / n, end = width * (id + 1) / n;
    for (int64_t a = 0; a < assignments; ++a) {
      float *row = y + static_cast<int64_t>(token_of[a]) * width;
      const float *src = h + a * width;
      for (int64_t i = begin; i < end; ++i)
        row[i] += gate_of[a] * src[i];
    }
  }
}

/// MoV: y = h ⊙ (p · vectors), vectors [E, H].
template <WeightType W>
void mix_vectors(int64_t tokens, int64_t experts, int64_t width, const float *h,
                 const float *probs, const WeightStorage<W> *vectors, float *y,
                 int num_threads) {
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t t = 0; t < tokens; ++t) {
    float *out = y + t * width;
    const float *in = h + t * width;
    std::vector<float> scale(width, 0.0f);
    for (int64_t e = 0; e < experts; ++e) {
      const float p = probs[t * experts + e];
      if (p == 0.0f)
        continue;  // masked by top-k: the vector is not read
      const WeightStorage<W> *v = vectors + e * width;
      for (int64_t i = 0; i < width; ++i)
        scale[i] += p * detail::load_weight_scalar<W>(v + i);
    }
    for (int64_t i = 0; i < width; ++i)
      out[i] = in[i] * scale[i];
  }
}

/// MoLoRA as one rank-E·r LoRA with a per-token block scale: u[t, e·r + j] =
/// (alpha / r) · p[t, e] · (A_e · x_t)[j], then y[t] += Σ_{e,j} B_e[:, j] · u[t, e·r + j].
/// Experts a token gives probability 0 (top-k masked) are skipped. `scratch` holds T·E·r
/// floats. y must already hold the base output.
template <WeightType W>
void mix_lora(int64_t tokens, int64_t experts, int64_t rank, int64_t in, int64_t out,
              double alpha, const float *x, const float *probs, const WeightStorage<W> *lora_a,
              const WeightStorage<W> *lora_b, float *y, float *scratch, int num_threads) {
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  const float factor = static_cast<float>(alpha / static_cast<double>(rank));
  const int64_t width = experts * rank;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < experts; ++e) {
      const float p = probs[t * experts + e] * factor;
      for (int64_t j = 0; j < rank; ++j)
        scratch[t * width + e * rank + j] =
            p == 0.0f ? 0.0f : p * detail::dot<W>(x + t * in, lora_a + (e * rank + j) * in, in);
    }
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t e = 0; e < experts; ++e) {
      const float *u = scratch + t * width + e * rank;
      bool any = false;
      for (int64_t j = 0; j < rank; ++j)
        any |= u[j] != 0.0f;
      if (!any && probs[t * experts + e] == 0.0f)
        continue;
      const WeightStorage<W> *b = lora_b + e * out * rank;
      for (int64_t o = 0; o < out; ++o) {
        float s = 0.0f;
        for (int64_t j = 0; j < rank; ++j)
          s += detail::load_weight_scalar<W>(b + o * rank + j) * u[j];
        y[t * out + o] += s;
      }
    }
}

namespace detail {

/// acc[i][v] += Σ_k a[k·MR + i] · b[k·ldb + v·W ...]: the register tile of gemm.h's
/// microkernel, with B read in place (rows of activations at any stride) instead of packed.
template <int MR, int NV>
inline void strided_microkernel(int64_t depth, const float *__restrict a, const float *__restrict b,
                                int64_t ldb, VecF (&acc)[MR][NV]) {
  for (int64_t k = 0; k < depth; ++k) {
    VecF bv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = vload(b + k * ldb + v * kVecWidth);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const VecF ai = vset1(a[k * MR + i]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(ai, bv[v], acc[i][v]);
    }
  }
}

/// Stores a vector, bypassing the caches when `Stream` and the address allows it: for outputs
/// far larger than the last-level cache, which would otherwise be read before being written.
template <bool Stream>
inline void vstore_maybe_stream(float *p, VecF a) {
#if defined(__AVX512F__)
  if (Stream && (reinterpret_cast<uintptr_t>(p) & 63) == 0) {
    _mm512_stream_ps(p, a.v);
    return;
  }
#elif defined(__AVX2__) && defined(__FMA__)
  if (Stream && (reinterpret_cast<uintptr_t>(p) & 31) == 0) {
    _mm256_stream_ps(p, a.v);
    return;
  }
#endif
  vstore(p, a);
}

/// A 64-byte aligned float buffer owned by one thread of a kernel.
struct AlignedFloats {
  explicit AlignedFloats(int64_t n)
      : data(static_cast<float *>(std::aligned_alloc(64, (sizeof(float) * std::max<int64_t>(n, 1) + 63) / 64 * 64))) {
    if (data == nullptr) throw std::bad_alloc();
  }
  ~AlignedFloats() { std::free(data); }
  AlignedFloats(const AlignedFloats &) = delete;
  AlignedFloats &operator=(const AlignedFloats &) = delete;
  float *data;
};

/// Orders this thread's streaming stores before what follows (a barrier, the next kernel).
inline void stream_fence() {
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
  _mm_sfence();
#endif
}

/// C[r, 0:n] = Σ_k A[r, k] · B[k, 0:n] for `rows` rows, one thread. A is packed by
/// pack_rows_interleaved (blocks of kMicroRows rows, k-major); B rows lie at stride ldb;
/// row r of C starts at out_row(r). Whole tiles use the GEMM microkernel's register shape.
template <bool Stream, class OutRow>
inline void gemm_packed_a(int64_t rows, int64_t depth, int64_t n, const float *apack, const float *b,
                          int64_t ldb, OutRow out_row) {
  constexpr int MR = kMicroRows, NV = kMicroVectors, W = kVecWidth;
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    const float *a = apack + r0 * depth;
    const int valid = static_cast<int>(std::min<int64_t>(MR, rows - r0));
    float *dst[MR];
    for (int i = 0; i < MR; ++i) dst[i] = i < valid ? out_row(r0 + i) : nullptr;
    int64_t c = 0;
    for (; c + NV * W <= n; c += NV * W) {
      VecF acc[MR][NV];
      for (int i = 0; i < MR; ++i)
        for (int v = 0; v < NV; ++v) acc[i][v] = vzero();
      strided_microkernel<MR, NV>(depth, a, b + c, ldb, acc);
      for (int i = 0; i < valid; ++i)
        for (int v = 0; v < NV; ++v) vstore_maybe_stream<Stream>(dst[i] + c + v * W, acc[i][v]);
    }
    for (; c + W <= n; c += W) {
      VecF acc[MR][1];
      for (int i = 0; i < MR; ++i) acc[i][0] = vzero();
      strided_microkernel<MR, 1>(depth, a, b + c, ldb, acc);
      for (int i = 0; i < valid; ++i) vstore_maybe_stream<Stream>(dst[i] + c, acc[i][0]);
    }
    for (; c < n; ++c)
      for (int i = 0; i < valid; ++i) {
        float s = 0.0f;
        for (int64_t k = 0; k < depth; ++k) s += a[k * MR + i] * b[k * ldb + c];
        dst[i][c] = s;
      }
  }
}

/// Packs A[r, k] = value(r, k) for r < rows, k < depth into blocks of kMicroRows rows,
/// k-major (dst[block · MR · depth + k · MR + i]); rows past `rows` are zero.
template <class Value>
inline void pack_rows_interleaved(int64_t rows, int64_t depth, float *dst, Value value) {
  constexpr int MR = kMicroRows;
  for (int64_t r0 = 0; r0 < rows; r0 += MR) {
    float *blk = dst + r0 * depth;
    const int valid = static_cast<int>(std::min<int64_t>(MR, rows - r0));
    for (int64_t k = 0; k < depth; ++k)
      for (int i = 0; i < MR; ++i) blk[k * MR + i] = i < valid ? value(r0 + i, k) : 0.0f;
  }
}

}  // namespace detail

/// Workspace of token_mix: the controller GEMM's (linear.h) scratch.
inline size_t token_mix_workspace_size(int64_t batch, int64_t seq, int64_t hidden, int64_t experts,
                                       int num_threads, MatmulPath path = MatmulPath::fma_f32) {
  return linear_workspace_size(batch * seq, hidden, experts, num_threads, default_tile_config(), path);
}

/// Mixture of Tokens (Antoniak et al., 2023): for each group of G consecutive examples at
/// position s, merge weights m = softmax over the group of logits / τ per expert; the mixed
/// token of expert e is Σ_i m_i x_i, stored at mixed[e, g·S + s]. emit [B, S, E] gets the
/// merge weights, or softmax over experts of logits / τ. `logits` is scratch of B·S·E floats,
/// `workspace` token_mix_workspace_size(...) bytes, 64-byte aligned.
///
/// Schedule: the controller logits are one GEMM [B·S, D] x [D, E] (linear.h). Then each
/// thread takes whole group positions (g, s): merge weights vectorized over experts, written
/// in place of the logits (or straight into emit), and the mixing Z[E, D] = Mᵀ[E, G] · X[G, D]
/// as a G-deep GEMM on the microkernel tile, X read in place. No two threads share an output.
/// Path: the controller GEMM's MatmulPath (router_logits_gemm).
template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
void token_mix(int64_t batch, int64_t seq, int64_t hidden, int64_t experts, int64_t group,
               double temperature, bool emit_expert_softmax, const float *x,
               const WeightStorage<W> *controller, float *mixed, float *emit, float *logits,
               void *workspace, int num_threads) {
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  const int64_t tokens = batch * seq, groups = batch / group, positions = groups * seq;
  const int64_t D = hidden, E = experts, G = group;
  const float inv_t = static_cast<float>(1.0 / temperature);
  if (tokens <= 0) return;
  router_logits_gemm<W, Path>(tokens, D, E, x, controller, logits, workspace, threads);

#pragma omp parallel num_threads(threads)
  {
    std::vector<float> column_max(E), column_sum(E), column(G), weights(G);
    std::vector<float> apack(detail::round_up(E, kMicroRows) * G);
#pragma omp for schedule(static)
    for (int64_t gs = 0; gs < positions; ++gs) {
      const int64_t g = gs / seq, s = gs % seq;
      const int64_t first_row = g * G * seq + s;  // row of example (g·G + i, s) is first_row + i·S
      const int64_t ld = seq * E;                 // between the group's rows of logits / emit
      float *l0 = logits + first_row * E;
      float *e0 = emit + first_row * E;
      bool finite = true;
      for (int64_t i = 0; i < G && finite; ++i) finite = detail::all_finite(l0 + i * ld, E);
      if (emit_expert_softmax)
        for (int64_t i = 0; i < G; ++i) detail::softmax_row(l0 + i * ld, e0 + i * ld, E, inv_t);
      // Merge weights m[i, e]: into emit (emit = merge) or over the logits (no longer needed).
      float *m0 = emit_expert_softmax ? l0 : e0;
      if (finite) {
        for (int64_t e = 0; e < E; ++e) column_max[e] = l0[e] * inv_t;
        for (int64_t i = 1; i < G; ++i) {
          const float *l = l0 + i * ld;
          for (int64_t e = 0; e < E; ++e) column_max[e] = std::max(column_max[e], l[e] * inv_t);
        }
        std::fill(column_sum.begin(), column_sum.end(), 0.0f);
        for (int64_t i = 0; i < G; ++i) {
          float *m = m0 + i * ld;
          detail::exp_shifted(l0 + i * ld, column_max.data(), 0.0f, inv_t, m, E);
          for (int64_t e = 0; e < E; ++e) column_sum[e] += m[e];
        }
        for (int64_t i = 0; i < G; ++i) {
          float *m = m0 + i * ld;
          for (int64_t e = 0; e < E; ++e) m[e] /= column_sum[e];
        }
      } else {
        // NaN or Inf among the logits: the scalar softmax per expert, as the semantics define.
        for (int64_t e = 0; e < E; ++e) {
          for (int64_t i = 0; i < G; ++i) column[i] = l0[i * ld + e];
          detail::softmax(column.data(), weights.data(), G, inv_t);
          for (int64_t i = 0; i < G; ++i) m0[i * ld + e] = weights[i];
        }
      }
      // Z[e, :] = Σ_i m[i, e] · x_i: A = Mᵀ [E, G], B = the group's tokens [G, D].
      detail::pack_rows_interleaved(E, G, apack.data(),
                                    [&](int64_t e, int64_t i) { return m0[i * ld + e]; });
      detail::gemm_packed_a<true>(E, G, D, apack.data(), x + first_row * D, seq * D,
                                  [&](int64_t e) { return mixed + (e * positions + gs) * D; });
    }
    detail::stream_fence();
  }
}

/// out[b, s] = Σ_e emit[b, s, e] · h[e, (b / G)·S + s]: per group position (g, s) the
/// E-deep GEMM Y[G, D] = W[G, E] · H[E, D], threads over group positions.
inline void token_emit(int64_t batch, int64_t seq, int64_t hidden, int64_t experts,
                       int64_t group, const float *h, const float *emit, float *out,
                       int num_threads) {
  const int64_t groups = batch / group, positions = groups * seq;
  const int64_t D = hidden, E = experts, G = group;
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : omp_get_max_threads())
  {
    std::vector<float> apack(detail::round_up(G, kMicroRows) * E);
    // This position's E rows of h, gathered contiguously: read in place they lie
    // positions·D floats (a page or more) apart, and the GEMM walking them measured ~20%
    // slower than the gather plus the GEMM (bench/mot_kernels, one thread).
    detail::AlignedFloats hblock(E * D);
    float *hrows = hblock.data;
#pragma omp for schedule(static)
    for (int64_t gs = 0; gs < positions; ++gs) {
      const int64_t g = gs / seq, s = gs % seq;
      const int64_t first_row = g * G * seq + s;
      const float *w0 = emit + first_row * E;
      for (int64_t e = 0; e < E; ++e) std::memcpy(hrows + e * D, h + (e * positions + gs) * D, sizeof(float) * D);
      detail::pack_rows_interleaved(G, E, apack.data(),
                                    [&](int64_t i, int64_t e) { return w0[i * seq * E + e]; });
      detail::gemm_packed_a<false>(G, E, D, apack.data(), hrows, D,
                            [&](int64_t i) { return out + (first_row + i * seq) * D; });
    }
  }
}

} // namespace mixtile::cpu
