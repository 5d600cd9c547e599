// Dense parts of a decoder-only transformer in the CUDA kernel library: the embedding gather,
// RMSNorm, the residual add and causal self-attention with rotary embeddings over a KV cache.
// Mechanisms only (shapes and model constants from the caller, scratch from its workspace);
// the semantics are the CPU library's (codegen/cpu/kernels/model.h). No host synchronization.
//
// Out-of-range indices: the CPU entry points check token ids, positions and cache rows on the
// host and return an error code; here they live on the device and an entry point must not
// read them back. So they get a defined result instead: a gather index outside the table
// gives a row of zeros, and a token whose position or cache row lies outside the cache writes
// nothing into the caches and gets an output of zeros. The runtime validates token ids
// against the vocabulary and positions against the cache length before every call.
#pragma once

#include "common.cuh"

namespace mixtile::cuda {

namespace detail {

/// f32 -> the storage of a weight dtype, rounded to nearest even.
template <WeightType W>
__device__ __forceinline__ Storage<W> to_storage(float v) {
  if constexpr (W == WeightType::f32)
    return v;
  else if constexpr (W == WeightType::bf16)
    return __bfloat16_as_ushort(__float2bfloat16_rn(v));
  else
    return __half_as_ushort(__float2half_rn(v));
}

template <WeightType W>
__global__ void gather_rows_kernel(int64_t rows, int64_t width, int64_t table_rows,
                                   const Storage<W> *table, const int32_t *index, float *out) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * width;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / width, c = i % width;
    const int64_t row = index[r];
    out[i] = row >= 0 && row < table_rows ? load_weight<W>(table, row * width + c) : 0.0f;
  }
}

/// One warp per row. y may alias x: each lane writes only the elements it has read.
template <WeightType W>
__global__ void rms_norm_kernel(int64_t rows, int64_t width, float epsilon, const float *x,
                                const Storage<W> *weight, float *y) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (r >= rows)
    return;
  const float *xr = x + r * width;
  float *yr = y + r * width;
  float squares = 0.0f;
  for (int64_t i = lane_id(); i < width; i += kWarp)
    squares += xr[i] * xr[i];
  squares = warp_sum(squares);
  const float inv = 1.0f / sqrtf(squares / static_cast<float>(width) + epsilon);
  for (int64_t i = lane_id(); i < width; i += kWarp)
    yr[i] = load_weight<W>(weight, i) * (xr[i] * inv);
}

__global__ void add_kernel(int64_t n, const float *a, const float *b, float *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = a[i] + b[i];
}

} // namespace detail

/// Rows of a table widened to f32: out[r, :] = table[index[r], :]; a row of zeros where
/// index[r] lies outside [0, table_rows) (see the top of this file).
template <WeightType W>
cudaError_t gather_rows(int64_t rows, int64_t width, int64_t table_rows, const Storage<W> *table,
                        const int32_t *index, float *out, cudaStream_t stream) {
  if (rows <= 0 || width <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(rows * width, 256), 8192);
  detail::gather_rows_kernel<W><<<blocks, 256, 0, stream>>>(rows, width, table_rows, table, index, out);
  return cudaGetLastError();
}

