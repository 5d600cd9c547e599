#!/usr/bin/env bash
# Runs the GPU integration cases from the GPU test kit ON A GPU MACHINE, from the repo root.
# The device call (the kit is made here first: bash test/gpu/prepare.sh):
#
#   run(command="bash test/gpu/run.sh", carry=["build/gpu-tests"])
#
# That machine has nvcc, python3 with numpy and a GPU, but no LLVM/MLIR (no mixtilec), no lit
# and no FileCheck; build/gpu-tests/ (test/gpu/prepare.sh) holds the cases, the artifact
# sources, mixtile-run and its runtime library. This script:
#   1. builds every artifact's lib<name>.so with nvcc exactly as codegen/Artifact.cpp does
#      (-O3 -std=c++17 -shared -Xcompiler -fPIC, sm_80 and sm_90, -cudart static), in parallel,
#      and the graph driver (test/integration/cuda/Inputs/run_cuda_artifact.cpp);
#   2. runs every (case, T) of test/integration/cuda/Inputs/cases.txt: plain cases with the
#      kit's mixtile-run --device cuda, graph cases with the driver (captured in a CUDA graph,
#      launched twice); checks each result with test/helpers/check.py against the float64
#      reference, with the lit tests' rule: "output: rel_l2=" or "abs_l2=" within tolerance,
#      exactly "output: abs_l2=0.000e+00" at T = 0;
#   3. prints one line per (case, T), then "N passed, N failed" (exit 1 when any failed).
# Files under ${OUT:-/tmp/gpu-out} (4, as the device tool brings back at most 8): summary.txt
# (the printed lines), env.txt (GPU, nvcc, python, numpy), build.log (every nvcc command,
# time and output), run.log (every command and its output). Work files (artifact copies with
# their libraries, results): ${MIXTILE_GPU_WORK:-/tmp/mixtile-gpu-work}.
#
# Options:
#   --build-only   build the libraries and the driver, run no case (works without a GPU)
#   --skip-build   reuse the libraries an earlier run.sh built in the work folder
#   --fake         no GPU, no nvcc: each artifact is the cpu build of its layer (build/bin/
#                  mixtilec, so HERE only) wrapped as a cuda one over the stand-in device of
#                  test/runtime/Inputs/ (make_fake_cuda_artifact.sh); graph cases are skipped.
#                  A dry run of steps 2 and 3 on this machine.
#   --only REGEX   only the cases whose name matches
#   --jobs N       nvcc builds at a time (default: the number of cores)
#   --run-jobs N   cases run at a time (default 8)
#   --kit DIR      the kit (default build/gpu-tests)
# Without a GPU every case fails with mixtile-run's "no usable CUDA device: ...".
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=$root/build/gpu-tests
build_only=0 skip_build=0 fake=0 only="" jobs=$(nproc) run_jobs=8
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-only) build_only=1; shift ;;
    --skip-build) skip_build=1; shift ;;
    --fake) fake=1; shift ;;
    --only) only=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --run-jobs) run_jobs=$2; shift 2 ;;
    --kit) kit=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: run.sh [--build-only|--skip-build] [--fake] [--only REGEX] [--jobs N] [--run-jobs N] [--kit DIR]" >&2; exit 2 ;;
  esac
