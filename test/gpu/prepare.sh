#!/usr/bin/env bash
# Makes the GPU test kit, build/gpu-tests/, HERE (on the machine with LLVM/MLIR and the built
# tools): everything test/gpu/run.sh needs to run the GPU integration cases on a machine that
# has a GPU and nvcc but no mixtilec (no LLVM/MLIR), no lit and no FileCheck.
#
#   bash scripts/build.sh && bash test/gpu/prepare.sh
#   then, through the device tool:  run(command="bash test/gpu/run.sh", carry=["build/gpu-tests"])
#
# For every case of test/integration/cuda/Inputs/cases.txt (the list the cuda lit tests run):
#   cases/NAME/T<t>/   a random case for each token count (test/helpers/make_case.py, exactly
#                      as test/helpers/run_cases.sh makes them; the layer IR must be the same
#                      for every T, since one artifact serves them all)
#   artifacts/ID/      the artifact source from `mixtilec LAYER --target cuda --emit source`,
#                      one per distinct layer IR (ID: the first case with that IR); no library:
#                      run.sh builds lib<name>.so with nvcc on the device
#   cases.tsv          NAME MODE TOKENS ID, one line per case
# and bin/mixtile-run, lib/libmixtile_runtime.so, include/nlohmann/ (the graph driver's JSON
# header: the GPU machine has no package manager), a copy of cases.txt and stamp.txt.
# The kit is ignored by git (build/) and travels as a carried path: keep it well under the
# device tool's 64 MiB (this script warns above 40 MiB).
# Options: --kit DIR (default build/gpu-tests), --jobs N (cases made at a time, default 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=$root/build/gpu-tests jobs=2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kit) kit=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) echo "usage: prepare.sh [--kit DIR] [--jobs N]" >&2; exit 2 ;;
  esac
done
python=${MIXTILE_PYTHON:-/usr/bin/python3}
mixtilec=$root/build/bin/mixtilec
cases_file=$root/test/integration/cuda/Inputs/cases.txt
for f in "$mixtilec" "$root/build/bin/mixtile-run" "$root/build/lib/libmixtile_runtime.so"; do
  [[ -e "$f" ]] || { echo "prepare.sh: $f is missing: run bash scripts/build.sh first" >&2; exit 1; }
done
json_include=/usr/include/nlohmann
[[ -f "$json_include/json.hpp" ]] || { echo "prepare.sh: $json_include/json.hpp is missing (nlohmann-json3-dev)" >&2; exit 1; }

# The case list, checked as the lit tests check it.
list=()
while read -r name tokens mode rest; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  list+=("$name|$tokens|$mode|$rest")
done < "$cases_file"
export MIXTILE_CASES=$cases_file
bash "$root/test/integration/cuda/Inputs/run_case_list.sh" --expect plain > /dev/null
bash "$root/test/integration/cuda/Inputs/run_case_list.sh" --expect graph > /dev/null

rm -rf "$kit"
mkdir -p "$kit/cases" "$kit/artifacts" "$kit/bin" "$kit/lib" "$kit/include" "$kit/logs"

