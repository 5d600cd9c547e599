// Builds the mix IR of a Hugging Face MoE config's sparse block (layers.md §2's table): the
// routing attributes of each family and the checkpoint's own tensor names. Refuses what it
// cannot honour, naming the field; never approximates.
#include "passes/import/HFConfig.h"

#include "dialect/MixOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

using namespace mlir;
using namespace mlir::mix;

namespace {

/// Thrown-free error plumbing: the first problem found wins.
/// Bounds of config fields (README, "Hugging Face configs"): sizes (hidden, expert width) up
/// to 2^20, experts and layers up to 2^16; one layer's expert weights up to 2^40 elements.
constexpr int64_t kMaxSize = int64_t(1) << 20;
constexpr int64_t kMaxCount = int64_t(1) << 16;
constexpr int64_t kMaxLayerElements = int64_t(1) << 40;

struct ConfigReader {
  const llvm::json::Object &config;
  std::string family;
  std::string error;

  bool ok() const { return error.empty(); }
  void fail(const Twine &message) {
    if (error.empty())
      error = ("config.json: " + message).str();
  }
  std::optional<int64_t> integer(StringRef key, std::optional<int64_t> fallback = std::nullopt) {
    const llvm::json::Value *value = config.get(key);
    if (!value || value->kind() == llvm::json::Value::Null) {
      if (!fallback)
        fail("missing field '" + key + "' for model_type '" + family + "'");
      return fallback;
    }
    if (std::optional<int64_t> number = value->getAsInteger())
      return number;
    fail("field '" + key + "' must be an integer");
    return fallback ? fallback : std::optional<int64_t>(0);
  }
  /// The expert count of olmoe/qwen2_moe/qwen3_moe: `num_experts` as 4.x and the published
  /// checkpoints write it, `num_local_experts` as transformers 5.x saves some of them.
  StringRef expertCountKey() const {
    return !config.get("num_experts") && config.get("num_local_experts") ? "num_local_experts"
                                                                          : "num_experts";
  }
  /// A size field: positive and at most `bound` (kMaxSize unless given), so no config can
  /// make the compiler allocate or loop past reason. Out-of-range values fail and read as 1.
  int64_t positive(StringRef key, std::optional<int64_t> fallback = std::nullopt,
                   int64_t bound = kMaxSize) {
    std::optional<int64_t> value = integer(key, fallback);
    if (value && *value <= 0)
      fail("field '" + key + "' must be positive, got " + Twine(*value));
    else if (value && *value > bound)
      fail("field '" + key + "' = " + Twine(*value) + " exceeds the bound " + Twine(bound));
    return value && *value > 0 && *value <= bound ? *value : 1;
  }
  /// A count that may be 0 (shared experts, dense layers), bounded like `positive`.
  int64_t nonNegative(StringRef key, int64_t fallback, int64_t bound = kMaxSize) {
    int64_t value = integer(key, fallback).value_or(fallback);
    if (value < 0)
      fail("field '" + key + "' must be >= 0, got " + Twine(value));
    else if (value > bound)
      fail("field '" + key + "' = " + Twine(value) + " exceeds the bound " + Twine(bound));
    return value >= 0 && value <= bound ? value : 0;
  }
  double number(StringRef key, double fallback) {
    const llvm::json::Value *value = config.get(key);
    if (!value || value->kind() == llvm::json::Value::Null)
      return fallback;
    if (std::optional<double> number = value->getAsNumber())
      return *number;
    fail("field '" + key + "' must be a number");
    return fallback;
  }
  bool boolean(StringRef key, bool fallback) {
    const llvm::json::Value *value = config.get(key);
    if (!value || value->kind() == llvm::json::Value::Null)
      return fallback;
    if (std::optional<bool> flag = value->getAsBoolean())
      return *flag;
    fail("field '" + key + "' must be true or false");
    return fallback;
  }
  std::string string(StringRef key, StringRef fallback) {
    const llvm::json::Value *value = config.get(key);
    if (!value || value->kind() == llvm::json::Value::Null)
      return fallback.str();
    if (std::optional<StringRef> text = value->getAsString())
      return text->str();
    fail("field '" + key + "' must be a string");
    return fallback.str();
  }
  std::vector<int64_t> integers(StringRef key) {
    std::vector<int64_t> list;
    const llvm::json::Value *value = config.get(key);
    if (!value || value->kind() == llvm::json::Value::Null)
      return list;
    const llvm::json::Array *array = value->getAsArray();
    if (!array) {
      fail("field '" + key + "' must be a list of integers");
      return list;
    }
    for (const llvm::json::Value &item : *array) {
      if (std::optional<int64_t> number = item.getAsInteger())
        list.push_back(*number);
      else
        fail("field '" + key + "' must be a list of integers");
    }
    return list;
  }
  std::optional<Activation> activation(StringRef key, StringRef fallback) {
    std::string act = string(key, fallback);
    static const std::map<std::string, Activation> names = {
        {"silu", Activation::silu},           {"swish", Activation::silu},
        {"gelu", Activation::gelu},           {"gelu_new", Activation::gelu_tanh},
        {"gelu_fast", Activation::gelu_tanh}, {"gelu_pytorch_tanh", Activation::gelu_tanh},
        {"relu", Activation::relu}};
    auto it = names.find(act);
    if (it == names.end()) {
      fail("field '" + key + "' = '" + act +
           "' is not a supported activation (silu, gelu, gelu_new, gelu_pytorch_tanh, relu)");
      return std::nullopt;
    }
    return it->second;
  }
};

/// Which layers hold a sparse block, by each family's rule in transformers.
std::vector<int64_t> sparseLayers(ConfigReader &r) {
  std::vector<int64_t> layers;
  if (r.family == "switch_transformers") {
    // SwitchTransformersStack: block i is sparse iff i % step == 1 (all when step is 1);
    // the config derives step from num_sparse_encoder_layers unless it stores one.
    int64_t count = r.positive("num_layers", std::nullopt, kMaxCount);
    int64_t sparse = r.nonNegative("num_sparse_encoder_layers", 3, kMaxCount);
    int64_t step = r.nonNegative("encoder_sparse_step", sparse > 0 ? count / sparse : 0, kMaxCount);
    for (int64_t i = 0; i < count; ++i)
      if (step > 0 && (i % step == 1 || step == 1))
        layers.push_back(i);
    return layers;
  }
  int64_t count = r.positive("num_hidden_layers", std::nullopt, kMaxCount);
  if (r.family == "mixtral" || r.family == "olmoe" || r.family == "minimax_m2" ||
      r.family == "solar_open") {
    // Solar-Open has no first_k_dense_replace: every layer is sparse.
    for (int64_t i = 0; i < count; ++i)
      layers.push_back(i);
  } else if (r.family == "ernie4_5_moe") {
    // Ernie4_5_MoeDecoderLayer: sparse iff (i + 1) % interval == 0 and start <= i <= end
    // (end -1: the last layer).
    int64_t interval = r.positive("moe_layer_interval", 1, kMaxCount);
    int64_t start = r.nonNegative("moe_layer_start_index", 1, kMaxCount);
    std::optional<int64_t> end = r.integer("moe_layer_end_index", -1);
    int64_t last = end && *end == -1 ? count - 1 : end.value_or(count - 1);
    if (r.ok() && last < -1)
      r.fail("field 'moe_layer_end_index' must be -1 or a layer index");
    for (int64_t i = start; i < count && i <= last; ++i)
      if ((i + 1) % interval == 0)
        layers.push_back(i);
  } else if (r.family == "glm4_moe_lite") {
    // Glm4MoeLiteConfig: mlp_layer_types, by default one dense layer and then sparse ones.
    const llvm::json::Value *types = r.config.get("mlp_layer_types");
    if (!types || types->kind() == llvm::json::Value::Null) {
      for (int64_t i = 1; i < count; ++i)
        layers.push_back(i);
      return layers;
    }
    const llvm::json::Array *list = types->getAsArray();
    if (!list || static_cast<int64_t>(list->size()) < count) {
      r.fail("field 'mlp_layer_types' must list a type for every layer");
      return layers;
    }
    for (int64_t i = 0; i < count; ++i) {
      std::optional<StringRef> text = (*list)[i].getAsString();
      if (!text || (*text != "dense" && *text != "sparse"))
        r.fail("field 'mlp_layer_types' must hold 'dense' or 'sparse'");
      else if (*text == "sparse")
        layers.push_back(i);
    }
    // transformers builds the layers from mlp_layer_types alone; the hub configs also carry
    // GLM's own first_k_dense_replace, which must then say the same.
    const llvm::json::Value *first = r.config.get("first_k_dense_replace");
    if (first && first->kind() != llvm::json::Value::Null) {
      int64_t k = r.nonNegative("first_k_dense_replace", 0, kMaxCount);
      bool same = static_cast<int64_t>(layers.size()) == std::max<int64_t>(count - k, 0) &&
                  (layers.empty() || layers.front() == k);
      if (r.ok() && !same)
        r.fail(llvm::formatv("field 'first_k_dense_replace' = {0} disagrees with the dense "
                             "layers of mlp_layer_types",
                             k));
    }
  } else if (r.family == "qwen2_moe" || r.family == "qwen3_moe") {
    int64_t step = r.positive("decoder_sparse_step", 1, kMaxCount);
    std::vector<int64_t> dense = r.integers("mlp_only_layers");
    int64_t experts = r.integer(r.expertCountKey()).value_or(0);
    for (int64_t i = 0; i < count; ++i)
      if (!llvm::is_contained(dense, i) && experts > 0 && (i + 1) % step == 0)
        layers.push_back(i);
  } else {
    // deepseek_v2/v3, glm4_moe and dots1: dense layers first, then sparse ones. Glm4MoeConfig's
    // default is 1 dense layer (a saved config spells it out).
    int64_t first = r.nonNegative("first_k_dense_replace", r.family == "glm4_moe" ? 1 : 0,
                                  kMaxCount);
    for (int64_t i = std::max<int64_t>(first, 0); i < count; ++i)
      layers.push_back(i);
  }
  return layers;
}

std::string listLayers(ArrayRef<int64_t> layers) {
  if (layers.empty())
    return "none";
  // Compress runs: "1-26" reads better than 26 numbers.
  std::string text;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1)
      ++j;
    text += (text.empty() ? "" : ", ") + std::to_string(layers[i]);
    if (j > i)
      text += "-" + std::to_string(layers[j]);
    i = j + 1;
  }
  return text;
}

/// The arguments of the block in order: name, shape, dtype.
struct Argument {
  std::string name;
  SmallVector<int64_t> shape;
  Type type;
  DictionaryAttr stored;  // mix.stored: the checkpoint holds it as another tensor's layout
};

/// The attributes naming an argument after `arg` (and recording how it is stored).
void nameArgument(NamedAttrList &attrs, MLIRContext *context, const Argument &arg) {
  attrs.set(MixDialect::kNameAttr, StringAttr::get(context, arg.name));
  if (arg.stored)
    attrs.set(MixDialect::kStoredAttr, arg.stored);
}

/// Names `func`'s argument `index` after `arg` (and records how it is stored).
void nameArgument(func::FuncOp func, unsigned index, const Argument &arg) {
  NamedAttrList attrs(func.getArgAttrDict(index));
  nameArgument(attrs, func.getContext(), arg);
  func.setArgAttrs(index, attrs.getDictionary(func.getContext()));
}

