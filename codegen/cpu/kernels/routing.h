// Routing kernels of the CPU kernel library: router logits and scores, token-choice top-k
// selection (plain, biased, group-limited), capacity drops, dispatch into expert segments,
// expert-choice selection and the dense soft router. The expert FFNs are expert_ffn.h's.
// Math: shared/spec/layers.md §1, §2, §4, §5, §7. Routing is computed in f32.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "linear.h"
#include "simd.h"
#include "threads.h"

namespace mixtile::cpu {

/// A small per-expert vector (router or selection bias) of any weight dtype.
struct ExpertVector {
  const void *data = nullptr;
  WeightType type = WeightType::f32;
  float at(int64_t i) const {
    switch (type) {
    case WeightType::f32: return static_cast<const float *>(data)[i];
    case WeightType::bf16: return detail::bf16_to_f32(static_cast<const uint16_t *>(data)[i]);
    default: return detail::f16_to_f32(static_cast<const uint16_t *>(data)[i]);
    }
  }
};

namespace detail {

/// x · w over n elements, f32 accumulation, weights widened on load.
template <WeightType W>
inline float dot(const float *x, const WeightStorage<W> *w, int64_t n) {
  VecF a0 = vzero(), a1 = vzero();
  int64_t i = 0;
  for (; i + 2 * kVecWidth <= n; i += 2 * kVecWidth) {
    a0 = vfma(vload(x + i), vload_weight<W>(w + i), a0);
    a1 = vfma(vload(x + i + kVecWidth), vload_weight<W>(w + i + kVecWidth), a1);
  }
  for (; i + kVecWidth <= n; i += kVecWidth)
    a0 = vfma(vload(x + i), vload_weight<W>(w + i), a0);
  float sum = vhsum(vadd(a0, a1));
  for (; i < n; ++i)
    sum += x[i] * load_weight_scalar<W>(w + i);
  return sum;
}

/// logits[e] = x · router[e] (+ bias[e]) for one token.
template <WeightType W>
inline void router_logits(const float *x, const WeightStorage<W> *router, ExpertVector bias,
                          int64_t experts, int64_t hidden, float *logits) {
  for (int64_t e = 0; e < experts; ++e) {
    logits[e] = dot<W>(x, router + e * hidden, hidden);
    if (bias.data)
      logits[e] += bias.at(e);
  }
}

// Register tile of the router logits: kRouteTokens tokens x kRouteExperts experts, one
// accumulator each (16 + 4 + 1 of AVX-512's 32 registers; 8 + 4 + 1 of AVX2's 16).
// (4 x 4 against 6 x 4, 8 x 2 and 3 x 8 on the Sapphire Rapids VM: equal or faster.)
constexpr int kRouteTokens = kVecWidth >= 16 ? 4 : 2;
constexpr int kRouteExperts = 4;

/// logits[t * experts + e] = xs[t] · router[e] (+ bias[e]) for kRouteTokens token rows, each
/// router row serving them all from registers. One token's dot products, each router row read
/// once per token, left 2048-token calls bound by streaming the router from L2 (Qwen3-30B-A3B's
/// 128 x 2048 router: 13 ms of a 128 ms block call). Each logit is its own accumulator's
/// arithmetic, so a token's logits are the same in any tile: they depend neither on the token
/// count nor on the threads (a short tile repeats a row).
template <WeightType W>
inline void router_logits_tile(const float *const *xs, const WeightStorage<W> *router,
                               ExpertVector bias, int64_t experts, int64_t hidden, float *logits) {
  constexpr int NT = kRouteTokens, NE = kRouteExperts;
  int64_t e0 = 0;
  for (; e0 + NE <= experts; e0 += NE) {
    VecF acc[NT][NE];
    for (int t = 0; t < NT; ++t)
      for (int j = 0; j < NE; ++j)
        acc[t][j] = vzero();
    int64_t i = 0;
    for (; i + kVecWidth <= hidden; i += kVecWidth) {
      VecF w[NE];
      for (int j = 0; j < NE; ++j)
        w[j] = vload_weight<W>(router + (e0 + j) * hidden + i);
      for (int t = 0; t < NT; ++t) {
        const VecF xv = vload(xs[t] + i);
        for (int j = 0; j < NE; ++j)
          acc[t][j] = vfma(xv, w[j], acc[t][j]);
      }
    }
    for (int t = 0; t < NT; ++t)
      for (int j = 0; j < NE; ++j) {
        const WeightStorage<W> *row = router + (e0 + j) * hidden;
        float sum = vhsum(acc[t][j]);
        for (int64_t r = i; r < hidden; ++r)
          sum += xs[t][r] * load_weight_scalar<W>(row + r);
        logits[t * experts + e0 + j] = sum + (bias.data ? bias.at(e0 + j) : 0.0f);
      }
  }
  for (int t = 0; t < NT; ++t)  // experts past the last whole group of kRouteExperts
    for (int64_t e = e0; e < experts; ++e)
      logits[t * experts + e] = dot<W>(xs[t], router + e * hidden, hidden) + (bias.data ? bias.at(e) : 0.0f);
}

inline void softmax(const float *in, float *out, int64_t n, float inverse_temperature = 1.0f) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    m = std::max(m, in[i] * inverse_temperature);
  // An all -inf or NaN row: let NaN propagate rather than divide 0 by 0 silently.
  if (!std::isfinite(m))
    m = 0.0f;
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = std::exp(in[i] * inverse_temperature - m);
    sum += out[i];
  }
  for (int64_t i = 0; i < n; ++i)
    out[i] /= sum;
}

