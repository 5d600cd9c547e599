#!/usr/bin/env bash
# Configures (once) and builds Mixtile into build/ with Debian's LLVM/MLIR 22, clang and lld.
# Installs missing packages first through setup.sh, so a fresh machine needs nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" "$@"
build="${MIXTILE_BUILD_DIR:-$root/build}"
if [[ ! -f "$build/build.ninja" ]]; then
  cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DCMAKE_C_COMPILER=/usr/lib/llvm-22/bin/clang \
    -DCMAKE_CXX_COMPILER=/usr/lib/llvm-22/bin/clang++ \
    -DLLVM_USE_LINKER=lld \
    -DMLIR_LINK_MLIR_DYLIB=ON > "$build.configure.log" 2>&1 || { cat "$build.configure.log"; exit 1; }
fi
# The dialect reference (docs/) is generated too: a test checks the committed copy is current.
ninja -C "$build" -j"${MIXTILE_JOBS:-2}" all MixDialectDocGen
