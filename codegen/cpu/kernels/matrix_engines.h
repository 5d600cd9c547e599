// bf16 matrix-engine GEMM tiles of the CPU kernel library: AMX (TDPBF16PS) and AVX512-BF16
// (VDPBF16PS) loops over row-major bf16 weights, the bf16 packing of activation rows they read,
// and the AMX tile permission. Mechanisms only: which path runs is the compiler's MatmulPath.
//
// Both engines compute transposed tiles: the weight is the LEFT operand, read in place from its
// row-major [out, in] storage (the read-only checkpoint mmap, never copied), and activations are
// packed once per call into "VNNI token blocks" (16 rows x depth, element (t, k) at
// block[(k / 2) * 32 + t * 2 + k % 2], depth zero-padded to a multiple of 32). The result of one
// tile is C^T[16 output columns][16 tokens]; epilogues receive it as `float c[16][16]` (row =
// output column) and transpose or pair it as their consumer needs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fp8.h"
#include "gemm.h"
#include "mxfp4.h"
#include "simd.h"

#if defined(__linux__) && (defined(__x86_64__) || defined(__i386__))
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__AMX_TILE__) || defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace mixtile::cpu {

namespace detail {
// Which bf16 engines this translation unit was built with (-mamx-tile -mamx-bf16, -mavx512bf16);
// the packing and epilogues need AVX-512F as well. MIXTILE_AMX_EMULATION: the tile instructions
// are a test's software model (test/helpers/amx_emulation.h), for CPUs without AMX.
#if defined(__AVX512F__) && defined(__AVX512BW__) && \
    ((defined(__AMX_TILE__) && defined(__AMX_BF16__)) || defined(MIXTILE_AMX_EMULATION))
#define MIXTILE_HAVE_AMX_BF16 1
constexpr bool kHaveAmxBf16 = true;
#else
constexpr bool kHaveAmxBf16 = false;
#endif
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512BF16__)
#define MIXTILE_HAVE_AVX512_BF16 1
constexpr bool kHaveAvx512Bf16 = true;
#else
constexpr bool kHaveAvx512Bf16 = false;
#endif
#if defined(MIXTILE_HAVE_AMX_BF16) || defined(MIXTILE_HAVE_AVX512_BF16)
#define MIXTILE_HAVE_BF16_ENGINE 1
#endif

// The rules of a MatmulPath, checked where a kernel is instantiated: the bf16 paths multiply bf16
// weights (fp8 and MXFP4 ones become bf16 first), and only in builds that enable their instructions (never a silent fallback).
template <WeightType W, MatmulPath Path>
struct MatmulPathCheck {
  static_assert(Path == MatmulPath::fma_f32 || W == WeightType::bf16 || W == WeightType::fp8_e4m3 ||
                    W == WeightType::mxfp4,
                "MatmulPath::avx512_bf16 and MatmulPath::amx_bf16 multiply bf16 weights only (fp8 and MXFP4 "
                "weights dequantized to bf16 on the way, fp8.h, mxfp4.h); f32 and f16 weights take "
                "MatmulPath::fma_f32");
  static_assert(Path != MatmulPath::amx_bf16 || kHaveAmxBf16,
                "MatmulPath::amx_bf16 is not enabled in this build: compile with -mamx-tile -mamx-bf16 "
                "-mavx512f -mavx512bw (e.g. -march=sapphirerapids)");
  static_assert(Path != MatmulPath::avx512_bf16 || kHaveAvx512Bf16,
                "MatmulPath::avx512_bf16 is not enabled in this build: compile with -mavx512bf16 "
                "-mavx512f -mavx512bw (e.g. -march=znver4 or -march=cooperlake)");
  static constexpr bool ok = true;
};
}  // namespace detail

/// Requests the AMX tile-data permission for this process once (Linux arch_prctl
/// ARCH_REQ_XCOMP_PERM) and says whether AMX tiles may be used. Thread-safe; false on builds
/// without -mamx-tile -mamx-bf16, on CPUs without AMX-BF16 and where the kernel refuses.
inline bool amx_ready() {
#if defined(MIXTILE_AMX_EMULATION)
  return true;
#elif defined(MIXTILE_HAVE_AMX_BF16) && defined(__linux__) && defined(__x86_64__)
  static const bool ready = [] {
    constexpr long kArchGetXcompPerm = 0x1022, kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    if (!__builtin_cpu_supports("avx512f")) return false;
    unsigned eax, ebx, ecx, edx;
    __asm__ volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(0));
    const bool amx_bf16 = (edx >> 22) & 1u, amx_tile = (edx >> 24) & 1u;
    if (!amx_bf16 || !amx_tile) return false;
    if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
    unsigned long features = 0;
    if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &features) != 0) return false;
    return ((features >> kXfeatureXtiledata) & 1ul) != 0;
  }();
  return ready;
#else
  return false;
#endif
}

