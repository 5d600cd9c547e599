// Dense parts of a decoder-only transformer in the CPU kernel library: the embedding gather,
// RMSNorm, the residual add and causal self-attention with rotary embeddings over a KV cache.
// Mechanisms only: shapes and model constants come from the caller, scratch from its workspace.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "convert.h"
#include "gemm.h"     // detail::align64
#include "linear.h"   // latent_attention's key and value expansion
#include "routing.h"  // detail::dot
#include "simd.h"

namespace mixtile::cpu {

/// Rows of a table gathered and widened to f32: out[r, :] = table[index[r], :].
/// Returns false, writing nothing, when an index lies outside [0, table_rows).
template <WeightType W>
bool gather_rows(int64_t rows, int64_t width, int64_t table_rows, const WeightStorage<W> *table,
                 const int32_t *index, float *out, int num_threads) {
  for (int64_t r = 0; r < rows; ++r)
    if (index[r] < 0 || index[r] >= table_rows) return false;
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const WeightStorage<W> *src = table + static_cast<int64_t>(index[r]) * width;
    float *dst = out + r * width;
    int64_t i = 0;
    for (; i + detail::kVecWidth <= width; i += detail::kVecWidth)
      detail::vstore(dst + i, detail::vload_weight<W>(src + i));
    for (; i < width; ++i) dst[i] = detail::load_weight_scalar<W>(src + i);
  }
  return true;
}

/// Hugging Face RMSNorm (LlamaRMSNorm) in f32: y[r, :] = weight * (x[r, :] / sqrt(mean(x[r, :]^2) +
/// epsilon)). y may alias x: a row is read whole before it is written.
template <WeightType W>
void rms_norm_rows(int64_t rows, int64_t width, float epsilon, const float *x, const WeightStorage<W> *weight,
                   float *y, int num_threads) {
  using namespace detail;
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * width;
    float *yr = y + r * width;
    VecF a0 = vzero(), a1 = vzero();
    int64_t i = 0;
    for (; i + 2 * kVecWidth <= width; i += 2 * kVecWidth) {
      const VecF u = vload(xr + i), w = vload(xr + i + kVecWidth);
      a0 = vfma(u, u, a0);
      a1 = vfma(w, w, a1);
    }
    for (; i + kVecWidth <= width; i += kVecWidth) {
      const VecF u = vload(xr + i);
      a0 = vfma(u, u, a0);
    }
    float squares = vhsum(vadd(a0, a1));
    for (; i < width; ++i) squares += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(squares / static_cast<float>(width) + epsilon);
    const VecF vinv = vset1(inv);
    i = 0;
    for (; i + kVecWidth <= width; i += kVecWidth)
      vstore(yr + i, vmul(vload_weight<W>(weight + i), vmul(vload(xr + i), vinv)));
    for (; i < width; ++i) yr[i] = load_weight_scalar<W>(weight + i) * (xr[i] * inv);
  }
}

/// y[r, 0..count) = x[r, offset..offset + count) for each of `rows` rows of `width` floats
/// (mix.slice); y must not overlap x.
inline void copy_columns(int64_t rows, int64_t width, int64_t offset, int64_t count, const float *x, float *y,
                         int num_threads) {
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * count >= 65536)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(y + r * count, x + r * width + offset, sizeof(float) * count);
}

/// y = a + b over n floats (the residual add); y may alias a or b.
inline void add_rows(int64_t n, const float *a, const float *b, float *y, int num_threads) {
  using namespace detail;
  const int64_t blocks = (std::max<int64_t>(n, 0) + kVecWidth - 1) / kVecWidth;
#pragma omp parallel for num_threads(num_threads > 0 ? num_threads : omp_get_max_threads()) schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t i = block * kVecWidth;
    if (i + kVecWidth <= n) {
      vstore(y + i, vadd(vload(a + i), vload(b + i)));
    } else {
      for (int64_t j = i; j < n; ++j) y[j] = a[j] + b[j];
    }
  }
}

struct AttentionConfig {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  int64_t v_head_dim = 0;           // width of a value head (and of an output head); 0: head_dim
  int64_t rotary_dim = 0;           // dims [rope_offset, rope_offset + rotary_dim) of each q/k head are rotated
  int64_t rope_offset = 0;          // (rotary_dim even, rope_offset + rotary_dim <= head_dim)
  const double *inv_freq = nullptr;  // [rotary_dim / 2]: angle of pair i at position p is p * inv_freq[i]
                                     // (double: at positions near 1e5 a float frequency moves angles by ~5e-3)
  float rope_scale = 1.0f;          // cos and sin are multiplied by it (YaRN's attention factor)
  bool rope_interleaved = false;    // false: pairs (i, i + rotary_dim/2) (HF rotate_half); true: pairs (2i, 2i+1)
  float softmax_scale = 0.0f;       // scores = q.k * softmax_scale
  float clip = 0.0f;                // > 0: q, k and v clamped to [-clip, clip] before the rotation (OLMoE clip_qkv)
  int64_t window = 0;               // > 0: token at position p sees keys at positions > p - window; 0: all
  const float *sinks = nullptr;     // [heads] or null: one more logit per head in the softmax, its
                                    // probability dropped (gpt-oss)
};

