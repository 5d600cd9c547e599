// The target-independent half of emitting an artifact (see FunctionEmitter.h).
#include "codegen/FunctionEmitter.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cmath>
#include <map>
#include <set>

using namespace mlir;
using namespace mlir::mix;
using namespace mlir::mix::codegen;

const char *const mlir::mix::codegen::kMixtileVersion = "0.1.0";

std::string mlir::mix::codegen::product(ArrayRef<std::string> dims) {
  if (dims.empty())
    return "1";
  std::string text;
  for (const std::string &d : dims)
    text += (text.empty() ? "" : " * ") + ("(int64_t)(" + d + ")");
  return text;
}

std::string mlir::mix::codegen::frequencyList(ArrayRef<double> frequencies) {
  std::string list;
  for (double f : frequencies)
    list += (list.empty() ? "" : ", ") + llvm::formatv("{0:e16}", f).str();
  return list;
}

std::string mlir::mix::codegen::floatLiteral(double value) {
  if (std::isinf(value))
    return value > 0 ? "INFINITY" : "-INFINITY";
  return llvm::formatv("{0:e}", value).str();
}

int64_t mlir::mix::codegen::staticDim(Value v, unsigned i) {
  return cast<RankedTensorType>(v.getType()).getDimSize(i);
}

Type mlir::mix::codegen::elementOf(Value v) {
  return cast<RankedTensorType>(v.getType()).getElementType();
}

Operation *FunctionEmitter::innerDefiningOp(Value v) {
  Operation *def = v.getDefiningOp();
  if (auto kernel = dyn_cast_or_null<KernelOp>(def)) {
    auto yield = cast<YieldOp>(kernel.getBody().front().getTerminator());
    return yield.getValues()[cast<OpResult>(v).getResultNumber()].getDefiningOp();
  }
  return def;
}

double FunctionEmitter::routedPerToken(ExpertFFNOp ffn) {
  Operation *def = innerDefiningOp(ffn.getTokens());
  if (auto dispatch = dyn_cast_or_null<DispatchOp>(def)) {
    costExpertsPerToken = staticDim(dispatch.getExperts(), 1);
    return static_cast<double>(costExpertsPerToken);
  }
  if (auto choice = dyn_cast_or_null<ExpertChoiceOp>(def)) {
    costExpertsPerToken = staticDim(choice.getRouter(), 0);
    return choice.getCapacityFactor().convertToDouble();
  }
  costExpertsPerToken = costExperts;
  return 1.0;
}

std::vector<std::string> FunctionEmitter::dimsOf(Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  std::vector<std::string> dims;
  auto fallback = [&](unsigned i) -> std::string {
    int64_t d = type.getDimSize(i);
    return ShapedType::isDynamic(d) ? std::string() : std::to_string(d);
  };
  for (unsigned i = 0; i < type.getRank(); ++i)
    dims.push_back(fallback(i));
  Operation *def = v.getDefiningOp();
  auto setDynamic = [&](unsigned i, std::string expr) {
    if (dims[i].empty())
      dims[i] = std::move(expr);
  };
  if (auto kernel = dyn_cast_or_null<KernelOp>(def)) {
    auto yield = cast<YieldOp>(kernel.getBody().front().getTerminator());
    Value inner = yield.getValues()[cast<OpResult>(v).getResultNumber()];
    return dimsOf(inner);
  }
  if (auto route = dyn_cast_or_null<RouteOp>(def))
    setDynamic(0, dim(route.getX(), 0));
  else if (auto capacity = dyn_cast_or_null<CapacityOp>(def))
    setDynamic(0, dim(capacity.getExperts(), 0));
  else if (auto dispatch = dyn_cast_or_null<DispatchOp>(def))
    setDynamic(0, dim(dispatch.getExperts(), 0) + " * " + dim(dispatch.getExperts(), 1));
  else if (auto choice = dyn_cast_or_null<ExpertChoiceOp>(def)) {
    std::string t = dim(choice.getX(), 0);
    int64_t experts = staticDim(choice.getRouter(), 0);
    setDynamic(0, cast<OpResult>(v).getResultNumber() == 3
                      ? t
                      : llvm::formatv("{0} * {4}::expert_choice_capacity({1}, {2}, {3})",
                                      experts, t, experts,
                                      floatLiteral(choice.getCapacityFactor().convertToDouble()),
                                      conventions.kernelNamespace)
                            .str());
  } else if (auto ffn = dyn_cast_or_null<ExpertFFNOp>(def))
    setDynamic(0, dim(ffn.getTokens(), 0));
  else if (auto combine = dyn_cast_or_null<CombineOp>(def))
    return {dim(combine.getInit(), 0), dim(combine.getInit(), 1)};
  else if (auto gather = dyn_cast_or_null<GatherOp>(def))
    setDynamic(0, dim(gather.getIndices(), 0));
  else if (auto attention = dyn_cast_or_null<AttentionOp>(def))
    setDynamic(0, dim(attention.getQ(), 0));
  else if (auto latent = dyn_cast_or_null<LatentAttentionOp>(def))
    setDynamic(0, dim(latent.getQ(), 0));
  else if (isa_and_nonnull<arith::ExtFOp, arith::TruncFOp, arith::AddFOp, RMSNormOp, SliceOp>(def)) {
    for (unsigned i = 0; i < dims.size(); ++i)
      setDynamic(i, dim(def->getOperand(0), i));
  } else if (isa_and_nonnull<ZerosLikeOp, FFNOp, SigmoidGateOp, LinearOp, SoftRouteOp>(def))
    setDynamic(0, dim(def->getOperand(0), 0));
  else if (auto vectors = dyn_cast_or_null<MixVectorsOp>(def))
    setDynamic(0, dim(vectors.getH(), 0));
  else if (auto lora = dyn_cast_or_null<MixLoRAOp>(def))
    setDynamic(0, dim(lora.getX(), 0));
  else if (auto mix = dyn_cast_or_null<TokenMixOp>(def)) {
    std::string b = dim(mix.getX(), 0), s = dim(mix.getX(), 1);
    if (cast<OpResult>(v).getResultNumber() == 0)
      setDynamic(1, llvm::formatv("({0}) / {1} * ({2})", b, mix.getGroupSize(), s).str());
    else {
      setDynamic(0, b);
      setDynamic(1, s);
    }
  } else if (auto batched = dyn_cast_or_null<BatchedExpertFFNOp>(def))
    setDynamic(1, dim(batched.getZ(), 1));
  else if (auto emit = dyn_cast_or_null<TokenEmitOp>(def)) {
    setDynamic(0, dim(emit.getEmitWeights(), 0));
    setDynamic(1, dim(emit.getEmitWeights(), 1));
  } else if (auto collapse = dyn_cast_or_null<tensor::CollapseShapeOp>(def)) {
    std::vector<std::string> source;
    for (unsigned i = 0; i < collapse.getSrcType().getRank(); ++i)
      source.push_back(dim(collapse.getSrc(), i));
    for (auto [i, group] : llvm::enumerate(collapse.getReassociationIndices())) {
      std::vector<std::string> parts;
      for (int64_t d : group)
        parts.push_back(source[d]);
      setDynamic(i, product(parts));
    }
  } else if (auto expand = dyn_cast_or_null<tensor::ExpandShapeOp>(def)) {
    for (auto [i, size] : llvm::enumerate(expand.getMixedOutputShape())) {
      if (auto attr = dyn_cast<Attribute>(size))
        setDynamic(i, std::to_string(cast<IntegerAttr>(attr).getInt()));
      else
        setDynamic(i, scalars.lookup(cast<Value>(size)));
    }
  }
  return dims;
}

