// The machine's own limits, measured in the same run as the layers they judge: streaming read
// bandwidth (GB/s over a 1 GiB buffer, median of 7 passes) and OpenBLAS sgemm GFLOP/s for given shapes. Prints
// JSON. Usage: machine_limits THREADS M,N,K [M,N,K ...]   (one sgemm rate per shape)
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Streaming read bandwidth: integer sums (associative, so the compiler vectorizes them) into 8
// independent accumulators per thread, each thread over its own contiguous half. Measured with
// and without a software prefetch 2 KiB ahead; the faster variant's median of 7 passes counts.
// A plain reduction loop (one accumulator, no prefetch) read 21-23 GB/s on the Emerald Rapids VM
// where these loads and the kernels themselves reach 26-27: a probe below the kernels' own rate
// would make them look closer to the limit than they are.
static uint64_t sumRange(const uint64_t *p, size_t begin, size_t end, bool prefetch) {
  uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  size_t i = begin;
  for (; i + 8 <= end; i += 8) {
    if (prefetch)
      __builtin_prefetch(p + i + 256, 0, 3);  // 2 KiB ahead
    for (int j = 0; j < 8; ++j)
      acc[j] += p[i + j];
  }
  for (; i < end; ++i)
    acc[0] += p[i];
  uint64_t total = 0;
  for (uint64_t a : acc)
    total += a;
  return total;
}

static double readBandwidth(int threads) {
  const size_t n = (size_t(1) << 30) / sizeof(uint64_t);
  uint64_t *buffer = static_cast<uint64_t *>(std::aligned_alloc(64, n * sizeof(uint64_t)));
#pragma omp parallel for num_threads(threads) schedule(static)
  for (size_t i = 0; i < n; ++i)
    buffer[i] = i;
  // The median of 7 passes per variant: on a shared host single passes stray both ways.
  double best = 0;
  volatile uint64_t sink = 0;
  for (bool prefetch : {false, true}) {
    std::vector<double> rates;
    for (int rep = 0; rep < 7; ++rep) {
      auto t0 = Clock::now();
      uint64_t total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
      {
        const size_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        total += sumRange(buffer, n * t / nt, n * (t + 1) / nt, prefetch);
      }
      sink = sink + total;
      rates.push_back(n * sizeof(uint64_t) / since(t0) / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    best = std::max(best, rates[rates.size() / 2]);
  }
  std::free(buffer);
  return best;
}

// Median GFLOP/s of C[M,N] = A[M,K] · B[N,K]ᵀ (the [out, in] weight layout) over a few runs.
static double sgemmRate(int m, int n, int k) {
  std::vector<float> a(size_t(m) * k, 0.5f), b(size_t(n) * k, 0.25f), c(size_t(m) * n);
  std::vector<double> times;
  int reps = std::max(3, std::min(50, int(2e10 / (2.0 * m * n * k + 1))));
  for (int r = 0; r < reps + 1; ++r) {
    auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a.data(), k, b.data(), k,
                0.0f, c.data(), n);
    if (r > 0)
      times.push_back(since(t0));
  }
  std::sort(times.begin(), times.end());
  return 2.0 * m * n * k / times[times.size() / 2] / 1e9;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: machine_limits THREADS M,N,K ...\n");
    return 1;
  }
  int threads = std::atoi(argv[1]);
  openblas_set_num_threads(threads);
  std::printf("{\n  \"threads\": %d,\n  \"read_bandwidth_gbs\": %.2f,\n  \"sgemm\": [", threads,
              readBandwidth(threads));
  for (int i = 2; i < argc; ++i) {
    int m, n, k;
    if (std::sscanf(argv[i], "%d,%d,%d", &m, &n, &k) != 3)
      return 1;
    std::printf("%s\n    {\"m\": %d, \"n\": %d, \"k\": %d, \"gflops\": %.2f}", i > 2 ? "," : "", m,
                n, k, sgemmRate(m, n, k));
  }
  std::printf("\n  ]\n}\n");
  return 0;
}