namespace detail {

// Attention works on query tiles: up to kAttentionTileVectors·kVecWidth consecutive tokens of one
// sequence, one query per vector lane, so the scores of a key against the whole tile are FMAs
// with the key's elements broadcast (no horizontal sums) and the tile shares each widened key and
// value. A tile at most half a vector full (decode: one token per sequence) takes the row path
// instead, where the lane waste would cost more than the horizontal sums it saves: vector dot
// products over head_dim and a two-pass softmax over the thread's score buffer. Two vectors of
// queries: each broadcast key element feeds two FMAs and each widened key serves twice the
// queries (a 512-token prefill measured ~20% faster than with one vector, AVX-512, one thread).
constexpr int kAttentionTileVectors = 2;
constexpr int64_t kAttentionTileRows = kAttentionTileVectors * kVecWidth;
constexpr int64_t kAttentionKeyBlock = 32;  // keys per online-softmax step of a tile
// Register tile of the tile path: MR keys (scores) or head dims (P·V) by NV query vectors of
// accumulators, within 32 vector registers on AVX-512 and 16 otherwise.
#if defined(__AVX512F__)
template <int NV>
constexpr int kAttentionMicroRows = 8;
#else
template <int NV>
constexpr int kAttentionMicroRows = NV == 1 ? 8 : 4;
#endif
inline int attention_tile_vectors(int64_t tile_rows) {  // 0: the row path
  if (2 * tile_rows <= kVecWidth) return 0;
  return tile_rows <= kVecWidth ? 1 : 2;
}

// Query heads the row path attends together (attend_rows_grouped): a kv head's group, at most
// kAttentionGroupRows at a time.
constexpr int kAttentionGroupRows = 8;
inline int64_t attention_group_rows(const AttentionConfig &c) {
  const int64_t group = c.kv_heads > 0 && c.heads % c.kv_heads == 0 ? c.heads / c.kv_heads : 1;
  return std::clamp<int64_t>(group, 1, kAttentionGroupRows);
}

struct AttentionLayout {
  size_t rope = 0, query = 0, tiles = 0;  // offsets of the shared buffers
  size_t shared = 0;                      // their bytes; per-thread chunks follow
  size_t scores = 0, query_t = 0, out_t = 0, block_scores = 0, keys = 0, values = 0, stats = 0, row = 0;
  size_t bf16 = 0;  // the bf16 tile paths' scratch (Bf16AttentionScratch)
  size_t per_thread = 0;
};

// The bf16 tile paths (bf16 caches; MatmulPath::amx_bf16 on AMX tiles, MatmulPath::avx512_bf16
// on VDPBF16PS): the same query tiles and online softmax (scores kept transposed, key rows by
// query lanes, so the softmax is lane-wise vector work), with both products in bf16 over
// kBf16KeyBlock keys per step:
//  - Sᵀ = K · Qᵀ: keys (16 keys x 32 dims per tile) are the left operand, queries the right one,
//    packed once per tile as VNNI token blocks (matrix_engines.h), rounded to bf16.
//  - Oᵀ += Vᵀ · Pᵀ: values (transposed tiles of 16 dims x 32 keys) are the left operand, the
//    block's probabilities the right one, as VNNI key pairs by query lanes (rounded to bf16); Oᵀ
//    stays in f32 memory, its lanes rescaled there when their running maximum moves.
// On AMX both are TDPBF16PS tile products. On VDPBF16PS each left element pair (a key's or a value
// dim's) is broadcast against a vector of 16 query lanes' pairs, the same packed layouts read as
// register tiles of 8 keys (value dims) by the query blocks (dp_gemm's shape, matrix_engines.h).
// Each thread keeps packed copies of one kv head's keys (tiles of 16 x 32, contiguous, instead of
// cache rows kv_heads·head_dim apart that alias in L1) and values (transposed tiles) for the
// positions its tiles have asked for, reused by the next tiles and by the other query heads of
// the group; positions outside those ranges are zero, so p = 0 never meets a value no call has
// written. Precision: q and p rounded to bf16 (as a bf16 model's own attention rounds them), f32
// softmax and accumulation.
constexpr int64_t kBf16KeyBlock = 128;
inline size_t bf16_attention_scratch_bytes(int64_t dim, int64_t vdim, int64_t cache_length) {
  const size_t dp = static_cast<size_t>(round_up(std::max<int64_t>(dim, 1), 32));
  const size_t vp = static_cast<size_t>(round_up(std::max<int64_t>(vdim, 1), 16));
  const size_t positions = static_cast<size_t>(round_up(std::max<int64_t>(cache_length, 1), 32));
  const size_t lanes = kAttentionTileRows, block = kBf16KeyBlock;
  return align64(sizeof(uint16_t) * 2 * 16 * dp)         // packed queries: 2 VNNI blocks
         + align64(sizeof(float) * block * lanes)        // block scores [key][lane]
         + align64(sizeof(uint16_t) * block * lanes)     // Pᵀ tiles [key step][query block]
         + align64(sizeof(float) * vp * lanes)           // Oᵀ [value dim][lane]
         + align64(sizeof(float) * 4 * lanes)            // softmax state
         + align64(sizeof(uint16_t) * positions * dp)    // key tiles
         + align64(sizeof(uint16_t) * positions * vp);   // value tiles
}

inline AttentionLayout attention_layout(const AttentionConfig &c, int64_t tokens, int64_t cache_length,
                                        MatmulPath path) {
  const size_t t = static_cast<size_t>(std::max<int64_t>(tokens, 0));
  const size_t d = static_cast<size_t>(std::max<int64_t>(c.head_dim, 0));
  const size_t vd = static_cast<size_t>(std::max<int64_t>(c.v_head_dim > 0 ? c.v_head_dim : c.head_dim, 0));
  const size_t pairs = static_cast<size_t>(std::max<int64_t>(c.rotary_dim, 0) / 2);
  const size_t lanes = kAttentionTileRows, block = kAttentionKeyBlock;
  AttentionLayout l;
  // cos and sin per token and rotary pair; the rotated, scaled queries; tile starts.
  l.rope = 0;
  l.query = l.rope + align64(sizeof(float) * t * 2 * pairs);
  l.tiles = l.query + align64(sizeof(float) * t * static_cast<size_t>(std::max<int64_t>(c.heads, 0)) * d);
  l.shared = l.tiles + align64(sizeof(int64_t) * (t + 1));
  // Per thread: the row path's scores (of a group's heads); a tile's transposed queries and
  // output, block scores, widened keys and values, and its softmax state (max, sum, shift, rescale) per lane; a key
  // head before and after its rotation.
  l.scores = 0;
  l.query_t = l.scores + align64(sizeof(float) * static_cast<size_t>(std::max<int64_t>(cache_length, 1)) *
                                 static_cast<size_t>(attention_group_rows(c)));
  l.out_t = l.query_t + align64(sizeof(float) * d * lanes);
  l.block_scores = l.out_t + align64(sizeof(float) * vd * lanes);
  l.keys = l.block_scores + align64(sizeof(float) * block * lanes);
  l.values = l.keys + align64(sizeof(float) * kAttentionMicroRows<1> * d);
  l.stats = l.values + align64(sizeof(float) * block * vd);
  l.row = l.stats + align64(sizeof(float) * 4 * lanes);
  l.bf16 = l.row + align64(sizeof(float) * 2 * d);
  l.per_thread = l.bf16 + (path != MatmulPath::fma_f32 ? bf16_attention_scratch_bytes(
                                                            c.head_dim, c.v_head_dim > 0 ? c.v_head_dim : c.head_dim,
                                                            cache_length)
                                                      : 0);
  return l;
}

template <WeightType C>
inline WeightStorage<C> store_element(float x) {
  if constexpr (C == WeightType::f32) {
    return x;
  } else if constexpr (C == WeightType::bf16) {
    return f32_to_bf16_bits(x);
  } else {
    return f32_to_f16_bits(x);
  }
}

inline float clamp_abs(float x, float clip) {
  if (clip > 0.0f) return x < -clip ? -clip : (x > clip ? clip : x);  // NaN passes through
  return x;
}

/// Each token's cos and sin per rotary pair, times rope_scale: rope[t][0, pairs) and
/// rope[t][pairs, 2·pairs). f64 angles: positions reach 1e5 and more, where an f32 angle would be
/// off by ~1e-2 rad. A worksharing loop: call it from every thread of a parallel region.
inline void rope_tables(int64_t tokens, const int32_t *positions, const double *inv_freq, int64_t pairs,
                        float rope_scale, float *rope) {
#pragma omp for collapse(2) schedule(static)
  for (int64_t t = 0; t < tokens; ++t)
    for (int64_t i = 0; i < pairs; ++i) {
      const double theta = static_cast<double>(positions[t]) * inv_freq[i];
      rope[t * 2 * pairs + i] = static_cast<float>(std::cos(theta) * static_cast<double>(rope_scale));
      rope[t * 2 * pairs + pairs + i] = static_cast<float>(std::sin(theta) * static_cast<double>(rope_scale));
    }
}

/// One head of q or k, clamped and its dims [offset, offset + 2·pairs) rotated (HF rotate_half,
/// or GPT-J style adjacent pairs when interleaved) with cos/sin already scaled, the rest passed
/// through, times `multiplier`, into dst (f32). omp simd: GCC vectorizes these loops at -O2 only so.
inline void rotate_head(const float *x, int64_t dim, int64_t offset, int64_t pairs, const float *cosines,
                        const float *sines, bool interleaved, float clip, float multiplier, float *dst) {
#pragma omp simd
  for (int64_t d = 0; d < offset; ++d) dst[d] = clamp_abs(x[d], clip) * multiplier;
  x += offset;
  dst += offset;
  dim -= offset;
  if (interleaved) {
#pragma omp simd
    for (int64_t i = 0; i < pairs; ++i) {
      const float a = clamp_abs(x[2 * i], clip), b = clamp_abs(x[2 * i + 1], clip);
      dst[2 * i] = (a * cosines[i] - b * sines[i]) * multiplier;
      dst[2 * i + 1] = (b * cosines[i] + a * sines[i]) * multiplier;
    }
  } else {
#pragma omp simd
    for (int64_t i = 0; i < pairs; ++i) {
      const float a = clamp_abs(x[i], clip), b = clamp_abs(x[i + pairs], clip);
      dst[i] = (a * cosines[i] - b * sines[i]) * multiplier;
      dst[i + pairs] = (b * cosines[i] + a * sines[i]) * multiplier;
    }
  }
#pragma omp simd
  for (int64_t d = 2 * pairs; d < dim; ++d) dst[d] = clamp_abs(x[d], clip) * multiplier;
}

/// dst[d] = src[d] (clamped when clip > 0) rounded to the cache dtype.
template <WeightType C>
inline void store_row(const float *src, int64_t dim, float clip, WeightStorage<C> *dst) {
#pragma omp simd
  for (int64_t d = 0; d < dim; ++d) dst[d] = store_element<C>(clamp_abs(src[d], clip));
}

/// Asks for the cache lines of one cache row: rows of a head lie kv_heads·head_dim apart, a
/// page or more, where the hardware prefetchers do not follow.
template <WeightType C>
inline void prefetch_row(const WeightStorage<C> *row, int64_t dim) {
  const char *p = reinterpret_cast<const char *>(row);
  for (int64_t at = 0; at < dim * static_cast<int64_t>(sizeof(WeightStorage<C>)); at += 64) __builtin_prefetch(p + at);
}
constexpr int64_t kAttentionPrefetchRows = 16;  // the row path's distance, in keys

/// scores[j] = exp(scores[j] - m) for j < n (m their maximum); returns their sum.
inline float exp_shifted_sum(float *scores, int64_t n, float m) {
  if (!std::isfinite(m)) m = 0.0f;  // Inf scores: NaN follows, as in the f64 softmax
  const VecF shift = vset1(-m);
  VecF vsum = vzero();
  int64_t j = 0;
  for (; j + kVecWidth <= n; j += kVecWidth) {
    const VecF e = vexp(vadd(vload(scores + j), shift));
    vstore(scores + j, e);
    vsum = vadd(vsum, e);
  }
  float sum = vhsum(vsum);
  for (; j < n; ++j) {
    scores[j] = std::exp(scores[j] - m);
    sum += scores[j];
  }
  return sum;
}

/// f32 copies of n rows of dim elements at stride ld: the tile path's broadcast operands,
/// contiguous (cache rows of one head lie kv_heads·head_dim apart, often 4 KiB: read in place
/// they alias in L1 and L2 sets).
template <WeightType C>
inline void widen_block(const WeightStorage<C> *src, int64_t ld, int64_t n, int64_t dim, float *dst) {
  for (int64_t j = 0; j < n; ++j) {
    const WeightStorage<C> *s = src + j * ld;
    float *o = dst + j * dim;
    int64_t d = 0;
    for (; d + kVecWidth <= dim; d += kVecWidth) vstore(o + d, vload_weight<C>(s + d));
    for (; d < dim; ++d) o[d] = load_weight_scalar<C>(s + d);
  }
}

// The row path: queries of one token (a tile too small for the query lanes) against the keys
// lo..hi of their cache row, a kv head's query heads together (grouped-query attention, up to
// kAttentionGroupRows at a time) so each key and value row is read from the cache once for all
// of them instead of once per head (at decode the cache rows are the bytes that matter: a
// Qwen3-style group of 8 read its keys and values 8 times, from DRAM once a batch's contexts
// outgrow the L2). Vector dot products over head_dim, a two-pass softmax over the thread's score
// buffer, and the weighted sum over slices of head dims with G heads x NV vectors of
// accumulators (keys widened exactly; a lone head's dot products sum in another order).
#if defined(__AVX512F__)
constexpr int kGroupAccumulators = 16;
#else
constexpr int kGroupAccumulators = 8;
#endif

/// out_h[0, NV·W) = inv_sum[h] · Σ_j p[h·n + j] · v[j·ld, +NV·W) for G heads.
template <WeightType C, int G, int NV>
inline void grouped_weighted_sum_slice(const float *p, int64_t n, const WeightStorage<C> *v, int64_t ld,
                                       const float *inv_sum, float *const *out, int64_t d) {
  VecF acc[G][NV];
#pragma GCC unroll 8
  for (int h = 0; h < G; ++h)
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) acc[h][u] = vzero();
  for (int64_t j = 0; j < n; ++j) {
    if (j + kAttentionPrefetchRows < n) prefetch_row<C>(v + (j + kAttentionPrefetchRows) * ld, NV * kVecWidth);
    VecF vj[NV];
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) vj[u] = vload_weight<C>(v + j * ld + u * kVecWidth);
#pragma GCC unroll 8
    for (int h = 0; h < G; ++h) {
      const VecF ph = vset1(p[h * n + j]);
#pragma GCC unroll 8
      for (int u = 0; u < NV; ++u) acc[h][u] = vfma(ph, vj[u], acc[h][u]);
    }
  }
#pragma GCC unroll 8
  for (int h = 0; h < G; ++h) {
    const VecF s = vset1(inv_sum[h]);
#pragma GCC unroll 8
    for (int u = 0; u < NV; ++u) vstore(out[h] + d + u * kVecWidth, vmul(acc[h][u], s));
  }
}

/// Head dims [d, vdim) of G heads' weighted sums (see grouped_weighted_sum_slice).
/// Slices of NV vectors while they fit, then halves of them: one pass over the keys per slice.
template <WeightType C, int G, int NV = std::clamp(kGroupAccumulators / G, 1, 8)>
inline void grouped_weighted_sum(const float *p, int64_t n, const WeightStorage<C> *values, int64_t ldv,
                                 int64_t vdim, const float *inv_sum, float *const *out, int64_t d = 0) {
  for (; d + NV * kVecWidth <= vdim; d += NV * kVecWidth)
    grouped_weighted_sum_slice<C, G, NV>(p, n, values + d, ldv, inv_sum, out, d);
  if constexpr (NV > 1) {
    grouped_weighted_sum<C, G, NV / 2>(p, n, values, ldv, vdim, inv_sum, out, d);
    return;
  }
  for (; d < vdim; ++d)
    for (int h = 0; h < G; ++h) {
      float s = 0.0f;
      for (int64_t j = 0; j < n; ++j) s += p[h * n + j] * load_weight_scalar<C>(values + j * ldv + d);
      out[h][d] = s * inv_sum[h];
    }
}

/// s[h] = q[h] · key over dim (f32) for G queries: G independent accumulator chains over the
/// shared key vectors (one dot at a time waits on its own FMA latency: a 576-dim MLA entry is 36
/// dependent FMAs per head).
template <int G>
inline void grouped_dots(const float *const *q, const float *key, int64_t dim, float *s) {
  VecF acc[G];
#pragma GCC unroll 8
  for (int h = 0; h < G; ++h) acc[h] = vzero();
  int64_t d = 0;
  for (; d + kVecWidth <= dim; d += kVecWidth) {
    const VecF k = vload(key + d);
#pragma GCC unroll 8
    for (int h = 0; h < G; ++h) acc[h] = vfma(vload(q[h] + d), k, acc[h]);
  }
  for (int h = 0; h < G; ++h) {
    float sum = vhsum(acc[h]);
    for (int64_t e = d; e < dim; ++e) sum += q[h][e] * key[e];
    s[h] = sum;
  }
}

