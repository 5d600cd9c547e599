// Correctness test of the dense transformer kernels (codegen/cpu/kernels/model.h) against naive
// float64 loops written here: gather_rows, rms_norm_rows, copy_columns, add_rows and attention with
// f32/bf16/f16 tables, weights and KV caches; GQA and MHA, partial and interleaved RoPE (also at an
// offset inside the head), value heads narrower or wider than query/key heads, DeepSeek MLA's
// decoupled rotary key (rope_key), sliding window, clip, rope_scale, positions near 1e5, prefill
// then decode over two sequences (checked against one full-prefix call), T = 0, and the error
// returns (poisoned outputs and caches stay untouched).
// The attention reference rotates q and k in float64 and checks the caches against that; it then
// attends over the kernel's cache contents (for bf16/f16 caches the rounded k/v are the data).
#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;

namespace {

int g_failures = 0, g_checks = 0;

void check(bool ok, const char *format, ...) {
  ++g_checks;
  if (ok) return;
  ++g_failures;
  if (g_failures > 40) return;
  std::va_list args;
  va_start(args, format);
  std::printf("FAIL: ");
  std::vprintf(format, args);
  std::printf("\n");
  va_end(args);
}

const char *type_name(WeightType w) { return w == WeightType::f32 ? "f32" : w == WeightType::bf16 ? "bf16" : "f16"; }

// ---- independent dtype conversions ---------------------------------------------------------------

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even (finite inputs only)
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even through exact float64 arithmetic, subnormals included (finite inputs).
uint16_t to_f16(float f) {
  const uint16_t sign = std::signbit(f) ? 0x8000u : 0u;
  const double a = std::fabs(static_cast<double>(f));
  if (a >= 65520.0) return sign | 0x7c00u;
  if (a < std::ldexp(1.0, -14)) return sign | static_cast<uint16_t>(std::nearbyint(std::ldexp(a, 24)));
  int e;
  std::frexp(a, &e);  // a in [2^(e-1), 2^e)
  const int exponent = e - 1;
  long mantissa = std::lrint(std::ldexp(a, 10 - exponent));  // [1024, 2048]
  int biased = exponent + 15;
  if (mantissa == 2048) mantissa = 1024, ++biased;
  if (biased >= 31) return sign | 0x7c00u;
  return sign | static_cast<uint16_t>((biased << 10) | (mantissa - 1024));
}

float from_f16(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  double v;
  if (exponent == 0) v = std::ldexp(static_cast<double>(mantissa), -24);
  else if (exponent == 31) v = mantissa ? std::numeric_limits<double>::quiet_NaN() : INFINITY;
  else v = std::ldexp(static_cast<double>(1024 + mantissa), exponent - 25);
  return static_cast<float>((h & 0x8000) ? -v : v);
}

// A tensor in one storage dtype: the bits the kernels read or write, and their exact values.
struct Tensor {
  WeightType w = WeightType::f32;
  std::vector<float> f;        // storage for f32
  std::vector<uint16_t> bits;  // storage for bf16/f16
  Tensor(WeightType type, size_t n) : w(type) {
    if (w == WeightType::f32) f.resize(n);
    else bits.resize(n);
  }
  size_t size() const { return w == WeightType::f32 ? f.size() : bits.size(); }
  size_t bytes() const { return w == WeightType::f32 ? f.size() * 4 : bits.size() * 2; }
  void *data() { return w == WeightType::f32 ? static_cast<void *>(f.data()) : static_cast<void *>(bits.data()); }
  const void *data() const {
    return w == WeightType::f32 ? static_cast<const void *>(f.data()) : static_cast<const void *>(bits.data());
  }
  uint16_t round(float x) const { return w == WeightType::bf16 ? to_bf16(x) : to_f16(x); }
  void set(size_t i, float x) {
    if (w == WeightType::f32) f[i] = x;
    else bits[i] = round(x);
  }
  float get(size_t i) const {
    if (w == WeightType::f32) return f[i];
    return w == WeightType::bf16 ? from_bf16(bits[i]) : from_f16(bits[i]);
  }
  // The value x takes in this dtype.
  float rounded(float x) const {
    if (w == WeightType::f32) return x;
    return w == WeightType::bf16 ? from_bf16(round(x)) : from_f16(round(x));
  }
  void poison() {  // NaN everywhere: any element read before written shows in the results
    if (w == WeightType::f32) std::fill(f.begin(), f.end(), std::numeric_limits<float>::quiet_NaN());
    else std::fill(bits.begin(), bits.end(), w == WeightType::bf16 ? 0x7fc0u : 0x7e00u);
  }
};

Tensor random_tensor(std::mt19937 &rng, WeightType w, size_t n, float amplitude) {
  std::uniform_real_distribution<float> dist(-amplitude, amplitude);
  Tensor t(w, n);
  for (size_t i = 0; i < n; ++i) t.set(i, dist(rng));
  return t;
}

std::vector<float> poisoned(size_t n) { return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN()); }

bool same_bits(const void *a, const void *b, size_t bytes) {
  return bytes == 0 || std::memcmp(a, b, bytes) == 0; // empty vectors may hand out null
}

double norm2(const double *x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * x[i];
  return std::sqrt(s);
}

double relative_l2(const float *got, const double *want, int64_t n) {
  double err = 0, norm = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    err += d * d;
    norm += want[i] * want[i];
  }
  if (!std::isfinite(err)) return INFINITY;
  return std::sqrt(err) / (std::sqrt(norm) + 1e-30);
}

// Bytes after a workspace that a kernel must never write.
constexpr size_t kCanary = 4096;

// ---- gather_rows, rms_norm_rows, add_rows --------------------------------------------------------

double g_worst_rms = 0;

template <WeightType W>
void test_gather(int64_t rows, int64_t width, int64_t table_rows, int threads, uint32_t seed) {
  std::mt19937 rng(seed);
  Tensor table = random_tensor(rng, W, static_cast<size_t>(table_rows * width), 2.0f);
  std::vector<int32_t> index(std::max<int64_t>(rows, 1));
  for (int64_t r = 0; r < rows; ++r) index[r] = static_cast<int32_t>(rng() % table_rows);
  if (rows > 2) index[1] = static_cast<int32_t>(table_rows - 1), index[2] = 0;
  std::vector<float> out = poisoned(std::max<int64_t>(rows, 1) * width + 1);
  const auto *tp = static_cast<const WeightStorage<W> *>(table.data());
  const bool ok = gather_rows<W>(rows, width, table_rows, tp, index.data(), out.data(), threads);
  bool exact = ok;
  for (int64_t r = 0; r < rows && exact; ++r)
    for (int64_t i = 0; i < width; ++i) {
      const float want = table.get(static_cast<size_t>(index[r] * width + i));
      exact = exact && same_bits(&out[r * width + i], &want, 4);
    }
  check(exact, "gather_rows<%s> rows %lld width %lld: wrong rows", type_name(W), (long long)rows, (long long)width);
  check(std::isnan(out[rows * width]), "gather_rows<%s>: wrote past the output", type_name(W));
  // An index outside the table, first or last: false and nothing written.
  if (rows > 0)
    for (int32_t bad : {int32_t(-1), static_cast<int32_t>(table_rows)})
      for (int64_t at : {int64_t(0), rows - 1}) {
        std::vector<int32_t> broken = index;
        broken[at] = bad;
        std::vector<float> untouched = poisoned(rows * width);
        const bool r = gather_rows<W>(rows, width, table_rows, tp, broken.data(), untouched.data(), threads);
        const std::vector<float> fresh = poisoned(rows * width);
        check(!r && same_bits(untouched.data(), fresh.data(), sizeof(float) * rows * width),
              "gather_rows<%s>: index %d at row %lld accepted or output touched", type_name(W), bad, (long long)at);
      }
}

