// Correctness test of the CPU kernel library (codegen/cpu/kernels/) against a naive float64 loop:
// expert_ffn over every activation, gated/plain, f32/bf16/f16 weights, every nullptr combination
// of tokens/gates/out_rows, empty experts, T = 0/1, odd sizes and forced tile shapes; and linear.
// Built with the native ISA and with -march=x86-64 -mno-avx (scalar fallback) by build.sh.
// Where the build enables them (and, for AMX, the OS grants tiles), the bf16 matrix-engine paths
// (MatmulPath::avx512_bf16, amx_bf16) run the same cases with bf16 weights; they round x and h to
// bf16 (relative 2^-8 each, round to nearest).
// Every output is held to the bound its path's precision implies, computed beside the float64
// reference (run_case, test_linear): a worst case, so it holds however much the sums cancel. The
// fma_f32 path must also keep the whole output within 1e-5 relative L2.
// fp8_e4m3 weights (random codes of every finite value, subnormals included, with random block
// scales of several block shapes, ragged at the edges) run every path: the reference multiplies
// with bf16(code * scale), the value the kernel must dequantize each weight to, so the fma_f32
// path keeps the f32 bound.
// mxfp4 weights (OCP MXFP4 as gpt-oss's checkpoints: random e2m1 codes, two a byte, and e8m0
// scales of each 32 columns around the shape's weight magnitude) run every path, depths multiples
// of 32 but some not of 64, segments of 1-4 rows (avx512_bf16's fused GEMV, dp_small_mxfp4) and
// more (slabs, mxfp4.h); the reference multiplies with bf16(e2m1 * 2^(s - 127)), which every path
// must multiply exactly. The dequantizer itself is checked bit for bit against a scalar reference
// written from the format's definition, over every scale byte (0, 1, 253, 254 and 255 included).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "codegen/cpu/kernels/kernels.h"

using namespace mixtile::cpu;

namespace {

int g_failures = 0, g_checks = 0;
double g_max_rel[5] = {0, 0, 0, 0, 0};  // worst relative L2 error of expert_ffn (fma_f32) per weight dtype
double g_max_rel_fp8_engine = 0;     // worst relative L2 error of fp8 weights on the bf16 paths
int g_fp8_checks = 0, g_fp8_engine_checks = 0;
double g_max_rel_mxfp4_engine = 0;  // the same for mxfp4 weights
int g_mxfp4_checks = 0, g_mxfp4_engine_checks = 0;
int g_oai_checks = 0, g_oai_engine_checks = 0;  // cases with swiglu_oai or expert biases
double g_max_rel_path[3] = {0, 0, 0};  // worst relative L2 error per MatmulPath (bf16 paths: bf16 weights)
int g_path_checks[3] = {0, 0, 0};
double g_max_ratio_path[3] = {0, 0, 0};  // worst |error| / precision bound per MatmulPath (expert_ffn)
double g_max_ratio_linear[3] = {0, 0, 0};  // the same for linear
double g_max_rel_linear = 0;  // worst relative L2 error of linear on the bf16 paths
int g_linear_engine_checks = 0;

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

uint16_t f32_to_f16(float f) {
  // Round-to-nearest conversion for values in the normal f16 range (all this test produces).
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  int32_t exp = static_cast<int32_t>((u >> 23) & 0xff) - 127 + 15;
  uint32_t mant = u & 0x7fffffu;
  if (exp <= 0) return static_cast<uint16_t>(sign);  // flush tiny values
  uint32_t h = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<uint16_t>(h);
}

// act(x); for swiglu_oai (gpt-oss) its gate half x' sigmoid(alpha x') with x' = min(x, limit) (the
// up half, clamp(u, +-limit) + 1, multiplies it in run_case).
double act_ref(Activation a, double x, const ActParams &ap = {}) {
  switch (a) {
    case Activation::swiglu_oai: {
      const double xc = std::min(x, static_cast<double>(ap.limit));
      return xc / (1.0 + std::exp(-static_cast<double>(ap.alpha) * xc));
    }
    case Activation::silu: return x / (1.0 + std::exp(-x));
    case Activation::gelu: return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
    case Activation::gelu_tanh:
      return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case Activation::relu: return x > 0 ? x : 0.0;
  }
  return 0;
}

// The largest |act'(x)| over all x: the Lipschitz constant that carries an input error through.
double act_lipschitz(Activation a) {
  switch (a) {
    case Activation::silu: return 1.10;       // max of sigmoid(x) (1 + x (1 - sigmoid(x))): 1.0998
    case Activation::gelu: return 1.13;       // max of Phi(x) + x phi(x): 1.1289
    case Activation::gelu_tanh: return 1.13;  // the tanh form's, within 1e-4 of the erf form's
    case Activation::relu: return 1.0;
    case Activation::swiglu_oai: return 1.10;  // silu's in alpha x' (x' = min(x, limit) is 1-Lipschitz)
  }
  return 0;
}

// Bound on |kernel activation - exact| at an x with |x| <= x_mag and |act(x)| <= act_mag: the f32
// evaluation (exp to ~1 ulp, a handful of roundings) and, for gelu, Abramowitz & Stegun's erf
// (|error| <= 1.5e-7, times 0.5 |x|); swiglu_oai evaluates silu's form at alpha x'.
double act_eval_error(Activation a, double x_mag, double act_mag, const ActParams &ap = {}) {
  const double e32 = std::ldexp(1.0, -24);
  if (a == Activation::swiglu_oai) x_mag *= ap.alpha;
  return 16 * e32 * (act_mag + x_mag) + (a == Activation::gelu ? 0.75e-7 * x_mag : 0.0);
}

// gamma(n) of floating-point summation: |computed - exact| <= gamma(n) * sum |terms| for any
// order of n additions in f32.
double gamma32(int64_t n) {
  const double nu = static_cast<double>(n) * std::ldexp(1.0, -24);
  return nu / (1.0 - nu);
}

const char *act_name(Activation a) {
  switch (a) {
    case Activation::silu: return "silu";
    case Activation::gelu: return "gelu";
    case Activation::gelu_tanh: return "gelu_tanh";
    case Activation::relu: return "relu";
    case Activation::swiglu_oai: return "swiglu_oai";
  }
  return "?";
}

// Bytes after a workspace that a kernel must never write.
constexpr size_t kCanary = 4096;
bool canary_intact(const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != 0xa5) return false;
  return true;
}

const char *wt_name(WeightType w) {
  return w == WeightType::f32    ? "f32"
         : w == WeightType::bf16 ? "bf16"
         : w == WeightType::f16  ? "f16"
         : w == WeightType::mxfp4 ? "mxfp4"
                                  : "fp8_e4m3";
}

// e4m3 (OCP e4m3fn) code -> value, written from the format's definition (not the library's).
double e4m3_value(uint8_t code) {
  const int e = (code >> 3) & 15, m = code & 7;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (code & 0x80) ? -mag : mag;
}

// e2m1 (OCP FP4) code -> value, from the format's definition: 1 sign, 2 exponent (bias 1), 1
// mantissa bit; exponent 0 is subnormal (m * 0.5).
double e2m1_value(uint8_t code) {
  const int e = (code >> 1) & 3, m = code & 1;
  const double mag = e == 0 ? 0.5 * m : std::ldexp(1.0 + 0.5 * m, e - 1);
  return (code & 8) ? -mag : mag;
}

// f32 -> bf16 bits, round to nearest even; NaN stays NaN.
uint16_t f32_to_bf16_nan(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return f32_to_bf16(f);
}

// The value an MXFP4 weight holds: bf16(f32(e2m1(code)) * f32(2^(s - 127))), as the runtime and
// transformers dequantize it.
uint16_t mxfp4_reference_bits(uint8_t code, uint8_t s) {
  const float product = static_cast<float>(e2m1_value(code)) * std::ldexp(1.0f, static_cast<int>(s) - 127);
  return f32_to_bf16_nan(product);
}

// Block shape of the fp8 weights of the current case (rows, cols of one scale block).
int64_t g_fp8_block_rows = 16, g_fp8_block_cols = 24;

// Weights of one matrix in the storage dtype plus their exact f32 values for the reference.
struct Matrix {
  std::vector<float> f32;      // storage when WeightType::f32, and the dequantized values always
  std::vector<uint16_t> bits;  // storage for bf16/f16
  std::vector<uint8_t> codes;      // storage for fp8_e4m3, with one scale per block:
  std::vector<float> scales;       // [ceil(rows / g_fp8_block_rows), ceil(cols / g_fp8_block_cols)];
                                   // and for mxfp4 ([rows, cols / 2], two codes a byte), with
  std::vector<uint8_t> mx_scales;  // one e8m0 scale per 32 columns: [rows, cols / 32]
  const void *data(WeightType w) const {
    return w == WeightType::f32                                   ? static_cast<const void *>(f32.data())
           : w == WeightType::fp8_e4m3 || w == WeightType::mxfp4 ? static_cast<const void *>(codes.data())
                                                                  : static_cast<const void *>(bits.data());
  }
};

