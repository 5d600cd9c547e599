// Routing kernels of the CUDA kernel library: the fused token-choice router (one warp per
// token), capacity drops, dispatch into expert segments, expert-choice selection and the dense
// soft router. Everything is computed and consumed on the device: segment counts never reach
// the host, so a whole layer can be captured in a CUDA graph.
// Math: shared/spec/layers.md §1, §2, §4, §5, §7. Routing is computed in f32.
#pragma once

#include "common.cuh"

namespace mixtile::cuda {

struct RouteConfig {
  int64_t experts = 0, hidden = 0, k = 1;
  bool sigmoid = false;     // scores = sigmoid(logits), else softmax over experts
  bool normalize = false;   // w /= (Σw + norm_epsilon)
  float norm_epsilon = 0.0f;
  float scale = 1.0f;       // routed_scaling_factor
  int64_t n_group = 1, topk_group = 1;
  bool group_top2_sum = false;  // group score: sum of its 2 best (DeepSeek-V3), else max (V2)
};

namespace detail {

/// logits[e] = x · router[e] (+ bias[e]) for one token, computed by one warp: each lane
/// takes a strided slice of D, four experts per pass so every x element loaded serves four
/// dot products. Results go to `out` (per-warp shared memory) and, if given, `global_out`.
template <WeightType W>
__device__ void warp_router_logits(const float *__restrict__ x, const Storage<W> *__restrict__ router,
                                   ExpertVector bias, int64_t experts, int64_t hidden, float *out,
                                   float *global_out) {
  const int lane = lane_id();
  int64_t e = 0;
  for (; e + 4 <= experts; e += 4) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    const Storage<W> *w = router + e * hidden;
    for (int64_t i = lane; i < hidden; i += kWarp) {
      const float xi = x[i];
      a0 += xi * load_weight<W>(w, i);
      a1 += xi * load_weight<W>(w, hidden + i);
      a2 += xi * load_weight<W>(w, 2 * hidden + i);
      a3 += xi * load_weight<W>(w, 3 * hidden + i);
    }
    a0 = warp_sum(a0);
    a1 = warp_sum(a1);
    a2 = warp_sum(a2);
    a3 = warp_sum(a3);
    if (lane < 4) {
      float v = lane == 0 ? a0 : lane == 1 ? a1 : lane == 2 ? a2 : a3;
      if (bias.data)
        v += bias.at(e + lane);
      out[e + lane] = v;
      if (global_out)
        global_out[e + lane] = v;
    }
  }
  for (; e < experts; ++e) {
    float a = 0.0f;
    const Storage<W> *w = router + e * hidden;
    for (int64_t i = lane; i < hidden; i += kWarp)
      a += x[i] * load_weight<W>(w, i);
    a = warp_sum(a);
    if (lane == 0) {
      if (bias.data)
        a += bias.at(e);
      out[e] = a;
      if (global_out)
        global_out[e] = a;
    }
  }
  __syncwarp();
}

/// out = softmax(in · inverse_temperature) over n values, by one warp. The max ignores NaN
/// and falls back to 0 when not finite, so NaN propagates instead of 0/0 appearing silently
/// (the CPU target's rule).
__device__ inline void warp_softmax(const float *in, float *out, int64_t n, float inverse_temperature) {
  const int lane = lane_id();
  float m = -INFINITY;
  for (int64_t i = lane; i < n; i += kWarp)
    m = fmaxf(m, in[i] * inverse_temperature);
  m = warp_max(m);
  if (!isfinite(m))
    m = 0.0f;
  float sum = 0.0f;
  for (int64_t i = lane; i < n; i += kWarp) {
    const float v = expf(in[i] * inverse_temperature - m);
    out[i] = v;
    sum += v;
  }
  sum = warp_sum(sum);
  for (int64_t i = lane; i < n; i += kWarp)
    out[i] = out[i] / sum;
  __syncwarp();
}

/// Index of the largest value among those not yet taken, by one warp, with the sequential
/// rule of the CPU target (torch.topk's first occurrence): the first untaken value is the
/// candidate and only a strictly larger one replaces it. So a NaN first untaken value wins,
/// otherwise NaN never does, and ties go to the lower index. Every lane gets the answer.
__device__ inline int warp_argmax_untaken(const float *v, const uint8_t *taken, int n) {
  const int lane = lane_id();
  int first = n, best = -1;
  float best_value = 0.0f;
  for (int i = lane; i < n; i += kWarp) {
    if (taken[i])
      continue;
    first = min(first, i);
    const float x = v[i];
    if (x != x)
      continue;
    if (best < 0 || x > best_value) {
      best = i;
      best_value = x;
    }
  }
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    first = min(first, __shfl_xor_sync(0xffffffffu, first, offset));
    const int other = __shfl_xor_sync(0xffffffffu, best, offset);
    const float other_value = __shfl_xor_sync(0xffffffffu, best_value, offset);
    const bool take = other >= 0 && (best < 0 || other_value > best_value ||
                                     (other_value == best_value && other < best));
    if (take) {
      best = other;
      best_value = other_value;
    }
  }
  if (first < n && v[first] != v[first])
    return first;
  return best;
}