/// `count` (<= kAttentionGroupRows) queries q[h] (rotated, scaled, dim wide) against keys lo..hi
/// of one cache row, whose key j lies at keys + j·ld and value j (vdim wide) at values + j·ldv;
/// scores holds count·(hi - lo + 1) floats, key_row dim floats (a widened key).
template <WeightType C>
inline void attend_rows_grouped(int count, const float *const *q, int64_t dim, int64_t vdim,
                                const WeightStorage<C> *keys, const WeightStorage<C> *values, int64_t ld,
                                int64_t ldv, int64_t lo, int64_t hi, float *scores, float *key_row,
                                float *const *out, const float *sinks = nullptr) {
  const int64_t n = hi - lo + 1;
  keys += lo * ld;
  values += lo * ldv;
  float m[kAttentionGroupRows], inv_sum[kAttentionGroupRows];
  for (int h = 0; h < count; ++h) m[h] = -std::numeric_limits<float>::infinity();
  // One query reads each key in place; several share it (widened once for bf16/f16 caches) and
  // run their dot products side by side, one accumulator chain each (grouped_dots).
  for (int64_t j = 0; j < n; ++j) {
    if (j + kAttentionPrefetchRows < n) prefetch_row<C>(keys + (j + kAttentionPrefetchRows) * ld, dim);
    float s[kAttentionGroupRows];
    if (count == 1) {
      s[0] = dot<C>(q[0], keys + j * ld, dim);
    } else {
      const float *key = reinterpret_cast<const float *>(keys + j * ld);
      if constexpr (C != WeightType::f32) {
        widen_block<C>(keys + j * ld, ld, 1, dim, key_row);
        key = key_row;
      }
      switch (count) {
        case 2: grouped_dots<2>(q, key, dim, s); break;
        case 3: grouped_dots<3>(q, key, dim, s); break;
        case 4: grouped_dots<4>(q, key, dim, s); break;
        case 5: grouped_dots<5>(q, key, dim, s); break;
        case 6: grouped_dots<6>(q, key, dim, s); break;
        case 7: grouped_dots<7>(q, key, dim, s); break;
        default: grouped_dots<8>(q, key, dim, s); break;
      }
    }
    for (int h = 0; h < count; ++h) {
      scores[h * n + j] = s[h];
      m[h] = std::max(m[h], s[h]);
    }
  }
  // A sink logit (sinks[h], or none) counts in the denominator only: exp(sink - m) at the shift
  // exp_shifted_sum applied.
  for (int h = 0; h < count; ++h) {
    const float shift = std::isfinite(m[h]) ? m[h] : 0.0f;
    inv_sum[h] = 1.0f / (exp_shifted_sum(scores + h * n, n, m[h]) +
                         (sinks != nullptr ? std::exp(sinks[h] - shift) : 0.0f));
  }
  int h = 0;
  auto sums = [&](auto heads) {
    constexpr int G = decltype(heads)::value;
    for (; h + G <= count; h += G)
      grouped_weighted_sum<C, G>(scores + h * n, n, values, ldv, vdim, inv_sum + h, out + h);
  };
  sums(std::integral_constant<int, 8>{});
  sums(std::integral_constant<int, 4>{});
  sums(std::integral_constant<int, 2>{});
  sums(std::integral_constant<int, 1>{});
}

/// scores[i][lanes] = Σ_d key_i[d] · query_t[d][lanes] for MR keys (f32, row stride ld) and
/// NV vectors of query lanes.
template <int MR, int NV>
inline void tile_scores(const float *keys, int64_t ld, const float *query_t, int64_t dim, float *scores) {
  constexpr int lanes = NV * kVecWidth;
  // Every loop over MR and NV unrolled: otherwise GCC -O2 keeps acc in memory, a store per FMA.
  VecF acc[MR][NV];
  const float *k[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    k[i] = keys + i * ld;
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) acc[i][u] = vzero();
  }
  for (int64_t d = 0; d < dim; ++d) {
    VecF qd[NV];
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) qd[u] = vload(query_t + d * lanes + u * kVecWidth);
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const VecF kd = vset1(k[i][d]);
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) acc[i][u] = vfma(kd, qd[u], acc[i][u]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) vstore(scores + i * lanes + u * kVecWidth, acc[i][u]);
}

/// out_t[i][lanes] += Σ_j value_j[i] · p[j][lanes] for MR consecutive head dims of n values
/// (f32, row stride ld) and NV vectors of query lanes.
template <int MR, int NV>
inline void tile_weighted_sum(const float *values, int64_t ld, const float *p, int64_t n, float *out_t) {
  constexpr int lanes = NV * kVecWidth;
  VecF acc[MR][NV];
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) acc[i][u] = vload(out_t + i * lanes + u * kVecWidth);
  for (int64_t j = 0; j < n; ++j) {
    VecF pj[NV];
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) pj[u] = vload(p + j * lanes + u * kVecWidth);
    const float *v = values + j * ld;
