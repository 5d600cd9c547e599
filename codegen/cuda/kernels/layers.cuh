// Small kernels of the CUDA kernel library that complete each layer kind: auxiliary losses,
// the shared-expert sigmoid gate, an unfused combine, MoV, MoLoRA and Mixture-of-Tokens mixing
// and emitting. Straightforward kernels: correctness and readability first.
// Math: shared/spec/layers.md §3, §6, §7, §8.
#pragma once

#include "common.cuh"
#include "expert_ffn.cuh"
#include "routing.cuh"

namespace mixtile::cuda {

namespace detail {

/// softmax(in · inverse_temperature) of n values read at stride `stride`, by one thread, with
/// the CPU target's rule (max ignores NaN; a non-finite max becomes 0 so NaN propagates).
__device__ inline void thread_softmax(const float *in, int64_t stride, float *out, int64_t out_stride,
                                      int64_t n, float inverse_temperature) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    m = fmaxf(m, in[i * stride] * inverse_temperature);
  if (!isfinite(m))
    m = 0.0f;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i)
    sum += expf(in[i * stride] * inverse_temperature - m);
  for (int64_t i = 0; i < n; ++i)
    out[i * out_stride] = expf(in[i * stride] * inverse_temperature - m) / sum;
}

/// Load-balancing loss in one block: per-expert sums of softmax scores and assignment counts
/// in shared doubles, then thread 0 forms E · Σ_e f_e · P_e.
__global__ void load_balancing_loss_kernel(int64_t tokens, int64_t experts, int64_t k,
                                           const float *logits, const int32_t *choice, float *loss) {
  extern __shared__ double lb_shared[];
  double *mean_prob = lb_shared, *fraction = lb_shared + experts;
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x)
    mean_prob[e] = fraction[e] = 0.0;
  __syncthreads();
  for (int64_t t = threadIdx.x; t < tokens; t += blockDim.x) {
    const float *l = logits + t * experts;
    float m = -INFINITY;
    for (int64_t e = 0; e < experts; ++e)
      m = fmaxf(m, l[e]);
    if (!isfinite(m))
      m = 0.0f;
    float sum = 0.0f;
    for (int64_t e = 0; e < experts; ++e)
      sum += expf(l[e] - m);
    for (int64_t e = 0; e < experts; ++e)
      atomicAdd(&mean_prob[e], static_cast<double>(expf(l[e] - m) / sum));
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = choice[t * k + j];
      if (e >= 0)
        atomicAdd(&fraction[e], 1.0);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      total += (fraction[e] / static_cast<double>(tokens * k)) *
               (mean_prob[e] / static_cast<double>(tokens));
    *loss = tokens > 0 ? static_cast<float>(total * static_cast<double>(experts)) : 0.0f;
  }
}

/// Router z-loss in one block: mean_t (logsumexp_e logits)², summed in double.
__global__ void z_loss_kernel(int64_t tokens, int64_t experts, const float *logits, float *loss) {
  __shared__ double partial[256];
  double total = 0.0;
  for (int64_t t = threadIdx.x; t < tokens; t += blockDim.x) {
    const float *l = logits + t * experts;
    float m = -INFINITY;
    for (int64_t e = 0; e < experts; ++e)
      m = fmaxf(m, l[e]);
    if (!isfinite(m))
      m = 0.0f;
    double sum = 0.0;
    for (int64_t e = 0; e < experts; ++e)
      sum += exp(static_cast<double>(l[e] - m));
    const double lse = log(sum) + m;
    total += lse * lse;
  }
  partial[threadIdx.x] = total;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride)
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0)
    *loss = tokens > 0 ? static_cast<float>(partial[0] / static_cast<double>(tokens)) : 0.0f;
}

} // namespace detail

/// Switch/Hugging Face load-balancing loss E · Σ_e f_e · P_e into a device scalar; 0 when T = 0.
inline cudaError_t load_balancing_loss(int64_t tokens, int64_t experts, int64_t k, const float *logits,
                                       const int32_t *choice, float *loss, cudaStream_t stream) {
  detail::load_balancing_loss_kernel<<<1, 256, 2 * sizeof(double) * experts, stream>>>(
      tokens, experts, k, logits, choice, loss);
  return cudaGetLastError();
}

