#!/usr/bin/python3
"""Self-tests of the test helpers: safetensors/bf16 round trips, the top-k tie rule,
capacity drops, group-limited masking, Mixture of Tokens at G=1 and G=B, the HF mapping,
and that check.py rejects wrong results. Runs in a few seconds; exit 1 on any failure.

Where it can, it checks reference.py against a slow per-token loop written separately here.
"""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402
import hf_fixtures  # noqa: E402
import hf_reference  # noqa: E402
import make_case  # noqa: E402
import make_model  # noqa: E402
import model_reference  # noqa: E402
import reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

FAILURES = []


def expect(condition, what):
    if not condition:
        FAILURES.append(what)
        print(f"FAIL: {what}")


def close(a, b, tol=1e-12):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and np.allclose(a, b, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------


def test_bf16_and_files(tmp):
    one = np.float32(1.0)
    ulp = np.float32(2.0**-7)  # bf16 spacing at 1.0
    values = np.array(
        [
            1.0,
            one + ulp / 2,
            one + 3 * ulp / 2,
            one + ulp / 2 + 2**-20,
            -2.5,
            np.inf,
            -np.inf,
            np.nan,
            3.4028235e38,
            0.0,
            -0.0,
            1e-40,
        ],
        np.float32,
    )
    bits = st.f32_to_bf16_bits(values)
    # Ties go to even: 1 + ulp/2 -> 1.0 (0x3F80), 1 + 3ulp/2 -> 1 + 2ulp (0x3F82); above the
    # tie rounds up; the largest f32 overflows to +inf; NaN stays NaN.
    expect(
        list(bits[:7]) == [0x3F80, 0x3F80, 0x3F82, 0x3F81, 0xC020, 0x7F80, 0xFF80],
        f"bf16 rounding bits {[hex(b) for b in bits[:7]]}",
    )
    widened = st.bf16_bits_to_f32(bits)
    expect(
        np.isnan(widened[7])
        and widened[8] == np.inf
        and widened[10] == 0.0
        and np.signbit(widened[10]),
        "bf16 NaN/overflow/-0 handling",
    )
    rng = np.random.default_rng(1)
    tensors = {
        "w_bf16": rng.standard_normal((3, 5)).astype(np.float32),
        "w_f16": rng.standard_normal(7).astype(np.float32),
        "w_f32": rng.standard_normal((2, 0, 3)).astype(np.float32),
        "i32": np.arange(6, dtype=np.int32).reshape(2, 3),
        "i64": np.array([-(2**40), 5], dtype=np.int64),
        "scalar": np.array(2.5, np.float32),
    }
    dtypes = {"w_bf16": "BF16", "w_f16": "F16", "w_f32": "F32", "i32": "I32", "i64": "I64"}
    path = os.path.join(tmp, "t.safetensors")
    st.write_file(path, tensors, dtypes)
    back, back_dtypes = st.read_file(path)
    expect(back_dtypes == {**dtypes, "scalar": "F32"}, f"dtypes round trip {back_dtypes}")
    expect(
        back["w_bf16"].dtype == np.float64
        and np.array_equal(back["w_bf16"], st.round_to_dtype(tensors["w_bf16"], "BF16"))
        and np.abs(back["w_bf16"] - tensors["w_bf16"]).max()
        <= 2.0**-8 * np.abs(tensors["w_bf16"]).max(),
        "bf16 file holds the rounded values",
    )
    expect(np.array_equal(back["w_f16"], tensors["w_f16"].astype(np.float16)), "f16 round trip")
    expect(
        back["w_f32"].shape == (2, 0, 3) and back["scalar"].shape == () and back["scalar"] == 2.5,
        "empty and 0-d tensors",
    )
    expect(np.array_equal(back["i64"], tensors["i64"]) and back["i32"].dtype == np.int32, "ints")
    raw, _ = st.read_file(path, raw=True)
    expect(raw["w_bf16"].dtype == np.uint16, "raw BF16 is uint16 bits")
    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
    expect(header_len % 8 == 0, "header padded to 8 bytes")
    shard_dir = os.path.join(tmp, "sharded")
    st.write_sharded(shard_dir, tensors, dtypes, max_shard_bytes=64)
    with open(os.path.join(shard_dir, st.INDEX_NAME)) as f:
        files = set(json.load(f)["weight_map"].values())
    loaded, _ = st.load(shard_dir)
    expect(
        len(files) > 1 and all(np.array_equal(loaded[n], back[n]) for n in back),
        f"sharded round trip over {len(files)} shards",
    )
    truncated = os.path.join(tmp, "truncated.safetensors")
    with open(path, "rb") as f, open(truncated, "wb") as g:
        g.write(f.read()[:-4])
    try:
        st.read_file(truncated)
        expect(False, "a truncated file is rejected")
    except st.SafetensorsError:
        pass


def test_topk_ties():
    expect(ref.topk(np.array([[1.0, 3.0, 3.0, 2.0]]), 2).tolist() == [[1, 2]], "tie to lower index")
    expect(ref.topk(np.zeros((1, 5)), 3).tolist() == [[0, 1, 2]], "all-equal ties")
    expect(ref.topk(np.array([[0.1, 0.5, 0.5, 0.5]]), 4).tolist() == [[1, 2, 3, 0]], "k = E")
    # Expert choice: identical tokens tie on every column; each expert takes the lowest ones.
    x = np.ones((5, 3))
    t = {
        "router": np.random.default_rng(0).standard_normal((2, 3)),
        "up": np.ones((2, 4, 3)),
        "down": np.ones((2, 3, 4)),
    }
    _, _, info = ref.expert_choice(x, t, {"capacity_factor": 2.0, "activation": "relu"})
    # C = min(T, ceil(2 * 5 / 2)) = 5 -> everyone; with cf 0.8: ceil(2.0) = 2 -> tokens 0, 1.
    expect(info["capacity"] == 5 and info["chosen"].all(), "expert-choice capacity clamps to T")
    _, _, info = ref.expert_choice(x, t, {"capacity_factor": 0.8, "activation": "relu"})
    expect(
        info["capacity"] == 2 and info["chosen"][:2].all() and not info["chosen"][2:].any(),
        "expert-choice ties go to the lower token index",
    )


def test_capacity():
    experts = np.array([[0, 1], [0, 2], [0, 1], [1, 0]])
    kept, slot = ref.apply_capacity(experts, 3, 2)
    expect(kept.tolist() == [[0, 1], [0, 2], [-1, 1], [-1, -1]], f"capacity drops {kept.tolist()}")
    expect(slot.tolist() == [[0, 0], [1, 0], [2, 1], [2, 3]], f"slots {slot.tolist()}")
    expect(ref.capacity_of(10, 2, 8, capacity_factor=1.25) == 4, "ceil(cf*T*k/E)")
    expect(
        ref.capacity_of(10, 2, 8) is None and ref.capacity_of(10, 2, 8, capacity=0) == 0,
        "dropless/0",
    )
    # All tokens to expert 0 with capacity 3: only the first three tokens get an output.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 4))
    router = np.zeros((3, 4))
    t = {
        "router": router,
        "router_bias": np.array([5.0, 0.0, 0.0]),
        "up": rng.standard_normal((3, 8, 4)),
        "down": rng.standard_normal((3, 4, 8)),
    }
    a = {"k": 1, "capacity": 3, "activation": "relu"}
    results, near, _ = ref.token_choice(x, t, a)
    rows = np.linalg.norm(results["output"], axis=-1)
    expect((rows[:3] > 0).all() and (rows[3:] == 0).all(), "dropped tokens contribute 0")
    # 3 of the 6 assignments were dropped: f_0 = 3/6, P_0 = softmax([5,0,0])[0].
    p0 = math.exp(5) / (math.exp(5) + 2)
    expect(
        close(results["aux_loss"], 3 * 0.5 * p0),
        "dropped assignments count in the denominator only",
    )
    expect(not near.any(), "no near ties here")
    # A near-tie token before the capacity boundary makes later boundary tokens uncertain too.
    near_tie = np.array([True, False, False, False])
    expect(
        ref.capacity_near_ties(near_tie, slot, 2).tolist() == [True, True, True, True],
        "capacity near-tie propagation",
    )


def test_group_limited_masking():
    # One token, logits chosen directly (x = [1], router = logits column).
    def route(logits, **kw):
        return ref.route(np.ones((1, 1)), np.array(logits, float)[:, None], **kw)

    # DeepSeek-V3 style: sigmoid scores, a bias pushes expert 1 negative inside the kept group.
    logits = [2.0, 0.0, -1.0, -1.5]
    bias = np.array([0.0, -1.0, 0.0, 0.0])
    r = route(
        logits,
        k=2,
        scoring="sigmoid",
        selection_bias=bias,
        n_group=2,
        topk_group=1,
        group_score="top2_sum",
    )
    # Groups {0,1}: s0 + (s1 - 1) = 0.88 + (-0.5) = 0.38; {2,3}: 0.27 + 0.18 = 0.45 -> keep {2,3}.
    s = ref.sigmoid(np.array(logits))
    expect(r["experts"].tolist() == [[2, 3]], f"top2_sum keeps the better group {r['experts']}")
    expect(close(r["weights"], s[[2, 3]][None]), "weights use the unbiased scores")
    # Now group max (DeepSeek-V2): group {0,1} has the max (0.88) and is kept; expert 1's
    # biased score is -0.5 < 0 but the masked experts score -inf: choose 0, then 1.
    r = route(
        logits,
        k=2,
        scoring="sigmoid",
        selection_bias=bias,
        n_group=2,
        topk_group=1,
        group_score="max",
    )
    expect(r["experts"].tolist() == [[0, 1]], f"masked experts score -inf {r['experts']}")
    # Renormalize with DeepSeek-V3's epsilon and scale.
    r = route(logits, k=2, scoring="sigmoid", normalize=True, norm_epsilon=1e-20, scale=2.5)
    expect(close(r["weights"], 2.5 * s[[0, 1]][None] / s[[0, 1]].sum()), "normalize + scale")
    # Cross-check the vectorized router against a per-token loop on random data.
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((40, 8)), rng.standard_normal((12, 8))
    b = rng.standard_normal(12) * 0.3
    for kw in [
        dict(k=3, n_group=4, topk_group=2, group_score="max"),
        dict(
            k=4,
            scoring="sigmoid",
            selection_bias=b,
            n_group=3,
            topk_group=2,
            group_score="top2_sum",
            normalize=True,
            norm_epsilon=1e-20,
            scale=2.5,
        ),
        dict(k=2, router_bias=b, normalize=True),
        # ERNIE-4.5: softmax, biased choice, max(sum, moe_norm_min) active for some tokens.
        dict(k=2, selection_bias=b, normalize=True, norm_min=0.3),
    ]:
        expect(_close_routes(x, w, ref.route(x, w, **kw), kw), f"route vs loop {kw}")
    # ERNIE-4.5's clamp: a bias that picks the two least likely experts leaves their sum below
    # moe_norm_min (the sum of biased-chosen probabilities has no k / E lower bound), so each
    # weight is its probability / moe_norm_min; a sum above it divides as usual.
    logits = [3.0, 2.0, -2.0, -3.0]
    p = ref.softmax(np.array(logits))
    bias = np.array([0.0, 0.0, 1.0, 1.0])
    r = route(logits, k=2, selection_bias=bias, normalize=True, norm_min=0.1)
    expect(
        r["experts"].tolist() == [[2, 3]]
        and p[[2, 3]].sum() < 0.1
        and close(r["weights"], p[[2, 3]][None] / 0.1),
        f"moe_norm_min clamps a small sum {r['weights']}",
    )
    r = route(logits, k=2, normalize=True, norm_min=0.1)
    expect(close(r["weights"], p[[0, 1]][None] / p[[0, 1]].sum()), "moe_norm_min below the sum is inert")


def loop_route(
    x,
    w,
    k,
    scoring="softmax",
    router_bias=None,
    selection_bias=None,
    n_group=1,
    topk_group=1,
    group_score="max",
    normalize=False,
    norm_epsilon=0.0,
    scale=1.0,
    norm_min=0.0,
):
    """layers.md §2 for one token, written with Python lists and sorted()."""
    logits = [float(np.dot(row, x)) for row in w]
    if router_bias is not None:
        logits = [l + b for l, b in zip(logits, router_bias)]
    if scoring == "softmax":
        m = max(logits)
        z = sum(math.exp(l - m) for l in logits)
        scores = [math.exp(l - m) / z for l in logits]
    else:
        scores = [1 / (1 + math.exp(-l)) for l in logits]
    choice = [
        s + (selection_bias[e] if selection_bias is not None else 0.0) for e, s in enumerate(scores)
    ]
    width = len(scores) // n_group
    groups = []
    for g in range(n_group):
        members = sorted(choice[g * width : (g + 1) * width], reverse=True)
        groups.append(members[0] if group_score == "max" else members[0] + members[1])
    kept = sorted(range(n_group), key=lambda g: (-groups[g], g))[:topk_group]
    masked = [c if e // width in kept else 0.0 for e, c in enumerate(choice)]
    idx = sorted(range(len(masked)), key=lambda e: (-masked[e], e))[:k]
    weights = [scores[e] for e in idx]
    if normalize:
        total = max(sum(weights) + norm_epsilon, norm_min)
        weights = [v / total for v in weights]
    return idx, [v * scale for v in weights]


def _close_routes(x, w, r, kw):
    for t in range(x.shape[0]):
        idx, weights = loop_route(x[t], w, **kw)
        if idx != r["experts"][t].tolist() or not close(weights, r["weights"][t], 1e-12):
            return False
    return True


def loop_moe(x, t, a):
    """A token-choice layer with the routing loop above and a per-token FFN sum."""
    y = np.zeros((x.shape[0], t["down"].shape[1]))
    counts = {}
    kw = {
        k: a[k]
        for k in (
            "k",
            "scoring",
            "normalize",
            "norm_epsilon",
            "norm_min",
            "scale",
            "n_group",
            "topk_group",
            "group_score",
        )
        if k in a
    }
    capacity = ref.capacity_of(
        x.shape[0], a["k"], t["router"].shape[0], a.get("capacity"), a.get("capacity_factor")
    )
    for i in range(x.shape[0]):
        idx, weights = loop_route(
            x[i],
            t["router"],
            router_bias=t.get("router_bias"),
            selection_bias=t.get("selection_bias"),
            **kw,
        )
        for e, wt in zip(idx, weights):
            counts[e] = counts.get(e, 0) + 1
            if capacity is not None and counts[e] > capacity:
                continue
            gate = t["gate"][e] if t.get("gate") is not None else None
            y[i] += wt * ref.ffn(x[i : i + 1], t["up"][e], t["down"][e], gate, a["activation"])[0]
    if t.get("shared_up") is not None:
        s = ref.ffn(x, t["shared_up"], t["shared_down"], t.get("shared_gate"), a["activation"])
        if t.get("shared_expert_gate") is not None:
            s *= 1 / (1 + np.exp(-(x @ t["shared_expert_gate"].T)))
        y += s
    return y


def loop_gpt_oss(x, w, spec):
    """GPT-OSS's sparse block (GptOssMLP) for one token at a time, straight from the fused
    checkpoint tensors: top-k of the biased logits, softmax over those k, each chosen expert's
    interleaved gate/up columns with their biases, the clamp, (up + 1)·gate·σ(α·gate), down
    and its bias."""
    p = {role: w[name] for role, name in spec["tensors"].items()}
    k, alpha, limit = spec["attrs"]["k"], spec["attrs"]["swiglu_alpha"], spec["attrs"]["swiglu_limit"]
    experts, ffn = spec["experts"], spec["ffn"]
    y = np.zeros((x.shape[0], spec["hidden"]))
    for i in range(x.shape[0]):
        logits = [float(np.dot(row, x[i])) + float(b) for row, b in zip(p["router"], p["router_bias"])]
        chosen = sorted(range(experts), key=lambda e: (-logits[e], e))[:k]
        top = max(logits[e] for e in chosen)
        total = sum(math.exp(logits[e] - top) for e in chosen)
        for e in chosen:
            h = x[i] @ p["gate_up_proj"][e] + p["gate_up_proj_bias"][e]
            act = []
            for j in range(ffn):
                gate, up = min(h[2 * j], limit), min(max(h[2 * j + 1], -limit), limit)
                act.append((up + 1.0) * gate / (1.0 + math.exp(-alpha * gate)))
            out = np.array(act) @ p["down_proj"][e] + p["down_proj_bias"][e]
            y[i] += math.exp(logits[e] - top) / total * out
    return y


def test_layers_against_loops(tmp):
    for name, argv in {
        "deepseek_v3": ["--preset", "deepseek_v3"],
        "qwen2_per_expert": ["--preset", "qwen2_moe", "--per-expert", "--dtype", "bf16"],
        "switch_gelu": ["--preset", "switch", "--activation", "gelu", "--capacity", "5"],
        "deepseek_v2_tanh": [
            "--preset",
            "deepseek_v2",
            "--activation",
            "gelu_tanh",
            "--router-bias",
        ],
        "all_to_one": ["--preset", "mixtral", "--all-to-one-expert", "--capacity-factor", "1.0"],
        "idle": ["--preset", "olmoe", "--idle-experts", "--aux"],
        "minimax_m2_bf16": ["--preset", "minimax_m2", "--dtype", "bf16"],
        "ernie4_5_moe_bf16": ["--preset", "ernie4_5_moe", "--dtype", "bf16"],
        "solar_open_bf16": ["--preset", "solar_open", "--dtype", "bf16"],
    }.items():
        case_dir = os.path.join(tmp, name)
        with contextlib.redirect_stdout(io.StringIO()):
            make_case.main([case_dir, *argv, "--tokens", "24"])
        with open(os.path.join(case_dir, "case.json")) as f:
            case = json.load(f)
        weights, _ = st.load(os.path.join(case_dir, "weights.safetensors"))
        inputs, _ = st.load(os.path.join(case_dir, "inputs.safetensors"))
        t = {
            r: np.stack([weights[n] for n in v]) if isinstance(v, list) else weights[v]
            for r, v in case["weights"].items()
        }
        x = inputs["hidden_states"]
        results, _, info = ref.token_choice(x, t, case["attrs"])
        expect(
            close(results["output"], loop_moe(x, t, case["attrs"]), 1e-10), f"{name}: layer vs loop"
        )
        used = set(info["kept"][info["kept"] >= 0].ravel().tolist())
        if name == "all_to_one":
            expect(
                info["routing"]["experts"][:, 0].tolist() == [0] * 24 and info["capacity"] == 6,
                "all tokens pick expert 0 first",
            )
        if name == "idle":
            expect(len(used) < case["sizes"]["experts"], f"idle experts exist ({sorted(used)})")


def test_mixture_of_tokens():
    rng = np.random.default_rng(4)
    B, S, D, E, F = 4, 3, 5, 3, 6
    x = rng.standard_normal((B, S, D))
    t = {
        "controller": rng.standard_normal((E, D)),
        "up": rng.standard_normal((E, F, D)),
        "down": rng.standard_normal((E, D, F)),
    }
    a = {"group_size": 1, "temperature": 0.7, "activation": "relu"}
    # G = 1: every merge weight is 1, so each token goes through every expert unweighted.
    out, _, _ = ref.mixture_of_tokens(x, t, a)
    direct = sum(
        ref.ffn(x.reshape(-1, D), t["up"][e], t["down"][e], None, "relu") for e in range(E)
    )
    expect(close(out["output"].reshape(-1, D), direct, 1e-12), "MoT with G = 1")
    # G = B, both emit modes, against a loop over positions and experts.
    for emit in ("merge", "expert_softmax"):
        a = {"group_size": B, "temperature": 0.7, "emit": emit, "activation": "relu"}
        out, _, _ = ref.mixture_of_tokens(x, t, a)
        expected = np.zeros_like(x)
        for s in range(S):
            logits = x[:, s] @ t["controller"].T / 0.7  # [B, E]
            merge = np.exp(logits) / np.exp(logits).sum(axis=0, keepdims=True)
            emit_w = (
                merge
                if emit == "merge"
                else np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            )
            for e in range(E):
                h = ref.ffn(
                    (merge[:, e : e + 1] * x[:, s]).sum(axis=0, keepdims=True),
                    t["up"][e],
                    t["down"][e],
                    None,
                    "relu",
                )
                expected[:, s] += emit_w[:, e : e + 1] * h
        expect(close(out["output"], expected, 1e-12), f"MoT with G = B, emit {emit}")
    # B = 0 and transition mode (token-choice top-k over the controller, renormalized).
    out, _, _ = ref.mixture_of_tokens(
        np.zeros((0, S, D)), t, {"group_size": 2, "temperature": 1.0, "activation": "relu"}
    )
    expect(out["output"].shape == (0, S, D), "MoT with B = 0")
    out, _, _ = ref.mixture_of_tokens(
        x,
        t,
        {"group_size": 2, "temperature": 1.0, "transition": True, "k": 2, "activation": "relu"},
    )
    tc, _, _ = ref.token_choice(
        x.reshape(-1, D),
        {"router": t["controller"], "up": t["up"], "down": t["down"]},
        {"k": 2, "normalize": True, "activation": "relu"},
    )
    expect(close(out["output"].reshape(-1, D), tc["output"]), "MoT transition mode")


def test_edge_cases_and_lightweight():
    rng = np.random.default_rng(5)
    t = {
        "router": rng.standard_normal((4, 3)),
        "up": rng.standard_normal((4, 5, 3)),
        "down": rng.standard_normal((4, 3, 5)),
        "gate": rng.standard_normal((4, 5, 3)),
    }
    results, near, _ = ref.token_choice(
        np.zeros((0, 3)), t, {"k": 2, "activation": "silu", "capacity_factor": 1.0}
    )
    expect(
        results["output"].shape == (0, 3)
        and results["aux_loss"] == 0
        and results["z_loss"] == 0
        and near.shape == (0,),
        "T = 0",
    )
    x = rng.standard_normal((3, 3))
    x[1, 0] = np.nan
    results, _, _ = ref.token_choice(x, t, {"k": 4, "activation": "silu"})
    finite = np.isfinite(results["output"]).all(axis=-1)
    expect(finite.tolist() == [True, False, True], "NaN propagates to its token only")
    # MoV / MoLoRA with a top-k mask: masked, not renormalized.
    x = rng.standard_normal((6, 3))
    p, _ = ref.soft_route(x, t["router"], 2)
    full = ref.softmax(x @ t["router"].T)
    expect(
        ((p > 0).sum(axis=-1) == 2).all() and close(p.max(axis=-1), full.max(axis=-1)),
        "top-k mask, no renorm",
    )
    h = rng.standard_normal((6, 7))
    v = rng.standard_normal((4, 7))
    out, _, _ = ref.mov(x, h, {"router": t["router"], "vectors": v}, {})
    expect(close(out["output"], h * (full @ v)), "MoV")
    a_, b_ = rng.standard_normal((4, 2, 3)), rng.standard_normal((4, 5, 2))
    w0 = rng.standard_normal((5, 3))
    out, _, _ = ref.molora(
        x, {"router": t["router"], "base": w0, "lora_a": a_, "lora_b": b_}, {"alpha": 8.0}
    )
    loop = np.array(
        [
            w0 @ x[i] + 4.0 * sum(full[i, e] * b_[e] @ (a_[e] @ x[i]) for e in range(4))
            for i in range(6)
        ]
    )
    expect(close(out["output"], loop), "MoLoRA")
    # z-loss and activations at known points.
    expect(close(ref.z_loss(np.zeros((2, 4))), math.log(4) ** 2), "z-loss")
    z = np.array([-1.0, 0.0, 2.0])
    expect(close(ref.gelu(z), [0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in z]), "gelu(erf)")
    expect(close(ref.gelu_tanh(np.array([1.0])), [0.8411919906082768]), "gelu_tanh")
    # An exact tie is a near-tie at any dtype; a clear gap is not, even in bf16.
    r = ref.route(np.ones((2, 1)), np.array([[1.0], [1.0], [0.0]]), k=1)
    near = ref.token_choice_near_ties(
        r, ref.logit_error_bound(np.ones((2, 1)), np.ones((3, 1)), 0.0), "softmax"
    )
    expect(near.tolist() == [True, True], "exact tie is a near-tie")
    r = ref.route(np.ones((1, 1)), np.array([[1.0], [0.0]]), k=1)
    near = ref.token_choice_near_ties(
        r, ref.logit_error_bound(np.ones((1, 1)), np.ones((2, 1)), 2.0**-8), "softmax"
    )
    expect(near.tolist() == [False], "clear gap is not a near-tie")


def test_hf(tmp):
    for family in hf_fixtures.FAMILIES:
        out = os.path.join(tmp, "hf", family)
        dtype, sharded = ("bf16", True) if family in ("mixtral", "deepseek_v3") else ("f32", False)
        layer = hf_fixtures.write_fixture(out, family, dtype, sharded, tokens=16, seed=7)
        checkpoint = (
            os.path.join(out, "model")
            if sharded
            else os.path.join(out, "model", "model.safetensors")
        )
        results, near, info = hf_reference.compute(
            os.path.join(out, "model", "config.json"),
            checkpoint,
            os.path.join(out, "inputs.safetensors"),
        )
        spec = info["spec"]
        expect(
            spec["layer"] == layer and results["output"].shape == (16, spec["hidden"]),
            f"{family}: layer {spec['layer']} output {results['output'].shape}",
        )
        # The same block through the independent loop, from the raw checkpoint tensors
        # (ERNIE's [1, E] selection bias flattened; GPT-OSS's fused experts as stored).
        weights, _ = st.load(checkpoint)
        x, _ = st.load(os.path.join(out, "inputs.safetensors"))
        if family == "gpt_oss":
            loop = loop_gpt_oss(x["hidden_states"], weights, spec)
            # The fixture reaches the clamp: some gate/up pre-activations pass ±swiglu_limit.
            name = spec["tensors"]["gate_up_proj"]
            pre = np.einsum("td,edf->tef", x["hidden_states"], weights[name])
            beyond = (np.abs(pre) > spec["attrs"]["swiglu_limit"]).mean()
            expect(0.02 < beyond < 0.5, f"gpt_oss fixture: {beyond:.1%} of gate/up values beyond the limit")
        else:
            t = hf_reference.block_tensors(spec, weights.__getitem__)
            loop = loop_moe(x["hidden_states"], t, spec["attrs"])
        expect(close(results["output"], loop, 1e-10), f"{family}: hf_reference vs loop")
    with open(os.path.join(tmp, "hf", "qwen2_moe", "model", "config.json")) as f:
        qwen = json.load(f)
    expect(hf_reference.sparse_layers(qwen) == [1, 2, 3], "qwen2_moe mlp_only_layers")
    qwen.update(decoder_sparse_step=2, mlp_only_layers=[3])
    expect(hf_reference.sparse_layers(qwen) == [1], "qwen decoder_sparse_step")
    switch = hf_fixtures.make_config("switch_transformers", "f32")
    expect(hf_reference.sparse_layers(switch) == [1, 3], "switch encoder_sparse_step")
    del switch["encoder_sparse_step"]
    switch.update(num_layers=12, num_sparse_encoder_layers=6)
    expect(hf_reference.sparse_layers(switch) == [1, 3, 5, 7, 9, 11], "switch-base-8 sparse blocks")
    # GLM-4.7-Flash: mlp_layer_types decides (transformers ignores first_k_dense_replace).
    lite = hf_fixtures.make_config("glm4_moe_lite", "f32")
    expect(hf_reference.sparse_layers(lite) == [1, 2], "glm4_moe_lite default mlp_layer_types")
    lite.update(mlp_layer_types=["sparse", "dense", "sparse"], first_k_dense_replace=None)
    expect(hf_reference.sparse_layers(lite) == [0, 2], "glm4_moe_lite mlp_layer_types")
    spec = hf_reference.block_spec(hf_fixtures.make_config("minimax_m2", "f32"), 1)
    expect(
        spec["tensors"]["selection_bias"] == "model.layers.1.block_sparse_moe.e_score_correction_bias"
        and spec["attrs"]["normalize"]
        and spec["attrs"]["norm_epsilon"] == 0.0
        and spec["attrs"]["scale"] == 1.0
        and "shared_up" not in spec["tensors"],
        f"minimax_m2 block: {spec['attrs']}",
    )
    # ERNIE-4.5: sparse iff (i + 1) % moe_layer_interval == 0 and start <= i <= end (-1: the
    # last); the selection bias is stored [1, E]; num_experts_per_tok (an alias) wins over moe_k.
    ernie = hf_fixtures.make_config("ernie4_5_moe", "f32")
    expect(hf_reference.sparse_layers(ernie) == [1, 2], "ernie4_5_moe default sparse layers")
    changed = dict(ernie, num_hidden_layers=8, moe_layer_interval=2, moe_layer_end_index=5)
    expect(hf_reference.sparse_layers(changed) == [1, 3, 5], "ernie4_5_moe moe_layer_interval")
    spec = hf_reference.block_spec(dict(ernie, num_experts_per_tok=3), 2)
    expect(
        spec["tensors"]["selection_bias"] == "model.layers.2.mlp.moe_statics.e_score_correction_bias"
        and spec["shapes"]["selection_bias"] == (1, 16)
        and spec["shapes"]["shared_up"] == (64, 64)
        and spec["attrs"]["k"] == 3
        and spec["attrs"]["scoring"] == "softmax"
        and spec["attrs"]["normalize"]
        and spec["attrs"]["norm_min"] == 1e-12
        and spec["attrs"]["scale"] == 1.0,
        f"ernie4_5_moe block: {spec['attrs']} {spec['shapes']}",
    )
    # GPT-OSS: every layer sparse, its fused experts' names and shapes, the router bias, the
    # clamp's parameters (1.702 / 7.0 when config.json lacks them), the 5.x config the same.
    gpt = hf_fixtures.make_config("gpt_oss", "f32")
    spec = hf_reference.block_spec(gpt, 1)
    expect(
        hf_reference.sparse_layers(gpt) == [0, 1]
        and spec["tensors"]["gate_up_proj"] == "model.layers.1.mlp.experts.gate_up_proj"
        and spec["tensors"]["router_bias"] == "model.layers.1.mlp.router.bias"
        and spec["shapes"]["gate_up_proj"] == (16, 64, 64)
        and spec["shapes"]["down_proj"] == (16, 32, 64)
        and spec["shapes"]["down_proj_bias"] == (16, 64)
        and spec["attrs"]["normalize"]
        and spec["attrs"]["swiglu_alpha"] == 1.702
        and spec["attrs"]["swiglu_limit"] == 7.0
        and spec == hf_reference.block_spec(hf_fixtures.make_config("gpt_oss", "f32", True), 1),
        f"gpt_oss block: {spec['attrs']} {spec['shapes']}",
    )
    spec = hf_reference.block_spec(dict(gpt, swiglu_limit=3.0, swiglu_alpha=1.0), 0)
    expect(
        spec["attrs"]["swiglu_limit"] == 3.0 and spec["attrs"]["swiglu_alpha"] == 1.0,
        "gpt_oss swiglu fields",
    )
    # block_tensors splits the interleaved columns: gate unit j is column 2j, up unit j 2j+1.
    fused = np.arange(12, dtype=np.float64).reshape(1, 3, 4)  # E=1, D=3, 2F=4
    values = {
        "router": np.zeros((1, 3)),
        "router_bias": np.zeros(1),
        "gate_up_proj": fused,
        "gate_up_proj_bias": np.array([[10.0, 11.0, 12.0, 13.0]]),
        "down_proj": np.arange(6.0).reshape(1, 2, 3),
        "down_proj_bias": np.array([[7.0, 8.0, 9.0]]),
    }
    t = hf_reference.block_tensors({"tensors": {r: r for r in values}}, values.__getitem__)
    expect(
        t["gate"][0].tolist() == [[0, 4, 8], [2, 6, 10]]
        and t["up"][0].tolist() == [[1, 5, 9], [3, 7, 11]]
        and t["gate_bias"][0].tolist() == [10, 12]
        and t["up_bias"][0].tolist() == [11, 13]
        and t["down"][0].tolist() == [[0, 3], [1, 4], [2, 5]],
        f"gpt_oss gate/up de-interleave {t['gate'][0].tolist()} {t['up'][0].tolist()}",
    )
    # The clamped SwiGLU at hand-worked points: the gate clamps from above only, up both sides.
    g = np.array([-10.0, 0.0, 2.0, 9.0])
    u = np.array([-9.0, 8.0, -0.5, 1.0])
    expected = [
        (-7 + 1) * -10 / (1 + math.exp(17.02)),
        0.0,
        0.5 * 2 / (1 + math.exp(-3.404)),
        2 * 7 / (1 + math.exp(-7 * 1.702)),
    ]
    expect(close(hf_reference.clamped_swiglu(g, u, 1.702, 7.0), expected), "clamped_swiglu points")
    for family, change, needle in [
        ("gpt_oss", {"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
        ("deepseek_v2", {"norm_topk_prob": True}, "norm_topk_prob"),
        ("deepseek_v2", {"moe_layer_freq": 2}, "moe_layer_freq"),
        ("deepseek_v3", {"topk_method": "greedy"}, "topk_method"),
        ("glm4_moe_lite", {"first_k_dense_replace": 2}, "first_k_dense_replace"),
        ("glm4_moe_lite", {"mlp_layer_types": ["dense", "moe", "sparse"]}, "mlp_layer_types"),
        ("glm4_moe_lite", {"mlp_layer_types": ["dense", "sparse"]}, "mlp_layer_types"),
        ("minimax_m2", {"scoring_func": "softmax"}, "scoring_func"),
        ("minimax_m2", {"use_routing_bias": False}, "use_routing_bias"),
        ("ernie4_5_moe", {"use_bias": True}, "use_bias"),
        ("ernie4_5_moe", {"moe_layer_interval": 0}, "moe_layer_interval"),
        ("ernie4_5_moe", {"moe_layer_end_index": -2}, "moe_layer_end_index"),
        ("mixtral", {"model_type": "llama"}, "model_type"),
        ("mixtral", {}, "dense"),
    ]:
        config = {**hf_fixtures.make_config(family, "f32"), **change}
        try:
            # glm4_moe_lite's and ernie4_5_moe's layer 0 is dense: ask for layer 2, so only the
            # refusal can fail.
            layer = 5 if needle == "dense" else 2 if family in ("glm4_moe_lite", "ernie4_5_moe") else 0
            hf_reference.block_spec(config, layer)
            expect(False, f"{family} {change} refused")
        except hf_reference.ConfigError as e:
            expect(needle in str(e) or "sparse layers" in str(e), f"refusal names '{needle}': {e}")


def test_nan_token_and_ir(tmp):
    """A NaN token reaches exactly its own outputs (its whole group in Mixture of Tokens), and
    every generated layer.mlir parses with mixtile-opt when one is built ($MIXTILE_OPT)."""
    opt = os.environ.get("MIXTILE_OPT") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "bin", "mixtile-opt"
    )
    for name, argv, bad_rows in [
        ("tc", ["--preset", "qwen2_moe", "--aux", "--nan-token", "2"], [2]),
        (
            "mot",
            [
                "--kind",
                "mixture_of_tokens",
                "--batch",
                "4",
                "--seq",
                "3",
                "--group-size",
                "2",
                "--nan-token",
                "4",
            ],
            [1, 4],
        ),
        ("molora", ["--kind", "molora", "--k", "2", "--per-expert"], []),
        ("mov", ["--kind", "mov", "--out-dim", "40"], []),
        ("ec", ["--kind", "expert_choice", "--plain", "--aux", "--dtype", "f16"], []),
        (
            "v3",
            [
                "--preset",
                "deepseek_v3",
                "--dtype",
                "bf16",
                "--router-dtype",
                "f32",
                "--per-expert",
                "--aux",
            ],
            [],
        ),
    ]:
        case_dir = os.path.join(tmp, "ir_" + name)
        make_case.main([case_dir, *argv])
        expected, _, _, _ = check.case_reference(case_dir)
        rows = np.flatnonzero(
            ~np.isfinite(expected["output"].reshape(-1, expected["output"].shape[-1])).all(axis=-1)
        )
        expect(rows.tolist() == bad_rows, f"{name}: NaN rows {rows.tolist()} (expected {bad_rows})")
        if os.path.exists(opt):
            parsed = subprocess.run(
                [opt, os.path.join(case_dir, "layer.mlir")], capture_output=True, text=True
            )
            expect(parsed.returncode == 0, f"{name}: layer.mlir does not parse:\n{parsed.stderr}")


def test_check_cli(tmp):
    case_dir = os.path.join(tmp, "cli")
    with contextlib.redirect_stdout(io.StringIO()):
        make_case.main([case_dir, "--preset", "qwen2_moe", "--aux", "--tokens", "20"])
    good = os.path.join(tmp, "good.safetensors")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = check.main([case_dir, good, "--write-reference", good])
    expect(
        status == 0 and "output: rel_l2=" in out.getvalue(),
        f"check.py accepts the reference:\n{out.getvalue()}",
    )
    tensors, _ = st.load(good)
    tensors["router_logits"] = tensors["router_logits"] + 1e-3
    bad = os.path.join(tmp, "bad.safetensors")
    st.write_file(bad, tensors)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = check.main([case_dir, bad])
    expect(
        status == 1 and "router_logits" in out.getvalue() and "FAIL" in out.getvalue(),
        "check.py rejects perturbed logits",
    )
    hf_dir = os.path.join(tmp, "hf", "switch_transformers")
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = check.main(
            [
                "--hf",
                os.path.join(hf_dir, "model", "config.json"),
                os.path.join(hf_dir, "model", "model.safetensors"),
                "--inputs",
                os.path.join(hf_dir, "inputs.safetensors"),
                good,
                "--write-reference",
                good,
            ]
        )
    expect(status == 0, f"check.py --hf accepts the reference:\n{out.getvalue()}")
    with contextlib.redirect_stdout(io.StringIO()):
        expect(check.self_test(verbose=False) == 0, "check.py --self-test")


def _expect_refusals(directory, saved, family, cases, errors=(model_reference.ModelError,)):
    """Each (config change, needle): the model directory's config.json with the change is refused
    (one of `errors`) naming the needle; `saved` is written back after."""
    for change, needle in cases:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump({**saved, **change}, f)
        try:
            model_reference.Model(directory)
            expect(False, f"{family} refuses {change}")
        except errors as e:
            expect(needle in str(e), f"refusal names '{needle}': {e}")
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(saved, f)


def _check_solar_open_model(directory, model):
    """Solar-Open: every layer sparse, whole heads rotated (head_dim 32 != hidden / heads),
    no attention biases by default (q/k/v only with attention_bias, never o_proj), the router
    and selection bias f32; a partial rotary factor (transformers' attention then fails) is
    refused, at the top level or in rope_parameters."""
    expect(
        sorted(model.sparse) == [0, 1]
        and model.head_dim == 32
        and 2 * model.inv_freq.size == 32
        and model.attention_bias == ()
        and not model.head_qk_norm
        and model.dtypes["model.layers.0.mlp.gate.weight"] == "F32"
        and model.dtypes["model.layers.0.mlp.gate.e_score_correction_bias"] == "F32",
        f"solar_open structure: sparse {sorted(model.sparse)}, head_dim {model.head_dim}",
    )
    with open(os.path.join(directory, "config.json")) as f:
        saved = json.load(f)
    biased = make_model.make_config("solar_open", "f32")
    biased["attention_bias"] = True
    names = [name for name, _, _ in make_model.tensor_shapes(biased)]
    expect(
        "model.layers.0.self_attn.q_proj.bias" in names
        and "model.layers.0.self_attn.o_proj.bias" not in names,
        "solar_open attention_bias: q/k/v biases, none on o_proj",
    )
    _expect_refusals(directory, saved, "solar_open", [
        ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
        ({"rope_parameters": dict(saved["rope_parameters"], partial_rotary_factor=0.5)}, "partial_rotary_factor"),
    ])


def test_whole_model(tmp):
    """make_model.py + model_reference.py, without transformers (bench/hf_model_parity.py
    checks them against it): a left-padded row gives the logits of the same tokens alone,
    cached greedy decoding equals recomputing the whole sequence, masked logits are 0, eos
    stops a row, and each family's structure (sparse layers, clipping, sliding) is as built."""
    lengths = (5, 3, 6)
    seq = max(lengths)
    rng = np.random.default_rng(11)
    ids = rng.integers(3, 256, (len(lengths), seq))
    mask = (np.arange(seq)[None, :] >= seq - np.array(lengths)[:, None]).astype(np.int64)
    ids = ids * mask
    for family, options in [
        ("mixtral", {"sliding_window": 3, "rope": "llama3"}),
        ("qwen2_moe", {"layers": 3, "sliding_window": 2, "tie": True}),
        ("qwen3_moe", {"rope": "yarn"}),
        ("olmoe", {"dtype": "f32", "sharded": True}),
        ("deepseek_v2", {"rope": "linear"}),
        ("glm4_moe", {"qk_norm": True, "rope": "yarn"}),
        ("dots1", {"layers": 3, "sliding_window": 2, "tie": True}),
        ("glm4_moe_lite", {"layers": 3, "rope": "yarn"}),
        ("minimax_m2", {"rope": "llama3", "tie": True}),
        ("ernie4_5_moe", {"rope": "yarn"}),
        ("deepseek_v3", {"rope": "yarn", "layers": 1}),
        ("gpt_oss", {"layers": 3}),
        ("solar_open", {"rope": "llama3", "tie": True}),
    ]:
        directory = os.path.join(tmp, "model_" + family)
        config = make_model.write_model(directory, family, seed=3, **options)
        model = model_reference.Model(directory)
        expect(
            sorted(model.sparse) == hf_reference.sparse_layers(config),
            f"{family}: sparse layers {sorted(model.sparse)}",
        )
        out = model_reference.run(model, ids, mask, generate=4)
        logits, sequences = out["logits"], out["sequences"]
        expect(
            logits.shape == (3, seq, 256) and np.isfinite(logits).all() and (logits[mask == 0] == 0).all(),
            f"{family}: logits shape/finite/masked zeros",
        )
        for b, n in enumerate(lengths):
            alone = model_reference.run(model, ids[b : b + 1, seq - n :])["logits"][0]
            expect(close(logits[b, seq - n :], alone, 1e-12), f"{family}: padded row {b} = row alone")
            # Cached decoding = recomputing the prompt plus the new tokens in one pass.
            new = sequences[b, seq:]
            stop = next((i + 1 for i, t in enumerate(new) if t in model.eos), len(new))
            full = model_reference.run(model, np.concatenate([ids[b, seq - n :], new[:stop]])[None])
            argmax = full["logits"][0, n - 1 : n - 1 + stop].argmax(axis=-1)
            expect(
                (argmax == new[:stop]).all() and (new[stop:] == model.fill).all(),
                f"{family}: row {b} decoding {new.tolist()} vs recomputed {argmax.tolist()}",
            )
        if family == "olmoe":
            normed = model_reference.rms_norm(
                model.embed[ids[0, -4:]],
                model.tensor("model.layers.0.input_layernorm.weight"),
                model.eps,
            )
            q = model_reference.rms_norm(
                normed @ model.tensor("model.layers.0.self_attn.q_proj.weight").T,
                model.tensor("model.layers.0.self_attn.q_norm.weight"),
                model.eps,
            )
            expect(0 < (np.abs(q) > config["clip_qkv"]).mean() < 1, "olmoe: clip_qkv clips some q")
        if family == "qwen2_moe":
            expect(model.windows == [2, None, 2], f"qwen2_moe sliding layers {model.windows}")
        if family == "dots1":
            expect(model.windows == [None, 2, 2], f"dots1 sliding layers {model.windows}")
        if family == "glm4_moe":
            # Half of each head rotates (partial_rotary_factor 0.5 in rope_parameters); the
            # factor at config.json's top level, or absent (Glm4MoeConfig's default 0.5), is
            # the same model, and a factor of 1 is a different one.
            rotary = 2 * model.inv_freq.size
            expect(rotary == model.head_dim // 2, f"glm4_moe rotates {rotary} of {model.head_dim} dims")
            with open(os.path.join(directory, "config.json")) as f:
                saved = json.load(f)
            for label, factor, same in [("top level", 0.5, True), ("absent", None, True), ("1", 1.0, False)]:
                changed = dict(saved, rope_parameters=dict(saved["rope_parameters"]))
                del changed["rope_parameters"]["partial_rotary_factor"]
                if factor is not None:
                    changed["partial_rotary_factor"] = factor
                with open(os.path.join(directory, "config.json"), "w") as f:
                    json.dump(changed, f)
                other = model_reference.run(model_reference.Model(directory), ids, mask)["logits"]
                expect(close(other, logits) == same, f"glm4_moe partial_rotary_factor {label}")
            with open(os.path.join(directory, "config.json"), "w") as f:
                json.dump(saved, f)
        if family == "glm4_moe_lite":
            # MLA with layer 0 dense by mlp_layer_types; a partial rotary factor (transformers'
            # cos/sin then do not fit qk_rope_head_dim) and key/value heads other than the
            # heads (transformers repeats the expanded keys again) are refused.
            expect(
                model.mla and sorted(model.sparse) == [1, 2],
                f"glm4_moe_lite sparse layers {sorted(model.sparse)}",
            )
            with open(os.path.join(directory, "config.json")) as f:
                saved = json.load(f)
            _expect_refusals(directory, saved, "glm4_moe_lite", [
                ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
                ({"num_key_value_heads": 2}, "num_key_value_heads"),
            ])
        if family == "minimax_m2":
            # q/k norms over all heads at once; rotary_dim 16 of head_dim 32 rotates. 5.24's
            # priority: rope_parameters' partial_rotary_factor, else the top-level one, else
            # rotary_dim / head_dim.
            q_norm = model.tensor("model.layers.0.self_attn.q_norm.weight")
            expect(q_norm.shape == (model.heads * model.head_dim,), f"minimax_m2 q_norm {q_norm.shape}")
            expect(2 * model.inv_freq.size == 16, f"minimax_m2 rotates {2 * model.inv_freq.size} dims")
            with open(os.path.join(directory, "config.json")) as f:
                saved = json.load(f)
            params = {k: v for k, v in saved["rope_parameters"].items() if k != "partial_rotary_factor"}
            top_level = {"rope_parameters": params, "rotary_dim": 32, "partial_rotary_factor": 0.5}
            for label, change, same in [
                ("rotary_dim alone", {"rope_parameters": params}, True),
                ("rope_parameters over rotary_dim", {"rotary_dim": 32}, True),
                ("top level over rotary_dim", top_level, True),
                ("rotary_dim 32", {"rope_parameters": params, "rotary_dim": 32}, False),
            ]:
                with open(os.path.join(directory, "config.json"), "w") as f:
                    json.dump({**saved, **change}, f)
                other = model_reference.run(model_reference.Model(directory), ids, mask)["logits"]
                expect(close(other, logits) == same, f"minimax_m2 {label}")
            _expect_refusals(directory, saved, "minimax_m2", [
                ({"use_qk_norm": False}, "use_qk_norm"),
                ({"attn_type_list": [0, 1]}, "attn_type_list"),
            ])
        if family == "ernie4_5_moe":
            # 3 layers, layer 0 dense; tied by default (no lm_head.weight); interleaved RoPE;
            # the selection bias [1, E] in f32 of a bf16 checkpoint. use_bias and a partial
            # rotary factor (transformers ignores it with default RoPE, fails with yarn) are
            # refused.
            bias = "model.layers.1.mlp.moe_statics.e_score_correction_bias"
            expect(
                sorted(model.sparse) == [1, 2]
                and model.interleaved
                and "lm_head.weight" not in model.weights
                and model.weights[bias].shape == (1, 8)
                and model.dtypes[bias] == "F32"
                and model.dtypes["model.layers.1.mlp.gate.weight"] == "F32",
                f"ernie4_5_moe structure: sparse {sorted(model.sparse)}, {model.weights[bias].shape}",
            )
            with open(os.path.join(directory, "config.json")) as f:
                saved = json.load(f)
            _expect_refusals(directory, saved, "ernie4_5_moe", [
                ({"use_bias": True}, "use_bias"),
                ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
            ])
        if family == "gpt_oss":
            _check_gpt_oss_model(directory, model, ids, mask, logits)
        if family == "solar_open":
            _check_solar_open_model(directory, model)
    # An eos the model emits first stops that row at once; the rest is padding.
    model.eos, model.fill = [int(sequences[0, seq])], 7
    out = model_reference.run(model, ids, mask, generate=3)["sequences"]
    expect((out[0, seq + 1 :] == 7).all(), f"eos stops row 0: {out[0].tolist()}")
    # Relative RoPE: shifting every position leaves q·k alone; interleaved = half-split
    # up to a permutation of the pairs.
    x, y = rng.standard_normal((2, 5, 1, 8))
    inv, pos = 1.0 / 10.0 ** np.arange(4), np.arange(5)
    for interleaved in (False, True):
        a = model_reference.apply_rope(x, pos, inv, 1.0, interleaved)
        b = model_reference.apply_rope(y, pos, inv, 1.0, interleaved)
        a2 = model_reference.apply_rope(x, pos + 9, inv, 1.0, interleaved)
        b2 = model_reference.apply_rope(y, pos + 9, inv, 1.0, interleaved)
        expect(close(a @ b.transpose(0, 2, 1), a2 @ b2.transpose(0, 2, 1), 1e-12), "rope is relative")
    perm = np.concatenate([np.arange(0, 8, 2), np.arange(1, 8, 2)])
    expect(
        close(
            model_reference.apply_rope(x, pos, inv, 2.0, True)[..., perm],
            model_reference.apply_rope(x[..., perm], pos, inv, 2.0, False),
        ),
        "interleaved rope = half-split rope on de-interleaved pairs",
    )
    # Families whose attention rotates whole heads refuse a partial rotary factor.
    mixtral = make_model.make_config("mixtral", layers=1)
    mixtral["rope_parameters"]["partial_rotary_factor"] = 0.5
    try:
        model_reference.rotary_dim(mixtral, 16)
        expect(False, "mixtral refuses partial_rotary_factor 0.5")
    except model_reference.ModelError as e:
        expect("partial_rotary_factor" in str(e), f"refusal names partial_rotary_factor: {e}")
    bad = os.path.join(tmp, "right_padded.safetensors")
    st.write_file(bad, {"input_ids": ids, "attention_mask": mask[:, ::-1].copy()})
    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        status = model_reference.main([directory, "--inputs", bad])
    expect(status == 1 and "left padding" in err.getvalue(), "model_reference refuses right padding")


def _check_gpt_oss_model(directory, model, ids, mask, logits):
    """GPT-OSS's whole-model structure: layers 0 and 2 slide (window 4) and 1 is full; the
    clamp is reached; sinks behave as an extra key with a zero value; its yarn by default,
    truncate honoured; layer_types/rope defaults as GptOssConfig's; refusals."""
    expect(
        model.windows == [4, None, 4] and sorted(model.sparse) == [0, 1, 2],
        f"gpt_oss windows {model.windows}",
    )
    expect(
        model.attention_bias == ("q", "k", "v", "o")
        and model.head_dim == 32
        and model.attention_factor > 1.3,
        f"gpt_oss attention: biases {model.attention_bias}, head_dim {model.head_dim}, "
        f"yarn attention factor {model.attention_factor}",
    )
    # The clamp is reached in the model's own experts (their inputs are RMS-normed tokens).
    seen = []
    original = hf_reference.clamped_swiglu

    def recording(gate, up, alpha, limit):
        seen.append(np.concatenate([gate.ravel(), up.ravel()]))
        return original(gate, up, alpha, limit)

    hf_reference.clamped_swiglu = recording
    try:
        model_reference.run(model, ids, mask)
    finally:
        hf_reference.clamped_swiglu = original
    values = np.concatenate(seen)
    beyond = (np.abs(values) > model.config["swiglu_limit"]).mean()
    expect(0.02 < beyond < 0.5, f"gpt_oss model: {beyond:.1%} of gate/up values beyond the limit")
    # A sink is a key whose score is the sink and whose value is 0: a huge sink leaves only
    # o_proj's bias; a hugely negative one is plain softmax attention.
    x = np.random.default_rng(2).standard_normal((3, model.hidden))
    positions = np.arange(3)
    name = "model.layers.1.self_attn.sinks"
    saved = model.weights[name].copy()
    try:
        model.weights[name] = np.full_like(saved, 1e4)
        out = model.attention(1, x, positions, [None, None])
        bias = model.tensor("model.layers.1.self_attn.o_proj.bias")
        expect(close(out, np.broadcast_to(bias, out.shape), 1e-9), "gpt_oss: a huge sink leaves o_proj's bias")
        model.weights[name] = np.full_like(saved, -1e4)
        with_sink = model.attention(1, x, positions, [None, None])
        model.sinks = False
        without = model.attention(1, x, positions, [None, None])
        expect(close(with_sink, without, 1e-12), "gpt_oss: a hugely negative sink is no sink")
        model.weights[name], model.sinks = saved, True
        with_saved = model.attention(1, x, positions, [None, None])
        expect(not close(with_saved, without, 1e-6), "gpt_oss: sinks matter")
    finally:
        model.weights[name], model.sinks = saved, True
    with open(os.path.join(directory, "config.json")) as f:
        saved_config = json.load(f)
    legacy = {k: v for k, v in saved_config.items() if k not in ("rope_parameters", "layer_types")}
    rope = {k: v for k, v in saved_config["rope_parameters"].items() if k != "rope_theta"}
    truncated = dict(saved_config, rope_parameters=dict(saved_config["rope_parameters"], truncate=True))
    for label, config, same in [
        # GptOssConfig's defaults: layers 0, 2, ... slide; yarn factor 32 over 4096, untruncated.
        ("defaults", legacy, True),
        ("4.x rope_scaling + rope_theta", dict(legacy, rope_scaling=rope, rope_theta=150000), True),
        ("truncate true", truncated, False),
        ("window 2", dict(saved_config, sliding_window=2), False),
    ]:
        with open(os.path.join(directory, "config.json"), "w") as f:
            json.dump(config, f)
        other = model_reference.run(model_reference.Model(directory), ids, mask)["logits"]
        expect(close(other, logits) == same, f"gpt_oss {label}")
    _expect_refusals(directory, saved_config, "gpt_oss", [
        ({"sliding_window": None}, "sliding_window"),
        ({"layer_types": ["sliding_attention", "chunked_attention", "full_attention"]}, "layer_types"),
        ({"layer_types": ["full_attention"]}, "layer_types"),
        ({"quantization_config": {"quant_method": "gptq"}}, "quantization_config"),
    ], errors=(model_reference.ModelError, hf_reference.ConfigError))
    # MXFP4 (the hub's form): worked codes and scales decode as transformers' FP4 table says
    # (low nibble the even element, 2^(scale - 127), [N, K] blocks read as [K, N]), and
    # make_model's --mxfp4 round-trips representable values exactly.
    blocks = np.zeros((2, 1, 16), np.uint8)  # N = 2 rows of K = 32
    blocks[0, 0, 0] = 0x71  # elements 0, 1: codes 1 (0.5) and 7 (6.0)
    blocks[1, 0, 15] = 0xA9  # elements 30, 31: codes 9 (-0.5) and 10 (-1.0)
    scales = np.array([[128], [125]], np.uint8)  # x2 and x1/4
    values = hf_reference.mxfp4_values(blocks, scales)
    expect(values.shape == (32, 2) and values[0, 0] == 1.0 and values[1, 0] == 12.0
           and values[30, 1] == -0.125 and values[31, 1] == -0.25
           and np.count_nonzero(values) == 4, "MXFP4 decoding (codes, nibble order, scales)")
    w = np.ldexp(hf_reference.FP4_VALUES[np.arange(64 * 2 * 4) % 16].reshape(2, 64, 4), 3)
    tensors = {"model.layers.0.mlp.experts.down_proj": w.copy()}
    dtypes = {"model.layers.0.mlp.experts.down_proj": "BF16"}
    config = {"model_type": "gpt_oss", "dtype": "bfloat16"}
    make_model.quantize_mxfp4(config, tensors, dtypes)
    expect(sorted(tensors) == ["model.layers.0.mlp.experts.down_proj_blocks",
                               "model.layers.0.mlp.experts.down_proj_scales"]
           and tensors["model.layers.0.mlp.experts.down_proj_blocks"].shape == (2, 4, 2, 16),
           "make_model --mxfp4 writes blocks [E, N, K/32, 16] and scales")
    hf_reference.dequantize_mxfp4(config, tensors, dtypes)
    expect(np.array_equal(tensors["model.layers.0.mlp.experts.down_proj"], w),
           "MXFP4 round trip of representable values")


def test_against_transformers(tmp):
    """Only where torch and transformers 5.x import (the pyenv python3, not Debian's: lit
    runs none of this): GPT-OSS's whole-model reference (logits and greedy tokens) and its
    sparse block (hf_reference) against transformers itself, f32 and bf16 checkpoints. The
    float64 references against transformers' f32 arithmetic: 1e-5 relative L2."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, GptOssConfig
        from transformers.models.gpt_oss.modeling_gpt_oss import GptOssMLP
    except ImportError:
        return
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    rng = np.random.default_rng(13)
    lengths, seq = (7, 4, 9), 9
    ids = np.zeros((3, seq), np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(lengths):
        ids[b, seq - n :] = rng.integers(3, 256, n)
        mask[b, seq - n :] = 1
    keep = mask.astype(bool)
    for dtype in ("f32", "bf16"):
        directory = os.path.join(tmp, f"torch_gpt_oss_{dtype}")
        make_model.write_model(directory, "gpt_oss", dtype=dtype, layers=3, seed=21)
        hf = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        with torch.no_grad():
            hf_logits = hf(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
            hf_logits = hf_logits.double().numpy()
            generated = hf.generate(
                input_ids=torch.tensor(ids),
                attention_mask=torch.tensor(mask),
                do_sample=False,
                max_new_tokens=4,
                min_new_tokens=4,
                pad_token_id=1,
            ).numpy()
        out = model_reference.run(model_reference.Model(directory), ids, mask, generate=4)
        error = np.linalg.norm(out["logits"][keep] - hf_logits[keep]) / np.linalg.norm(hf_logits[keep])
        expect(error < 1e-5, f"gpt_oss {dtype} logits vs transformers: rel_l2 {error:.2e}")
        # min_new_tokens keeps HF from choosing eos (it takes the next best there): compare the
        # tokens before the reference's eos.
        for b in range(3):
            new, theirs = out["sequences"][b, seq:], generated[b, seq:]
            stop = next((i for i, t in enumerate(new) if t == 2), len(new))
            expect(
                (new[:stop] == theirs[:stop]).all(),
                f"gpt_oss {dtype} row {b} tokens {new} vs HF {theirs}",
            )
    for dtype in ("f32", "bf16"):
        out_dir = os.path.join(tmp, f"torch_gpt_oss_layer_{dtype}")
        layer = hf_fixtures.write_fixture(out_dir, "gpt_oss", dtype, tokens=24, seed=9)
        with open(os.path.join(out_dir, "model", "config.json")) as f:
            config = json.load(f)
        skip = ("architectures", "model_type", "torch_dtype", "transformers_version")
        fields = {k: v for k, v in config.items() if k not in skip}
        block = GptOssMLP(GptOssConfig(**fields)).float().eval()
        weights, _ = st.load(os.path.join(out_dir, "model", "model.safetensors"))
        prefix = f"model.layers.{layer}.mlp."
        block.load_state_dict(
            {
                n[len(prefix) :]: torch.tensor(v, dtype=torch.float32)
                for n, v in weights.items()
                if n.startswith(prefix)
            }
        )
        x, _ = st.load(os.path.join(out_dir, "inputs.safetensors"))
        with torch.no_grad():
            theirs = block(torch.tensor(x["hidden_states"], dtype=torch.float32)[None])[0][0].double().numpy()
        results, near, _ = hf_reference.compute(
            os.path.join(out_dir, "model", "config.json"),
            os.path.join(out_dir, "model", "model.safetensors"),
            os.path.join(out_dir, "inputs.safetensors"),
            router_precision="f32",  # transformers' router runs in f32 here
        )
        ours = results["output"][~near]
        error = np.linalg.norm(ours - theirs[~near]) / np.linalg.norm(theirs[~near])
        expect(
            error < 1e-5 and near.sum() <= 1,
            f"gpt_oss {dtype} block vs GptOssMLP: rel_l2 {error:.2e}, {near.sum()} near ties",
        )


def main():
    with tempfile.TemporaryDirectory() as tmp:
        test_bf16_and_files(tmp)
        test_topk_ties()
        test_capacity()
        test_group_limited_masking()
        test_layers_against_loops(tmp)
        test_mixture_of_tokens()
        test_edge_cases_and_lightweight()
        test_hf(tmp)
        test_nan_token_and_ir(tmp)
        test_check_cli(tmp)
        test_whole_model(tmp)
        test_against_transformers(tmp)
    print(f"selftest: {'FAILED ' + str(len(FAILURES)) if FAILURES else 'all passed'}")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
