// Token dtype conversions of the CPU kernel library: a bf16/f16 layer widens its input tokens to
// f32 at its entry and rounds its f32 output once, to nearest even, at its exit (layers.md,
// Conventions). Element-wise; NaN stays NaN, overflow becomes Inf. No policy lives here.
#pragma once

#include <omp.h>

#include <cstdint>
#include <cstring>

#include "simd.h"

namespace mixtile::cpu {
namespace detail {

/// f32 -> bf16 bits, round to nearest even; NaN stays a (quiet) NaN.
inline uint16_t f32_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

/// f32 -> f16 bits, round to nearest even, subnormals kept, overflow to Inf, NaN stays NaN.
inline uint16_t f32_to_f16_bits(float f) {
#if defined(__F16C__)
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (magnitude >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds past 65504
  const int exponent = static_cast<int>(magnitude >> 23) - 127;
  if (exponent >= -14) {  // normal f16
    uint32_t mantissa = magnitude & 0x7fffffu;
    uint32_t h = (static_cast<uint32_t>(exponent + 15) << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent
    return static_cast<uint16_t>(sign | h);
  }
  if (exponent < -25) return sign;  // below half the smallest subnormal
  const uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
  // Subnormal: value = mantissa * 2^(exponent - 23) = (mantissa >> right) units of 2^-24.
  const int right = -(exponent + 1);  // 14..24
  uint32_t h = mantissa >> right;
  const uint32_t rest = mantissa & ((1u << right) - 1u), half = 1u << (right - 1);
  if (rest > half || (rest == half && (h & 1u))) ++h;
  return static_cast<uint16_t>(sign | h);
#endif
}

}  // namespace detail

/// dst[i] = (float)src[i] for the `count` elements of a bf16/f16 (or f32) token tensor.
template <WeightType W>
void widen_tokens(int64_t count, const WeightStorage<W> *src, float *dst, int num_threads) {
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t i = 0; i < count; ++i) dst[i] = detail::load_weight_scalar<W>(src + i);
}

/// dst[i] = src[i] rounded to nearest even in the token dtype W.
template <WeightType W>
void round_tokens(int64_t count, const float *src, WeightStorage<W> *dst, int num_threads) {
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    if constexpr (W == WeightType::f32) {
      dst[i] = src[i];
    } else if constexpr (W == WeightType::bf16) {
      dst[i] = detail::f32_to_bf16_bits(src[i]);
    } else {
      dst[i] = detail::f32_to_f16_bits(src[i]);
    }
  }
}

}  // namespace mixtile::cpu
