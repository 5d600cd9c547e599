"""The PyTorch eager peer: the same sparse block, written the way Hugging Face's
MixtralSparseMoeBlock does it (softmax, top-k, renormalize, a loop over experts with
index_add_). Runs under Debian's python3-torch. Prints, as JSON, the median seconds per call
(best of --repeats repetitions).
Usage: torch_moe.py WEIGHTS.safetensors TOKENS [TOKENS ...] --threads 2 --runs N
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "helpers"))
import safetensors_io  # noqa: E402


def sparse_block(x, router, w1, w3, w2, k):
    # transformers' MixtralSparseMoeBlock.forward, minus jitter and dtype casts.
    logits = x @ router.t()
    weights = F.softmax(logits, dim=1, dtype=torch.float)
    weights, selected = torch.topk(weights, k, dim=-1)
    weights /= weights.sum(dim=-1, keepdim=True)
    out = torch.zeros_like(x)
    mask = F.one_hot(selected, num_classes=router.shape[0]).permute(2, 1, 0)
    for e in range(router.shape[0]):
        idx, top = torch.where(mask[e])
        if top.numel() == 0:
            continue
        state = x[top]
        h = F.silu(state @ w1[e].t()) * (state @ w3[e].t())
        out.index_add_(0, top, (h @ w2[e].t()) * weights[top, idx, None])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("tokens", type=int, nargs="+")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tensors, _ = safetensors_io.read_file(args.weights)
    t = {n: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for n, v in tensors.items()}
    router, w1, w3, w2 = t["gate.weight"], t["experts.w1"], t["experts.w3"], t["experts.w2"]
    rng = np.random.default_rng(0)
    results = {}
    with torch.no_grad():
        for tokens in args.tokens:
            x = torch.from_numpy(rng.standard_normal((tokens, router.shape[1])).astype(np.float32))
            sparse_block(x, router, w1, w3, w2, args.k)
            medians = []
            for _ in range(args.repeats):
                times = []
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    sparse_block(x, router, w1, w3, w2, args.k)
                    times.append(time.perf_counter() - t0)
                medians.append(sorted(times)[len(times) // 2])
            results[tokens] = min(medians)
    print(json.dumps({"torch_version": torch.__version__, "median_seconds": results}))


if __name__ == "__main__":
    main()
