#!/usr/bin/env bash
# Stage 2 of the GPU benchmark of issue 5: the one command of the device call.
#
#   here first:   bash bench/gpu_prepare.sh
#   then:         run(command="bash bench/gpu_run.sh", carry=["build/gpu-bench"])
#
# Runs bench/gpu_moe.py with the device's python3 (torch + transformers, no network) on the
# artifacts gpu_prepare.sh compiled; the JSON lands in $OUT (returned by the device tool), the
# table is printed last. Extra arguments go to gpu_moe.py (e.g. --shapes mixtral-8x7b).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-/tmp/out}
mkdir -p "$out"
cd "$root"
if [[ ! -f build/gpu-bench/shapes.txt ]]; then
  echo "gpu_run.sh: build/gpu-bench is missing: run bash bench/gpu_prepare.sh first and carry build/gpu-bench" >&2
  exit 1
fi
nvidia-smi -L
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,clocks.mem,power.limit \
  --format=csv || true
python3 -c 'import torch, transformers; print("torch", torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)'
python3 bench/gpu_moe.py --artifacts build/gpu-bench --out "$out" "$@" 2>&1 | tee "$out/gpu-moe.log"
status=${PIPESTATUS[0]}
echo "gpu_moe.py exit status $status"
exit "$status"
