// Pieces shared by the kernel benchmarks: comma lists of sizes, the MIXTILE_TILES override of a
// TileConfig, and evicting the caches before a cold call. Benchmarks only; the kernels take their
// tiles from the compiler.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "codegen/cpu/kernels/kernels.h"

namespace mixtile_bench {

/// "1,32,512" -> {1, 32, 512}; stops at the first item that is not a number.
inline std::vector<int64_t> int_list(const char *text) {
  std::vector<int64_t> values;
  for (const char *c = text; *c;) {
    char *end = nullptr;
    const int64_t v = std::strtoll(c, &end, 10);
    if (end == c) break;
    values.push_back(v);
    c = end;
    if (*c == ',') ++c;
  }
  return values;
}

/// MIXTILE_TILES=mc,kc,nc,small_m_max[,engine_kc[,engine_mc[,small_prefetch_rows[,
/// engine_stream_rows[,engine_panel_rows[,small_group_rows[,small_prefetch_l2_bytes[,small_dp_rows]]]]]]]] overrides those fields of
/// `tiles`, in that order (fields not given keep their values).
inline void apply_tiles_env(mixtile::cpu::TileConfig &tiles) {
  if (const char *env = std::getenv("MIXTILE_TILES"))
    std::sscanf(env, "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", &tiles.mc, &tiles.kc, &tiles.nc, &tiles.small_m_max,
                &tiles.engine_kc, &tiles.engine_mc, &tiles.small_prefetch_rows, &tiles.engine_stream_rows,
                &tiles.engine_panel_rows, &tiles.small_group_rows, &tiles.small_prefetch_l2_bytes,
                &tiles.small_dp_rows);
}

/// Reads max(min_bytes, twice the L3) with `threads` threads, a float per cache line, so the
/// next call finds none of its weights in cache.
inline void evict_caches(int threads, size_t min_bytes) {
  static std::vector<float> junk;
  if (junk.empty()) {
    const size_t l3 = static_cast<size_t>(std::max(0L, sysconf(_SC_LEVEL3_CACHE_SIZE)));
    junk.assign(std::max(min_bytes, 2 * l3) / sizeof(float), 1.0f);
  }
  float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
  for (size_t i = 0; i < junk.size(); i += 16) total += junk[i];
  static volatile float sink = 0;
  sink = sink + total;
}

}  // namespace mixtile_bench
