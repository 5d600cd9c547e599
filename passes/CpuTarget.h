// The CPU a cpu artifact is compiled for: named levels (x86-64-v3, sapphirerapids, ...) or the
// host (native), the features each implies, and the policy that picks each kernel's matrix
// path (AMX, AVX512-BF16, f32 FMA) from them. The one home of these facts in the compiler:
// mix-tile records the decision in the IR, codegen and the manifest only read it.
#ifndef MIXTILE_PASSES_CPUTARGET_H
#define MIXTILE_PASSES_CPUTARGET_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Types.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::mix {

struct CpuTarget {
  std::string name;                   // as given: "native", "sapphirerapids", ...
  std::string march;                  // the C++ compiler's -march for the artifact
  std::vector<std::string> isaFlags;  // instruction-set flags after it (-mavx512bf16, ...)
  std::vector<std::string> features;  // Linux /proc/cpuinfo flag names the code may use
  std::string vendor;                 // "intel", "amd", or "" for a generic level (x86-64-v4)
  bool has(StringRef feature) const;
};

/// `name`: native (the host), x86-64, x86-64-v3, x86-64-v4, sapphirerapids, cooperlake, znver4,
/// znver5.
/// Returns nullopt and sets `error` for any other name.
std::optional<CpuTarget> resolveCpuTarget(StringRef name, std::string &error);
/// The names resolveCpuTarget accepts, for messages.
StringRef knownCpuTargets();

/// The built-in tuning table of a kernel on `path` for this CPU: "cpu-<path>" for the bf16
/// matrix paths, and for fma_f32 "cpu-intel" on Intel CPUs (their hardware prefetchers want
/// the GEMV path's software prefetch from one row) or "cpu" (tuned on Zen 5) otherwise.
std::string cpuTuningTable(const CpuTarget &cpu, StringRef path);

/// The matrix path of a kernel whose GEMM weights have element type `weights`:
/// "amx_bf16" (bf16 weights, amx_bf16), "avx512_bf16" (bf16 weights, avx512_bf16, not Intel:
/// there VDPBF16PS has half the f32 FMA's rate) or "fma_f32" (widened to f32; every other case).
StringRef matmulPathFor(const CpuTarget &cpu, Type weights);

/// The function attribute recording the CPU (`mix.cpu`) and the kernel attribute recording
/// its matrix path (`mix.matmul_path`).
constexpr StringLiteral kCpuAttr = "mix.cpu";
constexpr StringLiteral kMatmulPathAttr = "mix.matmul_path";
DictionaryAttr cpuTargetAttr(Builder &b, const CpuTarget &cpu);
/// Reads back what cpuTargetAttr wrote (nullopt when `attr` is null or malformed).
std::optional<CpuTarget> cpuTargetFromAttr(DictionaryAttr attr);

} // namespace mlir::mix

#endif // MIXTILE_PASSES_CPUTARGET_H