/// Per-warp shared memory of the router: scores[E], choice[E], group scores[G], then
/// taken flags for experts and groups.
__host__ __device__ inline size_t route_warp_bytes(int64_t experts, int64_t groups) {
  const size_t floats = sizeof(float) * static_cast<size_t>(2 * experts + groups);
  return (floats + static_cast<size_t>(experts + groups) + 15) & ~size_t(15);
}

template <WeightType W>
__global__ void route_kernel(RouteConfig c, int64_t tokens, const float *__restrict__ x,
                             const Storage<W> *__restrict__ router, ExpertVector router_bias,
                             ExpertVector selection_bias, float *__restrict__ weights,
                             int32_t *__restrict__ experts, float *__restrict__ logits) {
  extern __shared__ __align__(16) unsigned char route_shared[];
  const int warp = threadIdx.x / kWarp, lane = lane_id();
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp;
  if (t >= tokens)
    return;
  const int E = static_cast<int>(c.experts), G = static_cast<int>(c.n_group);
  unsigned char *mine = route_shared + warp * route_warp_bytes(E, G);
  float *scores = reinterpret_cast<float *>(mine);
  float *choice = scores + E;
  float *group_scores = choice + E;
  uint8_t *taken = reinterpret_cast<uint8_t *>(group_scores + G);
  uint8_t *group_taken = taken + E;

  float *row_logits = logits + t * E;
  warp_router_logits<W>(x + t * c.hidden, router, router_bias, E, c.hidden, scores, row_logits);
  if (c.sigmoid) {
    for (int e = lane; e < E; e += kWarp)
      scores[e] = 1.0f / (1.0f + expf(-scores[e]));
    __syncwarp();
  } else {
    warp_softmax(scores, scores, E, 1.0f);
  }
  for (int e = lane; e < E; e += kWarp) {
    choice[e] = scores[e] + (selection_bias.data ? selection_bias.at(e) : 0.0f);
    taken[e] = 0;
  }
  __syncwarp();

  if (G > 1) {
    // Keep the topk_group best groups; experts of the others are masked to -inf, as
    // transformers and DeepSeek's own inference code do (never chosen: k fits the kept groups).
    const int width = E / G;
    for (int g = lane; g < G; g += kWarp) {
      float first = -INFINITY, second = -INFINITY;
      for (int i = 0; i < width; ++i) {
        const float v = choice[g * width + i];
        if (v > first) {
          second = first;
          first = v;
        } else if (v > second) {
          second = v;
        }
      }
      group_scores[g] = c.group_top2_sum ? first + second : first;
      group_taken[g] = 0;
    }
    __syncwarp();
    for (int j = 0; j < c.topk_group; ++j) {
      const int g = warp_argmax_untaken(group_scores, group_taken, G);
      if (lane == 0 && g >= 0)
        group_taken[g] = 1;
      __syncwarp();
    }
    for (int e = lane; e < E; e += kWarp)
      if (!group_taken[e / width])
        choice[e] = -INFINITY;
    __syncwarp();
  }

  float *w = weights + t * c.k;
  int32_t *idx = experts + t * c.k;
  float sum = 0.0f;
  for (int j = 0; j < c.k; ++j) {
    const int e = warp_argmax_untaken(choice, taken, E);
    if (lane == 0) {
      taken[e] = 1;
      idx[j] = e;
      w[j] = scores[e];
    }
    sum += scores[e];
    __syncwarp();
  }
  const float factor = (c.normalize ? 1.0f / (sum + c.norm_epsilon) : 1.0f) * c.scale;
  if (lane == 0)
    for (int j = 0; j < c.k; ++j)
      w[j] *= factor;
}

