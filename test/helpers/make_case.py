#!/usr/bin/python3
"""Writes a complete random test case for one `mix` layer op into a directory: layer.mlir,
weights.safetensors, inputs.safetensors and case.json (everything check.py needs).

Owns the case format and the IR text of each layer op; the math lives in reference.py.
Usage: make_case.py OUT_DIR [--preset mixtral] [--kind ...] [options]   (see --help)
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

KINDS = ("token_choice", "expert_choice", "mixture_of_tokens", "mov", "molora")
SAFETENSORS_DTYPE = {"f32": "F32", "bf16": "BF16", "f16": "F16"}

# Family presets (layers.md §2 table, shapes scaled down). Explicit options override them.
PRESETS = {
    "mixtral": dict(kind="token_choice", experts=8, k=2, normalize=True, activation="silu"),
    "qwen2_moe": dict(
        kind="token_choice", experts=16, k=4, activation="silu", shared=128, shared_gate=True
    ),
    "qwen3_moe": dict(kind="token_choice", experts=16, k=4, normalize=True, activation="silu"),
    "olmoe": dict(kind="token_choice", experts=16, k=4, activation="silu"),
    "deepseek_v2": dict(
        kind="token_choice",
        experts=16,
        k=4,
        n_group=4,
        topk_group=2,
        group_score="max",
        scale=16.0,
        shared=64,
        activation="silu",
    ),
    "deepseek_v3": dict(
        kind="token_choice",
        experts=16,
        k=4,
        scoring="sigmoid",
        selection_bias=True,
        n_group=4,
        topk_group=2,
        group_score="top2_sum",
        normalize=True,
        norm_epsilon=1e-20,
        scale=2.5,
        shared=32,
        activation="silu",
    ),
    # GLM-4.5 and dots.llm1: DeepSeek-V3's router (sigmoid, selection bias, group top-2 sums);
    # GLM normalizes the top-k weights, dots1 by default does not; shared width 1 x / 2 x ffn.
    "glm4_moe": dict(
        kind="token_choice",
        experts=16,
        k=4,
        scoring="sigmoid",
        selection_bias=True,
        n_group=4,
        topk_group=2,
        group_score="top2_sum",
        normalize=True,
        norm_epsilon=1e-20,
        scale=2.5,
        shared=32,
        activation="silu",
    ),
    "dots1": dict(
        kind="token_choice",
        experts=16,
        k=4,
        scoring="sigmoid",
        selection_bias=True,
        group_score="top2_sum",
        norm_epsilon=1e-20,
        scale=2.5,
        shared=64,
        activation="silu",
    ),
    # GLM-4.7-Flash: DeepSeek-V3's router without a group limit, scale 1.8, one shared expert.
    "glm4_moe_lite": dict(
        kind="token_choice",
        experts=16,
        k=4,
        scoring="sigmoid",
        selection_bias=True,
        group_score="top2_sum",
        normalize=True,
        norm_epsilon=1e-20,
        scale=1.8,
        shared=32,
        activation="silu",
    ),
    # MiniMax-M2: sigmoid, top-k of scores + bias, the chosen unbiased scores divided by their
    # sum with no epsilon, no scaling, no groups, no shared experts; the router and the bias
    # in the model's dtype (the default router_dtype).
    "minimax_m2": dict(
        kind="token_choice",
        experts=16,
        k=4,
        scoring="sigmoid",
        selection_bias=True,
        normalize=True,
        activation="silu",
    ),
    # ERNIE-4.5: softmax over all experts, top-k of softmax + the selection bias, the chosen
    # unbiased probabilities renormalized (moe_norm_min's clamp is inert at its 1e-12 default),
    # no scaling, shared experts 2 x ffn.
    "ernie4_5_moe": dict(
        kind="token_choice",
        experts=16,
        k=4,
        selection_bias=True,
        normalize=True,
        shared=64,
        activation="silu",
    ),
    "switch": dict(
        kind="token_choice", experts=8, k=1, capacity_factor=1.25, plain=True, activation="relu"
    ),
}

# Solar-Open: GLM-4.5's router (Glm4MoeMoE) at SolarOpenConfig's scale 1.0 (the default), one
# shared expert of width ffn; groups limited here (4 keep 2) so the group path is exercised.
PRESETS["solar_open"] = {key: v for key, v in PRESETS["glm4_moe"].items() if key != "scale"}

DEFAULTS = dict(
    kind="token_choice",
    tokens=64,
    hidden=64,
    ffn=32,
    experts=8,
    k=None,
    batch=4,
    seq=8,
    dtype="f32",
    token_dtype="f32",
    router_dtype=None,
    scoring="softmax",
    normalize=False,
    norm_epsilon=0.0,
    scale=1.0,
    n_group=1,
    topk_group=1,
    group_score="max",
    selection_bias=False,
    router_bias=False,
    capacity=None,
    capacity_factor=None,
    activation=None,
    plain=False,
    per_expert=False,
    shared=0,
    shared_gate=False,
    aux=False,
    group_size=2,
    temperature=1.0,
    emit="merge",
    transition=False,
    alpha=16.0,
    rank=4,
    out_dim=None,
    seed=0,
    all_to_one_expert=False,
    idle_experts=False,
    nan_token=None,
)

# Router weights have std ROUTER_STD/sqrt(D), so logits of N(0, 1) inputs have std ~2: the
# scores spread out instead of all sitting near ties.
ROUTER_STD = 2.0
# A router/selection bias large enough to decide the choice against ~N(0, 2²) logits.
DECISIVE_LOGIT_BIAS = 30.0
DECISIVE_SELECTION_BIAS = 10.0


def mlir_float(value):
    """An MLIR float literal: the shortest round-trip repr, with the '.' MLIR requires."""
    text = repr(float(value))
    mantissa, _, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + ("e" + exponent if exponent else "")


def tensor_type(shape, element):
    return "tensor<" + "x".join([*("?" if d is None else str(d) for d in shape), element]) + ">"


class Builder:
    """Collects random weights and the matching function arguments."""

    def __init__(self, rng, dtype, router_dtype, token_dtype="f32"):
        self.rng, self.dtype, self.router_dtype = rng, dtype, router_dtype
        self.token_dtype = token_dtype
        self.args, self.weights, self.dtypes, self.roles = [], {}, {}, {}

    def add_input(self, ssa, name, shape):
        self.args.append((ssa, tensor_type(shape, self.token_dtype), name))

    def add_weight(self, role, ssa, name, values, dtype=None):
        dtype = dtype or self.dtype
        self.args.append((ssa, tensor_type(values.shape, dtype), name))
        self.weights[name] = values.astype(np.float32)
        self.dtypes[name] = SAFETENSORS_DTYPE[dtype]
        if role:
            self.roles[role] = name
        return f"%{ssa} : {tensor_type(values.shape, dtype)}"

    def operand(self, role, name, values, dtype=None):
        """`role(%role : type)`: a weight operand of the layer op, named `name`."""
        return f"{role}({self.add_weight(role, role, name, values, dtype)})"

    def normal(self, shape, std):
        return self.rng.standard_normal(shape) * std

    def experts(self, prefix_ssa, num_experts, hidden, ffn, gated, per_expert, out=None):
        """Expert operand groups `gate(...) up(...) down(...)`; weights [E, F, D] / [E, D, F]
        scaled 1/sqrt(fan_in) so each FFN output is O(1)."""
        out = out or hidden
        text = []
        for group in (["gate"] if gated else []) + ["up", "down"]:
            shape = (out, ffn) if group == "down" else (ffn, hidden)
            std = 1.0 / math.sqrt(shape[1])
            proj = {"gate": "gate_proj", "up": "up_proj", "down": "down_proj"}[group]
            if per_expert:
                refs, names = [], []
                for e in range(num_experts):
                    name = f"experts.{e}.{proj}.weight"
                    refs.append(
                        self.add_weight(
                            None, f"{prefix_ssa}{group}{e}", name, self.normal(shape, std)
                        )
                    )
                    names.append(name)
                self.roles[group] = names
                values = ", ".join(r.split(" : ")[0] for r in refs)
                types = ", ".join(r.split(" : ")[1] for r in refs)
                text.append(f"{group}({values} : {types})")
            else:
                ref = self.add_weight(
                    group,
                    f"{prefix_ssa}{group}",
                    f"experts.{proj}",
                    self.normal((num_experts, *shape), std),
                )
                text.append(f"{group}({ref})")
        return "\n      ".join(text)


def resolve_options(args):
    """Defaults < preset < explicit command-line options."""
    options = dict(DEFAULTS)
    if args.preset:
        options.update(PRESETS[args.preset])
    explicit = {k: v for k, v in vars(args).items() if v is not None and k != "preset"}
    # An explicit capacity replaces a preset's capacity factor, and the other way round.
    if "capacity" in explicit or "capacity_factor" in explicit:
        options["capacity"] = options["capacity_factor"] = None
    options.update(explicit)
    if options["k"] is None:
        options["k"] = 2 if options["kind"] in ("token_choice", "mixture_of_tokens") else None
    if options["activation"] is None:
        options["activation"] = "relu" if options["kind"] == "mixture_of_tokens" else "silu"
    options["router_dtype"] = options["router_dtype"] or options["dtype"]
    return options


def validate(o):
    problems = []
    E, k = o["experts"], o["k"]
    if k is not None and not 1 <= k <= E:
        problems.append(f"--k {k} must be in [1, E={E}]")
    if o["kind"] == "token_choice":
        if E % o["n_group"]:
            problems.append(f"--n-group {o['n_group']} must divide E={E}")
        elif o["topk_group"] > o["n_group"] or k > o["topk_group"] * (E // o["n_group"]):
            problems.append("--topk-group too large, or --k exceeds the selectable experts")
        if o["group_score"] == "top2_sum" and o["n_group"] > 1 and E // o["n_group"] < 2:
            problems.append("top2_sum needs at least 2 experts per group")
        if o["capacity"] is not None and o["capacity_factor"] is not None:
            problems.append("--capacity and --capacity-factor are exclusive")
        if o["shared_gate"] and not o["shared"]:
            problems.append("--shared-gate needs --shared F_s")
        if o["idle_experts"] and E - k < 1:
            problems.append("--idle-experts needs k < E")
    elif o["all_to_one_expert"] or o["idle_experts"]:
        problems.append("--all-to-one-expert/--idle-experts apply to --kind token_choice")
    if o["nan_token"] is not None:
        # Which experts a NaN token claims is implementation-defined, so only layers where
        # that cannot change another token's result get one.
        tokens = o["batch"] * o["seq"] if o["kind"] == "mixture_of_tokens" else o["tokens"]
        if (
            o["kind"] == "expert_choice"
            or o["capacity"] is not None
            or o["capacity_factor"] is not None
        ):
            problems.append("--nan-token needs a dropless layer (no capacity, not expert_choice)")
        elif not 0 <= o["nan_token"] < tokens:
            problems.append(f"--nan-token must be in [0, {tokens})")
    if o["kind"] == "expert_choice" and o["capacity_factor"] is None:
        o["capacity_factor"] = 2.0
    if o["kind"] == "mixture_of_tokens" and not o["transition"] and o["batch"] % o["group_size"]:
        problems.append(f"--group-size {o['group_size']} must divide --batch {o['batch']}")
    if problems:
        raise SystemExit("make_case.py: " + "; ".join(problems))


def build(o, command=""):
    """Returns (mlir_text, case dict, weights {name: f32 array}, dtypes, inputs)."""
    validate(o)
    rng = np.random.default_rng(o["seed"])
    b = Builder(rng, o["dtype"], o["router_dtype"], o["token_dtype"])
    tok = o["token_dtype"]  # the layer's token inputs and output; aux results stay f32
    kind, D, F, E, T = o["kind"], o["hidden"], o["ffn"], o["experts"], o["tokens"]
    attrs, results, inputs = {}, [("output", None)], {}
    body = []

    if kind in ("token_choice", "expert_choice"):
        b.add_input("x", "hidden_states", (None, D))
        inputs["hidden_states"] = rng.standard_normal((T, D))
        router = b.normal((E, D), ROUTER_STD / math.sqrt(D))
        router_bias = b.normal(E, 0.5) if o["router_bias"] else None
        selection_bias = b.normal(E, 0.1) if o.get("selection_bias") else None
        if kind == "token_choice" and (o["all_to_one_expert"] or o["idle_experts"]):
            # Steer routing with a bias: the selection bias when the layer has one (it decides
            # the choice without touching the weights), else a router bias.
            steer = np.zeros(E)
            idle = max(1, (E - o["k"]) // 2)
            if o["idle_experts"]:
                steer[E - idle :] = -1.0
            if o["all_to_one_expert"]:
                steer[0] = 1.0
            if selection_bias is not None:
                selection_bias = selection_bias + DECISIVE_SELECTION_BIAS * steer
            else:
                router_bias = (
                    router_bias if router_bias is not None else np.zeros(E)
                ) + DECISIVE_LOGIT_BIAS * steer
        op = "mix.token_choice_moe" if kind == "token_choice" else "mix.expert_choice_moe"
        rd = o["router_dtype"]
        text = ["%x " + b.operand("router", "router.weight", router, rd)]
        if kind == "token_choice" and router_bias is not None:
            text.append(b.operand("router_bias", "router.bias", router_bias, rd))
        if kind == "token_choice" and selection_bias is not None:
            text.append(
                b.operand("selection_bias", "router.e_score_correction_bias", selection_bias, rd)
            )
        text.append("experts " + b.experts("", E, D, F, not o["plain"], o["per_expert"]))
        if kind == "token_choice" and o["shared"]:
            Fs = o["shared"]
            if not o["plain"]:
                text.append(
                    b.operand(
                        "shared_gate", "shared_expert.gate_proj.weight", b.normal((Fs, D), D**-0.5)
                    )
                )
            text.append(
                b.operand("shared_up", "shared_expert.up_proj.weight", b.normal((Fs, D), D**-0.5))
            )
            text.append(
                b.operand(
                    "shared_down", "shared_expert.down_proj.weight", b.normal((D, Fs), Fs**-0.5)
                )
            )
            if o["shared_gate"]:
                text.append(
                    b.operand(
                        "shared_expert_gate", "shared_expert_gate.weight", b.normal((1, D), D**-0.5)
                    )
                )
        if kind == "token_choice":
            attrs = {
                "k": o["k"],
                "scoring": o["scoring"],
                "normalize": o["normalize"],
                "norm_epsilon": o["norm_epsilon"],
                "scale": o["scale"],
                "n_group": o["n_group"],
                "topk_group": o["topk_group"],
                "group_score": o["group_score"],
                "capacity": o["capacity"],
                "capacity_factor": o["capacity_factor"],
                "activation": o["activation"],
            }
            if o["aux"]:
                results += [("router_logits", (None, E)), ("aux_loss", ()), ("z_loss", ())]
        else:
            attrs = {"capacity_factor": o["capacity_factor"], "activation": o["activation"]}
            if o["aux"]:
                results += [("router_logits", (None, E)), ("z_loss", ())]
        x_type = tensor_type((None, D), tok)
        suffix = "".join(f" {name} {tensor_type(shape, 'f32')}" for name, shape in results[1:])
        body.append(
            f"{op} "
            + "\n      ".join(text)
            + "\n      "
            + attr_dict(attrs)
            + f"\n      : {x_type} -> {x_type}{suffix}"
        )
        out_shape = (None, D)

    elif kind == "mixture_of_tokens":
        B, S = o["batch"], o["seq"]
        b.add_input("x", "hidden_states", (None, None, D))
        inputs["hidden_states"] = rng.standard_normal((B, S, D))
        ref = b.add_weight(
            "controller",
            "controller",
            "controller",
            b.normal((E, D), ROUTER_STD / math.sqrt(D)),
            o["router_dtype"],
        )
        experts = b.experts("", E, D, F, not o["plain"], o["per_expert"])
        attrs = {
            "group_size": o["group_size"],
            "temperature": o["temperature"],
            "emit": o["emit"],
            "transition": o["transition"],
            "k": o["k"] if o["transition"] else None,
            "activation": o["activation"],
        }
        x_type = tensor_type((None, None, D), tok)
        body.append(
            f"mix.mixture_of_tokens %x controller({ref})\n      experts {experts}\n      "
            f"{attr_dict(attrs)}\n      : {x_type} -> {x_type}"
        )
        out_shape = (None, None, D)
        T = B * S

    elif kind == "mov":
        H = o["out_dim"] or o["hidden"]
        b.add_input("x", "hidden_states", (None, D))
        b.add_input("h", "activation", (None, H))
        inputs["hidden_states"] = rng.standard_normal((T, D))
        inputs["activation"] = rng.standard_normal((T, H))
        router = b.add_weight(
            "router",
            "router",
            "router.weight",
            b.normal((E, D), ROUTER_STD / math.sqrt(D)),
            o["router_dtype"],
        )
        vectors = b.add_weight("vectors", "vectors", "ia3_vectors", 1.0 + b.normal((E, H), 0.5))
        attrs = {"k": o["k"]}
        body.append(
            f"mix.mov %x, %h router({router}) vectors({vectors}) {attr_dict(attrs)}"
            f"\n      : {tensor_type((None, D), tok)}, {tensor_type((None, H), tok)}"
            f" -> {tensor_type((None, H), tok)}"
        )
        out_shape = (None, H)

    else:  # molora
        Dout, r = o["out_dim"] or o["hidden"], o["rank"]
        b.add_input("x", "hidden_states", (None, D))
        inputs["hidden_states"] = rng.standard_normal((T, D))
        base = b.add_weight("base", "base", "base.weight", b.normal((Dout, D), D**-0.5))
        router = b.add_weight(
            "router",
            "router",
            "router.weight",
            b.normal((E, D), ROUTER_STD / math.sqrt(D)),
            o["router_dtype"],
        )
        # B_e scaled by r/alpha so the adapters' sum is O(1), like the base term.
        lora_a = b.add_weight("lora_a", "a", "lora_a", b.normal((E, r, D), D**-0.5))
        lora_b = b.add_weight(
            "lora_b", "b", "lora_b", b.normal((E, Dout, r), r**-0.5 * r / o["alpha"])
        )
        attrs = {"alpha": o["alpha"], "k": o["k"]}
        body.append(
            f"mix.molora %x base({base}) router({router})\n      lora_a({lora_a}) "
            f"lora_b({lora_b}) {attr_dict(attrs)}\n      : {tensor_type((None, D), tok)}"
            f" -> {tensor_type((None, Dout), tok)}"
        )
        out_shape = (None, Dout)

    if o["nan_token"] is not None:
        inputs["hidden_states"].reshape(-1, D)[o["nan_token"], 0] = np.nan
    results[0] = ("output", out_shape)
    result_ssa = (
        ["%y", "%logits", "%aux", "%z"][: len(results)]
        if kind == "token_choice"
        else ["%y", "%logits", "%z"][: len(results)]
    )
    result_types = [tensor_type(shape, tok if i == 0 else "f32") for i, (_, shape) in enumerate(results)]
    args = ",\n    ".join(f'%{ssa}: {ty} {{mix.name = "{name}"}}' for ssa, ty, name in b.args)
    rets = ",\n        ".join(
        f'{ty} {{mix.name = "{name}"}}' for ty, (name, _) in zip(result_types, results)
    )
    mlir = (
        f"// Generated by test/helpers/{command}\n"
        f"func.func @{kind}(\n    {args})\n    -> ({rets}) {{\n"
        f"  {', '.join(result_ssa)} = {body[0]}\n"
        f"  return {', '.join(result_ssa)} : {', '.join(result_types)}\n}}\n"
    )
    case = {
        "kind": kind,
        "function": kind,
        "dtype": o["dtype"],
        "token_dtype": tok,
        "router_dtype": o["router_dtype"],
        "sizes": {"tokens": T, "hidden": D, "ffn": F, "experts": E},
        "attrs": {k: v for k, v in attrs.items() if v is not None},
        "inputs": {"x": "hidden_states", **({"h": "activation"} if kind == "mov" else {})},
        "weights": b.roles,
        "results": [name for name, _ in results],
        "options": o,
    }
    return mlir, case, b.weights, b.dtypes, inputs


def attr_dict(attrs):
    """The op's attr-dict: non-default entries only, in MLIR syntax."""
    enum = {
        "scoring": "scoring",
        "group_score": "group_score",
        "activation": "activation",
        "emit": "emit",
    }
    defaults = {
        "scoring": "softmax",
        "normalize": False,
        "norm_epsilon": 0.0,
        "scale": 1.0,
        "n_group": 1,
        "topk_group": 1,
        "group_score": "max",
        "emit": "merge",
        "transition": False,
    }
    parts = []
    for name, value in attrs.items():
        if value is None or defaults.get(name, object()) == value:
            continue
        if value is True:
            parts.append(name)
        elif name in enum:
            parts.append(f"{name} = #mix.{enum[name]}<{value}>")
        elif isinstance(value, float):
            parts.append(f"{name} = {mlir_float(value)}")
        else:
            parts.append(f"{name} = {value}")
    return "{" + ", ".join(parts) + "}" if parts else ""


