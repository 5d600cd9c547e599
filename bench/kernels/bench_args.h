// Command-line pieces shared by the kernel benchmarks: comma lists of sizes and the MIXTILE_TILES
// override of a TileConfig. Benchmarks only; the kernels take their tiles from the compiler.
#pragma once

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
/// engine_stream_rows[,engine_panel_rows[,small_group_rows]]]]]] overrides those fields of
/// `tiles`, in that order (fields not given keep their values).
inline void apply_tiles_env(mixtile::cpu::TileConfig &tiles) {
  if (const char *env = std::getenv("MIXTILE_TILES"))
    std::sscanf(env, "%d,%d,%d,%d,%d,%d,%d,%d,%d,%d", &tiles.mc, &tiles.kc, &tiles.nc, &tiles.small_m_max,
                &tiles.engine_kc, &tiles.engine_mc, &tiles.small_prefetch_rows, &tiles.engine_stream_rows,
                &tiles.engine_panel_rows, &tiles.small_group_rows);
}

}  // namespace mixtile_bench