/// One layer's sparse block: the family's routing attributes and the checkpoint's tensor
/// names (layers.md §2's table), then the op computing it from those weights.
struct SparseBlock {
  int64_t hidden = 0, experts = 0, width = 0, k = 1, sharedWidth = 0, nGroup = 1, topkGroup = 1;
  std::optional<int64_t> capacity;
  bool normalize = false, sigmoid = false, top2Sum = false, gated = true, routerBias = false;
  bool sharedExpertGate = false, selectionBias = false;
  bool selectionBiasRows = false;  // stored [1, E] (ERNIE-4.5), viewed as [E]
  bool fused = false;  // transformers 5.x's in-memory [E, 2F, D] gate_up_proj and [E, D, F] down_proj
  // gpt-oss: stacked in-major experts (gate_up_proj [E, D, 2F] with gate/up columns
  // interleaved, down_proj [E, F, D]), expert biases and the clamped SwiGLU.
  bool oai = false;
  bool mxfp4 = false;  // gpt-oss's experts stored as MXFP4 blocks and scales (mxfp4Experts)
  // ... and multiplied as they are (f4E2M1FN codes with f8E8M0FNU scales) rather than
  // dequantized into the weight dtype when bound: bf16 models for the CPU (mxfp4InPlace).
  bool mxfp4InPlace = false;
  double swigluAlpha = 1.702, swigluLimit = 7.0;
  // Set when the routed experts take the checkpoint's fp8 weights in place (e4m3 codes with
  // `<name>_scale_inv` block scales of this many rows x columns; see fp8ExpertBlock).
  std::optional<std::array<int64_t, 2>> fp8Block;
  double scale = 1.0, epsilon = 0.0;
  std::optional<Activation> activation;
  std::string prefix, router, routerBiasName, selectionBiasName;
  std::function<std::string(int64_t, StringRef)> expertName;
  std::string sharedPrefix;
  StringRef gateProj = "gate_proj", upProj = "up_proj", downProj = "down_proj";
  std::vector<Argument> weights;  // in the order build() takes them

  /// Reads layer `layer`'s block from the config; false (with r's error set) if refused.
  bool describe(ConfigReader &r, int64_t layer, Type weightType, Builder &b) {

    if (r.family == "switch_transformers") {
      hidden = r.positive("d_model");
      experts = r.positive("num_experts", std::nullopt, kMaxCount);
      width = r.positive("d_ff");
      activation = r.activation("dense_act_fn", "relu");
      capacity = r.integer("expert_capacity", 64);
      if (capacity && *capacity < 0)
        r.fail("field 'expert_capacity' must not be negative");
      gated = false;
      prefix = llvm::formatv("encoder.block.{0}.layer.1.mlp.", layer).str();
      router = prefix + "router.classifier.weight";
      routerBias = r.boolean("router_bias", false);
      routerBiasName = prefix + "router.classifier.bias";
      expertName = [&](int64_t e, StringRef role) {
        return llvm::formatv("{0}experts.expert_{1}.{2}.weight", prefix, e,
                             role == "up" ? "wi" : "wo")
            .str();
      };
    } else {
      hidden = r.positive("hidden_size");
      // Ernie4_5_MoeConfig saves the count as moe_k (num_experts_per_tok is its alias).
      k = r.positive(r.family == "ernie4_5_moe" && !r.config.get("num_experts_per_tok")
                         ? "moe_k"
                         : "num_experts_per_tok");
      activation = r.activation("hidden_act", "silu");
      prefix = llvm::formatv("model.layers.{0}.mlp.", layer).str();
      // Mixtral's names, which MiniMax-M2 keeps: transformers 5.x names the block `mlp` in
      // memory (checkpoints keep block_sparse_moe) and the experts' matrices w1/w3/w2.
      auto mixtralNames = [&] {
        prefix = llvm::formatv(fused ? "model.layers.{0}.mlp." : "model.layers.{0}.block_sparse_moe.",
                               layer)
                     .str();
        gateProj = "w1";
        upProj = "w3";
        downProj = "w2";
      };
      if (r.family == "mixtral") {
        experts = r.positive("num_local_experts", std::nullopt, kMaxCount);
        width = r.positive("intermediate_size");
        normalize = true;
        mixtralNames();
      } else if (r.family == "olmoe" || r.family == "qwen2_moe" || r.family == "qwen3_moe") {
        experts = r.positive(r.expertCountKey(), std::nullopt, kMaxCount);
        width = r.positive(r.family == "olmoe" ? "intermediate_size" : "moe_intermediate_size");
        normalize = r.boolean("norm_topk_prob", false);
        if (r.family == "qwen2_moe") {
          sharedWidth = r.nonNegative("shared_expert_intermediate_size", 0);
          sharedExpertGate = sharedWidth > 0;
          sharedPrefix = prefix + "shared_expert.";
        }
      } else if (r.family == "ernie4_5_moe") {
        // ERNIE-4.5: f32 softmax scores, experts chosen by scores + the selection bias (stored
        // [1, E] as mlp.moe_statics.e_score_correction_bias; in transformers' memory under
        // gate.), the chosen scores divided by max(their sum, moe_norm_min). That is the plain
        // renormalization unless the chosen experts' probabilities add up to less than
        // moe_norm_min (1e-12 in every released config): a bound above 1e-6 is refused.
        experts = r.positive(r.config.get("num_experts") ? "num_experts" : "moe_num_experts",
                             std::nullopt, kMaxCount);
        width = r.positive("moe_intermediate_size");
        normalize = true;
        double normMin = r.number("moe_norm_min", 1e-12);
        if (r.ok() && !(normMin >= 0.0 && normMin <= 1e-6))
          r.fail("field 'moe_norm_min' must be in [0, 1e-6]");
        if (r.boolean("use_bias", false))
          r.fail("field 'use_bias' = true is not supported for ernie4_5_moe");
        selectionBias = true;
        selectionBiasRows = true;
        selectionBiasName =
            prefix + (fused ? "gate.moe_statics." : "moe_statics.") + "e_score_correction_bias";
        sharedWidth = r.nonNegative("moe_num_shared_experts", 2, kMaxCount) * width;
        sharedPrefix = prefix + "shared_experts.";
      } else if (r.family == "gpt_oss") {
        // gpt-oss: a router with a bias; softmax over the k chosen logits, which is the
        // softmax over all experts renormalized over the chosen ones. Experts with biases and
        // the clamped SwiGLU (hidden_act is not read by GptOssExperts).
        experts = r.positive("num_local_experts", std::nullopt, kMaxCount);
        width = r.positive("intermediate_size");
        normalize = true;
        routerBias = true;
        oai = true;
        swigluAlpha = r.number("swiglu_alpha", 1.702);
        swigluLimit = r.number("swiglu_limit", 7.0);
        if (r.ok() && !(swigluAlpha > 0.0 && std::isfinite(swigluAlpha) && swigluLimit > 0.0 &&
                        std::isfinite(swigluLimit)))
          r.fail("fields 'swiglu_alpha' and 'swiglu_limit' must be finite positive numbers");
        activation = Activation::swiglu_oai;
        if (r.ok() && mxfp4 && (hidden % 32 != 0 || width % 32 != 0))
          r.fail(llvm::formatv("MXFP4 experts need hidden_size ({0}) and intermediate_size ({1}) "
                               "to be multiples of 32 (its blocks)",
                               hidden, width));
      } else if (r.family == "minimax_m2") {
        // MiniMax-M2: Mixtral's names (block_sparse_moe, w1/w3/w2) and expert width, sigmoid
        // scores chosen with the block's e_score_correction_bias, renormalized without an
        // epsilon; no groups, no scaling. The router stays in the model's dtype.
        experts = r.positive(r.expertCountKey(), std::nullopt, kMaxCount);
        width = r.positive("intermediate_size");
        // Switches of MiniMax's own code that transformers ignores: refused where they ask
        // for something else.
        if (r.string("scoring_func", "sigmoid") != "sigmoid")
          r.fail("field 'scoring_func' is not supported for minimax_m2 (transformers ignores "
                 "it)");
        if (!r.boolean("use_routing_bias", true))
          r.fail("field 'use_routing_bias' = false is not supported for minimax_m2 "
                 "(transformers ignores it)");
        if (r.nonNegative("shared_intermediate_size", 0) != 0)
          r.fail("field 'shared_intermediate_size' is not supported for minimax_m2 "
                 "(transformers ignores it)");
        mixtralNames();
        sigmoid = true;
        normalize = true;
        selectionBias = true;
        selectionBiasName = prefix + "e_score_correction_bias";
      } else if (r.family == "glm4_moe" || r.family == "glm4_moe_lite" || r.family == "dots1" ||
                 r.family == "solar_open") {
        // DeepSeek-V3's routing (sigmoid scores, the selection bias, group-limited top-k over
        // the top-2 sums) with neither scoring_func nor topk_method: transformers' Glm4Moe(Lite),
        // Dots1 and SolarOpen (Glm4MoeMoE) routers always route this way.
        bool glm = r.family != "dots1";
        experts = r.positive("n_routed_experts", std::nullopt, kMaxCount);
        width = r.positive("moe_intermediate_size");
        scale = r.number("routed_scaling_factor", r.family == "glm4_moe_lite" ? 1.8 : 1.0);
        sigmoid = true;
        top2Sum = true;
        nGroup = r.positive("n_group", 1);
        topkGroup = r.positive("topk_group", 1);
        normalize = r.boolean("norm_topk_prob", glm);
        epsilon = 1e-20;
        selectionBias = true;
        selectionBiasName = prefix + "gate.e_score_correction_bias";
        // Dots1Config has no default (transformers cannot build the block without one).
        if (!glm && !r.config.get("n_shared_experts"))
          r.fail("field 'n_shared_experts' is missing");
        sharedWidth = r.nonNegative("n_shared_experts", glm ? 1 : 0, kMaxCount) * width;
        sharedPrefix = prefix + "shared_experts.";
      } else {
        experts = r.positive("n_routed_experts", std::nullopt, kMaxCount);
        width = r.positive("moe_intermediate_size");
        scale = r.number("routed_scaling_factor", 1.0);
        // transformers' DeepSeek-V3 always scores with sigmoid and selects with noaux_tc and
        // its 5.x configs omit both fields; DeepSeek-V2's defaults are softmax and greedy.
        bool v3 = r.family == "deepseek_v3";
        std::string method = r.string("topk_method", v3 ? "noaux_tc" : "greedy");
        std::string scoring = r.string("scoring_func", v3 ? "sigmoid" : "softmax");
        if (r.family == "deepseek_v2") {
          // Hugging Face and DeepSeek's own code disagree here (layers.md §2): refuse.
          if (r.boolean("norm_topk_prob", false))
            r.fail("field 'norm_topk_prob' = true is not supported for deepseek_v2");
          if (r.integer("moe_layer_freq", 1).value_or(1) != 1)
            r.fail("field 'moe_layer_freq' other than 1 is not supported for deepseek_v2");
          if (scoring != "softmax")
            r.fail("field 'scoring_func' = '" + scoring + "' is not supported for deepseek_v2");
          if (method == "group_limited_greedy") {
            nGroup = r.positive("n_group");
            topkGroup = r.positive("topk_group");
          } else if (method != "greedy") {
            r.fail("field 'topk_method' = '" + method + "' is not supported for deepseek_v2");
          }
        } else {
          if (scoring != "sigmoid")
            r.fail("field 'scoring_func' = '" + scoring + "' is not supported for deepseek_v3");
          if (method != "noaux_tc")
            r.fail("field 'topk_method' = '" + method + "' is not supported for deepseek_v3");
          sigmoid = true;
          top2Sum = true;
          nGroup = r.positive("n_group");
          topkGroup = r.positive("topk_group");
          normalize = r.boolean("norm_topk_prob", false);
          epsilon = 1e-20;
          selectionBias = true;
          selectionBiasName = prefix + "gate.e_score_correction_bias";
        }
        sharedWidth = r.nonNegative("n_shared_experts", 0, kMaxCount) * width;
        sharedPrefix = prefix + "shared_experts.";
      }
      router = prefix + (oai ? "router.weight" : "gate.weight");
      routerBiasName = prefix + "router.bias";
      expertName = [&](int64_t e, StringRef role) {
        StringRef proj = role == "gate" ? gateProj : role == "up" ? upProj : downProj;
        return llvm::formatv("{0}experts.{1}.{2}.weight", prefix, e, proj).str();
      };
    }
    if (r.ok() && k > experts)
      r.fail(llvm::formatv("num_experts_per_tok ({0}) exceeds the number of experts ({1})", k,
                           experts));
    if (r.ok() && experts % nGroup != 0)
      r.fail(llvm::formatv("n_group ({0}) does not divide the number of experts ({1})", nGroup,
                           experts));
    if (r.ok() && topkGroup > nGroup)
      r.fail(llvm::formatv("topk_group ({0}) exceeds n_group ({1})", topkGroup, nGroup));
    if (r.ok() && k > topkGroup * (experts / nGroup))
      r.fail(llvm::formatv("num_experts_per_tok ({0}) exceeds the {1} experts in topk_group "
                           "({2}) groups",
                           k, topkGroup * (experts / nGroup), topkGroup));
    if (r.ok() && top2Sum && experts / nGroup < 2)
      r.fail("noaux_tc needs at least 2 experts per group (n_routed_experts / n_group)");
    if (r.ok() && !(scale > 0.0 && std::isfinite(scale)))
      r.fail("field 'routed_scaling_factor' must be a finite positive number");
    // Bounded fields cannot overflow here: 2^16 experts x 3 x 2^20 x 2^20 < 2^63.
    if (r.ok() && experts * 3 * hidden * width > kMaxLayerElements)
      r.fail(llvm::formatv("the layer's expert weights ({0} experts x 3 x {1} x {2} elements) "
                           "exceed the bound of 2^40 elements",
                           experts, hidden, width)
                 .str());
    if (!r.ok())
      return false;
    Type f32 = b.getF32Type();
    // transformers keeps the routers of DeepSeek, GLM-4.5 and dots.llm1 in f32
    // (`_keep_in_fp32_modules_strict`), whatever the other weights; a checkpoint storing one
    // narrower is widened once when bound.
    bool f32Router = r.family == "deepseek_v2" || r.family == "deepseek_v3" ||
                     r.family == "glm4_moe" || r.family == "glm4_moe_lite" ||
                     r.family == "dots1" || r.family == "ernie4_5_moe" ||
                     r.family == "solar_open";
    weights.push_back({router, {experts, hidden}, f32Router ? f32 : weightType});
    if (routerBias)
      weights.push_back({routerBiasName, {experts}, weightType});
    // e_score_correction_bias is f32 in DeepSeek's, GLM's and dots' checkpoints, whatever the
    // weights; MiniMax-M2 stores it in the model's dtype, widened (exactly) when bound.
    if (selectionBias)
      weights.push_back({selectionBiasName,
                         selectionBiasRows ? SmallVector<int64_t>{1, experts}
                                           : SmallVector<int64_t>{experts},
                         f32});
    if (oai) {
      // Read as Mixtile's [E, F, D] gate and up, [E, D, F] down, from the stored layout; the
      // biases as f32 (mix.stored, built once by the runtime when it binds the weights).
      std::string gateUp = prefix + "experts.gate_up_proj", downs = prefix + "experts.down_proj";
      auto stored = [&](const std::string &from, int64_t stride, int64_t offset, bool transpose) {
        SmallVector<NamedAttribute> fields = {
            b.getNamedAttr("name", b.getStringAttr(from)),
            b.getNamedAttr("offset", b.getI64IntegerAttr(offset)),
            b.getNamedAttr("stride", b.getI64IntegerAttr(stride))};
        if (transpose)
          fields.push_back(b.getNamedAttr("transpose", b.getUnitAttr()));
        // The hub's MXFP4 experts: their codes and scales rows, or dequantized into the
        // weight's dtype, as they are rearranged.
        if (transpose && mxfp4)
          fields.push_back(b.getNamedAttr("format", b.getStringAttr("mxfp4")));
        return b.getDictionaryAttr(fields);
      };
      Type expertType = mxfp4InPlace ? Type(b.getType<Float4E2M1FNType>()) : weightType;
      weights.push_back({gateUp + "[gate]", {experts, width, hidden}, expertType,
                         stored(gateUp, 2, 0, true)});
      weights.push_back({gateUp + "[up]", {experts, width, hidden}, expertType,
                         stored(gateUp, 2, 1, true)});
      weights.push_back({downs + "[transposed]", {experts, hidden, width}, expertType,
                         stored(downs, 1, 0, true)});
      if (mxfp4InPlace) { // each role's e8m0 scales, rows as its codes' (`<name>_scales`)
        Type e8m0 = b.getType<Float8E8M0FNUType>();
        weights.push_back({gateUp + "_scales[gate]", {experts, width, hidden / 32}, e8m0,
                           stored(gateUp, 2, 0, true)});
        weights.push_back({gateUp + "_scales[up]", {experts, width, hidden / 32}, e8m0,
                           stored(gateUp, 2, 1, true)});
        weights.push_back({downs + "_scales[transposed]", {experts, hidden, width / 32}, e8m0,
                           stored(downs, 1, 0, true)});
      }
      weights.push_back({gateUp + "_bias[gate]", {experts, width}, f32,
                         stored(gateUp + "_bias", 2, 0, false)});
      weights.push_back({gateUp + "_bias[up]", {experts, width}, f32,
                         stored(gateUp + "_bias", 2, 1, false)});
      weights.push_back({downs + "_bias", {experts, hidden}, f32});
    } else if (fused) {
      weights.push_back({prefix + "experts.gate_up_proj", {experts, 2 * width, hidden}, weightType});
      weights.push_back({prefix + "experts.down_proj", {experts, hidden, width}, weightType});
    }
    for (StringRef role : {"gate", "up", "down"}) {
      if (fused || oai || (role == "gate" && !gated))
        continue;
      SmallVector<int64_t> shape = role == "down" ? SmallVector<int64_t>{hidden, width}
                                                  : SmallVector<int64_t>{width, hidden};
      for (int64_t e = 0; e < experts; ++e)
        weights.push_back({expertName(e, role), shape,
                           fp8Block ? Type(b.getType<Float8E4M3FNType>()) : weightType});
      if (fp8Block) // the role's block scales follow its weights
        for (int64_t e = 0; e < experts; ++e)
          weights.push_back({expertName(e, role) + "_scale_inv",
                             {(shape[0] + (*fp8Block)[0] - 1) / (*fp8Block)[0],
                              (shape[1] + (*fp8Block)[1] - 1) / (*fp8Block)[1]},
                             f32});
    }
    if (sharedWidth > 0) {
      weights.push_back({sharedPrefix + "gate_proj.weight", {sharedWidth, hidden}, weightType});
      weights.push_back({sharedPrefix + "up_proj.weight", {sharedWidth, hidden}, weightType});
      weights.push_back({sharedPrefix + "down_proj.weight", {hidden, sharedWidth}, weightType});
      if (sharedExpertGate)
        weights.push_back({prefix + "shared_expert_gate.weight", {1, hidden}, weightType});
    }
    return true;
  }

