#!/usr/bin/python3
"""Turns a hand-written layer (an examples/*.mlir file) into a check.py case: random weights and
inputs for its function's own tensor names, shapes and dtypes, and case.json with the layer op's
kind, attributes and operand roles, read from the op itself (mixtile-opt's generic form, whose
operandSegmentSizes say which operand is which). The math stays in reference.py.

Usage: example_case.py EXAMPLE.mlir OUT_DIR [--function NAME] [--tokens T | --batch B --seq S]
       [--seed N]     (mixtile-opt must be on PATH)
"""

import argparse
import json
import math
import os
import re
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_case  # noqa: E402
import safetensors_io  # noqa: E402

# Each layer op's operand groups, in ODS order (dialect/MixOps.td).
OPERANDS = {
    "token_choice_moe": [
        "x", "router", "router_bias", "selection_bias", "gate", "up", "down",
        "gate_scale", "up_scale", "down_scale",  # fp8 experts' block scales (none in the examples)
        "shared_gate", "shared_up", "shared_down", "shared_expert_gate",
        "gate_bias", "up_bias", "down_bias",  # expert biases (gpt-oss)
    ],
    "expert_choice_moe": ["x", "router", "gate", "up", "down"],
    "mixture_of_tokens": ["x", "controller", "gate", "up", "down"],
    "mov": ["x", "h", "router", "vectors"],
    "molora": ["x", "base", "router", "lora_a", "lora_b"],
}
KINDS = {
    "token_choice_moe": "token_choice",
    "expert_choice_moe": "expert_choice",
    "mixture_of_tokens": "mixture_of_tokens",
    "mov": "mov",
    "molora": "molora",
}
RESULTS = {
    "token_choice_moe": ["output", "router_logits", "aux_loss", "z_loss"],
    "expert_choice_moe": ["output", "router_logits", "z_loss"],
}
DTYPES = {"f32": "F32", "bf16": "BF16", "f16": "F16"}


def split_top(text, sep=","):
    """Splits at `sep` outside <>, [], (), {} and quotes."""
    parts, depth, quote, start = [], 0, False, 0
    for i, c in enumerate(text):
        if c == '"':
            quote = not quote
        elif not quote and c in "<[({":
            depth += 1
        elif not quote and c in ">])}" and not (c == ">" and text[i - 1 : i] == "-"):
            depth -= 1  # the '>' of '->' closes nothing
        elif not quote and depth == 0 and c == sep:
            parts.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        parts.append(text[start:].strip())
    return parts


def attr_value(text):
    text = text.strip()
    m = re.fullmatch(r"#mix\.\w+<(\w+)>", text)
    if m:
        return m.group(1)
    m = re.fullmatch(r"array<i32(?::\s*(.*))?>", text)
    if m:
        return [int(v) for v in split_top(m.group(1) or "")]
    m = re.fullmatch(r"(.*) : (i64|f64|f32)", text)
    if m:
        return float(m.group(1)) if m.group(2).startswith("f") else int(m.group(1))
    if text in ("true", "false"):
        return text == "true"
    return text


def tensor_type(text):
    m = re.fullmatch(r"tensor<(.*)x(f32|bf16|f16|i32)>", text.strip())
    if not m:
        raise SystemExit(f"example_case.py: unsupported type {text}")
    return [None if d == "?" else int(d) for d in m.group(1).split("x")], m.group(2)


