#!/usr/bin/python3
"""Compares a whole model's results (mixtile-run on a `mixtilec --model` artifact) with the
float64 reference of model_reference.py.

Owns the pass/fail rule for models. Logits: relative L2 error over the unmasked positions at
most the tolerance, exactly 0 at masked ones, no NaN/Inf. Generated sequences: every new token
must be a greedy choice of the reference run teacher-forced on the same sequence (its
reference logit within `eps` of the maximum: near ties may go either way), a row ends only
after an end-of-sequence id or at N tokens (N >= 1; with --generate, the N asked for), and what
follows is the pad id. Exit 1 on any
failure.
Usage: check_model.py MODELDIR --inputs IDS.safetensors RESULT.safetensors [--tol T] [--eps E]
       [--generate N]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model_reference  # noqa: E402
import safetensors_io  # noqa: E402

# By the weights' dtype. f32: f32 arithmetic against float64 (~1e-7 measured). bf16: the KV
# cache holds bf16 like the model's own, and the bf16 matrix paths round activations to bf16
# (2^-9 relative per rounding; 2.6e-3 to 6.4e-3 measured on the tiny models).
DEFAULT_TOL = {"f32": 1e-5, "bf16": 2e-2, "f16": 1e-2}
# How far below the reference's best logit a generated token's logit may be (absolute): a few
# times the logits' own error on that path, so only a true near tie may go the other way. The
# tiny models' logits have an rms of ~0.16; at the bf16 tolerance (2e-2 relative) that is an
# error of ~3e-3 rms (2.5e-3 max measured against transformers), f16's half of it.
DEFAULT_EPS = {"f32": 1e-4, "bf16": 1e-2, "f16": 5e-3}


def weight_dtype(model):
    kinds = set(model.dtypes.values())
    return "bf16" if "BF16" in kinds else "f16" if "F16" in kinds else "f32"


def check_logits(result, ref, mask, tol):
    failures = []
    if result.shape != ref.shape:
        return [f"logits: shape {list(result.shape)}, expected {list(ref.shape)}"]
    if not np.all(np.isfinite(result)):
        failures.append(f"logits: {int(np.sum(~np.isfinite(result)))} NaN/Inf values")
    keep = mask.astype(bool)
    if np.any(result[~keep] != 0):
        failures.append("logits: masked positions must be exactly 0")
    diff = np.linalg.norm(result[keep] - ref[keep]) / max(np.linalg.norm(ref[keep]), 1e-30)
    print(f"logits: rel_l2={diff:.3g} (tol {tol:g}) over {int(keep.sum())} positions")
    if not diff <= tol:
        failures.append(f"logits: rel_l2 {diff:.3g} exceeds {tol:g}")
    return failures


def check_sequences(model, ids, mask, sequences, eps, generate=None):
    failures = []
    batch, length = ids.shape
    new = sequences.shape[1] - length
    if sequences.shape[0] != batch or new < 1:
        return [f"sequences: shape {list(sequences.shape)} does not extend input_ids {[batch, length]}"]
    if generate is not None and new != generate:
        return [f"sequences: {new} new tokens per row, expected --generate {generate}"]
    if not np.array_equal(sequences[:, :length], ids):
        failures.append("sequences: the prompts were not copied unchanged")
    near, total = 0, 0
    for b in range(batch):
        start = int(np.argmax(mask[b])) if mask is not None else 0
        row = [int(t) for t in sequences[b, length:]]
        end = new
        for j, token in enumerate(row):
            if token in model.eos:
                end = j + 1
                break
        if any(t != model.fill for t in row[end:]):
            failures.append(f"sequences: row {b} continues after its end-of-sequence id "
                            f"(expected pad {model.fill})")
        if end == 0:
            continue
        tokens = [int(t) for t in ids[b, start:]] + row[:end]
        if any(t < 0 or t >= model.vocab for t in tokens):
            failures.append(f"sequences: row {b} holds an id outside the vocabulary")
            continue
        logits = model.forward(tokens, model.new_cache())
        prompt = length - start
        for j in range(end):
            ref = logits[prompt + j - 1]
            best = float(np.max(ref))
            total += 1
            if row[j] != int(np.argmax(ref)):
                if ref[row[j]] >= best - eps:
                    near += 1
                else:
                    failures.append(f"sequences: row {b} token {j} is {row[j]} (reference logit "
                                    f"{ref[row[j]]:.6g}), the reference picks {int(np.argmax(ref))} "
                                    f"({best:.6g})")
                    break
    print(f"sequences: {total} new tokens checked, {near} near-tie choices (eps {eps:g})")
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--inputs", required=True)
    p.add_argument("result")
    p.add_argument("--tol", type=float)
    p.add_argument("--eps", type=float)
    p.add_argument("--generate", type=int, metavar="N", help="the sequences hold N new tokens per row")
    args = p.parse_args(argv)
    try:
        model = model_reference.Model(args.model_dir)
        inputs, _ = safetensors_io.load(args.inputs, raw=True)
        result, _ = safetensors_io.load(args.result, raw=True)
    except Exception as e:  # noqa: BLE001 - one line for any unreadable input
        print(f"check_model.py: error: {e}", file=sys.stderr)
        return 1
    dtype = weight_dtype(model)
    tol = args.tol if args.tol is not None else DEFAULT_TOL[dtype]
    eps = args.eps if args.eps is not None else DEFAULT_EPS[dtype]
    ids = np.asarray(inputs["input_ids"], dtype=np.int64)
    mask = inputs.get("attention_mask")
    mask = None if mask is None else np.asarray(mask, dtype=np.int64)
    failures = []
    if set(result) - {"logits", "sequences"} or not result:
        failures.append(f"unexpected result tensors {sorted(result)}")
    if "logits" in result:
        ref = model_reference.run(model, ids, mask)["logits"]
        failures += check_logits(np.asarray(result["logits"], dtype=np.float64), ref,
                                 np.ones(ids.shape) if mask is None else mask, tol)
    if "sequences" in result:
        failures += check_sequences(model, ids, mask, np.asarray(result["sequences"]), eps, args.generate)
    for failure in failures:
        print("FAIL: " + failure)
    print("PASSED" if not failures else "FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
