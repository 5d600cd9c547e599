// MXFP4 weights of the CPU kernel library: rows of an OCP MXFP4 weight (gpt-oss's experts as its
// Hugging Face checkpoints store them: e2m1 codes, two a byte, and one e8m0 scale byte per 32
// consecutive elements of a row) dequantized to bf16, a few rows at a time, into a buffer the bf16
// GEMM loops read as if it were the weight itself (expert_ffn's mxfp4 weights on every path,
// except segments of up to 4 rows on avx512_bf16, which take matrix_engines.h's dp_small_mxfp4 and
// convert the codes in registers). Each element becomes bf16(f32(e2m1(code)) * f32(2^(s - 127))),
// rounded to nearest even: the value transformers gives the weight when it loads such a checkpoint
// on a CPU, and what the runtime's load-time dequantization (mxfp4Data) writes. Both paths look
// every value up in one table of those results by scale byte and code (mxfp4_table, 8 KB, built
// with that very product and rounding), so each is exact for every scale without a branch: for
// 2 <= s <= 252 the code's bf16 value with s - 127 added to its exponent; outside, the denormal
// results of s = 0 and 1, the infinities of 4 and 6 at s = 253 and of 2 .. 6 at s = 254, and at
// s = 255 (2^128 = inf) inf, or NaN for the zero codes. Mechanism only: which weights are MXFP4
// is mixtilec's decision (mix.expert_ffn's f4E2M1FN operands).
//
// Layout (OCP Microscaling Formats v1.0, gpt-oss's `<name>_blocks` / `<name>_scales` rows): an
// [out, in] weight is `codes` [out, in / 2] bytes, element 2i of a row in the LOW nibble of its
// byte i and element 2i + 1 in the high one; e2m1 code c is {0, 0.5, 1, 1.5, 2, 3, 4, 6}[c & 7],
// negated when c & 8 (8 is -0); `scales` [out, in / 32] bytes, block j of a row (elements
// 32j .. 32j + 31) scaled by 2^(s - 127). `in` is a multiple of 32: the compiler guarantees it,
// and nothing here checks it.
//
// Conversion (AVX-512 BW): the 16 code bytes of a block widened to 32-bit lanes, each lane's high
// nibble moved into its upper 16-bit half, and VPERMW looks the 32 codes up in the block's 16-entry
// table row: four instructions and a 32-byte load from L1 per 32 weights. Elsewhere (AVX2 and the
// scalar builds, fma_f32 only) the same row is read byte by byte.
//
// Speed (Intel Emerald Rapids VM without AMX, 2 threads, gpt-oss-20b's experts: D = F = 2880,
// 32 experts, top-4, cold; MIXTILE_BENCH_COLD=1 bench_expert_ffn 2 2880 2880 1,4,16,64,512
// bf16,mxfp4 fma_f32,avx512_bf16 32 4, median ms; the VM read 27 GB/s): mxfp4 on avx512_bf16
// T=1 4.1, T=4 14.8, T=16 42.6, T=64 146, T=512 810; bf16 weights on this CPU's faster path
// (fma_f32) 11.8, 38.6, 82.3, 122, 633; mxfp4 on fma_f32 9.3, 33.5, 74.4, 155, 1013 (the f32
// GEMM re-packs its tokens for every slab, so mix-tile runs MXFP4 experts on avx512_bf16 wherever
// the CPU has it). At T=1 the fused GEMV reads 12.9 GB/s of codes and scales, 0.48 of the
// machine's rate: converting (~15 G weights/s per core from L2) and VDPBF16PS, at half the FMA
// rate on Intel, are the limit, not memory.
//
// API (namespace mixtile::cpu):
//
//   void dequantize_mxfp4_rows(uint16_t *dst, const uint8_t *codes, const uint8_t *scales, int64_t in,
//                              int64_t row0, int64_t rows);
//     rows [row0, row0 + rows) of the [out, in] MXFP4 weight into dst ([rows, in], bf16 bits)
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__AVX512F__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif

#include "convert.h"