  /// The block's op on tokens `x`, from `values` bound to `weights` in order.
  Value build(OpBuilder &builder, Location loc, Value x, ValueRange values, Type outputType) {
    MLIRContext *context = builder.getContext();
    size_t index = 0;
    auto next = [&]() -> Value { return values[index++]; };
    Value routerValue = next();
    Value routerBiasValue = routerBias ? next() : Value();
    Value selectionBiasValue = selectionBias ? next() : Value();
    if (selectionBiasValue && selectionBiasRows) // [1, E] -> [E]: a view of the same bytes
      selectionBiasValue = tensor::CollapseShapeOp::create(
          builder, loc, RankedTensorType::get({experts}, builder.getF32Type()),
          selectionBiasValue, SmallVector<ReassociationIndices>{{0, 1}});
    SmallVector<Value> gate, up, down, gateScale, upScale, downScale;
    Value gateBias, upBias, downBias;
    if (oai) {
      gate.push_back(next());
      up.push_back(next());
      down.push_back(next());
      if (mxfp4InPlace) {
        gateScale.push_back(next());
        upScale.push_back(next());
        downScale.push_back(next());
      }
      gateBias = next();
      upBias = next();
      downBias = next();
    } else if (fused) {
      // Each expert's matrices are contiguous blocks of the fused tensors: views, no copy.
      Value gateUp = next(), downs = next();
      auto block = [&](Value t, int64_t e, int64_t row, int64_t rows, int64_t cols) -> Value {
        SmallVector<OpFoldResult> offsets = {builder.getIndexAttr(e), builder.getIndexAttr(row),
                                             builder.getIndexAttr(0)};
        SmallVector<OpFoldResult> sizes = {builder.getIndexAttr(1), builder.getIndexAttr(rows),
                                           builder.getIndexAttr(cols)};
        SmallVector<OpFoldResult> strides(3, builder.getIndexAttr(1));
        auto type = RankedTensorType::get(
            {rows, cols}, cast<RankedTensorType>(t.getType()).getElementType());
        return tensor::ExtractSliceOp::create(builder, loc, type, t, offsets, sizes, strides);
      };
      for (int64_t e = 0; e < experts; ++e) {
        gate.push_back(block(gateUp, e, 0, width, hidden));
        up.push_back(block(gateUp, e, width, width, hidden));
        down.push_back(block(downs, e, 0, hidden, width));
      }
    } else {
      auto role = [&](SmallVector<Value> &weights, SmallVector<Value> &scales) {
        for (int64_t e = 0; e < experts; ++e)
          weights.push_back(next());
        if (fp8Block)
          for (int64_t e = 0; e < experts; ++e)
            scales.push_back(next());
      };
      if (gated)
        role(gate, gateScale);
      role(up, upScale);
      role(down, downScale);
    }
    Value sharedGate, sharedUp, sharedDown, sharedGateWeight;
    if (sharedWidth > 0) {
      sharedGate = next();
      sharedUp = next();
      sharedDown = next();
      if (sharedExpertGate)
        sharedGateWeight = next();
    }
    auto layerOp = TokenChoiceMoEOp::create(
        builder, loc, outputType, Type(), Type(), Type(), x, routerValue, routerBiasValue,
        selectionBiasValue, gate, up, down, gateScale, upScale, downScale, sharedGate, sharedUp,
        sharedDown, sharedGateWeight, gateBias, upBias, downBias,
        builder.getI64IntegerAttr(k),
        ScoringAttr::get(context, sigmoid ? Scoring::sigmoid : Scoring::softmax),
        normalize ? builder.getUnitAttr() : UnitAttr(), builder.getF64FloatAttr(epsilon),
        builder.getF64FloatAttr(scale), builder.getI64IntegerAttr(nGroup),
        builder.getI64IntegerAttr(topkGroup),
        GroupScoreAttr::get(context, top2Sum ? GroupScore::top2_sum : GroupScore::max),
        capacity ? builder.getI64IntegerAttr(*capacity) : IntegerAttr(), FloatAttr(),
        ActivationAttr::get(context, *activation), builder.getF64FloatAttr(swigluAlpha),
        builder.getF64FloatAttr(swigluLimit),
        fp8Block ? builder.getDenseI64ArrayAttr(*fp8Block) : DenseI64ArrayAttr());
    return layerOp.getOutput();
  }
};


