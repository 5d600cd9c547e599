#!/usr/bin/python3
"""An exact check of the runtime's fp8 dequantization (fine-grained fp8 checkpoints, blocks of
4 x 8): `write DIR` writes DIR/weights.safetensors, whose fp8 weights `w` and `wb` [24, 32]
hold every finite e4m3 code (subnormals, -0) and random ones, with f32 scales
`w_scale_inv` / `wb_scale_inv` [6, 4] (powers of two and not), and DIR/inputs.safetensors,
x = the 32 x 32 identity. Through test/integration/cpu/Inputs/fp8-dequant.mlir
(y = x w^T with w in f32, yb the same with w in bf16) the results are the dequantized
weights transposed, which `check DIR RESULT.safetensors` compares bit for bit with
transformers' CPU dequantization, dtype(f32(code) * f32(scale)).
Usage: fp8_dequant_case.py write DIR [--large] | check DIR RESULT.safetensors [--large]
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402
import safetensors_io  # noqa: E402

ROWS, COLS, BLOCK = 24, 32, (4, 8)
# --large: Inputs/fp8-dequant-large.mlir, weights of 65536 x 64 (4M elements: the runtime
# splits them over threads) in blocks of 128 x 32.
LARGE = (65536, 64, (128, 32))


def write(directory):
    rng = np.random.default_rng(7)
    os.makedirs(directory, exist_ok=True)
    finite = safetensors_io.E4M3_FINITE_CODES
    tensors, dtypes = {}, {}
    for name in ("w", "wb"):
        codes = rng.choice(finite, size=ROWS * COLS)
        codes[: finite.size] = rng.permutation(finite)
        grid = (ROWS // BLOCK[0], COLS // BLOCK[1])
        scales = np.where(
            rng.random(grid) < 0.5,
            np.exp2(rng.integers(-12, 4, size=grid)),
            rng.uniform(1e-4, 3.0, size=grid),
        ).astype(np.float32)
        tensors[name], dtypes[name] = codes.reshape(ROWS, COLS), "F8_E4M3"
        tensors[name + "_scale_inv"], dtypes[name + "_scale_inv"] = scales, "F32"
    safetensors_io.write_file(os.path.join(directory, "weights.safetensors"), tensors, dtypes)
    safetensors_io.write_file(
        os.path.join(directory, "inputs.safetensors"), {"x": np.eye(COLS, dtype=np.float32)}
    )


def check(directory, result_path):
    weights, _ = safetensors_io.load(os.path.join(directory, "weights.safetensors"), raw=True)
    result, _ = safetensors_io.load(result_path)
    ok = True
    for name, out, dtype in (("w", "y", "F32"), ("wb", "yb", "BF16")):
        values = safetensors_io.e4m3_bits_to_f64(weights[name])
        want = hf_reference.dequantize(values, weights[name + "_scale_inv"], BLOCK, dtype)
        got = result[out].T
        if got.shape != want.shape:
            print(f"{name} ({dtype}): result shape {list(got.shape)[::-1]}, expected {list(want.shape)[::-1]}")
            ok = False
            continue
        bad = int(np.sum(got != want))
        print(f"{name} ({dtype}): {bad} of {want.size} elements differ from the dequantized weight")
        ok = ok and bad == 0
    print("PASSED" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    if "--large" in sys.argv:
        sys.argv.remove("--large")
        ROWS, COLS, BLOCK = LARGE
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 4 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
