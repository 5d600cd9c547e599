#!/usr/bin/env bash
# Fuzzes every front door of Mixtile with libFuzzer: the safetensors reader (a file, and a
# sharded index with its shard), the manifest loader, the Hugging Face config importer (one
# layer, fused experts, the whole model), the .mlir front door (parse, verify, the CPU
# pipeline, emission) and the token inputs of models (prompts, masks, new-token counts). Builds build-fuzz/ with every Mixtile source instrumented for coverage,
# AddressSanitizer and UndefinedBehaviorSanitizer (LLVM/MLIR themselves are Debian's), then
# runs each target SECONDS (default 60) on a copy of its seed corpus (test/fuzz/corpus/). A
# finding (crash, sanitizer report, an error message that is not one line of valid UTF-8, an
# imported module the verifier rejects) is saved under build-fuzz/findings/<target>/ and the
# script exits 1. Prints executions and coverage per target. (LLVM_USE_SANITIZER also drops
# LLVM's -z defs, which an instrumented shared runtime cannot meet. allow_user_poisoning=0:
# LLVM's allocators poison their slabs when compiled with ASan, and uninstrumented libMLIR
# hands that memory out without unpoisoning it; the reports would be false.)
#   bash scripts/fuzz.sh [SECONDS] [TARGET ...]
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds="${1:-60}"
shift || true
targets=("$@")
(( ${#targets[@]} )) || targets=(safetensors manifest hf_config mlir prompts)
build="${MIXTILE_FUZZ_BUILD_DIR:-$root/build-fuzz}"
bash "$root/scripts/setup.sh" || exit 1
flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g"
source "$root/scripts/configure.sh"
configure_build "$build" -DLLVM_USE_SANITIZER=Address \
  "-DCMAKE_C_FLAGS=$flags" "-DCMAKE_CXX_FLAGS=$flags" \
  "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined" \
  "-DCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined" || exit 1
ninja -C "$build" -j"${MIXTILE_JOBS:-2}" $(printf 'fuzz_%s ' "${targets[@]}") mixtile_fake_model || exit 1

# The targets write each input to a file under $TMPDIR: tmpfs makes that about 1.5x faster.
if [[ -z "${TMPDIR:-}" && -d /dev/shm && -w /dev/shm ]]; then export TMPDIR=/dev/shm; fi
status=0
for t in "${targets[@]}"; do
  work="$build/fuzz-work/$t"
  findings="$build/findings/$t"
  mkdir -p "$work/corpus" "$findings"
  cp -n "$root/test/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null
  log="$work/fuzz.log"
  ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=0:malloc_limit_mb=4096:allow_user_poisoning=0" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$build/bin/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=6144 -timeout=30 \
      -print_final_stats=1 -artifact_prefix="$findings/" "$work/corpus" > "$log" 2>&1
  rc=$?
  runs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if (( rc != 0 )); then
    status=1
    echo "fuzz_$t: FINDING after ${runs} executions ($cov); see $log and $findings/"
    grep -m3 -E 'ERROR|runtime error|bad error message|does not verify|deadly signal' "$log"
  else
    echo "fuzz_$t: ${runs} executions in ${seconds} s, $cov, corpus $(ls "$work/corpus" | wc -l) inputs, no finding"
  fi
done
exit $status
