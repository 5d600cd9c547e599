// Element-wise and small-GEMM kernels of the CPU kernel library that complete each layer
// kind: auxiliary losses, Mixture-of-Tokens mixing and emitting, MoV, MoLoRA, linear maps
// and the shared-expert sigmoid gate. Math: shared/spec/layers.md §3, §6, §7, §8.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

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

/// Mixture of Tokens (Antoniak et al., 2023): for each group of G consecutive examples at
/// position s, merge weights m = softmax over the group of logits / τ per expert; the mixed
/// token of expert e is Σ_i m_i x_i, stored at mixed[e, g·S + s]. emit [B, S, E] gets the
/// merge weights, or softmax over experts of logits / τ. `logits` is scratch of B·S·E floats.
template <WeightType W>
void token_mix(int64_t batch, int64_t seq, int64_t hidden, int64_t experts, int64_t group,
               double temperature, bool emit_expert_softmax, const float *x,
               const WeightStorage<W> *controller, float *mixed, float *emit, float *logits,
               int num_threads) {
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  const int64_t tokens = batch * seq, groups = batch / group;
  const float inv_t = static_cast<float>(1.0 / temperature);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t)
    detail::router_logits<W>(x + t * hidden, controller, ExpertVector{}, experts, hidden,
                             logits + t * experts);
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> column(group), weights(group);
#pragma omp for collapse(2) schedule(static)
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t s = 0; s < seq; ++s) {
        for (int64_t e = 0; e < experts; ++e) {
          for (int64_t i = 0; i < group; ++i)
            column[i] = logits[((g * group + i) * seq + s) * experts + e];
          detail::softmax(column.data(), weights.data(), group, inv_t);
          float *z = mixed + (e * groups * seq + g * seq + s) * hidden;
          std::fill(z, z + hidden, 0.0f);
          for (int64_t i = 0; i < group; ++i) {
            const float *xi = x + ((g * group + i) * seq + s) * hidden;
            const float m = weights[i];
            for (int64_t d = 0; d < hidden; ++d)
              z[d] += m * xi[d];
            if (!emit_expert_softmax)
              emit[((g * group + i) * seq + s) * experts + e] = m;
          }
        }
        if (emit_expert_softmax)
          for (int64_t i = 0; i < group; ++i) {
            const int64_t row = (g * group + i) * seq + s;
            detail::softmax(logits + row * experts, emit + row * experts, experts, inv_t);
          }
      }
  }
}

/// out[b, s] = Σ_e emit[b, s, e] · h[e, (b / G)·S + s].
inline void token_emit(int64_t batch, int64_t seq, int64_t hidden, int64_t experts,
                       int64_t group, const float *h, const float *emit, float *out,
                       int num_threads) {
  const int64_t rows_per_expert = batch / group * seq;
#pragma omp parallel for collapse(2) num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t s = 0; s < seq; ++s) {
      float *y = out + (b * seq + s) * hidden;
      std::fill(y, y + hidden, 0.0f);
      for (int64_t e = 0; e < experts; ++e) {
        const float w = emit[(b * seq + s) * experts + e];
        const float *src = h + (e * rows_per_expert + (b / group) * seq + s) * hidden;
        for (int64_t d = 0; d < hidden; ++d)
          y[d] += w * src[d];
      }
    }
}

} // namespace mixtile::cpu