done
out=${OUT:-/tmp/gpu-out}
work=${MIXTILE_GPU_WORK:-/tmp/mixtile-gpu-work}
python=${MIXTILE_PYTHON:-python3}
nvcc=${MIXTILE_NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
first_error() {  # FILE: its first line naming an error, else its last line (commands left out)
  grep -v '^===' "$1" 2>/dev/null | grep -m1 -i 'error' || grep -v '^===' "$1" 2>/dev/null | tail -1
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
since_ms() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

[[ -f "$kit/cases.tsv" ]] || {
  echo "run.sh: no kit at $kit: make it with bash test/gpu/prepare.sh (and carry build/gpu-tests)" >&2
  exit 1
}
mkdir -p "$out"
if (( skip_build )); then
  [[ -d "$work/build" ]] || { echo "run.sh: --skip-build: nothing was built in $work" >&2; exit 1; }
  rm -rf "$work/logs" "$work/results"
else
  rm -rf "$work"
fi
mkdir -p "$work/logs" "$work/results" "$work/build"
: > "$out/summary.txt"
say() { echo "$*" | tee -a "$out/summary.txt"; }

# --- the machine ----------------------------------------------------------------------------
{
  echo "kit: $kit"; cat "$kit/stamp.txt"
  echo "--- nvidia-smi -L"; nvidia-smi -L 2>&1 || true
  echo "--- nvcc: $nvcc"; "$nvcc" --version 2>&1 | tail -2
  echo "--- host compiler"; g++ --version 2>&1 | head -1
  echo "--- $python"; "$python" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)' 2>&1
  echo "--- nlohmann/json.hpp on the system: $(ls /usr/include/nlohmann/json.hpp 2>/dev/null || echo none) (the kit's is used)"
} > "$out/env.txt"
say "run.sh: $(grep -m1 '^GPU' "$out/env.txt" || echo 'no GPU listed by nvidia-smi'); $(grep -m1 release "$out/env.txt" | sed 's/.*release/nvcc/'); $(sed -n '/^--- .*python/{n;p}' "$out/env.txt" | head -1)"
if ! cmp -s "$kit/cases.txt" "$root/test/integration/cuda/Inputs/cases.txt"; then
  say "run.sh: warning: the kit's cases.txt differs from test/integration/cuda/Inputs/cases.txt: the kit is stale (re-run test/gpu/prepare.sh); running the kit's cases"
fi

# The cases: NAME MODE TOKENS ARTIFACT, filtered by --only.
mapfile -t cases < <(awk -F'\t' -v re="$only" 're == "" || $1 ~ re' "$kit/cases.tsv")
artifacts=()
(( ${#cases[@]} )) && mapfile -t artifacts < <(printf '%s\n' "${cases[@]}" | cut -f4 | sort -u)
# Whole models (kit/models.tsv, from prepare.sh; an older kit has none), filtered by --only too.
models=()
[[ -f "$kit/models.tsv" ]] && mapfile -t models < <(awk -v re="$only" 're == "" || $1 ~ re' "$kit/models.tsv")
artifacts+=("${models[@]}")
(( ${#artifacts[@]} )) || { echo "run.sh: no case or model matches '$only'" >&2; exit 1; }

# --- 1. build -------------------------------------------------------------------------------
manifest_field() { "$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

build_one() {  # ID: $work/artifacts/ID/lib<name>.so, its log in $work/build/ID.log
  local id=$1 dir=$work/artifacts/$1 t0 status
  t0=$(now_ms)
  local source library
  source=$(manifest_field "$dir/manifest.json" source) library=$(manifest_field "$dir/manifest.json" library)
  local cmd=("$nvcc" -O3 -std=c++17 -shared -Xcompiler -fPIC
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
    -cudart static "-I$dir" -o "$dir/$library" "$dir/$source")
  { echo "=== $id: ${cmd[*]}"; timeout 600 "${cmd[@]}" 2>&1; } > "$work/build/$id.log"
  status=$?
  printf '%s %s %.1f\n' "$id" "$([[ $status == 0 ]] && echo ok || echo FAILED)" \
    "$(since_ms "$t0")" > "$work/build/$id.status"
}

build_fake() {  # ID: the cpu artifact of the same layer (or model), wrapped over the stand-in device
  local id=$1 layer
  local -a source
  if [[ -d "$kit/models/$id" ]]; then
    source=(--hf-config "$kit/models/$id/config.json" --model)
  else
    layer=$(ls "$kit/cases/$id"/T*/layer.mlir | head -1)
    source=("$layer")
  fi
  local t0; t0=$(now_ms)
  {
    echo "=== $id (fake): mixtilec ${source[*]}; make_fake_cuda_artifact.sh"
    rm -rf "$work/artifacts/$id" &&
      "$root/build/bin/mixtilec" "${source[@]}" -o "$work/cpu/$id" 2>&1 &&
      bash "$root/test/runtime/Inputs/make_fake_cuda_artifact.sh" "$root" "$work/cpu/$id" \
        "$work/artifacts/$id" 2>&1
  } > "$work/build/$id.log"
  local status=$?
  printf '%s %s %.1f\n' "$id" "$([[ $status == 0 ]] && echo ok || echo FAILED)" \
    "$(since_ms "$t0")" > "$work/build/$id.status"
}

build_driver() {
  local cmd=("$nvcc" -std=c++17 -O2 "-I$root" "-I$kit/include"
    "$root/test/integration/cuda/Inputs/run_cuda_artifact.cpp" "$root/runtime/safetensors.cpp"
    -o "$work/run_cuda_artifact" -ldl)
  local t0; t0=$(now_ms)
  { echo "=== graph driver: ${cmd[*]}"; timeout 600 "${cmd[@]}" 2>&1; } > "$work/build/driver.log"
  local status=$?
  printf '%s %s %.1f\n' driver "$([[ $status == 0 ]] && echo ok || echo FAILED)" \
    "$(since_ms "$t0")" > "$work/build/driver.status"
}

needs_driver=0
printf '%s\n' "${cases[@]}" | cut -f2 | grep -qx graph && needs_driver=1
(( fake )) && needs_driver=0
if (( ! skip_build && ! fake )) && ! [[ -x "$nvcc" ]] && ! command -v "$nvcc" > /dev/null; then
  say "run.sh: cannot find nvcc ($nvcc): put it on PATH or set MIXTILE_NVCC"
  exit 1
fi
mkdir -p "$work/artifacts" "$work/cpu"
if (( skip_build )); then
  say "run.sh: --skip-build: using the libraries built in $work"
elif (( fake )); then
  say "run.sh: building ${#artifacts[@]} fake (cpu-backed) artifacts, $jobs at a time"
else
  say "run.sh: building ${#artifacts[@]} artifacts$( ((needs_driver)) && echo ' and the graph driver') with $nvcc, $jobs at a time"
fi
(( skip_build )) || for id in "${artifacts[@]}"; do cp -r "$kit/artifacts/$id" "$work/artifacts/$id"; done
running=0
(( skip_build )) || for job in "${artifacts[@]}" $( ((needs_driver)) && echo @driver); do
  if [[ "$job" == @driver ]]; then build_driver &
  elif (( fake )); then build_fake "$job" &
  else build_one "$job" &
  fi
  running=$((running + 1))
  if (( running >= jobs )); then wait -n; running=$((running - 1)); fi
done
wait
: > "$out/build.log"
built=0 build_failed=0
for id in "${artifacts[@]}" $( ((needs_driver)) && echo driver); do
  read -r _ state seconds < "$work/build/$id.status" 2>/dev/null || state=FAILED seconds=?
  echo "--- $id: $state in ${seconds}s" >> "$out/build.log"
  cat "$work/build/$id.log" >> "$out/build.log" 2>/dev/null
  if [[ "$state" == ok ]]; then
    built=$((built + 1))
  else
    build_failed=$((build_failed + 1))
    say "build $id: FAILED (${seconds}s): $(first_error "$work/build/$id.log")"
  fi
done
build_times=$(cat "$work"/build/*.status 2>/dev/null | awk '$2 == "ok" { n++; s += $3; if ($3 > m) m = $3 } END { if (n) printf "%.1f s mean, %.1f s max", s / n, m }')
say "run.sh: built $built, failed $build_failed ($build_times per build) after $(elapsed)"
if (( build_only )); then
  (( build_failed == 0 ))
  exit
fi

# --- 2. run ---------------------------------------------------------------------------------
run_one() {  # NAME MODE T ID: one line in $work/logs/NAME.T.line, the whole story in .log
  local name=$1 mode=$2 t=$3 id=$4
  local case_dir=$kit/cases/$name/T$t result=$work/results/$name.T$t.safetensors
  local log=$work/logs/$name.T$t.log line=$work/logs/$name.T$t.line
  local dir=$work/artifacts/$id status report cmd
  local label="$name T=$t:"
  {
    if [[ ! -f "$work/build/$id.status" ]] || ! grep -q ' ok ' "$work/build/$id.status"; then
      echo "$label FAILED: the artifact $id did not build" > "$line"
      return
    fi
    if [[ "$mode" == graph ]]; then
      if (( fake )); then echo "$label skipped (a graph case needs a GPU)" > "$line"; return; fi
      if ! grep -q ' ok ' "$work/build/driver.status" 2>/dev/null; then
        echo "$label FAILED: the graph driver did not build" > "$line"
        return
      fi
      cmd=(timeout 300 "$work/run_cuda_artifact" "$dir" --weights "$case_dir/weights.safetensors"
        --inputs "$case_dir/inputs.safetensors" -o "$result" --graph --repeat 2)
    else
      cmd=(env "LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 300
        "$kit/bin/mixtile-run" "$dir" --weights "$case_dir/weights.safetensors"
        --inputs "$case_dir/inputs.safetensors" -o "$result" --device cuda)
    fi
    echo "=== $label ${cmd[*]}"
    "${cmd[@]}" > "$work/logs/$name.T$t.run" 2>&1
    status=$?
    cat "$work/logs/$name.T$t.run"
    if [[ $status != 0 ]]; then
      local why
      why=$(first_error "$work/logs/$name.T$t.run")
      [[ $status == 124 ]] && why="timed out after 300 s"
      echo "$label FAILED: exit $status: $why" > "$line"
      return
    fi
    echo "=== $python test/helpers/check.py $case_dir $result"
    report=$("$python" "$root/test/helpers/check.py" "$case_dir" "$result" 2>&1)
    status=$?
    echo "$report"
    report=$(echo "$report" | grep -v '^checking' | tr '\n' ' ')
    if [[ $status != 0 ]]; then
      echo "$label FAILED: $report" > "$line"
    elif [[ "$t" == 0 && ! "$report" =~ (^| )output:\ abs_l2=0\.000e\+00 ]]; then
      echo "$label FAILED (T = 0 must give exactly output: abs_l2=0.000e+00): $report" > "$line"
    elif [[ ! "$report" =~ (^| )output:\ (rel|abs)_l2= ]]; then
      echo "$label FAILED (no output: line): $report" > "$line"
    else
      echo "$label $report" > "$line"
    fi
    # Plain cases with tokens once more through device tensors (the Python package on the
    # runtime's C API: weights, inputs and results in the caller's device memory, the caller's
    # stream), checked the same way.
    [[ "$mode" == plain && "$t" != 0 ]] || return
    local dev_line=$work/logs/$name.T$t.dev.line dev_result=$work/results/$name.T$t.dev.safetensors
    label="$name T=$t (device tensors):"
    cmd=(env "LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      "PYTHONPATH=$root/python:$root/test/helpers" "MIXTILE_HOME=$kit" timeout 300 "$python"
      "$root/test/python/Inputs/check_device.py" --case "$dir" "$case_dir" "$dev_result")
    echo "=== $label ${cmd[*]}"
    "${cmd[@]}" > "$work/logs/$name.T$t.dev.run" 2>&1
    status=$?
    cat "$work/logs/$name.T$t.dev.run"
    if [[ $status != 0 ]]; then
      echo "$label FAILED: exit $status: $(first_error "$work/logs/$name.T$t.dev.run")" > "$dev_line"
      return
    fi
    report=$("$python" "$root/test/helpers/check.py" "$case_dir" "$dev_result" 2>&1)
    status=$?
    echo "$report"
    report=$(echo "$report" | grep -v '^checking' | tr '\n' ' ')
    if [[ $status != 0 || ! "$report" =~ (^| )output:\ (rel|abs)_l2= ]]; then
      echo "$label FAILED: $report" > "$dev_line"
    else
      echo "$label $report" > "$dev_line"
    fi
  } > "$log" 2>&1
}

jobs_list=()
for c in "${cases[@]}"; do
  IFS=$'\t' read -r name mode tokens id <<< "$c"
  for t in ${tokens//,/ }; do jobs_list+=("$name $mode $t $id"); done
done
say "run.sh: running ${#jobs_list[@]} (case, T) pairs of ${#cases[@]} cases, $run_jobs at a time"
running=0
for j in "${jobs_list[@]}"; do
  run_one $j < /dev/null &
  running=$((running + 1))
  if (( running >= run_jobs )); then wait -n; running=$((running - 1)); fi
done
wait

run_model() {  # NAME: logits, then 6 greedy tokens, each checked against the float64 reference
  local name=$1 dir=$work/artifacts/$1 what status report summary=""
  local line=$work/logs/$name.line
  {
    if [[ ! -f "$work/build/$name.status" ]] || ! grep -q ' ok ' "$work/build/$name.status"; then
      echo "$name: FAILED: the artifact did not build" > "$line"
      return
    fi
    for what in logits generate; do
      local result=$work/results/$name.$what.safetensors
      local -a extra=()
      [[ $what == generate ]] && extra=(--generate 6)
      local cmd=(env "LD_LIBRARY_PATH=$kit/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" timeout 300
        "$kit/bin/mixtile-run" "$dir" --weights "$kit/models/$name" --inputs "$kit/models/ids.safetensors"
        "${extra[@]}" -o "$result" --device cuda)
      echo "=== $name $what: ${cmd[*]}"
      "${cmd[@]}" > "$work/logs/$name.$what.run" 2>&1
      status=$?
      cat "$work/logs/$name.$what.run"
      if [[ $status != 0 ]]; then
        echo "$name: FAILED ($what): exit $status: $(first_error "$work/logs/$name.$what.run")" > "$line"
        return
      fi
      report=$("$python" "$root/test/helpers/check_model.py" "$kit/models/$name" --inputs \
        "$kit/models/ids.safetensors" "$result" 2>&1)
      echo "$report"
      if ! grep -qx PASSED <<< "$report"; then
        echo "$name: FAILED ($what): $(tr '\n' ' ' <<< "$report")" > "$line"
        return
      fi
      summary+="$(grep -E '^(logits|sequences):' <<< "$report" | tr '\n' ' ')"
    done
    echo "$name: $summary" > "$line"
  } > "$work/logs/$name.log" 2>&1
}
(( ${#models[@]} )) && say "run.sh: running ${#models[@]} whole models"
for m in "${models[@]}"; do run_model "$m" < /dev/null & done
wait

# --- 3. report ------------------------------------------------------------------------------
: > "$out/run.log"
passed=0 failed=0 skipped=0
for j in "${jobs_list[@]}"; do
  read -r name mode t id <<< "$j"
  cat "$work/logs/$name.T$t.log" >> "$out/run.log" 2>/dev/null
  line=$(cat "$work/logs/$name.T$t.line" 2>/dev/null || echo "$name T=$t: FAILED: no result (the job died)")
  say "$line"
  case "$line" in
    "$name T=$t: FAILED"*) failed=$((failed + 1)) ;;
    "$name T=$t: skipped"*) skipped=$((skipped + 1)) ;;
    *) passed=$((passed + 1)) ;;
  esac
  # The device-tensor run of a plain case that passed (its absence after a pass: a died job).
  if [[ "$mode" == plain && "$t" != 0 && "$line" != *FAILED* ]]; then
    line=$(cat "$work/logs/$name.T$t.dev.line" 2>/dev/null ||
      echo "$name T=$t (device tensors): FAILED: no result (the job died)")
    say "$line"
    case "$line" in
      *": FAILED"*) failed=$((failed + 1)) ;;
      *) passed=$((passed + 1)) ;;
    esac
  fi
done
for m in "${models[@]}"; do
  cat "$work/logs/$m.log" >> "$out/run.log" 2>/dev/null
  line=$(cat "$work/logs/$m.line" 2>/dev/null || echo "$m: FAILED: no result (the job died)")
  say "$line"
  case "$line" in
    *": FAILED"*) failed=$((failed + 1)) ;;
    *) passed=$((passed + 1)) ;;
  esac
done
say "run.sh: done after $(elapsed)$( ((skipped)) && echo ", $skipped skipped")"
say "$passed passed, $failed failed"
(( failed == 0 ))