Matrix make_matrix(std::mt19937 &rng, int64_t rows, int64_t cols, WeightType w, float scale) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  Matrix m;
  m.f32.resize(rows * cols);
  if (w == WeightType::mxfp4) {
    // Random codes (every one equally likely, +-0 included) and e8m0 scales of each 32 columns
    // within 2^+-3 of the one that brings the codes' mean magnitude (2.25) to `scale`.
    const int center = 127 + static_cast<int>(std::lround(std::log2(scale / 2.25f)));
    m.codes.resize(rows * cols / 2);
    m.mx_scales.resize(std::max<int64_t>(rows * cols / 32, 1));
    for (uint8_t &b : m.codes) b = static_cast<uint8_t>(rng() & 0xff);
    for (uint8_t &e : m.mx_scales) e = static_cast<uint8_t>(center - 3 + static_cast<int>(rng() % 7));
    static const std::vector<float> values = [] {  // [scale byte][code]
      std::vector<float> v(256 * 16);
      for (int i = 0; i < 256 * 16; ++i)
        v[i] = mixtile::cpu::detail::bf16_to_f32(
            mxfp4_reference_bits(static_cast<uint8_t>(i & 15), static_cast<uint8_t>(i >> 4)));
      return v;
    }();
    for (int64_t i = 0; i < rows * cols; ++i) {
      const uint8_t byte = m.codes[i / 2], code = (i & 1) ? byte >> 4 : byte & 15;
      m.f32[i] = values[m.mx_scales[i / 32] * 16 + code];
    }
    return m;
  }
  if (w == WeightType::fp8_e4m3) {
    // Random codes (every finite one equally likely: |value| up to 448) and block scales that
    // bring them near `scale`, each block's a little different.
    const int64_t br = g_fp8_block_rows, bc = g_fp8_block_cols;
    const int64_t nbr = (rows + br - 1) / br, nbc = (cols + bc - 1) / bc;
    std::uniform_real_distribution<float> spread(0.5f, 2.0f);
    m.scales.resize(std::max<int64_t>(nbr * nbc, 1));
    for (float &s : m.scales) s = scale / 448.0f * 4.0f * spread(rng);
    m.codes.resize(rows * cols);
    for (int64_t i = 0; i < rows * cols; ++i) {
      uint8_t c;
      do c = static_cast<uint8_t>(rng() & 0xff);
      while ((c & 0x7f) == 0x7f);  // NaN
      m.codes[i] = c;
      const float s = m.scales[(i / cols / br) * nbc + (i % cols) / bc];
      m.f32[i] = mixtile::cpu::detail::bf16_to_f32(f32_to_bf16(static_cast<float>(e4m3_value(c)) * s));
    }
    return m;
  }
  if (w != WeightType::f32) m.bits.resize(rows * cols);
  for (int64_t i = 0; i < rows * cols; ++i) {
    float v = dist(rng);
    if (w == WeightType::bf16) {
      m.bits[i] = f32_to_bf16(v);
      v = mixtile::cpu::detail::bf16_to_f32(m.bits[i]);
    } else if (w == WeightType::f16) {
      m.bits[i] = f32_to_f16(v);
      v = mixtile::cpu::detail::f16_to_f32(m.bits[i]);
    }
    m.f32[i] = v;
  }
  return m;
}

template <WeightType W, Activation Act, bool Gated, MatmulPath Path>
void call_expert_ffn(const ExpertFFNProblem &p, const TileConfig &t) {
  expert_ffn<W, Act, Gated, Path>(p, t);
}

using FfnFn = void (*)(const ExpertFFNProblem &, const TileConfig &);

template <WeightType W, bool Gated, MatmulPath Path = MatmulPath::fma_f32>
FfnFn pick_act(Activation a) {
  switch (a) {
    case Activation::silu: return call_expert_ffn<W, Activation::silu, Gated, Path>;
    case Activation::gelu: return call_expert_ffn<W, Activation::gelu, Gated, Path>;
    case Activation::gelu_tanh: return call_expert_ffn<W, Activation::gelu_tanh, Gated, Path>;
    case Activation::swiglu_oai: return call_expert_ffn<W, Activation::swiglu_oai, Gated, Path>;
    default: return call_expert_ffn<W, Activation::relu, Gated, Path>;
  }
}

const char *path_name(MatmulPath p) {
  return p == MatmulPath::fma_f32 ? "fma_f32" : p == MatmulPath::avx512_bf16 ? "avx512_bf16" : "amx_bf16";
}

FfnFn pick(WeightType w, Activation a, bool gated, MatmulPath path = MatmulPath::fma_f32) {
  // The bf16 paths exist only where the build enables their instructions (instantiating them
  // elsewhere is a compile error by design).
  const bool fp8 = w == WeightType::fp8_e4m3, mxfp4 = w == WeightType::mxfp4;
#if defined(MIXTILE_HAVE_AVX512_BF16)
  if (path == MatmulPath::avx512_bf16 && mxfp4)
    return gated ? pick_act<WeightType::mxfp4, true, MatmulPath::avx512_bf16>(a)
                 : pick_act<WeightType::mxfp4, false, MatmulPath::avx512_bf16>(a);
  if (path == MatmulPath::avx512_bf16 && fp8)
    return gated ? pick_act<WeightType::fp8_e4m3, true, MatmulPath::avx512_bf16>(a)
                 : pick_act<WeightType::fp8_e4m3, false, MatmulPath::avx512_bf16>(a);
  if (path == MatmulPath::avx512_bf16)
    return gated ? pick_act<WeightType::bf16, true, MatmulPath::avx512_bf16>(a)
                 : pick_act<WeightType::bf16, false, MatmulPath::avx512_bf16>(a);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (path == MatmulPath::amx_bf16 && mxfp4)
    return gated ? pick_act<WeightType::mxfp4, true, MatmulPath::amx_bf16>(a)
                 : pick_act<WeightType::mxfp4, false, MatmulPath::amx_bf16>(a);
  if (path == MatmulPath::amx_bf16 && fp8)
    return gated ? pick_act<WeightType::fp8_e4m3, true, MatmulPath::amx_bf16>(a)
                 : pick_act<WeightType::fp8_e4m3, false, MatmulPath::amx_bf16>(a);
  if (path == MatmulPath::amx_bf16)
    return gated ? pick_act<WeightType::bf16, true, MatmulPath::amx_bf16>(a)
                 : pick_act<WeightType::bf16, false, MatmulPath::amx_bf16>(a);
#endif
  if (path != MatmulPath::fma_f32) std::abort();
  if (fp8) return gated ? pick_act<WeightType::fp8_e4m3, true>(a) : pick_act<WeightType::fp8_e4m3, false>(a);
  if (mxfp4) return gated ? pick_act<WeightType::mxfp4, true>(a) : pick_act<WeightType::mxfp4, false>(a);
  if (w == WeightType::f32) return gated ? pick_act<WeightType::f32, true>(a) : pick_act<WeightType::f32, false>(a);
  if (w == WeightType::bf16) return gated ? pick_act<WeightType::bf16, true>(a) : pick_act<WeightType::bf16, false>(a);
  return gated ? pick_act<WeightType::f16, true>(a) : pick_act<WeightType::f16, false>(a);
}

struct Case {
  int64_t T, D, F, E, k;
  WeightType w;
  Activation act;
  bool gated, use_tokens, use_gates, use_out_rows, zero_in_kernel;
  int threads;
  TileConfig tiles;
  std::string tile_name;
  MatmulPath path = MatmulPath::fma_f32;
  // > 0: the call sees its assignments at offsets shifted by this much (offsets[0] = shift), with
  // that many poisoned entries before them in tokens, gates, out_rows (and x rows, contiguous).
  int64_t shift = 0;
  // Expert biases (gpt-oss): gate and up [E, F] (up only when plain), down [E, D]; and the
  // clamped SwiGLU's constants (Activation::swiglu_oai).
  bool bias = false;
  ActParams ap{};
};