std::string FunctionEmitter::weightType(Type element) const {
  const char *name = element.isF32()                 ? "f32"
                     : element.isBF16()                ? "bf16"
                     : isa<Float8E4M3FNType>(element) ? "fp8_e4m3"
                     : isa<Float4E2M1FNType>(element) ? "mxfp4"
                                                       : "f16";
  return conventions.kernelNamespace + "::WeightType::" + name;
}

std::string FunctionEmitter::activationName(Activation activation) const {
  return conventions.kernelNamespace + "::Activation::" + stringifyActivation(activation).str();
}

void FunctionEmitter::emitExpertExtras(ExpertFFNOp ffn, Activation activation) {
  if (!ffn)
    return;
  for (auto [field, bias] : {std::pair<const char *, Value>{"gate_bias", ffn.getGateBias()},
                             {"up_bias", ffn.getUpBias()},
                             {"down_bias", ffn.getDownBias()}})
    if (bias)
      line(llvm::formatv("p.{0} = {1};", field, ptr(bias)).str());
  if (activation == Activation::swiglu_oai)
    line(llvm::formatv("p.act.alpha = {0}f; p.act.limit = {1}f;",
                       floatLiteral(ffn.getSwigluAlpha().convertToDouble()),
                       floatLiteral(ffn.getSwigluLimit().convertToDouble()))
             .str());
}

void FunctionEmitter::copyTensor(Value to, Value from) {
  if (ptr(to) == ptr(from))
    return;
  auto type = cast<RankedTensorType>(from.getType());
  std::vector<std::string> dims;
  for (unsigned i = 0, e = type.getRank(); i < e; ++i)
    dims.push_back(dim(from, i));
  line(llvm::formatv(conventions.copyStatement.c_str(), ptr(to), ptr(from),
                     cTypeName(type.getElementType()), product(dims))
           .str());
}

void FunctionEmitter::checkBatchMultiple(const std::string &b, int64_t groupSize) {
  int code = addError(llvm::formatv("Mixture of Tokens: the batch size B must be a multiple of "
                                    "group_size = {0}",
                                    groupSize)
                          .str());
  line(llvm::formatv("if (({0}) % {1} != 0)\n      return {2};", b, groupSize, code).str());
}

bool FunctionEmitter::onlyFeeds(Value v, Operation *user) {
  Operation *def = v.getDefiningOp();
  return def && def->getBlock() == user->getBlock() && v.hasOneUse() &&
         *v.getUsers().begin() == user;
}

bool FunctionEmitter::planBuffers(Operation *op) {
  auto intoCombine = [&](Value v) {
    for (Operation *user : v.getUsers())
      if (auto combine = dyn_cast<CombineOp>(user); combine && onlyFeeds(v, combine))
        alias(v, combine.getY());
  };
  if (auto route = dyn_cast<RouteOp>(op)) {
    // A capacity drop fused after the router works in place on the router's choices.
    for (Operation *user : route.getExperts().getUsers())
      if (auto capacity = dyn_cast<CapacityOp>(user);
          capacity && capacity->getBlock() == op->getBlock())
        if (buffers.count(capacity.getKept()))
          alias(route.getExperts(), capacity.getKept());
  } else if (auto zeros = dyn_cast<ZerosLikeOp>(op)) {
    // The zeros a combine starts from are its own output buffer; when the combine is fused
    // with the expert FFN, the FFN zeroes the rows itself before its scatter.
    for (Operation *user : zeros->getUsers())
      if (auto combine = dyn_cast<CombineOp>(user); combine && onlyFeeds(zeros.getZeros(), user)) {
        alias(zeros.getZeros(), combine.getY());
        Operation *producer = combine.getH().getDefiningOp();
        return producer && isa<ExpertFFNOp>(producer) && onlyFeeds(combine.getH(), combine);
      }
  } else if (auto ffn = dyn_cast<FFNOp>(op)) {
    // A shared expert writes straight into the buffer the routed experts add to.
    Value y = ffn.getY();
    for (Operation *user : y.getUsers())
      if (auto gate = dyn_cast<SigmoidGateOp>(user); gate && onlyFeeds(y, gate))
        for (Operation *next : gate->getUsers())
          if (auto combine = dyn_cast<CombineOp>(next);
              combine && onlyFeeds(gate.getGated(), combine))
            alias(y, combine.getY());
    intoCombine(y);
  } else if (auto gate = dyn_cast<SigmoidGateOp>(op)) {
    intoCombine(gate.getGated());
  } else if (auto linear = dyn_cast<LinearOp>(op)) {
    Value y = linear.getY();
    for (Operation *user : y.getUsers())
      if (auto lora = dyn_cast<MixLoRAOp>(user); lora && onlyFeeds(y, lora))
        alias(y, lora.getY());
  }
  return false;
}

FunctionEmitter::ExpertOutput FunctionEmitter::expertOutput(ExpertFFNOp ffn) {
  ExpertOutput out;
  auto combine = dyn_cast<CombineOp>(*ffn->getUsers().begin());
  if (!combine || !onlyFeeds(ffn.getH(), combine)) {
    out.y = ptr(ffn.getH());
    return out;
  }
  Value init = combine.getInit();
  Operation *initDef = init.getDefiningOp();
  bool initInKernel = initDef && initDef->getBlock() == combine->getBlock();
  if (!initInKernel)
    copyTensor(combine.getY(), init);
  out.gates = ptr(combine.getGates());
  out.outRows = ptr(combine.getTokens());
  out.y = ptr(combine.getY());
  if (initInKernel && isa<ZerosLikeOp>(initDef))
    out.zeroRows = dim(combine.getY(), 0);
  alias(ffn.getH(), combine.getY());
  fusedCombines.insert(combine);
  return out;
}

std::string FunctionEmitter::rowCount(Value v) {
  std::vector<std::string> rows;
  for (unsigned d = 0; d + 1 < cast<RankedTensorType>(v.getType()).getRank(); ++d)
    rows.push_back(dim(v, d));
  return product(rows);
}

std::string FunctionEmitter::emitRouteConfig(RouteOp route) {
  int64_t experts = staticDim(route.getRouter(), 0), hidden = staticDim(route.getRouter(), 1);
  const std::string &ns = conventions.kernelNamespace;
  auto bias = [&](Value v) {
    return v ? llvm::formatv("{0}::ExpertVector{{{1}, {2}}", ns, ptr(v), weightType(elementOf(v)))
                   .str()
             : ns + "::ExpertVector{}";
  };
  line("// Router: logits, scores, selection, top-k (ties to the lower index).");
  line(llvm::formatv("{10}::RouteConfig config;\n    config.experts = {0}; "
                     "config.hidden = {1}; config.k = {2};\n    config.sigmoid = {3}; "
                     "config.normalize = {4}; config.norm_epsilon = {5}f; config.scale = "
                     "{6}f;\n    config.n_group = {7}; config.topk_group = {8}; "
                     "config.group_top2_sum = {9};",
                     experts, hidden, route.getK(),
                     route.getScoring() == Scoring::sigmoid ? "true" : "false",
                     route.getNormalize() ? "true" : "false",
                     floatLiteral(route.getNormEpsilon().convertToDouble()),
                     floatLiteral(route.getScale().convertToDouble()), route.getNGroup(),
                     route.getTopkGroup(),
                     route.getGroupScore() == GroupScore::top2_sum ? "true" : "false", ns)
           .str());
  return llvm::formatv("config, {0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}", dim(route.getX(), 0),
                       ptr(route.getX()), ptr(route.getRouter()), bias(route.getRouterBias()),
                       bias(route.getSelectionBias()), ptr(route.getWeights()),
                       ptr(route.getExperts()), ptr(route.getLogits()))
      .str();
}

