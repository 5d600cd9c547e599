#!/usr/bin/python3
"""Writes random weights and inputs for a compiled artifact, by its manifest: every weight
argument into WEIGHTS, every input (dynamic dims bound to --tokens / --batch, --seq) into
INPUTS. For demos and benchmarks; tests use test/helpers/make_case.py.
Usage: random_tensors.py OUTDIR --tokens T [--batch B --seq S] WEIGHTS INPUTS
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "helpers"))
import safetensors_io  # noqa: E402

DTYPES = {"f32": "F32", "bf16": "BF16", "f16": "F16", "i32": "I32"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("weights")
    p.add_argument("inputs")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--entry", default=None)
    args = p.parse_args()
    with open(os.path.join(args.outdir, "manifest.json")) as f:
        manifest = json.load(f)
    entries = manifest["entry_points"]
    entry = next((e for e in entries if e["function"] == args.entry), entries[0])
    symbols = {"T": args.tokens, "B": args.batch, "S": args.seq}
    rng = np.random.default_rng(args.seed)
    weights, inputs, weight_dtypes, input_dtypes = {}, {}, {}, {}
    for arg in entry["arguments"]:
        shape = [symbols[s] if s else d for s, d in zip(arg["symbols"], arg["shape"])]
        # Scale by 1/sqrt(fan-in) so activations stay O(1) through the layer.
        scale = 1.0 if arg["kind"] == "input" else 1.0 / np.sqrt(max(shape[-1], 1))
        values = rng.standard_normal(shape) * scale
        target, dtypes = (inputs, input_dtypes) if arg["kind"] == "input" else (weights, weight_dtypes)
        target[arg["name"]] = values
        dtypes[arg["name"]] = DTYPES[arg["dtype"]]
    safetensors_io.write_file(args.weights, weights, weight_dtypes)
    safetensors_io.write_file(args.inputs, inputs, input_dtypes)


if __name__ == "__main__":
    main()
