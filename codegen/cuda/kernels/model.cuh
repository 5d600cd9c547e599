// Dense parts of a decoder-only transformer in the CUDA kernel library: the embedding gather,
// RMSNorm, the residual add, column slices and causal self-attention with rotary embeddings
// over a KV cache (multi-head latent attention's shapes included).
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

__global__ void copy_columns_kernel(int64_t rows, int64_t width, int64_t offset, int64_t count,
                                    const float *x, float *y) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * count;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = x[(i / count) * width + offset + i % count];
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

/// y[r, 0..count) = x[r, offset..offset + count) for each of `rows` rows of `width` floats
/// (mix.slice); y must not overlap x.
inline cudaError_t copy_columns(int64_t rows, int64_t width, int64_t offset, int64_t count,
                                const float *x, float *y, cudaStream_t stream) {
  if (rows <= 0 || count <= 0)
    return cudaSuccess;
  const unsigned blocks = std::min<unsigned>(detail::blocks_for(rows * count, 256), 8192);
  detail::copy_columns_kernel<<<blocks, 256, 0, stream>>>(rows, width, offset, count, x, y);
  return cudaGetLastError();
}

/// The largest head_dim (and v_head_dim) `attention` takes: 16 dims per lane of the warp that
/// owns a head. mixtilec's cuda target checks the same bound (codegen/cuda/EmitCuda.cpp).
constexpr int kAttentionMaxHeadDim = 512;

/// The layer's constants, passed by value as a kernel parameter (inv_freq included, 2 KiB:
/// under the 4 KiB every CUDA version allows), so nothing is copied to the device first.
struct AttentionConfig {
  int heads = 0, kv_heads = 0, head_dim = 0;  // head_dim: of each q and k head
  int v_head_dim = 0;            // of each value head and each head of out; 0: head_dim
  int rotary_dim = 0;            // dims [rope_offset, rope_offset + rotary_dim) of each q/k head
  int rope_offset = 0;           // are rotated; the others pass through
  float rope_scale = 1.0f;       // cos and sin are multiplied by it (YaRN's attention factor)
  bool rope_interleaved = false; // false: pairs (i, i + rotary_dim/2) (rotate_half); true: (2i,
                                 // 2i+1); both counted from rope_offset
  float softmax_scale = 0.0f;    // scores = q·k · softmax_scale
  float clip = 0.0f;             // > 0: q, k and v clamped to [-clip, clip] first (OLMoE clip_qkv)
  int64_t window = 0;            // > 0: position p sees keys at positions > p - window; 0: all
  // Angle of pair i at position p: p · inv_freq[i], in f64 (the frequencies as the compiler
  // computed them, not rounded to f32: at p = 1e5 that rounding alone moves an angle ~3e-3 rad).
  double inv_freq[kAttentionMaxHeadDim / 2] = {};
  // [heads] on the device or null: one more logit per head in the softmax, its probability
  // dropped (gpt-oss's sinks).
  const float *sinks = nullptr;
};

