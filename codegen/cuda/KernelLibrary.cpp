// The CUDA kernel library's headers as text, written into every CUDA artifact's
// mixtile_kernels/ so that the generated .cu compiles on its own with nvcc.
#include "codegen/Artifact.h"

namespace {
struct KernelFile {
  const char *name;
  const char *text;
};
const KernelFile kKernelFiles[] = {
#include "codegen/cuda/KernelLibrary.inc"
};
} // namespace

namespace mlir::mix::codegen {
void addCudaKernelLibrary(EmittedArtifact &artifact) {
  for (const KernelFile &file : kKernelFiles)
    artifact.supportFiles.emplace_back(std::string("mixtile_kernels/") + file.name, file.text);
}
} // namespace mlir::mix::codegen