bool FunctionEmitter::emitPortableOp(Operation *op) {
  if (isa<arith::ExtFOp, arith::TruncFOp>(op)) {
    // A bf16/f16 layer's tokens: widened at its entry, its output rounded once at its exit.
    Value in = op->getOperand(0), out = op->getResult(0);
    auto type = cast<RankedTensorType>(in.getType());
    std::vector<std::string> dims;
    for (unsigned i = 0, e = type.getRank(); i < e; ++i)
      dims.push_back(dim(in, i));
    bool widen = isa<arith::ExtFOp>(op);
    Type narrow = widen ? type.getElementType() : elementOf(out);
    if (!(widen ? elementOf(out) : type.getElementType()).isF32())
      return false;
    emitLibraryCall(std::string(widen ? "widen_tokens<" : "round_tokens<") + weightType(narrow) +
                        ">",
                    llvm::formatv("{0}, {1}, {2}", product(dims), ptr(in), ptr(out)).str());
    return true;
  }
  if (auto norm = dyn_cast<RMSNormOp>(op)) {
    // Over the last dim; every leading dim is a row (per-head norms use a [T, H, D] view).
    auto type = cast<RankedTensorType>(norm.getX().getType());
    emitLibraryCall("rms_norm_rows<" + weightType(elementOf(norm.getWeight())) + ">",
                    llvm::formatv("{0}, {1}, {2}f, {3}, {4}, {5}", rowCount(norm.getX()),
                                  type.getShape().back(),
                                  floatLiteral(norm.getEpsilon().convertToDouble()),
                                  ptr(norm.getX()), ptr(norm.getWeight()), ptr(norm.getY()))
                        .str());
    return true;
  }
  if (auto slice = dyn_cast<SliceOp>(op)) {
    // Columns [offset, offset + count) of every row of the last dim.
    auto type = cast<RankedTensorType>(slice.getX().getType());
    emitLibraryCall("copy_columns",
                    llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}", rowCount(slice.getX()),
                                  type.getShape().back(), slice.getOffset(),
                                  staticDim(slice.getY(), type.getRank() - 1), ptr(slice.getX()),
                                  ptr(slice.getY()))
                        .str());
    return true;
  }
  if (auto add = dyn_cast<arith::AddFOp>(op)) {
    // A model's residual addition.
    auto type = cast<RankedTensorType>(add.getResult().getType());
    std::vector<std::string> dims;
    for (unsigned d = 0; d < type.getRank(); ++d)
      dims.push_back(dim(add.getLhs(), d));
    emitLibraryCall("add_rows", llvm::formatv("{0}, {1}, {2}, {3}", product(dims),
                                              ptr(add.getLhs()), ptr(add.getRhs()),
                                              ptr(add.getResult()))
                                    .str());
    return true;
  }
  if (auto route = dyn_cast<RouteOp>(op)) {
    std::string args = emitRouteConfig(route);
    emitLibraryCall("route<" + weightType(elementOf(route.getRouter())) + ">", args);
    return true;
  }
  if (auto lora = dyn_cast<MixLoRAOp>(op)) {
    copyTensor(lora.getY(), lora.getInit());
    int64_t experts = staticDim(lora.getLoraA(), 0), rank = staticDim(lora.getLoraA(), 1);
    int64_t in = staticDim(lora.getLoraA(), 2), out = staticDim(lora.getLoraB(), 1);
    std::string t = dim(lora.getX(), 0);
    std::string u = newSlot(Float32Type::get(op->getContext()),
                            llvm::formatv("{0} * {1}", t, experts * rank).str());
    line(llvm::formatv("// MoLoRA as one rank-{0} LoRA with a per-token block scale.",
                       experts * rank)
             .str());
    emitLibraryCall("mix_lora<" + weightType(elementOf(lora.getLoraA())) + ">",
                    llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}, {8}, {9}, {10}, {11}", t,
                                  experts, rank, in, out,
                                  floatLiteral(lora.getAlpha().convertToDouble()),
                                  ptr(lora.getX()), ptr(lora.getProbs()), ptr(lora.getLoraA()),
                                  ptr(lora.getLoraB()), ptr(lora.getY()), u)
                        .str());
    return true;
  }
  if (auto soft = dyn_cast<SoftRouteOp>(op)) {
    int64_t experts = staticDim(soft.getRouter(), 0), hidden = staticDim(soft.getRouter(), 1);
    emitLibraryCall("soft_route<" + weightType(elementOf(soft.getRouter())) + ">",
                    llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}, {6}", dim(soft.getX(), 0),
                                  experts, hidden,
                                  soft.getK() ? static_cast<int64_t>(*soft.getK()) : 0,
                                  ptr(soft.getX()), ptr(soft.getRouter()), ptr(soft.getProbs()))
                        .str());
    return true;
  }
  if (auto vectors = dyn_cast<MixVectorsOp>(op)) {
    int64_t experts = staticDim(vectors.getVectors(), 0),
            width = staticDim(vectors.getVectors(), 1);
    emitLibraryCall("mix_vectors<" + weightType(elementOf(vectors.getVectors())) + ">",
                    llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}, {6}", dim(vectors.getH(), 0),
                                  experts, width, ptr(vectors.getH()), ptr(vectors.getProbs()),
                                  ptr(vectors.getVectors()), ptr(vectors.getY()))
                        .str());
    return true;
  }
  if (auto emit = dyn_cast<TokenEmitOp>(op)) {
    int64_t experts = staticDim(emit.getH(), 0), hidden = staticDim(emit.getH(), 2);
    std::string b = dim(emit.getEmitWeights(), 0), s = dim(emit.getEmitWeights(), 1);
    checkBatchMultiple(b, emit.getGroupSize());
    emitLibraryCall("token_emit", llvm::formatv("{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}", b, s,
                                                hidden, experts, emit.getGroupSize(),
                                                ptr(emit.getH()), ptr(emit.getEmitWeights()),
                                                ptr(emit.getY()))
                                      .str());
    return true;
  }
  return false;
}

