// mixtilec: the compiler driver. Reads mix IR (or a Hugging Face config through the importer),
// runs the target pipeline and writes the artifact. It owns the command line and the order of
// stages only; every decision is made by passes/ and codegen/.
#include "codegen/Artifact.h"
#include "dialect/MixDialect.h"
#include "dialect/MixOps.h"
#include "passes/CpuTarget.h"
#include "passes/Passes.h"
#include "passes/import/HFConfig.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <atomic>

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<layer.mlir>"), cl::init(""));
static cl::opt<std::string> hfConfig("hf-config",
                                     cl::desc("Hugging Face config.json of an MoE model"),
                                     cl::value_desc("config.json"), cl::init(""));
static cl::opt<int> layerIndex("layer", cl::desc("Layer whose sparse block to compile"),
                               cl::init(-1));
static cl::opt<bool> wholeModel(
    "model",
    cl::desc("With --hf-config: compile the whole decoder-only model (embedding, attention, "
             "every layer, lm head) into one artifact with a `forward` entry point over KV caches"),
    cl::init(false));
static cl::opt<std::string> dtype("dtype",
                                  cl::desc("Weight dtype of the checkpoint: f32, bf16 or f16"),
                                  cl::init(""));
static cl::opt<std::string> tokenDtype(
    "token-dtype",
    cl::desc("With --hf-config: dtype of the hidden states the block takes and returns (f32, "
             "bf16 or f16; default: the weights' dtype, as the model does)"),
    cl::init(""));
static cl::opt<bool> fusedExperts(
    "fused-experts",
    cl::desc("With --hf-config (one layer): take the experts as transformers 5.x holds them in "
             "memory, mlp.experts.gate_up_proj [E, 2F, D] and mlp.experts.down_proj [E, D, F]"),
    cl::init(false));
static cl::opt<std::string> cpu(
    "cpu",
    cl::desc("CPU the cpu target compiles for: native (the host, default), x86-64, x86-64-v3, "
             "x86-64-v4, sapphirerapids, cooperlake, znver4 or znver5"),
    cl::init("native"));
static cl::opt<std::string> target("target", cl::desc("Target: cpu or cuda"), cl::init("cpu"));
static cl::opt<std::string> emit("emit", cl::desc("What to emit: mlir, source or lib"),
                                 cl::init("lib"));
static cl::opt<std::string> outputDir("o", cl::desc("Output directory"),
                                      cl::value_desc("OUTDIR"), cl::init(""));
static cl::opt<std::string> tuningTable("tuning-table",
                                        cl::desc("Tuning table JSON instead of the built-in one"),
                                        cl::init(""));

static int fail(const Twine &message) {
  llvm::errs() << "mixtilec: error: " << message << "\n";
  return 1;
}

/// The IR after each stage, as `mlir` emits it: (file name, text).
using Stages = std::vector<std::pair<std::string, std::string>>;

static std::string print(ModuleOp module) {
  std::string text;
  llvm::raw_string_ostream os(text);
  module.print(os);
  return text;
}

static LogicalResult runStage(ModuleOp module, StringRef name, Stages &stages,
                              function_ref<void(OpPassManager &)> addPasses) {
  PassManager pm(module.getContext());
  addPasses(pm.nest<func::FuncOp>());
  if (failed(pm.run(module)))
    return failure();
  stages.emplace_back(name.str(), print(module));
  return success();
}

