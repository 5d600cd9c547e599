#!/usr/bin/python3
"""Compares a layer's results (a safetensors file from mixtile-run) with the float64 reference
of a make_case.py case directory, or of a Hugging Face config + checkpoint (--hf).

Owns the pass/fail rule: exact names, shapes and dtypes; relative L2 error per result with
near-tie tokens left out and counted; no NaN/Inf where the reference is finite. Exit 1 on any
failure. `check.py --self-test` shows that it rejects wrong results.
Usage: check.py CASE_DIR RESULT.safetensors [--tol T]
       check.py --hf CONFIG.json CHECKPOINT --inputs X.safetensors [--layer N] RESULT.safetensors
"""

import argparse
import json
import math
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402
import reference  # noqa: E402
import safetensors_io  # noqa: E402

# Default tolerance on the relative L2 error, by the least precise weight dtype. f32 weights:
# an f32 implementation differs from float64 by accumulated f32 rounding (~1e-6). bf16/f16:
# the weights are exact, but an implementation may round activations to the weight dtype for
# its GEMMs (relative error up to 2^-8 / 2^-11 per product, averaging down over the sums).
DEFAULT_TOL = {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2}
# A layer whose tokens are bf16/f16 rounds its output once, to nearest (relative error at most
# 2^-8 / 2^-11 per element), after GEMMs that may round their activation operand to the weight
# dtype as well: twice the unit roundoff bounds the relative L2 error of the two together
# (bf16 2·2^-8 = 7.8e-3, f16 2·2^-11 = 9.8e-4), held at the weight dtypes' tolerances.
TOKEN_TOL = {"f32": 0.0, "f16": 2e-3, "bf16": 1e-2}
DTYPE_NAMES = {"F32": "f32", "BF16": "bf16", "F16": "f16"}
SAFETENSORS_NAMES = {v: k for k, v in DTYPE_NAMES.items()}
# At most this fraction of a case's tokens (at least one) may be excluded as near ties.
MAX_NEAR_TIE = 0.05
PRECISION_ORDER = ("f32", "f16", "bf16")


def case_reference(case_dir, router_precision="f32"):
    """Reference of a make_case.py case. Returns (results, near_tie, info, weight dtype).
    router_precision: "f32" when the implementation computes router logits from f32 tokens
    with f32 accumulation (Mixtile's CPU target: only accumulation error separates it from
    the reference), "weights" when it may round tokens to the router weights' dtype first
    (a bf16 tensor-core matmul); the near-tie bound widens accordingly."""
    with open(os.path.join(case_dir, "case.json")) as f:
        case = json.load(f)
    weights, dtypes = safetensors_io.load(os.path.join(case_dir, "weights.safetensors"))
    raw_inputs, _ = safetensors_io.load(os.path.join(case_dir, "inputs.safetensors"))
    tensors = {}
    for role, names in case["weights"].items():
        tensors[role] = (
            np.stack([weights[n] for n in names]) if isinstance(names, list) else weights[names]
        )
    inputs = {role: raw_inputs[name] for role, name in case["inputs"].items()}
    router_dtype = case.get("router_dtype", case["dtype"])
    unit = reference.UNIT_ROUNDOFF[router_dtype] if router_precision == "weights" else 0.0
    results, near, info = reference.evaluate(case["kind"], inputs, tensors, case["attrs"], unit)
    expected = {name: results[name] for name in case["results"]}
    weight_dtype = max((DTYPE_NAMES[d] for d in dtypes.values()), key=PRECISION_ORDER.index)
    router = tensors.get("router", tensors.get("controller"))
    info["experts"] = router.shape[0] if router is not None else 0
    info["token_dtype"] = case.get("token_dtype", "f32")
    return expected, near, info, weight_dtype


def hf_case_reference(config, checkpoint, inputs, layer, router_precision="f32"):
    results, near, info = hf_reference.compute(config, checkpoint, inputs, layer, router_precision)
    weight_dtype = max((DTYPE_NAMES[d] for d in info["weight_dtypes"]), key=PRECISION_ORDER.index)
    info["experts"] = info["spec"]["experts"]
    _, input_dtypes = safetensors_io.load(inputs)
    info["token_dtype"] = DTYPE_NAMES.get(input_dtypes.get("hidden_states"), "f32")
    return results, near, info, weight_dtype