/// True when every v[0..n) is finite (v · 0 is NaN exactly for NaN and ±Inf).
inline bool all_finite(const float *v, int64_t n) {
  VecF acc = vzero();
  int64_t i = 0;
  for (; i + kVecWidth <= n; i += kVecWidth) acc = vfma(vload(v + i), vzero(), acc);
  float s = vhsum(acc);
  for (; i < n; ++i) s += v[i] * 0.0f;
  return s == 0.0f;
}

/// out[j] = exp(in[j] · inverse_temperature - shift[j]), or - shift_scalar when shift is
/// null; vectorized. The caller guarantees finite inputs, so every argument is <= 0.
inline void exp_shifted(const float *in, const float *shift, float shift_scalar, float inverse_temperature,
                        float *out, int64_t n) {
  const VecF it = vset1(inverse_temperature);
  int64_t j = 0;
  for (; j + kVecWidth <= n; j += kVecWidth) {
    const VecF m = shift ? vload(shift + j) : vset1(shift_scalar);
    // x·(1/τ) + (−m), rounded as the scalar softmax rounds it.
    vstore(out + j, vexp(vadd(vmul(vload(in + j), it), vmul(m, vset1(-1.0f)))));
  }
  for (; j < n; ++j) out[j] = std::exp(in[j] * inverse_temperature - (shift ? shift[j] : shift_scalar));
}

/// softmax(in · inverse_temperature) of one row, vectorized; a row holding NaN or Inf takes
/// the scalar softmax, whose NaN propagation the layer semantics rely on.
inline void softmax_row(const float *in, float *out, int64_t n, float inverse_temperature) {
  if (!all_finite(in, n)) {
    softmax(in, out, n, inverse_temperature);
    return;
  }
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, in[i] * inverse_temperature);
  exp_shifted(in, nullptr, m, inverse_temperature, out, n);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) sum += out[i];
  for (int64_t i = 0; i < n; ++i) out[i] /= sum;
}

/// out[j] = sigmoid(in[j]) = 1 / (1 + exp(-in[j])), vectorized (NaN stays NaN, -inf gives 0).
inline void sigmoid_row(const float *in, float *out, int64_t n) {
  int64_t j = 0;
  for (; j + kVecWidth <= n; j += kVecWidth)
    vstore(out + j, vdiv(vset1(1.0f), vadd(vset1(1.0f), vexp(vmul(vload(in + j), vset1(-1.0f))))));
  for (; j < n; ++j) out[j] = 1.0f / (1.0f + std::exp(-in[j]));
}

