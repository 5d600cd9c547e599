#!/usr/bin/env python3
"""Two artifacts of the same layer, call by call in ONE process: an A/B of a kernel or tuning change.

This VM's speed moves by up to 2x within minutes, so two builds timed one after the other can
differ by more than the change between them. Here both artifacts are bound to the same weights
(the checkpoint's own file, read in place at its own alignment) and run the same input in turns,
the order alternating each round; the result is the median over rounds of (B's time / A's time)
with quartiles, both times of a ratio measured within the same second. The outputs are compared
too (max |A - B|): a change that only reorders work should leave them bitwise equal.

Typical uses:
  # a tuning-table change: the same compiler, two tables
  mixtilec --hf-config CFG --layer 0 --dtype bf16 --tuning-table old.json -o /tmp/a
  mixtilec --hf-config CFG --layer 0 --dtype bf16 --tuning-table new.json -o /tmp/b
  # a kernel-library change: copy the artifact, replace a header in its mixtile_kernels/, rebuild
  # its library with the command in codegen/Artifact.cpp (g++ -std=c++17 -O3 -march=native
  # -fopenmp -fPIC -shared -w -I DIR DIR/NAME.cpp -o DIR/libNAME.so)
  python3 bench/ab_artifacts.py /tmp/a /tmp/b --weights CKPT --tokens 512 --rounds 30 --cold

Needs torch (the pyenv Python); the artifacts' first entry point, one token input [T, D].
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--weights", required=True, help="checkpoint file or directory both artifacts bind")
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cold", action="store_true", help="read 384 MiB before every call (weights out of the caches)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    import torch
    import mixtile

    with open(os.path.join(args.a, "manifest.json")) as f:
        manifest = json.load(f)
    entry = manifest["entry_points"][0]
    token_input = [a for a in entry["arguments"] if a.get("kind") == "input"][0]
    in_name, out_name = token_input["name"], entry["results"][0]["name"]
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[token_input["dtype"]]
    D = token_input["shape"][-1]

    sessions = [mixtile.Artifact(d).bind(args.weights, num_threads=args.threads) for d in (args.a, args.b)]
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randn(args.tokens, D, generator=g).to(dtype)
    outs = [torch.empty(args.tokens, D, dtype=dtype) for _ in sessions]
    junk = torch.ones(96 << 20, dtype=torch.float32)
    times = [[], []]
    for r in range(-1, args.rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            if args.cold:
                junk.sum()
            t0 = time.perf_counter()
            sessions[i].run({in_name: x}, out={out_name: outs[i]})
            if r >= 0:
                times[i].append((time.perf_counter() - t0) * 1e3)
    ratios = sorted(b / a for a, b in zip(*times))
    q = len(ratios) // 4
    diff = (outs[0].float() - outs[1].float()).abs().max().item()
    print(f"T={args.tokens} {'cold' if args.cold else 'warm'}, {args.rounds} rounds: "
          f"A median {statistics.median(times[0]):.3f} ms (min {min(times[0]):.3f}), "
          f"B median {statistics.median(times[1]):.3f} ms (min {min(times[1]):.3f}); "
          f"B/A per round median {statistics.median(ratios):.3f} [q1 {ratios[q]:.3f}, q3 {ratios[-1 - q]:.3f}]; "
          f"max |A - B| = {diff:g}")


if __name__ == "__main__":
    main()