/// Hugging Face RMSNorm (LlamaRMSNorm) in f32 over rows of `width`:
/// y = weight · (x / sqrt(mean(x²) + epsilon)).
template <WeightType W>
cudaError_t rms_norm_rows(int64_t rows, int64_t width, float epsilon, const float *x,
                          const Storage<W> *weight, float *y, cudaStream_t stream) {
  if (rows <= 0 || width <= 0)
    return cudaSuccess;
  if ((rows + 7) / 8 > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  detail::rms_norm_kernel<W><<<detail::blocks_for(rows, 8), 8 * kWarp, 0, stream>>>(
      rows, width, epsilon, x, weight, y);
  return cudaGetLastError();
}

/// y = a + b over n floats (the residual add); y may alias a or b.
inline cudaError_t add_rows(int64_t n, const float *a, const float *b, float *y, cudaStream_t stream) {
  if (n <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(n, 256), 8192);
  detail::add_kernel<<<blocks, 256, 0, stream>>>(n, a, b, y);
  return cudaGetLastError();
}

/// The largest head_dim `attention` takes: 16 dims per lane of the warp that owns a head.
/// mixtilec's cuda target checks the same bound (codegen/cuda/EmitCuda.cpp).
constexpr int kAttentionMaxHeadDim = 512;

/// The layer's constants, passed by value as a kernel parameter (inv_freq included, 2 KiB:
/// under the 4 KiB every CUDA version allows), so nothing is copied to the device first.
struct AttentionConfig {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int rotary_dim = 0;            // the leading rotary_dim dims of each q/k head are rotated
  float rope_scale = 1.0f;       // cos and sin are multiplied by it (YaRN's attention factor)
  bool rope_interleaved = false; // false: pairs (i, i + rotary_dim/2) (rotate_half); true: (2i, 2i+1)
  float softmax_scale = 0.0f;    // scores = q·k · softmax_scale
  float clip = 0.0f;             // > 0: q, k and v clamped to [-clip, clip] first (OLMoE clip_qkv)
  int64_t window = 0;            // > 0: position p sees keys at positions > p - window; 0: all
  // Angle of pair i at position p: p · inv_freq[i], in f64 (the frequencies as the compiler
  // computed them, not rounded to f32: at p = 1e5 that rounding alone moves an angle ~3e-3 rad).
  double inv_freq[kAttentionMaxHeadDim / 2] = {};
};

namespace detail {

__device__ __forceinline__ float clamp_abs(float x, float clip) {
  if (clip > 0.0f)
    return x < -clip ? -clip : (x > clip ? clip : x);  // NaN passes through
  return x;
}

/// Element d of one q or k head, clamped and rotated with the token's cos (rope[0, pairs)) and
/// sin (rope[pairs, 2·pairs)), already scaled by rope_scale; dims past the rotary ones pass.
__device__ __forceinline__ float rotate_element(const float *x, int d, int pairs, const float *rope,
                                                bool interleaved, float clip) {
  if (d >= 2 * pairs)
    return clamp_abs(x[d], clip);
  const int i = interleaved ? d / 2 : (d < pairs ? d : d - pairs);
  const bool first = interleaved ? d % 2 == 0 : d < pairs;
  const float a = clamp_abs(x[interleaved ? 2 * i : i], clip);
  const float b = clamp_abs(x[interleaved ? 2 * i + 1 : i + pairs], clip);
  const float cosine = rope[i], sine = rope[pairs + i];
  return first ? a * cosine - b * sine : b * cosine + a * sine;
}

__device__ __forceinline__ bool in_cache(int32_t position, int32_t sequence, int64_t cache_rows,
                                         int64_t cache_length) {
  return position >= 0 && position < cache_length && sequence >= 0 && sequence < cache_rows;
}

/// Phase 1, one block per token: cos/sin of its position in f64 (positions reach 1e5 and more,
/// where an f32 angle is off by ~1e-2 rad), the rotated, scaled queries into rotated_q, and the
/// rotated key and the value of each kv head into the caches (rounded to their dtype).
template <WeightType C>
__global__ void attention_write_kernel(AttentionConfig c, const float *q, const float *k,
                                       const float *v, const int32_t *positions,
                                       const int32_t *sequences, int64_t cache_rows,
                                       int64_t cache_length, Storage<C> *k_cache,
                                       Storage<C> *v_cache, float *rotated_q) {
  extern __shared__ float rope[];  // [cos pairs, sin pairs]
  const int64_t t = blockIdx.x;
  const int pairs = c.rotary_dim / 2, dim = c.head_dim;
  const int32_t position = positions[t], sequence = sequences[t];
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    double sine, cosine;
    sincos(static_cast<double>(position) * c.inv_freq[i], &sine, &cosine);
    rope[i] = static_cast<float>(cosine * static_cast<double>(c.rope_scale));
    rope[pairs + i] = static_cast<float>(sine * static_cast<double>(c.rope_scale));
  }
  __syncthreads();
  const int64_t q_width = static_cast<int64_t>(c.heads) * dim;
  for (int64_t i = threadIdx.x; i < q_width; i += blockDim.x)
    rotated_q[t * q_width + i] =
        rotate_element(q + t * q_width + (i / dim) * dim, static_cast<int>(i % dim), pairs, rope,
                       c.rope_interleaved, c.clip) *
        c.softmax_scale;
  if (!in_cache(position, sequence, cache_rows, cache_length))
    return;  // the token writes nothing; phase 2 gives it zeros
  const int64_t ld = static_cast<int64_t>(c.kv_heads) * dim;  // between positions in a cache
  const int64_t at = (static_cast<int64_t>(sequence) * cache_length + position) * ld;
  for (int64_t i = threadIdx.x; i < ld; i += blockDim.x) {
    k_cache[at + i] = to_storage<C>(rotate_element(k + t * ld + (i / dim) * dim,
                                                   static_cast<int>(i % dim), pairs, rope,
                                                   c.rope_interleaved, c.clip));
    v_cache[at + i] = to_storage<C>(clamp_abs(v[t * ld + i], c.clip));
  }
}

/// Phase 2, one warp per (token, head), the heads of a token in consecutive warps (those of
/// one kv head read the same cache rows, through L1). Lane l owns dims l, l + 32, ... (up to
/// PER_LANE of them). Keys come in chunks of 32: a score per key (a warp sum), lane j keeping
/// key j's, then one online-softmax step per chunk (Milakov & Gimelshein, 2018) and the
/// weighted values, p_j broadcast from lane j. All in f32.
template <WeightType C, int PER_LANE>
__global__ void attention_attend_kernel(AttentionConfig c, int64_t tokens, const float *rotated_q,
                                        const int32_t *positions, const int32_t *sequences,
                                        int64_t cache_rows, int64_t cache_length,
                                        const Storage<C> *k_cache, const Storage<C> *v_cache,
                                        float *out) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (item >= tokens * c.heads)
    return;  // the whole warp
  const int64_t t = item / c.heads;
  const int h = static_cast<int>(item % c.heads), lane = lane_id(), dim = c.head_dim;
  float *o = out + item * dim;
  const int32_t position = positions[t], sequence = sequences[t];
  if (!in_cache(position, sequence, cache_rows, cache_length)) {
    for (int d = lane; d < dim; d += kWarp)
      o[d] = 0.0f;
    return;
  }
  const int64_t ld = static_cast<int64_t>(c.kv_heads) * dim;
  const int64_t base = static_cast<int64_t>(sequence) * cache_length * ld +
                       static_cast<int64_t>(h / (c.heads / c.kv_heads)) * dim;
  const Storage<C> *keys = k_cache + base, *values = v_cache + base;
  float query[PER_LANE], acc[PER_LANE];
#pragma unroll
  for (int i = 0; i < PER_LANE; ++i) {
    const int d = lane + i * kWarp;
    query[i] = d < dim ? rotated_q[item * dim + d] : 0.0f;
    acc[i] = 0.0f;
  }
  const int64_t lo = c.window > 0 ? max(int64_t(0), position - c.window + 1) : int64_t(0);
  const int64_t hi = position;
  float m = -INFINITY, sum = 0.0f;
  for (int64_t j0 = lo; j0 <= hi; j0 += kWarp) {
    const int n = static_cast<int>(min(int64_t(kWarp), hi - j0 + 1));
    float score = -INFINITY;  // key j0 + lane's
    for (int j = 0; j < n; ++j) {
      const Storage<C> *key = keys + (j0 + j) * ld;
      float partial = 0.0f;
#pragma unroll
      for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + i * kWarp;
        if (d < dim)
          partial += query[i] * load_weight<C>(key, d);
      }
      partial = warp_sum(partial);
      if (lane == j)
        score = partial;
    }
    // The max ignores NaN; a NaN score still reaches the sum and the output, as on the CPU.
    const float m_new = fmaxf(m, warp_max(score));
    const float shift = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = expf(m - shift);
    const float p = lane < n ? expf(score - shift) : 0.0f;
    sum = sum * alpha + warp_sum(p);
#pragma unroll
    for (int i = 0; i < PER_LANE; ++i)
      acc[i] *= alpha;
    for (int j = 0; j < n; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const Storage<C> *value = values + (j0 + j) * ld;
#pragma unroll
      for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + i * kWarp;
        if (d < dim)
          acc[i] += pj * load_weight<C>(value, d);
      }
    }
    m = m_new;
  }
  const float inv_sum = 1.0f / sum;