/// The k largest of v[0..n) in order, ties to the lower index: the indices k repeated
/// argmax_untaken calls return, in one pass (an insertion into the k best so far). False, with
/// idx unspecified, when v holds a NaN (whose order argmax_untaken's scan defines: the caller
/// takes that instead).
inline bool top_k_ordered(const float *v, int64_t n, int64_t k, int32_t *idx, float *best) {
  if (k <= 0)
    return true;
  int64_t have = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float x = v[i];
    if (std::isnan(x))
      return false;
    if (have == k && !(x > best[k - 1]))
      continue;  // equal values keep the lower index
    int64_t j = have < k ? have++ : k - 1;
    for (; j > 0 && x > best[j - 1]; --j) {
      best[j] = best[j - 1];
      idx[j] = idx[j - 1];
    }
    best[j] = x;
    idx[j] = static_cast<int32_t>(i);
  }
  return true;
}

/// Index of the largest value among those not yet taken; ties (and NaN) go to the lower
/// index, as torch.topk's stable order does for the first occurrence.
inline int64_t argmax_untaken(const float *v, const uint8_t *taken, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (taken[i])
      continue;
    if (best < 0 || v[i] > v[best])
      best = i;
  }
  return best;
}

} // namespace detail

struct RouteConfig {
  int64_t experts = 0, hidden = 0, k = 1;
  bool sigmoid = false;     // scores = sigmoid(logits), else softmax over experts
  bool normalize = false;   // w /= (Σw + norm_epsilon)
  float norm_epsilon = 0.0f;
  float scale = 1.0f;       // routed_scaling_factor
  int64_t n_group = 1, topk_group = 1;
  bool group_top2_sum = false;  // group score: sum of its 2 best (DeepSeek-V3), else max (V2)
};

namespace detail {
/// Per-thread buffers of route_select.
struct RouteScratch {
  std::vector<float> scores, choice, group_scores, best;
  std::vector<uint8_t> taken, group_taken;
  explicit RouteScratch(const RouteConfig &c)
      : scores(c.experts), choice(c.experts), group_scores(c.n_group), best(c.k), taken(c.experts),
        group_taken(c.n_group) {}
};

/// Scores, selection and weights of token t from its logits (row t of `logits`, [tokens, E]).
inline void route_select(const RouteConfig &c, int64_t t, const float *logits, ExpertVector selection_bias,
                         float *weights, int32_t *experts, RouteScratch &s) {
  const int64_t E = c.experts, group_width = E / c.n_group;
  std::vector<float> &scores = s.scores, &choice = s.choice, &group_scores = s.group_scores, &best = s.best;
  std::vector<uint8_t> &taken = s.taken, &group_taken = s.group_taken;
  const float *row_logits = logits + t * E;
  if (c.sigmoid)
    detail::sigmoid_row(row_logits, scores.data(), E);
  else
    detail::softmax_row(row_logits, scores.data(), E, 1.0f);
  for (int64_t e = 0; e < E; ++e)
    choice[e] = scores[e] + (selection_bias.data ? selection_bias.at(e) : 0.0f);

  if (c.n_group > 1) {
    // Keep the topk_group best groups; experts of the others are masked to -inf, as
    // transformers and DeepSeek's own inference code do (the verifier keeps k within the
    // kept groups, so a masked expert is never chosen).
    for (int64_t g = 0; g < c.n_group; ++g) {
      const float *v = choice.data() + g * group_width;
      float first = -INFINITY, second = -INFINITY;
      for (int64_t i = 0; i < group_width; ++i) {
        if (v[i] > first) {
          second = first;
          first = v[i];
        } else if (v[i] > second) {
          second = v[i];
        }
      }
      group_scores[g] = c.group_top2_sum ? first + second : first;
    }
    std::fill(group_taken.begin(), group_taken.end(), 0);
    for (int64_t j = 0; j < c.topk_group; ++j)
      group_taken[detail::argmax_untaken(group_scores.data(), group_taken.data(), c.n_group)] = 1;
    for (int64_t g = 0; g < c.n_group; ++g)
      if (!group_taken[g])
        std::fill(choice.begin() + g * group_width, choice.begin() + (g + 1) * group_width,
                  -INFINITY);
  }

  float *w = weights + t * c.k;
  int32_t *idx = experts + t * c.k;
  if (!detail::top_k_ordered(choice.data(), E, c.k, idx, best.data())) {
    std::fill(taken.begin(), taken.end(), 0);
    for (int64_t j = 0; j < c.k; ++j) {
      const int64_t e = detail::argmax_untaken(choice.data(), taken.data(), E);
      taken[e] = 1;
      idx[j] = static_cast<int32_t>(e);
    }
  }
  float sum = 0.0f;
  for (int64_t j = 0; j < c.k; ++j) {
    w[j] = scores[idx[j]];
    sum += w[j];
  }
  const float factor = (c.normalize ? 1.0f / (sum + c.norm_epsilon) : 1.0f) * c.scale;
  for (int64_t j = 0; j < c.k; ++j)
    w[j] *= factor;
}
}  // namespace detail