namespace detail {

constexpr int kTokenBlock = 16;  // tokens per packed activation block (the N of a tile)
constexpr int kDepthStep = 32;   // bf16 depth of one tile product (the K of a tile)

inline int64_t padded_depth(int64_t k) { return (k + kDepthStep - 1) / kDepthStep * kDepthStep; }
// bf16 elements of one packed block of depth k.
inline int64_t packed_block_elems(int64_t k) { return padded_depth(k) * kTokenBlock; }

// Epilogues may split their tile into E::kTileParts parts (tile_part(b, col, ncols, c, u, part),
// part < kTileParts, together the same as tile()): amx_gemm_pass runs a token pair's epilogue
// part by part between the next pair's tile products, so that the vector units work while the
// tile unit does. Without kTileParts a whole tile() is one part.
template <class E, class = void>
struct EpilogueTileParts : std::integral_constant<int, 1> {};
template <class E>
struct EpilogueTileParts<E, std::void_t<decltype(E::kTileParts)>> : std::integral_constant<int, E::kTileParts> {};

// Per-thread scratch of the engine loops, carved from the caller's workspace.
struct EngineScratch {
  float *c;          // result tiles: kEngineResultFloats floats (AMX: two halves, amx_gemm_pass)
  uint16_t *a_edge;  // 2 weight tiles of 16 rows x 32 bf16 for ragged edges
  uint16_t *panel;   // one column step's weight tiles of one depth slice (AMX, see amx_gemm_pass)
};
constexpr int kEngineResultFloats = 8 * 256;
constexpr size_t kEngineScratchBytes = sizeof(float) * kEngineResultFloats + 2 * 16 * 32 * sizeof(uint16_t);
// Depth of one engine slice for TileConfig::engine_kc (a multiple of kDepthStep).
inline int64_t engine_slice_depth(int64_t engine_kc) {
  return std::max<int64_t>(kDepthStep, engine_kc / kDepthStep * kDepthStep);
}
// The shallowest and the deepest slice the engine loops take under `t` (engine_kc, and
// engine_l1_kc where engine_l1_rows is set): workspace sizes follow from them.
inline int64_t engine_min_slice(const TileConfig &t) {
  const int64_t kc = engine_slice_depth(t.engine_kc);
  return t.engine_l1_rows > 0 ? std::min(kc, engine_slice_depth(t.engine_l1_kc)) : kc;
}
inline int64_t engine_max_slice(const TileConfig &t) {
  const int64_t kc = engine_slice_depth(t.engine_kc);
  return t.engine_l1_rows > 0 ? std::max(kc, engine_slice_depth(t.engine_l1_kc)) : kc;
}
// Bytes of one thread's EngineScratch for the tiles `t`: the panel holds two weight tiles (2 KB)
// per depth step of the deepest slice.
inline size_t engine_scratch_bytes(const TileConfig &t) {
  return align64(kEngineScratchBytes) + static_cast<size_t>(engine_max_slice(t)) * 64;
}
inline EngineScratch carve_engine_scratch(char *p) {
  EngineScratch s;
  s.c = reinterpret_cast<float *>(p);
  s.a_edge = reinterpret_cast<uint16_t *>(p + sizeof(float) * kEngineResultFloats);
  s.panel = reinterpret_cast<uint16_t *>(p + align64(kEngineScratchBytes));
  return s;
}

// Floats of the partial-result buffer of one engine call over `cols` columns and `blocks` token
// blocks when its depth is sliced (K > kc): 32 x 32 results per column step and token pair.
inline int64_t engine_partial_floats(int64_t cols, int64_t blocks) {
  return (cols + 15) / 16 * 16 * (blocks + 2) * 32;  // both engines' layouts fit this bound
}
// Whether a GEMM over `blocks` token blocks streams its weights (TileConfig::engine_stream_rows):
// few tokens reuse each weight tile too little to hide DRAM behind the tile products, and the
// weights are best read once, row by row: the depth is not sliced (slices read half rows with a
// stride, and the partial results go out and back) and nothing is prefetched in software.
inline bool engine_streams(int64_t blocks, int64_t stream_rows) { return blocks * kTokenBlock <= stream_rows; }

// The most token blocks one pass of amx_gemm / dp_gemm covers out of `blocks`, passes of `mc` rows.
inline int64_t engine_pass_blocks(int64_t blocks, int64_t mc) {
  return std::min(blocks, std::max<int64_t>(3, mc / kTokenBlock));
}

#if defined(MIXTILE_HAVE_BF16_ENGINE)

// The first n of 16 32-bit lanes (n clamped to [0, 16]): masked loads of a row's last floats.
inline __mmask16 first_lanes16(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n > 0 ? __mmask16((1u << n) - 1) : __mmask16(0);
}

// The first n of 32 16-bit lanes (n clamped to [0, 32]): masked loads of a row's last bf16s.
inline __mmask32 first_lanes32(int64_t n) {
  return n >= 32 ? ~__mmask32(0) : n > 0 ? (__mmask32(1) << n) - 1 : __mmask32(0);
}

// Round-to-nearest-even f32 -> bf16 of 16 lanes, left in the low 16 bits of each 32-bit lane
// (NaN stays a quiet NaN). Plain AVX-512F so AMX builds need no -mavx512bf16 for it.
inline __m512i bf16_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  return _mm512_mask_or_epi32(r, nan, _mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
}

// 16 lanes of bf16 pairs (lo, hi): the VNNI element of 16 tokens for one k pair.
inline __m512i bf16_pairs(__m512 lo, __m512 hi) {
#if defined(__AVX512BF16__)
  // VCVTNE2PS2BF16 rounds to nearest even as bf16_bits does (denormal inputs count as zero):
  // [lo 0..15 | hi 0..15], then paired.
  alignas(64) static const uint16_t kInterleave[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                                       8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
  return _mm512_permutexvar_epi16(_mm512_load_si512(kInterleave),
                                  reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
#else
  return _mm512_or_si512(bf16_bits(lo), _mm512_slli_epi32(bf16_bits(hi), 16));
#endif
}

// 16x16 transpose of 32-bit lanes: gemm.h's transpose16x16 on integer vectors.
inline void transpose16x16_epi32(__m512i (&r)[16]) {
  __m512 f[16];
  for (int i = 0; i < 16; ++i) f[i] = _mm512_castsi512_ps(r[i]);
  transpose16x16(f);
  for (int k = 0; k < 16; ++k) r[k] = _mm512_castps_si512(f[k]);
}

// Packs up to 16 f32 rows (nullptr = zero row) of depth k into one VNNI token block of padded
// depth, rounding to bf16: per 32-deep step, each row's 16 pairs are one vector, and a 16x16
// transpose of 32-bit lanes turns 16 rows into the 16 k-pair rows of the block.
inline void pack_token_block(uint16_t *__restrict dst, const float *const *rows, int64_t k) {
  const int64_t kp = padded_depth(k);
#if !defined(__AVX512BF16__)
  alignas(64) static const uint16_t kLowHalves[32] = {0,  2,  4,  6,  8,  10, 12, 14, 16, 18, 20,
                                                      22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42,
                                                      44, 46, 48, 50, 52, 54, 56, 58, 60, 62};
  const __m512i idx = _mm512_load_si512(kLowHalves);
#endif
  for (int64_t k0 = 0; k0 < kp; k0 += kDepthStep) {
    const int64_t kv = std::min<int64_t>(kDepthStep, k - k0);  // may be <= 0 only if k == 0
    const __mmask16 m_lo = first_lanes16(kv), m_hi = first_lanes16(kv - 16);
    __m512i r[16];
    for (int t = 0; t < kTokenBlock; ++t) {
      if (rows[t] == nullptr) {
        r[t] = _mm512_setzero_si512();
        continue;
      }
      const __m512 a = _mm512_maskz_loadu_ps(m_lo, rows[t] + k0);
      const __m512 b = _mm512_maskz_loadu_ps(m_hi, rows[t] + k0 + 16);
      // a's and b's values in k order as bf16: 32-bit lane j = (k0 + 2j, k0 + 2j + 1).
#if defined(__AVX512BF16__)
      r[t] = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
#else
      r[t] = _mm512_permutex2var_epi16(bf16_bits(a), idx, bf16_bits(b));
#endif
    }
    transpose16x16_epi32(r);
    uint16_t *out = dst + k0 * kTokenBlock;
    for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(out + kk * 32, r[kk]);
  }
}


// One packed token block back in token order, 32 depths at a time: step(k0, r) with r[t] the 16
// pairs of token t, i.e. its bf16 values k0 .. k0 + 31 (the block's zero padding included).
template <class Step>
inline void for_each_unpacked_step(const uint16_t *__restrict src, int64_t k, Step &&step) {
  const int64_t kp = padded_depth(k);
  for (int64_t k0 = 0; k0 < kp; k0 += kDepthStep) {
    __m512i r[16];
    const uint16_t *in = src + k0 * kTokenBlock;
    for (int kk = 0; kk < 16; ++kk) r[kk] = _mm512_loadu_si512(in + kk * 32);
    transpose16x16_epi32(r);
    step(k0, r);
  }
}

// Inverse of pack_token_block for the rows that exist: rows[t] (nullptr = skip) receives the
// first k values of token t, widened back to f32.
inline void unpack_token_block(const uint16_t *__restrict src, float *const *rows, int64_t k) {
  for_each_unpacked_step(src, k, [&](int64_t k0, const __m512i (&r)[16]) {
    const int64_t kv = std::min<int64_t>(kDepthStep, k - k0);
    const __mmask16 m_lo = first_lanes16(kv), m_hi = first_lanes16(kv - 16);
    for (int t = 0; t < kTokenBlock; ++t) {
      if (rows[t] == nullptr) continue;
      const __m512i lo = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(r[t])), 16);
      const __m512i hi = _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(r[t], 1)), 16);
      _mm512_mask_storeu_ps(rows[t] + k0, m_lo, _mm512_castsi512_ps(lo));
      _mm512_mask_storeu_ps(rows[t] + k0 + 16, m_hi, _mm512_castsi512_ps(hi));
    }
  });
}

// The same into bf16 rows: rows[t] receives the padded_depth(k) values of token t as stored.
inline void unpack_token_block(const uint16_t *__restrict src, uint16_t *const *rows, int64_t k) {
  for_each_unpacked_step(src, k, [&](int64_t k0, const __m512i (&r)[16]) {
    for (int t = 0; t < kTokenBlock; ++t)
      if (rows[t] != nullptr) _mm512_storeu_si512(rows[t] + k0, r[t]);
  });
}

// Copies weight rows [0, nrows) x depth [k0, k0 + 32) into a zero-padded 16 x 32 tile: the
// weight is never read past its valid rows or depth (the checkpoint mmap may end right there).
inline void copy_weight_edge(uint16_t *__restrict dst, const uint16_t *w, int64_t ldw, int nrows, int64_t k0,
                             int64_t K) {
  std::memset(dst, 0, 16 * 32 * sizeof(uint16_t));
  const int64_t kv = std::min<int64_t>(kDepthStep, K - k0);
  if (kv <= 0) return;
  for (int r = 0; r < nrows; ++r) std::memcpy(dst + r * 32, w + r * ldw + k0, sizeof(uint16_t) * kv);
}

#endif  // MIXTILE_HAVE_BF16_ENGINE

// ---- AMX (TDPBF16PS) ------------------------------------------------------------------------------
//
// Measured on a 2-core Sapphire Rapids VM (D=1024, F=3584, E=8, top-2, gated SiLU, 2 threads):
// 1.3 TFLOP/s at 128 rows per expert, 1.6 at 512 (a good hour of that shared VM; it measured
// 2-3x less on others). Up to 3 rows per expert the weight-streaming vector path with software
// prefetch is faster (cpu-amx_bf16.json). A lone thread reached ~0.85 TFLOP/s, ~30% of the
// core's TDPBF16PS peak (~2.9): weight and token tiles came from L2, and the product order in
// amx_gemm_pass matters. On a Xeon whose two cores each have a tile unit (2026-12-02; 3.7
// TFLOP/s per core on registers) the same experts run at 2.2-2.3 TFLOP/s at 512 rows per expert
// with the weight panel kept in L1 (engine_l1_kc, T1 token loads), 1.5-1.7 before; 2.5-2.6 at
// T=2048 with each token pair's epilogue run between the next pair's products (AmxDeferredEpilogue).
//
// Tile registers: 0-3 results (C^T, 16 output columns x 16 tokens, f32), 4-5 weight tiles
// (16 rows x 32 depth, loaded in place with the weight's row stride), 6-7 token tiles (one
// 32-deep step of a packed block: 1 KB contiguous). Epilogue concept:
//   ep.tile(int64_t block, int64_t col, int ncols, const float *c, const float *c_up)
// gets C^T of output columns [col, col + ncols) for the 16 tokens of packed block `block`,
// c[j * 16 + t]; c_up is the up projection's tile in gated mode, nullptr otherwise.

#if defined(MIXTILE_HAVE_AMX_BF16)

// Palette 1, all eight tiles 16 rows x 64 bytes. Tile configuration is per thread: every thread
// calls this before its first tile instruction of a call and _tile_release() after its last.
// The configuration is a constant in memory, never built on the stack: GCC 12 does not count
// the 64 bytes LDTILECFG reads as used, and once a caller reused that stack slot (a lambda's
// captures) it dropped the stores of the tile shapes; the tiles came up unconfigured and the
// first tile instruction raised SIGILL.
struct AmxTileConfig {
  alignas(64) uint8_t bytes[64];
};
inline constexpr AmxTileConfig kAmxTileConfig = [] {
  AmxTileConfig c{};
  c.bytes[0] = 1;  // palette
  for (int t = 0; t < 8; ++t) {
    c.bytes[16 + 2 * t] = 64;  // colsb, little-endian uint16
    c.bytes[48 + t] = 16;      // rows
  }
  return c;
}();
inline void amx_configure_tiles() { _tile_loadconfig(kAmxTileConfig.bytes); }
inline void amx_release_tiles() { _tile_release(); }
// Result tiles 0-3 of a 2 x 2 step zeroed.
inline void amx_zero_results() {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
}

