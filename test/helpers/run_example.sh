#!/usr/bin/env bash
# Runs a hand-written layer (examples/*.mlir) the way a user would: compiled once with
# mixtilec, run with mixtile-run on fresh random inputs for every token count, each result
# checked against the float64 reference by check.py (example_case.py reads the op's kind,
# attributes and operand roles from the IR).
# Usage: run_example.sh EXAMPLE.mlir WORKDIR T1,T2,... [--function NAME] [--mot]
#   --mot: the counts are batch sizes B (Mixture of Tokens, S = 3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${MIXTILE_PYTHON:-/usr/bin/python3}
example=$1 work=$2 counts=$3
shift 3
extra=() mot=0
while (( $# )); do
  case "$1" in
    --function) extra+=(--function "$2"); shift 2 ;;
    --mot) mot=1; shift ;;
    *) echo "run_example.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
rm -rf "$work"
mkdir -p "$work"
mixtilec "$example" -o "$work/artifact"
entry=()
[[ ${#extra[@]} -gt 0 ]] && entry=(--entry "${extra[1]}")
for n in ${counts//,/ }; do
  case_dir="$work/N$n"
  if (( mot )); then size=(--batch "$n" --seq 3); else size=(--tokens "$n"); fi
  "$python" "$here/example_case.py" "$example" "$case_dir" "${size[@]}" --seed "$n" \
    ${extra[@]+"${extra[@]}"} > /dev/null
  mixtile-run "$work/artifact" ${entry[@]+"${entry[@]}"} --weights "$case_dir/weights.safetensors" \
    --inputs "$case_dir/inputs.safetensors" -o "$case_dir/result.safetensors" --threads 2
  report=$("$python" "$here/check.py" "$case_dir" "$case_dir/result.safetensors" \
    --artifact "$work/artifact" 2>&1) || {
    echo "$(basename "$example") N=$n: FAILED" >&2
    echo "$report" >&2
    exit 1
  }
  echo "$(basename "$example") N=$n: $(echo "$report" | grep -v '^checking' | tr '\n' ' ')"
done
