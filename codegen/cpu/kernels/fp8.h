// fp8 weights of the CPU kernel library: rows of a block-scaled e4m3 weight (the fine-grained fp8
// checkpoints of DeepSeek-V3 and Qwen3: one f32 scale per block of `rows` x `cols` elements)
// dequantized to bf16, a few rows at a time, into a buffer the bf16 GEMM loops read as if it were
// the weight itself (expert_ffn's fp8_e4m3 weights, segments of more than 4 rows). Each element
// becomes bf16(f32(code) * scale), rounded to nearest even: the value transformers gives the
// weight when it loads such a checkpoint on a CPU, and what the runtime's load-time
// dequantization writes. Segments of up to 4 rows take matrix_engines.h's dp_small_fp8 instead,
// which turns the codes into their exact bf16 values in registers (e4m3_to_bf16_exact) and
// scales each block's partial sum. Mechanism only: which weights are fp8 is mixtilec's decision
// (mix.expert_ffn's f8E4M3FN operands).
//
// Speed (AMD EPYC Zen 4, 2 threads, bench_expert_ffn 2 2048 768 1,8,32,128,512 bf16,fp8
// avx512_bf16 128 8, Qwen3-30B-A3B's experts, cold, an hour of ~33 GB/s): T=1 1.53 ms against
// bf16's 2.29, T=8 10.5 / 14.4, T=32 29.9 / 34.3, T=128 68.3 / 50.6, T=512 140 / 114. The slab
// conversion (VPERMI2B through a 128-entry table per scale block where AVX512-VBMI exists, 13-18
// G codes/s per core from L1; VCVTPH2PS and a multiply elsewhere, ~11) costs the larger
// segments; the fused GEMV converts ~13 G codes/s per core from DRAM, so it gains where a core
// has less read bandwidth than that (in an hour of ~55 GB/s on 2 cores, T=1 1.42 / 1.56 ms).
//
// API (namespace mixtile::cpu):
//
//   struct Fp8Scales { const float *scales; int64_t block_rows, block_cols; };
//     scales: row-major [ceil(out / block_rows), ceil(in / block_cols)] of an [out, in] weight
//
//   void dequantize_fp8_rows(uint16_t *dst, const uint8_t *w, const Fp8Scales &s, int64_t in,
//                            int64_t row0, int64_t rows);
//     rows [row0, row0 + rows) of the [out, in] e4m3 weight w into dst ([rows, in], bf16 bits)
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

#include "convert.h"