#pragma GCC unroll 16
    for (int i = 0; i < MR; ++i) {
      const VecF vi = vset1(v[i]);
#pragma GCC unroll 4
      for (int u = 0; u < NV; ++u) acc[i][u] = vfma(vi, pj[u], acc[i][u]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 4
    for (int u = 0; u < NV; ++u) vstore(out_t + i * lanes + u * kVecWidth, acc[i][u]);
}

/// A query tile's online-softmax state (`stats`: running max, sum, shift and rescale factor per
/// lane) reset, and the keys its lanes see in all: [first, last].
inline void start_tile_softmax(int64_t rows, const int64_t *lo, const int64_t *hi, int lanes, float *stats,
                               int64_t &first, int64_t &last) {
  first = std::numeric_limits<int64_t>::max();
  last = -1;
  for (int r = 0; r < lanes; ++r) {
    if (r < rows) {
      first = std::min(first, lo[r]);
      last = std::max(last, hi[r]);
    }
    stats[r] = -std::numeric_limits<float>::infinity();
    stats[lanes + r] = 0.0f;
  }
}

struct AttentionTileScratch {
  float *query_t, *out_t, *block_scores, *keys, *values, *stats;
};

/// The tile path: `rows` (<= NV·kVecWidth) queries of one sequence, lane r holding query[r] at
/// positions lo[r]..hi[r]; flash-attention style online softmax over blocks of keys
/// min(lo)..max(hi), masked per lane where a block overhangs a lane's range. Keys are dim wide
/// at stride ld, values vdim wide at stride ldv.
template <WeightType C, int NV>
inline void attend_tile(int64_t rows, const float *const *query, const int64_t *lo, const int64_t *hi,
                        float *const *out, int64_t dim, int64_t vdim, const WeightStorage<C> *keys,
                        const WeightStorage<C> *values, int64_t ld, int64_t ldv, const AttentionTileScratch &s,
                        float sink = -std::numeric_limits<float>::infinity()) {
  constexpr int W = kVecWidth, lanes = NV * W, MR = kAttentionMicroRows<NV>;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  float *m = s.stats, *sum = s.stats + lanes, *neg_shift = s.stats + 2 * lanes, *alpha = s.stats + 3 * lanes;
  int64_t first, last;
  start_tile_softmax(rows, lo, hi, lanes, s.stats, first, last);
  for (int64_t d = 0; d < dim; ++d)
    for (int r = 0; r < lanes; ++r) s.query_t[d * lanes + r] = r < rows ? query[r][d] : 0.0f;
  for (int64_t i = 0; i < vdim * lanes; ++i) s.out_t[i] = 0.0f;
  // Lanes past `rows` see no key.
  auto sees = [&](int r, int64_t j) { return r < rows && j >= lo[r] && j <= hi[r]; };

  for (int64_t j0 = first; j0 <= last; j0 += kAttentionKeyBlock) {
    const int64_t n = std::min<int64_t>(kAttentionKeyBlock, last - j0 + 1);
    // Values widened once per block, keys MR rows at a time right before their scores: the
    // scratch stays in L1.
    widen_block<C>(values + j0 * ldv, ldv, n, vdim, s.values);
    float *p = s.block_scores;
    int64_t j = 0;
    for (; j + MR <= n; j += MR) {
      widen_block<C>(keys + (j0 + j) * ld, ld, MR, dim, s.keys);
      tile_scores<MR, NV>(s.keys, dim, s.query_t, dim, p + j * lanes);
    }
    for (; j < n; ++j) {
      widen_block<C>(keys + (j0 + j) * ld, ld, 1, dim, s.keys);
      tile_scores<1, NV>(s.keys, dim, s.query_t, dim, p + j * lanes);
    }

    bool whole = true;  // every lane sees every key of the block
    for (int r = 0; r < lanes; ++r) whole = whole && sees(r, j0) && sees(r, j0 + n - 1);
    if (!whole)
      for (j = 0; j < n; ++j)
        for (int r = 0; r < lanes; ++r)
          if (!sees(r, j0 + j)) p[j * lanes + r] = kNegInf;
    float block_max[lanes];
    for (int r = 0; r < lanes; ++r) block_max[r] = kNegInf;
    for (j = 0; j < n; ++j)
#pragma omp simd
      for (int r = 0; r < lanes; ++r) block_max[r] = std::max(block_max[r], p[j * lanes + r]);
    bool rescale = false;
    for (int r = 0; r < lanes; ++r) {
      const float m_new = std::max(m[r], block_max[r]);
      const float shift = m_new == kNegInf ? 0.0f : m_new;  // a lane with no key yet
      alpha[r] = std::exp(m[r] - shift);
      rescale = rescale || alpha[r] != 1.0f;
      neg_shift[r] = -shift;
      m[r] = m_new;
    }
    for (int u = 0; u < NV; ++u) {
      const VecF shift = vload(neg_shift + u * W);
      for (j = 0; j < n; ++j) vstore(p + j * lanes + u * W, vexp(vadd(vload(p + j * lanes + u * W), shift)));
    }
    if (!whole)  // vexp clamps its argument: masked keys get exactly 0
      for (j = 0; j < n; ++j)
        for (int r = 0; r < lanes; ++r)
          if (!sees(r, j0 + j)) p[j * lanes + r] = 0.0f;
    for (int u = 0; u < NV; ++u) {
      VecF block_sum = vzero();
      for (j = 0; j < n; ++j) block_sum = vadd(block_sum, vload(p + j * lanes + u * W));
      vstore(sum + u * W, vfma(vload(sum + u * W), vload(alpha + u * W), block_sum));
    }
    if (rescale)
      for (int64_t d = 0; d < vdim; ++d)
        for (int u = 0; u < NV; ++u) {
          float *o = s.out_t + d * lanes + u * W;
          vstore(o, vmul(vload(o), vload(alpha + u * W)));
        }
    int64_t d = 0;
    for (; d + MR <= vdim; d += MR) tile_weighted_sum<MR, NV>(s.values + d, vdim, p, n, s.out_t + d * lanes);
    for (; d < vdim; ++d) tile_weighted_sum<1, NV>(s.values + d, vdim, p, n, s.out_t + d * lanes);
  }
  for (int r = 0; r < rows; ++r) {
    // The sink logit (-inf: none) adds exp(sink - m) to the denominator only.
    const float inv_sum = 1.0f / (sum[r] + std::exp(sink - m[r]));
    for (int64_t d = 0; d < vdim; ++d) out[r][d] = s.out_t[d * lanes + r] * inv_sum;
  }
}


#if defined(MIXTILE_HAVE_BF16_ENGINE)
// One thread's packed copy of a kv head's keys and values in one sequence (bf16 tile paths).
struct Bf16KvPack {
  uint16_t *k = nullptr;   // key tiles [position / 16][depth step][16 keys x 32 dims]
  uint16_t *vt = nullptr;  // value tiles [position / 32][value dims / 16][16 dims x 32 keys]
  const uint16_t *keys = nullptr, *values = nullptr;  // the cache rows packed (position 0)
  int64_t begin = 0, end = 0;                          // positions packed: [begin, end)
};

struct Bf16AttentionScratch {
  uint16_t *queries;  // 2 VNNI token blocks of depth round_up(dim, 32)
  float *scores;      // [kBf16KeyBlock keys][kAttentionTileRows lanes]
  uint16_t *pt;       // Pᵀ tiles [key step of 32][query block]: 16 key pairs x 16 lanes x 2
  float *ot;          // Oᵀ [round_up(vdim, 16)][kAttentionTileRows lanes]
  float *stats;       // max, sum, shift, rescale per lane
  Bf16KvPack pack;
};
inline Bf16AttentionScratch carve_bf16_attention(char *base, int64_t dim, int64_t vdim, int64_t cache_length) {
  const size_t dp = static_cast<size_t>(round_up(dim, 32)), vp = static_cast<size_t>(round_up(vdim, 16));
  const size_t positions = static_cast<size_t>(round_up(std::max<int64_t>(cache_length, 1), 32));
  const size_t lanes = kAttentionTileRows, block = kBf16KeyBlock;
  Bf16AttentionScratch s;
  char *at = base;
  auto take = [&](size_t bytes) {
    char *p = at;
    at += align64(bytes);
    return p;
  };
  s.queries = reinterpret_cast<uint16_t *>(take(sizeof(uint16_t) * 2 * 16 * dp));
  s.scores = reinterpret_cast<float *>(take(sizeof(float) * block * lanes));
  s.pt = reinterpret_cast<uint16_t *>(take(sizeof(uint16_t) * block * lanes));
  s.ot = reinterpret_cast<float *>(take(sizeof(float) * vp * lanes));
  s.stats = reinterpret_cast<float *>(take(sizeof(float) * 4 * lanes));
  s.pack.k = reinterpret_cast<uint16_t *>(take(sizeof(uint16_t) * positions * dp));
  s.pack.vt = reinterpret_cast<uint16_t *>(take(sizeof(uint16_t) * positions * vp));
  return s;
}

// Packs the 32 positions of chunk c (positions 32c .. 32c + 31) into the key and value tiles:
// rows outside [lo, hi) are zero (never read from the cache: past its end, or never written).
inline void bf16_pack_chunk(Bf16KvPack &p, int64_t c, int64_t lo, int64_t hi, int64_t dim, int64_t vdim, int64_t ld,
                            int64_t ldv) {
  const int64_t dp = round_up(dim, 32), vp = round_up(vdim, 16), dsteps = dp / 32, dtiles = vp / 16;
  const int64_t p0 = 32 * c;
  // Keys: two tiles of 16 positions, each row 32 dims of one key per depth step.
  for (int64_t i = 0; i < 32; ++i) {
    const int64_t pos = p0 + i;
    uint16_t *tile_row = p.k + ((pos / 16) * dsteps) * 512 + (pos % 16) * 32;
    const bool valid = pos >= lo && pos < hi;
    const uint16_t *src = p.keys + pos * ld;
    for (int64_t ds = 0; ds < dsteps; ++ds) {
      const __mmask32 m = valid ? first_lanes32(dim - ds * 32) : __mmask32(0);
      _mm512_storeu_si512(tile_row + ds * 512, _mm512_maskz_loadu_epi16(m, src + ds * 32));
    }
  }
  // Values, transposed: tile (c, dt) row d holds dims dt·16 + d of the 32 keys, in key order.
  alignas(64) static const uint16_t kPairs[32] = {0, 32, 1, 33, 2, 34, 3, 35, 4, 36, 5, 37, 6, 38, 7, 39,
                                                   8, 40, 9, 41, 10, 42, 11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  const __m512i pairs = _mm512_load_si512(kPairs);
  for (int64_t dt = 0; dt < dtiles; ++dt) {
    const int64_t left = std::min<int64_t>(16, vdim - dt * 16);
    const __mmask32 m = first_lanes32(left);
    __m512i r[16];
    for (int k = 0; k < 16; ++k) {  // key pair k: (key 2k, key 2k + 1) for 16 dims
      const int64_t a = p0 + 2 * k, b = a + 1;
      const __m512i va = a >= lo && a < hi ? _mm512_maskz_loadu_epi16(m, p.values + a * ldv + dt * 16)
                                           : _mm512_setzero_si512();
      const __m512i vb = b >= lo && b < hi ? _mm512_maskz_loadu_epi16(m, p.values + b * ldv + dt * 16)
                                           : _mm512_setzero_si512();
      r[k] = _mm512_permutex2var_epi16(va, pairs, vb);  // 32-bit lane d: (v[a][d], v[b][d])
    }
    transpose16x16_epi32(r);  // r[d]: the 16 key pairs of dim d
    uint16_t *tile = p.vt + (c * dtiles + dt) * 512;
    for (int d = 0; d < 16; ++d) _mm512_store_si512(tile + d * 32, r[d]);
  }
}

// Makes positions [lo, hi) of the kv head whose cache rows start at keys / values available in
// the pack (hi <= cache_length): packs the chunks the union of the ranges asked for so far
// gained, or starts over for another head or sequence.
inline void bf16_ensure_packed(Bf16KvPack &p, const uint16_t *keys, const uint16_t *values, int64_t lo, int64_t hi,
                               int64_t dim, int64_t vdim, int64_t ld, int64_t ldv) {
  int64_t old_begin = p.begin, old_end = p.end;
  if (p.keys != keys || p.values != values || hi < p.begin || lo > p.end || p.begin == p.end) {
    p.keys = keys;
    p.values = values;
    old_begin = old_end = 0;
    p.begin = lo;
    p.end = hi;
  } else {
    if (lo >= p.begin && hi <= p.end) return;
    p.begin = std::min(p.begin, lo);
    p.end = std::max(p.end, hi);
  }
  for (int64_t c = p.begin / 32; c * 32 < p.end; ++c) {
    const bool inside_old = old_begin < old_end && c * 32 >= old_begin && c * 32 + 32 <= old_end;
    if (!inside_old) bf16_pack_chunk(p, c, p.begin, p.end, dim, vdim, ld, ldv);
  }
}
#endif  // MIXTILE_HAVE_BF16_ENGINE

#if defined(MIXTILE_HAVE_AMX_BF16)
// Result tiles 0-3 of a 2 x 2 attention step over the query blocks, rows ld bytes apart: tile 0
// at a, 1 at a + 16 lanes (second query block), 2 at b, 3 at b + 16 lanes (second key or value
// tile); tiles past `blocks` query blocks or a missing second tile are skipped.
inline void amx_attention_load(const float *a, const float *b, int ld, int blocks, bool two) {
  _tile_loadd(0, a, ld);
  if (blocks > 1) _tile_loadd(1, a + 16, ld);
  if (two) {
    _tile_loadd(2, b, ld);
    if (blocks > 1) _tile_loadd(3, b + 16, ld);
  }
}
inline void amx_attention_store(float *a, float *b, int ld, int blocks, bool two) {
  _tile_stored(0, a, ld);
  if (blocks > 1) _tile_stored(1, a + 16, ld);
  if (two) {
    _tile_stored(2, b, ld);
    if (blocks > 1) _tile_stored(3, b + 16, ld);
  }
}
#endif  // MIXTILE_HAVE_AMX_BF16

#if defined(MIXTILE_HAVE_AVX512_BF16)
// The VDPBF16PS register tile of the bf16 attention path: acc[r][b] holds row r (a key, or a
// value dim) by the 16 query lanes of block b, fed 16 pairs at a time (one 32-deep tile row).
template <int MR, int NB>
struct DpAttentionTile {
  __m512 acc[MR][NB];
  void zero() {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_setzero_ps();
  }
  // 16 pairs: left rows r at left + r·32 (16 pairs each), right block b's 16 pair vectors at
  // right + b·right_block (32 bf16 each).
  void step16(const uint16_t *left, const uint16_t *right, int64_t right_block) {
#pragma GCC unroll 16
    for (int i = 0; i < 16; ++i) {
      __m512i rv[NB];
#pragma GCC unroll 2
      for (int b = 0; b < NB; ++b) rv[b] = _mm512_load_si512(right + b * right_block + i * 32);
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r) {
        int32_t pair;
        std::memcpy(&pair, left + r * 32 + 2 * i, sizeof pair);
        const __m512i lv = _mm512_set1_epi32(pair);
#pragma GCC unroll 2
        for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_dpbf16_ps(acc[r][b], (__m512bh)lv, (__m512bh)rv[b]);
      }
    }
  }
  // Rows r of lanes at out + r·ld (floats), 16 lanes per block.
  void load(const float *in, int64_t ld) {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int b = 0; b < NB; ++b) acc[r][b] = _mm512_loadu_ps(in + r * ld + b * 16);
  }
  void store(float *out, int64_t ld) const {
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
      for (int b = 0; b < NB; ++b) _mm512_storeu_ps(out + r * ld + b * 16, acc[r][b]);
  }
};
constexpr int kDpAttentionRows = 8;  // keys or value dims per register tile: 8 x 2 accumulators

// Sᵀ rows of 16 keys (one key tile column: its depth steps at k0t + ds·512) by NB query blocks,
// into scores [key][lanes].
template <int NB>
inline void dp_attention_scores(const uint16_t *k0t, int64_t dsteps, const uint16_t *queries, int64_t q_block,
                                float *scores) {
  constexpr int lanes = kAttentionTileRows;
  for (int half = 0; half < 16; half += kDpAttentionRows) {
    DpAttentionTile<kDpAttentionRows, NB> tile;
    tile.zero();
    for (int64_t ds = 0; ds < dsteps; ++ds) tile.step16(k0t + ds * 512 + half * 32, queries + ds * 512, q_block);
    tile.store(scores + half * lanes, lanes);
  }
}

// Oᵀ rows of one value tile (16 dims; tile ks at vt + ks·dtiles·512) by NB query blocks over
// `ksteps` key steps of 32 (Pᵀ at pt + (ks·2 + b)·512): Oᵀ += Vᵀ·Pᵀ, or = when `zero`.
template <int NB>
inline void dp_attention_values(const uint16_t *vt, int64_t dtiles, int ksteps, const uint16_t *pt, bool zero,
                                float *ot) {
  constexpr int lanes = kAttentionTileRows;
  for (int half = 0; half < 16; half += kDpAttentionRows) {
    DpAttentionTile<kDpAttentionRows, NB> tile;
    if (zero)
      tile.zero();
    else
      tile.load(ot + half * lanes, lanes);
    for (int ks = 0; ks < ksteps; ++ks) tile.step16(vt + ks * dtiles * 512 + half * 32, pt + ks * 2 * 512, 512);
    tile.store(ot + half * lanes, lanes);
  }
}
#endif  // MIXTILE_HAVE_AVX512_BF16

