// Ops, enums and attributes of the mix dialect (generated from MixOps.td) and the few
// helpers other layers use to read them. Owns IR only.
#ifndef MIXTILE_DIALECT_MIXOPS_H
#define MIXTILE_DIALECT_MIXOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialect/MixDialect.h"
#include "dialect/MixEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dialect/MixAttrs.h.inc"

namespace mlir::mix {
/// Size bounds of every tensor a mix op takes or gives (docs/MixDialect.md, "Bounds"): each
/// static dim at most kMaxDim, each tensor's static dims together at most kMaxElements, so no
/// size product the compiler or the generated code forms can overflow 64 bits.
inline constexpr int64_t kMaxDim = int64_t(1) << 24;
inline constexpr int64_t kMaxElements = int64_t(1) << 40;
/// Why `type` breaks the bounds ("has a dim of N, past ..."), or "" when it keeps them.
std::string shapeBoundViolation(Type type);
LogicalResult verifyBoundedShapes(Operation *op);
} // namespace mlir::mix

namespace mlir::OpTrait {
/// Every mix op carries it (Mix_Op): its operands' and results' shapes are within the bounds.
template <typename ConcreteType>
class MixBoundedShapes : public TraitBase<ConcreteType, MixBoundedShapes> {
public:
  static LogicalResult verifyTrait(Operation *op) { return ::mlir::mix::verifyBoundedShapes(op); }
};
} // namespace mlir::OpTrait

#define GET_OP_CLASSES
#include "dialect/MixOps.h.inc"

namespace mlir::mix {

/// The shapes an expert FFN's weights describe, however they are stored.
struct ExpertWeightShape {
  int64_t numExperts = 0;
  int64_t hidden = 0;       // D: the model dimension the FFN reads and writes.
  int64_t intermediate = 0; // F: the expert's hidden width.
  bool gated = false;       // gate weights present (SwiGLU, GeGLU).
  bool stacked = false;     // one [E, out, in] tensor per role, else E tensors [out, in].
  Type elementType;
};

/// Checks the gate/up/down weights of E experts against the model dimension D and fills
/// `shape`. Emits an error on `op` naming the operand and rule on failure.
LogicalResult verifyExpertWeights(Operation *op, ValueRange gate, ValueRange up,
                                  ValueRange down, int64_t numExperts, int64_t hidden,
                                  ExpertWeightShape &shape);

/// Checks the block scales of fp8 expert weights (f8E4M3FN, per expert: `weight_block` set and
/// one f32 [ceil(rows / r), ceil(cols / c)] scale tensor per weight, in `gate_scale`,
/// `up_scale`, `down_scale`), and that weights of other dtypes come without them.
LogicalResult verifyExpertScales(Operation *op, const ExpertWeightShape &shape, ValueRange gate,
                                 ValueRange up, ValueRange down, ValueRange gateScale,
                                 ValueRange upScale, ValueRange downScale,
                                 std::optional<ArrayRef<int64_t>> block);

} // namespace mlir::mix

#endif // MIXTILE_DIALECT_MIXOPS_H