// SIGINT/SIGTERM (the first one) are noted, not obeyed at once: the compile goes on to a
// point where the temporary directory can be removed, then nothing is swapped in and the
// previous OUTDIR, if any, stays as it was. (A compiler child in the same process group gets
// the terminal's interrupt too and stops at once.)
static std::atomic<bool> interruptedFlag{false};
static void noteInterrupt() { interruptedFlag = true; }

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  llvm::sys::SetInterruptFunction(noteInterrupt);
  cl::ParseCommandLineOptions(argc, argv,
                              "mixtilec: compile a sparse layer (mix IR or a Hugging Face "
                              "config) into a header, readable kernels and a library\n");
  if (inputFile.empty() == hfConfig.empty())
    return fail("give exactly one input: LAYER.mlir or --hf-config CONFIG.json");
  if (outputDir.empty())
    return fail("missing -o OUTDIR");
  if (target != "cpu" && target != "cuda")
    return fail("unknown --target '" + target + "' (expected cpu or cuda)");
  if (emit != "mlir" && emit != "source" && emit != "lib")
    return fail("unknown --emit '" + emit + "' (expected mlir, source or lib)");
  if (!hfConfig.empty() || layerIndex >= 0 || !dtype.empty() || !tokenDtype.empty()) {
    if (hfConfig.empty())
      return fail("--layer, --dtype and --token-dtype apply only with --hf-config");
  }
  if (!dtype.empty() && dtype != "f32" && dtype != "bf16" && dtype != "f16")
    return fail("unknown --dtype '" + dtype + "' (expected f32, bf16 or f16)");
  if (wholeModel && hfConfig.empty())
    return fail("--model applies only with --hf-config");
  if (wholeModel && (layerIndex.getNumOccurrences() || !tokenDtype.empty()))
    return fail("--layer and --token-dtype do not apply with --model (it compiles every layer; "
                "its hidden states stay f32 between layers)");
  if (fusedExperts && (hfConfig.empty() || wholeModel))
    return fail("--fused-experts applies only with --hf-config, to one layer (not --model)");
  if (layerIndex.getNumOccurrences() && layerIndex < 0)
    return fail("--layer must be >= 0, got " + Twine(layerIndex.getValue()));
  if (cpu.getNumOccurrences() && target != "cpu")
    return fail("--cpu applies only to --target cpu");
  // The CPU kernels multiply fp8 expert weights in place where the CPU has AVX-512 (BW, VL: the
  // codes are converted in vector registers); elsewhere, and on the CUDA target, the runtime
  // dequantizes them when binding (a scalar conversion per use would cost more than the copy).
  bool fp8InPlace = false;
  {
    std::string error;
    std::optional<mix::CpuTarget> resolved = mix::resolveCpuTarget(cpu, error);
    if (!resolved)
      return fail(error);
    fp8InPlace = target == "cpu" && resolved->has("avx512bw") && resolved->has("avx512vl");
  }
  if (!tokenDtype.empty() && tokenDtype != "f32" && tokenDtype != "bf16" && tokenDtype != "f16")
    return fail("unknown --token-dtype '" + tokenDtype + "' (expected f32, bf16 or f16)");

  DialectRegistry registry;
  registry.insert<mix::MixDialect, func::FuncDialect, arith::ArithDialect,
                  tensor::TensorDialect>();
  MLIRContext context(registry);
  context.loadAllAvailableDialects();
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);

  OwningOpRef<ModuleOp> module;
  std::string name;
  if (!hfConfig.empty()) {
    std::string error;
    module = wholeModel ? mix::importHFModel(&context, hfConfig, dtype, name, error, fp8InPlace)
                        : mix::importHFConfig(&context, hfConfig, layerIndex, dtype, tokenDtype,
                                              name, error, fusedExperts, fp8InPlace);
    if (!module)
      return fail(error);
  } else {
    std::string error;
    auto file = openInputFile(inputFile, &error);
    if (!file)
      return fail(error);
    sourceMgr.AddNewSourceBuffer(std::move(file), SMLoc());
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
    if (!module)
      return 1;
    name = llvm::sys::path::stem(inputFile).str();
  }
  if (failed(verify(*module)))
    return 1;

  Stages stages;
  stages.emplace_back("0-input", print(*module));
  if (failed(runStage(*module, "1-decompose", stages,
                      [](OpPassManager &pm) {
                        pm.addPass(mix::createDecomposeLayers());
                        pm.addPass(createCSEPass());
                      })) ||
      failed(runStage(*module, "2-fuse", stages,
                      [](OpPassManager &pm) { pm.addPass(mix::createFuseKernels()); })) ||
      failed(runStage(*module, "3-tile", stages, [](OpPassManager &pm) {
        mix::TileKernelsOptions options;
        options.target = target;
        options.table = tuningTable;
        options.cpu = cpu;
        pm.addPass(mix::createTileKernels(options));
      })))
    return 1;

  std::string error;
  if (emit == "mlir") {
    // The IR after each stage, for reading; written all at once like any artifact.
    mix::codegen::EmittedArtifact artifact;
    artifact.name = mix::codegen::cIdentifier(name);
    for (auto &[stage, text] : stages)
      artifact.supportFiles.emplace_back(artifact.name + "." + stage + ".mlir", text);
    artifact.manifest = llvm::json::Object{{"format", 1}, {"target", target.getValue()},
                                           {"name", artifact.name}, {"emit", "mlir"}};
    if (failed(mix::codegen::writeArtifact(artifact, outputDir, /*build=*/false, error,
                                           [] { return interruptedFlag.load(); })))
      return fail(error);
    return 0;
  }
  FailureOr<mix::codegen::EmittedArtifact> artifact =
      target == "cuda" ? mix::codegen::emitCudaArtifact(*module, name)
                       : mix::codegen::emitCpuArtifact(*module, name);
  if (failed(artifact))
    return 1;
  if (failed(mix::codegen::writeArtifact(*artifact, outputDir, emit == "lib", error,
                                         [] { return interruptedFlag.load(); })))
    return fail(error);
  return 0;
}