#if defined(MIXTILE_HAVE_BF16_ENGINE)
/// attend_tile on bf16 products (Path amx_bf16 or avx512_bf16, bf16 caches; see
/// Bf16AttentionScratch): `rows` (<= kAttentionTileRows) queries of one sequence, lane r at
/// positions lo[r]..hi[r], against the kv head whose cache rows start at keys / values. On
/// amx_bf16 the calling thread has configured its tiles (amx_configure_tiles).
template <MatmulPath Path>
inline void attend_tile_bf16(int64_t rows, const float *const *query, const int64_t *lo, const int64_t *hi,
                             float *const *out, int64_t dim, int64_t vdim, const uint16_t *keys,
                             const uint16_t *values, int64_t ld, int64_t ldv, Bf16AttentionScratch &s,
                             float sink = -std::numeric_limits<float>::infinity()) {
  static_assert(Path == MatmulPath::amx_bf16 || Path == MatmulPath::avx512_bf16, "a bf16 product path");
  constexpr int W = 16, lanes = kAttentionTileRows;
  static_assert(lanes == 2 * W, "two query blocks of 16 per tile");
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int nq = rows > W ? 2 : 1;  // query blocks
  const int L = nq * W;             // lanes in use
  const int64_t dp = round_up(dim, 32), vp = round_up(vdim, 16), dsteps = dp / 32;
  const int64_t q_block = dp * W;   // bf16 elements of one packed query block
  const int dtiles = static_cast<int>(vp / 16);
  float *m = s.stats, *sum = s.stats + lanes, *neg_shift = s.stats + 2 * lanes, *alpha = s.stats + 3 * lanes;
  int64_t first, last;
  start_tile_softmax(rows, lo, hi, lanes, s.stats, first, last);
  bf16_ensure_packed(s.pack, keys, values, first, last + 1, dim, vdim, ld, ldv);
  for (int b = 0; b < nq; ++b) {
    const float *qrows[16];
    for (int t = 0; t < W; ++t) qrows[t] = b * W + t < rows ? query[b * W + t] : nullptr;
    pack_token_block(s.queries + b * q_block, qrows, dim);
  }
  auto sees = [&](int r, int64_t j) { return r < rows && j >= lo[r] && j <= hi[r]; };
  // Each lane's key range as int32 vectors (positions < 2^31; unused lanes: empty).
  __m512i lane_lo[2], lane_hi[2];
  __mmask16 lane_used[2];
  for (int u = 0; u < 2; ++u) {
    alignas(64) int32_t l32[16], h32[16];
    for (int i = 0; i < W; ++i) {
      const int r = u * W + i;
      l32[i] = r < rows ? static_cast<int32_t>(lo[r]) : std::numeric_limits<int32_t>::max();
      h32[i] = r < rows ? static_cast<int32_t>(hi[r]) : std::numeric_limits<int32_t>::min();
    }
    lane_lo[u] = _mm512_load_si512(l32);
    lane_hi[u] = _mm512_load_si512(h32);
    const int used = static_cast<int>(std::clamp<int64_t>(rows - u * W, 0, W));
    lane_used[u] = static_cast<__mmask16>((1u << used) - 1);
  }
  [[maybe_unused]] constexpr int ld_ot = lanes * sizeof(float);

  // Key blocks aligned to the value tiles' 32 positions; keys before `first` in the first block
  // are masked like any other.
  for (int64_t j0 = first / 32 * 32; j0 <= last; j0 += kBf16KeyBlock) {
    const bool first_block = j0 == first / 32 * 32;  // Oᵀ starts from zero
    const int64_t n = std::min<int64_t>(kBf16KeyBlock, last - j0 + 1);
    const int ktiles = static_cast<int>((n + 15) / 16), ksteps = static_cast<int>((n + 31) / 32);
    // Sᵀ [key][lane] = K · Qᵀ.
    if constexpr (Path == MatmulPath::amx_bf16) {
#if defined(MIXTILE_HAVE_AMX_BF16)
      // Two key tiles by the query blocks at a time.
      for (int kt = 0; kt < ktiles; kt += 2) {
        const bool two = kt + 1 < ktiles;
        const uint16_t *k0t = s.pack.k + ((j0 / 16 + kt) * dsteps) * 512;
        amx_zero_results();
        for (int64_t ds = 0; ds < dsteps; ++ds) {
          _tile_loadd(4, k0t + ds * 512, 64);
          _tile_loadd(6, s.queries + ds * 32 * W, 64);
          _tile_dpbf16ps(0, 4, 6);
          if (nq > 1) {
            _tile_loadd(7, s.queries + q_block + ds * 32 * W, 64);
            _tile_dpbf16ps(1, 4, 7);
          }
          if (two) {
            _tile_loadd(5, k0t + (dsteps + ds) * 512, 64);
            _tile_dpbf16ps(2, 5, 6);
            if (nq > 1) _tile_dpbf16ps(3, 5, 7);
          }
        }
        float *sc = s.scores + kt * 16 * lanes;
        amx_attention_store(sc, sc + 16 * lanes, ld_ot, nq, two);
      }
#endif
    } else {
#if defined(MIXTILE_HAVE_AVX512_BF16)
      for (int kt = 0; kt < ktiles; ++kt) {
        const uint16_t *k0t = s.pack.k + ((j0 / 16 + kt) * dsteps) * 512;
        if (nq > 1)
          dp_attention_scores<2>(k0t, dsteps, s.queries, q_block, s.scores + kt * 16 * lanes);
        else
          dp_attention_scores<1>(k0t, dsteps, s.queries, q_block, s.scores + kt * 16 * lanes);
      }
#endif
    }
    // Online softmax over the block, lane-wise as attend_tile; key j0 + j is in lane r's range
    // when lo[r] <= j0 + j <= hi[r] (masked keys: score -inf, probability exactly 0).
    float *p = s.scores;
    bool whole = true;
    for (int r = 0; r < L; ++r) whole = whole && sees(r, j0) && sees(r, j0 + n - 1);
    auto in_range = [&](int u, int64_t j) {
      const __m512i at = _mm512_set1_epi32(static_cast<int32_t>(j0 + j));
      return static_cast<__mmask16>(_mm512_cmple_epi32_mask(lane_lo[u], at) & _mm512_cmpge_epi32_mask(lane_hi[u], at));
    };
    bool rescale = false;
    for (int u = 0; u < nq; ++u) {
      __m512 bm = _mm512_set1_ps(kNegInf);
      for (int64_t j = 0; j < n; ++j) {
        float *row = p + j * lanes + u * W;
        __m512 v = _mm512_loadu_ps(row);
        if (!whole) {
          v = _mm512_mask_mov_ps(_mm512_set1_ps(kNegInf), in_range(u, j), v);
          _mm512_storeu_ps(row, v);
        }
        bm = _mm512_max_ps(bm, v);
      }
      const __m512 m_old = _mm512_loadu_ps(m + u * W), m_new = _mm512_max_ps(m_old, bm);
      // a lane with no key yet keeps shift 0 (its exponentials are all 0)
      const __m512 shift = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, _mm512_set1_ps(kNegInf), _CMP_EQ_OQ),
                                              _mm512_setzero_ps());
      const __m512 a = vexp(VecF{_mm512_sub_ps(m_old, shift)}).v;
      rescale = rescale || (_mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ) & lane_used[u]) != 0;
      _mm512_storeu_ps(alpha + u * W, a);
      _mm512_storeu_ps(neg_shift + u * W, _mm512_sub_ps(_mm512_setzero_ps(), shift));
      _mm512_storeu_ps(m + u * W, m_new);
    }
    for (int u = 0; u < nq; ++u) {
      const __m512 shift = _mm512_loadu_ps(neg_shift + u * W);
      __m512 block_sum = _mm512_setzero_ps();
      for (int64_t j = 0; j < n; ++j) {
        float *row = p + j * lanes + u * W;
        __m512 e = vexp(VecF{_mm512_add_ps(_mm512_loadu_ps(row), shift)}).v;
        if (!whole) e = _mm512_maskz_mov_ps(in_range(u, j), e);
        _mm512_storeu_ps(row, e);
        block_sum = _mm512_add_ps(block_sum, e);
      }
      _mm512_storeu_ps(sum + u * W, _mm512_fmadd_ps(_mm512_loadu_ps(sum + u * W), _mm512_loadu_ps(alpha + u * W),
                                                    block_sum));
    }
    // Pᵀ as VNNI key pairs by lanes, bf16 (keys past n are 0).
    for (int ks = 0; ks < ksteps; ++ks)
      for (int u = 0; u < nq; ++u) {
        uint16_t *dst = s.pt + (ks * 2 + u) * 512;
        for (int i = 0; i < 16; ++i) {
          const int64_t a = ks * 32 + 2 * i, b = a + 1;
          const __m512 lo_v = a < n ? _mm512_loadu_ps(p + a * lanes + u * W) : _mm512_setzero_ps();
          const __m512 hi_v = b < n ? _mm512_loadu_ps(p + b * lanes + u * W) : _mm512_setzero_ps();
          _mm512_store_si512(dst + i * 32, bf16_pairs(lo_v, hi_v));
        }
      }
    if (rescale && !first_block)
      for (int64_t d = 0; d < vp; ++d)
        for (int u = 0; u < nq; ++u) {
          float *o = s.ot + d * lanes + u * W;
          _mm512_storeu_ps(o, _mm512_mul_ps(_mm512_loadu_ps(o), _mm512_loadu_ps(alpha + u * W)));
        }
    // Oᵀ += Vᵀ · Pᵀ.
    const uint16_t *vt = s.pack.vt + (j0 / 32) * dtiles * 512;
    if constexpr (Path == MatmulPath::amx_bf16) {
#if defined(MIXTILE_HAVE_AMX_BF16)
      // Two value tiles by the query blocks at a time.
      for (int dt = 0; dt < dtiles; dt += 2) {
        const bool two = dt + 1 < dtiles;
        float *o0 = s.ot + dt * 16 * lanes, *o1 = o0 + 16 * lanes;
        if (first_block)
          amx_zero_results();
        else
          amx_attention_load(o0, o1, ld_ot, nq, two);
        for (int ks = 0; ks < ksteps; ++ks) {
          _tile_loadd(4, vt + (ks * dtiles + dt) * 512, 64);
          _tile_loadd(6, s.pt + (ks * 2) * 512, 64);
          _tile_dpbf16ps(0, 4, 6);
          if (nq > 1) {
            _tile_loadd(7, s.pt + (ks * 2 + 1) * 512, 64);
            _tile_dpbf16ps(1, 4, 7);
          }
          if (two) {
            _tile_loadd(5, vt + (ks * dtiles + dt + 1) * 512, 64);
            _tile_dpbf16ps(2, 5, 6);
            if (nq > 1) _tile_dpbf16ps(3, 5, 7);
          }
        }
        amx_attention_store(o0, o1, ld_ot, nq, two);
      }
#endif
    } else {
#if defined(MIXTILE_HAVE_AVX512_BF16)
      for (int dt = 0; dt < dtiles; ++dt) {
        if (nq > 1)
          dp_attention_values<2>(vt + dt * 512, dtiles, ksteps, s.pt, first_block, s.ot + dt * 16 * lanes);
        else
          dp_attention_values<1>(vt + dt * 512, dtiles, ksteps, s.pt, first_block, s.ot + dt * 16 * lanes);
      }
#endif
    }
  }
  // The sink logit (-inf: none) adds exp(sink - m) to each lane's denominator.
  if (sink != kNegInf)
    for (int r = 0; r < rows; ++r) sum[r] += std::exp(sink - m[r]);
  // out[r] = Oᵀ[.][r] / sum[r]: 16 x 16 blocks transposed back to query rows.
  for (int u = 0; u < nq; ++u) {
    const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(sum + u * W));
    alignas(64) float inv_sum[16];
    _mm512_store_ps(inv_sum, inv);
    for (int64_t d0 = 0; d0 < vp; d0 += 16) {
      __m512 t[16];
      for (int i = 0; i < 16; ++i) t[i] = _mm512_loadu_ps(s.ot + (d0 + i) * lanes + u * W);
      transpose16x16(t);  // t[i]: dims d0 .. d0 + 15 of lane u·16 + i
      const int64_t left = std::min<int64_t>(16, vdim - d0);
      const __mmask16 mk = static_cast<__mmask16>((1u << left) - 1);
      for (int i = 0; i < W && u * W + i < rows; ++i)
        _mm512_mask_storeu_ps(out[u * W + i] + d0, mk, _mm512_mul_ps(t[i], _mm512_set1_ps(inv_sum[i])));
    }
  }
}
#endif  // MIXTILE_HAVE_BF16_ENGINE

}  // namespace detail

