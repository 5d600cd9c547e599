// The machine's limits as the benchmarks measure them, one home for bench/machine_limits.cpp (the
// Python benchmarks' probe) and bench/kernels/bench_expert_ffn.cpp. Header-only, no Mixtile
// headers: machine_limits.cpp is built on its own. Needs OpenBLAS's cblas.h.
//
// Streaming read bandwidth (measure_read_bandwidth): integer sums (associative, so the compiler vectorizes them) into 8 independent accumulators per
// thread, each thread over its own contiguous share of a 1 GiB buffer; measured without and with
// a software prefetch 2 KiB ahead, 7 passes each. The faster variant's median and best pass are
// reported. A plain reduction loop (one accumulator, no prefetch) read 21-23 GB/s on the Emerald
// Rapids VM where these loads and the kernels themselves reach 26-27: a probe below the kernels'
// own rate would make them look closer to the limit than they are.
#pragma once

#include <cblas.h>
#include <omp.h>
#include <strings.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace mixtile_bench {

struct ReadBandwidth {
  double median_gbs = 0;  // the faster variant's median pass: the figure the benchmarks quote
  double best_gbs = 0;    // the fastest single pass of either variant
};

inline uint64_t read_sum_range(const uint64_t *p, size_t begin, size_t end, bool prefetch) {
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    if (prefetch) __builtin_prefetch(p + i + 256, 0, 3);  // 2 KiB ahead
    for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
  }
  for (; i < end; ++i) acc[0] += p[i];
  uint64_t total = 0;
  for (uint64_t a : acc) total += a;
  return total;
}

inline ReadBandwidth measure_read_bandwidth(int threads, size_t bytes = size_t(1) << 30, int passes = 7) {
  using Clock = std::chrono::steady_clock;
  const size_t n = bytes / sizeof(uint64_t);
  uint64_t *buffer = static_cast<uint64_t *>(std::aligned_alloc(64, n * sizeof(uint64_t)));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i) buffer[i] = i;
  ReadBandwidth r;
  static volatile uint64_t sink = 0;
  for (bool prefetch : {false, true}) {
    std::vector<double> rates;
    for (int rep = 0; rep < passes; ++rep) {
      const auto t0 = Clock::now();
      uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
      {
        const size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        total += read_sum_range(buffer, n * t / nt, n * (t + 1) / nt, prefetch);
      }
      sink = sink + total;
      rates.push_back(n * sizeof(uint64_t) / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    // On a shared host single passes stray both ways: the median is the figure.
    r.median_gbs = std::max(r.median_gbs, rates[rates.size() / 2]);
    r.best_gbs = std::max(r.best_gbs, rates.back());
  }
  std::free(buffer);
  return r;
}

// OpenBLAS 0.3.21 (Debian 12's) does not know newer Intel server cores (Emerald Rapids, CPUID
// family 6 model 207) and falls back to its Prescott (SSE3) kernels: sgemm at 35-40 GFLOP/s on
// the 2-core Emerald Rapids VM where its SkylakeX kernels reach 200-218. The core is chosen when
// the library loads, so a benchmark that compares with sgemm calls this first thing in main: on
// an AVX-512 host that got the Prescott kernels and has no OPENBLAS_CORETYPE set, it restarts
// the program once with OPENBLAS_CORETYPE=SkylakeX.
inline void use_openblas_avx512_kernels(char **argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr || !__builtin_cpu_supports("avx512f")) return;
  const char *core = openblas_get_corename();
  if (core == nullptr || strcasecmp(core, "prescott") != 0) return;
  setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: keep the slow kernels then
}

}  // namespace mixtile_bench