/// Token-choice routing of `tokens` rows of x: logits (router · x, + router_bias), scores,
/// selection and weights: weights [T, k], experts [T, k], logits [T, E]. The logits of each
/// token come from one register tile's f32 FMAs (router_logits_tile), the same bits at any token
/// count and thread count.
template <WeightType W>
void route(const RouteConfig &c, int64_t tokens, const float *x, const WeightStorage<W> *router,
           ExpertVector router_bias, ExpertVector selection_bias, float *weights,
           int32_t *experts, float *logits, int num_threads) {
  const int64_t E = c.experts;
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : omp_get_max_threads())
  {
    detail::RouteScratch scratch(c);
    std::vector<float> tile(detail::kRouteTokens * E);
    // Logits a register tile of tokens at a time (the last tile repeats its last row into
    // `tile`), then each token's selection.
    constexpr int64_t NT = detail::kRouteTokens;
#pragma omp for schedule(static)
    for (int64_t u = 0; u < (tokens + NT - 1) / NT; ++u) {
      const int64_t t0 = u * NT, t1 = std::min(tokens, t0 + NT);
      const float *rows[NT];
      for (int64_t j = 0; j < NT; ++j)
        rows[j] = x + std::min(t0 + j, tokens - 1) * c.hidden;
      float *out = t1 - t0 == NT ? logits + t0 * E : tile.data();
      detail::router_logits_tile<W>(rows, router, router_bias, E, c.hidden, out);
      if (out != logits + t0 * E)
        std::copy(out, out + (t1 - t0) * E, logits + t0 * E);
      for (int64_t t = t0; t < t1; ++t)
        detail::route_select(c, t, logits, selection_bias, weights, experts, scratch);
    }
  }
}

/// Workspace of route<W, Path> on a bf16 matrix path: the router GEMM's (linear.h).
inline size_t route_workspace_size(int64_t tokens, int64_t experts, int64_t hidden, int num_threads,
                                   const TileConfig &tiles, MatmulPath path) {
  return linear_workspace_size(tokens, hidden, experts, num_threads, tiles, path);
}

/// route() with the logits of all tokens from one GEMM on a bf16 matrix path (AMX tiles or
/// VDPBF16PS, linear.h): bf16 products accumulated in f32, as the FMA path's are. mix-tile picks
/// it only where x holds bf16 values (hidden states widened from bf16, so that the GEMM's
/// rounding of x to bf16 changes nothing) and the router is wide (Tile.cpp). Calls of at most
/// tiles.small_m_max tokens take linear's small path. `workspace`: route_workspace_size bytes.
template <WeightType W, MatmulPath Path>
void route(const RouteConfig &c, int64_t tokens, const float *x, const WeightStorage<W> *router,
           ExpertVector router_bias, ExpertVector selection_bias, float *weights, int32_t *experts,
           float *logits, void *workspace, const TileConfig &tiles, int num_threads) {
  static_assert(Path != MatmulPath::fma_f32, "the f32 FMA router is route<W>(...)");
  if (tokens <= 0) return;
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  LinearProblem lp;
  lp.rows = tokens;
  lp.in = c.hidden;
  lp.out = c.experts;
  lp.x = x;
  lp.w = router;
  lp.y = logits;
  lp.workspace = workspace;
  lp.num_threads = nt;
  linear<W, Path>(lp, tiles);
  const int64_t E = c.experts;
#pragma omp parallel num_threads(nt)
  {
    detail::RouteScratch scratch(c);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      if (router_bias.data)
        for (int64_t e = 0; e < E; ++e) logits[t * E + e] += router_bias.at(e);
      detail::route_select(c, t, logits, selection_bias, weights, experts, scratch);
    }
  }
}

