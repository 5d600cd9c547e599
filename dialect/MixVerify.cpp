// Verifiers of the mix ops: shapes, dtypes and attribute ranges. Every message names the
// operand, result or attribute at fault and the rule it broke. Owns IR checks only.
#include "dialect/MixOps.h"

#include "mlir/Interfaces/FunctionInterfaces.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace mlir::mix;

namespace {

std::string shapeString(Type type) {
  std::string text;
  llvm::raw_string_ostream os(text);
  auto shaped = dyn_cast<ShapedType>(type);
  if (!shaped || !shaped.hasRank())
    return "unranked";
  os << "[";
  llvm::interleaveComma(shaped.getShape(), os, [&](int64_t d) {
    if (ShapedType::isDynamic(d))
      os << "?";
    else
      os << d;
  });
  os << "]";
  return text;
}

bool compatible(int64_t a, int64_t b) {
  return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
}

/// Checks the shape of one named operand or result against a layout such as "[T, D]".
/// Expected dims are given as values: kDynamic for "anything", a number for "this size".
class ShapeChecker {
public:
  explicit ShapeChecker(Operation *op) : op(op) {}

  /// `kind` is "operand" or "result"; `layout` names the dims, e.g. "[E, D]".
  LogicalResult rank(Value value, StringRef kind, StringRef name, StringRef layout) {
    auto type = cast<RankedTensorType>(value.getType());
    int64_t expectedRank = llvm::count(layout, ',') + (layout == "[]" ? 0 : 1);
    if (type.getRank() != expectedRank)
      return op->emitOpError() << kind << " '" << name << "' must have rank " << expectedRank
                               << " " << layout << ", got " << shapeString(type);
    return success();
  }

  /// A weight: the right rank and a static shape (weights are bound once, at compile time).
  LogicalResult weight(Value value, StringRef name, StringRef layout) {
    if (failed(rank(value, "operand", name, layout)))
      return failure();
    if (!cast<RankedTensorType>(value.getType()).hasStaticShape())
      return op->emitOpError() << "weight '" << name << "' must have a static shape " << layout
                               << ", got " << shapeString(value.getType());
    return success();
  }

  /// Requires dim `index` (called `symbol`) of `name` to be `expected`, where both are
  /// known. `why` says where the expected size comes from.
  LogicalResult dim(Value value, StringRef kind, StringRef name, unsigned index,
                    StringRef symbol, int64_t expected, StringRef why) {
    int64_t actual = cast<RankedTensorType>(value.getType()).getDimSize(index);
    if (compatible(actual, expected))
      return success();
    return op->emitOpError() << kind << " '" << name << "' dim " << index << " (" << symbol
                             << ") must be " << expected << ", " << why << "; got "
                             << shapeString(value.getType());
  }

  /// Like `dim`, but the size is a compile-time constant the result must state exactly.
  LogicalResult staticDim(Value value, StringRef kind, StringRef name, unsigned index,
                          StringRef symbol, int64_t expected, StringRef why) {
    int64_t actual = cast<RankedTensorType>(value.getType()).getDimSize(index);
    if (actual == expected)
      return success();
    return op->emitOpError() << kind << " '" << name << "' dim " << index << " (" << symbol
                             << ") must be " << expected << ", " << why << "; got "
                             << shapeString(value.getType());
  }