namespace detail {

__device__ __forceinline__ float clamp_abs(float x, float clip) {
  if (clip > 0.0f)
    return x < -clip ? -clip : (x > clip ? clip : x);  // NaN passes through
  return x;
}

__host__ __device__ __forceinline__ int value_head_dim(const AttentionConfig &c) {
  return c.v_head_dim > 0 ? c.v_head_dim : c.head_dim;
}

/// Element r < 2·pairs of the rotary dims x[0, 2·pairs), clamped and rotated with the token's
/// cos (rope[0, pairs)) and sin (rope[pairs, 2·pairs)), already scaled by rope_scale.
__device__ __forceinline__ float rotate_rotary(const float *x, int r, int pairs, const float *rope,
                                               bool interleaved, float clip) {
  const int i = interleaved ? r / 2 : (r < pairs ? r : r - pairs);
  const bool first = interleaved ? r % 2 == 0 : r < pairs;
  const float a = clamp_abs(x[interleaved ? 2 * i : i], clip);
  const float b = clamp_abs(x[interleaved ? 2 * i + 1 : i + pairs], clip);
  const float cosine = rope[i], sine = rope[pairs + i];
  return first ? a * cosine - b * sine : b * cosine + a * sine;
}

/// Element d of one q or k head: dims [offset, offset + 2·pairs) rotated, the others clamped.
__device__ __forceinline__ float rotate_element(const float *x, int d, int offset, int pairs,
                                                const float *rope, bool interleaved, float clip) {
  const int r = d - offset;
  if (r < 0 || r >= 2 * pairs)
    return clamp_abs(x[d], clip);
  return rotate_rotary(x + offset, r, pairs, rope, interleaved, clip);
}

__device__ __forceinline__ bool in_cache(int32_t position, int32_t sequence, int64_t cache_rows,
                                         int64_t cache_length) {
  return position >= 0 && position < cache_length && sequence >= 0 && sequence < cache_rows;
}

/// The block's cos and sin of one position (rope[0, pairs) and rope[pairs, 2·pairs)), times
/// rope_scale: f64 angles (positions reach 1e5 and more, where an f32 angle is off by ~1e-2 rad),
/// then a barrier.
__device__ __forceinline__ void token_rope(int32_t position, const double *inv_freq, int pairs,
                                           float rope_scale, float *rope) {
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    double sine, cosine;
    sincos(static_cast<double>(position) * inv_freq[i], &sine, &cosine);
    rope[i] = static_cast<float>(cosine * static_cast<double>(rope_scale));
    rope[pairs + i] = static_cast<float>(sine * static_cast<double>(rope_scale));
  }
  __syncthreads();
}

/// Phase 1, one block per token: cos/sin of its position in f64 (positions reach 1e5 and more,
/// where an f32 angle is off by ~1e-2 rad), the rotated, scaled queries into rotated_q, and the
/// rotated key and the value of each kv head into the caches (rounded to their dtype). With a
/// shared rope_key, each kv head's key is its k part followed by the rotated rope_key.
template <WeightType C>
__global__ void attention_write_kernel(AttentionConfig c, const float *q, const float *k,
                                       const float *v, const float *rope_key,
                                       const int32_t *positions, const int32_t *sequences,
                                       int64_t cache_rows, int64_t cache_length,
                                       Storage<C> *k_cache, Storage<C> *v_cache, float *rotated_q) {
  extern __shared__ float rope[];  // [cos pairs, sin pairs]
  const int64_t t = blockIdx.x;
  const int pairs = c.rotary_dim / 2, dim = c.head_dim, offset = c.rope_offset;
  const int value_dim = value_head_dim(c);
  const int32_t position = positions[t], sequence = sequences[t];
  token_rope(position, c.inv_freq, pairs, c.rope_scale, rope);
  const int64_t q_width = static_cast<int64_t>(c.heads) * dim;
  for (int64_t i = threadIdx.x; i < q_width; i += blockDim.x)
    rotated_q[t * q_width + i] =
        rotate_element(q + t * q_width + (i / dim) * dim, static_cast<int>(i % dim), offset,
                       pairs, rope, c.rope_interleaved, c.clip) *
        c.softmax_scale;
  if (!in_cache(position, sequence, cache_rows, cache_length))
    return;  // the token writes nothing; phase 2 gives it zeros
  // Row strides: between positions in the caches, and between tokens in k (whose heads hold
  // only their leading rope_offset dims when the rotary key is the shared rope_key).
  const int64_t key_ld = static_cast<int64_t>(c.kv_heads) * dim;
  const int64_t value_ld = static_cast<int64_t>(c.kv_heads) * value_dim;
  const int key_width = rope_key ? offset : dim;
  const int64_t k_ld = static_cast<int64_t>(c.kv_heads) * key_width;
  const int64_t row = static_cast<int64_t>(sequence) * cache_length + position;
  for (int64_t i = threadIdx.x; i < key_ld; i += blockDim.x) {
    const int64_t h = i / dim;
    const int d = static_cast<int>(i % dim);
    const float *head = k + t * k_ld + h * key_width;
    float key;
    if (!rope_key)
      key = rotate_element(head, d, offset, pairs, rope, c.rope_interleaved, c.clip);
    else if (d < offset)
      key = clamp_abs(head[d], c.clip);
    else
      key = rotate_rotary(rope_key + t * c.rotary_dim, d - offset, pairs, rope,
                          c.rope_interleaved, c.clip);
    k_cache[row * key_ld + i] = to_storage<C>(key);
  }
  for (int64_t i = threadIdx.x; i < value_ld; i += blockDim.x)
    v_cache[row * value_ld + i] = to_storage<C>(clamp_abs(v[t * value_ld + i], c.clip));
}

