// In-process A/B of two versions of the CPU kernel library (bench/kernels/ab.sh builds it): the
// same call on side A and side B alternately, order flipped every round, caches evicted before
// every call (weights come from DRAM, as in a model), so a drift of the machine's speed hits
// both sides alike. On the 2-core VMs whole-program timings move 10-20% within minutes; the
// per-round ratio of this harness holds an A/A run at 1.00 +- 0.03.
//
//   ab linear  THREADS M K N [ROUNDS=15] [dp]     bf16 W [N, K]; dp: the avx512_bf16 path on both
//   ab experts THREADS E D F T k [ROUNDS=15] [PATH=fma]   gated SiLU, bf16, T tokens routed top-k
//                                                 of E; PATH fma, amx (amx_bf16) or dp (avx512_bf16)
//
// Prints each side's median time and rate and the median [quartiles] of the per-round ratio
// time A / time B (> 1: B is faster), and the largest difference between the two sides' outputs.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

void ab_linear_A(int64_t, int64_t, int64_t, const float *, const uint16_t *, float *, int, int);
void ab_linear_B(int64_t, int64_t, int64_t, const float *, const uint16_t *, float *, int, int);
void ab_experts_A(int, int64_t, int64_t, int64_t, int64_t, const float *, const int32_t *, const int32_t *,
                  const float *, const void *const *, const void *const *, const void *const *, float *, int, int);
void ab_experts_B(int, int64_t, int64_t, int64_t, int64_t, const float *, const int32_t *, const int32_t *,
                  const float *, const void *const *, const void *const *, const void *const *, float *, int, int);

namespace {
using Clock = std::chrono::steady_clock;

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// bf16 weights 8 bytes off a cache line, as a checkpoint's tensors are.
struct Weights {
  std::vector<uint16_t> buf;
  uint16_t *data;
  Weights(size_t n, std::mt19937 &rng, float scale) : buf(n + 64) {
    std::uniform_real_distribution<float> u(-1, 1);
    data = buf.data() + 4;
    for (size_t i = 0; i < n; ++i) data[i] = to_bf16(u(rng) * scale);
  }
};

void evict(int threads) {
  static std::vector<float> junk(size_t(128) << 18, 1.0f);  // 128 MiB
  float total = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : total)
  for (size_t i = 0; i < junk.size(); i += 16) total += junk[i];
  static volatile float sink = 0;
  sink = sink + total;
}

// Runs call(side) for both sides `rounds` times (after 2 warm-up rounds) and prints the result.
void compare(int threads, int rounds, double units, const char *unit, const std::function<void(int)> &call,
             const std::vector<float> &out_a, const std::vector<float> &out_b) {
  std::vector<double> ta, tb, ratio;
  for (int r = -2; r < rounds; ++r) {
    double t[2];
    for (int i = 0; i < 2; ++i) {
      const int side = (r & 1) ? 1 - i : i;
      evict(threads);
      const auto t0 = Clock::now();
      call(side);
      t[side] = std::chrono::duration<double>(Clock::now() - t0).count();
    }
    if (r < 0) continue;
    ta.push_back(t[0]), tb.push_back(t[1]), ratio.push_back(t[0] / t[1]);
  }
  double diff = 0;
  for (size_t i = 0; i < out_a.size(); ++i) diff = std::max(diff, double(std::fabs(out_a[i] - out_b[i])));
  std::sort(ta.begin(), ta.end());
  std::sort(tb.begin(), tb.end());
  std::sort(ratio.begin(), ratio.end());
  const size_t n = ratio.size();
  std::printf("A %.3f ms %.1f %s  B %.3f ms %.1f %s  time A/B %.3f [%.3f-%.3f]  max |A-B| %.2g\n", ta[n / 2] * 1e3,
              units / ta[n / 2], unit, tb[n / 2] * 1e3, units / tb[n / 2], unit, ratio[n / 2], ratio[n / 4],
              ratio[3 * n / 4], diff);
}