/// ST-MoE router z-loss into a device scalar; 0 when T = 0.
inline cudaError_t z_loss(int64_t tokens, int64_t experts, const float *logits, float *loss,
                          cudaStream_t stream) {
  detail::z_loss_kernel<<<1, 256, 0, stream>>>(tokens, experts, logits, loss);
  return cudaGetLastError();
}

namespace detail {

template <WeightType W>
__global__ void sigmoid_gate_kernel(int64_t rows, int64_t hidden, int64_t width, const float *x,
                                    const Storage<W> *w, float *y) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (t >= rows)
    return;
  float dot = 0.0f;
  for (int64_t i = lane_id(); i < hidden; i += kWarp)
    dot += x[t * hidden + i] * load_weight<W>(w, i);
  const float g = 1.0f / (1.0f + expf(-warp_sum(dot)));
  for (int64_t i = lane_id(); i < width; i += kWarp)
    y[t * width + i] *= g;
}

__global__ void combine_kernel(int64_t max_assignments, const int32_t *count, int64_t width,
                               const float *h, const int32_t *token_of, const float *gate_of,
                               float *y) {
  const int64_t assignments = count ? min(max_assignments, static_cast<int64_t>(*count)) : max_assignments;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < assignments * width;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t a = i / width, c = i % width;
    atomicAdd(&y[static_cast<int64_t>(token_of[a]) * width + c], gate_of[a] * h[i]);
  }
}

} // namespace detail

/// Qwen2-MoE shared_expert_gate: y[t] *= sigmoid(x[t] · w), one warp per row.
template <WeightType W>
cudaError_t sigmoid_gate_rows(int64_t rows, int64_t hidden, int64_t width, const float *x,
                              const Storage<W> *w, float *y, cudaStream_t stream) {
  if (rows <= 0)
    return cudaSuccess;
  detail::sigmoid_gate_kernel<W><<<detail::blocks_for(rows, 8), 8 * kWarp, 0, stream>>>(
      rows, hidden, width, x, w, y);
  return cudaGetLastError();
}

/// y[token_of[a]] += gate_of[a] · h[a] for the assignments a < *count (read on the device;
/// null: all max_assignments). y already holds the combine's init.
inline cudaError_t combine_rows(int64_t max_assignments, const int32_t *count, int64_t width,
                                const float *h, const int32_t *token_of, const float *gate_of,
                                float *y, cudaStream_t stream) {
  if (max_assignments <= 0 || width <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(max_assignments * width, 256), 8192);
  detail::combine_kernel<<<blocks, 256, 0, stream>>>(max_assignments, count, width, h, token_of,
                                                     gate_of, y);
  return cudaGetLastError();
}

namespace detail {

template <WeightType W>
__global__ void mix_vectors_kernel(int64_t tokens, int64_t experts, int64_t width, const float *h,
                                   const float *probs, const Storage<W> *vectors, float *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < tokens * width;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / width, c = i % width;
    float scale = 0.0f;
    for (int64_t e = 0; e < experts; ++e) {
      const float p = probs[t * experts + e];
      if (p != 0.0f)  // masked by top-k: the vector is not read
        scale += p * load_weight<W>(vectors, e * width + c);
    }
    y[i] = h[i] * scale;
  }
}

/// u[t, e·r + j] = factor · p[t, e] · (A_e · x_t)[j], one warp per (token, LoRA row).
template <WeightType W>
__global__ void lora_down_kernel(int64_t tokens, int64_t experts, int64_t rank, int64_t in,
                                 float factor, const float *x, const float *probs,
                                 const Storage<W> *lora_a, float *u) {
  const int64_t width = experts * rank;
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (item >= tokens * width)
    return;
  const int64_t t = item / width, row = item % width;
  const float p = probs[t * experts + row / rank];
  if (p == 0.0f) {
    if (lane_id() == 0)
      u[item] = 0.0f;
    return;
  }
  float dot = 0.0f;
  for (int64_t i = lane_id(); i < in; i += kWarp)
    dot += x[t * in + i] * load_weight<W>(lora_a, row * in + i);
  dot = warp_sum(dot);
  if (lane_id() == 0)
    u[item] = factor * p * dot;
}