void run_case(const Case &c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  const int64_t T = c.T, D = c.D, F = c.F, E = c.E;
  // Routing: each token picks k distinct experts out of E, never expert 1 nor the last (so those
  // experts have zero assignments whenever E > 3). Without tokens (contiguous mode), the x rows
  // are the assignments themselves, split over experts in the same way.
  std::vector<std::vector<std::pair<int32_t, float>>> per_expert(E);  // (token, gate)
  std::vector<int> allowed;
  for (int e = 0; e < E; ++e)
    if (E <= 3 || (e != 1 && e != E - 1)) allowed.push_back(e);
  const int64_t k = std::min<int64_t>(c.k, static_cast<int64_t>(allowed.size()));
  const int64_t picks = c.use_tokens ? k : 1;
  for (int64_t t = 0; t < T; ++t) {
    // Every fifth token of a gathering case goes to no expert (as a capacity drops it): its y
    // row must come out zero, or as it was when accumulating.
    if (c.use_tokens && t % 5 == 4) continue;
    std::vector<int> pool = allowed;
    for (int64_t j = 0; j < picks; ++j) {
      const size_t at = rng() % pool.size();
      per_expert[pool[at]].push_back({static_cast<int32_t>(t), 0.25f + 0.75f * std::fabs(unit(rng))});
      pool.erase(pool.begin() + at);
    }
  }
  std::vector<int32_t> offsets(E + 1, 0), tokens, out_rows;
  std::vector<float> gates;
  for (int64_t e = 0; e < E; ++e) {
    for (auto &tg : per_expert[e]) {
      tokens.push_back(tg.first);
      gates.push_back(tg.second);
    }
    offsets[e + 1] = static_cast<int32_t>(tokens.size());
  }
  const int64_t A = static_cast<int64_t>(tokens.size());
  // x rows: T token rows when gathering, otherwise the A assignment rows in expert order.
  const int64_t x_rows = c.use_tokens ? T : A;
  std::vector<float> x(std::max<int64_t>(x_rows, 1) * D);
  for (auto &v : x) v = unit(rng) * 1.5f;
  // out_rows: scatter into token rows when gathering, otherwise a permutation of assignment rows.
  const int64_t y_rows = c.use_out_rows ? (c.use_tokens ? T : A) : A;
  if (c.use_out_rows) {
    if (c.use_tokens) {
      out_rows = tokens;
    } else {
      out_rows.resize(A);
      for (int64_t a = 0; a < A; ++a) out_rows[a] = static_cast<int32_t>(A - 1 - a);
    }
  }
  std::vector<Matrix> gw(E), uw(E), dw(E);
  std::vector<const void *> gp(E), up(E), dp(E);
  std::vector<const float *> gs(E, nullptr), us(E, nullptr), ds(E, nullptr);  // fp8 scales
  std::vector<const uint8_t *> gm(E, nullptr), um(E, nullptr), dm(E, nullptr);  // mxfp4 scales
  for (int64_t e = 0; e < E; ++e) {
    if (c.gated) gw[e] = make_matrix(rng, F, D, c.w, 1.0f / std::sqrt(static_cast<float>(D)));
    uw[e] = make_matrix(rng, F, D, c.w, 1.0f / std::sqrt(static_cast<float>(D)));
    dw[e] = make_matrix(rng, D, F, c.w, 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(F, 1))));
    gp[e] = c.gated ? gw[e].data(c.w) : nullptr;
    up[e] = uw[e].data(c.w);
    dp[e] = dw[e].data(c.w);
    if (c.w == WeightType::fp8_e4m3) {
      gs[e] = c.gated ? gw[e].scales.data() : nullptr;
      us[e] = uw[e].scales.data();
      ds[e] = dw[e].scales.data();
    }
    if (c.w == WeightType::mxfp4) {
      gm[e] = c.gated ? gw[e].mx_scales.data() : nullptr;
      um[e] = uw[e].mx_scales.data();
      dm[e] = dw[e].mx_scales.data();
    }
  }
  // Biases, drawn after the weights (cases without them keep their data).
  std::vector<float> gbias, ubias, dbias;
  if (c.bias) {
    gbias.resize(E * F), ubias.resize(E * F), dbias.resize(E * D);
    for (auto *v : {&gbias, &ubias, &dbias})
      for (auto &b : *v) b = unit(rng) * 0.5f;
  }
  // Experts with no assignment get a null weight pointer: proves they are never read.
  for (int64_t e = 0; e < E; ++e)
    if (offsets[e + 1] == offsets[e]) gp[e] = up[e] = dp[e] = nullptr, gm[e] = um[e] = dm[e] = nullptr;

  // Reference in float64.
  std::vector<double> ref(std::max<int64_t>(y_rows, 1) * D, 0.0);
  std::vector<float> y(std::max<int64_t>(y_rows, 1) * D), y_init;
  if (c.use_out_rows && !c.zero_in_kernel) {
    for (int64_t i = 0; i < y_rows * D; ++i) y[i] = unit(rng), ref[i] = y[i];  // accumulate onto
    y_init.assign(y.begin(), y.end());
  } else {
    for (auto &v : y) v = std::numeric_limits<float>::quiet_NaN();  // poison: must be overwritten
  }
  // Beside it, a bound on each output's error that follows from the path's precision: x and h
  // rounded to bf16 on the bf16 paths (relative 2^-8 each, round to nearest), f32 sums
  // (gamma32), the activation's evaluation error carried through its Lipschitz constant, and
  // the f32 gate scale and accumulation into the output row. Every step is a worst case, so a
  // correct kernel cannot exceed it, however much the sums cancel.
  const double u_bf16 = c.path == MatmulPath::fma_f32 ? 0.0 : std::ldexp(1.0, -8);
  const double e32 = std::ldexp(1.0, -24), lip = act_lipschitz(c.act);
  // fp8 weights on avx512_bf16: segments of up to 4 rows multiply the exact code * scale
  // (dp_small_fp8), the others and the reference bf16(code * scale): the weights then differ by
  // their bf16 rounding, 2^-9 relative at most (x's rounding on top: the cross term included).
  const double u_w = c.w == WeightType::fp8_e4m3 && c.path == MatmulPath::avx512_bf16
                         ? std::ldexp(1.0, -9) * (1.0 + std::ldexp(1.0, -8))
                         : 0.0;
  std::vector<double> bound(ref.size(), 0.0), magnitude(ref.size(), 0.0);
  std::vector<int64_t> adds(ref.size(), 0);
  std::vector<double> hrow(F), dhrow(F);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t a = offsets[e]; a < offsets[e + 1]; ++a) {
      const float *xr = x.data() + (c.use_tokens ? tokens[a] : a) * D;
      for (int64_t f = 0; f < F; ++f) {
        double su = 0, sg = 0, au = 0, ag = 0;
        for (int64_t d = 0; d < D; ++d) {
          su += static_cast<double>(xr[d]) * uw[e].f32[f * D + d];
          au += std::fabs(static_cast<double>(xr[d]) * uw[e].f32[f * D + d]);
          if (c.gated) {
            sg += static_cast<double>(xr[d]) * gw[e].f32[f * D + d];
            ag += std::fabs(static_cast<double>(xr[d]) * gw[e].f32[f * D + d]);
          }
        }
        // A bias is one more f32 term of the sum (not rounded to bf16).
        const double bu = c.bias ? ubias[e * F + f] : 0.0, bg = c.bias && c.gated ? gbias[e * F + f] : 0.0;
        su += bu, sg += bg;
        const int64_t terms = D + (c.bias ? 1 : 0);
        const double dsu = (u_bf16 + u_w) * au + gamma32(terms) * (au + std::fabs(bu));
        const double dsg = (u_bf16 + u_w) * ag + gamma32(terms) * (ag + std::fabs(bg));
        double dh;
        if (c.gated) {
          const double act = act_ref(c.act, sg, c.ap);
          // S: what multiplies the activation: u, or for swiglu_oai clamp(u, +-limit) + 1 (the clamp
          // 1-Lipschitz, the + 1 one more f32 rounding).
          const bool oai = c.act == Activation::swiglu_oai;
          const double lim = c.ap.limit;
          const double S = oai ? std::min(std::max(su, -lim), lim) + 1.0 : su;
          const double dS = oai ? dsu + e32 * (std::fabs(S) + dsu) : dsu;
          hrow[f] = act * S;
          // |A' S' - A S| <= |A| dS + |S'| dA, dA <= lip dsg + the evaluation error at sg.
          const double dact =
              lip * dsg + act_eval_error(c.act, std::fabs(sg) + dsg, std::fabs(act) + lip * dsg, c.ap);
          dh = std::fabs(act) * dS + (std::fabs(S) + dS) * dact;
        } else {
          hrow[f] = act_ref(c.act, su, c.ap);
          dh = lip * dsu + act_eval_error(c.act, std::fabs(su) + dsu, std::fabs(hrow[f]) + lip * dsu, c.ap);
        }
        // The product's f32 rounding, then h rounded to bf16 before the second GEMM.
        dhrow[f] = dh + (u_bf16 + 2 * e32) * (std::fabs(hrow[f]) + dh);
      }
      const double g = c.use_gates ? gates[a] : 1.0;
      const int64_t orow = c.use_out_rows ? out_rows[a] : a;
      for (int64_t d = 0; d < D; ++d) {
        double s = 0, ds = 0, as = 0;
        for (int64_t f = 0; f < F; ++f) {
          const double w = dw[e].f32[d * F + f];
          s += hrow[f] * w;
          ds += dhrow[f] * std::fabs(w);
          as += (std::fabs(hrow[f]) + dhrow[f]) * std::fabs(w);
        }
        // The down bias joins the f32 sum before the gate scale.
        const double db = c.bias ? dbias[e * D + d] : 0.0;
        s += db;
        ds += gamma32(F + (c.bias ? 1 : 0)) * (as + std::fabs(db)) + u_w * as;
        // g * s in f32: one more rounding.
        const double contribution = std::fabs(g) * (ds + e32 * (std::fabs(s) + ds));
        if (c.use_out_rows) ref[orow * D + d] += g * s;
        else ref[orow * D + d] = g * s;
        bound[orow * D + d] += contribution;
        magnitude[orow * D + d] += std::fabs(g) * (std::fabs(s) + ds) * (1 + e32);
        ++adds[orow * D + d];
      }
    }
  }
  // The f32 additions into each output row (onto the caller's values when accumulating).
  for (size_t i = 0; i < bound.size(); ++i)
    bound[i] += gamma32(adds[i] + 1) * (magnitude[i] + (y_init.empty() ? 0.0 : std::fabs(y_init[i])));

  // The shifted view (Case::shift): same assignments, global indices offsets[0] + i.
  const int64_t sh = c.shift;
  auto shifted = [sh](const auto &v, auto poison) {
    std::vector<std::decay_t<decltype(v[0])>> out(sh, poison);
    out.insert(out.end(), v.begin(), v.end());
    return out;
  };
  std::vector<int32_t> offsets_s(offsets);
  for (auto &o : offsets_s) o += static_cast<int32_t>(sh);
  const std::vector<int32_t> tokens_s = shifted(tokens, std::numeric_limits<int32_t>::max());
  const std::vector<int32_t> out_rows_s = shifted(out_rows, std::numeric_limits<int32_t>::max());
  const std::vector<float> gates_s = shifted(gates, std::numeric_limits<float>::quiet_NaN());
  std::vector<float> x_s(c.use_tokens ? 0 : sh * D, std::numeric_limits<float>::quiet_NaN());
  x_s.insert(x_s.end(), x.begin(), x.end());

  ExpertFFNProblem p;
  p.num_experts = E;
  p.hidden = D;
  p.inter = F;
  p.x = x_s.data();
  p.offsets = offsets_s.data();
  p.tokens = c.use_tokens ? tokens_s.data() : nullptr;
  p.gates = c.use_gates ? gates_s.data() : nullptr;
  p.gate_w = c.gated ? gp.data() : nullptr;
  p.up_w = up.data();
  p.down_w = dp.data();
  p.y = y.data();
  p.out_rows = c.use_out_rows ? out_rows_s.data() : nullptr;
  p.zero_rows = (c.use_out_rows && c.zero_in_kernel) ? y_rows : 0;
  if (c.w == WeightType::fp8_e4m3) {
    p.gate_scale = c.gated ? gs.data() : nullptr;
    p.up_scale = us.data();
    p.down_scale = ds.data();
    p.scale_block_rows = g_fp8_block_rows;
    p.scale_block_cols = g_fp8_block_cols;
  }
  if (c.bias) {
    p.gate_bias = c.gated ? gbias.data() : nullptr;
    p.up_bias = ubias.data();
    p.down_bias = dbias.data();
  }
  p.act = c.ap;
  if (c.w == WeightType::mxfp4) {
    p.gate_mx_scale = c.gated ? gm.data() : nullptr;
    p.up_mx_scale = um.data();
    p.down_mx_scale = dm.data();
  }
  const size_t ws = expert_ffn_workspace_size(A, E, D, F, c.threads, c.tiles, c.path, c.w);
  unsigned char *workspace = static_cast<unsigned char *>(std::aligned_alloc(64, (ws + 63) / 64 * 64 + kCanary));
  std::memset(workspace, 0xff, ws);  // NaN bit patterns: scratch read before written shows
  std::memset(workspace + ws, 0xa5, (ws + 63) / 64 * 64 + kCanary - ws);  // must stay untouched
  p.workspace = workspace;
  p.num_threads = c.threads;
  pick(c.w, c.act, c.gated, c.path)(p, c.tiles);
  const bool within = canary_intact(workspace + ws, (ws + 63) / 64 * 64 + kCanary - ws);
  std::free(workspace);

  double num = 0, den = 0, ratio = 0;  // ratio: the worst |error| / bound
  bool finite = true;
  for (int64_t i = 0; i < y_rows * D; ++i) {
    if (!std::isfinite(y[i])) finite = false;
    const double d = y[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
    ratio = std::max(ratio, std::fabs(d) / std::max(bound[i], 1e-30));
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  g_max_ratio_path[static_cast<int>(c.path)] = std::max(g_max_ratio_path[static_cast<int>(c.path)], ratio);
  // Every output within its bound; on the f32 path also the whole output within 1e-5 relative L2
  // (its rounding errors are ~1e-7, far below).
  const double tol = c.path == MatmulPath::fma_f32 ? 1e-5 : std::numeric_limits<double>::infinity();
  if (c.path == MatmulPath::fma_f32) g_max_rel[static_cast<int>(c.w)] = std::max(g_max_rel[static_cast<int>(c.w)], rel);
  if (c.w == WeightType::fp8_e4m3) {
    ++g_fp8_checks;
    if (c.path != MatmulPath::fma_f32) g_max_rel_fp8_engine = std::max(g_max_rel_fp8_engine, rel), ++g_fp8_engine_checks;
  } else if (c.w == WeightType::mxfp4) {
    ++g_mxfp4_checks;
    if (c.path != MatmulPath::fma_f32)
      g_max_rel_mxfp4_engine = std::max(g_max_rel_mxfp4_engine, rel), ++g_mxfp4_engine_checks;
  } else {
    g_max_rel_path[static_cast<int>(c.path)] = std::max(g_max_rel_path[static_cast<int>(c.path)], rel);
  }
  if (c.act == Activation::swiglu_oai || c.bias) {
    ++g_oai_checks;
    if (c.path != MatmulPath::fma_f32) ++g_oai_engine_checks;
  }
  ++g_path_checks[static_cast<int>(c.path)];
  ++g_checks;
  if (!within) {
    ++g_failures;
    std::printf("FAIL %s T=%ld D=%ld F=%ld: wrote past expert_ffn_workspace_size\n", path_name(c.path), (long)T,
                (long)D, (long)F);
  }
  if (!finite || !(rel <= tol) || !(ratio <= 1.0)) {
    ++g_failures;
    std::printf("FAIL %s T=%ld D=%ld F=%ld E=%ld k=%ld %s %s %s tokens=%d gates=%d out_rows=%d zero=%d thr=%d "
                "tiles=%s bias=%d limit=%g: rel_l2=%.3g error/bound=%.3g finite=%d\n",
                path_name(c.path), (long)T, (long)D, (long)F, (long)E, (long)c.k, wt_name(c.w), act_name(c.act),
                c.gated ? "gated" : "plain", c.use_tokens, c.use_gates, c.use_out_rows, c.zero_in_kernel,
                c.threads, c.tile_name.c_str(), c.bias, c.ap.limit, rel, ratio, finite);
  }
}

void test_linear(WeightType w, int64_t rows, int64_t in, int64_t out, bool gather, bool bias, int threads,
                 const TileConfig &t, uint32_t seed, MatmulPath path = MatmulPath::fma_f32) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  const int64_t x_rows = gather ? rows + 3 : rows;
  std::vector<float> x(std::max<int64_t>(x_rows, 1) * in), b(out), y(std::max<int64_t>(rows, 1) * out,
                                                                        std::numeric_limits<float>::quiet_NaN());
  for (auto &v : x) v = unit(rng);
  for (auto &v : b) v = unit(rng);
  std::vector<int32_t> idx(rows);
  for (int64_t r = 0; r < rows; ++r) idx[r] = static_cast<int32_t>((r * 7 + 2) % x_rows);
  Matrix m = make_matrix(rng, out, in, w, 1.0f / std::sqrt(static_cast<float>(in)));
  LinearProblem p;
  p.rows = rows;
  p.in = in;
  p.out = out;
  p.x = x.data();
  p.row_index = gather ? idx.data() : nullptr;
  p.w = m.data(w);
  p.bias = bias ? b.data() : nullptr;
  p.y = y.data();
  p.num_threads = threads;
  const size_t ws = linear_workspace_size(rows, in, out, threads, t, path);
  unsigned char *workspace = static_cast<unsigned char *>(std::aligned_alloc(64, (ws + 63) / 64 * 64 + kCanary));
  std::memset(workspace, 0xff, ws);
  std::memset(workspace + ws, 0xa5, (ws + 63) / 64 * 64 + kCanary - ws);
  p.workspace = workspace;
  if (path == MatmulPath::avx512_bf16) {
#if defined(MIXTILE_HAVE_AVX512_BF16)
    linear<WeightType::bf16, MatmulPath::avx512_bf16>(p, t);
#endif
  } else if (path == MatmulPath::amx_bf16) {
#if defined(MIXTILE_HAVE_AMX_BF16)
    linear<WeightType::bf16, MatmulPath::amx_bf16>(p, t);
#endif
  } else if (w == WeightType::f32) {
    linear<WeightType::f32>(p, t);
  } else if (w == WeightType::bf16) {
    linear<WeightType::bf16>(p, t);
  } else {
    linear<WeightType::f16>(p, t);
  }
  if (!canary_intact(workspace + ws, (ws + 63) / 64 * 64 + kCanary - ws)) {
    ++g_failures;
    std::printf("FAIL linear %s rows=%ld in=%ld out=%ld: wrote past linear_workspace_size\n", path_name(path),
                (long)rows, (long)in, (long)out);
  }
  std::free(workspace);
  // The bf16 paths round the rows to bf16; so does fma_f32 on bf16 weights from small_dp_rows rows.
  bool rounded = path != MatmulPath::fma_f32;
#if defined(MIXTILE_HAVE_AVX512_BF16)
  rounded = rounded || (w == WeightType::bf16 && in > 0 && detail::linear_small_dp(rows, t));
#endif
  // Each output's bound from the path's precision (as in run_case): x rounded to bf16 where the
  // path rounds it, f32 sums of in + 1 terms (the bias the first or the last).
  const double u_bf16 = rounded ? std::ldexp(1.0, -8) : 0.0;
  double num = 0, den = 0, ratio = 0;
  bool finite = true;
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x.data() + (gather ? idx[r] : r) * in;
    for (int64_t n = 0; n < out; ++n) {
      double s = bias ? b[n] : 0.0, as = 0;
      for (int64_t k = 0; k < in; ++k) {
        s += static_cast<double>(xr[k]) * m.f32[n * in + k];
        as += std::fabs(static_cast<double>(xr[k]) * m.f32[n * in + k]);
      }
      const double bound = (u_bf16 + gamma32(in + 1)) * as + gamma32(in + 1) * (bias ? std::fabs(b[n]) : 0.0);
      if (!std::isfinite(y[r * out + n])) finite = false;
      num += (y[r * out + n] - s) * (y[r * out + n] - s);
      den += s * s;
      ratio = std::max(ratio, std::fabs(y[r * out + n] - s) / std::max(bound, 1e-30));
    }
  }
  const double rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  ++g_checks;
  g_max_ratio_linear[static_cast<int>(path)] = std::max(g_max_ratio_linear[static_cast<int>(path)], ratio);
  if (rounded) {
    g_max_rel_linear = std::max(g_max_rel_linear, rel);
    ++g_linear_engine_checks;
  }
  if (!finite || !(ratio <= 1.0) || !(rounded || rel <= 1e-5)) {
    ++g_failures;
    std::printf("FAIL linear %s %s rows=%ld in=%ld out=%ld gather=%d bias=%d thr=%d: rel_l2=%.3g error/bound=%.3g "
                "finite=%d\n",
                path_name(path), wt_name(w), (long)rows, (long)in, (long)out, gather, bias, threads, rel, ratio,
                finite);
  }
}