// A token tile (one 32-deep step of a packed block) into tile register `reg`; with `t1_tokens`
// in scope true, by TILELOADDT1: a token tile is read once per column step, and kept out of L1
// it leaves the column step's weight panel there (amx_gemm_pass).
#define MIXTILE_AMX_LOAD_TOKENS(reg, p) \
  do {                                  \
    if (t1_tokens) {                    \
      _tile_stream_loadd(reg, p, 64);   \
    } else {                            \
      _tile_loadd(reg, p, 64);          \
    }                                   \
  } while (0)

// One token pair's results waiting for their epilogue (amx_gemm_pass): C^T tiles in c (tiles 0/1:
// the first weight tile's columns for blocks b and b + 1, 2/3: the second's), run part by part.
template <bool Gated, class Epilogue>
struct AmxDeferredEpilogue {
  static constexpr int kParts = EpilogueTileParts<Epilogue>::value;
  Epilogue &ep;
  const float *c = nullptr;
  int64_t b = 0, col = 0;
  int n0 = 0, n1 = 0;
  int calls_per_block = 0;  // tile() calls per token block: gated 1, plain 1 or 2 (n1 > 0)
  int next = 0, total = 0;  // parts done, parts in all
  void start(const float *results, int64_t block, int64_t column, int cols0, int cols1, bool two) {
    c = results;
    b = block;
    col = column;
    n0 = cols0;
    n1 = cols1;
    calls_per_block = Gated || n1 == 0 ? 1 : 2;
    next = 0;
    total = (two ? 2 : 1) * calls_per_block * kParts;
  }
  // Runs parts until `upto` (clamped to the total) are done.
  void run_until(int upto) {
    for (upto = std::min(upto, total); next < upto; ++next) {
      const int call = next / kParts, part = next % kParts;
      const int j = call / calls_per_block, second = call % calls_per_block;
      const float *cj = c + j * 256 + second * 512;  // tiles 0/1: first weight tile, 2/3: second
      const int64_t cc = col + second * 16;
      const int n = second ? n1 : n0;
      const float *up = Gated ? cj + 512 : nullptr;
      if constexpr (kParts > 1) {
        ep.tile_part(b + j, cc, n, cj, up, part);
      } else {
        ep.tile(b + j, cc, n, cj, up);
      }
    }
  }
  void finish() { run_until(total); }
};

// Partial-result bytes of one group of column steps (amx_gemm_pass) when the pass's packed
// tokens fit kAmxGroupTokenBytes: the depth slices then run column group by column group, and
// the partial results of a group (column steps x token pairs x 4 KB) stay in L2.
// MIXTILE_AMX_GROUP_PARTIAL_BYTES: a test hook (kernel-library-amx-emulated.test makes every
// group one column step).
#ifndef MIXTILE_AMX_GROUP_PARTIAL_BYTES
#define MIXTILE_AMX_GROUP_PARTIAL_BYTES (int64_t(256) << 10)
#endif
constexpr int64_t kAmxGroupPartialBytes = MIXTILE_AMX_GROUP_PARTIAL_BYTES;
constexpr int64_t kAmxGroupTokenBytes = int64_t(1) << 20;
// Whether amx_gemm_pass over `blocks` token blocks of depth K runs its depth slices group of
// column steps by group (its packed tokens fit kAmxGroupTokenBytes) rather than over all columns;
// amx_gemm asks the same before it takes engine_l1_kc.
// Bytes of `blocks` packed token blocks over the whole depth K.
inline int64_t packed_token_bytes(int64_t blocks, int64_t K) {
  return blocks * packed_block_elems(K) * static_cast<int64_t>(sizeof(uint16_t));
}
inline bool amx_slices_grouped(int64_t blocks, int64_t K) { return packed_token_bytes(blocks, K) <= kAmxGroupTokenBytes; }
// The most partial-result bytes a GEMM may keep between its depth slices for it to take
// TileConfig::engine_l1_kc (amx_gemm): about half the 2 MB L2.
constexpr int64_t kAmxL1PartialBytes = int64_t(1) << 20;