template <WeightType W>
void test_rms_norm(int64_t rows, int64_t width, float epsilon, bool in_place, int threads, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  Tensor weight = random_tensor(rng, W, static_cast<size_t>(width), 1.5f);
  std::vector<float> x(std::max<int64_t>(rows * width, 1));
  for (int64_t r = 0; r < rows; ++r) {
    const float amplitude = r % 3 == 2 ? 1e-3f : (r % 3 == 1 ? 40.f : 1.f);  // epsilon matters on small rows
    for (int64_t i = 0; i < width; ++i) x[r * width + i] = unit(rng) * amplitude;
  }
  std::vector<double> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double squares = 0;
    for (int64_t i = 0; i < width; ++i) squares += static_cast<double>(x[r * width + i]) * x[r * width + i];
    const double inv = 1.0 / std::sqrt(squares / static_cast<double>(width) + epsilon);
    for (int64_t i = 0; i < width; ++i) ref[r * width + i] = weight.get(i) * (x[r * width + i] * inv);
  }
  std::vector<float> y = poisoned(x.size() + 1);
  float *dst = in_place ? x.data() : y.data();
  rms_norm_rows<W>(rows, width, epsilon, x.data(), static_cast<const WeightStorage<W> *>(weight.data()), dst,
                   threads);
  double worst = 0;
  for (int64_t r = 0; r < rows; ++r)
    worst = std::max(worst, relative_l2(dst + r * width, ref.data() + r * width, width));
  g_worst_rms = std::max(g_worst_rms, worst);
  check(worst <= 1e-5, "rms_norm_rows<%s> rows %lld width %lld%s: relative error %.3g", type_name(W),
        (long long)rows, (long long)width, in_place ? " in place" : "", worst);
  check(std::isnan(y[x.size()]), "rms_norm_rows: wrote past the output");
}

void test_add(int64_t n, int alias, int threads, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  std::vector<float> a(n + 1), b(n + 1), y = poisoned(n + 1), want(n);
  for (int64_t i = 0; i < n; ++i) a[i] = unit(rng), b[i] = unit(rng) * 3.f, want[i] = a[i] + b[i];
  a[n] = b[n] = 7.f;
  float *dst = alias == 1 ? a.data() : alias == 2 ? b.data() : y.data();
  add_rows(n, a.data(), b.data(), dst, threads);
  check(same_bits(dst, want.data(), sizeof(float) * n) && (alias ? dst[n] == 7.f : std::isnan(dst[n])),
        "add_rows n %lld alias %d: wrong sums or wrote past the end", (long long)n, alias);
}

// y[r, :] = x[r, offset..offset + count): a copy, so exact; nothing written past rows·count.
void test_copy_columns(int64_t rows, int64_t width, int64_t offset, int64_t count, int threads, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  std::vector<float> x(rows * width + 1), y = poisoned(rows * count + 1), want(rows * count + 1);
  for (float &e : x) e = unit(rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < count; ++i) want[r * count + i] = x[r * width + offset + i];
  copy_columns(rows, width, offset, count, x.data(), y.data(), threads);
  check(same_bits(y.data(), want.data(), sizeof(float) * rows * count) && std::isnan(y[rows * count]),
        "copy_columns rows %lld width %lld offset %lld count %lld threads %d: wrong copy or wrote past the end",
        (long long)rows, (long long)width, (long long)offset, (long long)count, threads);
}

// ---- attention -------------------------------------------------------------------------------------

struct Token {
  int32_t seq, pos;
};

struct Scenario {
  const char *name;
  int64_t heads, kv_heads, dim, rotary;
  bool interleaved;
  int64_t window;
  float clip, rope_scale, softmax_scale;
  double rope_base;
  int64_t cache_rows, cache_length;
  int threads;
  std::vector<std::vector<Token>> calls;
  std::vector<Token> preset;  // cache slots the test writes itself (as an earlier call would have)
  double tolerance = 1e-5;    // relative L2 vs float64
  int64_t v_dim = 0;          // value and output head width; 0: dim
  int64_t rope_offset = 0;    // first rotated dim of a q/k head
  bool rope_key = false;      // MLA: k holds rope_offset dims per kv head, the shared rope_key the rest

  int64_t value_dim() const { return v_dim > 0 ? v_dim : dim; }
  int64_t k_width() const { return rope_key ? rope_offset : dim; }  // per kv head, in the k input
  bool generalized() const { return value_dim() != dim || rope_offset > 0 || rope_key; }
};

std::vector<Token> run_of(int32_t seq, int32_t first, int32_t count) {
  std::vector<Token> t;
  for (int32_t i = 0; i < count; ++i) t.push_back({seq, first + i});
  return t;
}

