#!/usr/bin/env bash
# The README's test command: installs what is missing, builds, runs the whole lit suite and
# ends with one line "N passed, N failed". Exit status 0 only when nothing failed.
#   bash scripts/test.sh              build/ and the suite
#   bash scripts/test.sh --sanitize   build-sanitize/: the tools, the runtime and every test
#                                     program and artifact with ASan and UBSan, the whole suite
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
if [[ "${1:-}" == "--sanitize" ]]; then
  export MIXTILE_SANITIZE=1
  export MIXTILE_BUILD_DIR="${MIXTILE_BUILD_DIR:-$root/build-sanitize}"
fi
build="${MIXTILE_BUILD_DIR:-$root/build}"
bash "$root/scripts/build.sh" || { echo "0 passed, 1 failed"; exit 1; }
# Every run starts with an empty kernel cache (test/lit.cfg.py), so it times and tests the
# first compile of every kernel as a user's first build does.
rm -rf "$build/test-kernel-cache"
log=$(mktemp)
/usr/lib/llvm-22/bin/lit -sv --time-tests "$build/test" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
passed=$(grep -oE '^ *Passed *: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
expected_fail=$(grep -oE '^ *Expectedly Failed *: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
failed=0
for kind in 'Failed' 'Unexpectedly Passed' 'Unresolved' 'Timed Out'; do
  n=$(grep -oE "^ *$kind *: *[0-9]+" "$log" | grep -oE '[0-9]+$' || true)
  failed=$((failed + ${n:-0}))
done
skipped=$(grep -oE '^ *Unsupported *: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
rm -f "$log"
passed=$(( ${passed:-0} + ${expected_fail:-0} ))
if [[ $status -ne 0 && $failed -eq 0 ]]; then failed=1; fi
echo "${passed} passed, ${failed} failed, ${skipped:-0} skipped"
[[ $failed -eq 0 ]]
