#!/usr/bin/env bash
# Integration driver: compiles one layer ONCE with mixtilec, then for every token count runs
# it with mixtile-run on fresh random inputs and checks the result against the float64
# reference. Usage: run_cases.sh WORKDIR T1,T2,... -- make_case options ({T} = token count)
# One artifact serving every T is part of what is tested: the IR must not change with T.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${MIXTILE_PYTHON:-/usr/bin/python3}
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
    mixtilec "$case_dir/layer.mlir" -o "$work/artifact"
    grep -v '^//' "$case_dir/layer.mlir" > "$work/layer.mlir"
  fi
  # The IR (comments aside) must be the same for every T.
  grep -v '^//' "$case_dir/layer.mlir" | cmp -s "$work/layer.mlir" - || {
    echo "the layer IR changed with T=$t: one artifact must serve every token count" >&2
    exit 1
  }
  mixtile-run "$work/artifact" --weights "$case_dir/weights.safetensors" \
    --inputs "$case_dir/inputs.safetensors" -o "$case_dir/result.safetensors" --threads 2
  report=$("$python" "$here/check.py" "$case_dir" "$case_dir/result.safetensors" 2>&1) || {
    echo "T=$t: FAILED" >&2
    echo "$report" >&2
    exit 1
  }
  echo "T=$t: $(echo "$report" | grep -v '^checking' | tr '\n' ' ')"
done
