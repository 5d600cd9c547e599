#!/usr/bin/env bash
# Stage 1 of the GPU benchmark of issue 5 (bench/gpu_moe.py says what it measures). Runs HERE,
# on a machine without a GPU but with a build (build/bin/mixtilec) and nvcc: the device
# machine cannot run mixtilec (it needs libMLIR), so the artifacts are compiled ahead.
#
#   bash bench/gpu_prepare.sh            # build/gpu-bench/<shape>/{config.json,shape.json,artifact/}
#                                        # (--target cuda: sm_80 + sm_90), then on the device:
#   run(command="bash bench/gpu_run.sh", carry=["build/gpu-bench"])
#
#   bash bench/gpu_prepare.sh --tiny     # build/gpu-bench-tiny: tiny shapes, --target cpu, to
#                                        # prove the benchmark's code path here:
#   python3 bench/gpu_moe.py --device cpu --tiny   (needs torch + transformers on this python3)
#
# The shapes' config.json files come from bench/gpu_moe.py (one home): Mixtral-8x7B's published
# config (layer 0) and DeepSeek-V3's (layer 3, its first sparse layer). Environment:
# MIXTILE_BUILD_DIR (default build), PYTHON (default /usr/bin/python3: numpy, no torch needed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${MIXTILE_BUILD_DIR:-$root/build}
python=${PYTHON:-/usr/bin/python3}  # the repo's helpers' python (numpy)
[[ -x "$python" ]] || python=python3
mixtilec=$build/bin/mixtilec
tiny=0
[[ "${1:-}" == "--tiny" ]] && tiny=1

if [[ ! -x "$mixtilec" ]]; then
  echo "gpu_prepare.sh: $mixtilec not found: build first (bash scripts/build.sh)" >&2
  exit 1
fi
if (( tiny )); then
  out=$build/gpu-bench-tiny target=cpu flags=(--tiny)
else
  out=$build/gpu-bench target=cuda flags=()
fi
rm -rf "$out"
mkdir -p "$out"
"$python" "$root/bench/gpu_moe.py" --write-configs "$out" "${flags[@]}" > "$out/shapes.txt"

while read -r name layer; do
  dir=$out/$name
  start=$(date +%s)
  "$mixtilec" --hf-config "$dir/config.json" --layer "$layer" --dtype bf16 --target "$target" -o "$dir/artifact"
  lib=$(ls "$dir"/artifact/lib*.so)
  echo "$name: layer $layer, --target $target, $(( $(date +%s) - start )) s: $lib ($(du -h "$lib" | cut -f1))"
  if [[ $target == cuda ]]; then
    if command -v cuobjdump > /dev/null; then
      echo "  SASS for: $(cuobjdump --list-elf "$lib" 2>/dev/null | grep -o 'sm_[0-9a-z]*' | sort -u | tr '\n' ' ')"
    fi
    if ldd "$lib" | grep -q libcudart; then
      echo "  note: $(basename "$lib") links the shared CUDA runtime ($(ldd "$lib" | grep libcudart | awk '{print $1}')):"
      echo "        gpu_moe.py preloads torch's copy if the device's loader cannot find it"
    else
      echo "  CUDA runtime linked statically"
    fi
  fi
done < "$out/shapes.txt"

echo "total $(du -sh "$out" | cut -f1) in $out (the device call carries it; the limit is 64 MiB)"
if (( tiny )); then
  echo "next: python3 bench/gpu_moe.py --device cpu --tiny --artifacts $out"
else
  echo "next, the device call: run(command=\"bash bench/gpu_run.sh\", carry=[\"build/gpu-bench\"])"
fi
