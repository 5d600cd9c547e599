// The CPU kernel library's headers as text, written into every CPU artifact's
// mixtile_kernels/ so that the generated source compiles on its own.
#include "codegen/Artifact.h"

namespace {
struct KernelFile {
  const char *name;
  const char *text;
};
const KernelFile kKernelFiles[] = {
#include "codegen/cpu/KernelLibrary.inc"
};
} // namespace

namespace mlir::mix::codegen {
void addCpuKernelLibrary(EmittedArtifact &artifact) {
  for (const KernelFile &file : kKernelFiles)
    artifact.supportFiles.emplace_back(std::string("mixtile_kernels/") + file.name, file.text);
}
} // namespace mlir::mix::codegen