// dequantize_mxfp4_rows (the slabs of every path; the fused GEMV reads the same table) against
// mxfp4_reference_bits, bit for bit (a NaN as any NaN): depths from one block to past 2048 (odd
// block counts among them), from row 0 and from row 5; rows whose scales cycle through every byte
// 0 .. 255, rows cycling through the edge ones (denormal results, 2^126 and 2^127 where 4 and 6
// overflow to inf, 255: inf, and NaN for the zero codes), and realistic rows between. The words
// after the rows stay untouched.
void test_mxfp4_dequantizer() {
  std::mt19937 rng(4242);
  const uint8_t edges[] = {0, 1, 2, 252, 253, 254, 255};
  int64_t values = 0, wrong = 0;
  bool every_scale[256] = {};
  for (int64_t K : {int64_t(32), int64_t(96), int64_t(2112), int64_t(8192)}) {
    const int64_t rows = 12, blocks = K / 32;
    std::vector<uint8_t> codes(rows * K / 2), scales(rows * blocks);
    for (uint8_t &b : codes) b = static_cast<uint8_t>(rng() & 0xff);
    int64_t cycle = 0, edge = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < blocks; ++j)
        scales[r * blocks + j] = r % 3 == 0   ? static_cast<uint8_t>(cycle++ & 0xff)
                                 : r % 3 == 1 ? edges[edge++ % 7]
                                              : static_cast<uint8_t>(120 + rng() % 11);
    for (int64_t row0 : {int64_t(0), int64_t(5)}) {
      const int64_t n = rows - row0 - 1;
      std::vector<uint16_t> dst(n * K + 64, 0xdead);
      dequantize_mxfp4_rows(dst.data(), codes.data(), scales.data(), K, row0, n);
      int64_t bad = 0;
      for (int64_t q = 0; q < n; ++q)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t r = row0 + q;
          const uint8_t byte = codes[r * K / 2 + k / 2], code = (k & 1) ? byte >> 4 : byte & 15;
          const uint8_t sc = scales[r * blocks + k / 32];
          const uint16_t want = mxfp4_reference_bits(code, sc), got = dst[q * K + k];
          const bool want_nan = (want & 0x7fff) > 0x7f80, got_nan = (got & 0x7fff) > 0x7f80;
          bad += want_nan ? !got_nan : got != want;
          every_scale[sc] = true;
          ++values;
        }
      for (int64_t i = n * K; i < n * K + 64; ++i) bad += dst[i] != 0xdead;
      wrong += bad;
      ++g_checks;
      if (bad > 0) {
        ++g_failures;
        std::printf("FAIL mxfp4 dequantizer K=%ld row0=%ld: %ld values differ from bf16(e2m1 * 2^(s - 127))\n",
                    (long)K, (long)row0, (long)bad);
      }
    }
  }
  int scales_seen = 0;
  for (bool b : every_scale) scales_seen += b;
  ++g_checks;
  if (scales_seen != 256) ++g_failures, std::printf("FAIL mxfp4 dequantizer: only %d scale bytes tried\n", scales_seen);
  std::printf("mxfp4 dequantizer: %ld values of %d scale bytes, %ld differ from bf16(e2m1 * 2^(s - 127))\n",
              (long)values, scales_seen, (long)wrong);
}