def functions(generic):
    """(name, arg names, arg types, result names, body lines) of each func.func."""
    found = []
    lines = generic.splitlines()
    for i, line in enumerate(lines):
        if '"func.func"()' not in line:
            continue
        props = line[line.index("<{") + 2 : line.rindex("}>")]
        fields = dict(
            (k.strip(), v.strip()) for k, v in (p.split("=", 1) for p in split_top(props))
        )
        names = re.findall(r'mix\.name = "([^"]*)"', fields["arg_attrs"])
        results = re.findall(r'mix\.name = "([^"]*)"', fields.get("res_attrs", ""))
        signature = fields["function_type"]
        args_text = signature[1 : signature.index(") ->")]
        types = [tensor_type(t) for t in split_top(args_text)]
        body = []
        for later in lines[i + 1 :]:
            if '"func.func"()' in later:
                break
            body.append(later)
        found.append((fields["sym_name"].strip('"'), names, types, results, body))
    return found


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("example")
    p.add_argument("out_dir")
    p.add_argument("--function", help="default: the file's first function")
    p.add_argument("--tokens", "-T", type=int, default=16)
    p.add_argument("--batch", "-B", type=int, default=4)
    p.add_argument("--seq", "-S", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    generic = subprocess.run(
        ["mixtile-opt", "--mlir-print-op-generic", args.example],
        check=True, capture_output=True, text=True,
    ).stdout
    funcs = functions(generic)
    chosen = [f for f in funcs if args.function in (None, f[0])]
    if not chosen:
        raise SystemExit(f"example_case.py: no function '{args.function}' in {args.example}")
    fname, names, types, result_names, body = chosen[0]

    op_line = next((l for l in body if re.search(r'"mix\.(\w+)"\(', l)), None)
    m = re.search(r'"mix\.(\w+)"\(([^)]*)\)(?: <\{(.*)\}>)?', op_line or "")
    if not m or m.group(1) not in OPERANDS:
        raise SystemExit(f"example_case.py: {fname} has no layer op")
    op = m.group(1)
    # Block arguments may be numbered across the module; index them by the entry block's list.
    block = next(l for l in body if l.strip().startswith("^bb0("))
    block_args = re.findall(r"(%arg\d+):", block)
    operands = [block_args.index(v) for v in split_top(m.group(2))]
    props = {}
    for part in split_top(m.group(3) or ""):
        key, _, value = part.partition("=")
        props[key.strip()] = attr_value(value) if value else True
    segments = props.pop("operandSegmentSizes", [1] * len(OPERANDS[op]))
    result_segments = props.pop("resultSegmentSizes", [1])

    roles, at = {}, 0
    for role, count in zip(OPERANDS[op], segments):
        roles[role] = operands[at : at + count]
        at += count

    rng = np.random.default_rng(args.seed)
    dims = {"T": args.tokens, "B": args.batch, "S": args.seq}
    x_shape, x_dtype = types[roles["x"][0]]
    dynamic = iter(["B", "S"] if len(x_shape) == 3 else ["T"])
    inputs, input_dtypes, weights, weight_dtypes, case_roles = {}, {}, {}, {}, {}
    hidden = x_shape[-1]
    for role, indices in roles.items():
        for index in indices:
            shape, dtype = types[index]
            name = names[index]
            if None in shape:
                if role == "h":  # MoV's activation shares T with x
                    concrete = [dims["T"]] + shape[1:]
                else:
                    concrete = [dims[next(dynamic)] if d is None else d for d in shape]
                inputs[name] = rng.standard_normal(concrete)
                input_dtypes[name] = DTYPES[dtype]
                continue
            if role in ("router", "controller"):
                std = make_case.ROUTER_STD / math.sqrt(hidden)
            elif role in ("router_bias", "selection_bias"):
                std = 0.1
            else:
                std = 1.0 / math.sqrt(shape[-1])
            values = rng.standard_normal(shape) * std
            if role == "vectors":
                values = 1.0 + 0.5 * rng.standard_normal(shape)
            weights[name] = values.astype(np.float32)
            weight_dtypes[name] = DTYPES[dtype]
        if indices and role not in ("x", "h"):
            case_roles[role] = (
                [names[i] for i in indices] if len(indices) > 1 else names[indices[0]]
            )

    results = [r for r, n in zip(RESULTS.get(op, ["output"]), result_segments) if n]
    if result_names != results:
        raise SystemExit(
            f"example_case.py: {fname} must name its results {results} (check.py compares by "
            f"name), got {result_names}"
        )
    attrs = {k: v for k, v in props.items() if k != "operandSegmentSizes"}
    weight_dtype = max(
        (d.lower() for d in weight_dtypes.values()), key=("f32", "f16", "bf16").index
    )
    case = {
        "kind": KINDS[op],
        "function": fname,
        "dtype": weight_dtype,
        "token_dtype": x_dtype,
        "router_dtype": types[(roles.get("router") or roles.get("controller") or roles["x"])[0]][1],
        "attrs": attrs,
        "inputs": {"x": names[roles["x"][0]], **({"h": names[roles["h"][0]]} if "h" in roles else {})},
        "weights": case_roles,
        "results": results,
        "command": "example_case.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    safetensors_io.write_file(os.path.join(args.out_dir, "weights.safetensors"), weights, weight_dtypes)
    safetensors_io.write_file(
        os.path.join(args.out_dir, "inputs.safetensors"),
        {n: v.astype(np.float32) for n, v in inputs.items()},
        input_dtypes,
    )
    with open(os.path.join(args.out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")
    print(f"{args.out_dir}: {fname} ({case['kind']}), {', '.join(f'{k}={v}' for k, v in dims.items())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
