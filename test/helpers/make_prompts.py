#!/usr/bin/python3
"""Writes a batch of random prompts for a model: input_ids int64 [B, S] and attention_mask
int64 [B, S], left-padded as Hugging Face's generate pads them (row b has S - b*step real
tokens, at least 1; pads hold id 0). Numpy only.
Usage: make_prompts.py OUT.safetensors [--batch B] [--length S] [--vocab V] [--seed N]
       [--corrupt right-padding|empty-row|mask-value]
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--batch", type=int, default=3)
    p.add_argument("--length", type=int, default=9)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corrupt", choices=("right-padding", "empty-row", "mask-value"),
                   help="write a bad batch for error tests")
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, args.vocab, (args.batch, args.length)).astype(np.int64)
    mask = np.ones_like(ids)
    step = max(1, args.length // max(args.batch, 1) // 2)
    for b in range(args.batch):
        pad = min(b * step, args.length - 1)
        mask[b, :pad] = 0
        ids[b, :pad] = 0
    if args.corrupt == "right-padding":
        mask[1, -1] = 0
    elif args.corrupt == "empty-row":
        mask[0, :] = 0
    elif args.corrupt == "mask-value":
        mask[0, -1] = 2
    safetensors_io.write_file(args.out, {"input_ids": ids, "attention_mask": mask},
                              {"input_ids": "I64", "attention_mask": "I64"})
    print(f"{args.out}: {args.batch} prompts of {[int(m.sum()) for m in mask]} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