// A NaN in one token row must poison exactly that token's output row (spec: edge cases).
// Each activation of the build's vector code (activate_partial, vgated) at huge, overflowing and
// non-finite inputs against float64: within 2e-6 of the result, and no more than 1e-7 |x| off for
// |x| <= 16 (gelu's erf approximation, the tanh form's cancellation in the reference), else 1e-30;
// NaN exactly where float64 gives NaN (silu(-inf) = -inf / inf, as x / (1 + exp(-x)) there). With
// the engine paths compiled in, silu_for_bf16 (their hidden epilogue's SiLU, rounded to bf16 right
// after) too, within 1e-4 of the result.
int g_activation_checks = 0;
void test_activation_extremes() {
  const float inf = std::numeric_limits<float>::infinity(), big = std::numeric_limits<float>::max();
  std::vector<float> xs = {0.0f, 1e-30f, 1.0f, 10.0f, 16.0f, 20.0f, 50.0f, 87.0f, 88.5f, 89.0f, 100.0f,
                           1e4f, 1e10f, 1e30f, 3e38f, big, inf};
  for (size_t i = 1, n = xs.size(); i < n; ++i) xs.push_back(-xs[i]);
  xs.push_back(std::numeric_limits<float>::quiet_NaN());
  const ActParams ap;  // swiglu_oai: gpt-oss's alpha and limit
  auto check = [&](const char *what, float x, double got, double ref, double rel) {
    const double ax = std::fabs(static_cast<double>(x));
    const bool ok = std::isnan(ref) ? std::isnan(got)
                                    : !std::isnan(got) && (got == ref || std::fabs(got - ref) <= rel * std::fabs(ref) +
                                                                                                     (ax <= 16 ? 1e-7 * ax : 1e-30));
    ++g_checks;
    ++g_activation_checks;
    if (!ok) {
      ++g_failures;
      std::printf("FAIL activation %s(%g) = %g, float64 %g\n", what, static_cast<double>(x), got, ref);
    }
  };
  const Activation acts[] = {Activation::silu, Activation::gelu, Activation::gelu_tanh, Activation::relu,
                             Activation::swiglu_oai};
  for (Activation a : acts)
    for (size_t i = 0; i < xs.size(); i += detail::kVecWidth) {
      const int n = static_cast<int>(std::min<size_t>(detail::kVecWidth, xs.size() - i));
      float out[detail::kVecWidth];
      switch (a) {
        case Activation::silu: detail::activate_partial<Activation::silu>(out, &xs[i], nullptr, n, ap); break;
        case Activation::gelu: detail::activate_partial<Activation::gelu>(out, &xs[i], nullptr, n, ap); break;
        case Activation::gelu_tanh: detail::activate_partial<Activation::gelu_tanh>(out, &xs[i], nullptr, n, ap); break;
        case Activation::relu: detail::activate_partial<Activation::relu>(out, &xs[i], nullptr, n, ap); break;
        case Activation::swiglu_oai: detail::activate_partial<Activation::swiglu_oai>(out, &xs[i], nullptr, n, ap); break;
      }
      for (int j = 0; j < n; ++j) {
        const double x = xs[i + j];
        // gelu_tanh as x sigmoid(2u): the reference's own 1 + tanh(u) cancels for x < -6.
        const double u2 = 2 * std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
        const double ref = a == Activation::gelu_tanh ? x / (1.0 + std::exp(-u2))
                           : a == Activation::relu    ? (std::isnan(x) ? x : act_ref(a, x, ap))  // NaN propagates
                                                      : act_ref(a, x, ap);
        check(act_name(a), xs[i + j], out[j], ref, 2e-6);
      }
    }
#if defined(MIXTILE_HAVE_BF16_ENGINE)
  for (size_t i = 0; i < xs.size(); i += 16) {
    alignas(64) float in[16] = {}, out[16];
    const int n = static_cast<int>(std::min<size_t>(16, xs.size() - i));
    std::copy(xs.begin() + i, xs.begin() + i + n, in);
    _mm512_store_ps(out, detail::silu_for_bf16<false>(_mm512_load_ps(in), _mm512_setzero_ps()));
    for (int j = 0; j < n; ++j) check("silu_for_bf16", in[j], out[j], act_ref(Activation::silu, in[j]), 1e-4);
  }
#endif
  std::printf("activations at extreme inputs: %d checks\n", g_activation_checks);
}