// Columns [c0, c1) of C^T = W · Xᵀ (gated: gate rows from w, up rows from w2) over packed token
// blocks [b0, b1) of depth K; ldw = K (row-major weights). Gated steps 16 columns (gate tile +
// up tile), plain 32 (two weight tiles); both run two token blocks per step: 4 result tiles.
// Depth is split into slices of `kc` (a multiple of 32): within a slice the weight rows of one
// column step are reused over every token pair from L2, and the slice of packed tokens
// (blocks x kc) stays in L2 across column steps; result tiles of unfinished slices wait in
// `partial` (engine_partial_floats(...) floats). One slice when K <= kc (then partial is unused).
// `stream`: the weights stream from DRAM once for few tokens (engine_streams): one slice, no
// software prefetch. `panel`: the first token pair of each column step stores the weight tiles
// it loaded into s.panel, contiguous tile by tile, and the other pairs load them from there
// (amx_gemm's panel_rows).
template <bool Gated, class Epilogue>
void amx_gemm_pass(const uint16_t *w, const uint16_t *w2, int64_t K, const uint16_t *packed, int64_t b0, int64_t b1,
                   int64_t c0, int64_t c1, int64_t kc, bool stream, bool panel, float *partial, const EngineScratch &s,
                   Epilogue &ep) {
  constexpr int kColStep = Gated ? 16 : 32;
  const int64_t ldw = K;
  const int64_t blk = packed_block_elems(K);
  const int64_t full_steps = K / kDepthStep;
  const int ld_bytes = static_cast<int>(ldw * sizeof(uint16_t));
  const int64_t kp = padded_depth(K);
  kc = stream ? kp : engine_slice_depth(kc);
  const int64_t pairs = (b1 - b0 + 1) / 2;
  uint16_t *edge0 = s.a_edge, *edge1 = s.a_edge + 16 * 32;
  // Loop order: groups of column steps, then depth slices, then the group's column steps. When
  // the pass's packed tokens (all depth) fit kAmxGroupTokenBytes they stay in L2 whatever the
  // order, and a group is the column steps whose partial results fit kAmxGroupPartialBytes (a
  // depth slice's partials come back from L2, not from DRAM); larger token sets take all columns
  // as one group, so that one slice of tokens stays in L2 while every column step passes it.
  // D=1024 F=3584 (gated and down) x 512 tokens of one expert, 2 threads, weights warm, depth
  // slices of 512 with T1 token loads: gated 3.5-3.9 TFLOP/s in groups of 256 KB against
  // 3.35-3.54 in one group; down 3.0-3.1 in one group against 1.6 column step by column step.
  const int64_t group_steps = kp <= kc || !amx_slices_grouped(b1 - b0, K)
                                  ? (c1 - c0 + kColStep - 1) / kColStep
                                  : std::max<int64_t>(1, kAmxGroupPartialBytes / (pairs * 4096));
  // Token tiles by TILELOADDT1 unless streaming (MIXTILE_AMX_LOAD_TOKENS): with the slice's
  // weight panel (32 KB at 512 deep) in L1 and the token tiles streaming past it from L2, half
  // the tile loads hit L1 (the same loop, D=1024 F=3584 x 512 tokens: 2.5-2.7 TFLOP/s with
  // plain loads at any depth slice, 3.2-3.6 with T1 loads and slices of 512).
  const bool t1_tokens = !stream;
  // The epilogue of a token pair's finished results runs during the next pair's depth steps (in
  // parts, AmxDeferredEpilogue), its results in the other half of s.c.
  AmxDeferredEpilogue<Gated, Epilogue> pending{ep};
  int result_half = 0;
  for (int64_t g0 = c0; g0 < c1; g0 += group_steps * kColStep) {
    const int64_t g1 = std::min(c1, g0 + group_steps * kColStep);
    for (int64_t k_begin = 0; k_begin < kp; k_begin += kc) {
      const int64_t k_end = std::min(kp, k_begin + kc);
      const bool first = k_begin == 0, last = k_end >= kp;
      for (int64_t col = g0; col < g1; col += kColStep) {
        const uint16_t *a0 = w + col * ldw;
        const uint16_t *a1 = Gated ? w2 + col * ldw : w + (col + 16) * ldw;
        const int n0 = static_cast<int>(std::min<int64_t>(16, c1 - col));
        const int n1 = Gated ? n0 : static_cast<int>(std::clamp<int64_t>(c1 - col - 16, 0, 16));
        const bool ragged = n0 < 16 || n1 < 16;
        // The weight rows of the next (column step, slice) in this loop's order come from DRAM:
        // prefetch them into L2 while this one runs (32 rows x one line per depth step, spread
        // over the token pairs). Not when streaming: then the prefetches only compete with the
        // tile loads for the L1 miss buffers.
        int64_t next = col + kColStep, nk_begin = k_begin, nk_end = k_end;
        if (next >= g1) {
          if (k_end < kp) {
            next = g0;
            nk_begin = k_end;
            nk_end = std::min(kp, k_end + kc);
          } else {
            nk_begin = 0;
            nk_end = std::min(kp, kc);
          }
        }
        const int next_rows = stream ? 0 : static_cast<int>(std::clamp<int64_t>(c1 - next, 0, Gated ? 16 : 32));
        const uint16_t *pf0 = w + next * ldw, *pf1 = Gated ? w2 + next * ldw : w + (next + 16) * ldw;
        const int64_t pf_lines = next_rows * (Gated ? 2 : 1) * ((nk_end - nk_begin) / kDepthStep);
        const int64_t pf_per_step = (pf_lines + pairs * ((k_end - k_begin) / kDepthStep) - 1) /
                                    std::max<int64_t>(1, pairs * ((k_end - k_begin) / kDepthStep));
        // Prefetch cursor: line pf_done is depth pf_k, row pf_row of rows_all (gate rows, then up
        // rows; plain: the first 16 rows, then the second tile's), kept incrementally (no division
        // per line inside the depth loop).
        const int rows_all = next_rows * (Gated ? 2 : 1), first_rows = Gated ? next_rows : 16;
        int64_t pf_done = 0, pf_k = nk_begin;
        int pf_row = 0;
        // The token pairs reuse this column step's weight tiles. Read in place they are 16 rows a
        // weight row apart (4 KiB at K = 2048: every row in the same L1 set) and come from L2
        // for every pair; with `panel` the first pair stores the tiles it loaded into s.panel,
        // contiguous tile by tile, and the later pairs load them from there (the copy costs two
        // tile stores per depth step of one pair, nothing on the vector units).
        for (int64_t b = b0; b < b1; b += 2) {
          const bool two = b + 1 < b1;
          const bool fill = panel && b == b0, from_panel = panel && b > b0;
          const uint16_t *x0 = packed + b * blk;
          const uint16_t *x1 = x0 + blk;
          float *cp = last && first ? nullptr : partial + (((col - g0) / kColStep) * pairs + (b - b0) / 2) * 1024;
          if (first) {
            amx_zero_results();
          } else {
            _tile_loadd(0, cp, 64);
            _tile_loadd(1, cp + 256, 64);
            _tile_loadd(2, cp + 512, 64);
            _tile_loadd(3, cp + 768, 64);
          }
          // Partial results of the next token pair (contiguous after this one) may be out of L2:
          // prefetch them, two lines per depth step.
          const char *pf_c = cp != nullptr ? reinterpret_cast<const char *>(cp + 1024) : nullptr;
          int pf_c_line = 0;
          // The panel's two weight tiles of depth step k (2 KB per step of the slice).
          auto panel_at = [&](int64_t k) { return s.panel + (k - k_begin) / kDepthStep * 1024; };
          // The weight tiles of depth step k: from the panel, from an edge copy (ragged columns,
          // the depth's last partial step) or in place; the edge copy may overwrite the buffers
          // once the previous step's tiles are loaded.
          auto sources = [&](int64_t k, const uint16_t *&t0, const uint16_t *&t1, int &ld_tiles) {
            if (from_panel) {
              t0 = panel_at(k);
              t1 = t0 + 512;
              ld_tiles = 64;
            } else if (ragged || k >= full_steps * kDepthStep) {
              copy_weight_edge(edge0, a0, ldw, n0, k, K);
              if (n1 > 0) copy_weight_edge(edge1, a1, ldw, n1, k, K);
              t0 = edge0;
              t1 = edge1;
              ld_tiles = 64;
            } else {
              t0 = a0 + k;
              t1 = a1 + k;
              ld_tiles = ld_bytes;
            }
          };
          // The pending epilogue's parts spread over this pair's depth steps.
          const int64_t depth_steps = (k_end - k_begin) / kDepthStep;
          int64_t step_index = 0;
          const uint16_t *s0, *s1;
          int ld;
          sources(k_begin, s0, s1, ld);
          _tile_loadd(4, s0, ld);
          MIXTILE_AMX_LOAD_TOKENS(6, x0 + k_begin * kTokenBlock);
          for (int64_t k0 = k_begin; k0 < k_end; k0 += kDepthStep) {
            if (pf_c != nullptr && pf_c_line < 64) {
              _mm_prefetch(pf_c + 64 * pf_c_line++, _MM_HINT_T0);
              _mm_prefetch(pf_c + 64 * pf_c_line++, _MM_HINT_T0);
            }
            for (int64_t i = 0; i < pf_per_step && pf_done < pf_lines; ++i, ++pf_done) {
              const uint16_t *row = pf_row < first_rows ? pf0 + pf_row * ldw : pf1 + (pf_row - first_rows) * ldw;
              _mm_prefetch(reinterpret_cast<const char *>(row + pf_k), _MM_HINT_T1);
              if (++pf_row == rows_all) {
                pf_row = 0;
                pf_k += kDepthStep;
              }
            }
            // Order: each product issues as soon as its two operands are in, the second weight
            // tile loads while the first two products run (~14% over loading all four tiles
            // first), and the next step's first weight and token tiles load before this step's
            // last product (tile instructions execute in order: 0.79-0.86x the time of loading
            // them at the top of the step, the kernel alone).
            _tile_dpbf16ps(0, 4, 6);
            if (pending.next < pending.total)
              pending.run_until(static_cast<int>(pending.total * ++step_index / depth_steps));
            if (two) {
              MIXTILE_AMX_LOAD_TOKENS(7, x1 + k0 * kTokenBlock);
              _tile_dpbf16ps(1, 4, 7);
            }
            if (n1 > 0) {  // plain steps at the last columns may have no second weight tile
              _tile_loadd(5, s1, ld);
              _tile_dpbf16ps(2, 5, 6);
            }
            if (fill) {
              uint16_t *pt = panel_at(k0);
              _tile_stored(4, pt, 64);
              if (n1 > 0) _tile_stored(5, pt + 512, 64);
            }
            if (k0 + kDepthStep < k_end) {
              sources(k0 + kDepthStep, s0, s1, ld);
              _tile_loadd(4, s0, ld);
              MIXTILE_AMX_LOAD_TOKENS(6, x0 + (k0 + kDepthStep) * kTokenBlock);
            }
            if (n1 > 0 && two) _tile_dpbf16ps(3, 5, 7);
          }
          pending.finish();
          float *c = last ? s.c + result_half * 1024 : cp;
          _tile_stored(0, c, 64);
          _tile_stored(1, c + 256, 64);
          _tile_stored(2, c + 512, 64);
          _tile_stored(3, c + 768, 64);
          if (!last) continue;
          pending.start(c, b, col, n0, n1, two);
          result_half ^= 1;
        }
      }
    }
  }
  pending.finish();
}

// Token blocks in passes of at most `mc` rows (rounded to a pair of blocks): the packed tokens
// of one pass x kc stay in L2 while every column step of the thread streams past them.
// `stream_rows`: TileConfig::engine_stream_rows (engine_streams). `panel_rows`:
// TileConfig::engine_panel_rows: GEMMs of at least that many rows (> 0) that do not stream reuse
// each column step's weight tiles from s.panel. In place a tile's 16 rows lie a weight row apart
// (all in one or two L1 sets), and in a checkpoint they are rarely 64-byte aligned: safetensors
// aligns its data to 8 bytes, so each 64-byte tile row spans two cache lines and every pair
// loads 32 lines per tile from L2. Same process, old/new alternating: linear 2048 x 2048 ->
// 4096, weights cold, 66.8 -> 50.9 ms; expert FFN D=1024 F=3584 with weights 32 bytes off a
// line, T=2048 of 8 experts top-2, warm, 0.76x the time; Qwen3-30B-A3B's shape at T=2048, cold,
// 0.85x (aligned weights: 0.92x at 512 rows of one expert).
// `l1_rows`, `l1_kc`: TileConfig::engine_l1_rows / engine_l1_kc: GEMMs of at least l1_rows rows
// (> 0) that do not stream slice their depth by l1_kc instead of kc. With 512-deep slices a
// column step's panel (32 KB) stays in L1 and the token tiles, loaded with the T1 hint, stream
// past it from L2 (amx_gemm_pass); the slices' partial results cost a round trip through L2,
// which pays off only when many token pairs reuse each panel. Expert FFN D=1024 F=3584, weights
// 8 bytes off a line, 2 threads, 512 against 1024: 512 rows per expert 48-50 against 57-60 ms
// (T=2048 of 8 experts top-2), 256 rows 25-27 against 29 ms; Qwen3-30B-A3B's experts at 256
// rows (T=4096, cold) 243 against 252-258 ms; at 128 rows 145-148 against 140-144 and 64-100
// rows (DeepSeek-V3-like, T=2048 cold) 254-256 against 221-229: hence from 256 rows.
// `whole_bytes`: TileConfig::engine_whole_depth_bytes: a GEMM that neither streams nor takes l1_kc
// runs its depth as one slice when a pass's packed tokens over the whole depth (blocks x padded
// K x 32 bytes) fit whole_bytes: no partial results go out to L2 and back between slices, and
// each column step's weight rows are read once, whole. bench/kernels/ab.sh, weights cold, 2
// threads, against slices of 1024: Qwen3-30B-A3B's experts T=2048 (~128 rows, gate/up depth
// 2048: 512 KB of tokens) 1.10x; DeepSeek-V3-like T=2048 (~64-128 rows, down depth 2048) 1.11x;
// Mixtral-style T=512 (128 rows, down depth 3584: 917 KB) 1.035x, but T=768 (192 rows: 1.4 MB)
// 0.94x: hence 1 MB, half the L2.
template <bool Gated, class Epilogue>
void amx_gemm(const uint16_t *w, const uint16_t *w2, int64_t K, const uint16_t *packed, int64_t b0, int64_t b1,
              int64_t c0, int64_t c1, int64_t kc, int64_t mc, int64_t stream_rows, int64_t panel_rows, int64_t l1_rows,
              int64_t l1_kc, int64_t whole_bytes, float *partial, const EngineScratch &s, Epilogue &ep) {
  const bool stream = engine_streams(b1 - b0, stream_rows);
  const bool panel = !stream && panel_rows > 0 && (b1 - b0) * kTokenBlock >= panel_rows;
  const int64_t most = std::max<int64_t>(2, mc / kTokenBlock / 2 * 2);
  const int64_t passes = (b1 - b0 + most - 1) / most;  // equal passes: no short tail re-reading W
  const int64_t step = passes > 1 ? ((b1 - b0 + passes - 1) / passes + 1) / 2 * 2 : most;
  const int64_t pass_blocks = std::min(b1 - b0, step);
  bool l1 = false;
  if (!stream && l1_rows > 0 && (b1 - b0) * kTokenBlock >= l1_rows) {
    // Only where the slices' partial results stay in L2 (amx_gemm_pass's order): a linear map
    // over 512 rows of depth 2048 has 2 MB of tokens, so its slices would run over all columns
    // and spill partials of every column step (a 2048 x 50304 lm head: 50 MB) to DRAM
    // (bench_linear, 512 rows: 56 -> 68-74 ms with slices of 512 there).
    constexpr int64_t kColStep = Gated ? 16 : 32;
    const int64_t partial_bytes = amx_slices_grouped(pass_blocks, K)
                                      ? kAmxGroupPartialBytes
                                      : (c1 - c0 + kColStep - 1) / kColStep * ((pass_blocks + 1) / 2) * 4096;
    if (partial_bytes <= kAmxL1PartialBytes) kc = l1_kc, l1 = true;
  }
  if (!stream && !l1 && whole_bytes > 0 && packed_token_bytes(pass_blocks, K) <= whole_bytes) kc = padded_depth(K);
  for (int64_t g = b0; g < b1; g += step)
    amx_gemm_pass<Gated>(w, w2, K, packed, g, std::min(b1, g + step), c0, c1, kc, stream, panel, partial, s, ep);
}