def write(out_dir, mlir, case, weights, dtypes, inputs):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "layer.mlir"), "w") as f:
        f.write(mlir)
    safetensors_io.write_file(os.path.join(out_dir, "weights.safetensors"), weights, dtypes)
    token_dtype = SAFETENSORS_DTYPE[case.get("token_dtype", "f32")]
    safetensors_io.write_file(
        os.path.join(out_dir, "inputs.safetensors"),
        {n: v.astype(np.float32) for n, v in inputs.items()},
        {n: token_dtype for n in inputs},
    )
    with open(os.path.join(out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=2)
        f.write("\n")


def parser():
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=None,
    )
    p.add_argument("out_dir")
    p.add_argument("--preset", choices=sorted(PRESETS))
    p.add_argument("--kind", choices=KINDS)
    p.add_argument("--tokens", "-T", type=int, help="T (token_choice, expert_choice, mov, molora)")
    p.add_argument("--hidden", "-D", type=int)
    p.add_argument("--ffn", "-F", type=int, help="expert width F")
    p.add_argument("--experts", "-E", type=int)
    p.add_argument("--k", type=int, help="experts per token (mov/molora: top-k mask)")
    p.add_argument("--batch", "-B", type=int, help="B (mixture_of_tokens)")
    p.add_argument("--seq", "-S", type=int, help="S (mixture_of_tokens)")
    p.add_argument("--dtype", choices=SAFETENSORS_DTYPE, help="weight dtype (default f32)")
    p.add_argument(
        "--token-dtype",
        choices=SAFETENSORS_DTYPE,
        help="dtype of the layer's token inputs and output (default f32)",
    )
    p.add_argument(
        "--router-dtype",
        choices=SAFETENSORS_DTYPE,
        help="dtype of the router/controller and its biases (default --dtype)",
    )
    p.add_argument("--scoring", choices=("softmax", "sigmoid"))
    p.add_argument("--normalize", action="store_true", default=None)
    p.add_argument("--norm-epsilon", type=float)
    p.add_argument("--scale", type=float)
    p.add_argument("--n-group", type=int)
    p.add_argument("--topk-group", type=int)
    p.add_argument("--group-score", choices=("max", "top2_sum"))
    p.add_argument("--selection-bias", action="store_true", default=None)
    p.add_argument("--router-bias", action="store_true", default=None)
    p.add_argument("--capacity", type=int)
    p.add_argument("--capacity-factor", type=float)
    p.add_argument("--activation", choices=("silu", "gelu", "gelu_tanh", "relu"))
    p.add_argument("--plain", action="store_true", default=None, help="non-gated experts")
    p.add_argument(
        "--per-expert",
        action="store_true",
        default=None,
        help="one tensor per expert instead of stacked [E, ...]",
    )
    p.add_argument("--shared", type=int, metavar="F_S", help="shared-expert width")
    p.add_argument("--shared-gate", action="store_true", default=None)
    p.add_argument(
        "--aux",
        action="store_true",
        default=None,
        help="also return router_logits, aux_loss (token_choice) and z_loss",
    )
    p.add_argument("--group-size", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--emit", choices=("merge", "expert_softmax"))
    p.add_argument("--transition", action="store_true", default=None)
    p.add_argument("--alpha", type=float)
    p.add_argument("--rank", type=int)
    p.add_argument("--out-dim", type=int, help="H for mov, D_out for molora (default D)")
    p.add_argument("--seed", type=int)
    p.add_argument("--all-to-one-expert", action="store_true", default=None)
    p.add_argument("--idle-experts", action="store_true", default=None)
    p.add_argument(
        "--nan-token",
        type=int,
        metavar="INDEX",
        help="put a NaN into this token of hidden_states (row of the flattened [T, D])",
    )
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    out_dir = args.out_dir
    del args.out_dir
    options = resolve_options(args)
    command = "make_case.py " + " ".join(argv if argv is not None else sys.argv[1:])
    mlir, case, weights, dtypes, inputs = build(options, command)
    case["command"] = command
    write(out_dir, mlir, case, weights, dtypes, inputs)
    return out_dir


if __name__ == "__main__":
    main()
