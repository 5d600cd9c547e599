// libFuzzer target: the Hugging Face config importer (mixtilec --hf-config), the input being
// config.json: one sparse layer (importHFConfig, per-expert and fused layouts) and the whole
// model (importHFModel). An import either fails with one line of valid UTF-8 naming what is
// wrong, or gives a module the verifier accepts; anything else (a crash, an abort, an
// allocation past the sanitizer's limit, a module the verifier rejects) is a finding.
#include "dialect/MixDialect.h"
#include "passes/import/HFConfig.h"
#include "test/fuzz/FuzzCommon.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <memory>
#include "mlir/IR/Verifier.h"

#include <string>

using namespace mlir;
using namespace mixtile_fuzz;

namespace {

/// A context shared by consecutive inputs (making one per input costs most of the time), made
/// afresh every 4096 inputs: the types and attributes each input interns would otherwise pile
/// up until libFuzzer's RSS limit (a mixtilec process imports one config).
MLIRContext &context() {
  static std::unique_ptr<MLIRContext> ctx;
  static unsigned uses = 0;
  if (!ctx || ++uses % 4096 == 0) {
    DialectRegistry registry;
    registry.insert<mix::MixDialect, func::FuncDialect, arith::ArithDialect,
                    tensor::TensorDialect>();
    ctx = std::make_unique<MLIRContext>(registry);
    ctx->loadAllAvailableDialects();
    // The importer reports through its error string; a verifier failure is a finding anyway.
    ctx->getDiagEngine().registerHandler([](Diagnostic &) { return success(); });
  }
  return *ctx;
}

void check(OwningOpRef<ModuleOp> module, const std::string &error, const char *where) {
  if (!module) {
    checkMessage(error, where);
    return;
  }
  if (failed(verify(*module))) {
    std::fprintf(stderr, "%s: the imported module does not verify\n", where);
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string path = scratch() + "/config.json";
  writeFile(path, data, size);
  MLIRContext &ctx = context();
  for (bool fused : {false, true}) {
    std::string name, error;
    // fp8InPlace as for an AVX-512 CPU (mixtilec's default there): fp8 configs import their
    // experts as f8E4M3FN operands with block scales, which must verify too.
    check(mix::importHFConfig(&ctx, path, -1, "", "", name, error, fused, /*fp8InPlace=*/true), error,
          fused ? "importHFConfig(fused)" : "importHFConfig");
  }
  std::string name, error;
  check(mix::importHFModel(&ctx, path, "", name, error, /*fp8InPlace=*/true), error, "importHFModel");
  return 0;
}