void test_nan_propagation(const TileConfig &tiles, const char *name, MatmulPath path = MatmulPath::fma_f32) {
  const WeightType wt = path == MatmulPath::fma_f32 ? WeightType::f32 : WeightType::bf16;
  const int64_t T = 40, D = 100, F = 37, E = 4;
  std::mt19937 rng(99);
  std::uniform_real_distribution<float> unit(-1.f, 1.f);
  std::vector<float> x(T * D), y(T * D);
  for (auto &v : x) v = unit(rng);
  x[7 * D + 13] = std::numeric_limits<float>::quiet_NaN();
  std::vector<int32_t> offsets(E + 1), tokens;
  std::vector<float> gates;
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t t = 0; t < T; ++t)
      if ((t + e) % 2 == 0) tokens.push_back(static_cast<int32_t>(t)), gates.push_back(0.5f);
    offsets[e + 1] = static_cast<int32_t>(tokens.size());
  }
  std::vector<Matrix> w;
  std::vector<const void *> g(E), u(E), d(E);
  for (int64_t e = 0; e < E; ++e) {
    w.push_back(make_matrix(rng, F, D, wt, 0.1f));
    w.push_back(make_matrix(rng, F, D, wt, 0.1f));
    w.push_back(make_matrix(rng, D, F, wt, 0.1f));
  }
  for (int64_t e = 0; e < E; ++e) g[e] = w[3 * e].data(wt), u[e] = w[3 * e + 1].data(wt), d[e] = w[3 * e + 2].data(wt);
  ExpertFFNProblem p;
  p.num_experts = E;
  p.hidden = D;
  p.inter = F;
  p.x = x.data();
  p.offsets = offsets.data();
  p.tokens = tokens.data();
  p.gates = gates.data();
  p.gate_w = g.data();
  p.up_w = u.data();
  p.down_w = d.data();
  p.y = y.data();
  p.out_rows = tokens.data();
  p.zero_rows = T;
  p.num_threads = 2;
  const size_t ws = expert_ffn_workspace_size(static_cast<int64_t>(tokens.size()), E, D, F, 2, tiles, path);
  void *workspace = std::aligned_alloc(64, (ws + 63) / 64 * 64 + 64);
  p.workspace = workspace;
  pick(wt, Activation::silu, true, path)(p, tiles);
  std::free(workspace);
  bool ok = true;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < D; ++i) ok &= (t == 7) == std::isnan(y[t * D + i]);
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL NaN propagation (%s, %s): a NaN in token 7 must make exactly row 7 NaN\n", name,
                path_name(path));
  }
}

}  // namespace

