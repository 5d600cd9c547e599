"""The PyTorch eager peer of the expert-choice rows (Zhou et al., 2022): softmax over experts,
each expert's top-C tokens with torch.topk over the token dimension, gather, the expert's GELU
FFN, index_add_ of the score-weighted result. Same math as layers.md §5. Prints JSON: median
seconds per call (best of --repeats repetitions); with --check, the relative L2 difference
from Mixtile's output for the same inputs.
Usage: torch_expert_choice.py WEIGHTS INPUTS [INPUTS ...] [--capacity-factor 2] [--threads 2]
       [--runs N] [--repeats R] [--check OUT [OUT ...]]
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "helpers"))
import safetensors_io  # noqa: E402


def expert_choice(x, router, wi, wo, capacity_factor):
    T, E = x.shape[0], router.shape[0]
    scores = F.softmax(x @ router.t(), dim=-1)                     # [T, E]
    capacity = min(T, math.ceil(capacity_factor * T / E))
    gates, index = torch.topk(scores.t(), capacity, dim=1)          # [E, C] each
    out = torch.zeros_like(x)
    for e in range(E):
        tokens = x[index[e]]
        h = F.gelu(tokens @ wi[e].t()) @ wo[e].t()
        out.index_add_(0, index[e], h * gates[e, :, None])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--capacity-factor", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check", nargs="*", default=[])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, _ = safetensors_io.read_file(args.weights)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    router, wi, wo = t(w["router.weight"]), t(w["experts.wi"]), t(w["experts.wo"])
    results = {"torch_version": torch.__version__, "median_seconds": {}, "rel_l2_vs_mixtile": {}}
    with torch.no_grad():
        for n, path in enumerate(args.inputs):
            x = t(safetensors_io.read_file(path)[0]["hidden_states"])
            tokens = str(x.shape[0])
            y = expert_choice(x, router, wi, wo, args.capacity_factor)
            if n < len(args.check):
                got = np.asarray(safetensors_io.read_file(args.check[n])[0]["output"], dtype=np.float64)
                ref = y.double().numpy()
                results["rel_l2_vs_mixtile"][tokens] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
            medians = []
            for _ in range(args.repeats):
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    expert_choice(x, router, wi, wo, args.capacity_factor)
                    times.append(time.perf_counter() - t0)
                medians.append(sorted(times)[len(times) // 2])
            results["median_seconds"][tokens] = min(medians)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