/// Bytes of workspace `attention` needs (64-byte aligned chunks): cos/sin per token, the rotated
/// queries, the tile list, and per thread a score buffer of cache_length floats plus a tile's
/// scratch; on the bf16 paths (amx_bf16, avx512_bf16) also packed copies of one kv head's keys and values per thread
/// (cache_length positions each). num_threads <= 0: omp_get_max_threads().
inline size_t attention_workspace_size(const AttentionConfig &c, int64_t tokens, int64_t cache_length,
                                       int num_threads, MatmulPath path = MatmulPath::fma_f32) {
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (!detail::workspace_sizes_fit({tokens, cache_length, c.heads * c.head_dim, c.rotary_dim, nt}))
    return detail::kWorkspaceOverflow;
  const detail::AttentionLayout l = detail::attention_layout(c, tokens, cache_length, path);
  return l.shared + static_cast<size_t>(nt) * l.per_thread;
}

/// Causal self-attention over a KV cache for a batch of tokens from several sequences.
/// q [tokens, heads·head_dim], k [tokens, kv_heads·head_dim] and v [tokens, kv_heads·v_head_dim]
/// (f32, unrotated); token t is at position positions[t] of cache row sequences[t]. Caches
/// [cache_rows, cache_length, kv_heads, head_dim] (keys) and [.., v_head_dim] (values) in storage
/// C (f32, or bf16/f16 bits rounded to nearest even). With rope_key (MLA's decoupled key,
/// [tokens, rotary_dim], requiring rope_offset + rotary_dim = head_dim), k holds only each kv
/// head's first rope_offset dims [tokens, kv_heads·rope_offset] and every kv head's key is that
/// part followed by rope_key; out [tokens, heads·v_head_dim]. Phase 1 writes every token's clamped, rotated k and its clamped v into the caches;
/// phase 2 attends token t, head h over keys of its cache row at positions 0..positions[t] (within
/// the window) with kv head h / (heads / kv_heads), reading k and v back from the cache, so prefill
/// and decode see the same rounded values. RoPE (Su et al., HF
/// semantics): angle θ = p·inv_freq[i] and its cos, sin in f64 per (position, pair), the rotation
/// in f32. Keys at positions <= positions[t] that no call has written are the caller's
/// responsibility; two tokens of one call at the same (sequence, position) are undefined.
/// Returns 0; 1, writing nothing, when a position lies outside [0, cache_length) or a sequence
/// outside [0, cache_rows); 2, writing nothing, when the config is invalid (heads not a multiple
/// of kv_heads, a non-positive head count or head_dim, a negative v_head_dim, rotary_dim odd or
/// rope_offset + rotary_dim above head_dim, no inv_freq for a rotary_dim > 0, a rope_key whose
/// rotary dims are not each head's last). workspace: attention_workspace_size(c, tokens, cache_length,
/// num_threads, Path) bytes, 64-byte aligned.
///
/// Schedule: one OpenMP region. cos/sin per (token, pair); then rotated queries per (token, head)
/// and cache writes per (token, kv head); then work items (head, tile), head-major so a thread's
/// keys and values of one head stay in its L2, dealt round-robin so the long causal rows of a
/// prefill spread over the threads. Tiles are runs of up to kAttentionTileRows consecutive tokens
/// of one sequence (see detail::attention_tile_vectors for the paths).
template <WeightType C, MatmulPath Path = MatmulPath::fma_f32>
int attention(const AttentionConfig &c, int64_t tokens, const float *q, const float *k, const float *v,
              const float *rope_key, const int32_t *positions, const int32_t *sequences, int64_t cache_rows, int64_t cache_length,
              WeightStorage<C> *k_cache, WeightStorage<C> *v_cache, float *out, void *workspace,
              int num_threads) {
  using namespace detail;
  static_assert(MatmulPathCheck<C, Path>::ok, "");
  if (c.heads <= 0 || c.kv_heads <= 0 || c.heads % c.kv_heads != 0 || c.head_dim <= 0 || c.v_head_dim < 0 ||
      c.rotary_dim < 0 || c.rotary_dim % 2 != 0 || c.rope_offset < 0 || c.rope_offset + c.rotary_dim > c.head_dim ||
      (c.rotary_dim > 0 && c.inv_freq == nullptr) ||
      (rope_key != nullptr && (c.rotary_dim == 0 || c.rope_offset + c.rotary_dim != c.head_dim)))
    return 2;
  for (int64_t t = 0; t < tokens; ++t)
    if (positions[t] < 0 || positions[t] >= cache_length || sequences[t] < 0 || sequences[t] >= cache_rows) return 1;
  if (tokens <= 0) return 0;

  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  const int64_t heads = c.heads, kv_heads = c.kv_heads, dim = c.head_dim, pairs = c.rotary_dim / 2;
  const int64_t vdim = c.v_head_dim > 0 ? c.v_head_dim : dim, offset = c.rope_offset;
  // Between positions in a cache; a token's own key part in k.
  const int64_t group = heads / kv_heads, ld = kv_heads * dim, ldv = kv_heads * vdim;
  const int64_t k_width = rope_key != nullptr ? offset : dim;
  const AttentionLayout layout = attention_layout(c, tokens, cache_length, Path);
  char *ws = static_cast<char *>(workspace);
  float *rope = reinterpret_cast<float *>(ws + layout.rope);      // [tokens][cos pairs, sin pairs]
  float *rotated_q = reinterpret_cast<float *>(ws + layout.query);  // [tokens, heads, dim]
  int64_t *tile_start = reinterpret_cast<int64_t *>(ws + layout.tiles);
  int64_t tiles = 0;
  for (int64_t t = 0; t < tokens;) {
    const int64_t begin = t;
    tile_start[tiles++] = t;
    for (++t; t < tokens && t - begin < kAttentionTileRows && sequences[t] == sequences[begin]; ++t) {
    }
  }
  tile_start[tiles] = tokens;
  const int64_t items = tiles * heads;
  // The row path attends a kv head's query heads row_group at a time (attend_rows_grouped): its
  // group, at most kAttentionGroupRows, halved while that would leave fewer than two units of
  // work per thread (one sequence's decode over few kv heads).
  int64_t row_group = attention_group_rows(c);
  while (row_group > 1 && kv_heads * tokens * ((group + row_group - 1) / row_group) < 2 * nt)
    row_group = (row_group + 1) / 2;
  auto cache_row = [&](int64_t t) {  // token t's (sequence, position 0), in cache positions
    return static_cast<int64_t>(sequences[t]) * cache_length;
  };
  auto window_start = [&](int64_t p) { return c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : int64_t(0); };

#pragma omp parallel num_threads(nt)
  {
    char *mine = ws + layout.shared + layout.per_thread * static_cast<size_t>(omp_get_thread_num());
    float *scores = reinterpret_cast<float *>(mine + layout.scores);
    float *row = reinterpret_cast<float *>(mine + layout.row);  // one rotated k head
    float *key_in = row + dim;                                   // an MLA key before rotation
    const AttentionTileScratch scratch{reinterpret_cast<float *>(mine + layout.query_t),
                                       reinterpret_cast<float *>(mine + layout.out_t),
                                       reinterpret_cast<float *>(mine + layout.block_scores),
                                       reinterpret_cast<float *>(mine + layout.keys),
                                       reinterpret_cast<float *>(mine + layout.values),
                                       reinterpret_cast<float *>(mine + layout.stats)};

    rope_tables(tokens, positions, c.inv_freq, pairs, c.rope_scale, rope);

#pragma omp for collapse(2) schedule(static) nowait
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t h = 0; h < heads; ++h)
        rotate_head(q + (t * heads + h) * dim, dim, offset, pairs, rope + t * 2 * pairs,
                    rope + t * 2 * pairs + pairs, c.rope_interleaved, c.clip, c.softmax_scale,
                    rotated_q + (t * heads + h) * dim);
#pragma omp for collapse(2) schedule(static)
    for (int64_t t = 0; t < tokens; ++t)
      for (int64_t g = 0; g < kv_heads; ++g) {
        const int64_t at = cache_row(t) + positions[t];
        const float *key = k + (t * kv_heads + g) * k_width;
        if (rope_key != nullptr) {  // this head's part, then the shared rotary key
          std::memcpy(key_in, key, sizeof(float) * static_cast<size_t>(offset));
          std::memcpy(key_in + offset, rope_key + t * 2 * pairs, sizeof(float) * static_cast<size_t>(2 * pairs));
          key = key_in;
        }
        rotate_head(key, dim, offset, pairs, rope + t * 2 * pairs, rope + t * 2 * pairs + pairs, c.rope_interleaved,
                    c.clip, 1.0f, row);
        store_row<C>(row, dim, 0.0f, k_cache + at * ld + g * dim);
        store_row<C>(v + (t * kv_heads + g) * vdim, vdim, c.clip, v_cache + at * ldv + g * vdim);
      }
    // (the barrier above: every key and value of this call is in the caches)

#if defined(MIXTILE_HAVE_BF16_ENGINE)
    Bf16AttentionScratch bf16_scratch{};
    if constexpr (Path != MatmulPath::fma_f32)
      bf16_scratch = carve_bf16_attention(mine + layout.bf16, dim, vdim, cache_length);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_configure_tiles();
#endif
    // Items (head, query tile) taken one at a time in order: later tiles see more keys, and a
    // thread slowed from outside takes fewer (as WorkCounter, gemm.h).
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t h = item / tiles, tile = item % tiles;
      const int64_t t0 = tile_start[tile], rows = tile_start[tile + 1] - t0;
      const WeightStorage<C> *keys = k_cache + cache_row(t0) * ld + (h / group) * dim;
      const WeightStorage<C> *values = v_cache + cache_row(t0) * ldv + (h / group) * vdim;
      const int vectors = attention_tile_vectors(rows);
      if (vectors == 0) {
        // The item of a subgroup's first head attends the whole subgroup; the others are empty.
        const int64_t in_group = h % group;
        if (in_group % row_group != 0) continue;
        const int count = static_cast<int>(std::min<int64_t>(row_group, group - in_group));
        for (int64_t t = t0; t < t0 + rows; ++t) {
          const float *query[kAttentionGroupRows];
          float *dst[kAttentionGroupRows];
          for (int i = 0; i < count; ++i) {
            query[i] = rotated_q + (t * heads + h + i) * dim;
            dst[i] = out + (t * heads + h + i) * vdim;
          }
          attend_rows_grouped<C>(count, query, dim, vdim, keys, values, ld, ldv, window_start(positions[t]),
                                 positions[t], scores, row, dst, c.sinks != nullptr ? c.sinks + h : nullptr);
        }
      } else {
        const float *query[kAttentionTileRows];
        float *dst[kAttentionTileRows];
        int64_t lo[kAttentionTileRows], hi[kAttentionTileRows];
        const float sink = c.sinks != nullptr ? c.sinks[h] : -std::numeric_limits<float>::infinity();
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t t = t0 + r;
          query[r] = rotated_q + (t * heads + h) * dim;
          dst[r] = out + (t * heads + h) * vdim;
          lo[r] = window_start(positions[t]);
          hi[r] = positions[t];
        }
        if constexpr (Path != MatmulPath::fma_f32) {
#if defined(MIXTILE_HAVE_BF16_ENGINE)
          attend_tile_bf16<Path>(rows, query, lo, hi, dst, dim, vdim, keys, values, ld, ldv, bf16_scratch, sink);
#endif
        } else if (vectors == 1) {
          attend_tile<C, 1>(rows, query, lo, hi, dst, dim, vdim, keys, values, ld, ldv, scratch, sink);
        } else {
          attend_tile<C, 2>(rows, query, lo, hi, dst, dim, vdim, keys, values, ld, ldv, scratch, sink);
        }
      }
    }
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_release_tiles();
#endif
  }
  return 0;
}