#endif  // MIXTILE_HAVE_AMX_BF16

// ---- AVX512-BF16 (VDPBF16PS) ---------------------------------------------------------------------
//
// Meant for CPUs with AVX512-BF16 but no AMX (Zen 4/5: VDPBF16PS at twice the FMA's flops). On
// Sapphire Rapids VDPBF16PS issues at half the rate of VFMADD231PS (measured 86 vs 172 GFLOP/s per
// core), so there this path is slower than fma_f32 and a compiler should not pick it.
//
// The same transposed product on vector registers: an accumulator holds one output column for the
// 16 tokens of a packed block; each step broadcasts one bf16 pair of a weight row (read in place)
// and multiplies it with the 16 token pairs of that depth (one 64-byte row of the block).
// Register tile: R columns (x2 matrices when gated) x NB token blocks.

#if defined(MIXTILE_HAVE_AVX512_BF16)

constexpr int kDpBlocks = 3;                  // NB: token blocks per register tile
template <bool Gated>
constexpr int kDpColumns = Gated ? 4 : 8;     // R: output columns per register tile

// Whether dp_tile may run a half-empty last token block on 256-bit vectors (AVX512-VL).
#if defined(__AVX512VL__)
constexpr bool kDpHalfBlocks = true;
#else
constexpr bool kDpHalfBlocks = false;
#endif

// Depth [k_begin, k_end) of one register tile (k_begin even); starts from `init` (nullptr: zero)
// and ends in `partial` ([NB][G][R][16], when not the last slice) or, on the last slice, in
// `out` as 16 x 16 tiles [NB][G] (row = column r) for the epilogue.
// Half: the last of the NB blocks has tokens in its first 8 lanes only (the last block of a
// segment of 16q + 1 .. 16q + 8 rows). Its accumulators are 256-bit vectors over those 8 tokens
// (the first 32 bytes of each 64-byte row of the block), the other 8 lanes of its results are
// zero. Zen 4 runs a 512-bit VDPBF16PS as two 256-bit halves, so the half block costs half a
// block there (and as much as a whole one where 512-bit vectors are native, no worse than before).
template <int G, int R, int NB, bool Half = false>
inline void dp_tile(const uint16_t *const *wr, int64_t K, int64_t k_begin, int64_t k_end,
                    const uint16_t *const *xb, const float *init, float *partial, float *out,
                    const uint16_t *const *next = nullptr) {
  static_assert(!Half || kDpHalfBlocks, "half blocks need AVX512-VL");
  constexpr int NF = NB - (Half ? 1 : 0);  // blocks on 512-bit accumulators
  constexpr int H = NB - 1;                // the half block, when Half
  __m512 acc[G][R][NF > 0 ? NF : 1];
  [[maybe_unused]] __m256 acch[G][R];
  for (int g = 0; g < G; ++g)
    for (int r = 0; r < R; ++r) {
      for (int b = 0; b < NF; ++b)
        acc[g][r][b] = init ? _mm512_loadu_ps(init + ((b * G + g) * R + r) * 16) : _mm512_setzero_ps();
      if constexpr (Half) acch[g][r] = init ? _mm256_loadu_ps(init + ((H * G + g) * R + r) * 16) : _mm256_setzero_ps();
    }
  const int64_t pair_end = std::min(k_end, K) / 2;
  for (int64_t kk0 = k_begin / 2; kk0 < pair_end; kk0 += 16) {
    if (next != nullptr)
      for (int i = 0; i < G * R; ++i) _mm_prefetch(reinterpret_cast<const char *>(next[i] + 2 * kk0), _MM_HINT_T1);
    const int64_t kk1 = std::min(pair_end, kk0 + 16);
    for (int64_t kk = kk0; kk < kk1; ++kk) {
      __m512i xv[NF > 0 ? NF : 1];
#pragma GCC unroll 4
      for (int b = 0; b < NF; ++b) xv[b] = _mm512_loadu_si512(xb[b] + kk * 32);
      [[maybe_unused]] __m256i xh;
      if constexpr (Half) xh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(xb[H] + kk * 32));
#pragma GCC unroll 16
      for (int g = 0; g < G; ++g)
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
          int32_t pair;
          std::memcpy(&pair, wr[g * R + r] + 2 * kk, sizeof pair);
          const __m512i wv = _mm512_set1_epi32(pair);
#pragma GCC unroll 4
          for (int b = 0; b < NF; ++b)
            acc[g][r][b] = _mm512_dpbf16_ps(acc[g][r][b], (__m512bh)wv, (__m512bh)xv[b]);
          if constexpr (Half)
            acch[g][r] = _mm256_dpbf16_ps(acch[g][r], (__m256bh)_mm512_castsi512_si256(wv), (__m256bh)xh);
        }
    }
  }
  if ((K & 1) && k_end >= K) {  // last odd depth: the pair's upper weight is past the row, use 0
    const int64_t kk = K / 2;
    __m512i xv[NF > 0 ? NF : 1];
    for (int b = 0; b < NF; ++b) xv[b] = _mm512_loadu_si512(xb[b] + kk * 32);
    [[maybe_unused]] __m256i xh;
    if constexpr (Half) xh = _mm256_loadu_si256(reinterpret_cast<const __m256i *>(xb[H] + kk * 32));
    for (int g = 0; g < G; ++g)
      for (int r = 0; r < R; ++r) {
        const __m512i wv = _mm512_set1_epi32(static_cast<int32_t>(wr[g * R + r][K - 1]));
        for (int b = 0; b < NF; ++b)
          acc[g][r][b] = _mm512_dpbf16_ps(acc[g][r][b], (__m512bh)wv, (__m512bh)xv[b]);
        if constexpr (Half)
          acch[g][r] = _mm256_dpbf16_ps(acch[g][r], (__m256bh)_mm512_castsi512_si256(wv), (__m256bh)xh);
      }
  }
  if (k_end < K) {
    for (int g = 0; g < G; ++g)
      for (int r = 0; r < R; ++r) {
        for (int b = 0; b < NF; ++b) _mm512_storeu_ps(partial + ((b * G + g) * R + r) * 16, acc[g][r][b]);
        if constexpr (Half) _mm256_storeu_ps(partial + ((H * G + g) * R + r) * 16, acch[g][r]);
      }
    return;
  }
  for (int g = 0; g < G; ++g) {
    for (int b = 0; b < NF; ++b)
      for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + ((b * G + g) * 16 + r) * 16, acc[g][r][b]);
    if constexpr (Half)
      for (int r = 0; r < R; ++r) {
        _mm256_storeu_ps(out + ((H * G + g) * 16 + r) * 16, acch[g][r]);
        _mm256_storeu_ps(out + ((H * G + g) * 16 + r) * 16 + 8, _mm256_setzero_ps());
      }
  }
}