LogicalResult FunctionEmitter::emitKernel(KernelOp kernel, unsigned index) {
  Block &block = kernel.getBody().front();
  auto yield = cast<YieldOp>(block.getTerminator());
  // The kernel's results live where the function's results (or the workspace) put them;
  // the yielded inner values share those buffers.
  for (auto [inner, outer] : llvm::zip(yield.getValues(), kernel.getResults())) {
    // A copy first: inserting `inner` may rehash the map under a reference to `outer`'s.
    Buffer buffer = bufferFor(outer);
    buffers[inner] = std::move(buffer);
  }

  std::string fused;
  llvm::json::Array fusedOps;
  for (Operation &op : block.without_terminator()) {
    fused += (fused.empty() ? "" : " + ") + op.getName().getStringRef().str();
    fusedOps.push_back(op.getName().getStringRef().str());
  }
  if (failed(beginKernel(kernel, index)))
    return failure();
  std::string tileText;
  llvm::json::Array tileManifest;
  if (ArrayAttr attr = kernel.getTilesAttr())
    for (Attribute bucket : attr) {
      llvm::json::Object object;
      std::string summary;
      for (NamedAttribute field : cast<DictionaryAttr>(bucket)) {
        int64_t value = cast<IntegerAttr>(field.getValue()).getInt();
        if (field.getName() == "max_tokens" && value < 0)
          object["max_tokens"] = nullptr;
        else
          object[field.getName().getValue()] = value;
        summary += llvm::formatv("{0}{1}={2}", summary.empty() ? "" : " ",
                                 field.getName().getValue(),
                                 value < 0 ? std::string("inf") : std::to_string(value))
                       .str();
      }
      tileText += "\n  //   " + summary;
      tileManifest.push_back(std::move(object));
    }
  body += llvm::formatv("\n  // Kernel {0} '{1}': {2}.\n  // Tiles by token count:{3}\n  {{\n",
                        index, kernel.getKind(), fused, tileText.empty() ? " default" : tileText)
              .str();
  int profileIndex = -1;
  if (profileKinds && !conventions.profileBegin.empty()) {
    auto it = llvm::find(*profileKinds, kernel.getKind().str());
    profileIndex = static_cast<int>(it - profileKinds->begin());
    if (it == profileKinds->end())
      profileKinds->push_back(kernel.getKind().str());
    line(llvm::formatv(conventions.profileBegin.c_str(), profileIndex).str());
  }
  std::string kernelName = llvm::formatv("k{0}_{1}", index, kernel.getKind()).str();
  kernelManifest.push_back(llvm::json::Object{{"name", kernelName},
                                              {"kind", kernel.getKind().str()},
                                              {"fused_ops", std::move(fusedOps)},
                                              {"tiles", std::move(tileManifest)}});
  for (Operation &op : block.without_terminator()) {
    accountCost(&op);
    if (planBuffers(&op))
      continue;
    if (failed(emitOp(&op, kernel)))
      return failure();
  }
  if (profileIndex >= 0)
    line(llvm::formatv(conventions.profileEnd.c_str(), profileIndex).str());
  body += "  }\n";
  return success();
}

/// Multiply-adds of one FFN per token, and the bytes of its weights.
static std::pair<double, double> ffnCost(ValueRange gate, ValueRange up) {
  auto type = cast<RankedTensorType>(up[0].getType());
  int64_t size = type.getRank() == 3 ? type.getDimSize(1) * type.getDimSize(2)
                                     : type.getDimSize(0) * type.getDimSize(1);
  int64_t matrices = gate.empty() ? 2 : 3;
  // MXFP4 codes bring one e8m0 scale per 32.
  double bytes = dtypeBytes(type.getElementType()) +
                 (isa<Float4E2M1FNType>(type.getElementType()) ? 1.0 / 32 : 0.0);
  return {2.0 * size * matrices, static_cast<double>(size) * matrices * bytes};
}

void FunctionEmitter::accountCost(Operation *op) {
  auto dense = [&](double flops, Value weight, int64_t elements) {
    flopsPerToken += flops;
    denseWeightBytes += static_cast<double>(elements) * dtypeBytes(elementOf(weight));
  };
  if (auto route = dyn_cast<RouteOp>(op)) {
    int64_t experts = staticDim(route.getRouter(), 0), hidden = staticDim(route.getRouter(), 1);
    dense(2.0 * experts * hidden, route.getRouter(), experts * hidden);
  } else if (auto choice = dyn_cast<ExpertChoiceOp>(op)) {
    int64_t experts = staticDim(choice.getRouter(), 0), hidden = staticDim(choice.getRouter(), 1);
    dense(2.0 * experts * hidden, choice.getRouter(), experts * hidden);
  } else if (auto ffn = dyn_cast<FFNOp>(op)) {
    SmallVector<Value> gate;
    if (ffn.getGate())
      gate.push_back(ffn.getGate());
    auto [flops, bytes] = ffnCost(gate, ValueRange(ffn.getUp()));
    flopsPerToken += flops;
    denseWeightBytes += bytes;
  } else if (auto gate = dyn_cast<SigmoidGateOp>(op)) {
    int64_t hidden = staticDim(gate.getX(), 1);
    dense(2.0 * hidden, gate.getGateWeight(), hidden);
  } else if (auto ffn = dyn_cast<ExpertFFNOp>(op)) {
    auto [flops, bytes] = ffnCost(ffn.getGate(), ffn.getUp());
    expertWeightBytes += bytes;
    costExperts = staticDim(ffn.getOffsets(), 0) - 1;
    flopsPerToken += flops * routedPerToken(ffn);
  } else if (auto linear = dyn_cast<LinearOp>(op)) {
    int64_t out = staticDim(linear.getWeight(), 0), in = staticDim(linear.getWeight(), 1);
    dense(2.0 * in * out, linear.getWeight(), in * out);
  } else if (auto lora = dyn_cast<MixLoRAOp>(op)) {
    int64_t experts = staticDim(lora.getLoraA(), 0), rank = staticDim(lora.getLoraA(), 1);
    int64_t in = staticDim(lora.getLoraA(), 2), out = staticDim(lora.getLoraB(), 1);
    dense(2.0 * experts * rank * (in + out), lora.getLoraA(), experts * rank * (in + out));
  } else if (auto soft = dyn_cast<SoftRouteOp>(op)) {
    int64_t experts = staticDim(soft.getRouter(), 0), hidden = staticDim(soft.getRouter(), 1);
    dense(2.0 * experts * hidden, soft.getRouter(), experts * hidden);
  } else if (auto vectors = dyn_cast<MixVectorsOp>(op)) {
    int64_t experts = staticDim(vectors.getVectors(), 0),
            width = staticDim(vectors.getVectors(), 1);
    dense(2.0 * experts * width, vectors.getVectors(), experts * width);
  } else if (auto mix = dyn_cast<TokenMixOp>(op)) {
    int64_t experts = staticDim(mix.getController(), 0), hidden = staticDim(mix.getX(), 2);
    // Controller logits and mixing: E·D multiply-adds each per token.
    dense(4.0 * experts * hidden, mix.getController(), experts * hidden);
  } else if (auto batched = dyn_cast<BatchedExpertFFNOp>(op)) {
    int64_t experts = staticDim(batched.getZ(), 0);
    auto [flops, bytes] = ffnCost(batched.getGate(), batched.getUp());
    denseWeightBytes += bytes * experts;
    mixtureExpertFlops = flops * experts;
  } else if (auto emit = dyn_cast<TokenEmitOp>(op)) {
    int64_t experts = staticDim(emit.getH(), 0), hidden = staticDim(emit.getH(), 2);
    flopsPerToken += 2.0 * experts * hidden;
    // Each mixed token stands for a group of G tokens.
    flopsPerToken += mixtureExpertFlops / emit.getGroupSize();
  }
}