/// The capacity of each expert: a fixed one (>= 0), or ceil(factor · T · k / E).
inline int64_t expert_capacity(int64_t fixed, double factor, int64_t tokens, int64_t k,
                               int64_t experts) {
  if (fixed >= 0)
    return fixed;
  // Evaluated left to right in double, as the float64 reference does.
  return static_cast<int64_t>(std::ceil(factor * static_cast<double>(tokens) *
                                        static_cast<double>(k) / static_cast<double>(experts)));
}

/// Drops assignments beyond each expert's capacity: slots are claimed in token order, and
/// within a token in order of choice; a dropped assignment's expert becomes -1.
inline void apply_capacity(int64_t tokens, int64_t k, int64_t experts, int64_t capacity,
                           int32_t *choice) {
  std::vector<int64_t> used(experts, 0);
  for (int64_t a = 0; a < tokens * k; ++a) {
    int32_t e = choice[a];
    if (e < 0)
      continue;
    if (used[e] < capacity)
      ++used[e];
    else
      choice[a] = -1;
  }
}

/// Groups [T, k] assignments into expert segments (counting sort, stable in token order).
/// Returns the number of assignments kept (offsets[E]).
inline int64_t dispatch(int64_t tokens, int64_t k, int64_t experts, const float *weights,
                        const int32_t *choice, int32_t *offsets, int32_t *token_of,
                        float *gate_of) {
  std::vector<int32_t> next(experts + 1, 0);
  for (int64_t a = 0; a < tokens * k; ++a)
    if (choice[a] >= 0)
      ++next[choice[a] + 1];
  for (int64_t e = 0; e < experts; ++e)
    next[e + 1] += next[e];
  std::memcpy(offsets, next.data(), sizeof(int32_t) * (experts + 1));
  for (int64_t a = 0; a < tokens * k; ++a) {
    int32_t e = choice[a];
    if (e < 0)
      continue;
    int32_t slot = next[e]++;
    token_of[slot] = static_cast<int32_t>(a / k);
    gate_of[slot] = weights[a];
  }
  return offsets[experts];
}

/// logits [rows, out] = x [rows, in] · weightᵀ on the GEMM engine: the router or controller
/// matmul of every token at once (expert choice and Mixture of Tokens need all of them).
/// `workspace` holds linear_workspace_size(rows, in, out, threads, default_tile_config(), Path)
/// bytes. The bf16 paths (bf16 weights) round x to bf16 (linear.h).
template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
inline void router_logits_gemm(int64_t rows, int64_t in, int64_t out, const float *x,
                               const WeightStorage<W> *weight, float *logits, void *workspace,
                               int threads) {
  LinearProblem lp;
  lp.rows = rows;
  lp.in = in;
  lp.out = out;
  lp.x = x;
  lp.w = weight;
  lp.y = logits;
  lp.workspace = workspace;
  lp.num_threads = threads;
  linear<W, Path>(lp);
}

/// Expert-choice capacity C = min(T, ceil(factor · T / E)).
inline int64_t expert_choice_capacity(int64_t tokens, int64_t experts, double factor) {
  return std::min<int64_t>(
      tokens, static_cast<int64_t>(std::ceil(factor * static_cast<double>(tokens) /
                                             static_cast<double>(experts))));
}