/// y[t, o] += Σ_{e, j} B_e[o, j] · u[t, e·r + j], experts with p = 0 skipped.
template <WeightType W>
__global__ void lora_up_kernel(int64_t tokens, int64_t experts, int64_t rank, int64_t out,
                               const float *probs, const Storage<W> *lora_b, const float *u,
                               float *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < tokens * out;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / out, o = i % out;
    float s = 0.0f;
    for (int64_t e = 0; e < experts; ++e) {
      if (probs[t * experts + e] == 0.0f)
        continue;
      const float *ue = u + (t * experts + e) * rank;
      for (int64_t j = 0; j < rank; ++j)
        s += load_weight<W>(lora_b, (e * out + o) * rank + j) * ue[j];
    }
    y[i] += s;
  }
}

} // namespace detail

/// MoV: y = h ⊙ (p · vectors), vectors [E, H].
template <WeightType W>
cudaError_t mix_vectors(int64_t tokens, int64_t experts, int64_t width, const float *h,
                        const float *probs, const Storage<W> *vectors, float *y, cudaStream_t stream) {
  if (tokens <= 0 || width <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(tokens * width, 256), 8192);
  detail::mix_vectors_kernel<W><<<blocks, 256, 0, stream>>>(tokens, experts, width, h, probs, vectors, y);
  return cudaGetLastError();
}

/// MoLoRA as one rank-E·r LoRA with a per-token block scale (alpha / r) · p[t, e]; y holds the
/// base output already. `scratch` holds T·E·r floats.
template <WeightType W>
cudaError_t mix_lora(int64_t tokens, int64_t experts, int64_t rank, int64_t in, int64_t out,
                     double alpha, const float *x, const float *probs, const Storage<W> *lora_a,
                     const Storage<W> *lora_b, float *y, float *scratch, cudaStream_t stream) {
  if (tokens <= 0)
    return cudaSuccess;
  const float factor = static_cast<float>(alpha / static_cast<double>(rank));
  detail::lora_down_kernel<W><<<detail::blocks_for(tokens * experts * rank, 8), 8 * kWarp, 0, stream>>>(
      tokens, experts, rank, in, factor, x, probs, lora_a, scratch);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess || out <= 0)
    return status;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(tokens * out, 256), 8192);
  detail::lora_up_kernel<W><<<blocks, 256, 0, stream>>>(tokens, experts, rank, out, probs, lora_b,
                                                        scratch, y);
  return cudaGetLastError();
}

namespace detail {

/// Emit weights as the softmax over experts of logits / τ, one warp per row.
__global__ void expert_softmax_kernel(int64_t rows, int64_t experts, float inverse_temperature,
                                      const float *logits, float *emit) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (t >= rows)
    return;
  warp_softmax(logits + t * experts, emit + t * experts, experts, inverse_temperature);
}

/// Merge weights: for group position (g, s) and expert e, the softmax over the G examples of
/// logits / τ, written to `merge` (emit, or the logits in place: each thread reads its G
/// values before writing them).
__global__ void merge_weights_kernel(int64_t positions, int64_t seq, int64_t experts, int64_t group,
                                     float inverse_temperature, const float *logits, float *merge) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < positions * experts;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t gs = i / experts, e = i % experts;
    const int64_t g = gs / seq, s = gs % seq;
    const int64_t first = (g * group * seq + s) * experts + e;  // row of example (g·G + j, s): + j·S·E
    thread_softmax(logits + first, seq * experts, merge + first, seq * experts, group,
                   inverse_temperature);
  }
}

/// mixed[e, g·S + s, d] = Σ_i m[(g·G + i, s), e] · x[(g·G + i, s), d].
__global__ void mix_tokens_kernel(int64_t positions, int64_t seq, int64_t hidden, int64_t experts,
                                  int64_t group, const float *x, const float *merge, float *mixed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < experts * positions * hidden;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % hidden, gs = (i / hidden) % positions, e = i / (hidden * positions);
    const int64_t g = gs / seq, s = gs % seq;
    float z = 0.0f;
    for (int64_t j = 0; j < group; ++j) {
      const int64_t row = (g * group + j) * seq + s;
      z += merge[row * experts + e] * x[row * hidden + d];
    }
    mixed[i] = z;
  }
}

/// out[b, s, d] = Σ_e emit[b, s, e] · h[e, (b / G)·S + s, d].
__global__ void token_emit_kernel(int64_t batch, int64_t seq, int64_t hidden, int64_t experts,
                                  int64_t group, const float *h, const float *emit, float *out) {
  const int64_t positions = batch / group * seq;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < batch * seq * hidden;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / hidden, d = i % hidden;
    const int64_t b = row / seq, s = row % seq;
    float y = 0.0f;
    for (int64_t e = 0; e < experts; ++e)
      y += emit[row * experts + e] * h[(e * positions + (b / group) * seq + s) * hidden + d];
    out[i] = y;
  }
}

} // namespace detail