// Same contract as amx_gemm_pass. Within a depth slice the weight rows of one column step (R rows x
// kc) stay in L1 across the token blocks, and the packed tokens of the slice stream from L2. Unless
// the GEMM streams, the first token group of a column step prefetches the next step's weight rows
// into L2 (one line per row every 16 depth pairs): Zen 4, cold weights, alternating binaries,
// OLMoE's (64 rows per expert), Mixtral's (128, 512) and Qwen3-30B-A3B's (128) expert FFNs took
// 0.95-1.02x the time (11 of 15 pairs faster; prefetcht0 instead measured the same).
// `last_rows` (1 .. 16): the tokens in block b1 - 1; at most 8 run it as a half block (dp_tile).
template <bool Gated, class Epilogue>
void dp_gemm_pass(const uint16_t *w, const uint16_t *w2, int64_t K, const uint16_t *packed, int64_t b0,
                  int64_t b1, int last_rows, int64_t c0, int64_t c1, int64_t kc, bool stream, float *partial,
                  const EngineScratch &s, Epilogue &ep) {
  constexpr int G = Gated ? 2 : 1, R = kDpColumns<Gated>, NB = kDpBlocks;
  static_assert(G * NB * 256 <= kEngineResultFloats, "result tiles fit the scratch");
  static_assert(16 % R == 0 && G * 16 <= 32, "partial results fit engine_partial_floats");
  const int64_t blk = packed_block_elems(K);
  kc = stream ? padded_depth(K) : engine_slice_depth(kc);
  // Groups of NB token blocks; n = 3q + 1 blocks end in two groups of 2 instead of 3 and 1 (a
  // one-block tile runs at about half the rate of the others). Same group count either way.
  const int64_t n_blocks = b1 - b0, groups = (n_blocks + NB - 1) / NB;
  const bool two_pairs = NB == 3 && n_blocks >= 4 && n_blocks % 3 == 1;
  auto group_begin = [&](int64_t g) {
    return two_pairs && g == groups - 1 ? b1 - 2 : b0 + g * NB;
  };
  auto group_blocks = [&](int64_t g) {
    return two_pairs && g >= groups - 2 ? 2 : static_cast<int>(std::min<int64_t>(NB, b1 - b0 - g * NB));
  };
  for (int64_t k_begin = 0; k_begin < K; k_begin += kc) {
    const int64_t k_end = std::min(K, k_begin + kc);
    for (int64_t col = c0; col < c1; col += R) {
      const int ncols = static_cast<int>(std::min<int64_t>(R, c1 - col));
      const uint16_t *wr[G * R];
      for (int r = 0; r < R; ++r) {  // missing columns repeat the last valid row; never stored
        const int64_t row = col + std::min(r, ncols - 1);
        wr[r] = w + row * K;
        if constexpr (Gated) wr[R + r] = w2 + row * K;
      }
      const uint16_t *nx[G * R];
      const bool pf_next = !stream && col + R < c1;
      for (int r = 0; r < R; ++r) {
        const int64_t row = std::min(col + R + r, c1 - 1);
        nx[r] = w + row * K;
        if constexpr (Gated) nx[R + r] = w2 + row * K;
      }
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t b = group_begin(g);
        const int nb = group_blocks(g);
        const uint16_t *const *next = pf_next && g == 0 ? nx : nullptr;
        const uint16_t *xb[NB];
        for (int j = 0; j < NB; ++j) xb[j] = packed + (b + std::min(j, nb - 1)) * blk;
        float *part = k_begin == 0 && k_end >= K
                          ? nullptr
                          : partial + (((col - c0) / R) * groups + g) * (G * R * NB * 16);
        const float *init = k_begin == 0 ? nullptr : part;
        // One register tile of nb blocks, the last one half (dp_tile) when `half` says so.
        auto tile = [&](auto half) {
          constexpr bool H = decltype(half)::value;
          if (nb == 3) {
            dp_tile<G, R, 3, H>(wr, K, k_begin, k_end, xb, init, part, s.c, next);
          } else if (nb == 2) {
            dp_tile<G, R, 2, H>(wr, K, k_begin, k_end, xb, init, part, s.c, next);
          } else {
            dp_tile<G, R, 1, H>(wr, K, k_begin, k_end, xb, init, part, s.c, next);
          }
        };
        if constexpr (kDpHalfBlocks) {
          if (g == groups - 1 && last_rows <= kTokenBlock / 2) {
            tile(std::true_type{});
          } else {
            tile(std::false_type{});
          }
        } else {
          tile(std::false_type{});
        }
        if (k_end < K) continue;
        for (int j = 0; j < nb; ++j) {
          const float *c = s.c + j * G * 256;
          ep.tile(b + j, col, ncols, c, Gated ? c + 256 : nullptr);
        }
      }
    }
  }
}

// `last_rows` (1 .. 16): the tokens in block b1 - 1 (dp_gemm_pass).
template <bool Gated, class Epilogue>
void dp_gemm(const uint16_t *w, const uint16_t *w2, int64_t K, const uint16_t *packed, int64_t b0, int64_t b1,
             int last_rows, int64_t c0, int64_t c1, int64_t kc, int64_t mc, int64_t stream_rows, float *partial,
             const EngineScratch &s, Epilogue &ep) {
  const bool stream = engine_streams(b1 - b0, stream_rows);
  const int64_t most = std::max<int64_t>(kDpBlocks, mc / kTokenBlock / kDpBlocks * kDpBlocks);
  const int64_t passes = (b1 - b0 + most - 1) / most;
  const int64_t step = passes > 1 ? ((b1 - b0 + passes - 1) / passes + kDpBlocks - 1) / kDpBlocks * kDpBlocks : most;
  for (int64_t g = b0; g < b1; g += step) {
    const int64_t ge = std::min(b1, g + step);
    dp_gemm_pass<Gated>(w, w2, K, packed, g, ge, ge == b1 ? last_rows : kTokenBlock, c0, c1, kc, stream, partial,
                        s, ep);
  }
}

// ---- AVX512-BF16 small path (dot form) ------------------------------------------------------------
//
// Segments of at most TileConfig::small_m_max rows on the avx512_bf16 path. The register tiles
// above hold 16 tokens in a vector's lanes, so a segment of 4 rows would leave 3/4 of every
// VDPBF16PS idle; gemm.h's small path instead widens the weights and multiplies at the FMA rate.
// Here one vector holds 32 consecutive depths of one weight row (read in place) and another the
// same depths of one token row (bf16, row-major, zero-padded to padded_depth(K)); VDPBF16PS adds
// their 16 pair products into that (token, column)'s accumulator, whose lanes are summed once at
// the end. Every weight vector feeds the MT token rows of a block, as in gemm.h's small path
// (the same driver, gemm_small_with), at twice its rate on Zen 4/5. One reduction per sum: a
// shuffle tree summing 16 accumulators at once measured 5-8% slower (Zen 4, bench_expert_ffn).
//
// Prefetch: blocks of TileConfig::small_prefetch_rows rows or more prefetch their weight streams
// into L2 (prefetcht1) kDpSmallPrefetchBytes ahead along the row (full-depth blocks: several rows
// ahead, as the rows a thread reads lie one after the other), k-blocked ones as gemm.h's small
// path. With MT token rows per weight vector the loop runs MT times slower per byte than a GEMV,
// its out-of-order window covers MT times fewer weight lines, and on Zen 4 the hardware
// prefetchers alone left 3-8-row blocks at 10-20 GB/s of 34-56. Measured on the 2-core AMD EPYC
// (Zen 4), 2 threads, weights cold, old and new builds alternating (bench/kernels/bench_linear,
// lm head 2048 x 50304): 3 rows 9.5-11.7 -> 6.1-6.8 ms, 4 rows 10.5-11.9 -> 5.7-7.0, 8 rows
// 11.2-14.4 -> 9.0-10.7, 16 rows 15.8-20.0 -> 13.7-16.1 (gemm.h's prefetcht0 2 KB ahead, and
// prefetcht1 4 KB ahead from 8 rows, before); 2048 -> 4096 x 2048 at 4 rows 0.77-0.92 -> 0.60-0.73
// ms; prefetcht1 8 / 16 / 32 / 64 KB ahead: 32 KB best or tied. Experts (bench_expert_ffn, cold):
// Mixtral-style T=32 7.4-8.1 -> 6.7-7.4 ms, OLMoE-style T=32 (4 rows per expert) 30-32 -> 21-27.
// One or two rows stream as fast on the hardware prefetchers alone (avx512_bf16's table starts the
// prefetch at 3 rows).
#ifndef MIXTILE_DP_PF_BYTES
#define MIXTILE_DP_PF_BYTES 32768
#endif
constexpr int64_t kDpSmallPrefetchBytes = MIXTILE_DP_PF_BYTES;
template <bool Gated, int MT, int R>
inline void dp_small_block(int64_t K, const uint16_t *const *x, const uint16_t *const *wg,
                           const uint16_t *const *wu, float *out, SmallPrefetch prefetch) {
  constexpr int G = Gated ? 2 : 1;
  constexpr int U = std::max(1, std::min(4, 8 / (MT * G * R)));  // independent chains per sum
  int64_t pf = prefetch.ahead;  // always into L2
  if (pf == kPrefetchByRows) pf = kDpSmallPrefetchBytes / static_cast<int64_t>(sizeof(uint16_t));
  __m512 acc[U][G][MT][R];
  for (int u = 0; u < U; ++u)
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < MT; ++t)
        for (int r = 0; r < R; ++r) acc[u][g][t][r] = _mm512_setzero_ps();
  int64_t k = 0;
  for (; k + U * kDepthStep <= K; k += U * kDepthStep) {
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      const int64_t ku = k + u * kDepthStep;
      __m512i wv[G][R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        if (pf != 0) {  // loop-invariant: GCC unswitches the loop on it
          prefetch_weights<true>(wg[r] + ku + pf);
          if constexpr (Gated) prefetch_weights<true>(wu[r] + ku + pf);
        }
        wv[0][r] = _mm512_loadu_si512(wg[r] + ku);
        if constexpr (Gated) wv[G - 1][r] = _mm512_loadu_si512(wu[r] + ku);
      }
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) {
        const __m512i xv = _mm512_loadu_si512(x[t] + ku);
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r)
            acc[u][g][t][r] = _mm512_dpbf16_ps(acc[u][g][t][r], (__m512bh)wv[g][r], (__m512bh)xv);
      }
    }
  }
  for (; k < K; k += kDepthStep) {  // the last depths: weights masked (never read past a row)
    const __mmask32 m = first_lanes32(K - k);
    for (int t = 0; t < MT; ++t) {
      const __m512i xv = _mm512_maskz_loadu_epi16(m, x[t] + k);
      for (int g = 0; g < G; ++g)
        for (int r = 0; r < R; ++r) {
          const __m512i wv = _mm512_maskz_loadu_epi16(m, (g == 0 ? wg[r] : wu[r]) + k);
          acc[0][g][t][r] = _mm512_dpbf16_ps(acc[0][g][t][r], (__m512bh)wv, (__m512bh)xv);
        }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) {
        __m512 v = acc[0][g][t][r];
        for (int u = 1; u < U; ++u) v = _mm512_add_ps(v, acc[u][g][t][r]);
        out[(g * kSmallMaxTokens + t) * kSmallChunk + r] = _mm512_reduce_add_ps(v);
      }
}