def default_tol(weight_dtype, info, exact_weights=False):
    """exact_weights: the implementation multiplies the weights as stored, in f32 (the cpu
    target's fma_f32 matrix path): then bf16/f16 weights cost no accuracy and the f32 bound
    holds; only the bf16/f16 matrix paths round activations to the weight dtype."""
    weights = DEFAULT_TOL["f32"] if exact_weights else DEFAULT_TOL[weight_dtype]
    return max(weights, TOKEN_TOL[info.get("token_dtype", "f32")])


def matmul_paths(artifact_dir):
    """{kernel kind: matrix path} of a cpu artifact (manifest cpu.matmul_paths; mixtilec --cpu
    decides); None for an artifact that does not record them."""
    with open(os.path.join(artifact_dir, "manifest.json")) as f:
        manifest = json.load(f)
    if manifest.get("target") != "cpu" or "cpu" not in manifest:
        return None
    return {p["kernel"]: p["matmul_path"] for p in manifest["cpu"]["matmul_paths"]}


def exact_weight_paths(artifact_dir):
    """Whether every GEMM of a cpu artifact multiplies the weights as stored, in f32."""
    paths = matmul_paths(artifact_dir)
    return paths is not None and all(p == "fma_f32" for p in paths.values())



def compare(expected, near_tie, results_path, tol, info):
    """Prints one line per result; returns True when all pass."""
    try:
        got, got_dtypes = safetensors_io.load(results_path, raw=True)
    except (OSError, ValueError, safetensors_io.SafetensorsError) as e:
        print(f"FAIL: cannot read {results_path}: {e}")
        return False
    ok = True
    for name in sorted(set(got) - set(expected)):
        print(f"{name}: FAIL unexpected tensor in {results_path}")
        ok = False
    for name, ref in expected.items():
        if name not in got:
            print(f"{name}: FAIL missing from {results_path}")
            ok = False
            continue
        # The layer's output comes in its token dtype; router logits and losses in f32.
        dtype = SAFETENSORS_NAMES[info.get("token_dtype", "f32")] if name == "output" else "F32"
        if got_dtypes[name] != dtype or tuple(got[name].shape) != ref.shape:
            print(
                f"{name}: FAIL expected {dtype} {list(ref.shape)}, "
                f"got {got_dtypes[name]} {list(got[name].shape)}"
            )
            ok = False
            continue
        y = safetensors_io.widen(got[name], got_dtypes[name])
        line, passed = compare_one(name, y, ref, near_tie, tol, info)
        print(line)
        ok &= passed
    return ok


