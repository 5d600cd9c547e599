// CPU levels, host detection and the matrix-path policy (see CpuTarget.h).
#include "passes/CpuTarget.h"

#include "mlir/IR/BuiltinTypes.h"
#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/TargetParser/Host.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <cstring>

using namespace mlir;
using namespace mlir::mix;

namespace {

// The features Mixtile's kernels and codegen distinguish, as LLVM and Linux name them.
struct FeatureName {
  const char *llvmName, *cpuinfoName;
};
constexpr FeatureName kFeatures[] = {
    {"avx2", "avx2"},           {"fma", "fma"},
    {"f16c", "f16c"},           {"avx512f", "avx512f"},
    {"avx512bw", "avx512bw"},   {"avx512dq", "avx512dq"},
    {"avx512vl", "avx512vl"},   {"avx512cd", "avx512cd"},
    {"avx512bf16", "avx512_bf16"}, {"avx512fp16", "avx512_fp16"},
    {"amx-tile", "amx_tile"},   {"amx-bf16", "amx_bf16"},
};

std::vector<std::string> v3() { return {"avx2", "fma", "f16c"}; }
std::vector<std::string> v4() {
  std::vector<std::string> f = v3();
  f.insert(f.end(), {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"});
  return f;
}

// The host's vendor from CPUID leaf 0: "intel", "amd" or "" (anything else).
std::string hostVendor() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx))
    return "";
  char id[13] = {};
  std::memcpy(id, &ebx, 4);
  std::memcpy(id + 4, &edx, 4);
  std::memcpy(id + 8, &ecx, 4);
  if (std::strcmp(id, "GenuineIntel") == 0)
    return "intel";
  if (std::strcmp(id, "AuthenticAMD") == 0)
    return "amd";
#endif
  return "";
}

} // namespace

bool CpuTarget::has(StringRef feature) const { return llvm::is_contained(features, feature); }

StringRef mlir::mix::knownCpuTargets() {
  return "native, x86-64, x86-64-v3, x86-64-v4, sapphirerapids, cooperlake, znver4, znver5";
}

std::optional<CpuTarget> mlir::mix::resolveCpuTarget(StringRef name, std::string &error) {
  CpuTarget cpu;
  cpu.name = name.str();
  cpu.march = name.str();
  if (name == "native") {
    llvm::StringMap<bool> host = llvm::sys::getHostCPUFeatures();
    for (const FeatureName &f : kFeatures)
      if (host.lookup(f.llvmName))
        cpu.features.push_back(f.cpuinfoName);
    cpu.vendor = hostVendor();
  } else if (name == "x86-64") {
  } else if (name == "x86-64-v3") {
    cpu.features = v3();
  } else if (name == "x86-64-v4") {
    cpu.features = v4();
  } else if (name == "sapphirerapids") {
    cpu.features = v4();
    cpu.features.insert(cpu.features.end(), {"avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"});
    cpu.vendor = "intel";
  } else if (name == "cooperlake") {
    // Intel's AVX512-BF16 without AMX (as are Sapphire/Emerald Rapids in VMs that hide AMX).
    cpu.features = v4();
    cpu.features.push_back("avx512_bf16");
    cpu.vendor = "intel";
  } else if (name == "znver4" || name == "znver5") {
    cpu.features = v4();
    cpu.features.push_back("avx512_bf16");
    cpu.vendor = "amd";
    // Debian 12's g++ 12 knows neither znver4 nor znver5: Zen 3 tuning plus the AVX-512
    // extensions Zen 4 added (Zen 5 runs every Zen 4 instruction).
    cpu.march = "znver3";
    cpu.isaFlags = {"-mavx512f",     "-mavx512cd",    "-mavx512bw",     "-mavx512dq",
                    "-mavx512vl",    "-mavx512bf16",  "-mavx512vnni",   "-mavx512ifma",
                    "-mavx512vbmi",  "-mavx512vbmi2", "-mavx512bitalg", "-mavx512vpopcntdq",
                    "-mgfni",        "-mvaes",        "-mvpclmulqdq"};
  } else {
    error = "unknown --cpu '" + name.str() + "' (expected one of " + knownCpuTargets().str() + ")";
    return std::nullopt;
  }
  return cpu;
}

