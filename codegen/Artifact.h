// What codegen hands the driver: the text of an artifact (header, kernels source, manifest)
// and the writer that puts it in OUTDIR and builds the library. Codegen decides no fusion;
// it emits what the passes scheduled.
#ifndef MIXTILE_CODEGEN_ARTIFACT_H
#define MIXTILE_CODEGEN_ARTIFACT_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"
#include "llvm/Support/JSON.h"

#include <string>
#include <vector>

namespace mlir::mix::codegen {

struct EmittedArtifact {
  std::string name;           // C identifier; files are <name>.h, <name>.<ext>, lib<name>.so
  std::string target;         // "cpu" or "cuda"
  std::string header;         // the C ABI
  std::string source;         // readable generated kernels
  std::string sourceFile;     // "<name>.cpp" or "<name>.cu"
  llvm::json::Object manifest;
  std::string march = "native";  // cpu: the C++ compiler's -march (mixtilec --cpu)
  std::vector<std::string> isaFlags;  // cpu: instruction-set flags after -march
  /// Support files the source includes, relative to OUTDIR (the kernel library).
  std::vector<std::pair<std::string, std::string>> supportFiles;
  /// cpu: the kernel library's heavy template instantiations the source calls (for example
  /// "mixtile::cpu::linear<mixtile::cpu::WeightType::bf16>"). The source declares them
  /// `extern template` when MIXTILE_SEPARATE_KERNELS is defined; the library build then
  /// compiles each in a translation unit of its own, side by side, and caches the object.
  std::vector<std::string> separateKernels;
};

/// Emits the CPU artifact of a module that went through the cpu pipeline (mix.kernel ops).
/// Reports unsupported IR as errors on the offending op.
FailureOr<EmittedArtifact> emitCpuArtifact(ModuleOp module, StringRef name);

/// Adds the CPU kernel library headers to the artifact's support files.
void addCpuKernelLibrary(EmittedArtifact &artifact);

/// Emits the CUDA artifact of a module that went through the cuda pipeline: the CPU target's
/// C ABI and manifest (target "cuda"), with device pointers and a `void *stream`; nothing in
/// it synchronizes with the host. Reports unsupported IR as errors on the offending op.
FailureOr<EmittedArtifact> emitCudaArtifact(ModuleOp module, StringRef name);

/// Adds the CUDA kernel library headers (codegen/cuda/kernels/*.cuh) to the support files.
void addCudaKernelLibrary(EmittedArtifact &artifact);

/// Writes the artifact into `outdir` atomically: everything is produced in a temporary
/// directory beside it and renamed into place only when complete (and, with
/// `buildLibrary`, when the library compiled: g++ for target "cpu", nvcc for "cuda"). On failure nothing is left behind and
/// `error` says why. When `interrupted` is given and returns true once the files are built,
/// nothing is swapped in (a previous artifact stays intact) and `error` is "interrupted".
LogicalResult writeArtifact(const EmittedArtifact &artifact, StringRef outdir,
                            bool buildLibrary, std::string &error,
                            llvm::function_ref<bool()> interrupted = nullptr);

/// Turns an arbitrary string (a file stem, a tensor name) into a C identifier.
std::string cIdentifier(StringRef text);

/// The dtype vocabulary of manifests and the C types behind it: the one home of that mapping.
StringRef dtypeName(Type element);    // "f32", "bf16", "f16", "i32", "f8_e4m3", "f4_e2m1", "f8_e8m0"
StringRef cTypeName(Type element);    // "float", "uint16_t", "int32_t", "uint8_t"
double dtypeBytes(Type element);      // 0.5 for f4_e2m1 (two codes a byte)

} // namespace mlir::mix::codegen

#endif // MIXTILE_CODEGEN_ARTIFACT_H