  Operation *op;
};

int64_t dimOf(Value value, unsigned index) {
  return cast<RankedTensorType>(value.getType()).getDimSize(index);
}

LogicalResult positiveFinite(Operation *op, StringRef name, double value) {
  if (!(value > 0.0) || !std::isfinite(value))
    return op->emitOpError() << "attribute '" << name << "' must be a finite number > 0, got "
                             << value;
  return success();
}

/// Token-choice selection attributes shared by mix.route and mix.token_choice_moe.
LogicalResult verifySelection(Operation *op, int64_t numExperts, int64_t k, int64_t nGroup,
                              int64_t topkGroup, GroupScore groupScore, double normEpsilon,
                              double scale) {
  if (k > numExperts)
    return op->emitOpError() << "attribute 'k' (" << k
                             << ") must not exceed the number of experts E = " << numExperts;
  if (numExperts % nGroup != 0)
    return op->emitOpError() << "attribute 'n_group' (" << nGroup
                             << ") must divide the number of experts E = " << numExperts;
  if (topkGroup > nGroup)
    return op->emitOpError() << "attribute 'topk_group' (" << topkGroup
                             << ") must not exceed 'n_group' (" << nGroup << ")";
  int64_t groupWidth = numExperts / nGroup;
  if (nGroup > 1 && groupScore == GroupScore::top2_sum && groupWidth < 2)
    return op->emitOpError() << "group_score top2_sum needs at least 2 experts per group, but "
                             << "E / n_group = " << groupWidth;
  if (k > topkGroup * groupWidth)
    return op->emitOpError() << "attribute 'k' (" << k << ") must not exceed the "
                             << topkGroup * groupWidth
                             << " experts selectable in 'topk_group' groups of E / n_group = "
                             << groupWidth;
  if (!(normEpsilon >= 0.0) || !std::isfinite(normEpsilon))
    return op->emitOpError() << "attribute 'norm_epsilon' must be a finite number >= 0, got "
                             << normEpsilon;
  return positiveFinite(op, "scale", scale);
}

/// x [T, D] and router [E, D]; returns E and D.
LogicalResult verifyRouter(ShapeChecker &check, Value x, Value router, StringRef routerName,
                           int64_t &numExperts, int64_t &hidden) {
  if (failed(check.rank(x, "operand", "x", "[T, D]")) ||
      failed(check.weight(router, routerName, "[E, D]")))
    return failure();
  numExperts = dimOf(router, 0);
  hidden = dimOf(router, 1);
  return check.dim(x, "operand", "x", 1, "D", hidden,
                   (Twine("the input size of '") + routerName + "'").str());
}

/// A [E] vector beside a router.
LogicalResult verifyPerExpertVector(ShapeChecker &check, Value vector, StringRef name,
                                    int64_t numExperts) {
  if (!vector)
    return success();
  if (failed(check.weight(vector, name, "[E]")))
    return failure();
  return check.staticDim(vector, "operand", name, 0, "E", numExperts,
                         "the number of router rows");
}

/// gpt-oss's expert biases (f32, stacked [E, F], [E, F], [E, D]) and its clamped SwiGLU, which
/// needs gate weights and a positive, finite alpha and limit.
LogicalResult verifyExpertExtras(Operation *op, ShapeChecker &check,
                                 const ExpertWeightShape &shape, Value gateBias, Value upBias,
                                 Value downBias, Activation activation, double alpha,
                                 double limit) {
  if (gateBias && !shape.gated)
    return op->emitOpError() << "operand 'gate_bias' needs gate weights";
  for (auto [value, name, layout, cols, what] :
       {std::tuple<Value, StringRef, StringRef, int64_t, StringRef>{
            gateBias, "gate_bias", "[E, F]", shape.intermediate, "the experts' width F"},
        {upBias, "up_bias", "[E, F]", shape.intermediate, "the experts' width F"},
        {downBias, "down_bias", "[E, D]", shape.hidden, "the hidden size D"}}) {
    if (!value)
      continue;
    if (failed(check.weight(value, name, layout)) ||
        failed(check.staticDim(value, "operand", name, 0, "E", shape.numExperts,
                               "the number of experts")) ||
        failed(check.staticDim(value, "operand", name, 1, layout == "[E, D]" ? "D" : "F", cols,
                               what)))
      return failure();
  }
  if (activation == Activation::swiglu_oai) {
    if (!shape.gated)
      return op->emitOpError() << "activation 'swiglu_oai' needs gate weights";
    if (!(alpha > 0.0) || !std::isfinite(alpha) || !(limit > 0.0) || !std::isfinite(limit))
      return op->emitOpError() << "attributes 'swiglu_alpha' and 'swiglu_limit' must be finite "
                                  "and positive, got "
                               << alpha << " and " << limit;
  }
  return success();
}

/// swiglu_oai is an activation of routed experts only (mix.expert_ffn, mix.token_choice_moe).
LogicalResult routedOnlyActivation(Operation *op, Activation activation) {
  if (activation == Activation::swiglu_oai)
    return op->emitOpError() << "activation 'swiglu_oai' is supported by mix.expert_ffn and "
                                "mix.token_choice_moe only";
  return success();
}

/// A [T, ...] result whose other dims are compile-time constants.
LogicalResult verifyTokenResult(ShapeChecker &check, Value result, StringRef name,
                                StringRef layout, int64_t tokens, ArrayRef<int64_t> rest,
                                ArrayRef<StringRef> symbols) {
  if (failed(check.rank(result, "result", name, layout)) ||
      failed(check.dim(result, "result", name, 0, "T", tokens, "the token count of 'x'")))
    return failure();
  for (auto [i, size] : llvm::enumerate(rest))
    if (failed(check.staticDim(result, "result", name, i + 1, symbols[i], size,
                               "fixed by the operands")))
      return failure();
  return success();
}

LogicalResult verifyCapacityAttrs(Operation *op, std::optional<uint64_t> capacity,
                                  std::optional<APFloat> capacityFactor, bool required) {
  if (capacity && capacityFactor)
    return op->emitOpError()
           << "attributes 'capacity' and 'capacity_factor' are exclusive: give one";
  if (required && !capacity && !capacityFactor)
    return op->emitOpError() << "needs one of the attributes 'capacity' or 'capacity_factor'";
  if (capacityFactor)
    return positiveFinite(op, "capacity_factor", capacityFactor->convertToDouble());
  return success();
}

/// Shared experts of a token-choice layer: an optional FFN [Fs, D] / [D, Fs] and its gate.
LogicalResult verifySharedExperts(ShapeChecker &check, Value gate, Value up, Value down,
                                  Value expertGate, int64_t hidden) {
  Operation *op = check.op;
  if (bool(up) != bool(down))
    return op->emitOpError() << "shared experts need both 'shared_up' and 'shared_down'";
  if (gate && !up)
    return op->emitOpError() << "operand 'shared_gate' needs 'shared_up' and 'shared_down'";
  if (expertGate && !up)
    return op->emitOpError() << "operand 'shared_expert_gate' needs shared experts "
                                "('shared_up' and 'shared_down')";
  if (up) {
    if (failed(check.weight(up, "shared_up", "[F, D]")) ||
        failed(check.weight(down, "shared_down", "[D, F]")) ||
        failed(check.staticDim(up, "operand", "shared_up", 1, "D", hidden,
                               "the hidden size of 'x'")) ||
        failed(check.staticDim(down, "operand", "shared_down", 0, "D", hidden,
                               "the hidden size of 'x'")) ||
        failed(check.staticDim(down, "operand", "shared_down", 1, "F", dimOf(up, 0),
                               "the width of 'shared_up'")))
      return failure();
    if (gate && (failed(check.weight(gate, "shared_gate", "[F, D]")) ||
                 failed(check.staticDim(gate, "operand", "shared_gate", 0, "F", dimOf(up, 0),
                                        "the width of 'shared_up'")) ||
                 failed(check.staticDim(gate, "operand", "shared_gate", 1, "D", hidden,
                                        "the hidden size of 'x'"))))
      return failure();
  }
  if (expertGate &&
      (failed(check.weight(expertGate, "shared_expert_gate", "[1, D]")) ||
       failed(check.staticDim(expertGate, "operand", "shared_expert_gate", 0, "rows", 1,
                              "one gate logit per token")) ||
       failed(check.staticDim(expertGate, "operand", "shared_expert_gate", 1, "D", hidden,
                              "the hidden size of 'x'"))))
    return failure();
  return success();
}

/// The output [T, D] of a routed layer and its optional router logits [T, E].
LogicalResult verifyLayerResults(ShapeChecker &check, Value output, Value routerLogits,
                                 int64_t tokens, int64_t hidden, int64_t numExperts) {
  if (failed(verifyTokenResult(check, output, "output", "[T, D]", tokens, {hidden}, {"D"})) ||
      (routerLogits && failed(verifyTokenResult(check, routerLogits, "router_logits", "[T, E]",
                                                tokens, {numExperts}, {"E"}))))
    return failure();
  return success();
}

/// A layer returns its tokens in the dtype it takes them in (a bf16 model, bf16 hidden states).
LogicalResult sameTokenDtype(Operation *op, Value input, StringRef inputName, Value result,
                             StringRef resultName) {
  Type in = cast<RankedTensorType>(input.getType()).getElementType();
  Type out = cast<RankedTensorType>(result.getType()).getElementType();
  if (in == out)
    return success();
  return op->emitOpError() << "result '" << resultName << "' must have the element type of '"
                           << inputName << "' (" << in << "), got " << out;
}

LogicalResult verifyOptionalK(Operation *op, std::optional<uint64_t> k, int64_t numExperts) {
  if (k && static_cast<int64_t>(*k) > numExperts)
    return op->emitOpError() << "attribute 'k' (" << *k
                             << ") must not exceed the number of experts E = " << numExperts;
  return success();
}

} // namespace

//===----------------------------------------------------------------------===//
// Expert weights
//===----------------------------------------------------------------------===//