#pragma unroll
  for (int i = 0; i < PER_LANE; ++i) {
    const int d = lane + i * kWarp;
    if (d < dim)
      o[d] = acc[i] * inv_sum;
  }
}

inline bool attention_config_valid(const AttentionConfig &c) {
  return c.heads > 0 && c.kv_heads > 0 && c.heads % c.kv_heads == 0 && c.head_dim > 0 &&
         c.head_dim <= kAttentionMaxHeadDim && c.rotary_dim >= 0 && c.rotary_dim % 2 == 0 &&
         c.rotary_dim <= c.head_dim && c.window >= 0;
}

constexpr int kAttentionWarps = 4;  // phase 2: warps (heads) per block

template <WeightType C, int PER_LANE>
cudaError_t launch_attend(const AttentionConfig &c, int64_t tokens, const float *rotated_q,
                          const int32_t *positions, const int32_t *sequences, int64_t cache_rows,
                          int64_t cache_length, const Storage<C> *k_cache,
                          const Storage<C> *v_cache, float *out, cudaStream_t stream) {
  const int64_t blocks = (tokens * c.heads + kAttentionWarps - 1) / kAttentionWarps;
  if (blocks > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  attention_attend_kernel<C, PER_LANE><<<static_cast<unsigned>(blocks), kAttentionWarps * kWarp, 0,
                                         stream>>>(c, tokens, rotated_q, positions, sequences,
                                                   cache_rows, cache_length, k_cache, v_cache, out);
  return cudaGetLastError();
}

} // namespace detail