/// Warps per block of the one-warp-per-token kernels, so their shared memory fits 48 KiB.
inline int warps_for(size_t warp_bytes) {
  const size_t fit = warp_bytes > 0 ? (48u * 1024u) / warp_bytes : 8;
  return static_cast<int>(std::max<size_t>(1, std::min<size_t>(8, fit)));
}

} // namespace detail

/// Token-choice routing of T tokens: weights [T, k], experts [T, k], logits [T, E], one warp
/// per token (logits, scores, selection bias, group limit, top-k, renormalize, scale).
template <WeightType W>
cudaError_t route(const RouteConfig &c, int64_t tokens, const float *x, const Storage<W> *router,
                  ExpertVector router_bias, ExpertVector selection_bias, float *weights,
                  int32_t *experts, float *logits, cudaStream_t stream) {
  if (tokens <= 0)
    return cudaSuccess;
  const size_t warp_bytes = detail::route_warp_bytes(c.experts, c.n_group);
  if (warp_bytes > 48u * 1024u)
    return cudaErrorInvalidValue;
  const int warps = detail::warps_for(warp_bytes);
  detail::route_kernel<W><<<detail::blocks_for(tokens, warps), warps * kWarp, warps * warp_bytes,
                            stream>>>(c, tokens, x, router, router_bias, selection_bias, weights,
                                      experts, logits);
  return cudaGetLastError();
}

/// The capacity of each expert: a fixed one (>= 0), or ceil(factor · T · k / E), evaluated
/// left to right in double as the float64 reference does. Host arithmetic on T only.
inline int64_t expert_capacity(int64_t fixed, double factor, int64_t tokens, int64_t k,
                               int64_t experts) {
  if (fixed >= 0)
    return fixed;
  return static_cast<int64_t>(std::ceil(factor * static_cast<double>(tokens) *
                                        static_cast<double>(k) / static_cast<double>(experts)));
}

namespace detail {

/// One block per expert walks the assignments in token order (then order of choice) and
/// drops those beyond the expert's capacity: its expert becomes -1. A block writes only
/// entries holding its own expert, so blocks never disturb each other's reads.
__global__ void capacity_kernel(int64_t assignments, int64_t capacity, int32_t *choice) {
  const int32_t expert = static_cast<int32_t>(blockIdx.x);
  int64_t used = 0;
  for (int64_t base = 0; base < assignments; base += blockDim.x) {
    const int64_t a = base + threadIdx.x;
    const bool mine = a < assignments && choice[a] == expert;
    int total = 0;
    const int rank = block_count_before(mine, total);
    if (mine && used + rank >= capacity)
      choice[a] = -1;
    used += total;
  }
}

/// counts[e] += assignments to e (counts zeroed by the caller), shared-memory histogram.
__global__ void histogram_kernel(int64_t assignments, int64_t experts, const int32_t *choice,
                                 int32_t *counts) {
  extern __shared__ int32_t local_counts[];
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x)
    local_counts[e] = 0;
  __syncthreads();
  for (int64_t a = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; a < assignments;
       a += int64_t(gridDim.x) * blockDim.x) {
    const int32_t e = choice[a];
    if (e >= 0 && e < experts)
      atomicAdd(&local_counts[e], 1);
  }
  __syncthreads();
  for (int64_t e = threadIdx.x; e < experts; e += blockDim.x)
    if (local_counts[e])
      atomicAdd(&counts[e], local_counts[e]);
}

