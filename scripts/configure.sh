# Sourced by build.sh and fuzz.sh: configure_build DIR [CMAKE ARG ...] configures DIR with
# Debian's LLVM/MLIR 22 and clang (once: nothing happens when DIR has build.ninja); the log is
# DIR.configure.log, printed on failure.
configure_build() {
  local build="$1"
  shift
  [[ -f "$build/build.ninja" ]] && return 0
  cmake -S "$root" -B "$build" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DMLIR_DIR=/usr/lib/llvm-22/lib/cmake/mlir \
    -DLLVM_EXTERNAL_LIT=/usr/lib/llvm-22/bin/lit \
    -DCMAKE_C_COMPILER=/usr/lib/llvm-22/bin/clang \
    -DCMAKE_CXX_COMPILER=/usr/lib/llvm-22/bin/clang++ \
    -DLLVM_USE_LINKER=lld \
    -DMLIR_LINK_MLIR_DYLIB=ON "$@" > "$build.configure.log" 2>&1 ||
    { cat "$build.configure.log"; return 1; }
}