namespace {

/// The symbols that bind an argument's dynamic dims: tokens are T for [T, D] inputs and B, S
/// for [B, S, D] inputs (Mixture of Tokens).
FailureOr<std::vector<std::string>> symbolsOf(func::FuncOp func, unsigned index, Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return func.emitError() << "argument #" << index << " must be a ranked tensor, got " << type;
  // The dialect's size bounds (MixOps.h), here for arguments no mix op takes whole (a fused
  // expert tensor that tensor.extract_slice views).
  std::string why = shapeBoundViolation(type);
  if (!why.empty())
    return func.emitError() << "argument #" << index << " " << why;
  std::vector<std::string> names(tensor.getRank());
  // Named explicitly (models: token ids [T], caches [B, S, H, D], ...), verified by the dialect.
  if (auto symbols = func.getArgAttrOfType<ArrayAttr>(index, MixDialect::kSymbolsAttr)) {
    for (auto [d, symbol] : llvm::enumerate(symbols))
      names[d] = cast<StringAttr>(symbol).str();
    return names;
  }
  for (unsigned d = 0; d < tensor.getRank(); ++d) {
    if (!tensor.isDynamicDim(d))
      continue;
    if (tensor.getRank() == 2 && d == 0)
      names[d] = "T";
    else if (tensor.getRank() == 3 && d < 2)
      names[d] = d == 0 ? "B" : "S";
    else
      return func.emitError() << "argument #" << index << " has a dynamic dim " << d
                              << "; only token dims may be dynamic ([T, D] or [B, S, D])";
  }
  return names;
}

llvm::json::Value shapeJson(RankedTensorType type, ArrayRef<std::string> dims,
                            llvm::json::Array &symbols) {
  llvm::json::Array shape;
  for (unsigned d = 0; d < type.getRank(); ++d) {
    if (type.isDynamicDim(d)) {
      shape.push_back(nullptr);
      symbols.push_back(dims[d]);
    } else {
      shape.push_back(type.getDimSize(d));
      symbols.push_back(nullptr);
    }
  }
  return shape;
}

} // namespace

LogicalResult FunctionEmitter::emitCall(func::CallOp call) {
  auto callee = dyn_cast_or_null<func::FuncOp>(
      SymbolTable::lookupNearestSymbolFrom(call, call.getCalleeAttr()));
  std::string name = call.getCallee().str();
  if (!callee || callee.isExternal() || !callees || !callees->count(name))
    return call.emitError() << "the " << conventions.target << " target can only call a function "
                            << "defined earlier in the module, not '" << name << "'";
  const FunctionSignature &signature = callees->at(name);
  // The callee's symbols, bound from the dims of the operands that carry them.
  std::map<std::string, std::string> bound;
  for (auto [i, operand] : llvm::enumerate(call.getOperands())) {
    FailureOr<std::vector<std::string>> names = symbolsOf(callee, i, operand.getType());
    if (failed(names))
      return failure();
    for (auto [d, symbol] : llvm::enumerate(*names))
      if (!symbol.empty() && !bound.count(symbol))
        bound[symbol] = dim(operand, d);
  }
  std::vector<std::string> args;
  for (const std::string &symbol : signature.symbols)
    args.push_back("(int64_t)(" + bound.at(symbol) + ")");
  for (Value operand : call.getOperands())
    args.push_back(ptr(operand));
  for (auto [i, result] : llvm::enumerate(call.getResults())) {
    auto type = cast<RankedTensorType>(result.getType());
    std::vector<std::string> dims;
    for (unsigned d = 0; d < type.getRank(); ++d)
      dims.push_back(type.isDynamicDim(d) ? bound.at(signature.resultSymbols[i][d])
                                          : std::to_string(type.getDimSize(d)));
    if (!buffers.count(result))
      allocate(result, dims);
    else if (buffers[result].dims.empty())
      buffers[result].dims = dims;
    args.push_back(ptr(result));
  }
  std::vector<std::string> symbolArgs(args.begin(), args.begin() + signature.symbols.size());
  // The callee's workspace is the caller's scratch: calls run one after another.
  scratch.push_back(name + "_workspace_size(" + llvm::join(symbolArgs, ", ") + ")");
  args.push_back("scratch");
  args.push_back(conventions.executionArg);
  body += llvm::formatv("\n  // Call {0}.\n  if (int code = {0}({1}))\n    return code;\n",
                        name, llvm::join(args, ", "))
              .str();
  return success();
}

