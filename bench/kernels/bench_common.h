// Pieces shared by the kernel benchmarks: comma lists of sizes, the tiles mixtilec would give a
// kernel (its tuning table) and the MIXTILE_TILES override of them, and evicting the caches before
// a cold call. Benchmarks only; the kernels take their tiles from the compiler.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

/// The TileConfig fields a tuning bucket may set (codegen/cpu/EmitCpp.cpp, kCpuTileFields), by
/// name, in MIXTILE_TILES's order.
struct TileField {
  const char *name;
  int mixtile::cpu::TileConfig::*field;
};
inline constexpr TileField kTileFields[] = {
    {"mc", &mixtile::cpu::TileConfig::mc},
    {"kc", &mixtile::cpu::TileConfig::kc},
    {"nc", &mixtile::cpu::TileConfig::nc},
    {"small_m_max", &mixtile::cpu::TileConfig::small_m_max},
    {"engine_kc", &mixtile::cpu::TileConfig::engine_kc},
    {"engine_mc", &mixtile::cpu::TileConfig::engine_mc},
    {"small_prefetch_rows", &mixtile::cpu::TileConfig::small_prefetch_rows},
    {"engine_stream_rows", &mixtile::cpu::TileConfig::engine_stream_rows},
    {"engine_panel_rows", &mixtile::cpu::TileConfig::engine_panel_rows},
    {"small_group_rows", &mixtile::cpu::TileConfig::small_group_rows},
    {"small_prefetch_l2_bytes", &mixtile::cpu::TileConfig::small_prefetch_l2_bytes},
    {"small_dp_rows", &mixtile::cpu::TileConfig::small_dp_rows},
    {"engine_l1_rows", &mixtile::cpu::TileConfig::engine_l1_rows},
    {"engine_l1_kc", &mixtile::cpu::TileConfig::engine_l1_kc},
    {"engine_whole_depth_bytes", &mixtile::cpu::TileConfig::engine_whole_depth_bytes}};

/// MIXTILE_TILES=mc,kc,nc,small_m_max[,engine_kc[,engine_mc[,small_prefetch_rows[,
/// engine_stream_rows[,engine_panel_rows[,small_group_rows[,small_prefetch_l2_bytes[,small_dp_rows[,engine_l1_rows[,
/// engine_l1_kc[,engine_whole_depth_bytes]]]]]]]]]]] overrides those fields of
/// `tiles`, in that order (fields not given keep their values).
inline void apply_tiles_env(mixtile::cpu::TileConfig &tiles) {
  const char *env = std::getenv("MIXTILE_TILES");
  if (env == nullptr) return;
  const std::vector<int64_t> values = int_list(env);
  for (size_t i = 0; i < values.size() && i < std::size(kTileFields); ++i)
    tiles.*kTileFields[i].field = static_cast<int>(values[i]);
}

/// The tuning table mix-tile reads for a kernel on `path` on this CPU (passes/CpuTarget.cpp,
/// cpuTuningTable): the matrix path's own, or for f32 FMA the Intel or the default one.
inline std::string tuning_table_name(mixtile::cpu::MatmulPath path) {
  using mixtile::cpu::MatmulPath;
  if (path == MatmulPath::amx_bf16) return "cpu-amx_bf16";
  if (path == MatmulPath::avx512_bf16) return "cpu-avx512_bf16";
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line))
    if (line.rfind("vendor_id", 0) == 0) return line.find("GenuineIntel") != std::string::npos ? "cpu-intel" : "cpu";
  return "cpu";
}

/// The tiles mixtilec gives kernel `kind` ("moe_experts", "linear", ...) on `path` for `tokens`
/// tokens: default_tile_config(tokens), then the fields of the first bucket of the tuning table
/// (passes/tuning/<table>.json, beside this file's checkout; MIXTILE_TUNING_DIR moves it) whose
/// max_tokens holds them, as the emitted tiles_*() functions apply it (codegen/cpu/EmitCpp.cpp),
/// then MIXTILE_TILES. A table that is missing or malformed ends the benchmark: timing a path on
/// tiles the compiler would never emit is what this replaces (the engine paths ran on fma_f32's
/// defaults, e.g. AMX at 32 rows per expert on the GEMV path where mixtilec uses tiles from 4).
inline mixtile::cpu::TileConfig compiler_tiles(const char *kind, mixtile::cpu::MatmulPath path, int64_t tokens) {
  mixtile::cpu::TileConfig tiles = mixtile::cpu::default_tile_config(tokens);
  std::string dir;
  if (const char *env = std::getenv("MIXTILE_TUNING_DIR")) {
    dir = env;
  } else {
    const std::string here = __FILE__;  // <root>/bench/kernels/bench_common.h
    const size_t cut = here.rfind("bench/kernels/");
    dir = (cut == std::string::npos ? std::string() : here.substr(0, cut)) + "passes/tuning";
  }
  const std::string file = dir + "/" + tuning_table_name(path) + ".json";
  std::ifstream in(file);
  const nlohmann::json table = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  const nlohmann::json *buckets = nullptr;
  if (table.is_object() && table.contains("kernels") && table["kernels"].is_object()) {
    const nlohmann::json &kernels = table["kernels"];
    if (kernels.contains(kind) && kernels[kind].is_array()) buckets = &kernels[kind];
    else if (kernels.contains("default") && kernels["default"].is_array()) buckets = &kernels["default"];
  }
  if (buckets == nullptr) {
    std::fprintf(stderr, "error: tuning table %s: missing, malformed or without buckets for '%s' (MIXTILE_TUNING_DIR names "
                 "the folder)\n", file.c_str(), kind);
    std::exit(1);
  }
  for (const nlohmann::json &bucket : *buckets) {
    if (!bucket.is_object() || !bucket.contains("max_tokens")) continue;
    const nlohmann::json &max = bucket["max_tokens"];
    if (!max.is_null() && !(max.is_number_integer() && tokens <= max.get<int64_t>())) continue;
    for (const TileField &f : kTileFields)
      if (bucket.contains(f.name) && bucket[f.name].is_number_integer()) tiles.*f.field = bucket[f.name].get<int>();
    break;
  }
  apply_tiles_env(tiles);
  return tiles;
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