/// The parsed config.json (an object), or nullopt with `error` set.
std::optional<llvm::json::Value> loadConfig(StringRef configPath, std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(configPath);
  if (!buffer) {
    error = "cannot read '" + configPath.str() + "': " + buffer.getError().message();
    return std::nullopt;
  }
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse((*buffer)->getBuffer());
  if (!parsed) {
    error = "'" + configPath.str() + "' is not valid JSON: " + llvm::toString(parsed.takeError());
    return std::nullopt;
  }
  const llvm::json::Object *object = parsed->getAsObject();
  if (!object) {
    error = "'" + configPath.str() + "' must hold a JSON object";
    return std::nullopt;
  }
  return std::move(*parsed);
}

/// The weights' dtype ("f32", "bf16", "f16"): `dtypeArg` if given, else the config's; "" with
/// `error` set when the config names one Mixtile cannot bind.
std::string weightDtype(ConfigReader &r, StringRef dtypeArg, std::string &error) {
  std::string dtype = dtypeArg.str();
  if (dtype.empty()) {
    // transformers 5.x writes the model dtype as `dtype`, 4.x as `torch_dtype`.
    const char *field = r.config.get("dtype") && r.config.get("dtype")->kind() !=
                                                     llvm::json::Value::Null
                            ? "dtype"
                            : "torch_dtype";
    std::string torchDtype = r.string(field, "float32");
    dtype = torchDtype == "bfloat16" ? "bf16"
            : torchDtype == "float16" ? "f16"
            : torchDtype == "float32" ? "f32"
                                      : "";
    if (dtype.empty() && !r.ok()) {
      error = r.error;  // the field's own failure (not a string), already said
      return "";
    }
    if (dtype.empty()) {
      error = llvm::formatv("field '{0}' = '{1}' is not supported (expected float32, bfloat16 "
                            "or float16; or give --dtype)",
                            field, llvm::StringRef(torchDtype).take_front(64))
                  .str();
      return "";
    }
  }
  return dtype;
}

/// Whether the checkpoint stores gpt-oss's experts as MXFP4 (quantization_config's quant_method
/// mxfp4, as the hub's gpt-oss-20b/120b): `<name>_blocks` [E, out, in / 32, 16] bytes of two
/// e2m1 codes and `<name>_scales` [E, out, in / 32] e8m0 exponents for the tensor transformers
/// keeps as `<name>` [E, in, out]. weightQuantization checks the rest of the config.
bool mxfp4Experts(const llvm::json::Object &config) {
  const llvm::json::Object *q = config.getObject("quantization_config");
  const llvm::json::Value *method = q ? q->get("quant_method") : nullptr;
  return method && method->getAsString() == std::optional<StringRef>("mxfp4");
}

/// The checkpoint's weight quantization (`quantization_config`) as the module attribute
/// mix.weight_quantization: a null attribute when the config has none, nullopt (with `error`
/// set) when it names one Mixtile cannot bind. Supported: transformers' fine-grained fp8
/// (`quant_method` "fp8", DeepSeek-V3's and the Qwen3 FP8 checkpoints): e4m3 weights, one f32
/// `weight_scale_inv` per `weight_block_size` block; the runtime dequantizes each such weight
/// on binding to the dtype the artifact computes in, as transformers does on a CPU
/// (docs/MixDialect.md, "Weight quantization"). Activations are not quantized.
std::optional<DictionaryAttr> weightQuantization(const llvm::json::Object &config, Builder &b,
                                                 std::string &error) {
  const llvm::json::Value *value = config.get("quantization_config");
  if (!value || value->kind() == llvm::json::Value::Null)
    return DictionaryAttr();
  const llvm::json::Object *q = value->getAsObject();
  auto refuse = [&](const Twine &message) -> std::optional<DictionaryAttr> {
    error = ("config.json: " + message).str();
    return std::nullopt;
  };
  if (!q)
    return refuse("field 'quantization_config' must be an object");
  auto text = [&](StringRef key, StringRef fallback) -> std::optional<std::string> {
    const llvm::json::Value *field = q->get(key);
    if (!field || field->kind() == llvm::json::Value::Null)
      return fallback.str();
    if (std::optional<StringRef> s = field->getAsString())
      return s->str();
    return std::nullopt;
  };
  std::optional<std::string> method = text("quant_method", "");
  if (!method || method->empty())
    return refuse("field 'quantization_config.quant_method' must be a string");
  // gpt-oss's hub checkpoints: MXFP4 experts (mxfp4Experts), everything else as the config's
  // dtype; no module attribute, the expert arguments say how they are stored.
  if (*method == "mxfp4") {
    const llvm::json::Value *type = config.get("model_type");
    if (!type || type->getAsString() != std::optional<StringRef>("gpt_oss"))
      return refuse("field 'quantization_config.quant_method' = 'mxfp4' is supported for gpt_oss "
                    "(its experts' blocks and scales) only");
    return DictionaryAttr();
  }
  if (*method != "fp8")
    return refuse("field 'quantization_config.quant_method' = '" +
                  StringRef(*method).take_front(64) +
                  "' is not supported (fp8 with block scales is; dequantize the checkpoint to "
                  "bf16 and drop quantization_config)");
  struct Expected {
    const char *key, *fallback, *supported;
  };
  for (Expected field : {Expected{"fmt", "e4m3", "e4m3"}, Expected{"scale_fmt", "float", "float"},
                         Expected{"expert_dtype", "fp8", "fp8"}}) {
    std::optional<std::string> got = text(field.key, field.fallback);
    if (!got || *got != field.supported)
      return refuse("field 'quantization_config." + Twine(field.key) + "' = '" +
                    StringRef(got.value_or("(not a string)")).take_front(64) +
                    "' is not supported (expected '" + field.supported + "')");
  }
  std::optional<std::string> scheme = text("activation_scheme", "dynamic");
  if (!scheme || (*scheme != "dynamic" && *scheme != "static"))
    return refuse("field 'quantization_config.activation_scheme' must be 'dynamic' or 'static'");
  SmallVector<int64_t, 2> block = {128, 128}; // FineGrainedFP8Config's default
  if (const llvm::json::Value *sizes = q->get("weight_block_size")) {
    const llvm::json::Array *list = sizes->getAsArray();
    bool good = list && list->size() == 2;
    for (size_t i = 0; good && i < 2; ++i) {
      std::optional<int64_t> n = (*list)[i].getAsInteger();
      good = n && *n > 0 && *n <= kMaxSize;
      if (good)
        block[i] = *n;
    }
    if (!good)
      return refuse("field 'quantization_config.weight_block_size' must be two positive "
                    "integers (per-tensor fp8 scales are not supported)");
  }
  return b.getDictionaryAttr({b.getNamedAttr("format", b.getStringAttr("fp8_e4m3")),
                              b.getNamedAttr("block", b.getI64ArrayAttr(block))});
}

/// Whether the routed experts of a block take the checkpoint's fp8 weights in place, and their
/// scale blocks: for an fp8 checkpoint (`quantization`) compiled to bf16 for a target whose
/// kernels multiply fp8 weights (`fp8InPlace`: the CPU), with one tensor per expert. Everything
/// else of such a checkpoint (attention, dense and shared MLPs, and the experts elsewhere) is
/// dequantized by the runtime when it binds the weights.
std::optional<std::array<int64_t, 2>> fp8ExpertBlock(DictionaryAttr quantization, Type weightType,
                                                     bool fusedExperts, StringRef family,
                                                     bool fp8InPlace) {
  if (!quantization || !fp8InPlace || !weightType.isBF16() || fusedExperts ||
      family == "switch_transformers")
    return std::nullopt;
  auto block = cast<ArrayAttr>(quantization.get("block"));
  return std::array<int64_t, 2>{cast<IntegerAttr>(block[0]).getInt(),
                                cast<IntegerAttr>(block[1]).getInt()};
}

} // namespace

namespace {
OwningOpRef<ModuleOp> importLayer(MLIRContext *context, StringRef configPath,
                                                int layerArg, StringRef dtypeArg,
                                                StringRef tokenDtypeArg, std::string &name,
                                                std::string &error, bool fusedExperts,
                                                bool fp8InPlace) {
  std::optional<llvm::json::Value> parsed = loadConfig(configPath, error);
  if (!parsed)
    return nullptr;
  const llvm::json::Object *object = parsed->getAsObject();
  ConfigReader r{*object, "", ""};
  r.family = r.string("model_type", "");
  static const char *families[] = {"mixtral",     "qwen2_moe",   "qwen3_moe",
                                   "olmoe",       "deepseek_v2", "deepseek_v3",
                                   "glm4_moe",    "glm4_moe_lite", "dots1",
                                   "minimax_m2",  "ernie4_5_moe",  "gpt_oss",
                                   "solar_open",  "switch_transformers"};
  if (!llvm::is_contained(families, r.family)) {
    error = "config.json: field 'model_type' = '" + r.family +
            "' is not a supported MoE family (mixtral, qwen2_moe, qwen3_moe, olmoe, "
            "deepseek_v2, deepseek_v3, glm4_moe, glm4_moe_lite, dots1, minimax_m2, "
            "ernie4_5_moe, gpt_oss, solar_open, switch_transformers)";
    return nullptr;
  }

  std::vector<int64_t> layers = sparseLayers(r);
  if (!r.ok()) {
    error = r.error;
    return nullptr;
  }
  if (layers.empty()) {
    error = "config.json: this " + r.family + " config has no sparse layer";
    return nullptr;
  }
  int64_t layer = layerArg < 0 ? layers.front() : layerArg;
  if (!llvm::is_contained(layers, layer)) {
    error = llvm::formatv("--layer {0} is not a sparse layer of this {1} config; the sparse "
                          "layers are {2}",
                          layer, r.family, listLayers(layers))
                .str();
    return nullptr;
  }

  std::string dtype = weightDtype(r, dtypeArg, error);
  if (dtype.empty())
    return nullptr;
  Builder b(context);
  std::optional<DictionaryAttr> quantization = weightQuantization(r.config, b, error);
  if (!quantization)
    return nullptr;
  auto floatType = [&](StringRef name) {
    return name == "bf16"  ? Type(b.getBF16Type())
           : name == "f16" ? Type(b.getF16Type())
                           : Type(b.getF32Type());
  };
  Type weightType = floatType(dtype);
  // A bf16 model's hidden states are bf16: the block takes and returns the model's dtype.
  Type tokenType = tokenDtypeArg.empty() ? weightType : floatType(tokenDtypeArg);

  SparseBlock block;
  block.fused = fusedExperts;
  block.fp8Block = fp8ExpertBlock(*quantization, weightType, fusedExperts, r.family, fp8InPlace);
  block.mxfp4 = mxfp4Experts(r.config);
  block.mxfp4InPlace = block.mxfp4 && fp8InPlace && weightType.isBF16();
  if (fusedExperts && r.family == "switch_transformers") {
    error = "--fused-experts applies to the gated families (transformers fuses their "
            "experts); switch_transformers keeps one module per expert";
    return nullptr;
  }
  if (!block.describe(r, layer, weightType, b)) {
    error = r.error;
    return nullptr;
  }
  std::vector<Argument> args;
  args.push_back({"hidden_states", {ShapedType::kDynamic, block.hidden}, tokenType});
  args.insert(args.end(), block.weights.begin(), block.weights.end());

  OpBuilder builder(context);
  Location loc = FileLineColLoc::get(b.getStringAttr(configPath), 1, 1);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  if (*quantization)
    (*module)->setAttr(MixDialect::kWeightQuantizationAttr, *quantization);
  builder.setInsertionPointToEnd(module->getBody());
  SmallVector<Type> inputTypes;
  for (const Argument &arg : args)
    inputTypes.push_back(RankedTensorType::get(arg.shape, arg.type));
  Type outputType = RankedTensorType::get({ShapedType::kDynamic, block.hidden}, tokenType);
  auto func = func::FuncOp::create(builder, loc, "sparse_block",
                                   builder.getFunctionType(inputTypes, {outputType}));
  for (auto [i, arg] : llvm::enumerate(args))
    nameArgument(func, i, arg);
  func.setResultAttr(0, MixDialect::kNameAttr, builder.getStringAttr("output"));
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToEnd(entry);

  Value output = block.build(builder, loc, entry->getArgument(0),
                             entry->getArguments().drop_front(), outputType);
  func::ReturnOp::create(builder, loc, output);
  name = llvm::formatv("{0}_layer{1}", r.family, layer).str();
  return module;
}
} // namespace