struct DpSmallKernel {
  using X = uint16_t;
  using Wt = uint16_t;
  static constexpr int kDepthMultiple = kDepthStep;
  template <bool Gated, int MT, int R>
  static void block(int64_t K, const X *const *x, const Wt *const *wg, const Wt *const *wu, float *out,
                    SmallPrefetch pf) {
    dp_small_block<Gated, MT, R>(K, x, wg, wu, out, pf);
  }
};

// gemm_small on bf16 token rows `a` (each zero-padded to padded_depth(K), see round_rows_bf16 and
// unpack_token_block): the same blocks, chunks, k-slices, prefetch and epilogue calls.
template <bool Gated, class Epilogue>
void dp_small(int64_t M, int64_t K, const RowsOf<uint16_t> &a, const uint16_t *b, const uint16_t *b2, int64_t ldb,
              int64_t c0, int64_t c1, const TileConfig &tiles, Epilogue &ep) {
  gemm_small_with<DpSmallKernel, Gated>(M, K, a, b, b2, ldb, c0, c1, tiles, ep);
}

// ---- AVX512-BF16 small path over fp8 weights ----------------------------------------------------
//
// Segments of at most small_m_max rows with block-scaled e4m3 weights (fp8.h) whose scale blocks
// span whole depth steps (block_cols a multiple of 32, DeepSeek-V3's and Qwen3's 128): the codes
// are read in place, 32 per step, turned into their exact values as bf16 in registers
// (e4m3_to_bf16_exact), and VDPBF16PS sums them with the token rows depth block by depth block;
// each block's f32 partial sum is multiplied by its scale. The weights multiplied are thus
// exactly code * scale, where the slab path (expert_ffn's with_weight_columns) multiplies
// bf16(code * scale): the two differ by the weights' bf16 rounding, 2^-9 relative at most.
// A step converts 32 codes in ~9 instructions, so the loop is slower per byte than dp_small's and
// its out-of-order window covers fewer lines: it always prefetches its streams into L2
// kDpFp8PrefetchBytes ahead (a decode GEMV prototype on the Zen 4 VM, 2 threads, cold: 12 -> 18-20
// G codes/s with 16 KB). Token groups of at most 4 rows (two accumulator sets per row).
#ifndef MIXTILE_DP_FP8_PF_BYTES
#define MIXTILE_DP_FP8_PF_BYTES 16384
#endif
constexpr int64_t kDpFp8PrefetchBytes = MIXTILE_DP_FP8_PF_BYTES;
constexpr int kDpFp8MaxTokens = 4;

template <bool Gated, int MT, int R>
inline void dp_fp8_block(int64_t K, int64_t bc, const uint16_t *const *x, const uint8_t *const *wg,
                         const uint8_t *const *wu, const float *const *sg, const float *const *su, float *out) {
  constexpr int G = Gated ? 2 : 1;
  __m512 acc[G][MT][R];
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) acc[g][t][r] = _mm512_setzero_ps();
  for (int64_t kb = 0, j = 0; kb < K; kb += bc, ++j) {
    const int64_t ke = std::min(K, kb + bc);
    __m512 part[G][MT][R];
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < MT; ++t)
        for (int r = 0; r < R; ++r) part[g][t][r] = _mm512_setzero_ps();
    for (int64_t k = kb; k < ke; k += kDepthStep) {
      const __mmask32 m = first_lanes32(ke - k);
      __m512i wv[G][R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        for (int g = 0; g < G; ++g) {
          const uint8_t *row = (g == 0 ? wg[r] : wu[r]) + k;
          if ((k & 63) == 0) _mm_prefetch(reinterpret_cast<const char *>(row + kDpFp8PrefetchBytes), _MM_HINT_T1);
          wv[g][r] = e4m3_to_bf16_exact(m == ~__mmask32(0) ? _mm256_loadu_si256(reinterpret_cast<const __m256i *>(row))
                                                           : _mm256_maskz_loadu_epi8(m, row));
        }
      }
#pragma GCC unroll 8
      for (int t = 0; t < MT; ++t) {
        const __m512i xv = _mm512_loadu_si512(x[t] + k);  // rows are zero-padded to whole steps
#pragma GCC unroll 8
        for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r)
            part[g][t][r] = _mm512_dpbf16_ps(part[g][t][r], (__m512bh)wv[g][r], (__m512bh)xv);
      }
    }
    for (int g = 0; g < G; ++g)
      for (int r = 0; r < R; ++r) {
        const __m512 sv = _mm512_set1_ps((g == 0 ? sg[r] : su[r])[j]);
        for (int t = 0; t < MT; ++t) acc[g][t][r] = _mm512_fmadd_ps(part[g][t][r], sv, acc[g][t][r]);
      }
  }
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) out[(g * kSmallMaxTokens + t) * kSmallChunk + r] = _mm512_reduce_add_ps(acc[g][t][r]);
}

template <bool Gated, int R>
inline void dp_fp8_dispatch(int mt, int64_t K, int64_t bc, const uint16_t *const *x, const uint8_t *const *wg,
                            const uint8_t *const *wu, const float *const *sg, const float *const *su, float *out) {
  switch (mt) {
    case 1: dp_fp8_block<Gated, 1, R>(K, bc, x, wg, wu, sg, su, out); break;
    case 2: dp_fp8_block<Gated, 2, R>(K, bc, x, wg, wu, sg, su, out); break;
    case 3: dp_fp8_block<Gated, 3, R>(K, bc, x, wg, wu, sg, su, out); break;
    default: dp_fp8_block<Gated, 4, R>(K, bc, x, wg, wu, sg, su, out); break;
  }
}

// Whether dp_small_fp8 takes weights of these scale blocks (whole depth steps per block).
inline bool dp_fp8_blocks_fit(const Fp8Scales &s) { return s.block_cols > 0 && s.block_cols % kDepthStep == 0; }

// C = A · Wᵀ over columns [c0, c1) for the M bf16 token rows `a` (zero-padded to
// padded_depth(K)) and e4m3 weights b (b2: the up projection when gated) of depth K with their
// block scales; epilogue calls as dp_small's, chunks of kSmallChunk columns.
template <bool Gated, class Epilogue>
void dp_small_fp8(int64_t M, int64_t K, const RowsOf<uint16_t> &a, const uint8_t *b, const uint8_t *b2,
                  const Fp8Scales &s, const Fp8Scales &s2, int64_t c0, int64_t c1, Epilogue &ep) {
  constexpr int G = Gated ? 2 : 1;
  constexpr int R = Gated ? 1 : 2;
  alignas(64) float buf[G * kSmallMaxTokens * kSmallChunk];
  const int64_t col_blocks = (K + s.block_cols - 1) / s.block_cols;
  for (int64_t n0 = c0; n0 < c1; n0 += kSmallChunk) {
    const int ncols = static_cast<int>(std::min<int64_t>(kSmallChunk, c1 - n0));
    for (int64_t m = 0; m < M; m += kDpFp8MaxTokens) {
      const int mt = static_cast<int>(std::min<int64_t>(kDpFp8MaxTokens, M - m));
      const uint16_t *x[kDpFp8MaxTokens];
      for (int t = 0; t < kDpFp8MaxTokens; ++t) x[t] = a.row(m + std::min(t, mt - 1));
      for (int j = 0; j < ncols; j += R) {
        const int nr = std::min(R, ncols - j);
        const uint8_t *wg[R], *wu[R];
        const float *sg[R], *su[R];
        for (int r = 0; r < R; ++r) {
          const int64_t row = n0 + j + std::min(r, nr - 1);
          wg[r] = b + row * K;
          sg[r] = s.scales + (row / s.block_rows) * col_blocks;
          wu[r] = Gated ? b2 + row * K : nullptr;
          su[r] = Gated ? s2.scales + (row / s2.block_rows) * col_blocks : nullptr;
        }
        if (nr == R) {
          dp_fp8_dispatch<Gated, R>(mt, K, s.block_cols, x, wg, wu, sg, su, buf + j);
        } else {
          dp_fp8_dispatch<Gated, 1>(mt, K, s.block_cols, x, wg, wu, sg, su, buf + j);
        }
      }
      for (int t = 0; t < mt; ++t)
        ep.row(m + t, n0, ncols, buf + t * kSmallChunk, Gated ? buf + (kSmallMaxTokens + t) * kSmallChunk : nullptr);
    }
  }
}