std::string mlir::mix::cpuTuningTable(const CpuTarget &cpu, StringRef path) {
  if (path != "fma_f32")
    return ("cpu-" + path).str();
  return cpu.vendor == "intel" ? "cpu-intel" : "cpu";
}

StringRef mlir::mix::matmulPathFor(const CpuTarget &cpu, Type weights) {
  // fp8 and MXFP4 expert weights become bf16 on their way into the same loops (kernels/fp8.h,
  // kernels/mxfp4.h).
  if (weights &&
      (weights.isBF16() || isa<mlir::Float8E4M3FNType, mlir::Float4E2M1FNType>(weights))) {
    if (cpu.has("amx_bf16") && cpu.has("amx_tile"))
      return "amx_bf16";
    // VDPBF16PS only where it outruns f32 FMA: AMD Zen 4/5 (two per cycle, twice the FMA's
    // flops). Intel cores issue one every other cycle, half the flops of their two 512-bit FMA
    // ports (Emerald Rapids without AMX, measured: 164 against 339 GFLOP/s on 2 cores), so
    // there the f32 path is faster at every token count (passes/tuning/cpu-intel.json).
    if (cpu.has("avx512_bf16") && cpu.has("avx512f") && cpu.vendor != "intel")
      return "avx512_bf16";
    // MXFP4 codes reach the f32 loops only through slabs of bf16 rows, which the f32 GEMM
    // re-packs its tokens for, slab by slab; the VDPBF16PS loops pack the tokens once and
    // multiply a decode segment's codes in registers. On Intel too they are faster at every
    // token count (Emerald Rapids, 2 cores, gpt-oss-20b's experts: bench_expert_ffn 2 2880
    // 2880 1,4,16,64,512 mxfp4 fma_f32,avx512_bf16 32 4, cold, ms: T=1 9.3 / 4.1, T=4 33.5 /
    // 14.8, T=16 74.4 / 42.6, T=64 155 / 146, T=512 1013 / 810).
    if (isa<mlir::Float4E2M1FNType>(weights) && cpu.has("avx512_bf16") && cpu.has("avx512f"))
      return "avx512_bf16";
  }
  return "fma_f32";
}

DictionaryAttr mlir::mix::cpuTargetAttr(Builder &b, const CpuTarget &cpu) {
  SmallVector<Attribute> features, flags;
  for (const std::string &f : cpu.features)
    features.push_back(b.getStringAttr(f));
  for (const std::string &f : cpu.isaFlags)
    flags.push_back(b.getStringAttr(f));
  return b.getDictionaryAttr({b.getNamedAttr("name", b.getStringAttr(cpu.name)),
                              b.getNamedAttr("march", b.getStringAttr(cpu.march)),
                              b.getNamedAttr("isa_flags", b.getArrayAttr(flags)),
                              b.getNamedAttr("features", b.getArrayAttr(features))});
}

std::optional<CpuTarget> mlir::mix::cpuTargetFromAttr(DictionaryAttr attr) {
  if (!attr)
    return std::nullopt;
  auto name = attr.getAs<StringAttr>("name");
  auto march = attr.getAs<StringAttr>("march");
  auto features = attr.getAs<ArrayAttr>("features");
  if (!name || !march || !features)
    return std::nullopt;
  // The vendor only picks mix-tile's tuning table and is not recorded: what codegen builds
  // for is the -march and the features.
  CpuTarget cpu{name.str(), march.str(), {}, {}, {}};
  for (Attribute f : features)
    if (auto s = dyn_cast<StringAttr>(f))
      cpu.features.push_back(s.str());
  if (auto flags = attr.getAs<ArrayAttr>("isa_flags"))
    for (Attribute f : flags)
      if (auto s = dyn_cast<StringAttr>(f))
        cpu.isaFlags.push_back(s.str());
  return cpu;
}
