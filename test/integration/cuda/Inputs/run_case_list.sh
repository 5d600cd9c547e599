#!/usr/bin/env bash
# Runs the cases of one MODE of the GPU case list (Inputs/cases.txt) for lit: plain cases
# through test/helpers/run_cases.sh (mixtilec --target cuda, mixtile-run --device cuda),
# graph cases through run_cases.sh --device cuda-graph with the CUDA-graph driver. Every line a case
# prints is prefixed with its name; a case that fails prints "NAME: FAILED" and its log. Ends
# with "MODE: N passed, N failed"; exits 1 when a case failed.
#
#   run_case_list.sh --expect MODE
#       prints FileCheck patterns: one line per (case, T) of MODE, in order, no FAILED
#       between them (at T = 0 the output must be exactly abs_l2=0.000e+00), and the total.
#   run_case_list.sh MODE WORKDIR [--device cuda|fake-cuda|cpu] [--driver DRIVER] [--jobs N]
#       runs the cases; --device (plain only, default cuda) as in run_cases.sh: fake-cuda and
#       cpu run the same list without a GPU; --driver (graph: required) the built
#       run_cuda_artifact; --jobs cases at a time (default $MIXTILE_CASE_JOBS, else 4).
#   MIXTILE_CASES=FILE reads another case list.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
helpers=$(cd "$here/../../../helpers" && pwd)
cases_file=${MIXTILE_CASES:-$here/cases.txt}

usage() {
  echo "usage: run_case_list.sh --expect MODE | MODE WORKDIR [--device D] [--driver F] [--jobs N]" >&2
  exit 2
}

# The cases of one mode, as "NAME TOKENS OPTIONS..." lines; checks the list's format.
list_cases() {
  local mode=$1 name tokens case_mode rest seen=" "
  while read -r name tokens case_mode rest; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    if [[ ! "$name" =~ ^[A-Za-z0-9_-]+$ || ! "$tokens" =~ ^[0-9]+(,[0-9]+)*$ ||
          ! "$case_mode" =~ ^(plain|graph)$ ]]; then
      echo "run_case_list.sh: $cases_file: malformed line: $name $tokens $case_mode $rest" >&2
      return 1
    fi
    [[ "$seen" == *" $name "* ]] && {
      echo "run_case_list.sh: $cases_file: case '$name' listed twice" >&2
      return 1
    }
    seen+="$name "
    if [[ "$case_mode" == "$mode" ]]; then echo "$name $tokens $rest"; fi
  done < "$cases_file"
}

if [[ "${1:-}" == "--expect" ]]; then
  [[ $# -eq 2 ]] || usage
  cases=$(list_cases "$2")
  [[ -n "$cases" ]] || { echo "run_case_list.sh: no $2 cases in $cases_file" >&2; exit 1; }
  while read -r name tokens _; do
    for t in ${tokens//,/ }; do
      echo "CHECK-NOT: FAILED"
      if [[ "$t" == 0 ]]; then
        echo "CHECK: {{^}}$name T=0: {{.*}}output: abs_l2=0.000e+00"
      else
        echo "CHECK: {{^}}$name T=$t: {{.*}}output: {{(rel|abs)}}_l2="
      fi
    done
  done <<< "$cases"
  echo "CHECK-NOT: FAILED"
  echo "CHECK: {{^}}$2: $(wc -l <<< "$cases") passed, 0 failed"
  exit 0
fi

[[ $# -ge 2 ]] || usage
mode=$1 work=$2
shift 2
device=cuda driver="" jobs=${MIXTILE_CASE_JOBS:-4}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --driver) driver=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    *) usage ;;
  esac
done
case "$mode" in
  plain) ;;
  graph) [[ -n "$driver" ]] || { echo "run_case_list.sh: graph cases need --driver" >&2; exit 2; } ;;
  *) usage ;;
esac
cases=$(list_cases "$mode")
[[ -n "$cases" ]] || { echo "run_case_list.sh: no $mode cases in $cases_file" >&2; exit 1; }
rm -rf "$work"
mkdir -p "$work/logs"

run_one() {
  local name=$1 tokens=$2
  shift 2
  local status=0
  if [[ "$mode" == plain ]]; then
    bash "$helpers/run_cases.sh" --device "$device" "$work/$name" "$tokens" -- "$@" \
      > "$work/logs/$name.log" 2>&1 || status=$?
  else
    bash "$helpers/run_cases.sh" --device cuda-graph "$driver" "$work/$name" "$tokens" -- "$@" \
      > "$work/logs/$name.log" 2>&1 || status=$?
  fi
  echo "$status" > "$work/logs/$name.rc"
}

running=0
while read -r name tokens rest; do
  read -ra options <<< "$rest"
  run_one "$name" "$tokens" "${options[@]}" < /dev/null &
  running=$((running + 1))
  if (( running >= jobs )); then
    wait -n || true
    running=$((running - 1))
  fi
done <<< "$cases"
wait

passed=0 failed=0
while read -r name _; do
  sed "s/^/$name /" "$work/logs/$name.log"
  if [[ "$(cat "$work/logs/$name.rc" 2>/dev/null)" == 0 ]]; then
    passed=$((passed + 1))
  else
    echo "$name: FAILED (exit $(cat "$work/logs/$name.rc" 2>/dev/null || echo '?'))"
    failed=$((failed + 1))
  fi
done <<< "$cases"
echo "$mode: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