/// Phase 2, one warp per (token, head), the heads of a token in consecutive warps (those of
/// one kv head read the same cache rows, through L1). Cache rows lie key_ld (value_ld) apart:
/// kv_heads·head_dim (kv_heads·v_head_dim) for attention; latent_attention's values are the
/// leading dims of its keys. Lane l owns dims l, l + 32, ... (up to
/// PER_LANE of them, enough for head_dim and for v_head_dim). Keys come in chunks of 32: a
/// score per key (a warp sum), lane j keeping key j's, then one online-softmax step per chunk
/// (Milakov & Gimelshein, 2018) and the weighted values, p_j broadcast from lane j. All in f32.
template <WeightType C, int PER_LANE>
__global__ void attention_attend_kernel(AttentionConfig c, int64_t tokens, const float *rotated_q,
                                        const int32_t *positions, const int32_t *sequences,
                                        int64_t cache_rows, int64_t cache_length,
                                        const Storage<C> *k_cache, const Storage<C> *v_cache,
                                        int64_t key_ld, int64_t value_ld, float *out) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp;
  if (item >= tokens * c.heads)
    return;  // the whole warp
  const int64_t t = item / c.heads;
  const int h = static_cast<int>(item % c.heads), lane = lane_id(), dim = c.head_dim;
  const int value_dim = value_head_dim(c);
  float *o = out + item * value_dim;
  const int32_t position = positions[t], sequence = sequences[t];
  if (!in_cache(position, sequence, cache_rows, cache_length)) {
    for (int d = lane; d < value_dim; d += kWarp)
      o[d] = 0.0f;
    return;
  }
  const int64_t kv_head = h / (c.heads / c.kv_heads);
  const Storage<C> *keys = k_cache + sequence * cache_length * key_ld + kv_head * dim;
  const Storage<C> *values = v_cache + sequence * cache_length * value_ld + kv_head * value_dim;
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
      const Storage<C> *key = keys + (j0 + j) * key_ld;
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
      const Storage<C> *value = values + (j0 + j) * value_ld;
#pragma unroll
      for (int i = 0; i < PER_LANE; ++i) {
        const int d = lane + i * kWarp;
        if (d < value_dim)
          acc[i] += pj * load_weight<C>(value, d);
      }
    }
    m = m_new;
  }
  // The sink logit counts in the denominator only.
  if (c.sinks)
    sum += expf(c.sinks[h] - m);
  const float inv_sum = 1.0f / sum;
#pragma unroll
  for (int i = 0; i < PER_LANE; ++i) {
    const int d = lane + i * kWarp;
    if (d < value_dim)
      o[d] = acc[i] * inv_sum;
  }
}

/// has_rope_key: the keys' rotary dims come from a shared rope_key, so they must be the last.
inline bool attention_config_valid(const AttentionConfig &c, bool has_rope_key) {
  const bool shapes = c.heads > 0 && c.kv_heads > 0 && c.heads % c.kv_heads == 0 &&
                      c.head_dim > 0 && c.head_dim <= kAttentionMaxHeadDim && c.v_head_dim >= 0 &&
                      value_head_dim(c) <= kAttentionMaxHeadDim && c.window >= 0;
  const bool rotary = c.rotary_dim >= 0 && c.rotary_dim % 2 == 0 && c.rope_offset >= 0 &&
                      c.rotary_dim <= c.head_dim - c.rope_offset;
  const bool shared_key =
      !has_rope_key || (c.rotary_dim > 0 && c.rotary_dim == c.head_dim - c.rope_offset);
  return shapes && rotary && shared_key;
}

