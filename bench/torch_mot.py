"""The PyTorch eager peer of the Mixture-of-Tokens rows: the same layer written the way the
MoT authors' llm-random `continuous_moe.py` writes it (default sparsity_dim=0): controller
[D, E], einsum to the merge logits, softmax over the group with temperature, einsum to mix,
two batched expert matmuls with ReLU between, einsum to emit. Weights are taken from Mixtile's
safetensors ([E, D] controller, [E, F, D] / [E, D, F] experts) and transposed once, before any
timing, into the authors' layouts ([D, E], [E, D, F], [E, F, D]).

Also times the two batched expert GEMMs alone (torch.bmm on the already-mixed tokens, laid
out [E, N, D] so no copy is timed), and with --check compares its output with Mixtile's.
Prints JSON: median seconds per call, best of --repeats repetitions.
Usage: torch_mot.py WEIGHTS INPUTS --group 32 [--temperature 1] [--threads 2] [--runs N]
       [--repeats R] [--check MIXTILE_OUTPUT.safetensors]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "helpers"))
import safetensors_io  # noqa: E402


def mixture_of_tokens(x, controller, lin1, lin2, group, temperature):
    # continuous_moe.py, sparsity_dim=0: groups of `group` examples at the same position.
    B, S, D = x.shape
    x = x.view(B // group, group, S, D).transpose(1, 2)                  # [b, s, c, d]
    merge_logits = torch.einsum("bscd,de->bsec", x, controller)
    merge_weights = torch.softmax(merge_logits / temperature, dim=-1)  # over the group c
    z = torch.einsum("bscd,bsec->bsed", x, merge_weights)
    h = torch.einsum("bsed,edf->bsef", z, lin1)
    h = torch.relu_(h)
    h = torch.einsum("bsef,efd->bsed", h, lin2)
    y = torch.einsum("bsed,bsec->bscd", h, merge_weights)
    return y.transpose(1, 2).reshape(B, S, D)


def expert_gemms(z, lin1, lin2):
    # The expert FFN alone: z [E, N, D] -> relu(z · lin1) · lin2, two torch.bmm.
    return torch.bmm(torch.relu_(torch.bmm(z, lin1)), lin2)


def timed(fn, runs, repeats):
    fn()
    medians = []
    for _ in range(repeats):
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        medians.append(sorted(times)[len(times) // 2])
    return min(medians)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("weights")
    p.add_argument("inputs")
    p.add_argument("--group", type=int, default=32)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--check", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, _ = safetensors_io.read_file(args.weights)
    inputs, _ = safetensors_io.read_file(args.inputs)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
    controller = t(w["controller"]).t().contiguous()               # [D, E]
    lin1 = t(w["experts.lin1"]).transpose(1, 2).contiguous()       # [E, D, F]
    lin2 = t(w["experts.lin2"]).transpose(1, 2).contiguous()       # [E, F, D]
    x = t(inputs["hidden_states"])
    B, S, D = x.shape
    E = controller.shape[1]
    result = {"torch_version": torch.__version__}
    with torch.no_grad():
        y = mixture_of_tokens(x, controller, lin1, lin2, args.group, args.temperature)
        if args.check:
            got, _ = safetensors_io.read_file(args.check)
            got = np.asarray(got["output"], dtype=np.float64)
            ref = y.double().numpy()
            result["rel_l2_vs_mixtile"] = float(np.linalg.norm(got - ref) / np.linalg.norm(ref))
        result["layer_s"] = timed(lambda: mixture_of_tokens(x, controller, lin1, lin2, args.group,
                                                            args.temperature), args.runs, args.repeats)
        z = torch.randn(E, B // args.group * S, D)
        result["expert_gemms_s"] = timed(lambda: expert_gemms(z, lin1, lin2), args.runs, args.repeats)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