def compare_one(name, y, ref, near_tie, tol, info):
    # Per-token results: rows are tokens (Mixture of Tokens' [B, S, D] flattens to B·S rows).
    # Only `output` depends on the discrete routing choice; logits and z-loss are continuous.
    per_token = ref.ndim >= 2
    y2 = y.reshape(-1, ref.shape[-1]) if per_token else y.reshape(1, -1)
    r2 = ref.reshape(-1, ref.shape[-1]) if per_token else ref.reshape(1, -1)
    keep = np.ones(r2.shape[0], dtype=bool)
    note = ""
    too_many_ties = False
    if name == "output" and near_tie.shape[0] == r2.shape[0]:
        keep = ~near_tie
        note = f" (excluded {int(near_tie.sum())} of {r2.shape[0]} near-tie tokens)"
        # Exclusions are capped: a case where many tokens sit on a tie tests too little.
        too_many_ties = int(near_tie.sum()) > max(1, math.ceil(MAX_NEAR_TIE * r2.shape[0]))
    y2, r2 = y2[keep], r2[keep]

    finite = np.isfinite(r2)
    bad_nonfinite = int((~np.isfinite(y2) & finite).sum())
    # NaN/Inf in the input must propagate: where the reference is not finite, neither may y be.
    lost_nonfinite = int((np.isfinite(y2) & ~finite).sum())
    diff = np.where(finite, y2 - r2, 0.0)
    ref_norm = float(np.linalg.norm(np.where(finite, r2, 0.0)))
    err_norm = float(np.linalg.norm(np.nan_to_num(diff, nan=np.inf)))

    allowance = 0.0
    if name == "aux_loss" and near_tie.any() and near_tie.size:
        # A near-tie token may move its k assignments: Σ_e |Δf_e| <= 2/T per token, so
        # |ΔL| <= E · max_e P_e · 2·n/T.
        max_prob = float(info.get("mean_prob", np.ones(1)).max())
        allowance = info.get("experts", 1) * max_prob * 2.0 * near_tie.sum() / near_tie.size
        note = f" (allowing {allowance:.3g} for {int(near_tie.sum())} near-tie tokens)"
    if ref_norm > 0:
        error = err_norm / ref_norm
        passed = error <= tol + allowance / ref_norm
        text = f"{name}: rel_l2={error:.3e}{note}"
    else:
        error = err_norm
        passed = error <= tol + allowance
        text = f"{name}: abs_l2={error:.3e} (reference is zero where finite){note}"
    if not finite.all():
        text += f"; {int((~finite).sum())} NaN/Inf reference values"
    if bad_nonfinite:
        text += f"; {bad_nonfinite} non-finite values where the reference is finite"
        passed = False
    if lost_nonfinite:
        text += f"; {lost_nonfinite} finite values where the reference is NaN/Inf"
        passed = False
    if too_many_ties:
        text += f"; more than {MAX_NEAR_TIE:.0%} of the tokens are near ties"
        passed = False
    return text + ("" if passed else f"  FAIL (tol {tol:g})"), passed


def run(args):
    if args.hf:
        config, checkpoint = args.hf
        if not args.inputs or len(args.paths) != 1:
            print(
                "check.py: --hf needs --inputs X.safetensors and one RESULT.safetensors",
                file=sys.stderr,
            )
            return 2
        expected, near, info, weight_dtype = hf_case_reference(
            config, checkpoint, args.inputs, args.layer, args.router_precision
        )
        result_path = args.paths[0]
    else:
        if len(args.paths) != 2:
            print("check.py: expected CASE_DIR RESULT.safetensors", file=sys.stderr)
            return 2
        expected, near, info, weight_dtype = case_reference(args.paths[0], args.router_precision)
        result_path = args.paths[1]
    if args.write_reference:
        safetensors_io.write_file(
            args.write_reference, {n: v.astype(np.float32) for n, v in expected.items()}
        )
    exact = bool(args.artifact) and exact_weight_paths(args.artifact)
    tol = args.tol if args.tol is not None else default_tol(weight_dtype, info, exact)
    print(
        f"checking {result_path} ({weight_dtype} weights, {info.get('token_dtype', 'f32')} "
        f"tokens, tol {tol:g})"
    )
    return 0 if compare(expected, near, result_path, tol, info) else 1


# ---------------------------------------------------------------------------------------------
# Self-test: check.py must accept the reference itself and reject wrong results.
# ---------------------------------------------------------------------------------------------


def _quiet(fn, *args):
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()) as out:
        value = fn(*args)
    return value, out.getvalue()


def _rows(results):
    out = results["output"]
    return out.reshape(-1, out.shape[-1])


def _corruptions(expected, near_tie):
    """Wrong results check.py must reject, each a function editing a copy of the reference."""
    # The largest compared token, so scaling it cannot be a no-op (a dropped token is 0).
    norms = np.linalg.norm(_rows(expected), axis=-1) if _rows(expected).size else np.zeros(1)
    checked_row = int(np.argmax(np.where(near_tie, -1.0, norms))) if near_tie.size else 0

    def scale_one_token(r):
        _rows(r)[checked_row] *= 1.5

    def one_nan(r):
        _rows(r)[checked_row, 0] = np.nan

    def all_zero(r):
        r["output"][...] = 0.0

    def drop_last_token(r):
        r["output"] = r["output"][:-1]

    def missing(r):
        del r["output"]

    def extra(r):
        r["output_copy"] = r["output"]

    def wrong_aux_loss(r):
        r["aux_loss"] = r["aux_loss"] * 1.1 + 0.1

    found = [scale_one_token, one_nan, all_zero, drop_last_token, missing, extra]
    return found + ([wrong_aux_loss] if "aux_loss" in expected else [])