LogicalResult mlir::mix::verifyExpertWeights(Operation *op, ValueRange gate, ValueRange up,
                                             ValueRange down, int64_t numExperts,
                                             int64_t hidden, ExpertWeightShape &shape) {
  ShapeChecker check(op);
  if (up.empty() || down.empty())
    return op->emitOpError() << "expert weights need 'up' and 'down' tensors";
  if (down.size() != up.size())
    return op->emitOpError() << "operand group 'down' must hold as many tensors as 'up' ("
                             << up.size() << "), got " << down.size();
  if (!gate.empty() && gate.size() != up.size())
    return op->emitOpError() << "operand group 'gate' must be empty or hold as many tensors "
                             << "as 'up' (" << up.size() << "), got " << gate.size();
  shape.numExperts = numExperts;
  shape.hidden = hidden;
  shape.gated = !gate.empty();
  shape.stacked = up.size() == 1 && cast<RankedTensorType>(up[0].getType()).getRank() == 3;
  shape.elementType = cast<RankedTensorType>(up[0].getType()).getElementType();

  for (ValueRange group : {gate, up, down})
    for (Value v : group)
      if (cast<RankedTensorType>(v.getType()).getElementType() != shape.elementType)
        return op->emitOpError() << "expert weights must share one dtype: 'up' is "
                                 << shape.elementType << " but another weight is "
                                 << cast<RankedTensorType>(v.getType()).getElementType();

  if (shape.stacked) {
    if (failed(check.weight(up[0], "up", "[E, F, D]")) ||
        failed(check.weight(down[0], "down", "[E, D, F]")) ||
        (shape.gated && failed(check.weight(gate[0], "gate", "[E, F, D]"))))
      return failure();
    shape.intermediate = dimOf(up[0], 1);
    auto expectDims = [&](Value v, StringRef name, int64_t out, StringRef outSymbol,
                          int64_t in, StringRef inSymbol) -> LogicalResult {
      if (failed(check.staticDim(v, "operand", name, 0, "E", numExperts,
                                 "the number of experts")) ||
          failed(check.staticDim(v, "operand", name, 1, outSymbol, out,
                                 outSymbol == "D" ? "the hidden size" : "the width of 'up'")) ||
          failed(check.staticDim(v, "operand", name, 2, inSymbol, in,
                                 inSymbol == "D" ? "the hidden size" : "the width of 'up'")))
        return failure();
      return success();
    };
    if (failed(expectDims(up[0], "up", shape.intermediate, "F", hidden, "D")) ||
        failed(expectDims(down[0], "down", hidden, "D", shape.intermediate, "F")) ||
        (shape.gated &&
         failed(expectDims(gate[0], "gate", shape.intermediate, "F", hidden, "D"))))
      return failure();
    return success();
  }

  if (static_cast<int64_t>(up.size()) != numExperts)
    return op->emitOpError() << "operand group 'up' must hold one stacked [E, F, D] tensor or "
                             << "E = " << numExperts << " tensors [F, D], got " << up.size()
                             << " tensors";
  for (auto [i, u] : llvm::enumerate(up)) {
    std::string upName = "up #" + std::to_string(i), downName = "down #" + std::to_string(i);
    if (failed(check.weight(u, upName, "[F, D]")) ||
        failed(check.weight(down[i], downName, "[D, F]")))
      return failure();
    if (i == 0)
      shape.intermediate = dimOf(u, 0);
    if (failed(check.staticDim(u, "operand", upName, 0, "F", shape.intermediate,
                               "the width of 'up #0'")) ||
        failed(check.staticDim(u, "operand", upName, 1, "D", hidden, "the hidden size")) ||
        failed(check.staticDim(down[i], "operand", downName, 0, "D", hidden,
                               "the hidden size")) ||
        failed(check.staticDim(down[i], "operand", downName, 1, "F", shape.intermediate,
                               "the width of 'up #0'")))
      return failure();
    if (shape.gated) {
      std::string gateName = "gate #" + std::to_string(i);
      if (failed(check.weight(gate[i], gateName, "[F, D]")) ||
          failed(check.staticDim(gate[i], "operand", gateName, 0, "F", shape.intermediate,
                                 "the width of 'up #0'")) ||
          failed(check.staticDim(gate[i], "operand", gateName, 1, "D", hidden,
                                 "the hidden size")))
        return failure();
    }
  }
  return success();
}

//===----------------------------------------------------------------------===//
// Routing primitives
//===----------------------------------------------------------------------===//

std::string mlir::mix::shapeBoundViolation(Type type) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return "";
  int64_t elements = 1;
  for (int64_t d : tensor.getShape()) {
    if (ShapedType::isDynamic(d))
      continue;
    if (d > kMaxDim)
      return "has a dim of " + std::to_string(d) + ", past the bound of 2^24 = " +
             std::to_string(kMaxDim) + ": " + shapeString(type);
    elements *= std::max<int64_t>(d, 1); // each factor <= 2^24 and the product <= 2^40
    if (elements > kMaxElements)
      return shapeString(type) + " has more than 2^40 elements (the bound of one tensor)";
  }
  return "";
}

LogicalResult mlir::mix::verifyBoundedShapes(Operation *op) {
  auto check = [&](Type type, StringRef kind, unsigned index) -> LogicalResult {
    std::string why = shapeBoundViolation(type);
    if (why.empty())
      return success();
    return op->emitOpError() << kind << " #" << index << " " << why;
  };
  for (auto [i, operand] : llvm::enumerate(op->getOperands()))
    if (failed(check(operand.getType(), "operand", i)))
      return failure();
  for (auto [i, result] : llvm::enumerate(op->getResults()))
    if (failed(check(result.getType(), "result", i)))
      return failure();
  return success();
}

LogicalResult RouteOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(verifyPerExpertVector(check, getRouterBias(), "router_bias", numExperts)) ||
      failed(verifyPerExpertVector(check, getSelectionBias(), "selection_bias", numExperts)))
    return failure();
  int64_t k = getK();
  if (failed(verifySelection(*this, numExperts, k, getNGroup(), getTopkGroup(),
                             getGroupScore(), getNormEpsilon().convertToDouble(),
                             getScale().convertToDouble())))
    return failure();
  int64_t tokens = dimOf(getX(), 0);
  return failure(
      failed(verifyTokenResult(check, getWeights(), "weights", "[T, k]", tokens, {k}, {"k"})) ||
      failed(verifyTokenResult(check, getExperts(), "experts", "[T, k]", tokens, {k}, {"k"})) ||
      failed(verifyTokenResult(check, getLogits(), "logits", "[T, E]", tokens, {numExperts},
                               {"E"})));
}

LogicalResult CapacityOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getExperts(), "operand", "experts", "[T, k]")))
    return failure();
  if (getKept().getType() != getExperts().getType())
    return emitOpError() << "result 'kept' must have the type of operand 'experts' ("
                         << getExperts().getType() << "), got " << getKept().getType();
  return verifyCapacityAttrs(*this, getCapacity(), getCapacityFactor(), /*required=*/true);
}

/// The expert segments form shared by mix.dispatch and mix.expert_choice.
static LogicalResult verifySegments(ShapeChecker &check, Value offsets, Value tokens,
                                    Value gates, int64_t numExperts) {
  if (failed(check.rank(offsets, "result", "offsets", "[E+1]")) ||
      failed(check.staticDim(offsets, "result", "offsets", 0, "E+1", numExperts + 1,
                             "one more than the number of experts")) ||
      failed(check.rank(tokens, "result", "tokens", "[A]")) ||
      failed(check.rank(gates, "result", "gates", "[A]")) ||
      failed(check.dim(gates, "result", "gates", 0, "A", dimOf(tokens, 0),
                       "the length of 'tokens'")))
    return failure();
  return success();
}

LogicalResult ExpertChoiceOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(positiveFinite(*this, "capacity_factor",
                            getCapacityFactor().convertToDouble())) ||
      failed(verifySegments(check, getOffsets(), getTokens(), getGates(), numExperts)))
    return failure();
  return verifyTokenResult(check, getLogits(), "logits", "[T, E]", dimOf(getX(), 0),
                           {numExperts}, {"E"});
}

LogicalResult DispatchOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getWeights(), "operand", "weights", "[T, k]")) ||
      failed(check.rank(getExperts(), "operand", "experts", "[T, k]")))
    return failure();
  for (unsigned d = 0; d < 2; ++d)
    if (failed(check.dim(getExperts(), "operand", "experts", d, d ? "k" : "T",
                         dimOf(getWeights(), d), "as in 'weights'")))
      return failure();
  return verifySegments(check, getOffsets(), getTokens(), getGates(), getNumExperts());
}

//===----------------------------------------------------------------------===//
// Expert computation primitives
//===----------------------------------------------------------------------===//