/// Multi-head latent attention's constants (mix.latent_attention): heads query heads of
/// nope_dim + rope_dim dims, value heads of v_head_dim, a latent of `rank` per token.
struct LatentAttentionConfig {
  int64_t heads = 0, rank = 0, nope_dim = 0, rope_dim = 0, v_head_dim = 0;
  const double *inv_freq = nullptr;  // [rope_dim / 2], as AttentionConfig's
  float rope_scale = 1.0f;
  bool rope_interleaved = false;
  float softmax_scale = 0.0f;
  int64_t window = 0;
};

namespace detail {

/// The same layer as plain attention over expanded keys and values: every head its own kv head,
/// keys [nope | rope] with the rotary dims last, shared rope_key.
inline AttentionConfig expanded_attention_config(const LatentAttentionConfig &c) {
  AttentionConfig e;
  e.heads = e.kv_heads = c.heads;
  e.head_dim = c.nope_dim + c.rope_dim;
  e.v_head_dim = c.v_head_dim;
  e.rotary_dim = c.rope_dim;
  e.rope_offset = c.nope_dim;
  e.inv_freq = c.inv_freq;
  e.rope_scale = c.rope_scale;
  e.rope_interleaved = c.rope_interleaved;
  e.softmax_scale = c.softmax_scale;
  e.window = c.window;
  return e;
}

inline bool latent_attention_config_valid(const LatentAttentionConfig &c) {
  return c.heads > 0 && c.rank > 0 && c.nope_dim > 0 && c.rope_dim > 0 && c.rope_dim % 2 == 0 &&
         c.v_head_dim > 0 && c.inv_freq != nullptr && c.window >= 0;
}

// Workspace of latent_attention: shared tables, then one region used first by the folded
// (decode) tokens and then by the expanded (prefill) sequences.
struct LatentAttentionLayout {
  size_t rope = 0, rows = 0, order = 0, latent = 0, region = 0;
  // the folded tokens: queries in latent space [T, heads, rank + rope_dim], outputs in latent
  // space [T, heads, rank], per thread a group's scores and a widened cache entry
  size_t q_latent = 0, o_latent = 0, folded_shared = 0, per_thread = 0, bf16 = 0;
  // the expanded sequences
  size_t expanded = 0, q = 0, k = 0, v = 0, rope_key = 0, positions = 0, sequences = 0, out = 0,
         k_cache = 0, v_cache = 0, linear = 0, attention = 0, expanded_bytes = 0;
  size_t total = 0;
};

template <WeightType C>
inline LatentAttentionLayout latent_attention_layout(const LatentAttentionConfig &c, int64_t tokens,
                                                     int64_t cache_rows, int64_t cache_length, int nt,
                                                     const TileConfig &tiles, MatmulPath path) {
  const size_t t = static_cast<size_t>(std::max<int64_t>(tokens, 0));
  const size_t h = static_cast<size_t>(std::max<int64_t>(c.heads, 0));
  const size_t rank = static_cast<size_t>(std::max<int64_t>(c.rank, 0));
  const size_t nope = static_cast<size_t>(std::max<int64_t>(c.nope_dim, 0));
  const size_t rope = static_cast<size_t>(std::max<int64_t>(c.rope_dim, 0));
  const size_t vd = static_cast<size_t>(std::max<int64_t>(c.v_head_dim, 0));
  const size_t entry = rank + rope;
  LatentAttentionLayout l;
  l.rope = 0;
  l.rows = l.rope + align64(sizeof(float) * t * rope);
  l.order = l.rows + align64(sizeof(int64_t) * 5 * static_cast<size_t>(std::max<int64_t>(cache_rows, 0)));
  l.latent = l.order + align64(sizeof(int32_t) * t);
  l.region = l.latent + align64(sizeof(float) * t * rank);
  l.q_latent = 0;
  l.o_latent = l.q_latent + align64(sizeof(float) * t * h * entry);
  l.folded_shared = l.o_latent + align64(sizeof(float) * t * h * rank);
  l.per_thread = align64(sizeof(float) * static_cast<size_t>(kAttentionGroupRows) *
                         static_cast<size_t>(std::max<int64_t>(cache_length, 1))) +
                 2 * align64(sizeof(float) * entry);
  l.bf16 = l.per_thread;
  if (path != MatmulPath::fma_f32) l.per_thread += bf16_attention_scratch_bytes(c.rank + c.rope_dim, c.rank, cache_length);
  const size_t folded = l.folded_shared + static_cast<size_t>(nt) * l.per_thread;
  const int64_t length = std::min(tokens, cache_length);  // of one expanded sequence
  l.expanded = 0;
  l.q = l.expanded + align64(sizeof(float) * t * h * (nope + vd));
  l.k = l.q + align64(sizeof(float) * t * h * (nope + rope));
  l.v = l.k + align64(sizeof(float) * t * h * nope);
  l.rope_key = l.v + align64(sizeof(float) * t * h * vd);
  l.positions = l.rope_key + align64(sizeof(float) * t * rope);
  l.sequences = l.positions + align64(sizeof(int32_t) * t);
  l.out = l.sequences + align64(sizeof(int32_t) * t);
  l.k_cache = l.out + align64(sizeof(float) * t * h * vd);
  l.v_cache = l.k_cache + align64(sizeof(WeightStorage<C>) * static_cast<size_t>(std::max<int64_t>(length, 0)) * h * (nope + rope));
  l.linear = l.v_cache + align64(sizeof(WeightStorage<C>) * static_cast<size_t>(std::max<int64_t>(length, 0)) * h * vd);
  l.attention = l.linear + align64(linear_workspace_size(tokens, c.rank, c.heads * (c.nope_dim + c.v_head_dim), nt, tiles, path));
  l.expanded_bytes = l.attention + align64(attention_workspace_size(expanded_attention_config(c), tokens, length, nt, path));
  l.total = l.region + std::max(folded, l.expanded_bytes);
  return l;
}

}  // namespace detail

/// Bytes of workspace latent_attention needs (64-byte aligned chunks); num_threads <= 0:
/// omp_get_max_threads().
template <WeightType C>
inline size_t latent_attention_workspace_size(const LatentAttentionConfig &c, int64_t tokens, int64_t cache_rows,
                                              int64_t cache_length, int num_threads,
                                              const TileConfig &tiles = default_tile_config(),
                                              MatmulPath path = MatmulPath::fma_f32) {
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  if (!detail::workspace_sizes_fit({tokens, cache_rows, cache_length, c.heads * (c.rank + c.rope_dim),
                                    c.heads * (c.nope_dim + c.v_head_dim), nt}))
    return detail::kWorkspaceOverflow;
  return detail::latent_attention_layout<C>(c, tokens, cache_rows, cache_length, nt, tiles, path).total;
}

/// Multi-head latent attention (DeepSeek-V2/V3, mix.latent_attention) over a cache of latents:
/// q [tokens, heads·(nope_dim + rope_dim)], latent [tokens, rank] (normalized), rope_key
/// [tokens, rope_dim] (unrotated), all f32; kv_b [heads·(nope_dim + v_head_dim), rank] (head h's
/// nope_dim key rows, then its v_head_dim value rows) and cache [cache_rows, cache_length,
/// rank + rope_dim] in storage C; out [tokens, heads·v_head_dim]. Token t sits at positions[t] of
/// cache row sequences[t]. Phase 1 writes every token's latent and rotated rope_key into the
/// cache (rounded to C). Then each head attends as attention() would over keys
/// [W_k[h]·c(s) | r(s)] and values W_v[h]·c(s) of the cached entries (c(s), r(s)) at positions
/// 0..positions[t] (within the window):
///  - a sequence whose tokens in this call are exactly its positions 0..n-1 (a prefill) gets its
///    keys and values expanded from the cached latents (one GEMM with kv_b on the engine of Path)
///    and attends on attention()'s paths over them (temporary expanded caches in storage C);
///  - every other token (decode) folds W_k[h] into its query (q_nope·W_k[h], rank wide) and
///    attends over the cache entries themselves, all heads sharing each entry read (the row path,
///    rank + rope_dim wide keys whose first rank dims are the values), then W_v[h] unfolds the
///    latent output; nothing else is expanded.
/// Returns 0; 1, writing nothing, when a position lies outside [0, cache_length) or a sequence
/// outside [0, cache_rows); 2, writing nothing, for an invalid config. workspace:
/// latent_attention_workspace_size<C>(c, tokens, cache_rows, cache_length, num_threads, tiles, Path).
template <WeightType C, MatmulPath Path = MatmulPath::fma_f32>
int latent_attention(const LatentAttentionConfig &c, int64_t tokens, const float *q, const float *latent,
                     const float *rope_key, const WeightStorage<C> *kv_b, const int32_t *positions,
                     const int32_t *sequences, int64_t cache_rows, int64_t cache_length, WeightStorage<C> *cache,
                     float *out, void *workspace, int num_threads, const TileConfig &tiles = default_tile_config()) {
  using namespace detail;
  static_assert(MatmulPathCheck<C, Path>::ok, "");
  if (!latent_attention_config_valid(c)) return 2;
  for (int64_t t = 0; t < tokens; ++t)
    if (positions[t] < 0 || positions[t] >= cache_length || sequences[t] < 0 || sequences[t] >= cache_rows) return 1;
  if (tokens <= 0) return 0;
  const int nt = num_threads > 0 ? num_threads : omp_get_max_threads();
  const int64_t heads = c.heads, rank = c.rank, nope = c.nope_dim, rdim = c.rope_dim, pairs = rdim / 2;
  const int64_t vdim = c.v_head_dim, entry = rank + rdim, qdim = nope + rdim, kv_rows = nope + vdim;
  const LatentAttentionLayout l = latent_attention_layout<C>(c, tokens, cache_rows, cache_length, nt, tiles, Path);
  char *ws = static_cast<char *>(workspace);
  float *rope = reinterpret_cast<float *>(ws + l.rope);  // [tokens][cos pairs, sin pairs]
  // Per cache row: its tokens, their first and last position, where its expanded tokens start.
  int64_t *count = reinterpret_cast<int64_t *>(ws + l.rows);
  int64_t *first = count + cache_rows, *last = first + cache_rows, *start = last + cache_rows;
  int64_t *fill = start + cache_rows;
  int32_t *order = reinterpret_cast<int32_t *>(ws + l.order);  // expanded tokens by row, then folded
  float *rounded = reinterpret_cast<float *>(ws + l.latent);   // [tokens, rank]: cached latents, widened
  char *region = ws + l.region;

  // Which rows this call fills from position 0 (their tokens: exactly positions 0..n-1).
  for (int64_t b = 0; b < cache_rows; ++b) {
    count[b] = 0;
    first[b] = std::numeric_limits<int64_t>::max();
    last[b] = -1;
  }
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t b = sequences[t];
    ++count[b];
    first[b] = std::min<int64_t>(first[b], positions[t]);
    last[b] = std::max<int64_t>(last[b], positions[t]);
  }
  auto expands = [&](int64_t b) { return count[b] > 0 && first[b] == 0 && last[b] == count[b] - 1; };
  int64_t n_expanded = 0;
  for (int64_t b = 0; b < cache_rows; ++b) {
    start[b] = n_expanded;
    if (expands(b)) n_expanded += count[b];
  }
  {
    int64_t folded = n_expanded;
    std::copy(start, start + cache_rows, fill);
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t b = sequences[t];
      order[expands(b) ? fill[b]++ : folded++] = static_cast<int32_t>(t);
    }
  }
  const int64_t n_folded = tokens - n_expanded;
  const int32_t *folded_tokens = order + n_expanded;
  auto window_start = [&](int64_t p) { return c.window > 0 ? std::max<int64_t>(0, p - c.window + 1) : int64_t(0); };
  // The folded tokens' heads attend row_group at a time: on a bf16 product path as the query
  // rows of a tile (attend_tile_bf16, up to kAttentionTileRows heads, split evenly, into more
  // tiles while that leaves fewer than two per thread) where the tiles stay more than half a
  // vector full; else as attention's row path (one token's 16 heads: 2 threads would share 1
  // tile; the row path's groups of 4 measured faster there).
  int64_t row_group = 0;
  bool tiled = false;
  if (Path != MatmulPath::fma_f32) {
    int64_t tiles = (heads + kAttentionTileRows - 1) / kAttentionTileRows;
    while (n_folded * tiles < 2 * nt && attention_tile_vectors((heads + tiles) / (tiles + 1)) != 0) ++tiles;
    row_group = (heads + tiles - 1) / tiles;
    tiled = n_folded * tiles >= 2 * nt && attention_tile_vectors(row_group) != 0;
  }
  if (!tiled) {
    row_group = std::min<int64_t>(heads, kAttentionGroupRows);
    while (row_group > 1 && n_folded * ((heads + row_group - 1) / row_group) < 2 * nt) row_group = (row_group + 1) / 2;
  }
  const int64_t head_blocks = (heads + row_group - 1) / row_group;
  float *q_latent = reinterpret_cast<float *>(region + l.q_latent);  // [folded, heads, entry]
  float *o_latent = reinterpret_cast<float *>(region + l.o_latent);  // [folded, heads, rank]