/// Block e: offsets[e] = Σ_{e' < e} counts[e'] (the exclusive prefix sum), then a stable
/// fill of e's segment in assignment order, ranks from an ordered block-wide count.
__global__ void fill_segments_kernel(int64_t assignments, int64_t k, int64_t experts,
                                     const float *weights, const int32_t *choice,
                                     const int32_t *counts, int32_t *offsets, int32_t *token_of,
                                     float *gate_of) {
  __shared__ int32_t segment_begin;
  const int32_t expert = static_cast<int32_t>(blockIdx.x);
  if (threadIdx.x == 0) {
    int32_t begin = 0;
    for (int32_t e = 0; e < expert; ++e)
      begin += counts[e];
    segment_begin = begin;
    offsets[expert] = begin;
    if (expert == experts - 1)
      offsets[experts] = begin + counts[expert];
  }
  __syncthreads();
  int64_t next = segment_begin;
  for (int64_t base = 0; base < assignments; base += blockDim.x) {
    const int64_t a = base + threadIdx.x;
    const bool mine = a < assignments && choice[a] == expert;
    int total = 0;
    const int rank = block_count_before(mine, total);
    if (mine) {
      token_of[next + rank] = static_cast<int32_t>(a / k);
      gate_of[next + rank] = weights[a];
    }
    next += total;
  }
}

} // namespace detail

/// Drops assignments beyond each expert's capacity, slots claimed in token order.
inline cudaError_t apply_capacity(int64_t tokens, int64_t k, int64_t experts, int64_t capacity,
                                  int32_t *choice, cudaStream_t stream) {
  if (tokens <= 0 || experts <= 0)
    return cudaSuccess;
  detail::capacity_kernel<<<static_cast<unsigned>(experts), 256, 0, stream>>>(tokens * k, capacity,
                                                                              choice);
  return cudaGetLastError();
}

/// Scratch of dispatch: the per-expert counts.
inline size_t dispatch_workspace_size(int64_t experts) {
  return detail::align256(sizeof(int32_t) * static_cast<size_t>(experts));
}

/// Groups [T, k] assignments into expert segments, stable in token order: a histogram with
/// atomics, then one block per expert computes its offset and fills its segment. Dropped
/// assignments (expert -1) are skipped. offsets[E] is the number kept; it stays on the device.
inline cudaError_t dispatch(int64_t tokens, int64_t k, int64_t experts, const float *weights,
                            const int32_t *choice, int32_t *offsets, int32_t *token_of,
                            float *gate_of, void *scratch, cudaStream_t stream) {
  if (experts <= 0)
    return cudaSuccess;
  int32_t *counts = static_cast<int32_t *>(scratch);
  cudaError_t status = cudaMemsetAsync(counts, 0, sizeof(int32_t) * experts, stream);
  if (status != cudaSuccess)
    return status;
  const int64_t assignments = tokens * k;
  if (assignments > 0) {
    const unsigned blocks = std::min<unsigned>(detail::blocks_for(assignments, 256), 1024);
    detail::histogram_kernel<<<blocks, 256, sizeof(int32_t) * experts, stream>>>(
        assignments, experts, choice, counts);
    if ((status = cudaGetLastError()) != cudaSuccess)
      return status;
  }
  detail::fill_segments_kernel<<<static_cast<unsigned>(experts), 256, 0, stream>>>(
      assignments, k, experts, weights, choice, counts, offsets, token_of, gate_of);
  return cudaGetLastError();
}