//===----------------------------------------------------------------------===//
// Whole models (--model): the decoder around the sparse blocks
//===----------------------------------------------------------------------===//

namespace {

/// RoPE as transformers computes it (modeling_rope_utils.py): the inverse frequency of each
/// rotated pair and the cos/sin scale, from `rope_parameters` (5.x) or `rope_theta` and
/// `rope_scaling` (4.x). Types whose frequencies depend on the run's length are refused.
struct Rope {
  std::vector<double> invFreq;
  double scale = 1.0;
  std::string type = "default";
  double factor = 1.0;        // the scaling factor of a non-default type
  double mscaleAllDim = 0.0;  // rope_scaling.mscale_all_dim (DeepSeek's softmax correction)
};

/// `partialHeads`: the family rotates the first partial_rotary_factor of each head (GLM-4.5,
/// MiniMax-M2), `defaultPartial` where the config gives none; every other family's attention
/// rotates whole heads. `defaultTheta`: the config class's rope_theta.
std::optional<Rope> ropeOf(ConfigReader &r, int64_t headDim, bool partialHeads,
                           double defaultPartial, double defaultTheta) {
  const llvm::json::Object *params = nullptr;
  std::string field = "rope_parameters";
  for (const char *key : {"rope_parameters", "rope_scaling"})
    if (const llvm::json::Value *v = r.config.get(key);
        v && v->kind() != llvm::json::Value::Null && !params) {
      params = v->getAsObject();
      field = key;
      if (!params) {
        r.fail(llvm::formatv("field '{0}' must be an object", key));
        return std::nullopt;
      }
    }
  auto number = [&](StringRef key, std::optional<double> fallback) -> std::optional<double> {
    const llvm::json::Value *v = params ? params->get(key) : nullptr;
    if (!v || v->kind() == llvm::json::Value::Null) {
      if (!fallback)
        r.fail("field '" + field + "." + key + "' is missing");
      return fallback;
    }
    if (std::optional<double> n = v->getAsNumber())
      return n;
    r.fail("field '" + field + "." + key + "' must be a number");
    return std::nullopt;
  };
  std::string type = "default";
  if (params) {
    for (const char *key : {"rope_type", "type"})
      if (const llvm::json::Value *v = params->get(key); v && v->getAsString()) {
        type = v->getAsString()->str();
        break;
      }
  }
  double theta = r.number("rope_theta", defaultTheta);
  if (params)
    theta = number("rope_theta", theta).value_or(theta);
  double partial = r.number("partial_rotary_factor", defaultPartial);
  if (params)
    partial = number("partial_rotary_factor", partial).value_or(partial);
  if (!partialHeads && partial != 1.0 && r.ok()) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", partial);
    r.fail(llvm::formatv("partial_rotary_factor {0} is not supported for {1}: its attention "
                         "rotates whole heads",
                         text, r.family));
  }
  if (!(theta > 1.0) || !std::isfinite(theta))
    r.fail(llvm::formatv("rope_theta must be a finite number > 1, got {0}", theta));
  int64_t dim = partial > 0.0 && partial <= 1.0 ? static_cast<int64_t>(headDim * partial) : 0;
  if (!(partial > 0.0 && partial <= 1.0) || dim < 2)
    r.fail(llvm::formatv("partial_rotary_factor must be in (0, 1] and rotate at least 2 dims, "
                         "got {0}",
                         partial));
  else if (partial != 1.0 && dim % 2 != 0)
    r.fail(llvm::formatv("partial_rotary_factor {0} of head_dim {1} rotates an odd number of "
                         "dims ({2}); RoPE turns pairs",
                         partial, headDim, dim));
  if (!r.ok())
    return std::nullopt;
  Rope rope;
  rope.type = type;
  if (params)
    rope.mscaleAllDim = number("mscale_all_dim", 0.0).value_or(0.0);
  for (int64_t i = 0; i + 1 < dim; i += 2)
    rope.invFreq.push_back(1.0 / std::pow(theta, static_cast<double>(i) / dim));
  double maxPositions = r.number("max_position_embeddings", 4096.0);
  if (type == "default") {
  } else if (type == "linear") {
    double factor = number("factor", std::nullopt).value_or(1.0);
    if (!(factor > 0.0))
      r.fail("field '" + field + ".factor' must be > 0");
    rope.factor = factor;
    for (double &f : rope.invFreq)
      f /= factor;
  } else if (type == "llama3") {
    double factor = number("factor", std::nullopt).value_or(1.0);
    double low = number("low_freq_factor", std::nullopt).value_or(1.0);
    double high = number("high_freq_factor", std::nullopt).value_or(4.0);
    double old = number("original_max_position_embeddings", maxPositions).value_or(maxPositions);
    if (!(factor > 0.0 && high > low && low > 0.0))
      r.fail("field '" + field + "' has llama3 factors out of range");
    rope.factor = factor;
    for (double &f : rope.invFreq) {
      double wavelen = 2 * M_PI / f;
      if (wavelen > old / low) {
        f /= factor;
      } else if (wavelen >= old / high) {
        double smooth = (old / wavelen - low) / (high - low);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
  } else if (type == "yarn") {
    double original =
        number("original_max_position_embeddings", maxPositions).value_or(maxPositions);
    double factor = number("factor", maxPositions / original).value_or(1.0);
    rope.factor = factor;
    auto mscaleOf = [](double scale, double m) {
      return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
    };
    std::optional<double> attention = number("attention_factor", 0.0);
    double mscale = number("mscale", 0.0).value_or(0.0);
    double mscaleAll = number("mscale_all_dim", 0.0).value_or(0.0);
    if (attention && *attention > 0.0)
      rope.scale = *attention;
    else if (mscale != 0.0 && mscaleAll != 0.0)
      rope.scale = mscaleOf(factor, mscale) / mscaleOf(factor, mscaleAll);
    else
      rope.scale = mscaleOf(factor, 1.0);
    double fast = number("beta_fast", 32.0).value_or(32.0);
    double slow = number("beta_slow", 1.0).value_or(1.0);
    if (fast == 0.0)
      fast = 32.0;
    if (slow == 0.0)
      slow = 1.0;
    bool truncate = true;
    if (const llvm::json::Value *v = params ? params->get("truncate") : nullptr)
      truncate = v->getAsBoolean().value_or(true);
    auto correction = [&](double rotations) {
      return dim * std::log(original / (rotations * 2 * M_PI)) / (2 * std::log(theta));
    };
    double lo = correction(fast), hi = correction(slow);
    if (truncate) {
      lo = std::floor(lo);
      hi = std::ceil(hi);
    }
    lo = std::max(lo, 0.0);
    hi = std::min(hi, static_cast<double>(dim - 1));
    if (lo == hi)
      hi += 0.001;
    if (!(factor > 0.0))
      r.fail("field '" + field + ".factor' must be > 0");
    for (size_t i = 0; i < rope.invFreq.size(); ++i) {
      double ramp = std::clamp((static_cast<double>(i) - lo) / (hi - lo), 0.0, 1.0);
      double extrapolation = 1.0 - ramp;
      double f = rope.invFreq[i];
      rope.invFreq[i] = f / factor * (1.0 - extrapolation) + f * extrapolation;
    }
  } else {
    r.fail("field '" + field + "' has rope_type '" + type +
           "', which --model does not support (default, linear, llama3, yarn)");
  }
  if (!r.ok())
    return std::nullopt;
  return rope;
}

/// One decoder layer's shape: what decides whether two layers share one compiled function.
/// `last`: the model's last layer, which takes the logit rows and returns only those rows of its
/// output (nothing else reads the others): its keys and values are cached and its attention runs
/// for every token, but the output projection, the MLP and the residual adds only for the rows
/// the logits need (one per sequence in a generation's prefill).
struct LayerKind {
  bool sparse = false;
  int64_t window = 0;
  bool last = false;
  bool operator<(const LayerKind &o) const {
    return std::tie(sparse, window, last) < std::tie(o.sparse, o.window, o.last);
  }
  std::string functionName() const {
    std::string name = sparse ? "decoder_layer_moe" : "decoder_layer_mlp";
    if (window > 0)
      name += "_window" + std::to_string(window);
    if (last)
      name += "_last";
    return name;
  }
};

} // namespace

namespace {
OwningOpRef<ModuleOp> importModel(MLIRContext *context, StringRef configPath,
                                               StringRef dtypeArg, std::string &name,
                                               std::string &error, bool fp8InPlace) {
  std::optional<llvm::json::Value> parsed = loadConfig(configPath, error);
  if (!parsed)
    return nullptr;
  ConfigReader r{*parsed->getAsObject(), "", ""};
  r.family = r.string("model_type", "");
  if (r.family == "switch_transformers") {
    error = "config.json: model_type 'switch_transformers' is an encoder-decoder model; --model "
            "compiles decoder-only models (mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, "
            "deepseek_v3, glm4_moe, glm4_moe_lite, dots1, minimax_m2, ernie4_5_moe, gpt_oss, "
            "solar_open)";
    return nullptr;
  }
  static const char *families[] = {"mixtral",     "qwen2_moe",   "qwen3_moe",     "olmoe",
                                   "deepseek_v2", "deepseek_v3", "glm4_moe",      "glm4_moe_lite",
                                   "dots1",       "minimax_m2",  "ernie4_5_moe",  "gpt_oss",
                                   "solar_open"};
  if (!llvm::is_contained(families, r.family)) {
    error = "config.json: field 'model_type' = '" + r.family +
            "' is not a model family --model supports (mixtral, qwen2_moe, qwen3_moe, olmoe, "
            "deepseek_v2, deepseek_v3, glm4_moe, glm4_moe_lite, dots1, minimax_m2, "
            "ernie4_5_moe, gpt_oss, solar_open)";
    return nullptr;
  }
  // GptOssConfig: without rope parameters, YaRN x32 over 4096 positions without truncating
  // the correction range, at theta 150000.
  const bool gptOss = r.family == "gpt_oss";
  if (gptOss && !r.config.get("rope_scaling") &&
      (!r.config.get("rope_parameters") ||
       r.config.get("rope_parameters")->kind() == llvm::json::Value::Null)) {
    llvm::json::Object yarn{{"rope_type", "yarn"},   {"factor", 32.0},
                            {"beta_fast", 32.0},     {"beta_slow", 1.0},
                            {"truncate", false},     {"original_max_position_embeddings", 4096}};
    (*parsed->getAsObject())["rope_parameters"] = std::move(yarn);
  }
  // DeepSeek's multi-head latent attention (MLA): queries through an optional low-rank latent,
  // keys and values expanded from one compressed latent per token, plus one rotary key head
  // shared by every head; the cache holds the latent and the rotary key (mix.latent_attention).
  const bool mla = r.family == "deepseek_v2" || r.family == "deepseek_v3" ||
                   r.family == "glm4_moe_lite";
  std::string dtype = weightDtype(r, dtypeArg, error);
  if (dtype.empty())
    return nullptr;
  Builder b(context);
  std::optional<DictionaryAttr> quantization = weightQuantization(r.config, b, error);
  if (!quantization)
    return nullptr;
  Type weightType = dtype == "bf16"  ? Type(b.getBF16Type())
                    : dtype == "f16" ? Type(b.getF16Type())
                                     : Type(b.getF32Type());
  Type f32 = b.getF32Type(), i32 = b.getI32Type();

  // ---- the decoder's sizes ----------------------------------------------------------------
  int64_t hidden = r.positive("hidden_size");
  int64_t heads = r.positive("num_attention_heads", std::nullopt, kMaxCount);
  // The config classes' defaults where a config omits the count (Dots1Config's is 32, not
  // the head count; Glm4MoeConfig's and SolarOpenConfig's 8).
  int64_t kvHeads = mla ? heads
                        : r.positive("num_key_value_heads",
                                     r.family == "dots1" ? 32
                                     : r.family == "glm4_moe" || r.family == "minimax_m2" ||
                                             r.family == "solar_open" || gptOss
                                         ? 8
                                     : r.family == "ernie4_5_moe" ? 4
                                                                  : heads,
                                     kMaxCount);
  int64_t layerCount = r.positive("num_hidden_layers", std::nullopt, kMaxCount);
  int64_t vocab = r.positive("vocab_size");
  // GptOssConfig's head_dim defaults to 64, SolarOpenConfig's and MiniMaxM2Config's to 128
  // (not hidden_size / heads; a null one is hidden_size / heads in every family).
  int64_t headDim = r.config.get("head_dim") &&
                            r.config.get("head_dim")->kind() != llvm::json::Value::Null
                        ? r.positive("head_dim", std::nullopt, kMaxCount)
                    : gptOss                     ? 64
                    : r.family == "solar_open" || r.family == "minimax_m2" ? 128
                                                 : hidden / heads;
  // MLA's sizes: head_dim is the query/key head (nope + rope dims); values are v_head_dim.
  int64_t qRank = 0, kvRank = 0, nopeDim = 0, ropeDim = 0, valueDim = 0;
  bool interleaved = false;
  if (mla) {
    const llvm::json::Value *q = r.config.get("q_lora_rank");
    qRank = q && q->kind() != llvm::json::Value::Null ? r.positive("q_lora_rank") : 0;
    kvRank = r.positive("kv_lora_rank");
    nopeDim = r.positive("qk_nope_head_dim", std::nullopt, kMaxCount);
    ropeDim = r.positive("qk_rope_head_dim", std::nullopt, kMaxCount);
    valueDim = r.positive("v_head_dim", std::nullopt, kMaxCount);
    headDim = nopeDim + ropeDim;
    if (r.ok() && ropeDim % 2 != 0)
      r.fail(llvm::formatv("field 'qk_rope_head_dim' must be even (RoPE turns pairs of dims), "
                           "got {0}",
                           ropeDim));
    // DeepSeek-V2 always rotates adjacent pairs; V3 unless rope_interleave is false.
    interleaved = r.family == "deepseek_v2" || r.boolean("rope_interleave", true);
    if (r.boolean("mlp_bias", false))
      r.fail("field 'mlp_bias' = true is not supported");
  }
  if (r.ok() && heads * std::max(headDim, valueDim) > kMaxSize)
    r.fail(llvm::formatv("num_attention_heads x the head width ({0} x {1}) exceeds the bound {2}",
                         heads, std::max(headDim, valueDim), kMaxSize));
  double epsilon =
      r.number("rms_norm_eps", r.family == "glm4_moe" || r.family == "glm4_moe_lite" ||
                                       r.family == "ernie4_5_moe" || r.family == "solar_open" ||
                                       gptOss
                                   ? 1e-5
                                   : 1e-6);
  // Ernie4_5_MoeConfig ties the lm head to the embedding unless the config says otherwise.
  bool tied = r.boolean("tie_word_embeddings", r.family == "ernie4_5_moe");
  int64_t maxPositions = r.positive("max_position_embeddings", 4096, int64_t(1) << 24);
  // GLM-4.7-Flash's attention repeats the expanded keys by heads / num_key_value_heads again:
  // transformers runs only configs where they are equal.
  if (r.ok() && r.family == "glm4_moe_lite" && r.config.get("num_key_value_heads") &&
      r.positive("num_key_value_heads", std::nullopt, kMaxCount) != heads)
    r.fail("num_key_value_heads must equal num_attention_heads for glm4_moe_lite");
  if (r.ok() && heads % kvHeads != 0)
    r.fail(llvm::formatv("num_key_value_heads ({0}) must divide num_attention_heads ({1})",
                         kvHeads, heads));
  if (r.ok() && headDim * heads == 0)
    r.fail("head_dim is 0: give head_dim, or hidden_size at least num_attention_heads");
  if (r.ok() && !(epsilon > 0.0 && std::isfinite(epsilon)))
    r.fail("field 'rms_norm_eps' must be a finite number > 0");
  if (r.ok() && heads * headDim > kMaxSize)
    r.fail(llvm::formatv("num_attention_heads x head_dim ({0} x {1}) exceeds the bound {2}", heads,
                         headDim, kMaxSize));
  // Attention's biases and norms, by family.
  bool qkvBias = false, outBias = false, headNorm = false, fullNorm = false, sinks = false;
  double clip = 0.0;
  if (gptOss) {
    // gpt-oss: biases on all four projections by default, one learned sink logit per head.
    qkvBias = outBias = r.boolean("attention_bias", true);
    sinks = true;
  } else if (r.family == "qwen2_moe") {
    qkvBias = r.boolean("qkv_bias", true);
  } else if (r.family == "glm4_moe") {
    // GLM-4.5: q/k/v biases, o_proj without one, per-head q/k norms when use_qk_norm.
    qkvBias = r.boolean("attention_bias", false);
    headNorm = r.boolean("use_qk_norm", false);
  } else if (r.family == "solar_open") {
    // Solar-Open: Llama's attention, q/k/v biases when attention_bias, o_proj never biased.
    qkvBias = r.boolean("attention_bias", false);
  } else if (r.family == "minimax_m2") {
    // MiniMax-M2: q/k norms over the whole projections (as OLMoE's), no biases; transformers
    // ignores the hub config's switches for other choices, which are refused.
    fullNorm = true;
    if (!r.boolean("use_qk_norm", true) || r.string("qk_norm_type", "per_layer") != "per_layer" ||
        r.boolean("attention_bias", false))
      r.fail("fields 'use_qk_norm', 'qk_norm_type' and 'attention_bias' must be true, "
             "'per_layer' and false for minimax_m2 (transformers ignores them)");
    if (const llvm::json::Value *types = r.config.get("attn_type_list");
        types && types->kind() != llvm::json::Value::Null)
      for (int64_t t : r.integers("attn_type_list"))
        if (t != 1) {
          r.fail("field 'attn_type_list' asks for linear attention layers, which minimax_m2 "
                 "in transformers does not have");
          break;
        }
  } else if (r.family == "ernie4_5_moe") {
    // ERNIE-4.5: no q/k norms, RoPE on adjacent pairs (2i, 2i+1); use_bias (biases on every
    // projection, the lm head included) is refused.
    interleaved = true;
    if (r.boolean("use_bias", false))
      r.fail("field 'use_bias' = true is not supported for ernie4_5_moe");
  } else if (r.family == "dots1") {
    // dots.llm1: Qwen3's per-head q/k norms, attention_bias on all four projections.
    qkvBias = outBias = r.boolean("attention_bias", false);
    headNorm = true;
  } else if (r.family == "qwen3_moe" || r.family == "olmoe" || mla) {
    // DeepSeek's: q_a_proj, kv_a_proj_with_mqa and o_proj.
    qkvBias = outBias = r.boolean("attention_bias", false);
    headNorm = r.family == "qwen3_moe";
    fullNorm = r.family == "olmoe";
    if (r.family == "olmoe") {
      clip = r.number("clip_qkv", 0.0);
      if (!(clip >= 0.0 && std::isfinite(clip)))
        r.fail("field 'clip_qkv' must be a finite number > 0 or null");
    }
  }
  // Partial rotary: Glm4MoeConfig fills 0.5 where the key is absent (a null one is whole
  // heads); MiniMaxM2Config derives it from rotary_dim. SolarOpen's rotary embedding reads one
  // from rope_parameters but its attention rotates whole heads (transformers fails on any other
  // value), so it is refused there as for the other whole-head families.
  double defaultPartial = 1.0;
  if (r.family == "glm4_moe" && !r.config.get("partial_rotary_factor"))
    defaultPartial = 0.5;
  if (r.family == "minimax_m2" && !r.config.get("partial_rotary_factor")) {
    const llvm::json::Value *v = r.config.get("rotary_dim");
    if (v && v->kind() != llvm::json::Value::Null && headDim > 0)
      defaultPartial = static_cast<double>(r.positive("rotary_dim", std::nullopt, kMaxCount)) /
                       static_cast<double>(headDim);
  }
  std::optional<Rope> rope =
      ropeOf(r, mla ? ropeDim : headDim, r.family == "glm4_moe" || r.family == "minimax_m2",
             defaultPartial,
             r.family == "minimax_m2"     ? 5e6
             : r.family == "solar_open"   ? 1e6
             : r.family == "ernie4_5_moe" ? 5e5
             : gptOss                     ? 150000.0
                                          : 10000.0);
  double softmaxScale = 1.0 / std::sqrt(static_cast<double>(headDim));
  if (rope && mla && rope->type != "default" && rope->mscaleAllDim != 0.0) {
    // DeepSeek's yarn correction of the softmax scale: mscale(factor, mscale_all_dim)².
    double m = rope->factor <= 1.0 ? 1.0 : 0.1 * rope->mscaleAllDim * std::log(rope->factor) + 1.0;
    softmaxScale *= m * m;
  }
  std::vector<int64_t> sparse = sparseLayers(r);
  // Sliding windows: Mixtral's applies to every layer; Qwen2-MoE's and dots.llm1's to the
  // layers their layer_types (else each family's rule) mark.
  std::vector<int64_t> windows(layerCount, 0);
  // Sets `window` on the layers layer_types marks sliding; false when the config has none.
  auto layerTypes = [&](int64_t window) {
    const llvm::json::Value *types = r.config.get("layer_types");
    if (!types || types->kind() == llvm::json::Value::Null)
      return false;
    const llvm::json::Array *list = types->getAsArray();
    if (!list || static_cast<int64_t>(list->size()) != layerCount) {
      r.fail("field 'layer_types' must list one type per layer");
      return true;
    }
    for (auto [i, t] : llvm::enumerate(*list)) {
      std::optional<StringRef> text = t.getAsString();
      if (!text || (*text != "full_attention" && *text != "sliding_attention"))
        r.fail("field 'layer_types' must hold 'full_attention' or 'sliding_attention'");
      else if (*text == "sliding_attention")
        windows[i] = window;
    }
    return true;
  };
  if (r.family == "mixtral") {
    int64_t window = r.nonNegative("sliding_window", 0, int64_t(1) << 24);
    std::fill(windows.begin(), windows.end(), window);
  } else if (gptOss) {
    // GptOssConfig: without layer_types, even layers slide (window 128 unless set) and odd
    // ones attend to everything.
    const llvm::json::Value *w = r.config.get("sliding_window");
    int64_t window = w && w->kind() == llvm::json::Value::Null
                         ? 0
                         : r.nonNegative("sliding_window", 128, int64_t(1) << 24);
    if (!layerTypes(window))
      for (int64_t i = 0; i < layerCount; i += 2)
        windows[i] = window;
  } else if (r.family == "dots1") {
    // Dots1Config: without layer_types, the layers from max_window_layers on slide when
    // sliding_window is set (use_sliding_window is not read).
    const llvm::json::Value *w = r.config.get("sliding_window");
    int64_t window = w && w->kind() == llvm::json::Value::Null
                         ? 0
                         : r.nonNegative("sliding_window", 4096, int64_t(1) << 24);
    if (!layerTypes(window)) {
      int64_t maxWindowLayers = r.nonNegative("max_window_layers", 62, kMaxCount);
      for (int64_t i = maxWindowLayers; i < layerCount; ++i)
        windows[i] = window;
    }
  } else if (r.family == "qwen2_moe" || r.family == "qwen3_moe") {
    bool use = r.boolean("use_sliding_window", false);
    if (use && r.family == "qwen3_moe")
      r.fail("field 'use_sliding_window' = true is not supported for qwen3_moe by --model");
    int64_t window = use ? r.nonNegative("sliding_window", 0, int64_t(1) << 24) : 0;
    if (!layerTypes(window) && use) {
      int64_t maxWindowLayers = r.nonNegative("max_window_layers", layerCount, kMaxCount);
      for (int64_t i = 0; i < layerCount; ++i)
        if ((i + 1) % 2 && i < maxWindowLayers)
          windows[i] = window;
    }
  }
  std::optional<Activation> activation = r.activation("hidden_act", "silu");
  int64_t denseWidth = sparse.size() < static_cast<size_t>(layerCount)
                           ? r.positive("intermediate_size")
                           : 0;
  // End-of-sequence ids (an int or a list) and the pad id generation fills with.
  std::vector<int64_t> eos;
  if (const llvm::json::Value *v = r.config.get("eos_token_id")) {
    if (std::optional<int64_t> id = v->getAsInteger())
      eos.push_back(*id);
    else if (v->kind() != llvm::json::Value::Null)
      eos = r.integers("eos_token_id");
  }
  std::optional<int64_t> pad = r.integer("pad_token_id", -1);
  if (!r.ok()) {
    error = r.error;
    return nullptr;
  }
  // An end-of-sequence id outside the vocabulary (tiny test configs keep the big model's)
  // can never be generated: it is kept, and simply never matches.
  // ---- one function per layer kind --------------------------------------------------------
  OpBuilder builder(context);
  Location loc = FileLineColLoc::get(b.getStringAttr(configPath), 1, 1);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  if (*quantization)
    (*module)->setAttr(MixDialect::kWeightQuantizationAttr, *quantization);
  builder.setInsertionPointToEnd(module->getBody());
  int64_t qWidth = heads * headDim, kvWidth = kvHeads * headDim;
  int64_t outWidth = heads * (mla ? valueDim : headDim);  // the attention's output, o_proj's input
  auto tensor = [](ArrayRef<int64_t> shape, Type type) {
    return RankedTensorType::get(shape, type);
  };
  const int64_t dyn = ShapedType::kDynamic;
  Type activations = tensor({dyn, hidden}, f32);
  Type indices = tensor({dyn}, i32);
  Type cacheType = mla ? tensor({dyn, dyn, 1, kvRank + ropeDim}, weightType)
                       : tensor({dyn, dyn, kvHeads, headDim}, weightType);
  Type valueCacheType = tensor({dyn, dyn, kvHeads, headDim}, weightType);
  // Each layer's state: MLA's one cache of latents, else the keys and the values.
  SmallVector<Type> cacheTypes = mla ? SmallVector<Type>{cacheType}
                                     : SmallVector<Type>{cacheType, valueCacheType};
  SmallVector<const char *> cacheNames = mla ? SmallVector<const char *>{"kv"}
                                             : SmallVector<const char *>{"k", "v"};
  const unsigned caches = cacheTypes.size();

  auto layerWeights = [&](int64_t layer, std::vector<Argument> &out,
                          std::optional<SparseBlock> &block) -> bool {
    std::string p = llvm::formatv("model.layers.{0}.", layer).str();
    std::string a = p + "self_attn.";
    out.push_back({p + "input_layernorm.weight", {hidden}, weightType});
    if (mla) {
      if (qRank > 0) {
        out.push_back({a + "q_a_proj.weight", {qRank, hidden}, weightType});
        if (qkvBias)
          out.push_back({a + "q_a_proj.bias", {qRank}, weightType});
        out.push_back({a + "q_a_layernorm.weight", {qRank}, weightType});
        out.push_back({a + "q_b_proj.weight", {qWidth, qRank}, weightType});
      } else {
        out.push_back({a + "q_proj.weight", {qWidth, hidden}, weightType});
      }
      out.push_back({a + "kv_a_proj_with_mqa.weight", {kvRank + ropeDim, hidden}, weightType});
      if (qkvBias)
        out.push_back({a + "kv_a_proj_with_mqa.bias", {kvRank + ropeDim}, weightType});
      out.push_back({a + "kv_a_layernorm.weight", {kvRank}, weightType});
      out.push_back({a + "kv_b_proj.weight", {heads * (nopeDim + valueDim), kvRank}, weightType});
    } else {
      for (auto [proj, rows] : {std::pair<const char *, int64_t>{"q_proj", qWidth},
                                {"k_proj", kvWidth},
                                {"v_proj", kvWidth}}) {
        out.push_back({a + proj + ".weight", {rows, hidden}, weightType});
        if (qkvBias)
          out.push_back({a + proj + ".bias", {rows}, weightType});
      }
    }
    out.push_back({a + "o_proj.weight", {hidden, outWidth}, weightType});
    if (outBias)
      out.push_back({a + "o_proj.bias", {hidden}, weightType});
    if (sinks)  // read as f32 (widened once when bound)
      out.push_back({a + "sinks", {heads}, f32});
    if (headNorm || fullNorm) {
      out.push_back({a + "q_norm.weight", {headNorm ? headDim : qWidth}, weightType});
      out.push_back({a + "k_norm.weight", {headNorm ? headDim : kvWidth}, weightType});
    }
    out.push_back({p + "post_attention_layernorm.weight", {hidden}, weightType});
    if (llvm::is_contained(sparse, layer)) {
      block.emplace();
      block->fp8Block = fp8ExpertBlock(*quantization, weightType, false, r.family, fp8InPlace);
      block->mxfp4 = mxfp4Experts(r.config);
      block->mxfp4InPlace = block->mxfp4 && fp8InPlace && weightType.isBF16();
      if (!block->describe(r, layer, weightType, b))
        return false;
      out.insert(out.end(), block->weights.begin(), block->weights.end());
    } else {
      block.reset();
      for (const char *proj : {"gate_proj", "up_proj", "down_proj"})
        out.push_back({p + "mlp." + proj + ".weight",
                       StringRef(proj) == "down_proj" ? SmallVector<int64_t>{hidden, denseWidth}
                                                      : SmallVector<int64_t>{denseWidth, hidden},
                       weightType});
    }
    return true;
  };

  std::map<LayerKind, func::FuncOp> functions;
  std::vector<std::vector<Argument>> perLayer(layerCount);
  std::vector<LayerKind> kinds(layerCount);
  for (int64_t layer = 0; layer < layerCount; ++layer) {
    std::optional<SparseBlock> block;
    if (!layerWeights(layer, perLayer[layer], block)) {
      error = r.error;
      return nullptr;
    }
    LayerKind kind{block.has_value(), windows[layer], layer == layerCount - 1};
    kinds[layer] = kind;
    if (functions.count(kind))
      continue;
    // x, positions, sequences, (the last layer: the logit rows,) the caches, then this layer's
    // weights.
    const unsigned cacheBase = kind.last ? 4 : 3, prefix = cacheBase + caches;
    SmallVector<Type> inputs = {activations, indices, indices};
    if (kind.last)
      inputs.push_back(indices);
    inputs.append(cacheTypes.begin(), cacheTypes.end());
    for (const Argument &arg : perLayer[layer])
      inputs.push_back(tensor(arg.shape, arg.type));
    auto func = func::FuncOp::create(builder, loc, kind.functionName(),
                                     builder.getFunctionType(inputs, {activations}));
    const char *names[] = {"hidden_states", "positions", "sequences", "logit_rows"};
    for (unsigned i = 0; i < cacheBase; ++i)
      func.setArgAttr(i, MixDialect::kNameAttr, builder.getStringAttr(names[i]));
    for (unsigned i = 1; i < cacheBase; ++i)
      func.setArgAttr(i, MixDialect::kSymbolsAttr, builder.getStrArrayAttr({i == 3 ? "R" : "T"}));
    for (unsigned i = cacheBase; i < prefix; ++i) {
      func.setArgAttr(i, MixDialect::kNameAttr,
                      builder.getStringAttr(std::string(cacheNames[i - cacheBase]) + "_cache"));
      func.setArgAttr(i, MixDialect::kStateAttr, builder.getUnitAttr());
      func.setArgAttr(i, MixDialect::kSymbolsAttr, builder.getStrArrayAttr({"B", "S", "", ""}));
    }
    for (auto [i, arg] : llvm::enumerate(perLayer[layer]))
      nameArgument(func, prefix + i, arg);
    func.setResultAttr(0, MixDialect::kNameAttr, builder.getStringAttr("hidden_states_out"));
    Block *entry = func.addEntryBlock();
    OpBuilder::InsertionGuard guard(builder);
    builder.setInsertionPointToEnd(entry);
    ValueRange w = entry->getArguments().drop_front(prefix);
    size_t at = 0;
    auto next = [&]() -> Value { return w[at++]; };
    Value x = entry->getArgument(0);
    auto norm = [&](Value v, Value weight) -> Value {
      return RMSNormOp::create(builder, loc, v.getType(), v, weight,
                               builder.getF64FloatAttr(epsilon));
    };
    auto linear = [&](Value v, Value weight, Value bias, int64_t rows) -> Value {
      return LinearOp::create(builder, loc, tensor({dyn, rows}, f32), v, weight, bias);
    };
    Value h = norm(x, next());
    Value q, k, v, ropeKey, latent, kvb;
    auto slice = [&](Value t, int64_t offset, int64_t count) -> Value {
      SmallVector<int64_t> shape(cast<RankedTensorType>(t.getType()).getShape());
      shape.back() = count;
      return SliceOp::create(builder, loc, tensor(shape, f32), t,
                             builder.getI64IntegerAttr(offset));
    };
    // The latent norms of MLA are built without the config's eps: always 1e-6.
    auto latentNorm = [&](Value v, Value weight) -> Value {
      return RMSNormOp::create(builder, loc, v.getType(), v, weight,
                               builder.getF64FloatAttr(1e-6));
    };
    if (mla) {
      if (qRank > 0) {
        Value qa = next();
        Value qab = qkvBias ? next() : Value();
        Value qNorm = next(), qb = next();
        q = linear(latentNorm(linear(h, qa, qab, qRank), qNorm), qb, Value(), qWidth);
      } else {
        Value wq = next();
        q = linear(h, wq, Value(), qWidth);
      }
      Value kva = next();
      Value kvab = qkvBias ? next() : Value();
      Value kvNorm = next();
      kvb = next();
      Value compressed = linear(h, kva, kvab, kvRank + ropeDim);
      ropeKey = slice(compressed, kvRank, ropeDim);
      latent = latentNorm(slice(compressed, 0, kvRank), kvNorm);
    } else {
      for (auto [target, rows] : {std::pair<Value *, int64_t>{&q, qWidth}, {&k, kvWidth},
                                  {&v, kvWidth}}) {
        Value weight = next();
        *target = linear(h, weight, qkvBias ? next() : Value(), rows);
      }
    }
    Value wo = next();
    Value bo = outBias ? next() : Value();
    Value sinkLogits = sinks ? next() : Value();
    if (fullNorm) {
      Value qn = next(), kn = next();
      q = norm(q, qn);
      k = norm(k, kn);
    } else if (headNorm) {
      Value qn = next(), kn = next();
      // Per-head norms on the [T, heads, head_dim] view of the projections.
      auto perHead = [&](Value t, Value weight, int64_t count) -> Value {
        Value tokens = tensor::DimOp::create(builder, loc, t, 0);
        auto viewType = tensor({dyn, count, headDim}, f32);
        SmallVector<ReassociationIndices> groups = {{0}, {1, 2}};
        Value view = tensor::ExpandShapeOp::create(
            builder, loc, viewType, t, groups,
            SmallVector<OpFoldResult>{tokens, builder.getIndexAttr(count),
                                      builder.getIndexAttr(headDim)});
        Value normed = norm(view, weight);
        return tensor::CollapseShapeOp::create(builder, loc, t.getType(), normed, groups);
      };
      q = perHead(q, qn, heads);
      k = perHead(k, kn, kvHeads);
    }
    Value attended =
        mla ? (Value)LatentAttentionOp::create(
                  builder, loc, tensor({dyn, outWidth}, f32), q, latent, ropeKey, kvb,
                  entry->getArgument(1), entry->getArgument(2), entry->getArgument(cacheBase),
                  builder.getI64IntegerAttr(heads), builder.getI64IntegerAttr(nopeDim),
                  builder.getI64IntegerAttr(valueDim),
                  builder.getDenseF64ArrayAttr(rope->invFreq),
                  builder.getF64FloatAttr(rope->scale),
                  interleaved ? builder.getUnitAttr() : UnitAttr(),
                  builder.getF64FloatAttr(softmaxScale), builder.getI64IntegerAttr(kind.window))
            : (Value)AttentionOp::create(
                  builder, loc, tensor({dyn, outWidth}, f32), q, k, v, entry->getArgument(1),
                  entry->getArgument(2), entry->getArgument(cacheBase),
                  entry->getArgument(cacheBase + 1), Value(), sinkLogits,
                  builder.getI64IntegerAttr(heads), builder.getI64IntegerAttr(kvHeads),
                  builder.getI64IntegerAttr(headDim), builder.getDenseF64ArrayAttr(rope->invFreq),
                  builder.getF64FloatAttr(rope->scale),
                  interleaved ? builder.getUnitAttr() : UnitAttr(),
                  builder.getF64FloatAttr(softmaxScale), builder.getF64FloatAttr(clip),
                  builder.getI64IntegerAttr(kind.window), builder.getI64IntegerAttr(0),
                  builder.getI64IntegerAttr(0));
    if (kind.last) {  // from here on, only the logit rows
      Value rows = entry->getArgument(3);
      attended = GatherOp::create(builder, loc, attended.getType(), attended, rows);
      x = GatherOp::create(builder, loc, activations, x, rows);
    }
    Value o = linear(attended, wo, bo, hidden);
    Value x1 = arith::AddFOp::create(builder, loc, x, o);
    Value h2 = norm(x1, next());
    Value mlp;
    if (block) {
      mlp = block->build(builder, loc, h2, w.drop_front(at), activations);
    } else {
      Value gate = next(), up = next(), down = next();
      mlp = FFNOp::create(builder, loc, activations, h2, gate, up, down,
                          ActivationAttr::get(context, *activation));
    }
    Value x2 = arith::AddFOp::create(builder, loc, x1, mlp);
    func::ReturnOp::create(builder, loc, x2);
    functions[kind] = func;
  }

  // ---- forward: embedding, the layers, the final norm and the lm head ------------------------
  std::vector<Argument> args;
  std::string embedName = "model.embed_tokens.weight";
  args.push_back({embedName, {vocab, hidden}, weightType});
  for (const std::vector<Argument> &layer : perLayer)
    args.insert(args.end(), layer.begin(), layer.end());
  args.push_back({"model.norm.weight", {hidden}, weightType});
  if (!tied)
    args.push_back({"lm_head.weight", {vocab, hidden}, weightType});
  SmallVector<Type> inputs = {indices, indices, indices, indices};
  for (int64_t layer = 0; layer < layerCount; ++layer)
    inputs.append(cacheTypes.begin(), cacheTypes.end());
  for (const Argument &arg : args)
    inputs.push_back(tensor(arg.shape, arg.type));
  Type logitsType = tensor({dyn, vocab}, f32);
  auto forward = func::FuncOp::create(builder, loc, "forward",
                                      builder.getFunctionType(inputs, {logitsType}));
  // The argument attributes are set all at once: setArgAttr per argument interns a new array
  // of every argument's dictionary each time, quadratic in the argument count (a 2444-layer
  // config took 24 GB).
  SmallVector<NamedAttrList> argAttrs(inputs.size());
  const char *names[] = {"input_ids", "positions", "sequences", "logit_rows"};
  for (unsigned i = 0; i < 4; ++i) {
    argAttrs[i].set(MixDialect::kNameAttr, builder.getStringAttr(names[i]));
    argAttrs[i].set(MixDialect::kSymbolsAttr, builder.getStrArrayAttr({i == 3 ? "R" : "T"}));
  }
  unsigned argIndex = 4;
  for (int64_t layer = 0; layer < layerCount; ++layer)
    for (const char *which : cacheNames) {
      argAttrs[argIndex].set(MixDialect::kNameAttr,
                             builder.getStringAttr(llvm::formatv("cache.{0}.{1}", layer, which).str()));
      argAttrs[argIndex].set(MixDialect::kStateAttr, builder.getUnitAttr());
      argAttrs[argIndex].set(MixDialect::kSymbolsAttr, builder.getStrArrayAttr({"B", "S", "", ""}));
      ++argIndex;
    }
  for (const Argument &arg : args)
    nameArgument(argAttrs[argIndex++], builder.getContext(), arg);
  SmallVector<DictionaryAttr> argDicts;
  for (NamedAttrList &attrs : argAttrs)
    argDicts.push_back(attrs.getDictionary(builder.getContext()));
  forward.setAllArgAttrs(argDicts);
  forward.setResultAttr(0, MixDialect::kNameAttr, builder.getStringAttr("logits"));
  Block *entry = forward.addEntryBlock();
  builder.setInsertionPointToEnd(entry);
  unsigned weightBase = 4 + caches * layerCount;
  Value embed = entry->getArgument(weightBase);
  Value x = GatherOp::create(builder, loc, activations, embed, entry->getArgument(0));
  unsigned at = weightBase + 1;
  for (int64_t layer = 0; layer < layerCount; ++layer) {
    SmallVector<Value> operands = {x, entry->getArgument(1), entry->getArgument(2)};
    if (kinds[layer].last)
      operands.push_back(entry->getArgument(3));
    for (unsigned c = 0; c < caches; ++c)
      operands.push_back(entry->getArgument(4 + caches * layer + c));
    for (size_t i = 0; i < perLayer[layer].size(); ++i)
      operands.push_back(entry->getArgument(at++));
    x = func::CallOp::create(builder, loc, functions[kinds[layer]], operands).getResult(0);
  }
  Value finalNorm = entry->getArgument(at++);
  Value head = tied ? embed : entry->getArgument(at++);
  // The last layer returned the logit rows only.
  Value normed = RMSNormOp::create(builder, loc, activations, x, finalNorm,
                                   builder.getF64FloatAttr(epsilon));
  Value logits = LinearOp::create(builder, loc, logitsType, normed, head, Value());
  func::ReturnOp::create(builder, loc, logits);

  // What the runtime needs to run the model: the entry point, the vocabulary, when to stop.
  SmallVector<Attribute> eosAttrs;
  for (int64_t id : eos)
    eosAttrs.push_back(b.getI64IntegerAttr(id));
  SmallVector<NamedAttribute> model = {
      b.getNamedAttr("entry", b.getStringAttr("forward")),
      b.getNamedAttr("family", b.getStringAttr(r.family)),
      b.getNamedAttr("layers", b.getI64IntegerAttr(layerCount)),
      b.getNamedAttr("vocab_size", b.getI64IntegerAttr(vocab)),
      b.getNamedAttr("max_position_embeddings", b.getI64IntegerAttr(maxPositions)),
      b.getNamedAttr("eos_token_ids", b.getArrayAttr(eosAttrs)),
      b.getNamedAttr("pad_token_id",
                     b.getI64IntegerAttr(pad && *pad >= 0 && *pad < vocab ? *pad
                                         : eos.empty()                    ? 0
                                                                          : eos.front()))};
  (*module)->setAttr(MixDialect::kModelAttr, b.getDictionaryAttr(model));
  name = r.family + "_model";
  return module;
}
} // namespace

namespace {

/// An error message as one line of valid UTF-8: the config's own strings (a model_type, an
/// activation, a dtype ...) are quoted in messages, and may hold control characters or bytes
/// that are not UTF-8. Those become \xNN; valid multi-byte characters stay.
std::string oneLine(const std::string &text) {
  std::string out;
  const auto *s = reinterpret_cast<const unsigned char *>(text.data());
  size_t n = text.size();
  auto hex = [&](unsigned char c) {
    static const char digits[] = "0123456789abcdef";
    out += "\\x";
    out += digits[c >> 4];
    out += digits[c & 15];
  };
  for (size_t i = 0; i < n;) {
    unsigned char c = s[i];
    if (c < 0x80) {
      if (c < 0x20 || c == 0x7f)
        hex(c);
      else
        out += static_cast<char>(c);
      ++i;
      continue;
    }
    size_t len = (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    unsigned cp = ok ? c & (0x7f >> len) : 0;
    for (size_t k = 1; ok && k < len; ++k) {
      ok = (s[i + k] & 0xc0) == 0x80;
      cp = (cp << 6) | (s[i + k] & 0x3f);
    }
    ok = ok && !((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                 (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff));
    if (!ok) {
      hex(c);
      ++i;
      continue;
    }
    out.append(text, i, len);
    i += len;
  }
  return out;
}

} // namespace

OwningOpRef<ModuleOp> mlir::mix::importHFConfig(MLIRContext *context, StringRef configPath,
                                                int layer, StringRef dtype, StringRef tokenDtype,
                                                std::string &name, std::string &error,
                                                bool fusedExperts, bool fp8InPlace) {
  OwningOpRef<ModuleOp> module = importLayer(context, configPath, layer, dtype, tokenDtype, name,
                                             error, fusedExperts, fp8InPlace);
  if (!module)
    error = oneLine(error);
  return module;
}

OwningOpRef<ModuleOp> mlir::mix::importHFModel(MLIRContext *context, StringRef configPath,
                                               StringRef dtype, std::string &name,
                                               std::string &error, bool fp8InPlace) {
  OwningOpRef<ModuleOp> module = importModel(context, configPath, dtype, name, error, fp8InPlace);
  if (!module)
    error = oneLine(error);
  return module;
}