namespace mixtile::cpu {

struct Fp8Scales {
  const float *scales = nullptr;
  int64_t block_rows = 0, block_cols = 0;
};

namespace detail {

// e4m3 (OCP "e4m3fn": bias 7, no infinities, S.1111.111 is NaN) -> f32, every code.
inline float e4m3_to_f32(uint8_t code) {
  const int e = (code >> 3) & 0xf, m = code & 7;
  float v;
  if ((code & 0x7f) == 0x7f) {
    uint32_t nan = 0x7fc00000u;
    std::memcpy(&v, &nan, sizeof v);
  } else if (e == 0) {
    v = static_cast<float>(m) * (1.0f / 512.0f);  // subnormal: m * 2^-9
  } else {
    uint32_t bits = (static_cast<uint32_t>(e + 120) << 23) | (static_cast<uint32_t>(m) << 20);
    std::memcpy(&v, &bits, sizeof v);
  }
  return (code & 0x80) ? -v : v;
}

inline const std::array<float, 256> &e4m3_table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = e4m3_to_f32(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

// One row's depths [k0, k1), all of one scale block, the portable way.
inline void dequantize_fp8_span_scalar(uint16_t *dst, const uint8_t *w, int64_t k0, int64_t k1, float scale) {
  const std::array<float, 256> &t = e4m3_table();
  for (int64_t k = k0; k < k1; ++k) dst[k] = f32_to_bf16_bits(t[w[k]] * scale);
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
// 32 e4m3 codes -> their f16 bits times 2^-8 in 32 16-bit lanes: sign to the sign, exponent and
// mantissa one bit right of the f16's (bias 15 instead of 7, subnormals included), NaN codes to
// an f16 NaN. VCVTPH2PS then widens them exactly.
inline __m512i e4m3_to_f16_scaled(__m256i codes) {
  const __m512i w = _mm512_cvtepu8_epi16(codes);
  __m512i h = _mm512_srai_epi16(_mm512_slli_epi16(w, 8), 1);
  h = _mm512_and_si512(h, _mm512_set1_epi16(static_cast<short>(0xbf80)));
  const __mmask32 nan = _mm512_cmpeq_epi16_mask(_mm512_and_si512(w, _mm512_set1_epi16(0x7f)), _mm512_set1_epi16(0x7f));
  return _mm512_mask_mov_epi16(h, nan, _mm512_set1_epi16(0x7e00));
}

// 32 e4m3 codes -> their exact values as bf16 bits (every e4m3 value is a bf16 value), for loops
// that apply the block scale to their f32 partial sums instead of to each weight. Normal codes
// take four 512-bit instructions: sign-extended to 16 bits and shifted left by 4, a code holds
// its sign in bits 15 .. 11 and exponent and mantissa in 10 .. 4, where bf16 wants them; keep
// bit 15 and bits 10 .. 4, and rebias the exponent (+120 at bit 7). Subnormal codes (m * 2^-9,
// zero included) and NaN come from a table, on a branch: in a checkpoint they are rare (its
// codes span the block's range, |code| up to 448), so the branch is almost never taken.
inline __m512i e4m3_to_bf16_exact(__m256i codes) {
  const __m512i w = _mm512_cvtepi8_epi16(codes);
  __m512i r = _mm512_add_epi16(_mm512_and_si512(_mm512_slli_epi16(w, 4), _mm512_set1_epi16(static_cast<short>(0x87f0))),
                               _mm512_set1_epi16(0x3c00));
  const __mmask32 odd =
      _mm256_testn_epi8_mask(codes, _mm256_set1_epi8(0x78)) |
      _mm256_cmpeq_epi8_mask(_mm256_and_si256(codes, _mm256_set1_epi8(0x7f)), _mm256_set1_epi8(0x7f));
  if (__builtin_expect(odd != 0, 0)) {
    // Indexed by the low 5 bits (the code's): 0 .. 7 the subnormals, 31 (magnitude 127) NaN.
    const __m512i special = _mm512_set_epi16(0x7fc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             0, 0, 0x3c60, 0x3c40, 0x3c20, 0x3c00, 0x3bc0, 0x3b80, 0x3b00, 0);
    const __m512i magnitude = _mm512_permutexvar_epi16(w, special);
    r = _mm512_mask_mov_epi16(
        r, odd, _mm512_or_si512(magnitude, _mm512_and_si512(w, _mm512_set1_epi16(static_cast<short>(0x8000)))));
  }
  return r;
}

// 2 x 16 f32 -> 32 bf16 bits (lo first), round to nearest even, NaN stays a quiet NaN.
inline __m512i bf16_round_pairs(__m512 lo, __m512 hi) {
#if defined(__AVX512BF16__)
  // VCVTNE2PS2BF16 treats denormal inputs as zero: a product code * scale is denormal only for
  // scales below 2^-117, far outside what checkpoints hold.
  return reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo));
#else
  auto round = [](__m512 v) {
    const __m512i u = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
  };
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi32_epi16(round(lo))), _mm512_cvtepi32_epi16(round(hi)),
                            1);
#endif
}

// 32 codes -> 32 bf16(f32(code) * scale), `scale256` = 2^8 * scale broadcast. 2^8 * scale is
// exact (a power of two), so each lane's product is f32(code) * scale rounded once, as in the
// scalar path.
inline __m512i e4m3_to_bf16_scaled(__m256i codes, __m512 scale256) {
  const __m512i h = e4m3_to_f16_scaled(codes);
  return bf16_round_pairs(_mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(h)), scale256),
                          _mm512_mul_ps(_mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1)), scale256));
}

// Depths [k0, k1) of one row, all of one scale block.
inline void dequantize_fp8_span(uint16_t *dst, const uint8_t *w, int64_t k0, int64_t k1, float scale) {
  const __m512 s = _mm512_set1_ps(scale * 256.0f);
  for (int64_t k = k0; k < k1; k += 32) {
    const int64_t n = std::min<int64_t>(32, k1 - k);
    const __mmask32 m = n == 32 ? ~__mmask32(0) : (__mmask32(1) << n) - 1;
    _mm512_mask_storeu_epi16(dst + k, m, e4m3_to_bf16_scaled(_mm256_maskz_loadu_epi8(m, w + k), s));
  }
}

#if defined(__AVX512VBMI__)
// The 128 results bf16(f32(code) * scale) of one scale, for the magnitudes 0 .. 127 (a negative
// code's is its magnitude's with the sign bit set: rounding to nearest even is symmetric), as
// two 128-byte tables, low and high bytes, for VPERMI2B.
struct Fp8Table {
  __m512i lo[2], hi[2];
};
inline Fp8Table fp8_table(float scale) {
  const __m512 s = _mm512_set1_ps(scale * 256.0f);
  __m256i lo[4], hi[4];
  for (int q = 0; q < 4; ++q) {
    // The magnitudes 32q .. 32q + 31.
    const __m256i codes = _mm256_add_epi8(_mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17,
                                                           18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31),
                                          _mm256_set1_epi8(static_cast<char>(32 * q)));
    const __m512i v = e4m3_to_bf16_scaled(codes, s);
    lo[q] = _mm512_cvtepi16_epi8(v);
    hi[q] = _mm512_cvtepi16_epi8(_mm512_srli_epi16(v, 8));
  }
  Fp8Table t;
  for (int j = 0; j < 2; ++j) {
    t.lo[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo[2 * j]), lo[2 * j + 1], 1);
    t.hi[j] = _mm512_inserti64x4(_mm512_castsi256_si512(hi[2 * j]), hi[2 * j + 1], 1);
  }
  return t;
}