std::vector<Token> concat(std::vector<Token> a, const std::vector<Token> &b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Inputs of one token, fixed per (sequence, position): q [heads·dim], k [kv_heads·k_width],
// v [kv_heads·value_dim] and with MLA rope_key [rotary].
struct TokenInputs {
  std::vector<float> q, k, v, rope_key;
};

double g_worst_attention[3] = {0, 0, 0};  // per cache dtype, vs float64
// The bf16 tile paths (AMX, VDPBF16PS) round each query and each block's probabilities to bf16
// (unit roundoff u = 2^-9) on top of the bf16 caches: each output is held to the bound those
// roundings imply (AttentionRun::check_outputs). Tallied per path.
constexpr double kBf16Roundoff = 0x1p-9;
struct Bf16PathTally {
  double worst = 0, worst_of_bound = 0;
  int output_checks = 0;
} g_bf16_tally;
double g_worst_full_prefix = 0;           // decode (incremental calls) vs one full-prefix call
double g_worst_large_scores = 0;          // the scenario whose scores reach ~100
double g_worst_k_ulps[3] = {0, 0, 0};     // k cache vs the f64 rotation, over the dtype's one-ulp bound
int g_attention_checks = 0;
double g_worst_generalized = 0;  // scenarios with value_dim != dim, rope_offset > 0 or rope_key
int g_generalized_checks = 0;

struct AttentionRun {
  const Scenario &s;
  WeightType cache_type;
  AttentionConfig config;
  std::vector<double> inv_freq;
  std::map<std::pair<int32_t, int32_t>, TokenInputs> inputs;
  Tensor k_cache, v_cache;

  // A bf16 product path's name (amx_bf16, avx512_bf16): q and p rounded to bf16 (check_outputs'
  // bound); null on fma_f32.
  const char *bf16_path = nullptr;

  AttentionRun(const Scenario &scenario, WeightType c, uint32_t seed)
      : s(scenario), cache_type(c), k_cache(c, cache_elems(s.dim)), v_cache(c, cache_elems(s.value_dim())) {
    for (int64_t i = 0; i < s.rotary / 2; ++i)
      inv_freq.push_back(std::pow(s.rope_base, -2.0 * i / static_cast<double>(s.rotary)));
    config.heads = s.heads;
    config.kv_heads = s.kv_heads;
    config.head_dim = s.dim;
    config.v_head_dim = s.v_dim;
    config.rotary_dim = s.rotary;
    config.rope_offset = s.rope_offset;
    config.inv_freq = inv_freq.empty() ? nullptr : inv_freq.data();
    config.rope_scale = s.rope_scale;
    config.rope_interleaved = s.interleaved;
    config.softmax_scale = s.softmax_scale;
    config.clip = s.clip;
    config.window = s.window;
    std::mt19937 rng(seed);
    std::uniform_real_distribution<float> unit(-1.f, 1.f);
    auto add_inputs = [&](const Token &t) {
      TokenInputs &in = inputs[{t.seq, t.pos}];
      in.q.resize(s.heads * s.dim);
      in.k.resize(s.kv_heads * s.k_width());
      in.v.resize(s.kv_heads * s.value_dim());
      in.rope_key.resize(s.rope_key ? s.rotary : 0);
      for (auto &x : in.q) x = 1.5f * unit(rng);
      for (auto &x : in.k) x = unit(rng);
      for (auto &x : in.v) x = unit(rng);
      for (auto &x : in.rope_key) x = unit(rng);
    };
    for (const auto &call : s.calls)
      for (const Token &t : call) add_inputs(t);
    reset_caches(rng);
  }

  size_t cache_elems(int64_t head_width) const {
    return static_cast<size_t>(s.cache_rows * s.cache_length * s.kv_heads * head_width);
  }
  size_t k_slot(int32_t seq, int64_t pos, int64_t g) const {
    return static_cast<size_t>(((seq * s.cache_length + pos) * s.kv_heads + g) * s.dim);
  }
  size_t v_slot(int32_t seq, int64_t pos, int64_t g) const {
    return static_cast<size_t>(((seq * s.cache_length + pos) * s.kv_heads + g) * s.value_dim());
  }

  void reset_caches(std::mt19937 &rng) {
    k_cache.poison();
    v_cache.poison();
    std::uniform_real_distribution<float> unit(-1.f, 1.f);
    for (const Token &t : s.preset)
      for (int64_t g = 0; g < s.kv_heads; ++g) {
        for (int64_t d = 0; d < s.dim; ++d) k_cache.set(k_slot(t.seq, t.pos, g) + d, unit(rng));
        for (int64_t d = 0; d < s.value_dim(); ++d) v_cache.set(v_slot(t.seq, t.pos, g) + d, unit(rng));
      }
  }

  double clipped(float x) const {
    if (s.clip > 0) return std::min<double>(std::max<double>(x, -s.clip), s.clip);
    return x;
  }

  // Kv head g's key before the rotation: its slice of k, or with MLA its rope_offset dims from k
  // followed by the token's rope_key, shared by every kv head.
  std::vector<float> key_head(const TokenInputs &in, int64_t g) const {
    const int64_t width = s.k_width();
    std::vector<float> key(in.k.begin() + g * width, in.k.begin() + (g + 1) * width);
    key.insert(key.end(), in.rope_key.begin(), in.rope_key.end());
    return key;
  }

  // One head of q or k clamped and its dims [rope_offset, rope_offset + rotary) rotated in float64
  // (HF apply_rotary_pos_emb on that slice; DeepSeek's q_pe/k_pe when it is the head's tail).
  std::vector<double> rotate(const float *x, int64_t pos) const {
    std::vector<double> y(s.dim);
    for (int64_t d = 0; d < s.dim; ++d) y[d] = clipped(x[d]);
    const int64_t half = s.rotary / 2, at = s.rope_offset;
    for (int64_t i = 0; i < half; ++i) {
      const int64_t ia = at + (s.interleaved ? 2 * i : i), ib = at + (s.interleaved ? 2 * i + 1 : i + half);
      const double theta = static_cast<double>(pos) * static_cast<double>(inv_freq[i]);
      const double c = std::cos(theta) * s.rope_scale, sn = std::sin(theta) * s.rope_scale;
      const double a = y[ia], b = y[ib];
      y[ia] = a * c - b * sn;
      y[ib] = b * c + a * sn;
    }
    return y;
  }

  // with_rope_key: pass a rope_key even when the scenario has none (an error case).
  template <WeightType C, MatmulPath Path = MatmulPath::fma_f32>
  int call(const std::vector<Token> &tokens, std::vector<float> &out, int threads,
           const AttentionConfig *other_config = nullptr, bool with_rope_key = false) {
    const int64_t T = static_cast<int64_t>(tokens.size()), n = std::max<int64_t>(T, 1);
    std::vector<float> q(n * s.heads * s.dim), k(n * s.kv_heads * s.k_width()), v(n * s.kv_heads * s.value_dim()),
        rope_key(n * std::max<int64_t>(s.rotary, 2));
    std::vector<int32_t> positions(n), sequences(n);
    for (int64_t t = 0; t < T; ++t) {
      positions[t] = tokens[t].pos;
      sequences[t] = tokens[t].seq;
      auto it = inputs.find({tokens[t].seq, tokens[t].pos});
      if (it == inputs.end()) continue;  // an error case's out-of-range token: inputs unused
      std::copy(it->second.q.begin(), it->second.q.end(), q.begin() + t * s.heads * s.dim);
      std::copy(it->second.k.begin(), it->second.k.end(), k.begin() + t * s.kv_heads * s.k_width());
      std::copy(it->second.v.begin(), it->second.v.end(), v.begin() + t * s.kv_heads * s.value_dim());
      std::copy(it->second.rope_key.begin(), it->second.rope_key.end(), rope_key.begin() + t * s.rotary);
    }
    const AttentionConfig c = other_config ? *other_config : config;
    const size_t ws = attention_workspace_size(c, T, s.cache_length, threads, Path);
    unsigned char *workspace = static_cast<unsigned char *>(std::aligned_alloc(64, (ws + kCanary + 63) / 64 * 64));
    std::memset(workspace, 0xff, ws);  // NaN bit patterns: scratch read before written shows
    std::memset(workspace + ws, 0xa5, kCanary);
    const float *rope_key_in = s.rope_key || with_rope_key ? rope_key.data() : nullptr;
    const int rc = attention<C, Path>(c, T, q.data(), k.data(), v.data(), rope_key_in, positions.data(), sequences.data(),
                                s.cache_rows, s.cache_length, static_cast<WeightStorage<C> *>(k_cache.data()),
                                static_cast<WeightStorage<C> *>(v_cache.data()), out.data(), workspace, threads);
    bool canary = true;
    for (size_t i = 0; i < kCanary; ++i) canary = canary && workspace[ws + i] == 0xa5;
    check(canary, "attention %s/%s: wrote past its workspace (%zu bytes)", s.name, type_name(C), ws);
    std::free(workspace);
    return rc;
  }

  // The cache slots of `tokens` against the f64 rotation (k: within one ulp of the dtype, or 1e-6
  // of the head's largest element for f32; v: exactly the clamped value rounded).
  void check_caches(const std::vector<Token> &tokens) {
    const double ulp = cache_type == WeightType::f32 ? 0.0 : cache_type == WeightType::bf16 ? 0x1p-7 : 0x1p-10;
    const int ci = static_cast<int>(cache_type);
    bool k_ok = true, v_ok = true;
    for (const Token &t : tokens) {
      const TokenInputs &in = inputs.at({t.seq, t.pos});
      for (int64_t g = 0; g < s.kv_heads; ++g) {
        const std::vector<double> want = rotate(key_head(in, g).data(), t.pos);
        double largest = 0;
        for (double w : want) largest = std::max(largest, std::fabs(w));
        for (int64_t d = 0; d < s.dim; ++d) {
          const double got = k_cache.get(k_slot(t.seq, t.pos, g) + d), w = want[d];
          const double bound = ulp * std::fabs(w) + 1e-6 * largest;
          k_ok = k_ok && std::fabs(got - w) <= bound;
          if (ulp > 0 && std::fabs(w) > 1e-3)
            g_worst_k_ulps[ci] = std::max(g_worst_k_ulps[ci], std::fabs(got - w) / (ulp * std::fabs(w)));
        }
        for (int64_t d = 0; d < s.value_dim(); ++d) {
          const float vw = v_cache.rounded(static_cast<float>(clipped(in.v[g * s.value_dim() + d])));
          const float vg = v_cache.get(v_slot(t.seq, t.pos, g) + d);
          v_ok = v_ok && same_bits(&vg, &vw, 4);
        }
      }
    }
    check(k_ok, "attention %s/%s: k cache differs from the f64 rotation", s.name, type_name(cache_type));
    check(v_ok, "attention %s/%s: v cache differs from the rounded clamped v", s.name, type_name(cache_type));
  }

  // out rows of `tokens` against float64 attention over the current cache contents.
  double check_outputs(const std::vector<Token> &tokens, const std::vector<float> &out, const char *what) {
    const int64_t group = s.heads / s.kv_heads, vdim = s.value_dim();
    double worst = 0;
    std::vector<double> ref(vdim), scores;
    for (size_t t = 0; t < tokens.size(); ++t) {
      const Token &tok = tokens[t];
      const TokenInputs &in = inputs.at({tok.seq, tok.pos});
      const int64_t lo = s.window > 0 ? std::max<int64_t>(0, tok.pos - s.window + 1) : 0;
      for (int64_t h = 0; h < s.heads; ++h) {
        const std::vector<double> qh = rotate(in.q.data() + h * s.dim, tok.pos);
        const int64_t g = h / group;
        scores.assign(tok.pos - lo + 1, 0.0);
        double m = -INFINITY, score_error = 0;  // bound of a score's error from q rounded to bf16
        for (int64_t j = lo; j <= tok.pos; ++j) {
          double dot = 0, magnitude = 0;
          for (int64_t d = 0; d < s.dim; ++d) {
            const double term = qh[d] * k_cache.get(k_slot(tok.seq, j, g) + d);
            dot += term;
            magnitude += std::fabs(term);
          }
          scores[j - lo] = dot * s.softmax_scale;
          score_error = std::max(score_error, kBf16Roundoff * magnitude * std::fabs(s.softmax_scale));
          m = std::max(m, scores[j - lo]);
        }
        double sum = 0;
        for (double &x : scores) sum += (x = std::exp(x - m));
        std::fill(ref.begin(), ref.end(), 0.0);
        std::vector<double> spread(vdim, 0.0);  // Σ_j w_j |v_j|
        for (int64_t j = lo; j <= tok.pos; ++j)
          for (int64_t d = 0; d < vdim; ++d) {
            const double w = scores[j - lo] / sum, value = v_cache.get(v_slot(tok.seq, j, g) + d);
            ref[d] += w * value;
            spread[d] += w * std::fabs(value);
          }
        const double e = relative_l2(out.data() + (t * s.heads + h) * vdim, ref.data(), vdim);
        if (bf16_path) {
          // Score errors within ±ε move each normalized weight by a factor within e^(±2ε), and p
          // rounded to bf16 moves it by u more: |Δo| <= (2ε + u)·Σ_j w_j |v_j| per dim, to first
          // order (10% margin for the higher ones), plus the f32 path's own 1e-5.
          const double bound = 1.1 * (2 * score_error + kBf16Roundoff) * norm2(spread.data(), vdim) /
                                   std::max(norm2(ref.data(), vdim), 1e-300) +
                               s.tolerance;
          worst = std::max(worst, e / bound);
          g_bf16_tally.worst = std::max(g_bf16_tally.worst, e);
        } else {
          worst = std::max(worst, e);
        }
      }
    }
    if (bf16_path) {
      check(worst <= 1.0, "attention %s/%s/%s %s: error %.3g of its bf16 bound", s.name, type_name(cache_type),
            bf16_path, what, worst);
      g_bf16_tally.worst_of_bound = std::max(g_bf16_tally.worst_of_bound, worst);
      ++g_bf16_tally.output_checks;
      return worst;
    }
    check(worst <= s.tolerance, "attention %s/%s %s: relative L2 error %.3g vs float64", s.name,
          type_name(cache_type), what, worst);
    ++g_attention_checks;
    const int ci = static_cast<int>(cache_type);
    if (s.tolerance <= 1e-5) g_worst_attention[ci] = std::max(g_worst_attention[ci], worst);
    else g_worst_large_scores = std::max(g_worst_large_scores, worst);
    if (s.generalized() && s.tolerance <= 1e-5) {
      g_worst_generalized = std::max(g_worst_generalized, worst);
      ++g_generalized_checks;
    }
    return worst;
  }
};

template <WeightType C, MatmulPath Path = MatmulPath::fma_f32>
void test_attention(const Scenario &s, uint32_t seed) {
  AttentionRun run(s, C, seed);
  run.bf16_path = Path == MatmulPath::amx_bf16 ? "amx_bf16" : Path == MatmulPath::avx512_bf16 ? "avx512_bf16" : nullptr;
  const int64_t vdim = s.value_dim(), row = s.heads * vdim;
  // Incremental: every call as listed (prefill chunks, then decode steps), checked after each.
  std::map<std::pair<int32_t, int32_t>, std::vector<float>> incremental;
  for (size_t i = 0; i < s.calls.size(); ++i) {
    const std::vector<Token> &tokens = s.calls[i];
    std::vector<float> out = poisoned(std::max<size_t>(tokens.size(), 1) * row + 1);
    const int rc = run.call<C, Path>(tokens, out, s.threads);
    check(rc == 0, "attention %s/%s call %zu: returned %d", s.name, type_name(C), i, rc);
    check(std::isnan(out[tokens.size() * row]), "attention %s/%s call %zu: wrote past out", s.name, type_name(C), i);
    run.check_caches(tokens);
    char what[64];
    std::snprintf(what, sizeof what, "call %zu (%zu tokens)", i, tokens.size());
    run.check_outputs(tokens, out, what);
    for (size_t t = 0; t < tokens.size(); ++t)
      incremental[{tokens[t].seq, tokens[t].pos}].assign(out.begin() + t * row, out.begin() + (t + 1) * row);
  }
  const Tensor k_after = run.k_cache, v_after = run.v_cache;

  // The same tokens as one call, sequence by sequence in position order (a full-prefix prefill):
  // the same caches bit for bit, and every output row equal to the incremental one.
  std::vector<Token> all;
  for (const auto &kv : run.inputs) all.push_back({kv.first.first, kv.first.second});
  std::mt19937 rng(seed + 1);
  run.reset_caches(rng);
  std::vector<float> out = poisoned(all.size() * row);
  const int rc = run.call<C, Path>(all, out, s.threads);
  check(rc == 0, "attention %s/%s full prefix: returned %d", s.name, type_name(C), rc);
  if (s.preset.empty())  // otherwise the presets are fresh random values
    check(same_bits(run.k_cache.data(), k_after.data(), k_after.bytes()) &&
              same_bits(run.v_cache.data(), v_after.data(), v_after.bytes()),
          "attention %s/%s: caches after one call differ from those after the incremental calls", s.name,
          type_name(C));
  run.check_outputs(all, out, "full prefix");
  // (On the bf16 paths both sides were held to their bf16 bound against float64 above; prefill
  // tiles and decode rows round differently, so they agree only within it.)
  if (s.preset.empty() && !run.bf16_path) {
    double worst = 0;
    for (size_t t = 0; t < all.size(); ++t) {
      const std::vector<float> &inc = incremental[{all[t].seq, all[t].pos}];
      for (int64_t h = 0; h < s.heads; ++h) {
        std::vector<double> want(inc.begin() + h * vdim, inc.begin() + (h + 1) * vdim);
        worst = std::max(worst, relative_l2(out.data() + t * row + h * vdim, want.data(), vdim));
      }
    }
    if (s.tolerance <= 1e-5) g_worst_full_prefix = std::max(g_worst_full_prefix, worst);
    check(worst <= s.tolerance, "attention %s/%s: incremental outputs differ from the full prefix by %.3g",
          s.name, type_name(C), worst);
  }

  // Errors write nothing: a bad position or sequence (first or last token), a bad head split.
  if (s.calls.empty() || s.calls[0].size() < 2) return;
  std::vector<Token> good = s.calls[0];
  const Tensor k_before = run.k_cache, v_before = run.v_cache;
  auto untouched = [&](const std::vector<float> &o) {
    const std::vector<float> fresh = poisoned(o.size());
    return same_bits(o.data(), fresh.data(), o.size() * 4) &&
           same_bits(run.k_cache.data(), k_before.data(), k_before.bytes()) &&
           same_bits(run.v_cache.data(), v_before.data(), v_before.bytes());
  };
  const Token bad_tokens[] = {{good[0].seq, -1},
                              {good[0].seq, static_cast<int32_t>(s.cache_length)},
                              {-1, good[0].pos},
                              {static_cast<int32_t>(s.cache_rows), good[0].pos}};
  for (const Token &bad : bad_tokens)
    for (size_t at : {size_t(0), good.size() - 1}) {
      std::vector<Token> broken = good;
      broken[at] = bad;
      std::vector<float> o = poisoned(broken.size() * row);
      const int r = run.call<C, Path>(broken, o, s.threads);
      check(r == 1 && untouched(o), "attention %s/%s: token (%d, %d) at %zu returned %d or wrote", s.name,
            type_name(C), bad.seq, bad.pos, at, r);
    }
  // Invalid configs: heads not a multiple of kv_heads, rotary_dim odd, above head_dim, or
  // without inv_freq, rope_offset negative or the rotary dims past head_dim, v_head_dim negative,
  // a rope_key whose rotary dims are not each head's last.
  struct Invalid {
    const char *what;
    AttentionConfig config;
    bool with_rope_key;
  };
  std::vector<Invalid> invalid;
  AttentionConfig bad = run.config;
  if (s.kv_heads > 1) {
    bad.heads = s.heads - 1;
    invalid.push_back({"heads % kv_heads != 0", bad, false});
  }
  bad = run.config;
  bad.rotary_dim = s.rotary > 0 ? s.rotary - 1 : 1;
  invalid.push_back({"odd rotary_dim", bad, false});
  bad = run.config;
  bad.rotary_dim = s.dim + 2;
  invalid.push_back({"rotary_dim > head_dim", bad, false});
  bad = run.config;
  bad.rotary_dim = 2;
  bad.inv_freq = nullptr;
  invalid.push_back({"no inv_freq", bad, false});
  bad = run.config;
  bad.rope_offset = -2;
  invalid.push_back({"negative rope_offset", bad, false});
  bad = run.config;
  bad.rope_offset = s.dim - s.rotary + 2;
  invalid.push_back({"rope_offset + rotary_dim > head_dim", bad, false});
  bad = run.config;
  bad.v_head_dim = -1;
  invalid.push_back({"negative v_head_dim", bad, false});
  if (s.rope_key) {
    bad = run.config;
    bad.rope_offset -= 2;
    invalid.push_back({"rope_key with rope_offset + rotary_dim < head_dim", bad, false});
    bad = run.config;
    bad.rotary_dim = 0;
    bad.rope_offset = s.dim;
    invalid.push_back({"rope_key with rotary_dim 0", bad, false});
  } else if (s.rope_offset + s.rotary != s.dim) {  // this scenario's own config, given a rope_key
    invalid.push_back({"rope_key with rope_offset + rotary_dim != head_dim", run.config, true});
  }
  for (const Invalid &e : invalid) {
    std::vector<float> o = poisoned(good.size() * row);
    const int r = run.call<C, Path>(good, o, s.threads, &e.config, e.with_rope_key);
    check(r == 2 && untouched(o), "attention %s/%s: %s returned %d or wrote", s.name, type_name(C), e.what, r);
  }
  std::vector<float> o = poisoned(row);
  const int r = run.call<C, Path>({}, o, s.threads);
  check(r == 0 && untouched(o), "attention %s/%s: T = 0 returned %d or wrote", s.name, type_name(C), r);
}

std::vector<Scenario> scenarios() {
  std::vector<Scenario> list;
  // Two sequences (cache rows 0 and 2 of 3): a batched prefill, decode steps of both, a chunk of
  // one sequence in shuffled order, decode steps in the other order and alone. Runs of 21 and 37
  // tokens cover full query tiles, partial ones and single rows at every vector width.
  std::vector<std::vector<Token>> batch = {
      concat(run_of(0, 0, 21), run_of(2, 0, 37)),
      {{0, 21}, {2, 37}},
      {{0, 22}, {2, 38}},
      {{2, 39}, {0, 23}},
      {{0, 24}},
      {{0, 29}, {0, 27}, {0, 25}, {0, 34}, {0, 26}, {0, 33}, {0, 28}, {0, 36}, {0, 30}, {0, 32}, {0, 35}, {0, 31}},
      concat(run_of(2, 40, 5), {{0, 37}}),
      {{2, 45}, {0, 38}},
  };
  // A third sequence whose second call puts its later positions first, so that in the query tile
  // (2 vectors of lanes) the first vector's lanes see the whole first key block and the second
  // vector's lanes only part of it: masking has to look at every lane.
  const int32_t width = static_cast<int32_t>(mixtile::cpu::detail::kVecWidth);
  const int32_t block = static_cast<int32_t>(mixtile::cpu::detail::kAttentionKeyBlock);
  batch.push_back(run_of(1, 0, block - 1 - width));
  batch.push_back(concat(run_of(1, block - 1, width), run_of(1, block - 1 - width, width)));
  // One long prefill crossing key blocks, then decode. head_dim 36 leaves remainders
  // after every vector width and register tile.
  std::vector<std::vector<Token>> long_prefill = {run_of(1, 0, 150), {{1, 150}}, {{1, 151}}, run_of(1, 152, 3)};
  const float kInvSqrt64 = 0.125f, kInvSqrt16 = 0.25f;
  list.push_back({"gqa-8/2-d64", 8, 2, 64, 64, false, 0, 0.f, 1.f, kInvSqrt64, 10000.0, 3, 64, 2, batch, {}});
  list.push_back({"mha-4-d16-interleaved-clip-scale", 4, 4, 16, 16, true, 0, 0.9f, 1.25f, 0.7f, 10000.0, 3, 64, 3,
                  batch, {}});
  list.push_back({"gqa-8/2-d64-rotary24-window7-clip", 8, 2, 64, 24, false, 7, 0.8f, 1.1f, 0.3f, 500000.0, 3, 64, 2,
                  batch, {}});
  list.push_back({"gqa-6/3-d16-rotary6-interleaved-window5", 6, 3, 16, 6, true, 5, 0.f, 1.f, kInvSqrt16, 10000.0, 3,
                  64, 1, batch, {}});
  list.push_back({"mha-2-d36-rotary20-long", 2, 2, 36, 20, false, 0, 0.f, 1.f, 0.3f, 10000.0, 2, 160, 2,
                  long_prefill, {}});
  list.push_back({"gqa-4/1-d64-window70-long", 4, 1, 64, 64, true, 70, 0.f, 1.07f, kInvSqrt64, 10000.0, 2, 160, 2,
                  long_prefill, {}});
  list.push_back({"mha-3-d64-no-rope", 3, 3, 64, 0, false, 0, 0.5f, 1.f, kInvSqrt64, 10000.0, 3, 64, 2, batch, {}});
  // Scores up to ~100: exp overflows f32 unless the max is subtracted. The softmax's condition
  // number grows with the scores (f32 score error ~1e-7·|s|), hence the tolerance.
  list.push_back({"mha-2-d16-large-scores", 2, 2, 16, 16, false, 0, 0.f, 1.f, 25.f, 10000.0, 3, 64, 2, batch, {},
                  1e-4});
  // Positions near 1e5 with a window: keys below the window stay NaN in the cache, so a kernel
  // reading outside it fails; the f64 angle matters here (an f32 one is off by ~1e-2 rad).
  const int32_t far = 100000;
  std::vector<Token> preset = run_of(0, far - 12, 12);
  std::vector<std::vector<Token>> far_calls = {run_of(0, far, 20), {{0, far + 20}}, run_of(0, far + 21, 3)};
  list.push_back({"gqa-4/2-d16-positions-1e5-window12", 4, 2, 16, 16, false, 12, 0.f, 1.f, kInvSqrt16, 1000000.0,
                  1, far + 40, 2, far_calls, preset});

  // Value heads of another width than query/key heads, and the rotary dims in the middle of a
  // head: narrower values; wider values; and widths with remainders after every vector width and
  // register tile (30 = 16 + 8 + 4 + 2, 22 = 16 + 4 + 2) over a prefill crossing key blocks.
  const float kInvSqrt48 = 0.144337567f;
  Scenario narrow_values{"gqa-4/2-d48-v32-rotary16-at8", 4, 2, 48, 16, false, 0, 0.f, 1.f, kInvSqrt48, 10000.0, 3,
                         64, 2, batch, {}};
  narrow_values.v_dim = 32;
  narrow_values.rope_offset = 8;
  list.push_back(narrow_values);
  Scenario wide_values{"mha-3-d24-v40-rotary8-at10-interleaved-clip-scale", 3, 3, 24, 8, true, 0, 0.9f, 1.2f, 0.4f,
                       10000.0, 3, 64, 3, batch, {}};
  wide_values.v_dim = 40;
  wide_values.rope_offset = 10;
  list.push_back(wide_values);
  Scenario odd_widths{"gqa-4/2-d30-v22-rotary10-at6-window40-long", 4, 2, 30, 10, false, 40, 0.f, 1.f, 0.2f, 10000.0,
                      2, 160, 2, long_prefill, {}};
  odd_widths.v_dim = 22;
  odd_widths.rope_offset = 6;
  list.push_back(odd_widths);
  // DeepSeek-V2/V3 multi-head latent attention with its decoupled rotary key: query/key heads of
  // 32 "nope" dims then 16 rotated ones, whose key part is one rope_key shared by every head;
  // values of 32. Rotate-half and interleaved (with clip and a YaRN-style rope_scale).
  Scenario latent{"mla-4-d48-nope32-rope16-v32", 4, 4, 48, 16, false, 0, 0.f, 1.f, kInvSqrt48, 10000.0, 3, 64, 2,
                  batch, {}};
  latent.v_dim = 32;
  latent.rope_offset = 32;
  latent.rope_key = true;
  list.push_back(latent);
  Scenario latent_interleaved{"mla-4-d48-nope32-rope16-v32-interleaved-clip-scale-long", 4, 4, 48, 16, true, 0, 0.8f,
                              1.1f, kInvSqrt48, 10000.0, 2, 160, 3, long_prefill, {}};
  latent_interleaved.v_dim = 32;
  latent_interleaved.rope_offset = 32;
  latent_interleaved.rope_key = true;
  list.push_back(latent_interleaved);
  return list;
}

}  // namespace


