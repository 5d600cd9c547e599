#!/usr/bin/env bash
# Configures (once) and builds Mixtile into build/ with Debian's LLVM/MLIR 22, clang and lld.
# Installs missing packages first through setup.sh, so a fresh machine needs nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" "$@"
build="${MIXTILE_BUILD_DIR:-$root/build}"
source "$root/scripts/configure.sh"
extra=()
if [[ "${MIXTILE_SANITIZE:-}" == 1 ]]; then
  # scripts/test.sh --sanitize: AddressSanitizer and UndefinedBehaviorSanitizer in every Mixtile
  # target, with the shared sanitizer runtime so Python can preload it (test/lit.cfg.py).
  # LLVM_USE_SANITIZER drops LLVM's -z defs, which an instrumented shared library cannot
  # meet; allow_user_poisoning=0 also applies to the generators the build runs (fuzz.sh).
  rt=$(/usr/lib/llvm-22/bin/clang -print-runtime-dir)
  flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -shared-libsan -fno-omit-frame-pointer -g"
  link="-fsanitize=address,undefined -shared-libsan -Wl,-rpath,$rt"
  extra=(-DLLVM_USE_SANITIZER=Address "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags"
         "-DCMAKE_EXE_LINKER_FLAGS=$link" "-DCMAKE_SHARED_LINKER_FLAGS=$link")
  export ASAN_OPTIONS="allow_user_poisoning=0:detect_leaks=0"
fi
configure_build "$build" ${extra[@]+"${extra[@]}"} || exit 1
# The dialect reference (docs/) is generated too: a test checks the committed copy is current.
ninja -C "$build" -j"${MIXTILE_JOBS:-2}" all MixDialectDocGen