namespace mixtile::cpu {

namespace detail {

constexpr int64_t kMxfp4Block = 32;  // elements per e8m0 scale (16 code bytes)

// e2m1 (OCP FP4: 1 sign, 2 exponent, 1 mantissa bits, no inf or NaN) -> f32, by code.
inline float e2m1_to_f32(uint8_t code) {
  static constexpr float kMagnitude[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float v = kMagnitude[code & 7];
  return (code & 8) ? -v : v;
}

// bf16(f32(e2m1(c)) * f32(2^(s - 127))) for every scale byte s and code c, a 32-byte row per s.
struct Mxfp4Table {
  alignas(64) uint16_t values[256][16];
};
inline const Mxfp4Table &mxfp4_table() {
  static const Mxfp4Table table = [] {
    Mxfp4Table t{};
    for (int s = 0; s < 256; ++s) {
      const float scale = std::ldexp(1.0f, s - 127);  // s = 0: the f32 denormal 2^-127; 255: inf
      for (int c = 0; c < 16; ++c) t.values[s][c] = f32_to_bf16_bits(e2m1_to_f32(static_cast<uint8_t>(c)) * scale);
    }
    return t;
  }();
  return table;
}

// One row's blocks [0, blocks), the portable way.
inline void dequantize_mxfp4_row_scalar(uint16_t *dst, const uint8_t *codes, const uint8_t *scales, int64_t blocks,
                                        const Mxfp4Table &t) {
  for (int64_t j = 0; j < blocks; ++j) {
    const uint16_t *v = t.values[scales[j]];
    for (int i = 0; i < 16; ++i) {
      const uint8_t b = codes[j * 16 + i];
      dst[j * 32 + 2 * i] = v[b & 15];
      dst[j * 32 + 2 * i + 1] = v[b >> 4];
    }
  }
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
// The 32 elements of one block (16 code bytes) as the bf16 values of `row` (its table row, 16
// entries by code): each byte widened to a 32-bit lane, its high nibble moved up by 12 bits into
// the lane's upper 16-bit half and the rest masked off, which gives the codes in element order
// as 16-bit indices; VPERMW looks them up (indices 0 .. 15: the row's 32 bytes, broadcast).
inline __m512i mxfp4_block_to_bf16(const uint8_t *codes, const uint16_t *row) {
  const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(codes)));
  const __m512i idx = _mm512_ternarylogic_epi32(b, _mm512_slli_epi32(b, 12), _mm512_set1_epi32(0x000f000f),
                                                0xa8);  // (b | b << 12) & 0x000f000f
  return _mm512_permutexvar_epi16(idx, _mm512_broadcast_i64x4(_mm256_load_si256(reinterpret_cast<const __m256i *>(row))));
}

inline void dequantize_mxfp4_row(uint16_t *dst, const uint8_t *codes, const uint8_t *scales, int64_t blocks,
                                 const Mxfp4Table &t) {
  for (int64_t j = 0; j < blocks; ++j)
    _mm512_storeu_si512(dst + j * 32, mxfp4_block_to_bf16(codes + j * 16, t.values[scales[j]]));
}
#else
inline void dequantize_mxfp4_row(uint16_t *dst, const uint8_t *codes, const uint8_t *scales, int64_t blocks,
                                 const Mxfp4Table &t) {
  dequantize_mxfp4_row_scalar(dst, codes, scales, blocks, t);
}
#endif

}  // namespace detail

inline void dequantize_mxfp4_rows(uint16_t *dst, const uint8_t *codes, const uint8_t *scales, int64_t in,
                                  int64_t row0, int64_t rows) {
  const detail::Mxfp4Table &t = detail::mxfp4_table();
  const int64_t blocks = in / detail::kMxfp4Block;
  for (int64_t q = 0; q < rows; ++q)
    detail::dequantize_mxfp4_row(dst + q * in, codes + (row0 + q) * (in / 2), scales + (row0 + q) * blocks, blocks, t);
}

}  // namespace mixtile::cpu
