// SIMD layer of the CPU kernel library: one f32 vector type per ISA (AVX-512, AVX2+FMA, portable
// scalar), weight loads that widen bf16/f16 to f32, and the vectorized activations.
// It owns no loop structure; gemm.h and expert_ffn.h build on it. ISA is chosen at build time.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__)) || defined(__F16C__)
#include <immintrin.h>
#endif

namespace mixtile::cpu {

enum class Activation { silu, gelu, gelu_tanh, relu, swiglu_oai };  // gelu = erf form
// The clamped SwiGLU's constants (Activation::swiglu_oai, gpt-oss); other activations ignore them.
struct ActParams {
  float alpha = 1.702f, limit = 7.0f;
};
// fp8_e4m3: block-scaled e4m3 codes (fp8.h); mxfp4: OCP MXFP4, two e2m1 codes a byte and an e8m0
// scale per 32 (mxfp4.h). Both reach the GEMM loops as bf16.
enum class WeightType { f32, bf16, f16, fp8_e4m3, mxfp4 };
// The instructions a GEMM multiplies with, chosen by the compiler per target: f32 FMA (weights
// widened to f32), AVX512-BF16 VDPBF16PS, or AMX TDPBF16PS tiles. The bf16 paths take bf16
// weights and round their activation operand to bf16 (matrix_engines.h).
enum class MatmulPath { fma_f32, avx512_bf16, amx_bf16 };

// The element type of a weight's storage (mxfp4: a byte of two codes).
template <WeightType W>
using WeightStorage = typename std::conditional<
    W == WeightType::f32, float,
    typename std::conditional<W == WeightType::fp8_e4m3 || W == WeightType::mxfp4, uint8_t, uint16_t>::type>::type;

namespace detail {

// ---- scalar conversions (also used for remainders on SIMD builds) -------------------------------

inline float bf16_to_f32(uint16_t bits) {
  uint32_t u = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline float f16_to_f32(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0x1f) {  // Inf / NaN
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else if (exponent != 0) {  // normal
    bits = sign | ((exponent + 112u) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {  // zero
    bits = sign;
  } else {  // subnormal: renormalize
    int e = -1;
    do {
      ++e;
      mantissa <<= 1;
    } while ((mantissa & 0x400u) == 0);
    bits = sign | (static_cast<uint32_t>(112 - e) << 23) | ((mantissa & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
#endif
}

template <WeightType W>
inline float load_weight_scalar(const WeightStorage<W> *p) {
  if constexpr (W == WeightType::f32) {
    return *p;
  } else if constexpr (W == WeightType::bf16) {
    return bf16_to_f32(*p);
  } else {
    return f16_to_f32(*p);
  }
}

// Scalar activations: the reference semantics the vector versions approximate.
template <Activation A>
inline float activate_scalar(float x) {
  if constexpr (A == Activation::silu) {
    return x / (1.0f + std::exp(-x));
  } else if constexpr (A == Activation::gelu) {
    return 0.5f * x * (1.0f + std::erf(x * 0.70710678118654752f));
  } else if constexpr (A == Activation::gelu_tanh) {
    const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + std::tanh(u));
  } else {
    return x > 0.0f ? x : (x == x ? 0.0f : x);  // relu, NaN propagates
  }
}

// ---- the vector type ------------------------------------------------------------------------------

#if defined(__AVX512F__)

constexpr int kVecWidth = 16;
struct VecF {
  __m512 v;
};
inline VecF vzero() { return {_mm512_setzero_ps()}; }
inline VecF vset1(float x) { return {_mm512_set1_ps(x)}; }
inline VecF vload(const float *p) { return {_mm512_loadu_ps(p)}; }
inline void vstore(float *p, VecF a) { _mm512_storeu_ps(p, a.v); }
inline VecF vfma(VecF a, VecF b, VecF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF vadd(VecF a, VecF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VecF vmul(VecF a, VecF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VecF vdiv(VecF a, VecF b) { return {_mm512_div_ps(a.v, b.v)}; }
inline float vhsum(VecF a) { return _mm512_reduce_add_ps(a.v); }
// max(0, x) with NaN propagating: max_ps returns its second operand when either is NaN.
inline VecF vrelu(VecF x) { return {_mm512_max_ps(_mm512_setzero_ps(), x.v)}; }
// min(x, bound) and max(x, bound), a NaN x staying NaN (as torch.clamp).
inline VecF vmin_bound(VecF x, VecF bound) { return {_mm512_min_ps(bound.v, x.v)}; }
inline VecF vmax_bound(VecF x, VecF bound) { return {_mm512_max_ps(bound.v, x.v)}; }

// exp(x): Cephes-style range reduction + degree-6 polynomial, ~1 ulp on the clamped range.
inline VecF vexp(VecF xin) {
  // Above 89 the result overflows to inf (scalef), as exp does: x / (1 + exp(-x)) for x below
  // -89 is then -0, not x / 2.4e38 (silu(-3e38) was -1.25).
  __m512 x = _mm512_min_ps(_mm512_set1_ps(89.0f), xin.v);  // NaN stays (2nd operand)
  x = _mm512_max_ps(_mm512_set1_ps(-88.3762626647949f), x);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return {_mm512_scalef_ps(p, n)};
}
inline VecF vabs(VecF x) { return {_mm512_abs_ps(x.v)}; }
inline VecF vcopysign(VecF mag, VecF sign) {
  const __m512i m = _mm512_set1_epi32(0x80000000);
  return {_mm512_castsi512_ps(_mm512_or_si512(
      _mm512_andnot_si512(m, _mm512_castps_si512(mag.v)),
      _mm512_and_si512(m, _mm512_castps_si512(sign.v))))};
}

// Weight loads: kVecWidth consecutive weights widened to f32.
template <WeightType W>
inline VecF vload_weight(const WeightStorage<W> *p) {
  if constexpr (W == WeightType::f32) {
    return {_mm512_loadu_ps(p)};
  } else if constexpr (W == WeightType::bf16) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
    return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))};
  } else {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(p));
    return {_mm512_cvtph_ps(h)};
  }
}

#elif defined(__AVX2__) && defined(__FMA__)

constexpr int kVecWidth = 8;
struct VecF {
  __m256 v;
};
inline VecF vzero() { return {_mm256_setzero_ps()}; }
inline VecF vset1(float x) { return {_mm256_set1_ps(x)}; }
inline VecF vload(const float *p) { return {_mm256_loadu_ps(p)}; }
inline void vstore(float *p, VecF a) { _mm256_storeu_ps(p, a.v); }
inline VecF vfma(VecF a, VecF b, VecF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline VecF vadd(VecF a, VecF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VecF vmul(VecF a, VecF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VecF vdiv(VecF a, VecF b) { return {_mm256_div_ps(a.v, b.v)}; }
inline float vhsum(VecF a) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
inline VecF vrelu(VecF x) { return {_mm256_max_ps(_mm256_setzero_ps(), x.v)}; }
inline VecF vmin_bound(VecF x, VecF bound) { return {_mm256_min_ps(bound.v, x.v)}; }
inline VecF vmax_bound(VecF x, VecF bound) { return {_mm256_max_ps(bound.v, x.v)}; }
inline VecF vexp(VecF xin) {
  __m256 x = _mm256_min_ps(_mm256_set1_ps(89.0f), xin.v);  // above: inf (n = 128, 2 * 2^127 * p)
  x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);  // keep 2^n a normal number
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n for n in [-126, 128): (n + 127) << 23; n = 128 handled as 2 * 2^127.
  __m256i ni = _mm256_cvtps_epi32(n);
  __m256i big = _mm256_cmpgt_epi32(ni, _mm256_set1_epi32(127));
  ni = _mm256_sub_epi32(ni, _mm256_and_si256(big, _mm256_set1_epi32(1)));
  __m256 pow2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23));
  p = _mm256_mul_ps(p, pow2);
  p = _mm256_blendv_ps(p, _mm256_add_ps(p, p), _mm256_castsi256_ps(big));
  return {p};
}
inline VecF vabs(VecF x) {
  return {_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x.v)};
}
inline VecF vcopysign(VecF mag, VecF sign) {
  const __m256 m = _mm256_set1_ps(-0.0f);
  return {_mm256_or_ps(_mm256_andnot_ps(m, mag.v), _mm256_and_ps(m, sign.v))};
}

template <WeightType W>
inline VecF vload_weight(const WeightStorage<W> *p) {
  if constexpr (W == WeightType::f32) {
    return {_mm256_loadu_ps(p)};
  } else if constexpr (W == WeightType::bf16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))};
  } else {
#if defined(__F16C__)
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(p));
    return {_mm256_cvtph_ps(h)};
#else
    alignas(32) float f[8];
    for (int i = 0; i < 8; ++i) f[i] = f16_to_f32(p[i]);
    return {_mm256_load_ps(f)};
#endif
  }
}

