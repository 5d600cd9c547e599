// A software model of the AMX tile instructions the kernel library uses (LDTILECFG, TILELOADD,
// TILESTORED, TILEZERO, TDPBF16PS, TILERELEASE), for testing the library's AMX loops on CPUs
// without AMX (Zen 4/5, older Xeons). Force-included ahead of the test source:
//
//   g++ -march=native -include test/helpers/amx_emulation.h ...
//
// It replaces GCC's tile intrinsics (macros and inline functions in <immintrin.h>, which would
// assemble the real instructions) with these functions and defines MIXTILE_AMX_EMULATION, which
// makes matrix_engines.h build MatmulPath::amx_bf16 without -mamx-tile -mamx-bf16 and
// amx_ready() answer true. The rest of the AMX path (packing, epilogues) is AVX-512F/BW and runs
// natively. The model follows the Intel SDM: per-thread tile registers shaped by the loaded
// configuration (palette 1, 8 tiles), loads and stores of rows x colsb bytes with the given
// stride, TDPBF16PS's row-by-row pair products accumulated in f32 (DAZ and FTZ as the hardware
// does). Every rule whose violation raises #UD on the hardware (an instruction before a
// configuration, a tile number outside 0-7, shapes that do not fit) aborts with a message; loads
// and stores touch exactly the bytes the hardware would, so a sanitizer build sees any access
// out of bounds. Speed is not modelled.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#undef _tile_loadd
#undef _tile_stream_loadd
#undef _tile_stored
#undef _tile_zero
#undef _tile_dpbf16ps

#define MIXTILE_AMX_EMULATION 1

namespace mixtile_amx_emulation {

struct TileFile {
  bool configured = false;
  uint8_t rows[8] = {};
  uint16_t colsb[8] = {};
  alignas(64) uint8_t data[8][16][64] = {};
};
inline thread_local TileFile tiles;

[[noreturn]] inline void fault(const char *what, int t) {
  std::fprintf(stderr, "amx emulation: %s (tile %d): the hardware raises #UD here\n", what, t);
  std::abort();
}

inline void check(int t, const char *op) {
  if (!tiles.configured) fault(op, t);
  if (t < 0 || t > 7) fault("tile number outside 0-7", t);
  if (tiles.rows[t] == 0 || tiles.colsb[t] == 0) fault("tile not configured", t);
}

inline void loadconfig(const void *config) {
  const auto *b = static_cast<const uint8_t *>(config);
  if (b[0] == 0) {  // palette 0: the init state, tiles unconfigured
    tiles = TileFile{};
    return;
  }
  if (b[0] != 1) fault("palette other than 1", -1);
  if (b[1] != 0) fault("start_row not 0", -1);
  for (int i = 2; i < 16; ++i)
    if (b[i] != 0) fault("reserved configuration byte not 0", -1);
  TileFile f;
  f.configured = true;
  for (int t = 0; t < 16; ++t) {
    const uint16_t colsb = static_cast<uint16_t>(b[16 + 2 * t] | b[17 + 2 * t] << 8);
    const uint8_t rows = b[48 + t];
    if (t >= 8) {
      if (colsb != 0 || rows != 0) fault("configuration of a tile past 7", t);
      continue;
    }
    if (colsb > 64 || rows > 16 || (colsb == 0) != (rows == 0)) fault("tile shape outside 16 x 64 bytes", t);
    f.colsb[t] = colsb;
    f.rows[t] = rows;
  }
  tiles = f;
}

inline void release() { tiles = TileFile{}; }

inline void load(int t, const void *base, long stride) {
  check(t, "TILELOADD before LDTILECFG");
  const auto *p = static_cast<const uint8_t *>(base);
  std::memset(tiles.data[t], 0, sizeof tiles.data[t]);
  for (int r = 0; r < tiles.rows[t]; ++r) std::memcpy(tiles.data[t][r], p + r * stride, tiles.colsb[t]);
}

inline void store(int t, void *base, long stride) {
  check(t, "TILESTORED before LDTILECFG");
  auto *p = static_cast<uint8_t *>(base);
  for (int r = 0; r < tiles.rows[t]; ++r) std::memcpy(p + r * stride, tiles.data[t][r], tiles.colsb[t]);
}

inline void zero(int t) {
  check(t, "TILEZERO before LDTILECFG");
  std::memset(tiles.data[t], 0, sizeof tiles.data[t]);
}

// bf16 -> f32 with denormals read as zero.
inline float bf16_daz(uint16_t h) {
  if ((h & 0x7f80u) == 0) h &= 0x8000u;
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}
inline float ftz(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  if ((bits & 0x7f800000u) == 0) bits &= 0x80000000u;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// TDPBF16PS dst, a, b: dst[m][n] += sum_k a[m][2k] * b[k][2n] + a[m][2k+1] * b[k][2n+1].
inline void dpbf16ps(int dst, int a, int b) {
  check(dst, "TDPBF16PS before LDTILECFG");
  check(a, "TDPBF16PS before LDTILECFG");
  check(b, "TDPBF16PS before LDTILECFG");
  if (dst == a || dst == b || a == b) fault("TDPBF16PS with a tile used twice", dst);
  if (tiles.rows[a] != tiles.rows[dst] || tiles.colsb[b] != tiles.colsb[dst] || tiles.colsb[a] % 4 != 0 ||
      tiles.colsb[dst] % 4 != 0 || tiles.colsb[a] / 4 != tiles.rows[b])
    fault("TDPBF16PS shapes do not fit", dst);
  const int m_rows = tiles.rows[dst], n_cols = tiles.colsb[dst] / 4, k_pairs = tiles.colsb[a] / 4;
  for (int m = 0; m < m_rows; ++m) {
    float acc[16];
    std::memcpy(acc, tiles.data[dst][m], sizeof acc);
    const auto *ar = reinterpret_cast<const uint16_t *>(tiles.data[a][m]);
    for (int k = 0; k < k_pairs; ++k) {
      const auto *br = reinterpret_cast<const uint16_t *>(tiles.data[b][k]);
      const float a0 = bf16_daz(ar[2 * k]), a1 = bf16_daz(ar[2 * k + 1]);
      for (int n = 0; n < n_cols; ++n) {
        acc[n] = ftz(acc[n] + a0 * bf16_daz(br[2 * n]));
        acc[n] = ftz(acc[n] + a1 * bf16_daz(br[2 * n + 1]));
      }
    }
    std::memset(tiles.data[dst][m], 0, 64);
    std::memcpy(tiles.data[dst][m], acc, 4 * n_cols);
  }
  for (int m = m_rows; m < 16; ++m) std::memset(tiles.data[dst][m], 0, 64);  // rows past the shape
}

}  // namespace mixtile_amx_emulation

#define _tile_loadconfig(config) ::mixtile_amx_emulation::loadconfig(config)
#define _tile_release() ::mixtile_amx_emulation::release()
#define _tile_loadd(t, base, stride) ::mixtile_amx_emulation::load((t), (base), (stride))
#define _tile_stream_loadd(t, base, stride) ::mixtile_amx_emulation::load((t), (base), (stride))
#define _tile_stored(t, base, stride) ::mixtile_amx_emulation::store((t), (base), (stride))
#define _tile_zero(t) ::mixtile_amx_emulation::zero(t)
#define _tile_dpbf16ps(dst, a, b) ::mixtile_amx_emulation::dpbf16ps((dst), (a), (b))
