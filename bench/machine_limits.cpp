// The machine's own limits, measured in the same run as the layers they judge: streaming read
// bandwidth (machine_limits.h: GB/s over a 1 GiB buffer, median of 7 passes) and OpenBLAS sgemm GFLOP/s for given shapes. Prints
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

#include "machine_limits.h"

using Clock = std::chrono::steady_clock;

static double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
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
  mixtile_bench::use_openblas_avx512_kernels(argv);
  if (argc < 2) {
    std::fprintf(stderr, "usage: machine_limits THREADS M,N,K ...\n");
    return 1;
  }
  int threads = std::atoi(argv[1]);
  openblas_set_num_threads(threads);
  std::printf("{\n  \"threads\": %d,\n  \"read_bandwidth_gbs\": %.2f,\n  \"sgemm\": [", threads,
              mixtile_bench::measure_read_bandwidth(threads).median_gbs);
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