/// MXFP4 experts: stacked f4E2M1FN codes, each role with one stacked f8E8M0FNU tensor of the
/// scales of its rows' 32-value blocks ([E, F, D / 32] for gate/up, [E, D, F / 32] for down),
/// so D and F are multiples of 32; the format fixes the block, so no 'weight_block'.
static LogicalResult verifyMxfp4Scales(Operation *op, const ExpertWeightShape &shape,
                                       ValueRange gate, ValueRange up, ValueRange down,
                                       ValueRange gateScale, ValueRange upScale,
                                       ValueRange downScale,
                                       std::optional<ArrayRef<int64_t>> block) {
  if (!shape.stacked)
    return op->emitOpError() << "f4E2M1FN (MXFP4) expert weights must be stacked [E, F, D] / "
                             << "[E, D, F], not one tensor per expert";
  if (block)
    return op->emitOpError() << "f4E2M1FN (MXFP4) expert weights take no 'weight_block' (each "
                             << "scale covers 32 values of a row)";
  if (shape.hidden % 32 != 0 || shape.intermediate % 32 != 0)
    return op->emitOpError() << "f4E2M1FN (MXFP4) expert weights need D and F multiples of 32 "
                             << "(blocks of 32 values), got D = " << shape.hidden
                             << ", F = " << shape.intermediate;
  auto group = [&](ValueRange weights, ValueRange scales, StringRef role) -> LogicalResult {
    if (scales.size() != weights.size())
      return op->emitOpError() << "operand group '" << role << "_scale' must hold the e8m0 "
                               << "scales of each '" << role << "' weight (" << weights.size()
                               << " tensor" << (weights.size() == 1 ? "" : "s") << "), got "
                               << scales.size();
    if (weights.empty())
      return success();
    auto w = cast<RankedTensorType>(weights[0].getType());
    auto type = cast<RankedTensorType>(scales[0].getType());
    SmallVector<int64_t> expected = {w.getDimSize(0), w.getDimSize(1), w.getDimSize(2) / 32};
    if (type.getShape() != ArrayRef<int64_t>(expected) ||
        !isa<Float8E8M0FNUType>(type.getElementType()))
      return op->emitOpError() << "operand '" << role << "_scale' must be f8E8M0FNU ["
                               << expected[0] << ", " << expected[1] << ", " << expected[2]
                               << "] (one scale per 32 values of '" << role << "' "
                               << shapeString(weights[0].getType()) << "), got "
                               << shapeString(scales[0].getType());
    return success();
  };
  if (failed(group(gate, gateScale, "gate")) || failed(group(up, upScale, "up")) ||
      failed(group(down, downScale, "down")))
    return failure();
  return success();
}

LogicalResult mlir::mix::verifyExpertScales(Operation *op, const ExpertWeightShape &shape,
                                            ValueRange gate, ValueRange up, ValueRange down,
                                            ValueRange gateScale, ValueRange upScale,
                                            ValueRange downScale,
                                            std::optional<ArrayRef<int64_t>> block) {
  if (isa<Float4E2M1FNType>(shape.elementType))
    return verifyMxfp4Scales(op, shape, gate, up, down, gateScale, upScale, downScale, block);
  if (!isa<Float8E4M3FNType>(shape.elementType)) {
    if (!gateScale.empty() || !upScale.empty() || !downScale.empty() || block)
      return op->emitOpError() << "block scales and 'weight_block' belong to f8E4M3FN or "
                               << "f4E2M1FN expert weights; these are " << shape.elementType;
    return success();
  }
  if (shape.stacked)
    return op->emitOpError() << "f8E4M3FN expert weights must be one tensor per expert [F, D] / "
                             << "[D, F], not stacked";
  if (!block || block->size() != 2 || (*block)[0] <= 0 || (*block)[1] <= 0)
    return op->emitOpError() << "f8E4M3FN expert weights need 'weight_block' = array<i64: rows, "
                             << "cols>, two positive sizes";
  const int64_t br = (*block)[0], bc = (*block)[1];
  auto group = [&](ValueRange weights, ValueRange scales, StringRef role) -> LogicalResult {
    if (scales.size() != weights.size())
      return op->emitOpError() << "operand group '" << role << "_scale' must hold one tensor per '"
                               << role << "' weight (" << weights.size() << "), got "
                               << scales.size();
    for (auto [i, w] : llvm::enumerate(weights)) {
      int64_t rows = dimOf(w, 0), cols = dimOf(w, 1);
      SmallVector<int64_t> expected = {(rows + br - 1) / br, (cols + bc - 1) / bc};
      auto type = cast<RankedTensorType>(scales[i].getType());
      if (type.getShape() != ArrayRef<int64_t>(expected) || !type.getElementType().isF32())
        return op->emitOpError() << "operand '" << role << "_scale #" << i << "' must be f32 ["
                                 << expected[0] << ", " << expected[1] << "] (blocks of " << br
                                 << " x " << bc << " of '" << role << " #" << i << "' "
                                 << shapeString(w.getType()) << "), got "
                                 << shapeString(scales[i].getType());
    }
    return success();
  };
  if (failed(group(gate, gateScale, "gate")) || failed(group(up, upScale, "up")) ||
      failed(group(down, downScale, "down")))
    return failure();
  return success();
}

LogicalResult ExpertFFNOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getX(), "operand", "x", "[T, D]")) ||
      failed(check.rank(getOffsets(), "operand", "offsets", "[E+1]")) ||
      failed(check.rank(getTokens(), "operand", "tokens", "[A]")))
    return failure();
  int64_t segments = dimOf(getOffsets(), 0);
  if (ShapedType::isDynamic(segments) || segments < 2)
    return emitOpError() << "operand 'offsets' must have a static size E+1 >= 2, got "
                         << shapeString(getOffsets().getType());
  ExpertWeightShape shape;
  if (failed(verifyExpertWeights(*this, getGate(), getUp(), getDown(), segments - 1,
                                 dimOf(getX(), 1), shape)) ||
      failed(verifyExpertScales(*this, shape, getGate(), getUp(), getDown(), getGateScale(),
                                getUpScale(), getDownScale(), getWeightBlock())) ||
      failed(verifyExpertExtras(*this, check, shape, getGateBias(), getUpBias(), getDownBias(),
                                getActivation(), getSwigluAlpha().convertToDouble(),
                                getSwigluLimit().convertToDouble())))
    return failure();
  if (failed(check.rank(getH(), "result", "h", "[A, D]")) ||
      failed(check.dim(getH(), "result", "h", 0, "A", dimOf(getTokens(), 0),
                       "the length of 'tokens'")) ||
      failed(check.staticDim(getH(), "result", "h", 1, "D", shape.hidden,
                             "the hidden size of 'x'")))
    return failure();
  return success();
}

LogicalResult CombineOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getH(), "operand", "h", "[A, D]")) ||
      failed(check.rank(getTokens(), "operand", "tokens", "[A]")) ||
      failed(check.rank(getGates(), "operand", "gates", "[A]")) ||
      failed(check.rank(getInit(), "operand", "init", "[T, D]")) ||
      failed(check.dim(getTokens(), "operand", "tokens", 0, "A", dimOf(getH(), 0),
                       "the row count of 'h'")) ||
      failed(check.dim(getGates(), "operand", "gates", 0, "A", dimOf(getH(), 0),
                       "the row count of 'h'")) ||
      failed(check.dim(getInit(), "operand", "init", 1, "D", dimOf(getH(), 1),
                       "the row size of 'h'")))
    return failure();
  return success();
}

/// One FFN [F, D] / [D, F] with an optional gate [F, D].
static LogicalResult verifyDenseFFN(ShapeChecker &check, Value gate, Value up, Value down,
                                    int64_t hidden) {
  if (failed(check.weight(up, "up", "[F, D]")) ||
      failed(check.weight(down, "down", "[D, F]")) ||
      failed(check.staticDim(up, "operand", "up", 1, "D", hidden, "the hidden size of 'x'")) ||
      failed(check.staticDim(down, "operand", "down", 0, "D", hidden,
                             "the hidden size of 'x'")) ||
      failed(check.staticDim(down, "operand", "down", 1, "F", dimOf(up, 0),
                             "the width of 'up'")))
    return failure();
  if (gate && (failed(check.weight(gate, "gate", "[F, D]")) ||
               failed(check.staticDim(gate, "operand", "gate", 0, "F", dimOf(up, 0),
                                      "the width of 'up'")) ||
               failed(check.staticDim(gate, "operand", "gate", 1, "D", hidden,
                                      "the hidden size of 'x'"))))
    return failure();
  return success();
}