LogicalResult FunctionEmitter::emit(std::string &declarations, std::string &definitions,
                                    llvm::json::Object &entry) {
  std::string fname = func.getSymName().str();
  if (cIdentifier(fname) != fname)
    return func.emitError() << "function name '" << fname << "' is not a C identifier";

  // ---- arguments, results and the symbols that size them -----------------------------------
  std::vector<std::string> argNames, resultNames;
  std::set<std::string> usedNames(conventions.reservedNames.begin(),
                                  conventions.reservedNames.end());
  usedNames.insert({"workspace", "plan", "scratch", "ws", "T", "B", "S"});
  auto uniqueName = [&](std::string name) {
    std::string base = name;
    for (int i = 2; usedNames.count(name); ++i)
      name = base + "_" + std::to_string(i);
    usedNames.insert(name);
    return name;
  };
  auto tensorName = [&](DictionaryAttr attrs, std::string fallback) {
    if (attrs)
      if (auto name = attrs.getAs<StringAttr>(MixDialect::kNameAttr))
        return name.getValue().str();
    return fallback;
  };
  llvm::json::Array argsJson, resultsJson;
  std::string params;
  for (auto [i, arg] : llvm::enumerate(func.getArguments())) {
    FailureOr<std::vector<std::string>> names = symbolsOf(func, i, arg.getType());
    if (failed(names))
      return failure();
    auto type = cast<RankedTensorType>(arg.getType());
    std::string tensor = tensorName(func.getArgAttrDict(i), "arg" + std::to_string(i));
    std::string cname = uniqueName(cIdentifier(tensor));
    std::vector<std::string> dims;
    bool dynamic = false;
    for (unsigned d = 0; d < type.getRank(); ++d) {
      if (type.isDynamicDim(d)) {
        dynamic = true;
        if (llvm::find(symbols, (*names)[d]) == symbols.end())
          symbols.push_back((*names)[d]);
        dims.push_back((*names)[d]);
      } else {
        dims.push_back(std::to_string(type.getDimSize(d)));
      }
    }
    buffers[arg] = Buffer{cname, dims, type.getElementType()};
    // State (a KV cache) is updated in place: the one non-const argument.
    bool state = static_cast<bool>(func.getArgAttr(i, MixDialect::kStateAttr));
    params += llvm::formatv(", {0}{1} *{2}", state ? "" : "const ",
                            cTypeName(type.getElementType()), cname)
                  .str();
    llvm::json::Array symbolJson;
    llvm::json::Value shape = shapeJson(type, dims, symbolJson);
    llvm::json::Object argJson{{"name", tensor},
                               {"c_name", cname},
                               {"dtype", dtypeName(type.getElementType())},
                               {"shape", std::move(shape)},
                               {"symbols", std::move(symbolJson)},
                               {"kind", state     ? "state"
                                        : dynamic ? "input"
                                                  : "weight"}};
    // A weight the checkpoint stores in another layout (mix.stored): the runtime builds it.
    if (auto stored = func.getArgAttrOfType<DictionaryAttr>(i, MixDialect::kStoredAttr)) {
      llvm::json::Object storedJson{{"name", stored.getAs<StringAttr>("name").str()},
                                    {"stride", stored.getAs<IntegerAttr>("stride").getInt()},
                                    {"offset", stored.getAs<IntegerAttr>("offset").getInt()},
                                    {"transpose", static_cast<bool>(stored.get("transpose"))}};
      if (auto format = stored.getAs<StringAttr>("format"))
        storedJson["format"] = format.str();
      argJson["stored"] = std::move(storedJson);
    }
    argsJson.push_back(std::move(argJson));
  }
  tokenCount = llvm::is_contained(symbols, "T") ? "T"
               : llvm::is_contained(symbols, "B") && llvm::is_contained(symbols, "S")
                   ? "B * S"
                   : "1";

  auto returnOp = cast<func::ReturnOp>(func.getBody().front().getTerminator());
  std::vector<std::string> resultPointers;
  std::string resultParams;
  for (auto [i, value] : llvm::enumerate(returnOp.getOperands())) {
    auto type = dyn_cast<RankedTensorType>(value.getType());
    if (!type)
      return func.emitError() << "result #" << i << " must be a ranked tensor";
    std::string tensor = tensorName(func.getResultAttrDict(i), "result" + std::to_string(i));
    std::string cname = uniqueName(cIdentifier(tensor));
    resultParams +=
        llvm::formatv(", {0} *{1}", cTypeName(type.getElementType()), cname).str();
    resultPointers.push_back(cname);
    resultNames.push_back(tensor);
    // A kernel result returned once is computed straight into the caller's buffer.
    if (isa_and_nonnull<KernelOp>(value.getDefiningOp()) && !buffers.count(value))
      buffers[value] = Buffer{cname, {}, type.getElementType()};
  }

  // ---- the body ---------------------------------------------------------------------------
  unsigned kernelIndex = 0;
  for (Operation &op : func.getBody().front().without_terminator()) {
    if (auto kernel = dyn_cast<KernelOp>(op)) {
      // Fill in the dims of results bound to the caller's buffers now that operands exist.
      for (Value result : kernel.getResults())
        if (buffers.count(result) && buffers[result].dims.empty())
          buffers[result].dims = dimsOf(result);
      if (failed(emitKernel(kernel, kernelIndex++)))
        return failure();
      continue;
    }
    if (auto call = dyn_cast<func::CallOp>(op)) {
      if (failed(emitCall(call)))
        return failure();
      continue;
    }
    if (auto constant = dyn_cast<arith::ConstantIndexOp>(op)) {
      scalars[constant] = std::to_string(constant.value());
      continue;
    }
    if (auto dimOp = dyn_cast<tensor::DimOp>(op)) {
      std::optional<int64_t> index = dimOp.getConstantIndex();
      if (!index)
        return op.emitError() << "the " << conventions.target
                              << " target needs a constant dimension index";
      scalars[dimOp.getResult()] = dim(dimOp.getSource(), *index);
      continue;
    }
    if (isa<tensor::CollapseShapeOp, tensor::ExpandShapeOp>(op)) {
      // Row-major reshapes are views of the same bytes.
      Value source = op.getOperand(0), result = op.getResult(0);
      Buffer view = bufferFor(source);
      view.dims = dimsOf(result);
      buffers[result] = view;
      continue;
    }
    if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
      // A contiguous block of a static tensor (one expert's matrix of transformers' fused
      // [E, 2F, D] / [E, D, F] expert weights): a view at an element offset.
      auto source = cast<RankedTensorType>(slice.getSourceType());
      ArrayRef<int64_t> offsets = slice.getStaticOffsets(), sizes = slice.getStaticSizes();
      bool contiguous = source.hasStaticShape() && slice.getOffsets().empty() && slice.getSizes().empty() &&
                        slice.getStrides().empty() &&
                        llvm::all_of(slice.getStaticStrides(), [](int64_t s) { return s == 1; });
      // Leading dims of size 1 at any offset, then one run of any length at any offset, then
      // whole trailing dims.
      size_t d = 0;
      while (contiguous && d < sizes.size() && sizes[d] == 1)
        ++d;
      for (size_t e = d + 1; contiguous && e < sizes.size(); ++e)
        contiguous = offsets[e] == 0 && sizes[e] == source.getDimSize(e);
      if (!contiguous)
        return op.emitError() << "the " << conventions.target
                              << " target emits tensor.extract_slice only as a contiguous block "
                                 "of a static tensor";
      int64_t offset = 0, stride = 1;
      for (int64_t i = source.getRank() - 1; i >= 0; --i) {
        offset += offsets[i] * stride;
        stride *= source.getDimSize(i);
      }
      Buffer view = bufferFor(slice.getSource());
      view.pointer = offset == 0 ? view.pointer
                                 : "(" + view.pointer + " + " + std::to_string(offset) + ")";
      view.dims.clear();
      for (int64_t size : slice.getResultType().getShape())
        view.dims.push_back(std::to_string(size));
      buffers[slice.getResult()] = view;
      continue;
    }
    return op.emitError() << "the " << conventions.target << " target cannot emit '"
                          << op.getName() << "' outside a mix.kernel (run the "
                          << conventions.target << " pipeline first)";
  }
  // Results not computed in place (an argument, a view, a value returned twice) are copied.
  for (auto [i, value] : llvm::enumerate(returnOp.getOperands())) {
    Buffer &source = bufferFor(value);
    if (source.pointer == resultPointers[i])
      continue;
    body += "\n  " +
            llvm::formatv(conventions.copyStatement.c_str(), resultPointers[i], source.pointer,
                          cTypeName(source.element), product(source.dims))
                .str() +
            "\n";
  }
  for (auto [i, value] : llvm::enumerate(returnOp.getOperands())) {
    auto type = cast<RankedTensorType>(value.getType());
    llvm::json::Array symbolJson;
    llvm::json::Value shape = shapeJson(type, bufferFor(value).dims, symbolJson);
    for (const llvm::json::Value &symbol : symbolJson)
      if (auto text = symbol.getAsString(); text && !llvm::is_contained(symbols, text->str()))
        return func.emitError() << "result #" << i << " has a dynamic size '" << *text
                                << "' that is not one of the input symbols";
    resultsJson.push_back(llvm::json::Object{{"name", resultNames[i]},
                                             {"c_name", resultPointers[i]},
                                             {"dtype", dtypeName(type.getElementType())},
                                             {"shape", std::move(shape)},
                                             {"symbols", std::move(symbolJson)}});
  }

  // ---- the workspace plan -----------------------------------------------------------------
  std::string dimParams, dimArgs, dimsFromArray;
  for (auto [i, symbol] : llvm::enumerate(symbols)) {
    dimParams += (i ? ", " : "") + ("int64_t " + symbol);
    dimArgs += (i ? ", " : "") + symbol;
    dimsFromArray += llvm::formatv("{0}dims[{1}]", i ? ", " : "", i).str();
  }
  std::string planParams = dimParams;
  if (!conventions.planParam.empty())
    planParams += (dimParams.empty() ? "" : ", ") + conventions.planParam;
  std::string plan = llvm::formatv("// Workspace of {0}: every intermediate tensor, then the "
                                   "scratch of the kernel that needs most.\nstruct {0}_plan {{\n",
                                   fname)
                         .str();
  for (const Slot &slot : slots)
    plan += "  size_t " + slot.name + ";\n";
  plan += "  size_t scratch, total;\n};\n\n";
  // The same sizes are summed in floating point beside the exact ones: run-time sizes whose
  // workspace passes 2^56 bytes (so an exact sum might have wrapped) give a total of all ones,
  // which the runtime refuses by name; so does a kernel's scratch function returning it.
  plan += llvm::formatv("static {0}_plan plan_{0}({1}) {{\n  {0}_plan p{{};\n  size_t at = 0;\n"
                        "  double approx = 0;\n  bool overflow = false;\n",
                        fname, planParams)
              .str();
  for (const Slot &slot : slots) {
    std::string approx = llvm::join(llvm::split(slot.count, "(int64_t)"), "(double)");
    plan += llvm::formatv("  p.{0} = at;\n  at += {3}(sizeof({1}) * (size_t)({2}));\n"
                          "  approx += sizeof({1}) * ({4});\n",
                          slot.name, cTypeName(slot.element), slot.count, conventions.align,
                          approx)
                .str();
  }
  plan += "  p.scratch = at;\n  size_t scratch = 0;\n";
  for (const std::string &bytes : scratch)
    plan += "  {\n    const size_t bytes = (size_t)(" + bytes +
            ");\n    overflow = overflow || bytes == ~size_t(0);\n"
            "    scratch = std::max(scratch, bytes);\n  }\n";
  plan += "  p.total = overflow || approx + (double)scratch > 0x1p56 ? ~size_t(0) : at + " +
          conventions.align + "(scratch);\n" +
          (conventions.planParam.empty() ? "" : "  (void)" + conventions.planArg + ";\n") +
          "  return p;\n}\n\n";

  std::string slotPointers;
  for (const Slot &slot : slots)
    slotPointers += llvm::formatv("  {0} *{1} = reinterpret_cast<{0} *>(ws + plan.{1});\n",
                                  cTypeName(slot.element), slot.name)
                        .str();
  std::string typedParams = dimParams + params + resultParams;
  if (!dimParams.empty() || !params.empty() || !resultParams.empty())
    typedParams += ", ";
  if (!typedParams.empty() && typedParams.rfind(", ", 0) == 0)
    typedParams = typedParams.substr(2);
  typedParams += "void *workspace, " + conventions.executionParam;

  std::string unusedSymbols;
  for (const std::string &symbol : symbols)
    unusedSymbols += "  (void)" + symbol + ";\n";
  definitions += helpers + plan;
  auto planCall = [&](StringRef extra) {
    std::string args = dimArgs;
    if (!extra.empty())
      args += (dimArgs.empty() ? "" : ", ") + extra.str();
    return "plan_" + fname + "(" + args + ")";
  };
  definitions += llvm::formatv(
      "extern \"C\" size_t {0}_workspace_size({1}) {{\n  return {2}.total;\n}\n\n", fname,
      dimParams.empty() ? "void" : dimParams, planCall(conventions.planArgForQuery));
  definitions += llvm::formatv(
      "extern \"C\" int {0}({1}) {{\n{2}  const {0}_plan plan = {3};\n"
      "  char *ws = static_cast<char *>(workspace);\n  void *scratch = ws + plan.scratch;\n"
      "  (void)scratch;\n  (void)ws;\n{4}{5}{6}\n  return 0;\n}\n\n",
      fname, typedParams, conventions.entryPreamble, planCall(conventions.planArg),
      unusedSymbols, slotPointers, body);

  // The packed form the runtime calls: tensors in manifest order, then the dims.
  std::string packedArgs = dimsFromArray;
  unsigned tensorIndex = 0;
  for (BlockArgument arg : func.getArguments())
    packedArgs += llvm::formatv("{0}static_cast<{3}{1} *>(tensors[{2}])",
                                packedArgs.empty() ? "" : ", ",
                                cTypeName(cast<RankedTensorType>(arg.getType()).getElementType()),
                                tensorIndex++,
                                func.getArgAttr(arg.getArgNumber(), MixDialect::kStateAttr)
                                    ? ""
                                    : "const ")
                      .str();
  for (Value value : returnOp.getOperands())
    packedArgs += llvm::formatv("{0}static_cast<{1} *>(tensors[{2}])", packedArgs.empty() ? "" : ", ",
                                cTypeName(cast<RankedTensorType>(value.getType()).getElementType()),
                                tensorIndex++)
                      .str();
  definitions += llvm::formatv(
      "extern \"C\" int {0}_packed(void *const *tensors, const int64_t *dims, void *workspace, "
      "{4}) {{\n  (void)tensors;\n  (void)dims;\n  return {0}({1}{2}workspace, "
      "{5});\n}\n\n"
      "extern \"C\" size_t {0}_packed_workspace_size(const int64_t *dims) {{\n  (void)dims;\n"
      "  return {0}_workspace_size({3});\n}\n\n",
      fname, packedArgs, packedArgs.empty() ? "" : ", ", dimsFromArray, conventions.executionParam,
      conventions.executionArg);

  // ---- header and manifest ----------------------------------------------------------------
  std::string doc = "/* " + fname + ": dynamic dims " +
                    (symbols.empty() ? std::string("none") : llvm::join(symbols, ", ")) + ".\n";
  for (const llvm::json::Value &a : argsJson) {
    const llvm::json::Object &o = *a.getAsObject();
    std::string shape;
    llvm::raw_string_ostream os(shape);
    os << *o.get("shape");
    doc += llvm::formatv(" *   in  {0} ({1}): {2} {3}\n", *o.getString("c_name"),
                         *o.getString("name"), *o.getString("dtype"), shape)
               .str();
  }
  for (const llvm::json::Value &r : resultsJson) {
    const llvm::json::Object &o = *r.getAsObject();
    std::string shape;
    llvm::raw_string_ostream os(shape);
    os << *o.get("shape");
    doc += llvm::formatv(" *   out {0} ({1}): {2} {3}\n", *o.getString("c_name"),
                         *o.getString("name"), *o.getString("dtype"), shape)
               .str();
  }
  doc += " * Returns 0, or an error code for " + artifactName + "_error_message(). */\n";
  declarations += doc;
  declarations += llvm::formatv("int {0}({1});\nsize_t {0}_workspace_size({2});\n"
                                "int {0}_packed(void *const *tensors, const int64_t *dims, void "
                                "*workspace, {3});\nsize_t "
                                "{0}_packed_workspace_size(const int64_t *dims);\n\n",
                                fname, typedParams, dimParams.empty() ? "void" : dimParams,
                                conventions.executionParam)
                      .str();

  if (callees) {
    FunctionSignature &signature = (*callees)[fname];
    signature.symbols = symbols;
    for (const llvm::json::Value &r : resultsJson) {
      std::vector<std::string> dims;
      for (const llvm::json::Value &symbol : *r.getAsObject()->getArray("symbols"))
        dims.push_back(symbol.getAsString() ? symbol.getAsString()->str() : "");
      signature.resultSymbols.push_back(std::move(dims));
    }
  }
  llvm::json::Array symbolList;
  for (const std::string &s : symbols)
    symbolList.push_back(s);
  entry = llvm::json::Object{
      {"function", fname},
      {"symbol", fname},
      {"packed_symbol", fname + "_packed"},
      {"workspace_symbol", fname + "_packed_workspace_size"},
      {"dynamic_dims", std::move(symbolList)},
      {"arguments", std::move(argsJson)},
      {"results", std::move(resultsJson)},
      {"cost", llvm::json::Object{{"flops_per_token", flopsPerToken},
                                  {"dense_weight_bytes", denseWeightBytes},
                                  {"expert_weight_bytes", expertWeightBytes},
                                  {"num_experts", costExperts},
                                  {"experts_per_token", costExpertsPerToken}}},
      {"kernels", std::move(kernelManifest)}};
  return success();
}


