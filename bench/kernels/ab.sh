#!/usr/bin/env bash
# In-process A/B of the CPU kernel library: side A is the kernels at a git revision (default
# HEAD), side B the working tree's, both linked into one program that alternates them
# (ab_main.cpp). The way to measure a kernel change on a shared VM, whose speed moves more
# than most changes gain.
# Usage: bench/kernels/ab.sh [--base REV] [--flags-a "..."] [--flags-b "..."] -- ARGS...
#   ARGS: ab_main.cpp's (linear THREADS M K N [ROUNDS] [dp] | experts THREADS E D F T k [ROUNDS] [PATH])
#   TILES_A / TILES_B: MIXTILE_TILES-style tile overrides per side (bench_common.h's field order).
#   --flags-a/-b: extra compiler flags per side (e.g. a -DMIXTILE_* tuning macro); with the
#   same revision on both sides that compares two settings of one build (A/A without flags).
# Examples:
#   bench/kernels/ab.sh -- linear 2 4 2048 50304             # HEAD against the working tree
#   TILES_B=112,256,512,32,0,0,1,0,0,0,32768 bench/kernels/ab.sh -- linear 2 4 2048 50304
#   bench/kernels/ab.sh --base HEAD~3 -- experts 2 8 1024 3584 32 2
#   T=112,256,1024,3,1024,512,1,64,65,0,0,0,256,512   # cpu-amx_bf16.json's tiles, both sides:
#   TILES_A=$T TILES_B=$T bench/kernels/ab.sh -- experts 2 8 1024 3584 2048 2 20 amx
#   (not TILES_B=$TILES_A in the same command: it expands before TILES_A is set, and an unset
#   side runs default_tile_config)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
base=HEAD flags_a="" flags_b=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --flags-a) flags_a="$2"; shift 2 ;;
    --flags-b) flags_b="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "ab.sh: unknown option '$1' (the harness's arguments follow --)" >&2; exit 1 ;;
  esac
done
[[ $# -gt 0 ]] || { sed -n '2,15p' "$0" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$ROOT" archive "$base" codegen/cpu/kernels | tar -x -C "$work" ||
  { echo "ab.sh: cannot export codegen/cpu/kernels at '$base'" >&2; exit 1; }
CXX="${CXX:-g++}"
FLAGS=(-std=c++17 -O3 -fopenmp -march=native -w)
field() {  # -DAB_FIELD_<N>=&t.<name> where that tree's TileConfig has the field, else nullptr
  if grep -q "int $3 " "$1/codegen/cpu/kernels/gemm.h"; then echo "-DAB_FIELD_$2=&t.$3"; else echo "-DAB_FIELD_$2=nullptr"; fi
}
fields() {
  echo "$(field "$1" 11 small_prefetch_l2_bytes) $(field "$1" 12 small_dp_rows) $(field "$1" 13 engine_l1_rows)" \
    "$(field "$1" 14 engine_l1_kc) $(field "$1" 15 engine_whole_depth_bytes)"
}
"$CXX" "${FLAGS[@]}" -I"$work" $flags_a -Dmixtile=mixtileA -DAB_SIDE=A -DAB_TILES_ENV=TILES_A \
  $(fields "$work") -c "$ROOT/bench/kernels/ab_side.cpp" -o "$work/a.o" &
"$CXX" "${FLAGS[@]}" -I"$ROOT" $flags_b -Dmixtile=mixtileB -DAB_SIDE=B -DAB_TILES_ENV=TILES_B \
  $(fields "$ROOT") -c "$ROOT/bench/kernels/ab_side.cpp" -o "$work/b.o" &
wait %1 && wait %2
"$CXX" "${FLAGS[@]}" "$ROOT/bench/kernels/ab_main.cpp" "$work/a.o" "$work/b.o" -o "$work/ab"
echo "A: $base${flags_a:+ $flags_a}${TILES_A:+ tiles $TILES_A}   B: working tree${flags_b:+ $flags_b}${TILES_B:+ tiles $TILES_B}"
"$work/ab" "$@"
