"""The independent float64 reference of every layer in shared/spec/layers.md, in numpy.

Owns the math only: callers hand it float64 arrays (weights already widened from their stored
dtype) and it never reads files. It also says which tokens sit on a routing near-tie, so a
check can leave out tokens whose discrete choice may legitimately differ from float64.
"""

import math

import numpy as np

# ---------------------------------------------------------------------------------------------
# Elementwise functions
# ---------------------------------------------------------------------------------------------

_erf = np.frompyfunc(math.erf, 1, 1)  # numpy has no erf and scipy is not a dependency


def gelu(z):
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)).astype(np.float64)) if z.size else z * 1.0


def gelu_tanh(z):
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z**3)))


def sigmoid(z):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def silu(z):
    return z * sigmoid(z)


def relu(z):
    return np.maximum(z, 0.0)


ACTIVATIONS = {"silu": silu, "gelu": gelu, "gelu_tanh": gelu_tanh, "relu": relu}


def softmax(z, axis=-1):
    shifted = z - np.max(z, axis=axis, keepdims=True) if z.size else z
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def logsumexp(z, axis=-1):
    m = np.max(z, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(z - m), axis=axis, keepdims=True))).squeeze(axis)


def topk(values, k):
    """Indices of the k largest entries of each row, descending; a tie goes to the lower
    index (a stable sort on -value keeps equal entries in index order)."""
    return np.argsort(-values, axis=-1, kind="stable")[..., :k]


def kth_gap(values, k):
    """Per row: (k-th largest) - ((k+1)-th largest); +inf when there is no (k+1)-th."""
    if k >= values.shape[-1]:
        return np.full(values.shape[:-1], np.inf)
    ordered = -np.sort(-values, axis=-1)
    return ordered[..., k - 1] - ordered[..., k]


# ---------------------------------------------------------------------------------------------
# Routing (layers.md §1-2, §4)
# ---------------------------------------------------------------------------------------------


def router_logits(x, router, router_bias=None):
    logits = x @ router.T
    return logits + router_bias if router_bias is not None else logits


