// Declarations and registration of Mixtile's passes and per-target pipelines. Passes
// rewrite mix IR only; emission belongs to codegen/.
#ifndef MIXTILE_PASSES_PASSES_H
#define MIXTILE_PASSES_PASSES_H

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"

namespace mlir::mix {

#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The passes that take layer ops to tiled kernels for `target` ("cpu" or "cuda"):
/// decompose → fuse → tile, with canonicalization and verification between.
void buildTargetPipeline(OpPassManager &pm, StringRef target, StringRef tuningTable = "");

/// Registers every Mixtile pass and the `mix-cpu-pipeline` / `mix-cuda-pipeline` pipelines.
void registerMixtilePassesAndPipelines();

/// The built-in tuning table of `target` (JSON text), or an empty string if there is none.
StringRef builtinTuningTable(StringRef target);

} // namespace mlir::mix

#endif // MIXTILE_PASSES_PASSES_H
