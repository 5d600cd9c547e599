// Builds the mix IR of a Hugging Face MoE config's sparse block (layers.md §2's table): the
// routing attributes of each family and the checkpoint's own tensor names. Refuses what it
// cannot honour, naming the field; never approximates.
#include "passes/import/HFConfig.h"

#include "dialect/MixOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"

#include <cmath>
#include <map>
#include <optional>

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
  if (r.family == "mixtral" || r.family == "olmoe") {
    for (int64_t i = 0; i < count; ++i)
      layers.push_back(i);
  } else if (r.family == "qwen2_moe" || r.family == "qwen3_moe") {
    int64_t step = r.positive("decoder_sparse_step", 1, kMaxCount);
    std::vector<int64_t> dense = r.integers("mlp_only_layers");
    int64_t experts = r.integer(r.expertCountKey()).value_or(0);
    for (int64_t i = 0; i < count; ++i)
      if (!llvm::is_contained(dense, i) && experts > 0 && (i + 1) % step == 0)
        layers.push_back(i);
  } else {
    int64_t first = r.nonNegative("first_k_dense_replace", 0, kMaxCount);
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
};

} // namespace

OwningOpRef<ModuleOp> mlir::mix::importHFConfig(MLIRContext *context, StringRef configPath,
                                                int layerArg, StringRef dtypeArg,
                                                StringRef tokenDtypeArg, std::string &name,
                                                std::string &error) {
  auto buffer = llvm::MemoryBuffer::getFile(configPath);
  if (!buffer) {
    error = "cannot read '" + configPath.str() + "': " + buffer.getError().message();
    return nullptr;
  }
  llvm::Expected<llvm::json::Value> parsed = llvm::json::parse((*buffer)->getBuffer());
  if (!parsed) {
    error = "'" + configPath.str() + "' is not valid JSON: " + llvm::toString(parsed.takeError());
    return nullptr;
  }
  const llvm::json::Object *object = parsed->getAsObject();
  if (!object) {
    error = "'" + configPath.str() + "' must hold a JSON object";
    return nullptr;
  }
  ConfigReader r{*object, "", ""};
  r.family = r.string("model_type", "");
  static const char *families[] = {"mixtral",     "qwen2_moe",   "qwen3_moe",
                                   "olmoe",       "deepseek_v2", "deepseek_v3",
                                   "switch_transformers"};
  if (!llvm::is_contained(families, r.family)) {
    error = "config.json: field 'model_type' = '" + r.family +
            "' is not a supported MoE family (mixtral, qwen2_moe, qwen3_moe, olmoe, "
            "deepseek_v2, deepseek_v3, switch_transformers)";
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
    if (dtype.empty() && r.ok()) {
      error = llvm::formatv("field '{0}' = '{1}' is not supported (expected float32, bfloat16 "
                            "or float16; or give --dtype)",
                            field, llvm::StringRef(torchDtype).take_front(64))
                  .str();
      return nullptr;
    }
  }
  Builder b(context);
  auto floatType = [&](StringRef name) {
    return name == "bf16"  ? Type(b.getBF16Type())
           : name == "f16" ? Type(b.getF16Type())
                           : Type(b.getF32Type());
  };
  Type weightType = floatType(dtype);
  // A bf16 model's hidden states are bf16: the block takes and returns the model's dtype.
  Type tokenType = tokenDtypeArg.empty() ? weightType : floatType(tokenDtypeArg);

  // ---- the family's routing and the checkpoint's tensor names -------------------------------
  int64_t hidden = 0, experts = 0, width = 0, k = 1, sharedWidth = 0, nGroup = 1, topkGroup = 1;
  std::optional<int64_t> capacity;
  bool normalize = false, sigmoid = false, top2Sum = false, gated = true, routerBias = false;
  bool sharedExpertGate = false, selectionBias = false;
  double scale = 1.0, epsilon = 0.0;
  std::optional<Activation> activation;
  std::string prefix, router, routerBiasName, selectionBiasName;
  std::function<std::string(int64_t, StringRef)> expertName;
  std::string sharedPrefix;
  StringRef gateProj = "gate_proj", upProj = "up_proj", downProj = "down_proj";

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
    k = r.positive("num_experts_per_tok");
    activation = r.activation("hidden_act", "silu");
    prefix = llvm::formatv("model.layers.{0}.mlp.", layer).str();
    if (r.family == "mixtral") {
      experts = r.positive("num_local_experts", std::nullopt, kMaxCount);
      width = r.positive("intermediate_size");
      normalize = true;
      prefix = llvm::formatv("model.layers.{0}.block_sparse_moe.", layer).str();
      gateProj = "w1";
      upProj = "w3";
      downProj = "w2";
    } else if (r.family == "olmoe" || r.family == "qwen2_moe" || r.family == "qwen3_moe") {
      experts = r.positive(r.expertCountKey(), std::nullopt, kMaxCount);
      width = r.positive(r.family == "olmoe" ? "intermediate_size" : "moe_intermediate_size");
      normalize = r.boolean("norm_topk_prob", false);
      if (r.family == "qwen2_moe") {
        sharedWidth = r.nonNegative("shared_expert_intermediate_size", 0);
        sharedExpertGate = sharedWidth > 0;
        sharedPrefix = prefix + "shared_expert.";
      }
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
    router = prefix + "gate.weight";
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
  if (!r.ok()) {
    error = r.error;
    return nullptr;
  }

  // ---- the function -----------------------------------------------------------------------
  Type f32 = b.getF32Type();
  std::vector<Argument> args;
  args.push_back({"hidden_states", {ShapedType::kDynamic, hidden}, tokenType});
  args.push_back({router, {experts, hidden}, weightType});
  if (routerBias)
    args.push_back({routerBiasName, {experts}, weightType});
  // DeepSeek-V3 keeps e_score_correction_bias in f32 in its checkpoints, whatever the weights.
  if (selectionBias)
    args.push_back({selectionBiasName, {experts}, f32});
  size_t firstExpert = args.size();
  for (StringRef role : {"gate", "up", "down"}) {
    if (role == "gate" && !gated)
      continue;
    for (int64_t e = 0; e < experts; ++e)
      args.push_back({expertName(e, role),
                      role == "down" ? SmallVector<int64_t>{hidden, width}
                                     : SmallVector<int64_t>{width, hidden},
                      weightType});
  }
  size_t firstShared = args.size();
  if (sharedWidth > 0) {
    args.push_back({sharedPrefix + "gate_proj.weight", {sharedWidth, hidden}, weightType});
    args.push_back({sharedPrefix + "up_proj.weight", {sharedWidth, hidden}, weightType});
    args.push_back({sharedPrefix + "down_proj.weight", {hidden, sharedWidth}, weightType});
    if (sharedExpertGate)
      args.push_back({prefix + "shared_expert_gate.weight", {1, hidden}, weightType});
  }

  OpBuilder builder(context);
  Location loc = FileLineColLoc::get(b.getStringAttr(configPath), 1, 1);
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module->getBody());
  SmallVector<Type> inputTypes;
  for (const Argument &arg : args)
    inputTypes.push_back(RankedTensorType::get(arg.shape, arg.type));
  Type outputType = RankedTensorType::get({ShapedType::kDynamic, hidden}, tokenType);
  auto func = func::FuncOp::create(builder, loc, "sparse_block",
                                   builder.getFunctionType(inputTypes, {outputType}));
  for (auto [i, arg] : llvm::enumerate(args))
    func.setArgAttr(i, MixDialect::kNameAttr, builder.getStringAttr(arg.name));
  func.setResultAttr(0, MixDialect::kNameAttr, builder.getStringAttr("output"));
  Block *entry = func.addEntryBlock();
  builder.setInsertionPointToEnd(entry);

  auto argValue = [&](size_t i) -> Value { return entry->getArgument(i); };
  size_t index = 2;
  Value routerBiasValue = routerBias ? argValue(index++) : Value();
  Value selectionBiasValue = selectionBias ? argValue(index++) : Value();
  SmallVector<Value> gate, up, down;
  size_t at = firstExpert;
  if (gated)
    for (int64_t e = 0; e < experts; ++e)
      gate.push_back(argValue(at++));
  for (int64_t e = 0; e < experts; ++e)
    up.push_back(argValue(at++));
  for (int64_t e = 0; e < experts; ++e)
    down.push_back(argValue(at++));
  Value sharedGate, sharedUp, sharedDown, sharedGateWeight;
  if (sharedWidth > 0) {
    sharedGate = argValue(firstShared);
    sharedUp = argValue(firstShared + 1);
    sharedDown = argValue(firstShared + 2);
    if (sharedExpertGate)
      sharedGateWeight = argValue(firstShared + 3);
  }
  auto layerOp = TokenChoiceMoEOp::create(
      builder, loc, outputType, Type(), Type(), Type(), argValue(0), argValue(1), routerBiasValue,
      selectionBiasValue, gate, up, down, sharedGate, sharedUp, sharedDown, sharedGateWeight,
      builder.getI64IntegerAttr(k),
      ScoringAttr::get(context, sigmoid ? Scoring::sigmoid : Scoring::softmax),
      normalize ? builder.getUnitAttr() : UnitAttr(), builder.getF64FloatAttr(epsilon),
      builder.getF64FloatAttr(scale), builder.getI64IntegerAttr(nGroup),
      builder.getI64IntegerAttr(topkGroup),
      GroupScoreAttr::get(context, top2Sum ? GroupScore::top2_sum : GroupScore::max),
      capacity ? builder.getI64IntegerAttr(*capacity) : IntegerAttr(), FloatAttr(),
      ActivationAttr::get(context, *activation));
  func::ReturnOp::create(builder, loc, layerOp.getOutput());
  name = llvm::formatv("{0}_layer{1}", r.family, layer).str();
  return module;
}