LogicalResult FFNOp::verify() {
  ShapeChecker check(*this);
  if (failed(routedOnlyActivation(*this, getActivation())) ||
      failed(check.rank(getX(), "operand", "x", "[T, D]")) ||
      failed(verifyDenseFFN(check, getGate(), getUp(), getDown(), dimOf(getX(), 1))))
    return failure();
  return verifyTokenResult(check, getY(), "y", "[T, D]", dimOf(getX(), 0), {dimOf(getX(), 1)},
                           {"D"});
}

LogicalResult SigmoidGateOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getX(), "operand", "x", "[T, D]")) ||
      failed(check.weight(getGateWeight(), "gate_weight", "[1, D]")) ||
      failed(check.staticDim(getGateWeight(), "operand", "gate_weight", 0, "rows", 1,
                             "one gate logit per token")) ||
      failed(check.staticDim(getGateWeight(), "operand", "gate_weight", 1, "D",
                             dimOf(getX(), 1), "the hidden size of 'x'")) ||
      failed(check.rank(getY(), "operand", "y", "[T, H]")) ||
      failed(check.dim(getY(), "operand", "y", 0, "T", dimOf(getX(), 0),
                       "the token count of 'x'")))
    return failure();
  if (getGated().getType() != getY().getType())
    return emitOpError() << "result 'gated' must have the type of operand 'y' ("
                         << getY().getType() << "), got " << getGated().getType();
  return success();
}

LogicalResult LinearOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getX(), "operand", "x", "[T, D_in]")) ||
      failed(check.weight(getWeight(), "weight", "[D_out, D_in]")) ||
      failed(check.dim(getX(), "operand", "x", 1, "D_in", dimOf(getWeight(), 1),
                       "the input size of 'weight'")))
    return failure();
  int64_t out = dimOf(getWeight(), 0);
  if (getBias() && (failed(check.weight(getBias(), "bias", "[D_out]")) ||
                    failed(check.staticDim(getBias(), "operand", "bias", 0, "D_out", out,
                                           "the output size of 'weight'"))))
    return failure();
  return verifyTokenResult(check, getY(), "y", "[T, D_out]", dimOf(getX(), 0), {out},
                           {"D_out"});
}

//===----------------------------------------------------------------------===//
// Dense model primitives
//===----------------------------------------------------------------------===//

LogicalResult GatherOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getTable(), "operand", "table", "[N, D]")) ||
      failed(check.rank(getIndices(), "operand", "indices", "[R]")) ||
      failed(check.rank(getRows(), "result", "rows", "[R, D]")) ||
      failed(check.dim(getRows(), "result", "rows", 0, "R", dimOf(getIndices(), 0),
                       "the number of 'indices'")))
    return failure();
  int64_t width = dimOf(getTable(), 1);
  if (ShapedType::isDynamic(width))
    return emitOpError() << "operand 'table' must have a static row width D, got "
                         << shapeString(getTable().getType());
  return check.staticDim(getRows(), "result", "rows", 1, "D", width, "the row width of 'table'");
}

LogicalResult RMSNormOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.weight(getWeight(), "weight", "[D]")))
    return failure();
  auto type = cast<RankedTensorType>(getX().getType());
  if (type.getRank() < 1)
    return emitOpError() << "operand 'x' must have rank >= 1, got " << shapeString(type);
  int64_t width = dimOf(getWeight(), 0);
  if (failed(check.staticDim(getX(), "operand", "x", type.getRank() - 1, "D", width,
                             "the size of 'weight'")))
    return failure();
  if (getY().getType() != type)
    return emitOpError() << "result 'y' must have the type of 'x' " << shapeString(type)
                         << ", got " << shapeString(getY().getType());
  double epsilon = getEpsilon().convertToDouble();
  if (!(epsilon >= 0.0) || !std::isfinite(epsilon))
    return emitOpError() << "attribute 'epsilon' must be a finite number >= 0, got " << epsilon;
  return success();
}

LogicalResult SliceOp::verify() {
  auto in = cast<RankedTensorType>(getX().getType());
  auto out = cast<RankedTensorType>(getY().getType());
  int64_t rank = in.getRank();
  if (rank < 1 || out.getRank() != rank || in.getShape().drop_back() != out.getShape().drop_back())
    return emitOpError() << "result 'y' must keep every dim of 'x' " << shapeString(in)
                         << " but the last, got " << shapeString(out);
  int64_t width = in.getShape().back(), count = out.getShape().back();
  if (ShapedType::isDynamic(width) || ShapedType::isDynamic(count))
    return emitOpError() << "the last dims of 'x' and 'y' must be static, got "
                         << shapeString(in) << " and " << shapeString(out);
  if (in.getElementType() != out.getElementType())
    return emitOpError() << "result 'y' must have the element type of 'x'";
  int64_t offset = getOffset();
  if (count < 1 || offset + count > width)
    return emitOpError() << "columns [" << offset << ", " << offset + count
                         << ") do not lie inside the " << width << " columns of 'x'";
  return success();
}

/// positions and sequences [T] of mix.attention and mix.latent_attention.
static LogicalResult verifyTokenPlaces(ShapeChecker &check, Value positions, Value sequences,
                                       int64_t tokens) {
  for (auto [value, name] :
       {std::pair<Value, StringRef>{positions, "positions"}, {sequences, "sequences"}})
    if (failed(check.rank(value, "operand", name, "[T]")) ||
        failed(check.dim(value, "operand", name, 0, "T", tokens, "the token count of 'q'")))
      return failure();
  return success();
}

/// A KV cache operand: updated in place, so it must be a state argument of its function.
static LogicalResult verifyStateArgument(Operation *op, Value value, StringRef name) {
  auto arg = dyn_cast<BlockArgument>(value);
  auto func = arg ? dyn_cast<FunctionOpInterface>(arg.getOwner()->getParentOp())
                  : FunctionOpInterface();
  if (!func || !func.getArgAttr(arg.getArgNumber(), MixDialect::kStateAttr))
    return op->emitOpError() << "operand '" << name
                             << "' must be a function argument marked 'mix.state' (the cache "
                                "is updated in place)";
  return success();
}

/// The RoPE frequencies and scales of mix.attention and mix.latent_attention.
static LogicalResult verifyRopeAndScale(Operation *op, ArrayRef<double> invFreq, double ropeScale,
                                        double softmaxScale) {
  for (double f : invFreq)
    if (!std::isfinite(f) || f < 0.0)
      return op->emitOpError() << "attribute 'inv_freq' must hold finite numbers >= 0, got "
                               << f;
  if (failed(positiveFinite(op, "rope_scale", ropeScale)))
    return failure();
  return positiveFinite(op, "softmax_scale", softmaxScale);
}

