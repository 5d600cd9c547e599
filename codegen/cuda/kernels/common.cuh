// Shared vocabulary of the CUDA kernel library: weight dtypes and their conversions,
// activations, warp and block reductions, the ordered block-wide count that keeps segments
// stable in token order, and launch helpers. Header-only CUDA C++17; no host synchronization.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>

namespace mixtile::cuda {

enum class WeightType { f32, bf16, f16 };      // bf16/f16 tensors are uint16_t bits
enum class Activation { silu, gelu, gelu_tanh, relu, swiglu_oai };  // gelu = erf form
/// The clamped SwiGLU's constants (Activation::swiglu_oai, gpt-oss).
struct ActParams {
  float alpha = 1.702f, limit = 7.0f;
};

constexpr int kWarp = 32;

/// How a weight dtype is stored in memory and which type the tensor-core path computes in.
template <WeightType W> struct WeightTraits;
template <> struct WeightTraits<WeightType::f32> {
  using Storage = float;
  using Compute = float;
};
template <> struct WeightTraits<WeightType::bf16> {
  using Storage = uint16_t;
  using Compute = __nv_bfloat16;
};
template <> struct WeightTraits<WeightType::f16> {
  using Storage = uint16_t;
  using Compute = __half;
};
template <WeightType W> using Storage = typename WeightTraits<W>::Storage;
template <WeightType W> using Compute = typename WeightTraits<W>::Compute;

namespace detail {

__host__ __device__ inline size_t align256(size_t bytes) { return (bytes + 255) & ~size_t(255); }

/// What a *_workspace_size function answers for sizes whose workspace would not fit 64 bits
/// (the runtime refuses such a run by name), as the CPU library does.
constexpr size_t kWorkspaceOverflow = ~size_t(0);

/// Whether the product of these sizes (each at least 1) stays within 2^56: the workspace
/// functions below multiply at most these sizes and an element's bytes.
inline bool workspace_product_fits(std::initializer_list<int64_t> sizes) {
  double product = 1;
  for (int64_t s : sizes) product *= static_cast<double>(s > 1 ? s : 1);
  return product <= 0x1p56;
}

__device__ __forceinline__ float bf16_bits_to_float(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}
__device__ __forceinline__ float f16_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

/// Widens one stored weight to f32.
template <WeightType W>
__device__ __forceinline__ float load_weight(const Storage<W> *p, int64_t i) {
  if constexpr (W == WeightType::f32)
    return p[i];
  else if constexpr (W == WeightType::bf16)
    return bf16_bits_to_float(p[i]);
  else
    return f16_bits_to_float(p[i]);
}

/// f32 <-> the compute type of the GEMMs (round to nearest even).
template <class C> __device__ __forceinline__ C from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}
template <> __device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

/// The activations of shared/spec/layers.md §3, in f32 with the accurate math functions.
template <Activation A>
__device__ __forceinline__ float activate(float x) {
  if constexpr (A == Activation::silu) {
    return x / (1.0f + expf(-x));
  } else if constexpr (A == Activation::gelu) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
  } else if constexpr (A == Activation::gelu_tanh) {
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  } else {
    static_assert(A == Activation::relu, "swiglu_oai is gated: use gated_activate");
    return x > 0.0f ? x : (x == x ? 0.0f : x);  // relu; NaN propagates
  }
}

/// act(g) ⊙ u (gated) or act(g); swiglu_oai: (clamp(u, ±limit) + 1) · g' · sigmoid(alpha · g')
/// with g' = min(g, limit), NaN propagating as torch.clamp.
template <Activation A, bool Gated>
__device__ __forceinline__ float gated_activate(float g, float u, const ActParams &ap) {
  if constexpr (A == Activation::swiglu_oai) {
    const float gc = g > ap.limit ? ap.limit : g;
    const float uc = !Gated ? 0.0f : u > ap.limit ? ap.limit : u < -ap.limit ? -ap.limit : u;
    return (uc + 1.0f) * (gc / (1.0f + expf(-ap.alpha * gc)));
  } else if constexpr (Gated) {
    return activate<A>(g) * u;
  } else {
    return activate<A>(g);
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

/// Max that ignores NaN, as std::max(m, x) with m first does on the CPU.
__device__ __forceinline__ float warp_max(float v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

__device__ __forceinline__ int lane_id() { return threadIdx.x & (kWarp - 1); }

/// Block-wide ordered count: returns how many threads of lower index in the block have
/// `pred` set, and the block's total in `total`. Every thread of the block must call it
/// (blockDim.x a multiple of 32, at most 1024). Two __syncthreads.
__device__ inline int block_count_before(bool pred, int &total) {
  __shared__ int warp_totals[32];
  const int lane = lane_id(), warp = threadIdx.x / kWarp, warps = blockDim.x / kWarp;
  const unsigned ballot = __ballot_sync(0xffffffffu, pred);
  const int in_warp = __popc(ballot & ((1u << lane) - 1u));
  if (lane == 0)
    warp_totals[warp] = __popc(ballot);
  __syncthreads();
  int before = 0, sum = 0;
  for (int w = 0; w < warps; ++w) {
    const int c = warp_totals[w];
    if (w < warp)
      before += c;
    sum += c;
  }
  __syncthreads();  // warp_totals may be reused by the next call
  total = sum;
  return before + in_warp;
}

/// Blocks needed to cover n items with `per_block` each (n >= 0).
inline unsigned blocks_for(int64_t n, int64_t per_block) {
  return static_cast<unsigned>((n + per_block - 1) / per_block);
}

} // namespace detail

/// A small per-expert vector (router bias, selection bias, linear bias) of any weight dtype.
struct ExpertVector {
  const void *data = nullptr;
  WeightType type = WeightType::f32;
  __device__ float at(int64_t i) const {
    switch (type) {
    case WeightType::f32: return static_cast<const float *>(data)[i];
    case WeightType::bf16: return detail::bf16_bits_to_float(static_cast<const uint16_t *>(data)[i]);
    default: return detail::f16_bits_to_float(static_cast<const uint16_t *>(data)[i]);
    }
  }
};

/// Per-expert weight matrices: stacked [E, rows, cols] tensors or one tensor per expert, as
/// the checkpoint stores them. Passed by value as a kernel parameter (CUDA >= 12.1 allows
/// 32 KiB of parameters on sm_70+), so no pointer table is ever copied to the device.
template <int N>
struct ExpertPointers {
  const void *at[N];
};

/// Fills n elements with zeros on the stream (a graph-capturable memset).
inline cudaError_t zero_floats(float *dst, int64_t n, cudaStream_t stream) {
  if (n <= 0)
    return cudaSuccess;
  return cudaMemsetAsync(dst, 0, sizeof(float) * static_cast<size_t>(n), stream);
}

namespace detail {
template <class T>
__global__ void copy_kernel(T *__restrict__ dst, const T *__restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = src[i];
}
} // namespace detail

/// Device-to-device copy of n elements as a kernel on the stream.
template <class T>
inline cudaError_t copy_elements(T *dst, const T *src, int64_t n, cudaStream_t stream) {
  if (n <= 0 || dst == src)
    return cudaSuccess;
  const unsigned blocks = static_cast<unsigned>(std::min<int64_t>(detail::blocks_for(n, 256), 4096));
  detail::copy_kernel<T><<<blocks, 256, 0, stream>>>(dst, src, n);
  return cudaGetLastError();
}

} // namespace mixtile::cuda