/// Expert-choice capacity C = min(T, ceil(factor · T / E)): host arithmetic on T only.
inline int64_t expert_choice_capacity(int64_t tokens, int64_t experts, double factor) {
  return std::min<int64_t>(
      tokens, static_cast<int64_t>(std::ceil(factor * static_cast<double>(tokens) /
                                             static_cast<double>(experts))));
}

namespace detail {

/// Scores of one token per warp: logits [T, E] (global), then softmax into scores [T, E].
template <WeightType W>
__global__ void score_kernel(int64_t tokens, int64_t experts, int64_t hidden,
                             const float *__restrict__ x, const Storage<W> *__restrict__ router,
                             float *__restrict__ logits, float *__restrict__ scores) {
  extern __shared__ __align__(16) unsigned char score_shared[];
  const int warp = threadIdx.x / kWarp;
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp;
  if (t >= tokens)
    return;
  float *mine = reinterpret_cast<float *>(score_shared) + warp * experts;
  warp_router_logits<W>(x + t * hidden, router, ExpertVector{}, experts, hidden, mine,
                        logits ? logits + t * experts : nullptr);
  warp_softmax(mine, scores + t * experts, experts, 1.0f);
}

/// Orderable key of a score: larger score, larger key; NaN below everything (sorts last).
__device__ __forceinline__ uint32_t score_key(float v) {
  if (v != v)
    return 0u;
  const uint32_t bits = __float_as_uint(v);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

/// Block e takes the C tokens with the largest scores[:, e] (ties to the lower token index):
/// a 4-pass radix select finds the C-th largest key, then one ordered pass over the tokens
/// writes the chosen ones in ascending token order into e's segment [e·C, (e+1)·C).
__global__ void expert_choice_kernel(int64_t tokens, int64_t experts, int64_t capacity,
                                     const float *__restrict__ scores, int32_t *__restrict__ offsets,
                                     int32_t *__restrict__ token_of, float *__restrict__ gate_of) {
  __shared__ uint32_t histogram[256];
  __shared__ uint32_t chosen_prefix;
  __shared__ int64_t ties_wanted;
  const int64_t e = blockIdx.x;
  if (threadIdx.x == 0) {
    offsets[e] = static_cast<int32_t>(e * capacity);
    if (e == experts - 1)
      offsets[experts] = static_cast<int32_t>(experts * capacity);
  }
  if (capacity <= 0)
    return;
  uint32_t prefix = 0, mask = 0;
  int64_t remaining = capacity;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
      histogram[b] = 0;
    __syncthreads();
    for (int64_t t = threadIdx.x; t < tokens; t += blockDim.x) {
      const uint32_t key = score_key(scores[t * experts + e]);
      if ((key & mask) == prefix)
        atomicAdd(&histogram[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int64_t above = 0;
      int bucket = 255;
      for (; bucket > 0; --bucket) {
        if (above + histogram[bucket] >= remaining)
          break;
        above += histogram[bucket];
      }
      chosen_prefix = prefix | (static_cast<uint32_t>(bucket) << shift);
      ties_wanted = remaining - above;
    }
    __syncthreads();
    prefix = chosen_prefix;
    remaining = ties_wanted;
    mask |= 255u << shift;
    __syncthreads();
  }
  // prefix is the C-th largest key: take every key above it and the first `remaining` equal.
  int64_t written = 0, ties_seen = 0;
  for (int64_t base = 0; base < tokens; base += blockDim.x) {
    const int64_t t = base + threadIdx.x;
    const uint32_t key = t < tokens ? score_key(scores[t * experts + e]) : 0u;
    const bool above = t < tokens && key > prefix;
    const bool tie = t < tokens && key == prefix;
    int tie_total = 0, taken_total = 0;
    const int tie_rank = block_count_before(tie, tie_total);
    const bool take = above || (tie && ties_seen + tie_rank < remaining);
    const int slot = block_count_before(take, taken_total);
    if (take) {
      token_of[e * capacity + written + slot] = static_cast<int32_t>(t);
      gate_of[e * capacity + written + slot] = scores[t * experts + e];
    }
    written += taken_total;
    ties_seen += tie_total;
  }
}

} // namespace detail

/// Expert-choice routing (Zhou et al., 2022): segments offsets[e] = e·C with tokens in
/// ascending order, their gates, and the logits. `scores` is scratch of T·E floats.
template <WeightType W>
cudaError_t expert_choice(int64_t tokens, int64_t experts, int64_t hidden, double capacity_factor,
                          const float *x, const Storage<W> *router, int32_t *offsets,
                          int32_t *token_of, float *gate_of, float *logits, float *scores,
                          cudaStream_t stream) {
  const int64_t capacity = expert_choice_capacity(tokens, experts, capacity_factor);
  if (tokens > 0) {
    const size_t warp_bytes = sizeof(float) * experts;
    const int warps = detail::warps_for(warp_bytes);
    detail::score_kernel<W><<<detail::blocks_for(tokens, warps), warps * kWarp, warps * warp_bytes,
                              stream>>>(tokens, experts, hidden, x, router, logits, scores);
    cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
      return status;
  }
  detail::expert_choice_kernel<<<static_cast<unsigned>(experts), 256, 0, stream>>>(
      tokens, experts, capacity, scores, offsets, token_of, gate_of);
  return cudaGetLastError();
}

namespace detail {

template <WeightType W>
__global__ void soft_route_kernel(int64_t tokens, int64_t experts, int64_t hidden, int64_t k,
                                  const float *__restrict__ x, const Storage<W> *__restrict__ router,
                                  float *__restrict__ probs) {
  extern __shared__ __align__(16) unsigned char soft_shared[];
  const int warp = threadIdx.x / kWarp, lane = lane_id();
  const int64_t t = static_cast<int64_t>(blockIdx.x) * (blockDim.x / kWarp) + warp;
  if (t >= tokens)
    return;
  const int E = static_cast<int>(experts);
  float *p = reinterpret_cast<float *>(soft_shared + warp * route_warp_bytes(E, 0));
  uint8_t *taken = reinterpret_cast<uint8_t *>(p + 2 * E);
  warp_router_logits<W>(x + t * hidden, router, ExpertVector{}, E, hidden, p, nullptr);
  warp_softmax(p, p, E, 1.0f);
  if (k > 0 && k < E) {
    for (int e = lane; e < E; e += kWarp)
      taken[e] = 0;
    __syncwarp();
    for (int64_t j = 0; j < k; ++j) {
      const int e = warp_argmax_untaken(p, taken, E);
      if (lane == 0)
        taken[e] = 1;
      __syncwarp();
    }
    for (int e = lane; e < E; e += kWarp)
      if (!taken[e])
        p[e] = 0.0f;
    __syncwarp();
  }
  for (int e = lane; e < E; e += kWarp)
    probs[t * E + e] = p[e];
}

} // namespace detail

/// Dense router probabilities p = softmax(x · routerᵀ), optionally masked to each token's
/// top-k without renormalization (MoV, MoLoRA). k <= 0 keeps all.
template <WeightType W>
cudaError_t soft_route(int64_t tokens, int64_t experts, int64_t hidden, int64_t k, const float *x,
                       const Storage<W> *router, float *probs, cudaStream_t stream) {
  if (tokens <= 0)
    return cudaSuccess;
  const size_t warp_bytes = detail::route_warp_bytes(experts, 0);
  const int warps = detail::warps_for(warp_bytes);
  detail::soft_route_kernel<W><<<detail::blocks_for(tokens, warps), warps * kWarp,
                                 warps * warp_bytes, stream>>>(tokens, experts, hidden, k, x,
                                                               router, probs);
  return cudaGetLastError();
}

} // namespace mixtile::cuda