LogicalResult AttentionOp::verify() {
  ShapeChecker check(*this);
  int64_t heads = getHeads(), kvHeads = getKvHeads(), headDim = getHeadDim();
  int64_t valueDim = getValueHeadDim(), ropeOffset = getRopeOffset();
  if (heads % kvHeads != 0)
    return emitOpError() << "attribute 'kv_heads' (" << kvHeads << ") must divide 'heads' ("
                         << heads << ")";
  int64_t pairs = static_cast<int64_t>(getInvFreq().size());
  if (ropeOffset + 2 * pairs > headDim)
    return emitOpError() << "attribute 'inv_freq' has " << pairs
                         << " frequencies; rope_offset (" << ropeOffset
                         << ") + 2 x that must not exceed head_dim = " << headDim;
  if (failed(verifyRopeAndScale(*this, getInvFreq(), getRopeScale().convertToDouble(),
                                getSoftmaxScale().convertToDouble())))
    return failure();
  double clip = getClip().convertToDouble();
  if (!(clip >= 0.0) || !std::isfinite(clip))
    return emitOpError() << "attribute 'clip' must be a finite number >= 0, got " << clip;
  int64_t tokens = dimOf(getQ(), 0);
  if (failed(check.rank(getQ(), "operand", "q", "[T, heads * head_dim]")) ||
      failed(check.staticDim(getQ(), "operand", "q", 1, "heads * head_dim", heads * headDim,
                             "heads x head_dim")))
    return failure();
  // Keys: whole heads, or with a shared rotary key (MLA) each head's leading rope_offset dims.
  Value ropeKey = getRopeKey();
  if (ropeKey) {
    if (pairs == 0 || ropeOffset + 2 * pairs != headDim)
      return emitOpError() << "operand 'rope_key' needs the rotary dims to be each head's last: "
                              "rope_offset ("
                           << ropeOffset << ") + 2 x " << pairs
                           << " frequencies must equal head_dim = " << headDim;
    if (failed(check.rank(ropeKey, "operand", "rope_key", "[T, rotary dims]")) ||
        failed(check.dim(ropeKey, "operand", "rope_key", 0, "T", tokens,
                         "the token count of 'q'")) ||
        failed(check.staticDim(ropeKey, "operand", "rope_key", 1, "rotary dims", 2 * pairs,
                               "2 x the frequencies in 'inv_freq'")))
      return failure();
  }
  if (Value sinks = getSinks())
    if (failed(check.weight(sinks, "sinks", "[heads]")) ||
        failed(check.staticDim(sinks, "operand", "sinks", 0, "heads", heads,
                               "attribute 'heads'")))
      return failure();
  int64_t keyWidth = ropeKey ? ropeOffset : headDim;
  for (auto [value, name, width, what] :
       {std::tuple<Value, StringRef, int64_t, StringRef>{
            getK(), "k", keyWidth, ropeKey ? "kv_heads x rope_offset" : "kv_heads x head_dim"},
        {getV(), "v", valueDim, "kv_heads x v_head_dim"}})
    if (failed(check.rank(value, "operand", name, "[T, kv_heads * width]")) ||
        failed(check.dim(value, "operand", name, 0, "T", tokens, "the token count of 'q'")) ||
        failed(check.staticDim(value, "operand", name, 1, "kv_heads * width", kvHeads * width,
                               what)))
      return failure();
  if (failed(verifyTokenPlaces(check, getPositions(), getSequences(), tokens)))
    return failure();
  for (auto [value, name, width, what] :
       {std::tuple<Value, StringRef, int64_t, StringRef>{getKCache(), "k_cache", headDim,
                                                         "attribute 'head_dim'"},
        {getVCache(), "v_cache", valueDim, "attribute 'v_head_dim'"}}) {
    if (failed(check.rank(value, "operand", name, "[B, S, kv_heads, head width]")) ||
        failed(check.staticDim(value, "operand", name, 2, "kv_heads", kvHeads,
                               "attribute 'kv_heads'")) ||
        failed(check.staticDim(value, "operand", name, 3, "head width", width, what)))
      return failure();
    // The caches are updated in place: they must be the function's state arguments.
    if (failed(verifyStateArgument(*this, value, name)))
      return failure();
  }
  auto kCache = cast<RankedTensorType>(getKCache().getType());
  auto vCache = cast<RankedTensorType>(getVCache().getType());
  if (kCache.getElementType() != vCache.getElementType() ||
      kCache.getShape().take_front(2) != vCache.getShape().take_front(2))
    return emitOpError() << "operands 'k_cache' and 'v_cache' must have one element type and "
                            "the same [B, S], got "
                         << getKCache().getType() << " and " << getVCache().getType();
  if (getKCache() == getVCache())
    return emitOpError() << "operands 'k_cache' and 'v_cache' must be different tensors";
  return verifyTokenResult(check, getOut(), "out", "[T, heads * v_head_dim]", tokens,
                           {heads * valueDim}, {"heads * v_head_dim"});
}

LogicalResult LatentAttentionOp::verify() {
  ShapeChecker check(*this);
  int64_t heads = getHeads(), nope = getNopeDim(), valueDim = getVHeadDim();
  int64_t ropeDim = getRopeDim();
  // Products of these sizes must not overflow: each is a tensor dim, bounded like one.
  for (auto [name, value] : {std::pair<StringRef, int64_t>{"heads", heads},
                             {"nope_dim", nope},
                             {"v_head_dim", valueDim},
                             {"inv_freq", ropeDim}})
    if (value > kMaxDim)
      return emitOpError() << "attribute '" << name << "' (" << value << ") exceeds the bound "
                           << kMaxDim << " of a dim";
  if (ropeDim == 0)
    return emitOpError() << "attribute 'inv_freq' must hold the rotary key's frequencies "
                            "(at least one)";
  if (failed(verifyRopeAndScale(*this, getInvFreq(), getRopeScale().convertToDouble(),
                                getSoftmaxScale().convertToDouble())))
    return failure();
  if (failed(check.weight(getKvB(), "kv_b", "[heads * (nope_dim + v_head_dim), rank]")) ||
      failed(check.staticDim(getKvB(), "operand", "kv_b", 0, "heads * (nope_dim + v_head_dim)",
                             heads * (nope + valueDim), "heads x (nope_dim + v_head_dim)")))
    return failure();
  int64_t rank = getRank();
  int64_t tokens = dimOf(getQ(), 0);
  for (auto [value, name, layout, width, what] :
       {std::tuple<Value, StringRef, StringRef, int64_t, StringRef>{
            getQ(), "q", "[T, heads * (nope_dim + rope_dim)]", heads * (nope + ropeDim),
            "heads x (nope_dim + 2 x the frequencies in 'inv_freq')"},
        {getLatent(), "latent", "[T, rank]", rank, "dim 1 of 'kv_b' (rank)"},
        {getRopeKey(), "rope_key", "[T, rope_dim]", ropeDim,
         "2 x the frequencies in 'inv_freq'"}})
    if (failed(check.rank(value, "operand", name, layout)) ||
        failed(check.dim(value, "operand", name, 0, "T", tokens, "the token count of 'q'")) ||
        failed(check.staticDim(value, "operand", name, 1, "width", width, what)))
      return failure();
  if (failed(verifyTokenPlaces(check, getPositions(), getSequences(), tokens)))
    return failure();
  Value cache = getCache();
  if (failed(check.rank(cache, "operand", "cache", "[B, S, 1, rank + rope_dim]")) ||
      failed(check.staticDim(cache, "operand", "cache", 2, "1", 1, "one entry per position")) ||
      failed(check.staticDim(cache, "operand", "cache", 3, "rank + rope_dim", rank + ropeDim,
                             "the latent's width plus the rotary key's")))
    return failure();
  if (cast<RankedTensorType>(cache.getType()).getElementType() !=
      cast<RankedTensorType>(getKvB().getType()).getElementType())
    return emitOpError() << "operand 'cache' must have the element type of 'kv_b', got "
                         << cache.getType() << " and " << getKvB().getType();
  if (failed(verifyStateArgument(*this, cache, "cache")))
    return failure();
  return verifyTokenResult(check, getOut(), "out", "[T, heads * v_head_dim]", tokens,
                           {heads * valueDim}, {"heads * v_head_dim"});
}

//===----------------------------------------------------------------------===//
// Lightweight experts
//===----------------------------------------------------------------------===//