constexpr int kAttentionWarps = 4;  // phase 2: warps (heads) per block

template <WeightType C, int PER_LANE>
cudaError_t launch_attend(const AttentionConfig &c, int64_t tokens, const float *rotated_q,
                          const int32_t *positions, const int32_t *sequences, int64_t cache_rows,
                          int64_t cache_length, const Storage<C> *k_cache,
                          const Storage<C> *v_cache, int64_t key_ld, int64_t value_ld, float *out,
                          cudaStream_t stream) {
  const int64_t blocks = (tokens * c.heads + kAttentionWarps - 1) / kAttentionWarps;
  if (blocks > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  attention_attend_kernel<C, PER_LANE><<<static_cast<unsigned>(blocks), kAttentionWarps * kWarp, 0,
                                         stream>>>(c, tokens, rotated_q, positions, sequences,
                                                   cache_rows, cache_length, k_cache, v_cache,
                                                   key_ld, value_ld, out);
  return cudaGetLastError();
}

/// Phase 2 for head and value widths up to 32·24 dims: the narrowest PER_LANE that holds them.
template <WeightType C>
cudaError_t attend(const AttentionConfig &c, int64_t tokens, const float *rotated_q,
                   const int32_t *positions, const int32_t *sequences, int64_t cache_rows,
                   int64_t cache_length, const Storage<C> *k_cache, const Storage<C> *v_cache,
                   int64_t key_ld, int64_t value_ld, float *out, cudaStream_t stream) {
  const int per_lane = (std::max(c.head_dim, value_head_dim(c)) + kWarp - 1) / kWarp;
#define MIXTILE_ATTEND(N)                                                                           \
  if (per_lane <= N)                                                                                \
    return launch_attend<C, N>(c, tokens, rotated_q, positions, sequences, cache_rows, cache_length, \
                               k_cache, v_cache, key_ld, value_ld, out, stream);
  MIXTILE_ATTEND(1)
  MIXTILE_ATTEND(2)
  MIXTILE_ATTEND(4)
  MIXTILE_ATTEND(8)
  MIXTILE_ATTEND(16)
  MIXTILE_ATTEND(24)
#undef MIXTILE_ATTEND
  return cudaErrorInvalidValue;
}

} // namespace detail

/// Bytes of workspace `attention` needs: the rotated, scaled queries [tokens, heads·head_dim]
/// (head_dim, not v_head_dim: queries meet keys).
inline size_t attention_workspace_size(const AttentionConfig &c, int64_t tokens) {
  if (!detail::workspace_product_fits({tokens, c.heads, c.head_dim})) return detail::kWorkspaceOverflow;
  return detail::align256(sizeof(float) * static_cast<size_t>(std::max<int64_t>(tokens, 0)) *
                          static_cast<size_t>(std::max(c.heads, 0)) *
                          static_cast<size_t>(std::max(c.head_dim, 0)));
}