def route(
    x,
    router,
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
    """Token-choice selection. Returns a dict: logits, scores [T, E], selection (the scores
    topk ran on, after bias and group masking), experts [T, k], weights [T, k], and the
    per-token gaps at the two discrete decisions (expert_gap, group_gap)."""
    logits = router_logits(x, router, router_bias)
    scores = softmax(logits) if scoring == "softmax" else sigmoid(logits)
    # DeepSeek-V3 (e_score_correction_bias): choose by s + bias, weigh by s.
    selection = scores + selection_bias if selection_bias is not None else scores.copy()
    num_tokens, num_experts = scores.shape
    group_gap = np.full(num_tokens, np.inf)
    group_scores = kept = None
    if n_group > 1:
        width = num_experts // n_group
        grouped = selection.reshape(num_tokens, n_group, width)
        if group_score == "max":  # DeepSeek-V2 group_limited_greedy
            group_scores = grouped.max(axis=-1) if num_tokens else np.zeros((0, n_group))
        else:  # DeepSeek-V3 noaux_tc: sum of the two best (biased) scores of the group
            group_scores = np.sort(grouped, axis=-1)[..., -2:].sum(axis=-1)
        kept = np.zeros((num_tokens, n_group), dtype=bool)
        np.put_along_axis(kept, topk(group_scores, topk_group), True, axis=-1)
        # Experts outside the kept groups are masked to -inf (transformers 5.x, DeepSeek's own
        # inference code): a negative biased score inside a kept group still wins over them.
        selection = np.where(np.repeat(kept, width, axis=1), selection, -np.inf)
        group_gap = kth_gap(group_scores, topk_group)
    experts = topk(selection, k)
    weights = np.take_along_axis(scores, experts, axis=-1)
    if normalize:
        # ERNIE-4.5 divides by max(Σw, moe_norm_min) instead of adding an epsilon; with
        # experts chosen by biased scores, Σw has no useful lower bound, so it is kept exact.
        total = weights.sum(axis=-1, keepdims=True) + norm_epsilon
        weights = weights / (np.maximum(total, norm_min) if norm_min else total)
    weights = weights * scale
    return {
        "logits": logits,
        "scores": scores,
        "selection": selection,
        "experts": experts,
        "weights": weights,
        "expert_gap": kth_gap(selection, k),
        "group_gap": group_gap,
        "group_scores": group_scores,
        "kept_groups": kept,
    }


def capacity_of(num_tokens, k, num_experts, capacity=None, capacity_factor=None):
    """Switch/GShard expert capacity; None means dropless. The expression is evaluated in
    double in this order: ceil(capacity_factor * T * k / E)."""
    if capacity is not None:
        return int(capacity)
    if capacity_factor is not None:
        return int(math.ceil(capacity_factor * num_tokens * k / num_experts))
    return None


def apply_capacity(experts, num_experts, capacity):
    """Assignments claim slots in token order, then choice order; one whose slot (the count of
    earlier claims on its expert, dropped ones included) is >= capacity is dropped (-1).
    Returns (kept experts [T, k], slot of each assignment [T, k])."""
    flat = experts.reshape(-1)
    claims = flat[:, None] == np.arange(num_experts)[None, :]
    slot = (np.cumsum(claims, axis=0) - claims)[np.arange(flat.size), flat] if flat.size else flat
    slot = slot.reshape(experts.shape)
    if capacity is None:
        return experts.copy(), slot
    return np.where(slot < capacity, experts, -1), slot


# ---------------------------------------------------------------------------------------------
# Experts (layers.md §3)
# ---------------------------------------------------------------------------------------------


def ffn(x, up, down, gate=None, activation="silu"):
    """One FFN: down · (act(gate · x) ⊙ (up · x)) if gated, else down · act(up · x)."""
    act = ACTIVATIONS[activation]
    hidden = act(x @ gate.T) * (x @ up.T) if gate is not None else act(x @ up.T)
    return hidden @ down.T


def combine_experts(x, experts, weights, up, down, gate, activation):
    """y_t = Σ_j weights[t, j] · FFN_{experts[t, j]}(x_t); negative experts contribute 0."""
    y = np.zeros((x.shape[0], down.shape[1]))
    for e in range(up.shape[0]):
        rows, cols = np.nonzero(experts == e)
        if rows.size:
            h = ffn(x[rows], up[e], down[e], gate[e] if gate is not None else None, activation)
            np.add.at(y, rows, weights[rows, cols][:, None] * h)
    return y


# ---------------------------------------------------------------------------------------------
# Auxiliary results (layers.md §8)
# ---------------------------------------------------------------------------------------------


def load_balancing_loss(logits, kept_experts):
    """E · Σ_e f_e · P_e with f_e = (assignments kept on e) / (T·k) and P_e the mean of
    softmax(logits)[:, e]; dropped assignments (-1) count in the denominator only. 0 at T=0.
    Note: HF's Mixtral load_balancing_loss_func averages over T only (its value is k times
    this for k > 1); layers.md and mix.load_balancing_loss define the T·k fraction."""
    num_tokens, num_experts = logits.shape
    if num_tokens == 0:
        return np.float64(0.0)
    counts = np.array([(kept_experts == e).sum() for e in range(num_experts)], dtype=np.float64)
    fraction = counts / kept_experts.size
    mean_prob = softmax(logits).mean(axis=0)
    return np.float64(num_experts * np.sum(fraction * mean_prob))


def z_loss(logits):
    """ST-MoE router z-loss: mean_t (logsumexp_e logits)². 0 at T=0."""
    if logits.shape[0] == 0:
        return np.float64(0.0)
    return np.float64(np.mean(logsumexp(logits) ** 2))


# ---------------------------------------------------------------------------------------------
# Near-tie bounds (layers.md Conventions)
# ---------------------------------------------------------------------------------------------
# Why a bound at all: an implementation may round x to the router's dtype before the router
# matmul (a bf16 GEMM with f32 accumulation). The weight is exact in that dtype, so product i
# carries a relative error delta_i with |delta_i| <= u (u = 2^-8 bf16, 2^-11 f16, 0 f32).
# The worst case u·Σ|x_i W_ei| assumes all D errors align and excludes far too many tokens;
# rounding errors of different x_i are independent and roughly uniform on [-u, u], so the
# logit error has standard deviation u/sqrt(3)·||x ⊙ W_e||_2 and we allow six of them (a
# false alarm about once in 10^9 decisions). f32 accumulation over D terms adds at most
# D·2^-24·Σ|x_i W_ei| (the classic gamma_D bound). So each logit of token t is off by at most
#   dl_t = max_e [ 6u/sqrt(3) · ||x_t ⊙ W_e||_2 + D·2^-24 · Σ_i |x_ti W_ei| ].
# A softmax score then moves by a factor within exp(±2·dl) (numerator and denominator each
# within exp(±dl)); a sigmoid score by at most s(1-s)·e^dl·dl (its slope s(1-s) changes by at
# most e^dl over the interval). Biases are stored exactly, and so is a group-masked 0. A
# decision is a near-tie when some chosen entry, pushed down by its bound, could fall to or
# below some unchosen entry pushed up by its own: the implementation may then legitimately
# choose differently.

UNIT_ROUNDOFF = {"f32": 0.0, "bf16": 2.0**-8, "f16": 2.0**-11}


def logit_error_bound(x, router, unit_roundoff):
    if x.shape[0] == 0:
        return np.zeros(0)
    rounding = 6.0 * unit_roundoff / math.sqrt(3.0) * np.sqrt((x**2) @ (router**2).T)
    accumulation = x.shape[-1] * 2.0**-24 * (np.abs(x) @ np.abs(router).T)
    return (rounding + accumulation).max(axis=-1)


def score_error_bound(scores, logit_bound, scoring):
    """[T, E]: how far each score may move when its logits move by logit_bound [T]."""
    dl = logit_bound[:, None]
    if scoring == "softmax":
        return scores * np.expm1(2.0 * dl)
    return scores * (1.0 - scores) * np.exp(dl) * dl


def choice_may_differ(values, bounds, chosen, axis=-1):
    """Along `axis`: can a chosen entry drop to or below an unchosen one, each moving by its
    bound? Returns one bool per row (False when every entry is chosen)."""
    with np.errstate(invalid="ignore"):
        lowest_chosen = np.where(chosen, values - bounds, np.inf).min(axis=axis, initial=np.inf)
        highest_other = np.where(chosen, -np.inf, values + bounds).max(axis=axis, initial=-np.inf)
    return lowest_chosen <= highest_other


def token_choice_near_ties(routing, logit_bound, scoring, group_score="max"):
    """Tokens whose chosen expert set may differ from the reference's: at the group decision
    (a group's score error is its largest score error, twice that for a top-2 sum) or at the
    expert decision on the masked selection scores."""
    bound = score_error_bound(routing["scores"], logit_bound, scoring)
    num_tokens, num_experts = bound.shape
    near = np.zeros(num_tokens, dtype=bool)
    kept_groups = routing.get("kept_groups")
    if kept_groups is not None:
        n_group = kept_groups.shape[1]
        group_bound = bound.reshape(num_tokens, n_group, num_experts // n_group).max(
            axis=-1, initial=0.0
        )
        group_bound *= 2.0 if group_score == "top2_sum" else 1.0
        near |= choice_may_differ(routing["group_scores"], group_bound, kept_groups)
        bound = np.where(np.repeat(kept_groups, num_experts // n_group, axis=1), bound, 0.0)
    chosen = np.zeros((num_tokens, num_experts), dtype=bool)
    np.put_along_axis(chosen, routing["experts"], True, axis=-1)
    return near | choice_may_differ(routing["selection"], bound, chosen)


def capacity_near_ties(near_tie, slot, capacity):
    """Tokens whose kept/dropped decision may differ because an earlier near-tie token may
    claim a different expert. Each earlier near-tie token moves any expert's claim count by
    at most one, so with m of them before token t an assignment at slot s can flip only if
    capacity - m <= s < capacity + m."""
    if capacity is None or slot.size == 0:
        return near_tie.copy()
    earlier = np.cumsum(near_tie) - near_tie
    m = earlier[:, None]
    flips = ((slot >= capacity - m) & (slot < capacity + m)).any(axis=-1)
    return near_tie | flips


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------


def token_choice(x, t, a, unit_roundoff=0.0):
    """A token-choice MoE layer (layers.md §2-4). `t` maps roles to float64 arrays (router,
    router_bias, selection_bias, gate/up/down stacked [E, ...], shared_*), `a` the attributes.
    Returns (results, near_tie [T], info)."""
    k = a["k"]
    routing = route(
        x,
        t["router"],
        k,
        a.get("scoring", "softmax"),
        t.get("router_bias"),
        t.get("selection_bias"),
        a.get("n_group", 1),
        a.get("topk_group", 1),
        a.get("group_score", "max"),
        a.get("normalize", False),
        a.get("norm_epsilon", 0.0),
        a.get("scale", 1.0),
        a.get("norm_min", 0.0),
    )
    num_experts = t["router"].shape[0]
    capacity = capacity_of(x.shape[0], k, num_experts, a.get("capacity"), a.get("capacity_factor"))
    kept, slot = apply_capacity(routing["experts"], num_experts, capacity)
    y = combine_experts(
        x, kept, routing["weights"], t["up"], t["down"], t.get("gate"), a["activation"]
    )
    if t.get("shared_up") is not None:
        shared = ffn(x, t["shared_up"], t["shared_down"], t.get("shared_gate"), a["activation"])
        if t.get("shared_expert_gate") is not None:  # Qwen2-MoE
            shared = sigmoid(x @ t["shared_expert_gate"].T) * shared
        y = y + shared
    results = {
        "output": y,
        "router_logits": routing["logits"],
        "aux_loss": load_balancing_loss(routing["logits"], kept),
        "z_loss": z_loss(routing["logits"]),
    }
    dl = logit_error_bound(x, t["router"], unit_roundoff)
    near = token_choice_near_ties(
        routing, dl, a.get("scoring", "softmax"), a.get("group_score", "max")
    )
    info = {
        "routing": routing,
        "kept": kept,
        "capacity": capacity,
        "mean_prob": (
            softmax(routing["logits"]).mean(axis=0) if x.shape[0] else np.zeros(num_experts)
        ),
    }
    return results, capacity_near_ties(near, slot, capacity), info


def expert_choice(x, t, a, unit_roundoff=0.0):
    """Expert-choice routing (Zhou et al., 2022; layers.md §5): expert e takes the
    C = min(T, ceil(cf·T/E)) tokens with the largest s[:, e], ties to the lower token."""
    logits = router_logits(x, t["router"])
    scores = softmax(logits)
    num_tokens, num_experts = scores.shape
    capacity = min(num_tokens, int(math.ceil(a["capacity_factor"] * num_tokens / num_experts)))
    chosen = np.zeros_like(scores, dtype=bool)
    order = np.argsort(-scores, axis=0, kind="stable")  # per expert column, ties to lower t
    for e in range(num_experts):
        chosen[order[:capacity, e], e] = True
    experts = np.where(chosen, np.arange(num_experts)[None, :], -1)
    y = combine_experts(
        x,
        experts,
        np.where(chosen, scores, 0.0),
        t["up"],
        t["down"],
        t.get("gate"),
        a["activation"],
    )
    results = {"output": y, "router_logits": logits, "z_loss": z_loss(logits)}

    near = np.zeros(num_tokens, dtype=bool)
    if 0 < capacity < num_tokens:
        bound = score_error_bound(
            scores, logit_error_bound(x, t["router"], unit_roundoff), "softmax"
        )
        with np.errstate(invalid="ignore"):
            lowest_chosen = np.where(chosen, scores - bound, np.inf).min(axis=0)
            highest_other = np.where(chosen, -np.inf, scores + bound).max(axis=0)
        near = np.where(
            chosen, scores - bound <= highest_other, scores + bound >= lowest_chosen
        ).any(axis=-1)
    return results, near, {"capacity": capacity, "chosen": chosen}


def mixture_of_tokens(x, t, a, unit_roundoff=0.0):
    """Mixture of Tokens (Antoniak et al., 2023, arXiv 2310.15961; layers.md §6) on
    x [B, S, D]; in transition mode a token-choice top-k layer over the controller."""
    batch, seq, hidden = x.shape
    if a.get("transition"):
        flat = x.reshape(-1, hidden)
        attrs = {"k": a["k"], "normalize": True, "activation": a["activation"]}
        tc = {"router": t["controller"], "up": t["up"], "down": t["down"], "gate": t.get("gate")}
        results, near, info = token_choice(flat, tc, attrs, unit_roundoff)
        return {"output": results["output"].reshape(batch, seq, hidden)}, near, info
    group = a["group_size"]
    if batch % group:
        raise ValueError(f"group_size {group} does not divide the batch size {batch}")
    tau = a["temperature"]
    num_experts = t["controller"].shape[0]
    groups = batch // group
    logits = (x @ t["controller"].T).reshape(groups, group, seq, num_experts) / tau
    merge = softmax(logits, axis=1) if x.size else np.zeros_like(logits)  # over the group
    grouped = x.reshape(groups, group, seq, hidden)
    mixed = np.einsum("gise,gisd->egsd", merge, grouped)  # [E, groups, S, D]
    h = np.stack(
        [
            ffn(
                mixed[e].reshape(-1, hidden),
                t["up"][e],
                t["down"][e],
                t["gate"][e] if t.get("gate") is not None else None,
                a["activation"],
            )
            for e in range(num_experts)
        ]
    ).reshape(num_experts, groups, seq, hidden)
    if a.get("emit", "merge") == "expert_softmax":
        emit = softmax(logits, axis=-1) if x.size else logits
    else:
        emit = merge
    out = np.einsum("gise,egsd->gisd", emit, h).reshape(batch, seq, hidden)
    return {"output": out}, np.zeros(batch * seq, dtype=bool), {}


def soft_route(x, router, k=None, unit_roundoff=0.0):
    """Zadouri et al., 2023: p = softmax(x · routerᵀ), optionally masked to its top-k
    without renormalization. Returns (p, near_tie)."""
    p = softmax(router_logits(x, router))
    near = np.zeros(x.shape[0], dtype=bool)
    if k is not None:
        keep = np.zeros_like(p, dtype=bool)
        np.put_along_axis(keep, topk(p, k), True, axis=-1)
        bound = score_error_bound(p, logit_error_bound(x, router, unit_roundoff), "softmax")
        near = choice_may_differ(p, bound, keep)
        p = np.where(keep, p, 0.0)
    return p, near


def mov(x, h, t, a, unit_roundoff=0.0):
    """MoV: y = h ⊙ (p · V) (layers.md §7)."""
    p, near = soft_route(x, t["router"], a.get("k"), unit_roundoff)
    return {"output": h * (p @ t["vectors"])}, near, {}


def molora(x, t, a, unit_roundoff=0.0):
    """MoLoRA: y = W_0·x + (α/r) · Σ_e p_e · B_e·(A_e·x) (layers.md §7)."""
    p, near = soft_route(x, t["router"], a.get("k"), unit_roundoff)
    rank = t["lora_a"].shape[1]
    y = x @ t["base"].T
    for e in range(t["lora_a"].shape[0]):
        y = y + (a["alpha"] / rank) * p[:, e : e + 1] * ((x @ t["lora_a"][e].T) @ t["lora_b"][e].T)
    return {"output": y}, near, {}


def evaluate(kind, inputs, tensors, attrs, unit_roundoff=0.0):
    """Runs layer `kind` on named inputs (hidden_states, and activation for MoV). Returns
    (results {name: float64 array}, near_tie bool [tokens], info)."""
    x = inputs["x"]
    if kind == "token_choice":
        return token_choice(x, tensors, attrs, unit_roundoff)
    if kind == "expert_choice":
        return expert_choice(x, tensors, attrs, unit_roundoff)
    if kind == "mixture_of_tokens":
        return mixture_of_tokens(x, tensors, attrs, unit_roundoff)
    if kind == "mov":
        return mov(x, inputs["h"], tensors, attrs, unit_roundoff)
    if kind == "molora":
        return molora(x, tensors, attrs, unit_roundoff)
    raise ValueError(f"unknown layer kind '{kind}'")