#else  // portable scalar fallback: a 4-wide array the compiler may vectorize with SSE

constexpr int kVecWidth = 4;
struct VecF {
  float v[4];
};
inline VecF vzero() { return {{0.f, 0.f, 0.f, 0.f}}; }
inline VecF vset1(float x) { return {{x, x, x, x}}; }
inline VecF vload(const float *p) { return {{p[0], p[1], p[2], p[3]}}; }
inline void vstore(float *p, VecF a) {
  for (int i = 0; i < 4; ++i) p[i] = a.v[i];
}
#define MIXTILE_SCALAR_VEC_OP(name, expr)            \
  inline VecF name(VecF a, VecF b) {                 \
    VecF r;                                          \
    for (int i = 0; i < 4; ++i) r.v[i] = (expr);     \
    return r;                                        \
  }
MIXTILE_SCALAR_VEC_OP(vadd, a.v[i] + b.v[i])
MIXTILE_SCALAR_VEC_OP(vmul, a.v[i] * b.v[i])
MIXTILE_SCALAR_VEC_OP(vdiv, a.v[i] / b.v[i])
MIXTILE_SCALAR_VEC_OP(vcopysign, std::copysign(a.v[i], b.v[i]))
#undef MIXTILE_SCALAR_VEC_OP
inline VecF vfma(VecF a, VecF b, VecF c) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = a.v[i] * b.v[i] + c.v[i];
  return r;
}
inline float vhsum(VecF a) { return (a.v[0] + a.v[1]) + (a.v[2] + a.v[3]); }
inline VecF vrelu(VecF x) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = activate_scalar<Activation::relu>(x.v[i]);
  return r;
}
inline VecF vexp(VecF x) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = std::exp(x.v[i]);
  return r;
}
inline VecF vabs(VecF x) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = std::fabs(x.v[i]);
  return r;
}
inline VecF vmin_bound(VecF x, VecF bound) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = x.v[i] > bound.v[i] ? bound.v[i] : x.v[i];
  return r;
}
inline VecF vmax_bound(VecF x, VecF bound) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = x.v[i] < bound.v[i] ? bound.v[i] : x.v[i];
  return r;
}
template <WeightType W>
inline VecF vload_weight(const WeightStorage<W> *p) {
  VecF r;
  for (int i = 0; i < 4; ++i) r.v[i] = load_weight_scalar<W>(p + i);
  return r;
}

