// libFuzzer target: the .mlir front door of mixtilec: parse, verify, the CPU pipeline
// (decompose, CSE, fuse, tile) and the C++ emission, in memory. Bad IR must end in a
// diagnostic, never in a crash or an abort.
#include "codegen/Artifact.h"
#include "dialect/MixDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"

#include <string>

using namespace mlir;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static DialectRegistry *registry = [] {
    auto *r = new DialectRegistry();
    r->insert<mix::MixDialect, func::FuncDialect, arith::ArithDialect, tensor::TensorDialect>();
    return r;
  }();
  // A fresh context per input: nothing a previous input interned changes this one.
  MLIRContext ctx(*registry, MLIRContext::Threading::DISABLED);
  ctx.loadAllAvailableDialects();
  ctx.allowUnregisteredDialects(false);
  ctx.getDiagEngine().registerHandler([](Diagnostic &) { return success(); });
  std::string text(reinterpret_cast<const char *>(data), size);
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(text, &ctx);
  if (!module || failed(verify(*module)))
    return 0;
  PassManager pm(&ctx);
  pm.addPass(mix::createDecomposeLayers());
  pm.addPass(createCSEPass());
  pm.addPass(mix::createFuseKernels());
  mix::TileKernelsOptions options;
  options.target = "cpu";
  options.cpu = "x86-64-v4";
  pm.addPass(mix::createTileKernels(options));
  if (failed(pm.run(*module)))
    return 0;
  (void)mix::codegen::emitCpuArtifact(*module, "fuzz");
  return 0;
}