# One case: its random inputs for every T (in the order run_cases.sh makes them).
make_one() {
  local name=$1 tokens=$2 rest=$3 t a
  local -a options args
  read -ra options <<< "$rest"
  for t in ${tokens//,/ }; do
    args=()
    for a in "${options[@]}"; do args+=("${a//\{T\}/$t}"); done
    if ! printf '%s\n' "${args[@]}" | grep -qx -- '--batch'; then
      args=(--tokens "$t" "${args[@]}")
    fi
    "$python" "$root/test/helpers/make_case.py" "$kit/cases/$name/T$t" "${args[@]}" > /dev/null
    grep -v '^//' "$kit/cases/$name/T$t/layer.mlir" > "$kit/cases/$name/T$t.ir"
    if ! cmp -s "$kit/cases/$name/T${tokens%%,*}.ir" "$kit/cases/$name/T$t.ir"; then
      echo "prepare.sh: $name: the layer IR changed with T=$t: one artifact must serve every token count" >&2
      return 1
    fi
  done
}

echo "making the cases of $cases_file (${#list[@]} cases)"
running=0
for entry in "${list[@]}"; do
  IFS='|' read -r name tokens mode rest <<< "$entry"
  ( make_one "$name" "$tokens" "$rest" > "$kit/logs/$name.log" 2>&1 ||
      { echo "prepare.sh: making case $name failed:" >&2; cat "$kit/logs/$name.log" >&2; exit 1; } ) &
  running=$((running + 1))
  if (( running >= jobs )); then
    wait -n || { wait; exit 1; }
    running=$((running - 1))
  fi
done
while (( running > 0 )); do
  wait -n || { wait; exit 1; }
  running=$((running - 1))
done

# One artifact per distinct IR.
declare -A artifact_of=()
: > "$kit/cases.tsv"
for entry in "${list[@]}"; do
  IFS='|' read -r name tokens mode rest <<< "$entry"
  first=${tokens%%,*}
  hash=$(sha256sum < "$kit/cases/$name/T$first.ir" | cut -c1-16)
  if [[ -z "${artifact_of[$hash]:-}" ]]; then
    artifact_of[$hash]=$name
    "$mixtilec" "$kit/cases/$name/T$first/layer.mlir" --target cuda --emit source \
      -o "$kit/artifacts/$name" || { echo "prepare.sh: mixtilec failed on case $name" >&2; exit 1; }
  fi
  printf '%s\t%s\t%s\t%s\n' "$name" "$mode" "$tokens" "${artifact_of[$hash]}" >> "$kit/cases.tsv"
  rm -f "$kit"/cases/"$name"/T*.ir
done

# Whole models: a tiny random checkpoint per family (test/helpers/make_model.py), the model's
# artifact source (mixtilec --model --target cuda --emit source) and one prompt file; run.sh
# runs each through mixtile-run --device cuda (logits, then greedy generation) and checks it
# with test/helpers/check_model.py against the float64 reference.
mkdir -p "$kit/models"
"$python" "$root/test/helpers/make_prompts.py" "$kit/models/ids.safetensors" > /dev/null
: > "$kit/models.tsv"
for spec in "qwen3_moe f32" "olmoe bf16" "mixtral f32" "qwen2_moe f32" "deepseek_v3 f32"; do
  read -r family dtype <<< "$spec"
  name=model-$family-$dtype
  "$python" "$root/test/helpers/make_model.py" "$kit/models/$name" --family "$family" --dtype "$dtype" > /dev/null
  "$mixtilec" --hf-config "$kit/models/$name/config.json" --model --target cuda --emit source \
    -o "$kit/artifacts/$name" || { echo "prepare.sh: mixtilec failed on model $name" >&2; exit 1; }
  echo "$name" >> "$kit/models.tsv"
done

cp "$root/build/bin/mixtile-run" "$kit/bin/"
cp "$root/build/lib/libmixtile_runtime.so" "$kit/lib/"
cp -r "$json_include" "$kit/include/"
cp "$cases_file" "$kit/cases.txt"
rm -rf "$kit/logs"
{
  echo "made: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
  echo "commit: $(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "cases: ${#list[@]}, artifacts: ${#artifact_of[@]}, models: $(wc -l < "$kit/models.tsv")"
} > "$kit/stamp.txt"

size_kb=$(du -sk "$kit" | cut -f1)
echo "kit: $kit: ${#list[@]} cases, ${#artifact_of[@]} artifacts, $(du -sh "$kit" | cut -f1)"
if (( size_kb > 40 * 1024 )); then
  echo "prepare.sh: warning: the kit is over 40 MiB; the device tool carries 64 MiB in all, the working tree included" >&2
fi