/// Causal self-attention over a KV cache for a batch of tokens from several sequences, as the
/// CPU library's `attention` (codegen/cpu/kernels/model.h): q [tokens, heads·head_dim], k
/// [tokens, kv_heads·head_dim] and v [tokens, kv_heads·v_head_dim] (f32, unrotated); token t
/// at position positions[t] of cache row sequences[t]; k_cache [cache_rows, cache_length,
/// kv_heads, head_dim] and v_cache [.., kv_heads, v_head_dim] in storage C (f32, or bf16/f16
/// bits rounded to nearest even). Phase 1 (one launch) writes every token's clamped, rotated k
/// and its clamped v into the caches; phase 2 (a second launch, so it sees them all) attends
/// token t, head h over the keys of its cache row at positions 0..positions[t] (within the
/// window) with kv head h / (heads / kv_heads), read back from the caches, so prefill and
/// decode see the same rounded values; out [tokens, heads·v_head_dim].
/// RoPE (Su et al., HF semantics): angle p·inv_freq[i] and its cos, sin in f64, the rotation
/// in f32, over dims [rope_offset, rope_offset + rotary_dim) of each q/k head.
/// Multi-head latent attention (DeepSeek-V2/V3) shares one rotary key among the kv heads:
/// with rope_key [tokens, rotary_dim] (nullptr: none), k is [tokens, kv_heads·rope_offset],
/// each head's leading dims, rope_offset + rotary_dim must be head_dim, and each kv head's
/// cached key is its k part followed by the clamped, rotated rope_key.
/// A token outside the cache writes nothing and gets zeros (see the top of this file); keys no
/// call has written are the caller's, and two tokens of one call at the same (sequence,
/// position) are undefined. An invalid config is cudaErrorInvalidValue.
/// workspace: attention_workspace_size(c, tokens) bytes, 256-byte aligned.
template <WeightType C>
cudaError_t attention(const AttentionConfig &c, int64_t tokens, const float *q, const float *k,
                      const float *v, const float *rope_key, const int32_t *positions,
                      const int32_t *sequences, int64_t cache_rows, int64_t cache_length,
                      Storage<C> *k_cache, Storage<C> *v_cache, float *out, void *workspace,
                      cudaStream_t stream) {
  if (!detail::attention_config_valid(c, rope_key != nullptr))
    return cudaErrorInvalidValue;
  if (tokens <= 0)
    return cudaSuccess;
  if (tokens > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  float *rotated_q = static_cast<float *>(workspace);
  detail::attention_write_kernel<C><<<static_cast<unsigned>(tokens), 128,
                                      sizeof(float) * static_cast<size_t>(c.rotary_dim), stream>>>(
      c, q, k, v, rope_key, positions, sequences, cache_rows, cache_length, k_cache, v_cache,
      rotated_q);
  const cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    return status;
  return detail::attend<C>(c, tokens, rotated_q, positions, sequences, cache_rows, cache_length,
                           k_cache, v_cache, static_cast<int64_t>(c.kv_heads) * c.head_dim,
                           static_cast<int64_t>(c.kv_heads) * detail::value_head_dim(c), out,
                           stream);
}


/// The largest rank + rope_dim `latent_attention` takes (24 dims per lane of a head's warp);
/// mixtilec's cuda target checks the same bound. DeepSeek-V2/V3: 512 + 64.
constexpr int kLatentAttentionMaxEntry = 768;

/// Multi-head latent attention's constants (mix.latent_attention), by value as a kernel parameter.
struct LatentAttentionConfig {
  int heads = 0, rank = 0, nope_dim = 0, rope_dim = 0, v_head_dim = 0;
  float rope_scale = 1.0f;
  bool rope_interleaved = false;
  float softmax_scale = 0.0f;
  int64_t window = 0;
  double inv_freq[kAttentionMaxHeadDim / 2] = {};
};

namespace detail {

/// One block per token: cos/sin of its position (f64 angles), its cache entry (the latent, then
/// the rotated rope_key, rounded to C) and its queries' rotated, scaled rotary tails into q_full
/// [tokens, heads, rank + rope_dim] at offset rank.
template <WeightType C>
__global__ void latent_write_kernel(LatentAttentionConfig c, const float *q, const float *latent,
                                    const float *rope_key, const int32_t *positions,
                                    const int32_t *sequences, int64_t cache_rows,
                                    int64_t cache_length, Storage<C> *cache, float *q_full) {
  extern __shared__ float rope[];  // [cos pairs, sin pairs]
  const int64_t t = blockIdx.x;
  const int pairs = c.rope_dim / 2, entry = c.rank + c.rope_dim, qdim = c.nope_dim + c.rope_dim;
  const int32_t position = positions[t], sequence = sequences[t];
  token_rope(position, c.inv_freq, pairs, c.rope_scale, rope);
  for (int64_t i = threadIdx.x; i < static_cast<int64_t>(c.heads) * c.rope_dim; i += blockDim.x) {
    const int64_t h = i / c.rope_dim;
    const int d = static_cast<int>(i % c.rope_dim);
    q_full[(t * c.heads + h) * entry + c.rank + d] =
        rotate_rotary(q + (t * c.heads + h) * qdim + c.nope_dim, d, pairs, rope,
                      c.rope_interleaved, 0.0f) *
        c.softmax_scale;
  }
  if (!in_cache(position, sequence, cache_rows, cache_length))
    return;  // the token writes nothing; it attends to nothing and gets zeros
  Storage<C> *dst = cache + (static_cast<int64_t>(sequence) * cache_length + position) * entry;
  for (int i = threadIdx.x; i < c.rank; i += blockDim.x)
    dst[i] = to_storage<C>(latent[t * c.rank + i]);
  for (int d = threadIdx.x; d < c.rope_dim; d += blockDim.x)
    dst[c.rank + d] =
        to_storage<C>(rotate_rotary(rope_key + t * c.rope_dim, d, pairs, rope, c.rope_interleaved, 0.0f));
}

/// One block per (token, head): the query folded into latent space, q_nope · W_k[h] (rank wide,
/// scaled), into q_full's leading dims; threads over the latent dims (coalesced kv_b rows).
template <WeightType C>
__global__ void latent_fold_kernel(LatentAttentionConfig c, int64_t tokens, const float *q,
                                   const Storage<C> *kv_b, float *q_full) {
  const int64_t item = blockIdx.x;  // t * heads + h
  const int64_t h = item % c.heads;
  const int qdim = c.nope_dim + c.rope_dim, entry = c.rank + c.rope_dim;
  const float *qn = q + item * qdim;
  const Storage<C> *wk = kv_b + h * (c.nope_dim + c.v_head_dim) * static_cast<int64_t>(c.rank);
  for (int e = threadIdx.x; e < c.rank; e += blockDim.x) {
    float acc = 0.0f;
    for (int i = 0; i < c.nope_dim; ++i)
      acc += qn[i] * load_weight<C>(wk, static_cast<int64_t>(i) * c.rank + e);
    q_full[item * entry + e] = acc * c.softmax_scale;
  }
}

/// One block per (token, head), a warp per output dim: out = W_v[h] · o_latent.
template <WeightType C>
__global__ void latent_unfold_kernel(LatentAttentionConfig c, const float *o_latent,
                                     const Storage<C> *kv_b, float *out) {
  const int64_t item = blockIdx.x;
  const int64_t h = item % c.heads;
  const int lane = lane_id(), warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  const float *o = o_latent + item * c.rank;
  const Storage<C> *wv =
      kv_b + (h * (c.nope_dim + c.v_head_dim) + c.nope_dim) * static_cast<int64_t>(c.rank);
  for (int j = warp; j < c.v_head_dim; j += warps) {
    float acc = 0.0f;
    for (int e = lane; e < c.rank; e += kWarp)
      acc += o[e] * load_weight<C>(wv, static_cast<int64_t>(j) * c.rank + e);
    acc = warp_sum(acc);
    if (lane == 0)
      out[item * c.v_head_dim + j] = acc;
  }
}

inline bool latent_attention_config_valid(const LatentAttentionConfig &c) {
  return c.heads > 0 && c.rank > 0 && c.nope_dim > 0 && c.rope_dim > 0 && c.rope_dim % 2 == 0 &&
         c.rope_dim / 2 <= kAttentionMaxHeadDim / 2 && c.v_head_dim > 0 &&
         c.rank + c.rope_dim <= kLatentAttentionMaxEntry && c.window >= 0;
}

} // namespace detail

/// Bytes of workspace `latent_attention` needs: the queries in latent space [tokens, heads,
/// rank + rope_dim] and the outputs in latent space [tokens, heads, rank].
inline size_t latent_attention_workspace_size(const LatentAttentionConfig &c, int64_t tokens) {
  if (!detail::workspace_product_fits({tokens, c.heads, c.rank + c.rope_dim}))
    return detail::kWorkspaceOverflow;
  const size_t items = static_cast<size_t>(std::max<int64_t>(tokens, 0)) *
                       static_cast<size_t>(std::max(c.heads, 0));
  return detail::align256(sizeof(float) * items * static_cast<size_t>(std::max(c.rank + c.rope_dim, 0))) +
         detail::align256(sizeof(float) * items * static_cast<size_t>(std::max(c.rank, 0)));
}

/// Multi-head latent attention over a cache of latents, as the CPU library's
/// `latent_attention` (codegen/cpu/kernels/model.h): q [tokens, heads·(nope_dim + rope_dim)],
/// latent [tokens, rank], rope_key [tokens, rope_dim] (f32); kv_b [heads·(nope_dim +
/// v_head_dim), rank] and cache [cache_rows, cache_length, rank + rope_dim] in storage C; out
/// [tokens, heads·v_head_dim]. Every token folds W_k[h] into its query, attends over the cache
/// entries (keys rank + rope_dim wide, values their leading rank dims: one warp per (token,
/// head), attention's phase 2) and unfolds the output with W_v[h]. A token outside the cache
/// writes nothing and gets zeros. An invalid config is cudaErrorInvalidValue.
/// workspace: latent_attention_workspace_size(c, tokens) bytes, 256-byte aligned.
template <WeightType C>
cudaError_t latent_attention(const LatentAttentionConfig &c, int64_t tokens, const float *q,
                             const float *latent, const float *rope_key, const Storage<C> *kv_b,
                             const int32_t *positions, const int32_t *sequences,
                             int64_t cache_rows, int64_t cache_length, Storage<C> *cache,
                             float *out, void *workspace, cudaStream_t stream) {
  if (!detail::latent_attention_config_valid(c))
    return cudaErrorInvalidValue;
  if (tokens <= 0)
    return cudaSuccess;
  if (tokens * c.heads > 0x7fffffff)
    return cudaErrorInvalidConfiguration;
  const int entry = c.rank + c.rope_dim;
  const int64_t items = tokens * c.heads;
  float *q_full = static_cast<float *>(workspace);
  float *o_latent = reinterpret_cast<float *>(
      static_cast<char *>(workspace) + detail::align256(sizeof(float) * static_cast<size_t>(items) * entry));
  detail::latent_write_kernel<C><<<static_cast<unsigned>(tokens), 128,
                                   sizeof(float) * static_cast<size_t>(c.rope_dim), stream>>>(
      c, q, latent, rope_key, positions, sequences, cache_rows, cache_length, cache, q_full);
  cudaError_t status = cudaGetLastError();
  if (status != cudaSuccess)
    return status;
  detail::latent_fold_kernel<C><<<static_cast<unsigned>(items), 128, 0, stream>>>(c, tokens, q, kv_b,
                                                                                 q_full);
  status = cudaGetLastError();
  if (status != cudaSuccess)
    return status;
  // The cache entries as one kv head: keys rank + rope_dim wide, values their first rank dims.
  AttentionConfig a;
  a.heads = c.heads;
  a.kv_heads = 1;
  a.head_dim = entry;
  a.v_head_dim = c.rank;
  a.window = c.window;
  status = detail::attend<C>(a, tokens, q_full, positions, sequences, cache_rows, cache_length,
                             cache, cache, entry, entry, o_latent, stream);
  if (status != cudaSuccess)
    return status;
  detail::latent_unfold_kernel<C><<<static_cast<unsigned>(items), 128, 0, stream>>>(c, o_latent,
                                                                                   kv_b, out);
  return cudaGetLastError();
}

} // namespace mixtile::cuda
