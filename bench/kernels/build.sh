#!/usr/bin/env bash
# Builds the CPU kernel library's benchmark and correctness test (native ISA, AVX2, the scalar
# fallback, and AVX512-BF16 without AMX).
# Usage: bench/kernels/build.sh [OUTDIR=build/bench-kernels]; installs what it needs
# (libopenblas-dev, the benchmarks' sgemm peer) through scripts/setup.sh --bench.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bash "$ROOT/scripts/setup.sh" --bench
OUT="${1:-$ROOT/build/bench-kernels}"
mkdir -p "$OUT"
CXX="${CXX:-g++}"
# -Wno-*uninitialized: GCC 12 false positives inside avx512fintrin.h (_mm512_undefined_*, GCC PR 105593).
FLAGS=(-std=c++17 -O3 -fopenmp -I"$ROOT" -Wall -Wextra -Wno-maybe-uninitialized -Wno-uninitialized)
"$CXX" "${FLAGS[@]}" -march=native "$ROOT/bench/kernels/bench_expert_ffn.cpp" -o "$OUT/bench_expert_ffn" -lopenblas &
"$CXX" "${FLAGS[@]}" -march=native "$ROOT/test/codegen/cpu/Inputs/test_expert_ffn.cpp" -o "$OUT/test_expert_ffn" &
"$CXX" "${FLAGS[@]}" -march=haswell "$ROOT/test/codegen/cpu/Inputs/test_expert_ffn.cpp" -o "$OUT/test_expert_ffn_avx2" &
"$CXX" "${FLAGS[@]}" -march=x86-64 -mno-avx "$ROOT/test/codegen/cpu/Inputs/test_expert_ffn.cpp" -o "$OUT/test_expert_ffn_scalar" &
# The test's shapes are too small for the k-blocked small path; a tiny L1 budget forces it.
"$CXX" "${FLAGS[@]}" -march=native -DMIXTILE_SMALL_X_BYTES=256 -DMIXTILE_SMALL_KB_MIN=1 "$ROOT/test/codegen/cpu/Inputs/test_expert_ffn.cpp" -o "$OUT/test_expert_ffn_kblock" &
"$CXX" "${FLAGS[@]}" -march=native "$ROOT/bench/kernels/bench_small.cpp" -o "$OUT/bench_small" &
"$CXX" "${FLAGS[@]}" -march=native "$ROOT/bench/kernels/bench_linear.cpp" -o "$OUT/bench_linear" &
"$CXX" "${FLAGS[@]}" -march=native "$ROOT/bench/kernels/bench_latent_attention.cpp" -o "$OUT/bench_latent_attention" &
# The VDPBF16PS path on its own, as on Zen 4/5 or Cooper Lake (AVX512-BF16 without AMX).
"$CXX" "${FLAGS[@]}" -march=x86-64-v3 -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 "$ROOT/test/codegen/cpu/Inputs/test_expert_ffn.cpp" -o "$OUT/test_expert_ffn_avx512bf16" &
wait
echo "built in $OUT: bench_expert_ffn bench_small bench_linear bench_latent_attention test_expert_ffn test_expert_ffn_avx2 test_expert_ffn_scalar test_expert_ffn_kblock test_expert_ffn_avx512bf16"
