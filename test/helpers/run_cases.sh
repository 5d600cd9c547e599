#!/usr/bin/env bash
# Integration driver: compiles one layer ONCE with mixtilec, then for every token count runs
# it with mixtile-run on fresh random inputs and checks the result against the float64
# reference.
# Usage: run_cases.sh [--device cpu|cuda|fake-cuda|cuda-graph DRIVER] [--cpu NAME] WORKDIR T1,T2,... --
#   make_case options ({T} = token count). cuda: mixtilec --target cuda, mixtile-run --device
#   cuda (needs a GPU). cuda-graph: the same artifact run by DRIVER
#   (test/integration/cuda/Inputs/run_cuda_artifact.cpp), which captures the layer in a CUDA
#   graph and launches it twice, results poisoned before each launch.
#   fake-cuda: the cpu artifact wrapped as a cuda one over a stand-in device
#   (test/runtime/Inputs/fake_cuda_device.cpp), run with --device cuda: tests the runtime's
#   cuda backend without a GPU. --cpu NAME: compile with mixtilec --cpu NAME (the CPU, and so
#   the matrix path of bf16 experts: x86-64-v4 f32 FMA, znver5 VDPBF16PS, sapphirerapids AMX).
#   --amx-emulation: compile with mixtilec_amx_emulated.sh (sapphirerapids' AMX path, its tile
#   instructions emulated in software: runs on any AVX-512 CPU).
# One artifact serving every T is part of what is tested: the IR must not change with T.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${MIXTILE_PYTHON:-/usr/bin/python3}
device=cpu
if [[ "${1:-}" == "--device" ]]; then
  device=$2
  shift 2
  if [[ "$device" == cuda-graph ]]; then
    driver=$1
    shift
  fi
fi
cpu_args=()
compiler=(mixtilec)
if [[ "${1:-}" == "--cpu" ]]; then
  cpu_args=(--cpu "$2")
  shift 2
elif [[ "${1:-}" == "--amx-emulation" ]]; then
  compiler=(bash "$here/mixtilec_amx_emulated.sh")
  shift
fi
case "$device" in
  cpu) compile=() run=(--threads 2) ;;
  cuda) compile=(--target cuda) run=(--device cuda) ;;
  fake-cuda) compile=() run=(--device cuda) ;;
  cuda-graph) compile=(--target cuda) run=(--graph --repeat 2) ;;
  *) echo "run_cases.sh: unknown device '$device'" >&2; exit 2 ;;
esac
work=$1 tokens=$2
shift 2
[[ "${1:-}" == "--" ]] && shift
rm -rf "$work"
mkdir -p "$work"
for t in ${tokens//,/ }; do
  case_dir="$work/T$t"
  args=()
  for a in "$@"; do args+=("${a//\{T\}/$t}"); done
  if ! printf '%s\n' "${args[@]}" | grep -qx -- '--batch'; then
    args=(--tokens "$t" "${args[@]}")
  fi
  "$python" "$here/make_case.py" "$case_dir" "${args[@]}" > /dev/null
  if [[ ! -d "$work/artifact" ]]; then
    if [[ "$device" == fake-cuda ]]; then
      mixtilec "$case_dir/layer.mlir" -o "$work/cpu-artifact"
      bash "$here/../runtime/Inputs/make_fake_cuda_artifact.sh" "$here/../.." \
        "$work/cpu-artifact" "$work/artifact"
    else
      "${compiler[@]}" "$case_dir/layer.mlir" "${compile[@]}" ${cpu_args[@]+"${cpu_args[@]}"} -o "$work/artifact"
    fi
    grep -v '^//' "$case_dir/layer.mlir" > "$work/layer.mlir"
  fi
  # The IR (comments aside) must be the same for every T.
  grep -v '^//' "$case_dir/layer.mlir" | cmp -s "$work/layer.mlir" - || {
    echo "the layer IR changed with T=$t: one artifact must serve every token count" >&2
    exit 1
  }
  runner=(mixtile-run)
  [[ "$device" == cuda-graph ]] && runner=("$driver")
  "${runner[@]}" "$work/artifact" --weights "$case_dir/weights.safetensors" \
    --inputs "$case_dir/inputs.safetensors" -o "$case_dir/result.safetensors" "${run[@]}"
  # A cpu artifact's manifest says which matrix path ran: f32 arithmetic on bf16/f16 weights
  # is held to the f32 bound.
  check_args=()
  [[ "$device" == cpu ]] && check_args=(--artifact "$work/artifact")
  report=$("$python" "$here/check.py" "$case_dir" "$case_dir/result.safetensors" \
    ${check_args[@]+"${check_args[@]}"} 2>&1) || {
    echo "T=$t: FAILED" >&2
    echo "$report" >&2
    exit 1
  }
  echo "T=$t: $(echo "$report" | grep -v '^checking' | tr '\n' ' ')"
done