/// Mixture of Tokens (Antoniak et al., 2023): controller logits [B·S, E] on the linear engine,
/// emit weights (merge weights, or softmax over experts), merge weights, then the mixed token
/// of every expert and group position, stored at mixed[e, g·S + s]. `logits` is scratch of
/// B·S·E floats. B must be a multiple of G (checked by the caller).
template <WeightType W, int BM, int BN, int BK, int WARPS>
cudaError_t token_mix(int64_t batch, int64_t seq, int64_t hidden, int64_t experts, int64_t group,
                      double temperature, bool emit_expert_softmax, const float *x,
                      const Storage<W> *controller, float *mixed, float *emit, float *logits,
                      cudaStream_t stream) {
  const int64_t tokens = batch * seq, positions = batch / group * seq;
  if (tokens <= 0)
    return cudaSuccess;
  const float inverse_temperature = static_cast<float>(1.0 / temperature);
  cudaError_t status =
      linear<W, BM, BN, BK, WARPS>(tokens, hidden, experts, x, controller, ExpertVector{}, logits, stream);
  if (status != cudaSuccess)
    return status;
  if (emit_expert_softmax) {
    detail::expert_softmax_kernel<<<detail::blocks_for(tokens, 8), 8 * kWarp, 0, stream>>>(
        tokens, experts, inverse_temperature, logits, emit);
    if ((status = cudaGetLastError()) != cudaSuccess)
      return status;
  }
  float *merge = emit_expert_softmax ? logits : emit;
  unsigned blocks = std::min<unsigned>(detail::blocks_for(positions * experts, 256), 8192);
  detail::merge_weights_kernel<<<blocks, 256, 0, stream>>>(positions, seq, experts, group,
                                                           inverse_temperature, logits, merge);
  if ((status = cudaGetLastError()) != cudaSuccess)
    return status;
  blocks = std::min<unsigned>(detail::blocks_for(experts * positions * hidden, 256), 65535);
  detail::mix_tokens_kernel<<<blocks, 256, 0, stream>>>(positions, seq, hidden, experts, group, x,
                                                        merge, mixed);
  return cudaGetLastError();
}

/// out[b, s] = Σ_e emit[b, s, e] · h[e, (b / G)·S + s].
inline cudaError_t token_emit(int64_t batch, int64_t seq, int64_t hidden, int64_t experts,
                              int64_t group, const float *h, const float *emit, float *out,
                              cudaStream_t stream) {
  if (batch * seq <= 0 || hidden <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(batch * seq * hidden, 256), 65535);
  detail::token_emit_kernel<<<blocks, 256, 0, stream>>>(batch, seq, hidden, experts, group, h, emit, out);
  return cudaGetLastError();
}

namespace detail {

template <WeightType W>
__global__ void widen_tokens_kernel(int64_t n, const Storage<W> *src, float *dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = load_weight<W>(src, i);
}

template <WeightType W>
__global__ void round_tokens_kernel(int64_t n, const float *src, Storage<W> *dst) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (W == WeightType::f32)
      dst[i] = src[i];
    else if constexpr (W == WeightType::bf16)
      dst[i] = __bfloat16_as_ushort(__float2bfloat16_rn(src[i]));
    else
      dst[i] = __half_as_ushort(__float2half_rn(src[i]));
  }
}

} // namespace detail

/// A bf16/f16 layer's token conversions (layers.md, Conventions): its input tokens widened to
/// f32 at entry, its f32 output rounded once, to nearest even, at exit.
template <WeightType W>
inline cudaError_t widen_tokens(int64_t n, const Storage<W> *src, float *dst, cudaStream_t stream) {
  if (n <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(n, 256), 8192);
  detail::widen_tokens_kernel<W><<<blocks, 256, 0, stream>>>(n, src, dst);
  return cudaGetLastError();
}

template <WeightType W>
inline cudaError_t round_tokens(int64_t n, const float *src, Storage<W> *dst, cudaStream_t stream) {
  if (n <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(n, 256), 8192);
  detail::round_tokens_kernel<W><<<blocks, 256, 0, stream>>>(n, src, dst);
  return cudaGetLastError();
}

} // namespace mixtile::cuda