def self_test(verbose=True):
    """Builds cases, feeds compare() the reference itself (must pass) and corrupted copies
    (must fail). Returns the number of unmet expectations."""
    import make_case

    failures = 0
    cases = {
        "deepseek_v3_aux": ["--preset", "deepseek_v3", "--aux", "--tokens", "32"],
        "switch_capacity": ["--preset", "switch", "--tokens", "32"],
        "mixture_of_tokens": ["--kind", "mixture_of_tokens", "--batch", "4", "--seq", "3"],
        "mixtral_bf16": ["--preset", "mixtral", "--dtype", "bf16", "--tokens", "32"],
        "mixtral_bf16_tokens": [
            "--preset", "mixtral", "--dtype", "bf16", "--token-dtype", "bf16", "--tokens", "32",
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        for label, argv in cases.items():
            case_dir = os.path.join(tmp, label)
            make_case.main([case_dir, *argv])
            expected, near, info, weight_dtype = case_reference(case_dir)

            def accepted(results, what, near=near):
                path = os.path.join(tmp, f"{label}_{what}.safetensors")
                token_dtype = SAFETENSORS_NAMES[info["token_dtype"]]
                safetensors_io.write_file(
                    path,
                    {n: np.asarray(v, np.float32) for n, v in results.items()},
                    {"output": token_dtype} if "output" in results else None,
                )
                return _quiet(compare, expected, near, path, default_tol(weight_dtype, info), info)

            def many_near_ties(results):
                """The reference itself, but with every token a near tie: over the cap."""
                return accepted(results, "many_near_ties", np.ones_like(near))

            passed, text = accepted(expected, "exact")
            if not passed:
                failures += 1
                print(f"self-test FAIL: {label}: the reference itself was rejected:\n{text}")
            if near.size > 1 and many_near_ties(expected)[0]:
                failures += 1
                print(f"self-test FAIL: {label}: a case of only near-tie tokens was accepted")
            corruptions = _corruptions(expected, near)
            for corrupt in corruptions:
                results = {n: v.copy() for n, v in expected.items()}
                corrupt(results)
                passed, text = accepted(results, corrupt.__name__)
                if passed:
                    failures += 1
                    print(f"self-test FAIL: {label}: '{corrupt.__name__}' was accepted:\n{text}")
            if verbose:
                print(
                    f"self-test {label}: reference accepted; rejected: "
                    + ", ".join(c.__name__ for c in corruptions)
                )
    return failures


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("paths", nargs="*", help="CASE_DIR RESULT.safetensors, or RESULT with --hf")
    p.add_argument(
        "--tol",
        type=float,
        help="relative L2 tolerance (default by weight dtype: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_TOL.items())
        + ")",
    )
    p.add_argument(
        "--artifact",
        metavar="DIR",
        help="the artifact that produced RESULT: its matrix paths set the tolerance (f32 "
        "arithmetic on bf16/f16 weights is held to the f32 bound)",
    )
    p.add_argument("--hf", nargs=2, metavar=("CONFIG", "CHECKPOINT"))
    p.add_argument("--inputs", help="with --hf: safetensors file with hidden_states [T, hidden]")
    p.add_argument(
        "--layer", type=int, help="with --hf: the sparse layer (default: the one in the checkpoint)"
    )
    p.add_argument(
        "--write-reference", metavar="PATH", help="also write the reference (f32) to PATH"
    )
    p.add_argument(
        "--router-precision",
        choices=("f32", "weights"),
        default="f32",
        help="how the implementation computes router logits: from f32 tokens with f32 "
        "accumulation (default, Mixtile's CPU target), or possibly rounded to the weights' "
        "dtype first; sets which near-tie tokens are excluded",
    )
    p.add_argument("--self-test", action="store_true", help="show that wrong results are rejected")
    args = p.parse_args(argv)
    if args.self_test:
        return 1 if self_test() else 0
    try:
        return run(args)
    except (hf_reference.ConfigError, safetensors_io.SafetensorsError, ValueError) as e:
        print(f"check.py: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