int usage() {
  std::fprintf(stderr,
               "usage: ab linear THREADS M K N [ROUNDS] [dp]\n"
               "       ab experts THREADS E D F T k [ROUNDS] [fma|amx|dp]\n");
  return 1;
}
}  // namespace

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  const std::string mode = argv[1];
  const int threads = std::atoi(argv[2]);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  if (mode == "linear" && argc >= 6) {
    const int64_t M = std::atoll(argv[3]), K = std::atoll(argv[4]), N = std::atoll(argv[5]);
    const int rounds = argc > 6 ? std::atoi(argv[6]) : 15;
    const int dp = argc > 7 ? std::atoi(argv[7]) : 0;
    if (threads < 1 || M < 1 || K < 1 || N < 1 || rounds < 1) return usage();
    std::vector<float> x(M * K), ya(M * N), yb(M * N);
    for (auto &v : x) v = u(rng);
    Weights w(size_t(N) * K, rng, 1.0f / std::sqrt(float(K)));
    std::printf("linear M=%ld K=%ld N=%ld threads %d%s: ", (long)M, (long)K, (long)N, threads, dp ? " dp" : "");
    compare(threads, rounds, 2.0 * N * K / 1e9, "GB/s",
            [&](int side) {
              (side == 0 ? ab_linear_A : ab_linear_B)(M, K, N, x.data(), w.data, side == 0 ? ya.data() : yb.data(),
                                                      threads, dp);
            },
            ya, yb);
    return 0;
  }
  if (mode == "experts" && argc >= 8) {
    const int E = std::atoi(argv[3]);
    const int64_t D = std::atoll(argv[4]), F = std::atoll(argv[5]), T = std::atoll(argv[6]);
    const int k = std::atoi(argv[7]);
    const int rounds = argc > 8 ? std::atoi(argv[8]) : 15;
    const std::string path_name = argc > 9 ? argv[9] : "fma";
    const int path = path_name == "amx" ? 1 : path_name == "dp" ? 2 : path_name == "fma" ? 0 : -1;
    if (path < 0) return usage();
    if (threads < 1 || E < 1 || k < 1 || k > E || D < 1 || F < 1 || T < 1 || rounds < 1) return usage();
    // Top-k of E per token, distinct experts, gates normalized; assignments grouped by expert.
    std::vector<std::vector<std::pair<int32_t, float>>> per(E);
    for (int64_t t = 0; t < T; ++t) {
      std::vector<int> picked;
      std::vector<float> g;
      float sum = 0;
      while (int(picked.size()) < k) {
        const int e = int(rng() % E);
        if (std::find(picked.begin(), picked.end(), e) != picked.end()) continue;
        picked.push_back(e), g.push_back(0.5f + 0.5f * std::fabs(u(rng))), sum += g.back();
      }
      for (int j = 0; j < k; ++j) per[picked[j]].push_back({int32_t(t), g[j] / sum});
    }
    std::vector<int32_t> offsets(E + 1, 0), tokens;
    std::vector<float> gates;
    int active = 0;
    for (int e = 0; e < E; ++e) {
      for (auto &p : per[e]) tokens.push_back(p.first), gates.push_back(p.second);
      offsets[e + 1] = int32_t(tokens.size());
      active += per[e].empty() ? 0 : 1;
    }
    std::vector<Weights> mats;
    mats.reserve(3 * E);
    std::vector<const void *> gw(E), uw(E), dw(E);
    for (int e = 0; e < E; ++e) {
      mats.emplace_back(size_t(F) * D, rng, 1.0f / std::sqrt(float(D)));
      gw[e] = mats.back().data;
      mats.emplace_back(size_t(F) * D, rng, 1.0f / std::sqrt(float(D)));
      uw[e] = mats.back().data;
      mats.emplace_back(size_t(D) * F, rng, 1.0f / std::sqrt(float(F)));
      dw[e] = mats.back().data;
    }
    std::vector<float> x(T * D), ya(T * D), yb(T * D);
    for (auto &v : x) v = u(rng);
    const int64_t rows_per_expert = T * k / E;
    std::printf("experts E=%d D=%ld F=%ld T=%ld top-%d (%d active) threads %d: ", E, (long)D, (long)F, (long)T, k,
                active, threads);
    compare(threads, rounds, 3.0 * D * F * 2 * active / 1e9, "GB/s",
            [&](int side) {
              (side == 0 ? ab_experts_A : ab_experts_B)(E, D, F, T, rows_per_expert, x.data(), offsets.data(),
                                                        tokens.data(), gates.data(), gw.data(), uw.data(), dw.data(),
                                                        side == 0 ? ya.data() : yb.data(), threads, path);
            },
            ya, yb);
    return 0;
  }
  return usage();
}
