#!/usr/bin/env bash
# Installs what Mixtile's build and tests need from Debian's archive. Idempotent and quiet
# when everything is already present; must never download anything outside the package registries.
set -euo pipefail

packages=(
  llvm-22-dev libmlir-22-dev mlir-22-tools llvm-22-tools clang-22 lld-22
  cmake ninja-build nlohmann-json3-dev python3 python3-numpy g++ libclang-rt-22-dev
  libomp-22-dev
)
# Optional peers for benchmarks only: `scripts/setup.sh --bench`.
if [[ "${1:-}" == "--bench" ]]; then
  packages+=(libopenblas-dev python3-torch python3-numpy)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -qq
  $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
