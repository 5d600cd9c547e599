// mix-decompose: rewrites layer ops (mix.token_choice_moe, ...) into the primitives that
// passes fuse and tile. Pure IR rewriting: no scheduling decision, no emission.
#include "dialect/MixOps.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mlir::mix {
#define GEN_PASS_DEF_DECOMPOSELAYERS
#include "passes/Passes.h.inc"
} // namespace mlir::mix

using namespace mlir;
using namespace mlir::mix;

namespace {

RankedTensorType tensorOf(ArrayRef<int64_t> shape, Type element) {
  return RankedTensorType::get(shape, element);
}

int64_t dimOf(Value v, unsigned i) { return cast<RankedTensorType>(v.getType()).getDimSize(i); }

/// The routed-expert chain shared by token-choice layers and the MoT transition mode:
/// dispatch → expert_ffn → combine into `init`. Returns the combined output.
Value buildRoutedExperts(OpBuilder &b, Location loc, Value x, Value weights, Value experts,
                         int64_t numExperts, ValueRange gate, ValueRange up, ValueRange down,
                         ActivationAttr activation, Value init, ValueRange gateScale = {},
                         ValueRange upScale = {}, ValueRange downScale = {},
                         DenseI64ArrayAttr weightBlock = {}, TokenChoiceMoEOp layer = {}) {
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t hidden = dimOf(x, 1);
  auto dispatch = DispatchOp::create(
      b, loc, TypeRange{tensorOf({numExperts + 1}, i32), tensorOf({ShapedType::kDynamic}, i32),
                        tensorOf({ShapedType::kDynamic}, f32)},
      weights, experts, b.getI64IntegerAttr(numExperts));
  // Expert biases and the clamped SwiGLU's constants (gpt-oss) come with a token-choice layer.
  auto ffn = ExpertFFNOp::create(
      b, loc, tensorOf({ShapedType::kDynamic, hidden}, f32), x, dispatch.getOffsets(),
      dispatch.getTokens(), gate, up, down, gateScale, upScale, downScale,
      layer ? layer.getGateBias() : Value(), layer ? layer.getUpBias() : Value(),
      layer ? layer.getDownBias() : Value(), activation,
      layer ? layer.getSwigluAlphaAttr() : b.getF64FloatAttr(1.702),
      layer ? layer.getSwigluLimitAttr() : b.getF64FloatAttr(7.0), weightBlock);
  return CombineOp::create(b, loc, ffn.getH(), dispatch.getTokens(), dispatch.getGates(), init)
      .getY();
}

void decompose(TokenChoiceMoEOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value x = op.getX();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t tokens = dimOf(x, 0), k = op.getK();
  int64_t numExperts = dimOf(op.getRouter(), 0);

  auto route = RouteOp::create(
      b, loc,
      TypeRange{tensorOf({tokens, k}, f32), tensorOf({tokens, k}, i32),
                tensorOf({tokens, numExperts}, f32)},
      x, op.getRouter(), op.getRouterBias(), op.getSelectionBias(), op.getKAttr(),
      op.getScoringAttr(), op.getNormalizeAttr(), op.getNormEpsilonAttr(), op.getScaleAttr(),
      op.getNGroupAttr(), op.getTopkGroupAttr(), op.getGroupScoreAttr());
  Value experts = route.getExperts();
  if (op.getCapacity() || op.getCapacityFactor())
    experts = CapacityOp::create(b, loc, experts.getType(), experts,
                                 b.getI64IntegerAttr(numExperts), op.getCapacityAttr(),
                                 op.getCapacityFactorAttr())
                  .getKept();

  // Shared experts run on every token; the routed experts add into their output.
  Value init;
  if (op.getSharedUp()) {
    init = FFNOp::create(b, loc, x.getType(), x, op.getSharedGate(), op.getSharedUp(),
                         op.getSharedDown(), op.getActivationAttr())
               .getY();
    if (op.getSharedExpertGate())
      init = SigmoidGateOp::create(b, loc, init.getType(), x, op.getSharedExpertGate(), init)
                 .getGated();
  } else {
    init = ZerosLikeOp::create(b, loc, x).getZeros();
  }
  Value output = buildRoutedExperts(b, loc, x, route.getWeights(), experts, numExperts,
                                    op.getGate(), op.getUp(), op.getDown(),
                                    op.getActivationAttr(), init, op.getGateScale(),
                                    op.getUpScale(), op.getDownScale(), op.getWeightBlockAttr(),
                                    op);
  op.getOutput().replaceAllUsesWith(output);
  if (Value logits = op.getRouterLogits())
    logits.replaceAllUsesWith(route.getLogits());
  if (Value aux = op.getAuxLoss())
    aux.replaceAllUsesWith(
        LoadBalancingLossOp::create(b, loc, aux.getType(), route.getLogits(), experts));
  if (Value z = op.getZLoss())
    z.replaceAllUsesWith(ZLossOp::create(b, loc, z.getType(), route.getLogits()));
  op.erase();
}

void decompose(ExpertChoiceMoEOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value x = op.getX();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t numExperts = dimOf(op.getRouter(), 0);
  auto choice = ExpertChoiceOp::create(
      b, loc,
      TypeRange{tensorOf({numExperts + 1}, i32), tensorOf({ShapedType::kDynamic}, i32),
                tensorOf({ShapedType::kDynamic}, f32), tensorOf({dimOf(x, 0), numExperts}, f32)},
      x, op.getRouter(), op.getCapacityFactorAttr());
  auto ffn = ExpertFFNOp::create(b, loc, tensorOf({ShapedType::kDynamic, dimOf(x, 1)}, f32), x,
                                 choice.getOffsets(), choice.getTokens(), op.getGate(),
                                 op.getUp(), op.getDown(), ValueRange(), ValueRange(),
                                 ValueRange(), Value(), Value(), Value(),
                                 op.getActivationAttr(), b.getF64FloatAttr(1.702),
                                 b.getF64FloatAttr(7.0), DenseI64ArrayAttr());
  Value zeros = ZerosLikeOp::create(b, loc, x).getZeros();
  Value output =
      CombineOp::create(b, loc, ffn.getH(), choice.getTokens(), choice.getGates(), zeros).getY();
  op.getOutput().replaceAllUsesWith(output);
  if (Value logits = op.getRouterLogits())
    logits.replaceAllUsesWith(choice.getLogits());
  if (Value z = op.getZLoss())
    z.replaceAllUsesWith(ZLossOp::create(b, loc, z.getType(), choice.getLogits()));
  op.erase();
}

void decompose(MixtureOfTokensOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value x = op.getX();
  Type f32 = b.getF32Type(), i32 = b.getI32Type();
  int64_t batch = dimOf(x, 0), seq = dimOf(x, 1), hidden = dimOf(x, 2);
  int64_t numExperts = dimOf(op.getController(), 0);

  if (op.getTransition()) {
    // Decoding: every token routes itself to its top-k experts (softmax, renormalized).
    int64_t tokens = ShapedType::isDynamic(batch) || ShapedType::isDynamic(seq)
                         ? ShapedType::kDynamic
                         : batch * seq;
    SmallVector<ReassociationIndices> groups = {{0, 1}, {2}};
    Value flat = tensor::CollapseShapeOp::create(b, loc, tensorOf({tokens, hidden}, f32), x,
                                                 groups);
    int64_t k = *op.getK();
    auto route = RouteOp::create(
        b, loc,
        TypeRange{tensorOf({tokens, k}, f32), tensorOf({tokens, k}, i32),
                  tensorOf({tokens, numExperts}, f32)},
        flat, op.getController(), Value(), Value(), b.getI64IntegerAttr(k),
        ScoringAttr::get(b.getContext(), Scoring::softmax), b.getUnitAttr(),
        b.getF64FloatAttr(0.0), b.getF64FloatAttr(1.0), b.getI64IntegerAttr(1),
        b.getI64IntegerAttr(1), GroupScoreAttr::get(b.getContext(), GroupScore::max));
    Value zeros = ZerosLikeOp::create(b, loc, flat).getZeros();
    Value out = buildRoutedExperts(b, loc, flat, route.getWeights(), route.getExperts(),
                                   numExperts, op.getGate(), op.getUp(), op.getDown(),
                                   op.getActivationAttr(), zeros);
    SmallVector<OpFoldResult> shape;
    for (unsigned i = 0; i < 2; ++i)
      shape.push_back(ShapedType::isDynamic(dimOf(x, i))
                          ? OpFoldResult(tensor::DimOp::create(b, loc, x, i).getResult())
                          : OpFoldResult(b.getIndexAttr(dimOf(x, i))));
    shape.push_back(b.getIndexAttr(hidden));
    Value output = tensor::ExpandShapeOp::create(b, loc, x.getType(), out, groups, shape);
    op.getOutput().replaceAllUsesWith(output);
    op.erase();
    return;
  }

  int64_t groupSize = op.getGroupSize();
  int64_t rows = ShapedType::isDynamic(batch) || ShapedType::isDynamic(seq)
                     ? ShapedType::kDynamic
                     : batch / groupSize * seq;
  auto mix = TokenMixOp::create(
      b, loc, TypeRange{tensorOf({numExperts, rows, hidden}, f32),
                        tensorOf({batch, seq, numExperts}, f32)},
      x, op.getController(), op.getGroupSizeAttr(), op.getTemperatureAttr(), op.getEmitAttr());
  auto ffn = BatchedExpertFFNOp::create(b, loc, mix.getMixed().getType(), mix.getMixed(),
                                        op.getGate(), op.getUp(), op.getDown(),
                                        op.getActivationAttr());
  Value output = TokenEmitOp::create(b, loc, x.getType(), ffn.getH(), mix.getEmitWeights(),
                                     op.getGroupSizeAttr());
  op.getOutput().replaceAllUsesWith(output);
  op.erase();
}

/// The dense router probabilities a lightweight-expert layer mixes its experts by.
Value softRoute(OpBuilder &b, Location loc, Value x, Value router, IntegerAttr k) {
  auto type = tensorOf({dimOf(x, 0), dimOf(router, 0)}, b.getF32Type());
  return SoftRouteOp::create(b, loc, type, x, router, k);
}

void decompose(MoVOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value probs = softRoute(b, loc, op.getX(), op.getRouter(), op.getKAttr());
  Value y = MixVectorsOp::create(b, loc, op.getY().getType(), op.getH(), probs, op.getVectors());
  op.getY().replaceAllUsesWith(y);
  op.erase();
}

void decompose(MoLoRAOp op) {
  OpBuilder b(op);
  Location loc = op.getLoc();
  Value probs = softRoute(b, loc, op.getX(), op.getRouter(), op.getKAttr());
  Value base = LinearOp::create(b, loc, op.getY().getType(), op.getX(), op.getBase(), Value());
  Value y = MixLoRAOp::create(b, loc, op.getX(), probs, op.getLoraA(), op.getLoraB(), base,
                              op.getAlphaAttr());
  op.getY().replaceAllUsesWith(y);
  op.erase();
}

/// A layer whose tokens are bf16 or f16 computes in f32 (layers.md, Conventions): its first
/// `tokenOperands` operands are widened at its entry and its output (result 0) is rounded
/// once, at its exit; in between it is an f32 layer and decomposes like one.
void computeInF32(Operation *op, unsigned tokenOperands) {
  OpBuilder b(op);
  Type f32 = b.getF32Type();
  for (unsigned i = 0; i < tokenOperands; ++i) {
    Value v = op->getOperand(i);
    auto type = cast<RankedTensorType>(v.getType());
    if (!type.getElementType().isF32())
      op->setOperand(i, arith::ExtFOp::create(b, op->getLoc(), type.clone(f32), v));
  }
  Value output = op->getResult(0);
  auto type = cast<RankedTensorType>(output.getType());
  if (type.getElementType().isF32())
    return;
  b.setInsertionPointAfter(op);
  output.setType(type.clone(f32));
  auto rounded = arith::TruncFOp::create(b, op->getLoc(), type, output);
  output.replaceAllUsesExcept(rounded, rounded);
}

struct DecomposeLayersPass : mix::impl::DecomposeLayersBase<DecomposeLayersPass> {
  void runOnOperation() override {
    SmallVector<Operation *> layers;
    getOperation().walk([&](Operation *op) {
      if (isa<TokenChoiceMoEOp, ExpertChoiceMoEOp, MixtureOfTokensOp, MoVOp, MoLoRAOp>(op))
        layers.push_back(op);
    });
    for (Operation *op : layers) {
      computeInF32(op, isa<MoVOp>(op) ? 2 : 1);
      llvm::TypeSwitch<Operation *>(op)
          .Case<TokenChoiceMoEOp, ExpertChoiceMoEOp, MixtureOfTokensOp, MoVOp, MoLoRAOp>(
              [](auto layer) { decompose(layer); });
    }
  }
};

} // namespace