/// Workspace of expert_choice: the router GEMM's (linear.h) scratch.
inline size_t expert_choice_workspace_size(int64_t tokens, int64_t experts, int64_t hidden,
                                           int num_threads, MatmulPath path = MatmulPath::fma_f32) {
  return linear_workspace_size(tokens, hidden, experts, num_threads, default_tile_config(), path);
}

/// Expert-choice routing (Zhou et al., 2022): each expert takes the C tokens with the largest
/// softmax score (ties to the lower token index), C = min(T, ceil(factor · T / E)). Writes
/// segments (offsets[e] = e·C, tokens in ascending order within a segment) and the logits.
/// `scores` is scratch of T·E floats, `workspace` expert_choice_workspace_size(...) bytes,
/// 64-byte aligned. The logits are one GEMM (linear.h); each expert's selection is a
/// selection (nth_element) on a contiguous copy of its score column, experts over threads.
/// Path: the router GEMM's MatmulPath (router_logits_gemm).
template <WeightType W, MatmulPath Path = MatmulPath::fma_f32>
void expert_choice(int64_t tokens, int64_t experts, int64_t hidden, double capacity_factor,
                   const float *x, const WeightStorage<W> *router, int32_t *offsets,
                   int32_t *token_of, float *gate_of, float *logits, float *scores,
                   void *workspace, int num_threads) {
  const int64_t capacity = expert_choice_capacity(tokens, experts, capacity_factor);
  const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  router_logits_gemm<W, Path>(tokens, hidden, experts, x, router, logits, workspace, threads);
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t t = 0; t < tokens; ++t)
    detail::softmax(logits + t * experts, scores + t * experts, experts);
  for (int64_t e = 0; e <= experts; ++e)
    offsets[e] = static_cast<int32_t>(e * capacity);
  struct Candidate {
    float score;
    int32_t token;
  };
  // NaN sorts last; ties go to the lower token index (a strict total order).
  auto better = [](const Candidate &a, const Candidate &b) {
    const bool a_nan = a.score != a.score, b_nan = b.score != b.score;
    if (a.score == b.score || (a_nan && b_nan))
      return a.token < b.token;
    if (a_nan)
      return false;
    if (b_nan)
      return true;
    return a.score > b.score;
  };
#pragma omp parallel num_threads(threads)
  {
    std::vector<Candidate> column(tokens);
#pragma omp for schedule(dynamic, 1)
    for (int64_t e = 0; e < experts; ++e) {
      for (int64_t t = 0; t < tokens; ++t)
        column[t] = {scores[t * experts + e], static_cast<int32_t>(t)};
      std::nth_element(column.begin(), column.begin() + capacity, column.end(), better);
      std::sort(column.begin(), column.begin() + capacity,
                [](const Candidate &a, const Candidate &b) { return a.token < b.token; });
      for (int64_t i = 0; i < capacity; ++i) {
        token_of[e * capacity + i] = column[i].token;
        gate_of[e * capacity + i] = column[i].score;
      }
    }
  }
}

/// Dense router probabilities p = softmax(x · routerᵀ), optionally masked to each token's
/// top-k without renormalization (MoV, MoLoRA). k <= 0 keeps all.
template <WeightType W>
void soft_route(int64_t tokens, int64_t experts, int64_t hidden, int64_t k, const float *x,
                const WeightStorage<W> *router, float *probs, int num_threads) {
#pragma omp parallel num_threads(num_threads > 0 ? num_threads : omp_get_max_threads())
  {
    std::vector<float> logits(experts);
    std::vector<uint8_t> taken(experts);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      float *p = probs + t * experts;
      detail::router_logits<W>(x + t * hidden, router, ExpertVector{}, experts, hidden,
                               logits.data());
      detail::softmax(logits.data(), p, experts);
      if (k > 0 && k < experts) {
        std::fill(taken.begin(), taken.end(), 0);
        for (int64_t j = 0; j < k; ++j)
          taken[detail::argmax_untaken(p, taken.data(), experts)] = 1;
        for (int64_t e = 0; e < experts; ++e)
          if (!taken[e])
            p[e] = 0.0f;
      }
    }
  }
}

} // namespace mixtile::cpu