#endif

// ---- vector activations ---------------------------------------------------------------------------

// erf via Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), odd extension.
inline VecF verf(VecF x) {
  const VecF ax = vabs(x);
  const VecF one = vset1(1.0f);
  const VecF t = vdiv(one, vfma(vset1(0.3275911f), ax, one));
  VecF poly = vset1(1.061405429f);
  poly = vfma(poly, t, vset1(-1.453152027f));
  poly = vfma(poly, t, vset1(1.421413741f));
  poly = vfma(poly, t, vset1(-0.284496736f));
  poly = vfma(poly, t, vset1(0.254829592f));
  poly = vmul(poly, t);
  const VecF e = vexp(vmul(vmul(ax, ax), vset1(-1.0f)));
  const VecF y = vfma(vmul(poly, vset1(-1.0f)), e, one);
  return vcopysign(y, x);
}

template <Activation A>
inline VecF vactivate(VecF x) {
  if constexpr (A == Activation::silu) {
    // x * sigmoid(x)
    return vdiv(x, vadd(vset1(1.0f), vexp(vmul(x, vset1(-1.0f)))));
  } else if constexpr (A == Activation::gelu) {
    return vmul(vmul(vset1(0.5f), x), vadd(vset1(1.0f), verf(vmul(x, vset1(0.70710678118654752f)))));
  } else if constexpr (A == Activation::gelu_tanh) {
    // 0.5 x (1 + tanh(u)) == x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)
    const VecF x3 = vmul(vmul(x, x), x);
    const VecF u2 = vmul(vset1(2.0f * 0.7978845608028654f), vfma(vset1(0.044715f), x3, x));
    return vdiv(x, vadd(vset1(1.0f), vexp(vmul(u2, vset1(-1.0f)))));
  } else {
    static_assert(A == Activation::relu, "swiglu_oai is gated: use vgated");
    return vrelu(x);
  }
}

// The hidden value of one vector of columns: act(g) ⊙ u (gated) or act(g); for swiglu_oai
// (gpt-oss) (clamp(u, ±limit) + 1) · g' · sigmoid(alpha · g') with g' = min(g, limit).
template <Activation A, bool Gated>
inline VecF vgated(VecF g, VecF u, const ActParams &ap) {
  if constexpr (A == Activation::swiglu_oai) {
    const VecF one = vset1(1.0f);
    const VecF gc = vmin_bound(g, vset1(ap.limit));
    const VecF uc = Gated ? vmax_bound(vmin_bound(u, vset1(ap.limit)), vset1(-ap.limit)) : vzero();
    const VecF glu = vdiv(gc, vadd(one, vexp(vmul(gc, vset1(-ap.alpha)))));
    return vmul(vadd(uc, one), glu);
  } else {
    VecF r = vactivate<A>(g);
    if constexpr (Gated) r = vmul(r, u);
    return r;
  }
}

// Applies the activation to n <= kVecWidth values through one padded vector, so remainders get the
// same numerics as full vectors. `bias`/`mul_bias` (or null) add to src and mul first.
template <Activation A>
inline void activate_partial(float *dst, const float *src, const float *mul, int n, const ActParams &ap = {},
                             const float *bias = nullptr, const float *mul_bias = nullptr) {
  alignas(64) float buf[kVecWidth] = {};
  alignas(64) float mbuf[kVecWidth] = {};
  for (int i = 0; i < n; ++i) buf[i] = src[i] + (bias != nullptr ? bias[i] : 0.0f);
  VecF r;
  if (mul != nullptr) {
    for (int i = 0; i < n; ++i) mbuf[i] = mul[i] + (mul_bias != nullptr ? mul_bias[i] : 0.0f);
    r = vgated<A, true>(vload(buf), vload(mbuf), ap);
  } else {
    r = vgated<A, false>(vload(buf), vzero(), ap);
  }
  vstore(buf, r);
  for (int i = 0; i < n; ++i) dst[i] = buf[i];
}

}  // namespace detail
}  // namespace mixtile::cpu
