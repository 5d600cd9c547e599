#!/usr/bin/env bash
# Configures (once) and builds Mixtile into build/ with Debian's LLVM/MLIR 22, clang and lld.
# Installs missing packages first through setup.sh, so a fresh machine needs nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" "$@"
build="${MIXTILE_BUILD_DIR:-$root/build}"
source "$root/scripts/configure.sh"
configure_build "$build" || exit 1
# The dialect reference (docs/) is generated too: a test checks the committed copy is current.
ninja -C "$build" -j"${MIXTILE_JOBS:-2}" all MixDialectDocGen