// Depths [k0, k1) of one row through the table of its block, 64 codes per step: VPERMB first
// orders the codes so that the in-lane byte interleave of the looked-up low and high bytes
// yields words 0 .. 31 and 32 .. 63 in order; VPERMI2B looks up by the low 7 bits; the code's
// sign bit is or-ed into the high byte.
inline void dequantize_fp8_span_table(uint16_t *dst, const uint8_t *w, int64_t k0, int64_t k1, const Fp8Table &t) {
  alignas(64) static constexpr uint8_t kOrder[64] = {
      0,  1,  2,  3,  4,  5,  6,  7,  32, 33, 34, 35, 36, 37, 38, 39, 8,  9,  10, 11, 12, 13,
      14, 15, 40, 41, 42, 43, 44, 45, 46, 47, 16, 17, 18, 19, 20, 21, 22, 23, 48, 49, 50, 51,
      52, 53, 54, 55, 24, 25, 26, 27, 28, 29, 30, 31, 56, 57, 58, 59, 60, 61, 62, 63};
  const __m512i order = _mm512_load_si512(kOrder);
  const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
  // 64 codes in memory order -> their low and high result bytes, ready to interleave.
  auto look_up = [&](__m512i loaded, __m512i &lo, __m512i &hi) {
    const __m512i codes = _mm512_permutexvar_epi8(order, loaded);
    lo = _mm512_permutex2var_epi8(t.lo[0], codes, t.lo[1]);
    hi = _mm512_ternarylogic_epi32(_mm512_permutex2var_epi8(t.hi[0], codes, t.hi[1]), codes, sign, 0xf8);
  };
  __m512i lo, hi;
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) {
    look_up(_mm512_loadu_si512(w + k), lo, hi);
    _mm512_storeu_si512(dst + k, _mm512_unpacklo_epi8(lo, hi));
    _mm512_storeu_si512(dst + k + 32, _mm512_unpackhi_epi8(lo, hi));
  }
  if (k < k1) {
    const __mmask64 m = (__mmask64(1) << (k1 - k)) - 1;
    look_up(_mm512_maskz_loadu_epi8(m, w + k), lo, hi);
    _mm512_mask_storeu_epi16(dst + k, static_cast<__mmask32>(m), _mm512_unpacklo_epi8(lo, hi));
    _mm512_mask_storeu_epi16(dst + k + 32, static_cast<__mmask32>(m >> 32), _mm512_unpackhi_epi8(lo, hi));
  }
}
#endif
#else
inline void dequantize_fp8_span(uint16_t *dst, const uint8_t *w, int64_t k0, int64_t k1, float scale) {
  dequantize_fp8_span_scalar(dst, w, k0, k1, scale);
}
#endif

}  // namespace detail

inline void dequantize_fp8_rows(uint16_t *dst, const uint8_t *w, const Fp8Scales &s, int64_t in, int64_t row0,
                                int64_t rows) {
  const int64_t col_blocks = (in + s.block_cols - 1) / s.block_cols;
  // Block column by block column, and within one the rows of each block row: one scale (and,
  // with VBMI, one table) serves them all.
  for (int64_t j = 0; j < col_blocks; ++j) {
    const int64_t k0 = j * s.block_cols, k1 = std::min(in, k0 + s.block_cols);
    for (int64_t i = 0; i < rows;) {
      const int64_t r = row0 + i, br = r / s.block_rows;
      const int64_t n = std::min(rows - i, (br + 1) * s.block_rows - r);  // rows of this block row
      const float scale = s.scales[br * col_blocks + j];
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VBMI__)
      const detail::Fp8Table table = detail::fp8_table(scale);
      for (int64_t q = 0; q < n; ++q) {
        // The rows are read a block column at a time, one stream per row: the next block
        // column of this row is fetched while the other rows of this one are converted.
        const uint8_t *next = w + (r + q) * in + k1;
        for (int64_t b = 0; b < s.block_cols && k1 + b < in; b += 64) _mm_prefetch(reinterpret_cast<const char *>(next + b), _MM_HINT_T0);
        detail::dequantize_fp8_span_table(dst + (i + q) * in, w + (r + q) * in, k0, k1, table);
      }
#else
      for (int64_t q = 0; q < n; ++q) detail::dequantize_fp8_span(dst + (i + q) * in, w + (r + q) * in, k0, k1, scale);
#endif
      i += n;
    }
  }
}

}  // namespace mixtile::cpu
