#!/usr/bin/env bash
# CUDA twin of test/helpers/run_cases.sh: compiles one layer ONCE with mixtilec --target cuda,
# then for every token count runs it with the standalone driver (run_cuda_artifact) on fresh
# random inputs and checks the result against the float64 reference.
# Usage: run_cuda_cases.sh DRIVER WORKDIR T1,T2,... [--graph] -- make_case options ({T} = token count)
set -euo pipefail
helpers=$(cd "$(dirname "$0")/../../../helpers" && pwd)
python=${MIXTILE_PYTHON:-/usr/bin/python3}
driver=$1 work=$2 tokens=$3
shift 3
driver_flags=()
[[ "${1:-}" == "--graph" ]] && { driver_flags+=(--graph --repeat 2); shift; }
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
  "$python" "$helpers/make_case.py" "$case_dir" "${args[@]}" > /dev/null
  if [[ ! -d "$work/artifact" ]]; then
    mixtilec "$case_dir/layer.mlir" --target cuda -o "$work/artifact"
    grep -v '^//' "$case_dir/layer.mlir" > "$work/layer.mlir"
  fi
  grep -v '^//' "$case_dir/layer.mlir" | cmp -s "$work/layer.mlir" - || {
    echo "the layer IR changed with T=$t: one artifact must serve every token count" >&2
    exit 1
  }
  "$driver" "$work/artifact" --weights "$case_dir/weights.safetensors" \
    --inputs "$case_dir/inputs.safetensors" -o "$case_dir/result.safetensors" "${driver_flags[@]}"
  report=$("$python" "$helpers/check.py" "$case_dir" "$case_dir/result.safetensors" 2>&1) || {
    echo "T=$t: FAILED" >&2
    echo "$report" >&2
    exit 1
  }
  echo "T=$t: $(echo "$report" | grep -v '^checking' | tr '\n' ' ')"
done