LogicalResult SoftRouteOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(verifyOptionalK(*this, getK(), numExperts)))
    return failure();
  return verifyTokenResult(check, getProbs(), "probs", "[T, E]", dimOf(getX(), 0),
                           {numExperts}, {"E"});
}

LogicalResult MixVectorsOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getH(), "operand", "h", "[T, H]")) ||
      failed(check.rank(getProbs(), "operand", "probs", "[T, E]")) ||
      failed(check.weight(getVectors(), "vectors", "[E, H]")) ||
      failed(check.dim(getProbs(), "operand", "probs", 0, "T", dimOf(getH(), 0),
                       "the token count of 'h'")) ||
      failed(check.dim(getProbs(), "operand", "probs", 1, "E", dimOf(getVectors(), 0),
                       "the number of rows of 'vectors'")) ||
      failed(check.staticDim(getVectors(), "operand", "vectors", 1, "H", dimOf(getH(), 1),
                             "the row size of 'h'")))
    return failure();
  if (getY().getType() != getH().getType())
    return emitOpError() << "result 'y' must have the type of operand 'h' (" << getH().getType()
                         << "), got " << getY().getType();
  return success();
}

/// lora_a [E, r, D_in] and lora_b [E, D_out, r].
static LogicalResult verifyLoRA(ShapeChecker &check, Value loraA, Value loraB,
                                int64_t numExperts, int64_t in, int64_t out) {
  if (failed(check.weight(loraA, "lora_a", "[E, r, D_in]")) ||
      failed(check.weight(loraB, "lora_b", "[E, D_out, r]")) ||
      failed(check.staticDim(loraA, "operand", "lora_a", 0, "E", numExperts,
                             "the number of experts")) ||
      failed(check.staticDim(loraA, "operand", "lora_a", 2, "D_in", in, "the input size")) ||
      failed(check.staticDim(loraB, "operand", "lora_b", 0, "E", numExperts,
                             "the number of experts")) ||
      failed(check.staticDim(loraB, "operand", "lora_b", 1, "D_out", out,
                             "the output size")) ||
      failed(check.staticDim(loraB, "operand", "lora_b", 2, "r", dimOf(loraA, 1),
                             "the rank of 'lora_a'")))
    return failure();
  return success();
}

static LogicalResult finiteAttr(Operation *op, StringRef name, double value) {
  if (!std::isfinite(value))
    return op->emitOpError() << "attribute '" << name << "' must be finite, got " << value;
  return success();
}

LogicalResult MixLoRAOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getX(), "operand", "x", "[T, D_in]")) ||
      failed(check.rank(getProbs(), "operand", "probs", "[T, E]")) ||
      failed(check.rank(getInit(), "operand", "init", "[T, D_out]")) ||
      failed(check.dim(getProbs(), "operand", "probs", 0, "T", dimOf(getX(), 0),
                       "the token count of 'x'")) ||
      failed(check.dim(getInit(), "operand", "init", 0, "T", dimOf(getX(), 0),
                       "the token count of 'x'")))
    return failure();
  if (failed(check.rank(getLoraA(), "operand", "lora_a", "[E, r, D_in]")))
    return failure();
  int64_t numExperts = dimOf(getLoraA(), 0);
  if (failed(check.dim(getProbs(), "operand", "probs", 1, "E", numExperts,
                       "the number of adapters in 'lora_a'")) ||
      failed(verifyLoRA(check, getLoraA(), getLoraB(), numExperts, dimOf(getX(), 1),
                        dimOf(getInit(), 1))))
    return failure();
  return finiteAttr(*this, "alpha", getAlpha().convertToDouble());
}

//===----------------------------------------------------------------------===//
// Mixture of Tokens
//===----------------------------------------------------------------------===//

/// B must be a multiple of the group size where B is known; returns N = (B / G) · S.
static LogicalResult verifyGrouping(Operation *op, Value x, StringRef name, int64_t groupSize,
                                    int64_t &mixedRows) {
  int64_t batch = dimOf(x, 0), seq = dimOf(x, 1);
  if (!ShapedType::isDynamic(batch) && batch % groupSize != 0)
    return op->emitOpError() << "attribute 'group_size' (" << groupSize
                             << ") must divide the batch size B = " << batch << " of '" << name
                             << "'";
  mixedRows = ShapedType::isDynamic(batch) || ShapedType::isDynamic(seq)
                  ? ShapedType::kDynamic
                  : batch / groupSize * seq;
  return success();
}

LogicalResult TokenMixOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getX(), "operand", "x", "[B, S, D]")) ||
      failed(check.weight(getController(), "controller", "[E, D]")) ||
      failed(check.dim(getX(), "operand", "x", 2, "D", dimOf(getController(), 1),
                       "the input size of 'controller'")) ||
      failed(positiveFinite(*this, "temperature", getTemperature().convertToDouble())))
    return failure();
  int64_t numExperts = dimOf(getController(), 0), hidden = dimOf(getController(), 1), rows;
  if (failed(verifyGrouping(*this, getX(), "x", getGroupSize(), rows)))
    return failure();
  if (failed(check.rank(getMixed(), "result", "mixed", "[E, N, D]")) ||
      failed(check.staticDim(getMixed(), "result", "mixed", 0, "E", numExperts,
                             "the number of experts")) ||
      failed(check.dim(getMixed(), "result", "mixed", 1, "N", rows, "(B / group_size) * S")) ||
      failed(check.staticDim(getMixed(), "result", "mixed", 2, "D", hidden,
                             "the hidden size")) ||
      failed(check.rank(getEmitWeights(), "result", "emit_weights", "[B, S, E]")) ||
      failed(check.dim(getEmitWeights(), "result", "emit_weights", 0, "B", dimOf(getX(), 0),
                       "the batch size of 'x'")) ||
      failed(check.dim(getEmitWeights(), "result", "emit_weights", 1, "S", dimOf(getX(), 1),
                       "the sequence length of 'x'")) ||
      failed(check.staticDim(getEmitWeights(), "result", "emit_weights", 2, "E", numExperts,
                             "the number of experts")))
    return failure();
  return success();
}

LogicalResult BatchedExpertFFNOp::verify() {
  ShapeChecker check(*this);
  if (failed(routedOnlyActivation(*this, getActivation())) ||
      failed(check.rank(getZ(), "operand", "z", "[E, N, D]")))
    return failure();
  int64_t numExperts = dimOf(getZ(), 0);
  if (ShapedType::isDynamic(numExperts))
    return emitOpError() << "operand 'z' must have a static expert count E, got "
                         << shapeString(getZ().getType());
  ExpertWeightShape shape;
  if (failed(verifyExpertWeights(*this, getGate(), getUp(), getDown(), numExperts,
                                 dimOf(getZ(), 2), shape)))
    return failure();
  if (getH().getType() != getZ().getType())
    return emitOpError() << "result 'h' must have the type of operand 'z' (" << getZ().getType()
                         << "), got " << getH().getType();
  return success();
}