/// Bytes of workspace `attention` needs: the rotated, scaled queries [tokens, heads·head_dim].
inline size_t attention_workspace_size(const AttentionConfig &c, int64_t tokens) {
  return detail::align256(sizeof(float) * static_cast<size_t>(std::max<int64_t>(tokens, 0)) *
                          static_cast<size_t>(std::max(c.heads, 0)) *
                          static_cast<size_t>(std::max(c.head_dim, 0)));
}

/// Causal self-attention over a KV cache for a batch of tokens from several sequences, as the
/// CPU library's `attention` (codegen/cpu/kernels/model.h): q [tokens, heads·head_dim], k and
/// v [tokens, kv_heads·head_dim] (f32, unrotated); token t at position positions[t] of cache
/// row sequences[t]; caches [cache_rows, cache_length, kv_heads, head_dim] in storage C (f32,
/// or bf16/f16 bits rounded to nearest even). Phase 1 (one launch) writes every token's
/// clamped, rotated k and its clamped v into the caches; phase 2 (a second launch, so it sees
/// them all) attends token t, head h over the keys of its cache row at positions
/// 0..positions[t] (within the window) with kv head h / (heads / kv_heads), read back from the
/// caches, so prefill and decode see the same rounded values; out [tokens, heads·head_dim].
/// RoPE (Su et al., HF semantics): angle p·inv_freq[i] and its cos, sin in f64, the rotation
/// in f32. A token outside the cache writes nothing and gets zeros (see the top of this
/// file); keys no call has written are the caller's, and two tokens of one call at the same
/// (sequence, position) are undefined. An invalid config is cudaErrorInvalidValue.
/// workspace: attention_workspace_size(c, tokens) bytes, 256-byte aligned.
template <WeightType C>
cudaError_t attention(const AttentionConfig &c, int64_t tokens, const float *q, const float *k,
                      const float *v, const int32_t *positions, const int32_t *sequences,
                      int64_t cache_rows, int64_t cache_length, Storage<C> *k_cache,
                      Storage<C> *v_cache, float *out, void *workspace, cudaStream_t stream) {
  if (!detail::attention_config_valid(c))
    return cudaErrorInvalidValue;
  if (tokens <= 0)
    return cudaSuccess;
  if (tokens > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  float *rotated_q = static_cast<float *>(workspace);
  detail::attention_write_kernel<C><<<static_cast<unsigned>(tokens), 128,
                                      sizeof(float) * static_cast<size_t>(c.rotary_dim), stream>>>(
      c, q, k, v, positions, sequences, cache_rows, cache_length, k_cache, v_cache, rotated_q);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    return status;
  const int per_lane = (c.head_dim + kWarp - 1) / kWarp;
  if (per_lane <= 1)
    return detail::launch_attend<C, 1>(c, tokens, rotated_q, positions, sequences, cache_rows,
                                       cache_length, k_cache, v_cache, out, stream);
  if (per_lane <= 2)
    return detail::launch_attend<C, 2>(c, tokens, rotated_q, positions, sequences, cache_rows,
                                       cache_length, k_cache, v_cache, out, stream);
  if (per_lane <= 4)
    return detail::launch_attend<C, 4>(c, tokens, rotated_q, positions, sequences, cache_rows,
                                       cache_length, k_cache, v_cache, out, stream);
  if (per_lane <= 8)
    return detail::launch_attend<C, 8>(c, tokens, rotated_q, positions, sequences, cache_rows,
                                       cache_length, k_cache, v_cache, out, stream);
  return detail::launch_attend<C, 16>(c, tokens, rotated_q, positions, sequences, cache_rows,
                                      cache_length, k_cache, v_cache, out, stream);
}

} // namespace mixtile::cuda
