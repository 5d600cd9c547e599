# lit configuration of Mixtile's test suite: tools, substitutions, the cuda features and the host
# CPU's bf16 matrix-engine features.
import os
import shutil

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "MIXTILE"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test", ".py"]
config.excludes = ["lit.cfg.py", "lit.site.cfg.py", "Inputs", "helpers", "corpus"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.mixtile_obj_root, "test")

config.substitutions.append(("%PATH%", config.environment["PATH"]))
config.substitutions.append(("%mixtile_src", config.mixtile_src_root))
config.substitutions.append(("%mixtile_obj", config.mixtile_obj_root))
config.substitutions.append(("%examples", os.path.join(config.mixtile_src_root, "examples")))
helpers = os.path.join(config.mixtile_src_root, "test", "helpers")
config.substitutions.append(("%run_cases", os.path.join(helpers, "run_cases.sh")))
config.substitutions.append(("%helpers", helpers))
# The float64 reference runs on Debian's Python with numpy (scripts/setup.sh installs it).
python = "/usr/bin/python3"

# Compilers of the tests' own programs: %cc (C clients of the runtime), %cxx (kernel-library
# tests), and clang 22 itself for the ThreadSanitizer test. MIXTILE_SANITIZE=1 (set by
# `scripts/test.sh --sanitize`, whose build of the tools and runtime is ASan+UBSan with the
# shared sanitizer runtime) builds every test program and every artifact's library with the
# same sanitizers, and preloads the runtime into Python (ctypes loads the instrumented
# library); the LLVM allocator false positive is explained in scripts/fuzz.sh.
llvm_bin = "/usr/lib/llvm-22/bin"
llvm_lib = "/usr/lib/llvm-22/lib"
config.substitutions.append(("%clang_cxx", f"{llvm_bin}/clang++"))
config.substitutions.append(("%clang_cc", f"{llvm_bin}/clang"))
config.substitutions.append(("%llvm_lib", llvm_lib))
sanitize = os.environ.get("MIXTILE_SANITIZE") == "1"
if sanitize:
    import subprocess

    rt_dir = subprocess.run([f"{llvm_bin}/clang", "-print-runtime-dir"], capture_output=True,
                            text=True).stdout.strip()
    san = (f"-fsanitize=address,undefined -fno-sanitize-recover=undefined -shared-libsan "
           f"-fno-omit-frame-pointer -g -Wl,-rpath,{rt_dir} -Wl,-rpath,{llvm_lib}")
    config.available_features.add("asan")
    config.substitutions.append(("%cc", f"{llvm_bin}/clang {san}"))
    config.substitutions.append(("%cxx", f"{llvm_bin}/clang++ {san}"))
    config.environment["MIXTILE_CXX"] = f"{llvm_bin}/clang++"
    config.environment["MIXTILE_CXXFLAGS"] = san
    config.environment["ASAN_OPTIONS"] = "allow_user_poisoning=0:detect_leaks=1:abort_on_error=0"
    config.environment["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    python = (f"env LD_PRELOAD={rt_dir}/libclang_rt.asan-x86_64.so "
              f"ASAN_OPTIONS=allow_user_poisoning=0:detect_leaks=0 {python}")
else:
    config.substitutions.append(("%cc", "cc"))
    config.substitutions.append(("%cxx", "g++"))
config.substitutions.append(("%python", python))

# tsan: clang 22 with its ThreadSanitizer runtime, LLVM's OpenMP (omp.h) and its Archer tool
# (setup.sh installs libclang-rt-22-dev and libomp-22-dev); not in the ASan build.
if (not sanitize and os.path.exists(f"{llvm_lib}/libarcher.so")
        and os.path.exists(f"{llvm_lib}/clang/22/include/omp.h")
        and os.path.exists(f"{llvm_lib}/clang/22/lib/linux/libclang_rt.tsan-x86_64.a")):
    config.available_features.add("tsan")

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
# mixtilec's kernel cache (compiled kernel instantiations, codegen/Artifact.cpp): one per build
# tree, shared by the suite's tests, emptied by scripts/test.sh before each run; never the
# user's own (~/.cache/mixtile). MIXTILE_CACHE_DIR overrides it ("off": no cache).
config.environment["MIXTILE_CACHE_DIR"] = os.environ.get(
    "MIXTILE_CACHE_DIR", os.path.join(config.mixtile_obj_root, "test-kernel-cache"))
llvm_config.use_default_substitutions()

tool_dirs = [config.mixtile_tools_dir, config.llvm_tools_dir]
tools = ["mixtile-opt", "mixtilec", "mixtile-run"]
llvm_config.add_tool_substitutions(tools, tool_dirs)
llvm_config.with_environment("PATH", config.mixtile_tools_dir, append_path=True)
# `not` and `count` ship with Debian's llvm-22-tools beside FileCheck.
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# cuda-toolkit: nvcc is present (compile-only tests); cuda-gpu: a device is present.
nvcc = shutil.which("nvcc") or ("/usr/local/cuda/bin/nvcc" if os.path.exists("/usr/local/cuda/bin/nvcc") else None)
if nvcc:
    config.available_features.add("cuda-toolkit")
    config.substitutions.append(("%nvcc", nvcc))
if shutil.which("nvidia-smi") and os.system("nvidia-smi -L >/dev/null 2>&1") == 0:
    config.available_features.add("cuda-gpu")


# amx-bf16: the host CPU has AMX tiles with bf16 (TDPBF16PS); avx512-bf16: it has VDPBF16PS.
# Tests that run the kernel library's bf16 matrix-engine paths (MatmulPath) require them.
def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()

_flags = _cpu_flags()
if {"amx_bf16", "amx_tile"} <= _flags:
    config.available_features.add("amx-bf16")
if "avx512_bf16" in _flags:
    config.available_features.add("avx512-bf16")
# avx512: x86-64-v4 (AVX-512 F/BW/DQ/VL/CD): the AMX path runs there with its tile instructions
# emulated (test/helpers/amx_emulation.h), on CPUs without AMX too.
if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"} <= _flags:
    config.available_features.add("avx512")
config.substitutions.append(("%mixtilec_amx_emulated", "bash " + os.path.join(helpers, "mixtilec_amx_emulated.sh")))

# torch: MIXTILE_TORCH_PYTHON names a Python with torch and transformers 5.x (the pyenv one:
# `MIXTILE_TORCH_PYTHON=$(command -v python3) bash scripts/test.sh`); the Python package's
# transformers tests run with it. Unset (the default, and CI), they are reported unsupported:
# the required test run stays free of torch.
_torch_python = os.environ.get("MIXTILE_TORCH_PYTHON")
if _torch_python and os.system(f"'{_torch_python}' -c 'import torch, transformers' >/dev/null 2>&1") == 0:
    config.available_features.add("torch")
    config.substitutions.append(("%torch_python", _torch_python))