// ---- AVX512-BF16 small path over MXFP4 weights --------------------------------------------------
//
// Segments of at most 4 rows with MXFP4 weights (mxfp4.h): the codes are read in place, one block
// of 32 (16 bytes) per depth step, and turned into their values as bf16 in registers by a VPERMW
// through the block's row of mxfp4_table (mxfp4_block_to_bf16), which VDPBF16PS multiplies with
// the token rows. The table holds the scaled values, bf16(e2m1 * 2^(s - 127)), so the weights
// multiplied are exactly the slab path's and no per-block partial sums are kept: a step costs a
// scale byte, a 32-byte table row from L1 and four vector instructions per weight row, where
// scaling each block's partial sum (dp_fp8_block's way, with the unscaled values) would add an
// FMA per accumulator and step. Like dp_small_block, U independent chains per sum keep
// VDPBF16PS's latency off the path when the rows are few. The loop is slower per byte than
// dp_small's (a byte holds two weights), so it prefetches its code and scale streams into L2
// kDpMxfp4PrefetchBytes ahead, as dp_fp8_block does (the fp8 GEMV's 16 KB at half the bytes per
// weight; not tuned yet: MIXTILE_DP_MXFP4_PF_BYTES).
#ifndef MIXTILE_DP_MXFP4_PF_BYTES
#define MIXTILE_DP_MXFP4_PF_BYTES 8192
#endif
constexpr int64_t kDpMxfp4PrefetchBytes = MIXTILE_DP_MXFP4_PF_BYTES;
constexpr int kDpMxfp4MaxTokens = 4;

// One depth step (block j) of U: the weight rows' values, then every token row's products.
template <bool Gated, int MT, int R>
inline void dp_mxfp4_step(int64_t j, const uint16_t *const *x, const uint8_t *const *wg, const uint8_t *const *wu,
                          const uint8_t *const *sg, const uint8_t *const *su, const Mxfp4Table &table,
                          __m512 (&acc)[Gated ? 2 : 1][MT][R]) {
  constexpr int G = Gated ? 2 : 1;
  __m512i wv[G][R];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g) {
      const uint8_t *codes = g == 0 ? wg[r] : wu[r];
      const uint8_t *scales = g == 0 ? sg[r] : su[r];
      if ((j & 3) == 0) _mm_prefetch(reinterpret_cast<const char *>(codes + j * 16 + kDpMxfp4PrefetchBytes), _MM_HINT_T1);
      if ((j & 31) == 0) _mm_prefetch(reinterpret_cast<const char *>(scales + j + kDpMxfp4PrefetchBytes / 16), _MM_HINT_T1);
      wv[g][r] = mxfp4_block_to_bf16(codes + j * 16, table.values[scales[j]]);
    }
#pragma GCC unroll 8
  for (int t = 0; t < MT; ++t) {
    const __m512i xv = _mm512_loadu_si512(x[t] + j * kMxfp4Block);
#pragma GCC unroll 2
    for (int g = 0; g < G; ++g)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[g][t][r] = _mm512_dpbf16_ps(acc[g][t][r], (__m512bh)wv[g][r], (__m512bh)xv);
  }
}

template <bool Gated, int MT, int R>
inline void dp_mxfp4_block(int64_t K, const uint16_t *const *x, const uint8_t *const *wg, const uint8_t *const *wu,
                           const uint8_t *const *sg, const uint8_t *const *su, const Mxfp4Table &table, float *out) {
  constexpr int G = Gated ? 2 : 1;
  constexpr int U = std::max(1, std::min(4, 8 / (MT * G * R)));  // independent chains per sum
  __m512 acc[U][G][MT][R];
  for (int u = 0; u < U; ++u)
    for (int g = 0; g < G; ++g)
      for (int t = 0; t < MT; ++t)
        for (int r = 0; r < R; ++r) acc[u][g][t][r] = _mm512_setzero_ps();
  const int64_t blocks = K / kMxfp4Block;
  int64_t j = 0;
  for (; j + U <= blocks; j += U)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) dp_mxfp4_step<Gated, MT, R>(j + u, x, wg, wu, sg, su, table, acc[u]);
  for (; j < blocks; ++j) dp_mxfp4_step<Gated, MT, R>(j, x, wg, wu, sg, su, table, acc[0]);
  for (int g = 0; g < G; ++g)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < R; ++r) {
        __m512 v = acc[0][g][t][r];
        for (int u = 1; u < U; ++u) v = _mm512_add_ps(v, acc[u][g][t][r]);
        out[(g * kSmallMaxTokens + t) * kSmallChunk + r] = _mm512_reduce_add_ps(v);
      }
}

template <bool Gated, int R>
inline void dp_mxfp4_dispatch(int mt, int64_t K, const uint16_t *const *x, const uint8_t *const *wg,
                              const uint8_t *const *wu, const uint8_t *const *sg, const uint8_t *const *su,
                              const Mxfp4Table &table, float *out) {
  switch (mt) {
    case 1: dp_mxfp4_block<Gated, 1, R>(K, x, wg, wu, sg, su, table, out); break;
    case 2: dp_mxfp4_block<Gated, 2, R>(K, x, wg, wu, sg, su, table, out); break;
    case 3: dp_mxfp4_block<Gated, 3, R>(K, x, wg, wu, sg, su, table, out); break;
    default: dp_mxfp4_block<Gated, 4, R>(K, x, wg, wu, sg, su, table, out); break;
  }
}

// C = A · Wᵀ over columns [c0, c1) for the M bf16 token rows `a` (zero-padded to
// padded_depth(K)) and MXFP4 weights b (b2: the up projection when gated) of depth K (a multiple
// of 32) with their e8m0 scales s (s2) ([rows, K / 32] bytes); epilogue calls as dp_small's,
// chunks of kSmallChunk columns.
template <bool Gated, class Epilogue>
void dp_small_mxfp4(int64_t M, int64_t K, const RowsOf<uint16_t> &a, const uint8_t *b, const uint8_t *b2,
                    const uint8_t *s, const uint8_t *s2, int64_t c0, int64_t c1, Epilogue &ep) {
  constexpr int G = Gated ? 2 : 1;
  constexpr int R = Gated ? 1 : 2;
  alignas(64) float buf[G * kSmallMaxTokens * kSmallChunk];
  const Mxfp4Table &table = mxfp4_table();
  const int64_t row_bytes = K / 2, row_scales = K / kMxfp4Block;
  for (int64_t n0 = c0; n0 < c1; n0 += kSmallChunk) {
    const int ncols = static_cast<int>(std::min<int64_t>(kSmallChunk, c1 - n0));
    for (int64_t m = 0; m < M; m += kDpMxfp4MaxTokens) {
      const int mt = static_cast<int>(std::min<int64_t>(kDpMxfp4MaxTokens, M - m));
      const uint16_t *x[kDpMxfp4MaxTokens];
      for (int t = 0; t < kDpMxfp4MaxTokens; ++t) x[t] = a.row(m + std::min(t, mt - 1));
      for (int j = 0; j < ncols; j += R) {
        const int nr = std::min(R, ncols - j);
        const uint8_t *wg[R], *wu[R], *sg[R], *su[R];
        for (int r = 0; r < R; ++r) {
          const int64_t row = n0 + j + std::min(r, nr - 1);
          wg[r] = b + row * row_bytes;
          sg[r] = s + row * row_scales;
          wu[r] = Gated ? b2 + row * row_bytes : nullptr;
          su[r] = Gated ? s2 + row * row_scales : nullptr;
        }
        if (nr == R) {
          dp_mxfp4_dispatch<Gated, R>(mt, K, x, wg, wu, sg, su, table, buf + j);
        } else {
          dp_mxfp4_dispatch<Gated, 1>(mt, K, x, wg, wu, sg, su, table, buf + j);
        }
      }
      for (int t = 0; t < mt; ++t)
        ep.row(m + t, n0, ncols, buf + t * kSmallChunk, Gated ? buf + (kSmallMaxTokens + t) * kSmallChunk : nullptr);
    }
  }
}

// Rows [0, rows) of `src` rounded to bf16 (as pack_token_block rounds them) into dst, row i at
// dst + i * padded_depth(k), zero-padded.
inline void round_rows_bf16(uint16_t *__restrict dst, const RowSource &src, int64_t rows, int64_t k) {
  const int64_t kp = padded_depth(k);
  for (int64_t i = 0; i < rows; ++i) {
    const float *in = src.row(i);
    uint16_t *out = dst + i * kp;
    for (int64_t k0 = 0; k0 < kp; k0 += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(first_lanes16(k - k0), in + k0);
      _mm256_storeu_si256(reinterpret_cast<__m256i *>(out + k0), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
    }
  }
}

#endif  // MIXTILE_HAVE_AVX512_BF16

}  // namespace detail
}  // namespace mixtile::cpu