// ---- latent_attention (MLA over a cache of latents) ----------------------------------------------

struct LatentScenario {
  const char *name;
  int64_t heads, rank, nope, rope, vdim;
  bool interleaved;
  int64_t window;
  int64_t cache_rows, cache_length;
  int threads;
  std::vector<std::vector<Token>> calls;  // sequences filled from position 0 expand, the rest fold
};

struct LatentTally {
  double worst_f32 = 0, worst_of_bound = 0;
  int output_checks = 0;
} g_latent[2];  // [0]: fma_f32 path, [1]: a bf16 product path

// Each call against float64 MLA over the cache's entries as stored: keys [W_k[h]·c(s) | r(s)],
// values W_v[h]·c(s), the query's rotary tail rotated at its position. The cache entries are
// checked too: the latent rounded to the cache's dtype, the rotary key within one ulp of the f64
// rotation. f32 caches on the f32 path: 1e-5. bf16/f16 caches: the expanded keys and values
// are rounded to the cache's dtype (as a bf16 model computes them), and a bf16 product path also
// rounds q and p: each output is held to the bound those roundings imply (as check_outputs).
template <WeightType C, MatmulPath Path = MatmulPath::fma_f32>
void test_latent_attention(const LatentScenario &s, uint32_t seed) {
  const bool bf16_path = Path != MatmulPath::fma_f32;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  const int64_t H = s.heads, R = s.rank, n = s.nope, r = s.rope, vd = s.vdim, entry = R + r, qdim = n + r;
  std::vector<double> inv_freq;
  for (int64_t i = 0; i < r / 2; ++i) inv_freq.push_back(std::pow(10000.0, -2.0 * i / static_cast<double>(r)));
  LatentAttentionConfig c;
  c.heads = H;
  c.rank = R;
  c.nope_dim = n;
  c.rope_dim = r;
  c.v_head_dim = vd;
  c.inv_freq = inv_freq.data();
  c.rope_scale = 1.0f;
  c.rope_interleaved = s.interleaved;
  c.softmax_scale = 1.0f / std::sqrt(static_cast<float>(qdim));
  c.window = s.window;
  Tensor kv_b = random_tensor(rng, C, static_cast<size_t>(H * (n + vd) * R), 1.5f / std::sqrt(static_cast<float>(R)));
  Tensor cache(C, static_cast<size_t>(s.cache_rows * s.cache_length * entry));
  cache.poison();
  std::map<std::pair<int32_t, int32_t>, TokenInputs> inputs;  // q, latent (in k), rope_key
  auto rotate = [&](const float *x, int64_t pos, double *y) {  // r dims, f64
    for (int64_t d = 0; d < r; ++d) y[d] = x[d];
    for (int64_t i = 0; i < r / 2; ++i) {
      const int64_t ia = s.interleaved ? 2 * i : i, ib = s.interleaved ? 2 * i + 1 : i + r / 2;
      const double theta = static_cast<double>(pos) * inv_freq[i], cs = std::cos(theta), sn = std::sin(theta);
      const double a = x[ia], b = x[ib];
      y[ia] = a * cs - b * sn;
      y[ib] = b * cs + a * sn;
    }
  };
  const int tally = bf16_path ? 1 : 0;
  for (size_t call = 0; call < s.calls.size(); ++call) {
    const std::vector<Token> &tokens = s.calls[call];
    const int64_t T = static_cast<int64_t>(tokens.size());
    std::vector<float> q(T * H * qdim), latent(T * R), rope_key(T * r);
    std::vector<int32_t> positions(T), sequences(T);
    for (int64_t t = 0; t < T; ++t) {
      TokenInputs &in = inputs[{tokens[t].seq, tokens[t].pos}];
      in.q.resize(H * qdim);
      in.k.resize(R);
      in.rope_key.resize(r);
      for (auto &x : in.q) x = 1.5f * unit(rng);
      for (auto &x : in.k) x = unit(rng);
      for (auto &x : in.rope_key) x = unit(rng);
      std::copy(in.q.begin(), in.q.end(), q.begin() + t * H * qdim);
      std::copy(in.k.begin(), in.k.end(), latent.begin() + t * R);
      std::copy(in.rope_key.begin(), in.rope_key.end(), rope_key.begin() + t * r);
      positions[t] = tokens[t].pos;
      sequences[t] = tokens[t].seq;
    }
    const size_t ws = latent_attention_workspace_size<C>(c, T, s.cache_rows, s.cache_length, s.threads,
                                                         default_tile_config(), Path);
    unsigned char *workspace = static_cast<unsigned char *>(std::aligned_alloc(64, (ws + kCanary + 63) / 64 * 64));
    std::memset(workspace, 0xff, ws);
    std::memset(workspace + ws, 0xa5, kCanary);
    std::vector<float> out = poisoned(T * H * vd + 1);
    const int rc = latent_attention<C, Path>(c, T, q.data(), latent.data(), rope_key.data(),
                                             static_cast<const WeightStorage<C> *>(kv_b.data()), positions.data(),
                                             sequences.data(), s.cache_rows, s.cache_length,
                                             static_cast<WeightStorage<C> *>(cache.data()), out.data(), workspace,
                                             s.threads);
    bool canary = true;
    for (size_t i = 0; i < kCanary; ++i) canary = canary && workspace[ws + i] == 0xa5;
    std::free(workspace);
    check(rc == 0, "latent_attention %s/%s call %zu: returned %d", s.name, type_name(C), call, rc);
    check(canary, "latent_attention %s/%s call %zu: wrote past its workspace", s.name, type_name(C), call);
    check(std::isnan(out[T * H * vd]), "latent_attention %s/%s call %zu: wrote past out", s.name, type_name(C), call);
    // The cache entries of this call.
    const double ulp = C == WeightType::f32 ? 0.0 : C == WeightType::bf16 ? 0x1p-7 : 0x1p-10;
    bool entries_ok = true;
    for (int64_t t = 0; t < T; ++t) {
      const size_t at = static_cast<size_t>((sequences[t] * s.cache_length + positions[t]) * entry);
      for (int64_t d = 0; d < R; ++d) {
        const float want = cache.rounded(latent[t * R + d]), got = cache.get(at + d);
        entries_ok = entries_ok && same_bits(&want, &got, 4);
      }
      std::vector<double> rk(r);
      rotate(rope_key.data() + t * r, positions[t], rk.data());
      for (int64_t d = 0; d < r; ++d)
        entries_ok = entries_ok && std::fabs(cache.get(at + R + d) - rk[d]) <= ulp * std::fabs(rk[d]) + 1e-6;
    }
    check(entries_ok, "latent_attention %s/%s call %zu: cache entries differ", s.name, type_name(C), call);
    // Outputs against float64 over the entries as stored.
    double worst = 0;
    for (int64_t t = 0; t < T; ++t) {
      const Token tok = tokens[t];
      const int64_t lo = s.window > 0 ? std::max<int64_t>(0, tok.pos - s.window + 1) : 0, m = tok.pos - lo + 1;
      const TokenInputs &in = inputs.at({tok.seq, tok.pos});
      for (int64_t h = 0; h < H; ++h) {
        std::vector<double> qh(qdim);
        for (int64_t d = 0; d < n; ++d) qh[d] = in.q[h * qdim + d];
        rotate(in.q.data() + h * qdim + n, tok.pos, qh.data() + n);
        std::vector<double> scores(m), values(m * vd);
        double top = -INFINITY, score_error = 0;
        for (int64_t j = 0; j < m; ++j) {
          const size_t at = static_cast<size_t>((tok.seq * s.cache_length + lo + j) * entry);
          double dot = 0, magnitude = 0;
          for (int64_t i = 0; i < n; ++i) {
            double key = 0;
            for (int64_t e = 0; e < R; ++e) key += kv_b.get(static_cast<size_t>((h * (n + vd) + i) * R + e)) * cache.get(at + e);
            dot += qh[i] * key;
            magnitude += std::fabs(qh[i] * key);
          }
          for (int64_t d = 0; d < r; ++d) {
            dot += qh[n + d] * cache.get(at + R + d);
            magnitude += std::fabs(qh[n + d] * cache.get(at + R + d));
          }
          for (int64_t d = 0; d < vd; ++d) {
            double value = 0;
            for (int64_t e = 0; e < R; ++e) value += kv_b.get(static_cast<size_t>((h * (n + vd) + n + d) * R + e)) * cache.get(at + e);
            values[j * vd + d] = value;
          }
          scores[j] = dot * c.softmax_scale;
          // the key rounded to the cache's dtype, and with a bf16 product path q too
          score_error = std::max(score_error, ((bf16_path ? 2 : 1) * kBf16Roundoff) * magnitude * c.softmax_scale);
          top = std::max(top, scores[j]);
        }
        double sum = 0;
        for (double &x : scores) sum += (x = std::exp(x - top));
        std::vector<double> ref(vd, 0.0), spread(vd, 0.0);
        for (int64_t j = 0; j < m; ++j)
          for (int64_t d = 0; d < vd; ++d) {
            ref[d] += scores[j] / sum * values[j * vd + d];
            spread[d] += scores[j] / sum * std::fabs(values[j * vd + d]);
          }
        const double e = relative_l2(out.data() + (t * H + h) * vd, ref.data(), vd);
        if (C == WeightType::f32 && !bf16_path) {
          worst = std::max(worst, e / 1e-5);
          g_latent[tally].worst_f32 = std::max(g_latent[tally].worst_f32, e);
        } else {
          // values rounded (u), p rounded on a bf16 path (u), scores off by score_error
          const double bound = 1.1 * (2 * score_error + (bf16_path ? 2 : 1) * kBf16Roundoff) *
                                   norm2(spread.data(), vd) / std::max(norm2(ref.data(), vd), 1e-300) +
                               1e-5;
          worst = std::max(worst, e / bound);
        }
        ++g_latent[tally].output_checks;
      }
    }
    g_latent[tally].worst_of_bound = std::max(g_latent[tally].worst_of_bound, worst);
    check(worst <= 1.0, "latent_attention %s/%s call %zu (%zu tokens): error %.3g of its bound", s.name, type_name(C),
          call, tokens.size(), worst);
  }
  // Errors: a position past the cache and a row outside it return 1 and write nothing.
  for (Token bad : {Token{0, static_cast<int32_t>(s.cache_length)}, Token{static_cast<int32_t>(s.cache_rows), 0}}) {
    const std::vector<uint8_t> before(static_cast<const uint8_t *>(cache.data()),
                                      static_cast<const uint8_t *>(cache.data()) + cache.bytes());
    std::vector<Token> tokens = {{0, 0}, bad};
    std::vector<float> q(2 * H * qdim, 0.5f), latent(2 * R, 0.5f), rope_key(2 * r, 0.5f), out = poisoned(2 * H * vd);
    std::vector<int32_t> positions = {tokens[0].pos, tokens[1].pos}, sequences = {tokens[0].seq, tokens[1].seq};
    const size_t ws = latent_attention_workspace_size<C>(c, 2, s.cache_rows, s.cache_length, s.threads,
                                                         default_tile_config(), Path);
    void *workspace = std::aligned_alloc(64, (ws + 63) / 64 * 64);
    const int rc = latent_attention<C, Path>(c, 2, q.data(), latent.data(), rope_key.data(),
                                             static_cast<const WeightStorage<C> *>(kv_b.data()), positions.data(),
                                             sequences.data(), s.cache_rows, s.cache_length,
                                             static_cast<WeightStorage<C> *>(cache.data()), out.data(), workspace,
                                             s.threads);
    std::free(workspace);
    check(rc == 1 && std::memcmp(before.data(), cache.data(), cache.bytes()) == 0 && std::isnan(out[0]),
          "latent_attention %s/%s: an out-of-range token returned %d or wrote", s.name, type_name(C), rc);
  }
}