FailureOr<EmittedArtifact> mlir::mix::codegen::emitArtifact(ModuleOp module, StringRef name,
                                                            const TargetConventions &conventions,
                                                            const EmitterFactory &makeEmitter) {
  EmittedArtifact artifact;
  artifact.name = cIdentifier(name);
  artifact.target = conventions.target;
  artifact.sourceFile = artifact.name + conventions.sourceExtension;
  std::string declarations, definitions;
  std::vector<std::string> errors;
  llvm::json::Array entries;
  std::map<std::string, FunctionSignature> callees;
  std::vector<std::string> profileKinds;
  for (auto func : module.getOps<func::FuncOp>()) {
    if (func.isExternal())
      continue;
    std::unique_ptr<FunctionEmitter> emitter = makeEmitter(func, artifact.name, errors);
    emitter->setCallees(&callees);
    emitter->setProfileKinds(&profileKinds);
    llvm::json::Object entry;
    if (failed(emitter->emit(declarations, definitions, entry)))
      return failure();
    entries.push_back(std::move(entry));
  }
  if (entries.empty())
    return module.emitError() << "nothing to compile: the module defines no function";

  std::string guard = "MIXTILE_" + llvm::StringRef(artifact.name).upper() + "_H";
  artifact.header = llvm::formatv(
      "/* {0}.h: the C ABI of a Mixtile artifact (mixtilec {1}, target {4}).\n{5}"
      "#ifndef {2}\n#define {2}\n\n#include <stddef.h>\n#include <stdint.h>\n\n#ifdef __cplusplus\n"
      "extern \"C\" {{\n#endif\n\n{3}const char *{0}_error_message(int code);\n{6}\n"
      "#ifdef __cplusplus\n}\n#endif\n\n#endif /* {2} */\n",
      artifact.name, kMixtileVersion, guard, declarations, conventions.target,
      conventions.headerIntro,
      conventions.profileBegin.empty()
          ? std::string()
          : llvm::formatv("/* Seconds and calls per kernel kind, off until enabled (1: on and "
                          "zeroed, 0: off,\n * -1: unchanged); returns the number of kinds. "
                          "For one calling thread at a time. */\nsize_t {0}_profile(int "
                          "enable, const char *const **names, const double **seconds,\n"
                          "                  const int64_t **calls);\n",
                          artifact.name)
                .str());

  std::string errorTable = "static const char *const kErrors[] = {\n  \"success\",\n";
  for (const std::string &message : conventions.builtinErrors)
    errorTable += "  \"" + message + "\",\n";
  for (const std::string &message : errors)
    errorTable += "  \"" + message + "\",\n";
  errorTable += "};\n\n";
  artifact.source = llvm::formatv(conventions.sourceIntro.c_str(), artifact.name, kMixtileVersion)
                        .str();
  artifact.source += llvm::formatv(
      "namespace {{\n\n{1}}  // namespace\n\n"
      "extern \"C\" const char *{0}_error_message(int code) {{\n"
      "  if (code < 0 || code >= (int)(sizeof(kErrors) / sizeof(kErrors[0])))\n"
      "    return \"unknown error\";\n  return kErrors[code];\n}\n",
      artifact.name, errorTable);
  if (!conventions.profileBegin.empty()) {
    // The profile table: seconds and calls per kernel kind, off unless a caller enables it
    // (mixtile-run --profile). Not synchronized: for one calling thread at a time.
    std::string names;
    for (const std::string &kind : profileKinds)
      names += "\"" + kind + "\", ";
    size_t count = std::max<size_t>(profileKinds.size(), 1);
    artifact.source += llvm::formatv(
        "\nnamespace {{\nbool g_profile_on = false;\nconst char *const g_profile_names[] = "
        "{{{1}nullptr};\ndouble g_profile_seconds[{2}];\nint64_t g_profile_calls[{2}];\n}  // "
        "namespace\n\n"
        "// Turns the per-kernel-kind profile on (1, zeroing it) or off (0), or leaves it (-1);\n"
        "// returns the number of kinds and, where asked, the table.\n"
        "extern \"C\" size_t {0}_profile(int enable, const char *const **names, const double "
        "**seconds,\n                             const int64_t **calls) {{\n  if (enable == 1) "
        "{{\n    for (size_t i = 0; i < {2}; ++i) {{\n      g_profile_seconds[i] = 0;\n      "
        "g_profile_calls[i] = 0;\n    }\n  }\n  if (enable >= 0)\n    g_profile_on = enable == "
        "1;\n  if (names)\n    *names = g_profile_names;\n  if (seconds)\n    *seconds = "
        "g_profile_seconds;\n  if (calls)\n    *calls = g_profile_calls;\n  return {3};\n}\n",
        artifact.name, names, count, profileKinds.size());
  }
  // Definitions use extern "C" linkage; helpers inside them are static.
  artifact.source += "\n" + definitions;
  if (!conventions.sourceOutro.empty())
    artifact.source +=
        "\n" + llvm::formatv(conventions.sourceOutro.c_str(), artifact.name).str();

  conventions.addKernelLibrary(artifact);
  artifact.manifest = llvm::json::Object{{"format", 1},
                                         {"mixtile_version", kMixtileVersion},
                                         {"target", conventions.target},
                                         {"name", artifact.name},
                                         {"library", "lib" + artifact.name + ".so"},
                                         {"header", artifact.name + ".h"},
                                         {"source", artifact.sourceFile},
                                         {"error_message_symbol",
                                          artifact.name + "_error_message"},
                                         {"entry_points", std::move(entries)}};
  // A whole model's run parameters (mixtilec --model), as the importer recorded them.
  if (auto model = module->getAttrOfType<DictionaryAttr>(MixDialect::kModelAttr)) {
    std::function<llvm::json::Value(Attribute)> toJson = [&](Attribute a) -> llvm::json::Value {
      if (auto i = dyn_cast<IntegerAttr>(a))
        return i.getInt();
      if (auto f = dyn_cast<FloatAttr>(a))
        return f.getValueAsDouble();
      if (auto s = dyn_cast<StringAttr>(a))
        return s.str();
      llvm::json::Array list;
      if (auto array = dyn_cast<ArrayAttr>(a))
        for (Attribute item : array)
          list.push_back(toJson(item));
      return list;
    };
    llvm::json::Object object;
    for (NamedAttribute field : model)
      object[field.getName().getValue()] = toJson(field.getValue());
    artifact.manifest["model"] = std::move(object);
  }
  // Weights the checkpoint stores quantized (mix.weight_quantization): the runtime
  // dequantizes them on binding.
  if (auto quantization =
          module->getAttrOfType<DictionaryAttr>(MixDialect::kWeightQuantizationAttr)) {
    llvm::json::Array block;
    for (Attribute size : quantization.getAs<ArrayAttr>("block"))
      block.push_back(cast<IntegerAttr>(size).getInt());
    artifact.manifest["weight_quantization"] = llvm::json::Object{
        {"format", quantization.getAs<StringAttr>("format").str()}, {"block", std::move(block)}};
  }
  if (!conventions.profileBegin.empty())
    artifact.manifest["profile_symbol"] = artifact.name + "_profile";
  for (const auto &[key, value] : conventions.manifestSymbols)
    artifact.manifest[key] = llvm::formatv(value.c_str(), artifact.name).str();
  return artifact;
}