int main() {
  std::vector<std::pair<std::string, TileConfig>> tile_sets;
  tile_sets.push_back({"default", default_tile_config()});
  TileConfig tiny;  // many kc slices, nc blocks and mc blocks; blocked path even for 1 row
  tiny.mc = 2 * kMicroRows;
  tiny.kc = 16;
  tiny.nc = kMicroCols;
  tiny.small_m_max = 0;
  tile_sets.push_back({"tiny-blocked", tiny});
  TileConfig all_small = default_tile_config();
  all_small.small_m_max = 1 << 30;
  tile_sets.push_back({"all-small", all_small});
  TileConfig small_groups = all_small;
  small_groups.small_group_rows = 3;  // token groups of at most 3 rows (segments of 4+ in several)
  small_groups.small_prefetch_rows = 2;
  tile_sets.push_back({"all-small-groups3", small_groups});

  const WeightType wts[] = {WeightType::f32, WeightType::bf16, WeightType::f16};
  const Activation acts[] = {Activation::silu, Activation::gelu, Activation::gelu_tanh, Activation::relu};
  struct Shape {
    int64_t T, D, F, E, k;
  };
  const Shape shapes[] = {{0, 100, 37, 5, 2},  {1, 100, 37, 5, 2},  {13, 100, 37, 6, 2},
                          {40, 100, 37, 6, 2}, {9, 64, 96, 4, 2},   {50, 33, 70, 3, 3},
                          {3, 17, 5, 1, 1},    {30, 130, 300, 5, 2}};
  // A case of shape s with routing/pointer options `opts` (4 bits: tokens, gates, out_rows,
  // zeroing in the kernel); false for the one invalid pairing (zeroing without a scatter).
  auto option_case = [](const Shape &s, int opts, int gated, Case &c) {
    c.T = s.T;
    c.D = s.D;
    c.F = s.F;
    c.E = s.E;
    c.k = s.k;
    c.use_tokens = opts & 1;
    c.use_gates = (opts >> 1) & 1;
    c.use_out_rows = (opts >> 2) & 1;
    c.zero_in_kernel = (opts >> 3) & 1;
    c.gated = gated;
    return c.use_out_rows || !c.zero_in_kernel;
  };
  uint32_t seed = 1;
  // Full cross product on the small shapes for the routing/pointer options; the activations and
  // dtypes cycle through the combinations so every pairing is covered without a huge run.
  int combo = 0;
  for (const auto &ts : tile_sets) {
    for (const Shape &s : shapes) {
      for (int opts = 0; opts < 16; ++opts) {
        for (int gated = 0; gated < 2; ++gated) {
          Case c;
          if (!option_case(s, opts, gated, c)) continue;
          c.w = wts[combo % 3];
          c.act = acts[(combo / 3) % 4];
          ++combo;
          c.threads = 1 + combo % 3;
          c.tiles = ts.second;
          c.tile_name = ts.first;
          c.shift = (seed % 3 == 0) ? 3 : 0;
          run_case(c, seed++);
        }
      }
    }
  }
  // Every dtype x activation x gated at one shape that takes both paths, 2 threads.
  for (WeightType w : wts)
    for (Activation a : acts)
      for (int gated = 0; gated < 2; ++gated)
        for (int64_t T : {int64_t(2), int64_t(25)}) {
          Case c{T, 100, 37, 5, 2, w, a, bool(gated), true, true, true, false, 2, default_tile_config(), "default"};
          run_case(c, seed++);
        }
  // fp8_e4m3 weights (fp8.h, dequantized in slabs of weight rows): every tile set and shape, block
  // shapes cycling (ragged edges, a single block, one-row blocks), depths past 2048 (16-row slabs).
  const int64_t fp8_blocks[][2] = {{16, 24}, {8, 8}, {128, 128}, {1, 32}, {5, 3}, {32, 64}};
  int fp8_case = 0;
  uint32_t fp8_seed = 100000;  // its own seeds: the other cases keep their data
  // Every tile set x shape x four routing options x gated/plain with fp8 weights on `path`,
  // block shapes, activations and thread counts cycling; `shift`: Case::shift of every third.
  auto run_fp8_cases = [&](const std::vector<std::pair<std::string, TileConfig>> &sets,
                           const std::vector<Shape> &fp8_shapes, MatmulPath path, int64_t shift) {
    for (const auto &ts : sets)
      for (const Shape &s : fp8_shapes)
        for (int opts : {0, 2, 7, 15})
          for (int gated = 0; gated < 2; ++gated) {
            Case c;
            if (!option_case(s, opts, gated, c)) continue;
            c.w = WeightType::fp8_e4m3;
            c.act = acts[fp8_case % 4];
            c.threads = 1 + fp8_case % 3;
            c.tiles = ts.second;
            c.tile_name = ts.first;
            c.path = path;
            c.shift = (fp8_seed % 3 == 0) ? shift : 0;
            g_fp8_block_rows = fp8_blocks[fp8_case % 6][0];
            g_fp8_block_cols = fp8_blocks[fp8_case % 6][1];
            ++fp8_case;
            run_case(c, fp8_seed++);
          }
  };
  std::vector<Shape> fp8_shapes(std::begin(shapes), std::end(shapes));
  fp8_shapes.push_back({6, 2100, 40, 3, 2});
  fp8_shapes.push_back({20, 40, 2100, 3, 2});
  run_fp8_cases(tile_sets, fp8_shapes, MatmulPath::fma_f32, 3);
  // mxfp4 weights (mxfp4.h): depths D and F multiples of 32, some not of 64 (96, 160, 224, 2112:
  // odd numbers of blocks); segments of 1-4 rows (fused GEMV on avx512_bf16) and more (slabs),
  // depths past 2048 (16-row slabs). Two routing options per shape (cycling through four).
  test_mxfp4_dequantizer();
  test_activation_extremes();
  int mxfp4_case = 0;
  uint32_t mxfp4_seed = 300000;
  auto run_mxfp4_cases = [&](const std::vector<std::pair<std::string, TileConfig>> &sets,
                             const std::vector<Shape> &mx_shapes, MatmulPath path, int64_t shift) {
    const int options[] = {0, 2, 7, 15};
    for (const auto &ts : sets)
      for (const Shape &s : mx_shapes)
        for (int gated = 0; gated < 2; ++gated) {
          Case c;
          if (!option_case(s, options[(mxfp4_case + gated) % 4], gated, c)) continue;
          c.w = WeightType::mxfp4;
          c.act = acts[mxfp4_case % 4];
          c.threads = 1 + mxfp4_case % 3;
          c.tiles = ts.second;
          c.tile_name = ts.first;
          c.path = path;
          c.shift = (mxfp4_seed % 3 == 0) ? shift : 0;
          ++mxfp4_case;
          run_case(c, mxfp4_seed++);
        }
  };
  const std::vector<Shape> mxfp4_shapes = {{0, 96, 32, 5, 2},   {1, 96, 64, 5, 2},     {2, 160, 96, 4, 3},
                                           {13, 160, 96, 6, 2}, {40, 96, 160, 6, 2},   {3, 32, 32, 1, 1},
                                           {30, 224, 288, 5, 2}, {6, 2112, 64, 3, 2}, {20, 64, 2112, 3, 2}};
  run_mxfp4_cases(tile_sets, mxfp4_shapes, MatmulPath::fma_f32, 3);
  // gpt-oss's FFN: the clamped SwiGLU (swiglu_oai, gated only, as mix.expert_ffn allows it) with
  // gate/up/down biases, on every tile set and the mxfp4 shapes (depths multiples of 32, so every
  // weight type fits); weight types, routing options and thread counts cycling; a limit of 0.75 in
  // every other case clamps many of the gate and up values (7, gpt-oss's, few here). Every fourth
  // gated case is silu with biases, every third swiglu_oai without; plain FFNs take the other
  // activations with biases (up and down).
  int oai_case = 0;
  uint32_t oai_seed = 400000;
  auto run_oai_cases = [&](const std::vector<std::pair<std::string, TileConfig>> &sets,
                           const std::vector<Shape> &oai_shapes, const std::vector<WeightType> &oai_wts,
                           MatmulPath path, int64_t shift) {
    const int options[] = {0, 2, 7, 15};
    for (const auto &ts : sets)
      for (const Shape &s : oai_shapes)
        for (int gated = 0; gated < 2; ++gated) {
          Case c;
          if (!option_case(s, options[(oai_case + gated) % 4], gated, c)) continue;
          c.w = oai_wts[oai_case % oai_wts.size()];
          c.act = !gated ? acts[oai_case % 4] : oai_case % 4 == 3 ? Activation::silu : Activation::swiglu_oai;
          c.bias = c.act != Activation::swiglu_oai || oai_case % 3 != 2;
          c.ap.limit = oai_case % 2 == 0 ? 0.75f : 7.0f;
          c.threads = 1 + oai_case % 3;
          c.tiles = ts.second;
          c.tile_name = ts.first;
          c.path = path;
          c.shift = (oai_seed % 3 == 0) ? shift : 0;
          if (c.w == WeightType::fp8_e4m3) g_fp8_block_rows = 16, g_fp8_block_cols = 32;
          ++oai_case;
          run_case(c, oai_seed++);
        }
  };
  run_oai_cases(tile_sets, mxfp4_shapes,
                {WeightType::mxfp4, WeightType::bf16, WeightType::f32, WeightType::fp8_e4m3, WeightType::f16},
                MatmulPath::fma_f32, 3);
  // Linear: all dtypes, gather/bias, both paths and both thread splits.
  for (WeightType w : wts)
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(5), int64_t(37)})
      for (int64_t out : {int64_t(8), int64_t(100)})
        for (int gb = 0; gb < 4; ++gb)
          for (const auto &ts : tile_sets) test_linear(w, rows, 70, out, gb & 1, gb & 2, 2, ts.second, seed++);

  for (const auto &ts : tile_sets) test_nan_propagation(ts.second, ts.first.c_str());

  // The small path prefetching into L2 (TileConfig::small_prefetch_l2_bytes, the Intel table's
  // linear): every shape and dtype, expert FFNs and linear, on seeds of their own (the other
  // cases keep their data).
  {
    TileConfig small_l2 = all_small;
    small_l2.small_prefetch_rows = 1;  // every token group prefetches in software,
    small_l2.small_prefetch_l2_bytes = 4096;  // full-depth ones into L2
    uint32_t l2_seed = 200000;
    int l2_combo = 0;
    for (const Shape &s : shapes)
      for (int opts : {0, 2, 7, 15})
        for (int gated = 0; gated < 2; ++gated) {
          Case c;
          if (!option_case(s, opts, gated, c)) continue;
          c.w = wts[l2_combo % 3];
          c.act = acts[(l2_combo / 3) % 4];
          ++l2_combo;
          c.threads = 1 + l2_combo % 3;
          c.tiles = small_l2;
          c.tile_name = "all-small-l2";
          run_case(c, l2_seed++);
        }
    TileConfig small_dp = small_l2;
    small_dp.small_dp_rows = 3;  // bf16 weights from 3 rows on VDPBF16PS (where the build has it)
    for (WeightType w : wts)
      for (int64_t rows : {int64_t(1), int64_t(3), int64_t(4), int64_t(5), int64_t(37)})
        for (int gb = 0; gb < 4; ++gb) {
          test_linear(w, rows, 70, 100, gb & 1, gb & 2, 2, small_l2, l2_seed++);
          test_linear(w, rows, 70, 100, gb & 1, gb & 2, 2, small_dp, l2_seed++);
        }
  }

  // The bf16 matrix-engine paths over the same shapes and routing options, bf16 weights. Tile
  // sets: the default (GEMV path up to small_m_max rows per expert, engines above: both in one
  // call), engines for every segment (with and without depth slices), and the GEMV path for
  // every segment.
  std::vector<MatmulPath> engines;