std::vector<LatentScenario> latent_scenarios() {
  // Two prefills (expanded), decode steps of both (folded), a 5-token continuation of row 0 and a
  // call mixing a third row's prefill with decode steps of the others (each path in one call).
  const std::vector<std::vector<Token>> mixed = {
      concat(run_of(0, 0, 9), run_of(1, 0, 20)),
      {{0, 9}, {1, 20}},
      {{1, 21}, {0, 10}},
      run_of(0, 11, 5),
      concat(concat(run_of(2, 0, 6), {{0, 16}}), {{1, 22}}),
  };
  return {
      {"mla-5h-r24", 5, 24, 8, 6, 12, false, 0, 3, 40, 2, mixed},
      {"mla-16h-r64-interleaved", 16, 64, 16, 8, 16, true, 0, 3, 40, 3, mixed},
      {"mla-3h-window", 3, 40, 8, 4, 8, false, 7, 3, 40, 1, mixed},
      // heads past a tile (two tiles of 20 decode heads on the bf16 paths), a window
      {"mla-40h-r32-window", 40, 32, 8, 4, 8, false, 9, 3, 40, 2, mixed},
      // a long prefill on the tile paths, then decode at length
      {"mla-8h-r128-long", 8, 128, 32, 16, 32, true, 0, 1, 200, 2, {run_of(0, 0, 150), {{0, 150}}, {{0, 151}}}},
  };
}

