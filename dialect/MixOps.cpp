// The generated op definitions of the mix dialect. Verifiers live in MixVerify.cpp.
#include "dialect/MixOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace mlir::mix;

#define GET_OP_CLASSES
#include "dialect/MixOps.cpp.inc"