LogicalResult TokenEmitOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getH(), "operand", "h", "[E, N, D]")) ||
      failed(check.rank(getEmitWeights(), "operand", "emit_weights", "[B, S, E]")) ||
      failed(check.dim(getEmitWeights(), "operand", "emit_weights", 2, "E", dimOf(getH(), 0),
                       "the expert count of 'h'")))
    return failure();
  int64_t rows;
  if (failed(verifyGrouping(*this, getEmitWeights(), "emit_weights", getGroupSize(), rows)) ||
      failed(check.dim(getH(), "operand", "h", 1, "N", rows, "(B / group_size) * S")) ||
      failed(check.rank(getY(), "result", "y", "[B, S, D]")) ||
      failed(check.dim(getY(), "result", "y", 0, "B", dimOf(getEmitWeights(), 0),
                       "the batch size of 'emit_weights'")) ||
      failed(check.dim(getY(), "result", "y", 1, "S", dimOf(getEmitWeights(), 1),
                       "the sequence length of 'emit_weights'")) ||
      failed(check.staticDim(getY(), "result", "y", 2, "D", dimOf(getH(), 2),
                             "the row size of 'h'")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// Auxiliary results
//===----------------------------------------------------------------------===//

LogicalResult LoadBalancingLossOp::verify() {
  ShapeChecker check(*this);
  if (failed(check.rank(getLogits(), "operand", "logits", "[T, E]")) ||
      failed(check.rank(getExperts(), "operand", "experts", "[T, k]")) ||
      failed(check.dim(getExperts(), "operand", "experts", 0, "T", dimOf(getLogits(), 0),
                       "the token count of 'logits'")))
    return failure();
  if (ShapedType::isDynamic(dimOf(getLogits(), 1)))
    return emitOpError() << "operand 'logits' must have a static expert count E, got "
                         << shapeString(getLogits().getType());
  return success();
}

LogicalResult ZLossOp::verify() {
  ShapeChecker check(*this);
  return check.rank(getLogits(), "operand", "logits", "[T, E]");
}

//===----------------------------------------------------------------------===//
// Layer ops
//===----------------------------------------------------------------------===//

LogicalResult TokenChoiceMoEOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(verifyPerExpertVector(check, getRouterBias(), "router_bias", numExperts)) ||
      failed(verifyPerExpertVector(check, getSelectionBias(), "selection_bias", numExperts)) ||
      failed(verifySelection(*this, numExperts, getK(), getNGroup(), getTopkGroup(),
                             getGroupScore(), getNormEpsilon().convertToDouble(),
                             getScale().convertToDouble())) ||
      failed(verifyCapacityAttrs(*this, getCapacity(), getCapacityFactor(),
                                 /*required=*/false)))
    return failure();
  ExpertWeightShape shape;
  if (failed(verifyExpertWeights(*this, getGate(), getUp(), getDown(), numExperts, hidden,
                                 shape)) ||
      failed(verifyExpertScales(*this, shape, getGate(), getUp(), getDown(), getGateScale(),
                                getUpScale(), getDownScale(), getWeightBlock())) ||
      failed(verifyExpertExtras(*this, check, shape, getGateBias(), getUpBias(), getDownBias(),
                                getActivation(), getSwigluAlpha().convertToDouble(),
                                getSwigluLimit().convertToDouble())) ||
      failed(verifySharedExperts(check, getSharedGate(), getSharedUp(), getSharedDown(),
                                 getSharedExpertGate(), hidden)))
    return failure();
  if (getSharedUp() && getActivation() == Activation::swiglu_oai)
    return emitOpError() << "activation 'swiglu_oai' is not supported with shared experts";
  if (failed(sameTokenDtype(*this, getX(), "x", getOutput(), "output")))
    return failure();
  return verifyLayerResults(check, getOutput(), getRouterLogits(), dimOf(getX(), 0), hidden,
                            numExperts);
}

LogicalResult ExpertChoiceMoEOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(positiveFinite(*this, "capacity_factor",
                            getCapacityFactor().convertToDouble())))
    return failure();
  ExpertWeightShape shape;
  if (failed(verifyExpertWeights(*this, getGate(), getUp(), getDown(), numExperts, hidden,
                                 shape)) ||
      failed(routedOnlyActivation(*this, getActivation())))
    return failure();
  if (failed(sameTokenDtype(*this, getX(), "x", getOutput(), "output")))
    return failure();
  return verifyLayerResults(check, getOutput(), getRouterLogits(), dimOf(getX(), 0), hidden,
                            numExperts);
}

LogicalResult MixtureOfTokensOp::verify() {
  ShapeChecker check(*this);
  if (failed(routedOnlyActivation(*this, getActivation())) ||
      failed(check.rank(getX(), "operand", "x", "[B, S, D]")) ||
      failed(check.weight(getController(), "controller", "[E, D]")) ||
      failed(check.dim(getX(), "operand", "x", 2, "D", dimOf(getController(), 1),
                       "the input size of 'controller'")) ||
      failed(positiveFinite(*this, "temperature", getTemperature().convertToDouble())))
    return failure();
  int64_t numExperts = dimOf(getController(), 0), hidden = dimOf(getController(), 1), rows;
  if (!getTransition() && failed(verifyGrouping(*this, getX(), "x", getGroupSize(), rows)))
    return failure();
  if (getTransition() && !getK())
    return emitOpError() << "transition mode needs attribute 'k', the experts per token";
  if (!getTransition() && getK())
    return emitOpError() << "attribute 'k' applies only in transition mode ('transition')";
  if (failed(verifyOptionalK(*this, getK(), numExperts)))
    return failure();
  ExpertWeightShape shape;
  if (failed(verifyExpertWeights(*this, getGate(), getUp(), getDown(), numExperts, hidden,
                                 shape)))
    return failure();
  if (getOutput().getType() != getX().getType())
    return emitOpError() << "result 'output' must have the type of operand 'x' ("
                         << getX().getType() << "), got " << getOutput().getType();
  return success();
}

LogicalResult MoVOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(verifyOptionalK(*this, getK(), numExperts)) ||
      failed(check.rank(getH(), "operand", "h", "[T, H]")) ||
      failed(check.dim(getH(), "operand", "h", 0, "T", dimOf(getX(), 0),
                       "the token count of 'x'")) ||
      failed(check.weight(getVectors(), "vectors", "[E, H]")) ||
      failed(check.staticDim(getVectors(), "operand", "vectors", 0, "E", numExperts,
                             "the number of router rows")) ||
      failed(check.dim(getH(), "operand", "h", 1, "H", dimOf(getVectors(), 1),
                       "the row size of 'vectors'")))
    return failure();
  if (getY().getType() != getH().getType())
    return emitOpError() << "result 'y' must have the type of operand 'h' (" << getH().getType()
                         << "), got " << getY().getType();
  return success();
}

LogicalResult MoLoRAOp::verify() {
  ShapeChecker check(*this);
  int64_t numExperts, hidden;
  if (failed(verifyRouter(check, getX(), getRouter(), "router", numExperts, hidden)) ||
      failed(verifyOptionalK(*this, getK(), numExperts)) ||
      failed(check.weight(getBase(), "base", "[D_out, D_in]")) ||
      failed(check.staticDim(getBase(), "operand", "base", 1, "D_in", hidden,
                             "the input size of 'router'")) ||
      failed(verifyLoRA(check, getLoraA(), getLoraB(), numExperts, hidden,
                        dimOf(getBase(), 0))) ||
      failed(finiteAttr(*this, "alpha", getAlpha().convertToDouble())))
    return failure();
  if (failed(sameTokenDtype(*this, getX(), "x", getY(), "y")))
    return failure();
  return verifyTokenResult(check, getY(), "y", "[T, D_out]", dimOf(getX(), 0),
                           {dimOf(getBase(), 0)}, {"D_out"});
}

//===----------------------------------------------------------------------===//
// Fusion groups
//===----------------------------------------------------------------------===//

LogicalResult KernelOp::verify() {
  Block &body = getBody().front();
  auto yield = body.empty() ? YieldOp() : dyn_cast<YieldOp>(&body.back());
  if (!yield)
    return emitOpError() << "body must end in 'mix.yield'";
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError() << "yields " << yield.getValues().size()
                         << " values whose types must match the kernel's "
                         << getNumResults() << " results";
  if (getKind().empty())
    return emitOpError() << "attribute 'kind' must name the fusion pattern";
  return success();
}