int main() {
  uint32_t seed = 1;
  for (int threads : {1, 2, 3})
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(9)})
      for (int64_t width : {int64_t(1), int64_t(37), int64_t(64)}) {
        test_gather<WeightType::f32>(rows, width, 50, threads, seed++);
        test_gather<WeightType::bf16>(rows, width, 50, threads, seed++);
        test_gather<WeightType::f16>(rows, width, 50, threads, seed++);
      }
  for (int threads : {1, 2})
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(7)})
      for (int64_t width : {int64_t(1), int64_t(37), int64_t(64), int64_t(2048)})
        for (bool in_place : {false, true}) {
          test_rms_norm<WeightType::f32>(rows, width, 1e-6f, in_place, threads, seed++);
          test_rms_norm<WeightType::bf16>(rows, width, 1e-5f, in_place, threads, seed++);
          test_rms_norm<WeightType::f16>(rows, width, 1e-6f, in_place, threads, seed++);
        }
  for (int threads : {1, 2, 3})
    for (int64_t n : {int64_t(0), int64_t(1), int64_t(37), int64_t(1000)})
      for (int alias = 0; alias < 3; ++alias) test_add(n, alias, threads, seed++);

  for (const Scenario &s : scenarios()) {
    test_attention<WeightType::f32>(s, seed++);
    test_attention<WeightType::bf16>(s, seed++);
    test_attention<WeightType::f16>(s, seed++);
  }
  // The bf16 tile paths (bf16 caches) over the same scenarios, and a head of 128 (query, key and
  // value) whose full key tiles are read in place: AMX where the build and the host have it,
  // VDPBF16PS where the build has AVX512-BF16 (built for this host: it has it). Their checks are
  // counted apart: the totals above are the same on every ISA. Not the large-scores scenario: a
  // query rounded to bf16 moves scores of ~100 by ~0.2 (u·|s|), far past any useful bound (a bf16
  // model's own attention rounds the same way).
  std::vector<std::string> bf16_lines;
  [[maybe_unused]] auto run_bf16_path = [&](auto path, const char *name) {
    constexpr MatmulPath Path = decltype(path)::value;
    g_bf16_tally = Bf16PathTally{};
    const int checks_before = g_checks, failures_before = g_failures;
    std::vector<Scenario> list = scenarios();
    std::vector<std::vector<Token>> long_prefill = {run_of(1, 0, 150), {{1, 150}}, run_of(1, 151, 20)};
    list.push_back({"gqa-8/2-d128-long", 8, 2, 128, 128, false, 0, 0.f, 1.f, 0.0883883476f, 1000000.0, 2, 200,
                    2, long_prefill, {}});
    for (const Scenario &s : list)
      if (s.tolerance <= 1e-5) test_attention<WeightType::bf16, Path>(s, seed++);
    char line[512];
    std::snprintf(line, sizeof line,
                  "attention %s tile path (bf16 caches), %d output checks: worst relative L2 error vs float64 "
                  "%.2g, worst %.2f of the bound from q and p rounded to bf16; %d of %d checks failed\n",
                  name, g_bf16_tally.output_checks, g_bf16_tally.worst, g_bf16_tally.worst_of_bound,
                  g_failures - failures_before, g_checks - checks_before);
    bf16_lines.push_back(line);
    g_checks = checks_before;
  };
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (amx_ready()) run_bf16_path(std::integral_constant<MatmulPath, MatmulPath::amx_bf16>{}, "amx_bf16");
#endif
#if defined(MIXTILE_HAVE_AVX512_BF16)
  run_bf16_path(std::integral_constant<MatmulPath, MatmulPath::avx512_bf16>{}, "avx512_bf16");