#pragma omp parallel num_threads(nt)
  {
    char *mine = region + l.folded_shared + l.per_thread * static_cast<size_t>(omp_get_thread_num());
    float *scores = reinterpret_cast<float *>(mine);
    float *key_row = reinterpret_cast<float *>(
        mine + align64(sizeof(float) * kAttentionGroupRows * static_cast<size_t>(std::max<int64_t>(cache_length, 1))));
    float *tmp = key_row + align64(sizeof(float) * entry) / sizeof(float);
#if defined(MIXTILE_HAVE_BF16_ENGINE)
    Bf16AttentionScratch bf16_scratch{};
    if constexpr (Path != MatmulPath::fma_f32) bf16_scratch = carve_bf16_attention(mine + l.bf16, entry, rank, cache_length);
#endif
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_configure_tiles();
#endif
    rope_tables(tokens, positions, c.inv_freq, pairs, c.rope_scale, rope);
    // Phase 1: the cache entries; the expanded tokens' latents read back (rounded) for the GEMM.
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tokens; ++t) {
      WeightStorage<C> *dst = cache + (static_cast<int64_t>(sequences[t]) * cache_length + positions[t]) * entry;
      store_row<C>(latent + t * rank, rank, 0.0f, dst);
      rotate_head(rope_key + t * rdim, rdim, 0, pairs, rope + t * rdim, rope + t * rdim + pairs, c.rope_interleaved,
                  0.0f, 1.0f, tmp);
      store_row<C>(tmp, rdim, 0.0f, dst + rank);
      if (expands(sequences[t])) widen_block<C>(dst, rank, 1, rank, rounded + t * rank);
    }
    // (barrier: every entry of this call is in the cache)
    if (n_folded > 0) {
      // Queries in latent space: q_nope · W_k[h] (each key row of kv_b read once for all tokens),
      // then the rotated rope dims; all scaled by softmax_scale.
#pragma omp for schedule(dynamic, 1)
      for (int64_t h = 0; h < heads; ++h) {
        const WeightStorage<C> *wk = kv_b + h * kv_rows * rank;
        for (int64_t a = 0; a < n_folded; ++a) std::fill_n(q_latent + (a * heads + h) * entry, rank, 0.0f);
        for (int64_t i = 0; i < nope; ++i) {
          const WeightStorage<C> *row = wk + i * rank;
          for (int64_t a = 0; a < n_folded; ++a) {
            const float x = q[static_cast<int64_t>(folded_tokens[a]) * heads * qdim + h * qdim + i];
            const VecF s = vset1(x);
            float *dst = q_latent + (a * heads + h) * entry;
            int64_t d = 0;
            for (; d + kVecWidth <= rank; d += kVecWidth) vstore(dst + d, vfma(s, vload_weight<C>(row + d), vload(dst + d)));
            for (; d < rank; ++d) dst[d] += x * load_weight_scalar<C>(row + d);
          }
        }
        for (int64_t a = 0; a < n_folded; ++a) {
          const int64_t t = folded_tokens[a];
          float *dst = q_latent + (a * heads + h) * entry;
          std::memcpy(tmp, dst, sizeof(float) * static_cast<size_t>(rank));
          std::memcpy(tmp + rank, q + t * heads * qdim + h * qdim + nope, sizeof(float) * static_cast<size_t>(rdim));
          rotate_head(tmp, entry, rank, pairs, rope + t * rdim, rope + t * rdim + pairs, c.rope_interleaved, 0.0f,
                      c.softmax_scale, dst);
        }
      }
      // Attention over the cache entries: keys entry wide, values their first rank dims.
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < n_folded * head_blocks; ++item) {
        const int64_t a = item / head_blocks, h0 = (item % head_blocks) * row_group;
        const int64_t t = folded_tokens[a];
        const int count_h = static_cast<int>(std::min<int64_t>(row_group, heads - h0));
        const float *query[kAttentionTileRows];
        float *dst[kAttentionTileRows];
        for (int i = 0; i < count_h; ++i) {
          query[i] = q_latent + (a * heads + h0 + i) * entry;
          dst[i] = o_latent + (a * heads + h0 + i) * rank;
        }
        const WeightStorage<C> *row = cache + static_cast<int64_t>(sequences[t]) * cache_length * entry;
        if (tiled) {
#if defined(MIXTILE_HAVE_BF16_ENGINE)
          if constexpr (Path != MatmulPath::fma_f32) {
            int64_t lo[kAttentionTileRows], hi[kAttentionTileRows];
            std::fill_n(lo, count_h, window_start(positions[t]));
            std::fill_n(hi, count_h, static_cast<int64_t>(positions[t]));
            attend_tile_bf16<Path>(count_h, query, lo, hi, dst, entry, rank, row, row, entry, entry, bf16_scratch);
          }
#endif
        } else {
          attend_rows_grouped<C>(count_h, query, entry, rank, row, row, entry, entry, window_start(positions[t]),
                                 positions[t], scores, key_row, dst);
        }
      }
      // Outputs: W_v[h] · o_latent (each value row of kv_b read once for all tokens).
#pragma omp for schedule(dynamic, 1)
      for (int64_t h = 0; h < heads; ++h) {
        const WeightStorage<C> *wv = kv_b + (h * kv_rows + nope) * rank;
        for (int64_t j = 0; j < vdim; ++j)
          for (int64_t a = 0; a < n_folded; ++a)
            out[static_cast<int64_t>(folded_tokens[a]) * heads * vdim + h * vdim + j] =
                dot<C>(o_latent + (a * heads + h) * rank, wv + j * rank, rank);
      }
    }
#if defined(MIXTILE_HAVE_AMX_BF16)
    if constexpr (Path == MatmulPath::amx_bf16) amx_release_tiles();
#endif
  }
  if (n_expanded == 0) return 0;

  // The expanded sequences: keys and values of every cached latent they attend to (all from this
  // call), then attention() on them, one sequence at a time.
  float *expanded = reinterpret_cast<float *>(region + l.expanded);  // [n_expanded, heads·(nope + vdim)]
  float *eq = reinterpret_cast<float *>(region + l.q);
  float *ek = reinterpret_cast<float *>(region + l.k);
  float *ev = reinterpret_cast<float *>(region + l.v);
  float *erk = reinterpret_cast<float *>(region + l.rope_key);
  int32_t *epos = reinterpret_cast<int32_t *>(region + l.positions);
  int32_t *eseq = reinterpret_cast<int32_t *>(region + l.sequences);
  float *eout = reinterpret_cast<float *>(region + l.out);
  LinearProblem lp;
  lp.rows = n_expanded;
  lp.in = rank;
  lp.out = heads * kv_rows;
  lp.x = rounded;
  lp.row_index = order;
  lp.w = kv_b;
  lp.y = expanded;
  lp.workspace = region + l.linear;
  lp.num_threads = nt;
  linear<C, Path>(lp, tiles);
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t m = 0; m < n_expanded; ++m) {
    const int64_t t = order[m];
    for (int64_t h = 0; h < heads; ++h) {
      std::memcpy(ek + (m * heads + h) * nope, expanded + m * heads * kv_rows + h * kv_rows,
                  sizeof(float) * static_cast<size_t>(nope));
      std::memcpy(ev + (m * heads + h) * vdim, expanded + m * heads * kv_rows + h * kv_rows + nope,
                  sizeof(float) * static_cast<size_t>(vdim));
    }
    std::memcpy(eq + m * heads * qdim, q + t * heads * qdim, sizeof(float) * static_cast<size_t>(heads * qdim));
    std::memcpy(erk + m * rdim, rope_key + t * rdim, sizeof(float) * static_cast<size_t>(rdim));
    epos[m] = positions[t];
    eseq[m] = 0;
  }
  const AttentionConfig e = expanded_attention_config(c);
  auto *k_cache = reinterpret_cast<WeightStorage<C> *>(region + l.k_cache);
  auto *v_cache = reinterpret_cast<WeightStorage<C> *>(region + l.v_cache);
  for (int64_t b = 0; b < cache_rows; ++b) {
    if (!expands(b)) continue;
    const int64_t m0 = start[b], n = count[b];
    attention<C, Path>(e, n, eq + m0 * heads * qdim, ek + m0 * heads * nope, ev + m0 * heads * vdim, erk + m0 * rdim,
                       epos + m0, eseq + m0, 1, n, k_cache, v_cache, eout + m0 * heads * vdim, region + l.attention, nt);
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t m = 0; m < n_expanded; ++m)
    std::memcpy(out + static_cast<int64_t>(order[m]) * heads * vdim, eout + m * heads * vdim,
                sizeof(float) * static_cast<size_t>(heads * vdim));
  return 0;
}

}  // namespace mixtile::cpu