#if defined(MIXTILE_HAVE_AVX512_BF16)
  engines.push_back(MatmulPath::avx512_bf16);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
  if (amx_ready()) engines.push_back(MatmulPath::amx_bf16);
  else std::printf("amx_bf16 built but the OS refuses AMX tiles: not tested\n");
#endif
  std::vector<std::pair<std::string, TileConfig>> engine_tiles;
  TileConfig mixed = default_tile_config();
  mixed.small_m_max = 4;
  mixed.engine_kc = 96;  // depth slices (partial results between them) for D, F > 96
  mixed.small_prefetch_rows = 1;  // its small segments prefetch in software, as on Sapphire Rapids
  mixed.engine_stream_rows = 32;  // engine GEMMs of 1-2 token blocks unsliced, the others sliced
  mixed.engine_panel_rows = 48;   // and from 3 blocks on, weight tiles copied into the panel (AMX)
  engine_tiles.push_back({"mixed", mixed});
  TileConfig all_engine = default_tile_config();
  all_engine.small_m_max = 0;
  engine_tiles.push_back({"all-engine", all_engine});
  TileConfig all_engine_sliced = all_engine;
  all_engine_sliced.engine_kc = 32;  // one tile step per slice
  all_engine_sliced.engine_mc = 16;  // one block group per pass
  engine_tiles.push_back({"all-engine-kc32", all_engine_sliced});
  TileConfig mixed_l1 = mixed;
  mixed_l1.engine_l1_rows = 48;  // AMX GEMMs from 3 blocks on slice by 64 instead of 96
  mixed_l1.engine_l1_kc = 64;
  engine_tiles.push_back({"mixed-l1", mixed_l1});
  TileConfig sliced_l1_deeper = all_engine_sliced;
  sliced_l1_deeper.engine_l1_rows = 16;  // every AMX GEMM: slices of 128, deeper than engine_kc
  sliced_l1_deeper.engine_l1_kc = 128;   // (the scratch panel sized by the deeper one)
  engine_tiles.push_back({"all-engine-l1-deeper", sliced_l1_deeper});
  engine_tiles.push_back({"all-small", all_small});
  engine_tiles.push_back({"all-small-groups3", small_groups});
  TileConfig mixed_whole = mixed;
  mixed_whole.engine_whole_depth_bytes = 48 << 10;  // AMX GEMMs of small token sets unsliced, larger sliced
  engine_tiles.push_back({"mixed-whole", mixed_whole});
  TileConfig mixed_l1_whole = mixed_l1;
  mixed_l1_whole.engine_whole_depth_bytes = 1 << 20;  // every non-l1, non-streaming AMX GEMM unsliced
  engine_tiles.push_back({"mixed-l1-whole", mixed_l1_whole});
  const Shape engine_shapes[] = {{0, 100, 37, 5, 2},  {1, 100, 37, 5, 2},  {13, 100, 37, 6, 2},
                                 {40, 100, 37, 6, 2}, {9, 64, 96, 4, 2},   {50, 33, 70, 3, 3},
                                 {3, 17, 5, 1, 1},    {30, 130, 300, 5, 2}, {70, 96, 64, 2, 2},
                                 {45, 1, 1, 3, 2},    {37, 250, 129, 3, 1}, {20, 40, 0, 2, 1}};
  for (MatmulPath path : engines) {
    for (const auto &ts : engine_tiles) {
      for (const Shape &s : engine_shapes) {
        for (int opts = 0; opts < 16; ++opts) {
          for (int gated = 0; gated < 2; ++gated) {
            Case c;
            if (!option_case(s, opts, gated, c)) continue;
            c.w = WeightType::bf16;
            c.act = acts[combo % 4];
            ++combo;
            c.threads = 1 + combo % 3;
            c.tiles = ts.second;
            c.tile_name = ts.first;
            c.path = path;
            c.shift = (seed % 3 == 0) ? 5 : 0;  // 3 is coprime to the option cycle: every option shifted
            run_case(c, seed++);
          }
        }
      }
    }
    std::vector<Shape> fp8_engine_shapes(std::begin(engine_shapes), std::end(engine_shapes));
    fp8_engine_shapes.push_back({6, 2100, 40, 3, 2});
    fp8_engine_shapes.push_back({70, 2100, 40, 3, 2});
    fp8_engine_shapes.push_back({70, 40, 2100, 3, 2});
    run_fp8_cases(engine_tiles, fp8_engine_shapes, path, 5);
    std::vector<Shape> mxfp4_engine_shapes = mxfp4_shapes;
    mxfp4_engine_shapes.push_back({70, 96, 64, 2, 2});
    mxfp4_engine_shapes.push_back({37, 256, 160, 3, 1});
    mxfp4_engine_shapes.push_back({40, 2112, 32, 2, 1});
    run_mxfp4_cases(engine_tiles, mxfp4_engine_shapes, path, 5);
    run_oai_cases(engine_tiles, mxfp4_engine_shapes, {WeightType::mxfp4, WeightType::bf16, WeightType::fp8_e4m3},
                  path, 5);
    for (Activation a : acts)
      for (int gated = 0; gated < 2; ++gated)
        for (int64_t T : {int64_t(2), int64_t(25), int64_t(300)}) {
          Case c{T, 100, 37, 5, 2, WeightType::bf16, a, bool(gated), true, true, true, false, 2, mixed, "mixed"};
          c.path = path;
          run_case(c, seed++);
        }
    for (const auto &ts : engine_tiles) test_nan_propagation(ts.second, ts.first.c_str(), path);
    // linear (routers, controllers) on the same path: row split (narrow out) and column split.
    for (int64_t rows : {int64_t(0), int64_t(1), int64_t(5), int64_t(37), int64_t(100)})
      for (int64_t in : {int64_t(70), int64_t(300)})
        for (int64_t out : {int64_t(8), int64_t(100)})
          for (int gb = 0; gb < 4; ++gb)
            for (const auto &ts : engine_tiles)
              test_linear(WeightType::bf16, rows, in, out, gb & 1, gb & 2, 1 + (gb + rows) % 2, ts.second, seed++,
                          path);
  }

  std::printf("worst relative L2 error vs float64: f32 %.2g, bf16 %.2g, f16 %.2g (tolerance 1e-5)\n", g_max_rel[0],
              g_max_rel[1], g_max_rel[2]);
  std::printf("fp8_e4m3 weights: %d cases (%d on the bf16 paths), worst relative L2 error vs float64 fma_f32 %.2g "
              "(tolerance 1e-5), bf16 paths %.2g\n",
              g_fp8_checks, g_fp8_engine_checks, g_max_rel[static_cast<int>(WeightType::fp8_e4m3)],
              g_max_rel_fp8_engine);
  std::printf("mxfp4 weights: %d cases (%d on the bf16 paths), worst relative L2 error vs float64 fma_f32 %.2g "
              "(tolerance 1e-5), bf16 paths %.2g\n",
              g_mxfp4_checks, g_mxfp4_engine_checks, g_max_rel[static_cast<int>(WeightType::mxfp4)],
              g_max_rel_mxfp4_engine);
  std::printf("gpt-oss FFN (swiglu_oai, expert biases): %d cases (%d on the bf16 paths)\n", g_oai_checks,
              g_oai_engine_checks);
  std::printf("matmul paths tested:");
  for (MatmulPath path : {MatmulPath::fma_f32, MatmulPath::avx512_bf16, MatmulPath::amx_bf16})
    if (g_path_checks[static_cast<int>(path)] > 0) std::printf(" %s", path_name(path));
  std::printf("\n");
  if (g_linear_engine_checks > 0)
    std::printf("worst relative L2 error vs float64, linear on the bf16 paths: %.2g in %d cases\n",
                g_max_rel_linear, g_linear_engine_checks);
  for (MatmulPath path : {MatmulPath::avx512_bf16, MatmulPath::amx_bf16})
    if (g_path_checks[static_cast<int>(path)] > 0)
      std::printf("worst relative L2 error vs float64, %s (bf16 weights, x and h rounded to bf16): %.2g in %d cases\n",
                  path_name(path), g_max_rel_path[static_cast<int>(path)], g_path_checks[static_cast<int>(path)]);
  // Every output of every case is held to the bound its path's precision implies (run_case).
  for (MatmulPath path : {MatmulPath::fma_f32, MatmulPath::avx512_bf16, MatmulPath::amx_bf16})
    if (g_path_checks[static_cast<int>(path)] > 0)
      std::printf("worst error / precision bound, %s: expert_ffn %.2g, linear %.2g (must be <= 1)\n", path_name(path),
                  g_max_ratio_path[static_cast<int>(path)], g_max_ratio_linear[static_cast<int>(path)]);
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