#endif
  for (const LatentScenario &s : latent_scenarios()) {
    test_latent_attention<WeightType::f32>(s, seed++);
    test_latent_attention<WeightType::bf16>(s, seed++);
    test_latent_attention<WeightType::f16>(s, seed++);
  }
  {
    [[maybe_unused]] auto latent_bf16_path = [&](auto path, const char *name) {
      constexpr MatmulPath Path = decltype(path)::value;
      g_latent[1] = LatentTally{};
      const int checks_before = g_checks, failures_before = g_failures;
      for (const LatentScenario &s : latent_scenarios()) test_latent_attention<WeightType::bf16, Path>(s, seed++);
      char line[512];
      std::snprintf(line, sizeof line,
                    "latent_attention %s path (bf16 cache), %d output checks: worst %.2f of the bound from the "
                    "roundings; %d of %d checks failed\n",
                    name, g_latent[1].output_checks, g_latent[1].worst_of_bound, g_failures - failures_before,
                    g_checks - checks_before);
      bf16_lines.push_back(line);
      g_checks = checks_before;
    };
#if defined(MIXTILE_HAVE_AMX_BF16)
    if (amx_ready()) latent_bf16_path(std::integral_constant<MatmulPath, MatmulPath::amx_bf16>{}, "amx_bf16");
#endif
#if defined(MIXTILE_HAVE_AVX512_BF16)
    latent_bf16_path(std::integral_constant<MatmulPath, MatmulPath::avx512_bf16>{}, "avx512_bf16");
#endif
  }
  // (rows, width, offset, count): whole rows, MLA's nope and rope parts, one column, none, and
  // one large enough (rows·count >= 65536) for the threaded copy.
  const int64_t copy_shapes[][4] = {{0, 8, 0, 8},  {1, 1, 0, 1},   {7, 48, 0, 32},   {7, 48, 32, 16},
                                    {5, 37, 36, 1}, {9, 37, 5, 0}, {300, 300, 77, 223}};
  for (int threads : {1, 2, 3})
    for (const auto &shape : copy_shapes) test_copy_columns(shape[0], shape[1], shape[2], shape[3], threads, seed++);

  std::printf("rms_norm_rows worst relative L2 error vs float64: %.2g (tolerance 1e-5)\n", g_worst_rms);
  std::printf("attention worst relative L2 error vs float64 over the caches' values, %d output checks: f32 %.2g, "
              "bf16 %.2g, f16 %.2g (tolerance 1e-5)\n",
              g_attention_checks, g_worst_attention[0], g_worst_attention[1], g_worst_attention[2]);
  std::printf("attention incremental (prefill chunks + decode) vs one full-prefix call: %.2g (tolerance 1e-5)\n",
              g_worst_full_prefix);
  std::printf("attention with scores up to ~100, worst relative L2 error vs float64: %.2g (tolerance 1e-4)\n",
              g_worst_large_scores);
  std::printf("attention with v_head_dim != head_dim, rope_offset > 0 or rope_key (MLA), %d output checks: worst "
              "relative L2 error vs float64 %.2g (tolerance 1e-5)\n",
              g_generalized_checks, g_worst_generalized);
  std::printf("k cache vs float64 rotation, worst error over one ulp (2^-7 |k| bf16, 2^-10 |k| f16): bf16 %.2f, "
              "f16 %.2f (bound 1)\n",
              g_worst_k_ulps[1], g_worst_k_ulps[2]);
  std::printf("latent_attention (MLA over cached latents: expanded prefills, folded decode, mixed calls), %d output "
              "checks: worst relative L2 error vs float64 with f32 caches %.2g (tolerance 1e-5), worst %.2f of the "
              "bound from the roundings with bf16/f16 caches\n",
              g_latent[0].output_checks, g_latent[0].worst_f32, g_latent[0].worst_of_bound);
  for (const std::string &line : bf16_lines) std::fputs(line.c_str(), stdout);
  std::printf("%s: %d of %d checks failed (ISA: %s)\n", g_failures ? "FAILED" : "PASSED", g_failures, g_checks,
#if defined(__AVX512F__)
              "AVX-512"
#elif defined(__AVX2__) && defined(__FMA__)
              "AVX2+FMA"
#else
              "scalar"
#endif
  );
  return g_failures ? 1 : 0;
}
