// Registers Mixtile's passes and the per-target pipelines (decompose → fuse → tile), and
// holds the built-in tuning tables compiled in from passes/tuning/*.json.
#include "passes/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

using namespace mlir;

namespace {
const char kCpuTuningTable[] =
#include "passes/tuning/cpu.json.inc"
    ;
const char kCudaTuningTable[] =
#include "passes/tuning/cuda.json.inc"
    ;
const char kCpuAmxTuningTable[] =
#include "passes/tuning/cpu-amx_bf16.json.inc"
    ;
const char kCpuAvx512Bf16TuningTable[] =
#include "passes/tuning/cpu-avx512_bf16.json.inc"
    ;
const char kCpuIntelTuningTable[] =
#include "passes/tuning/cpu-intel.json.inc"
    ;
} // namespace

StringRef mlir::mix::builtinTuningTable(StringRef target) {
  if (target == "cpu")
    return kCpuTuningTable;
  if (target == "cuda")
    return kCudaTuningTable;
  if (target == "cpu-amx_bf16")
    return kCpuAmxTuningTable;
  if (target == "cpu-avx512_bf16")
    return kCpuAvx512Bf16TuningTable;
  if (target == "cpu-intel")
    return kCpuIntelTuningTable;
  return "";
}

void mlir::mix::buildTargetPipeline(OpPassManager &pm, StringRef target,
                                    StringRef tuningTable) {
  OpPassManager &func = pm.nest<func::FuncOp>();
  func.addPass(createDecomposeLayers());
  func.addPass(createCSEPass());
  func.addPass(createFuseKernels());
  TileKernelsOptions options;
  options.target = target.str();
  options.table = tuningTable.str();
  func.addPass(createTileKernels(options));
}

void mlir::mix::registerMixtilePassesAndPipelines() {
  registerMixtilePasses();
  PassPipelineRegistration<>("mix-cpu-pipeline",
                             "Decompose, fuse and tile mix layers for the CPU target",
                             [](OpPassManager &pm) { buildTargetPipeline(pm, "cpu"); });
  PassPipelineRegistration<>("mix-cuda-pipeline",
                             "Decompose, fuse and tile mix layers for the CUDA target",
                             [](OpPassManager &pm) { buildTargetPipeline(pm, "cuda"); });
}
