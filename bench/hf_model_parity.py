#!/usr/bin/env python3
"""Whole-model parity against transformers (needs torch + transformers, and accelerate for the
fp8 cases, which transformers' fp8 loader requires; run it with the pyenv python3, not
Debian's).

For each case (a family, plus variants that exercise sliding windows, linear/llama3/yarn
RoPE, tied embeddings, MLA with and without q_lora_rank, non-interleaved DeepSeek RoPE, GLM's
partial rotary with and without use_qk_norm, dots1's layer_types windows, GLM-4.7-Flash's MLA
with biases, MiniMax-M2's partial rotary from rotary_dim, ERNIE-4.5's interleaved RoPE and
moe_layer_interval, gpt-oss's layer_types, attention without biases, clamped SwiGLU
parameters, top-3 and yarn whose untruncated correction range reaches the prompts,
Solar-Open's whole-head RoPE with and without q/k/v biases and group limits),
this builds a tiny random model with transformers itself (AutoConfig.for_model +
AutoModelForCausalLM.from_config, with make_model.py's sizes; routers re-initialized with
std 1 so routing has no near-ties, norms/biases made non-trivial, gpt-oss's experts, router
biases and sinks drawn as make_model.py draws them but the experts' output side scaled down,
GPT_OSS_OUTPUT_SCALE), save_pretrained's it in
f32 and bf16, and checks against HF's own model(input_ids, attention_mask).logits and greedy
generate() on a left-padded batch of 3 prompts of different lengths (mixtral, qwen3_moe,
deepseek_v3 and minimax_m2 also as a fine-grained fp8 checkpoint, FP8_CASES, which HF
dequantizes on load):
  reference  test/helpers/model_reference.py (float64 numpy) on both checkpoints
  make_model test/helpers/make_model.py's output: config.json identical to what transformers
             re-saves, the same tensor names/shapes/dtypes transformers saves, loads with no
             missing/unexpected keys, and the reference matches HF on it
  mixtile    (with --mixtilec/--mixtile-run) `mixtilec --hf-config DIR/config.json --model`,
             then mixtile-run for `logits` and for `sequences` (--generate N); on the bf16
             checkpoint, positions where a bf16-sized perturbation of the routers' inputs
             alone moves HF's logits past the tolerance (a routing near-tie at or before
             them, router_sensitivity) are left out of the logits check and counted
For the gpt_oss cases (LAYER_CASES), also one sparse layer alone on 32 random hidden states,
f32 and bf16, against HF's own model.model.layers[L].mlp: test/helpers/hf_reference.py's
block reference, and with --mixtilec `mixtilec --hf-config DIR/config.json --layer L --dtype
D` + mixtile-run (bf16: tokens whose routing hf_reference finds near a tie left out, as
check.py does).
One line per case and check, PASS/FAIL/SKIP; exit 1 on any FAIL.
Usage: hf_model_parity.py [--families F ...] [--no-variants] [--save DIR]
                          [--mixtilec PATH --mixtile-run PATH] [--generate N]
"""

import argparse
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
HELPERS = os.path.join(HERE, "..", "test", "helpers")
sys.path.insert(0, HELPERS)
import check  # noqa: E402
import hf_reference  # noqa: E402
import make_model  # noqa: E402
import model_reference  # noqa: E402
import safetensors_io  # noqa: E402

import transformers  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

# name -> (family, make_model options, extra config fields). make_model options are the
# keyword arguments of make_model.make_config (and its CLI flags).
CASES = {
    "mixtral": ("mixtral", {}, {}),
    "mixtral_sw_llama3": ("mixtral", {"sliding_window": 4, "rope": "llama3"}, {}),
    "qwen2_moe": ("qwen2_moe", {}, {}),
    "qwen2_moe_sw_linear_tied": (
        "qwen2_moe",
        {"sliding_window": 3, "rope": "linear", "tie": True, "layers": 4},
        {"decoder_sparse_step": 2, "mlp_only_layers": []},
    ),
    "qwen3_moe": ("qwen3_moe", {}, {}),
    "qwen3_moe_yarn": ("qwen3_moe", {"rope": "yarn", "layers": 3}, {}),
    "olmoe": ("olmoe", {}, {}),
    "olmoe_llama3_tied": ("olmoe", {"rope": "llama3", "tie": True}, {}),
    "deepseek_v2": ("deepseek_v2", {}, {}),
    "deepseek_v2_qlora_yarn": ("deepseek_v2", {"rope": "yarn"}, {"q_lora_rank": 48}),
    "deepseek_v3": ("deepseek_v3", {}, {}),
    "deepseek_v3_yarn_flat": (
        "deepseek_v3",
        {"rope": "yarn", "layers": 3},
        {"rope_interleave": False, "q_lora_rank": None},
    ),
    # e_score_correction_bias ~ -0.9: most biased scores are negative, so HF's -inf masking
    # of dropped groups differs from masking them to 0 (DeepSeek's remote code).
    "deepseek_v3_negative_bias": ("deepseek_v3", {}, {}),
    # GLM-4.5: partial rotary (half of head_dim 32), q/k/v biases, layer 0 dense, 4 groups keep 2.
    "glm4_moe": ("glm4_moe", {}, {}),
    # use_qk_norm, and yarn computed over the rotary half only.
    "glm4_moe_qknorm_yarn": ("glm4_moe", {"qk_norm": True, "rope": "yarn", "layers": 3}, {}),
    # As deepseek_v3_negative_bias (a uniform shift leaves HF's choice alone; it catches
    # masking dropped groups to 0 instead of -inf in the compiled model).
    "glm4_moe_negative_bias": ("glm4_moe", {}, {}),
    # dots.llm1: q/k/v/o biases, per-head q/k norms, 2 shared experts, unnormalized top-k.
    "dots1": ("dots1", {}, {}),
    # layer_types: layers 1 and 2 slide (max_window_layers 1), layer 0 is full.
    "dots1_sw_llama3_tied": ("dots1", {"sliding_window": 3, "rope": "llama3", "tie": True, "layers": 3}, {}),
    # GLM-4.7-Flash: DeepSeek-V3's MLA (q_lora_rank, interleaved RoPE) and router (4 groups
    # keep 2, scale 1.8), layer 0 dense by mlp_layer_types.
    "glm4_moe_lite": ("glm4_moe_lite", {}, {}),
    # yarn with mscale != mscale_all_dim (the softmax-scale correction), layers 1 and 2 sparse.
    "glm4_moe_lite_yarn": ("glm4_moe_lite", {"rope": "yarn", "layers": 3}, {}),
    # attention_bias (q_a_proj, kv_a_proj_with_mqa, o_proj), no q_lora_rank (its q_proj has
    # no bias), half-split RoPE, and mlp_layer_types other than the default.
    "glm4_moe_lite_bias_flat": (
        "glm4_moe_lite",
        {"layers": 3},
        {
            "attention_bias": True,
            "q_lora_rank": None,
            "rope_interleave": False,
            "mlp_layer_types": ["sparse", "dense", "sparse"],
        },
    ),
    "glm4_moe_lite_negative_bias": ("glm4_moe_lite", {}, {}),
    # MiniMax-M2: full-width q/k norms, rotary_dim 16 of head_dim 32, sigmoid top-2 with a
    # selection bias and no group limit; router and bias in the checkpoint's dtype.
    "minimax_m2": ("minimax_m2", {}, {}),
    # llama3 over the rotary part only, and tied embeddings.
    "minimax_m2_llama3_tied": ("minimax_m2", {"rope": "llama3", "tie": True, "layers": 3}, {}),
    # ERNIE-4.5: layer 0 dense, interleaved RoPE (theta 5e5), f32 softmax top-2 chosen through
    # the [1, E] moe_statics bias, 2 shared experts, tied embeddings (the config's default).
    "ernie4_5_moe": ("ernie4_5_moe", {}, {}),
    # Untied embeddings and yarn over interleaved pairs.
    "ernie4_5_moe_yarn_untied": ("ernie4_5_moe", {"rope": "yarn", "tie": False}, {}),
    # moe_layer_interval 2 with an end index: layers 1 and 3 sparse, 0, 2 and 4 dense; llama3.
    "ernie4_5_moe_every2_llama3": (
        "ernie4_5_moe",
        {"rope": "llama3", "layers": 5},
        {"moe_layer_interval": 2, "moe_layer_end_index": 3},
    ),
    # gpt-oss: q/k/v/o biases, a sink logit per head, layer 0 sliding (window 4) and layer 1
    # full, its own yarn (factor 32, truncate false), a router with a bias, softmax over the
    # top-2 chosen logits, biased experts with the clamped SwiGLU; heads x head_dim 32 (128)
    # != hidden (64).
    "gpt_oss": ("gpt_oss", {}, {}),
    # layer_types other than the alternation __post_init__ derives (window 3 on layers 1 and
    # 2), no q/k/v/o biases (the sinks stay), llama3, tied embeddings.
    "gpt_oss_layer_types_tied": (
        "gpt_oss",
        {"layers": 3, "sliding_window": 3, "rope": "llama3", "tie": True},
        {"layer_types": ["full_attention", "sliding_attention", "sliding_attention"], "attention_bias": False},
    ),
    # Another clamp and alpha, top-3, and yarn over 32 original positions: the untruncated
    # correction range then matters within the prompts.
    "gpt_oss_swiglu_short_yarn": (
        "gpt_oss",
        {},
        {
            "swiglu_limit": 3.0,
            "swiglu_alpha": 1.3,
            "num_experts_per_tok": 3,
            "rope_parameters": {
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "factor": 32.0,
                "original_max_position_embeddings": 32,
                "rope_theta": 150000.0,
                "rope_type": "yarn",
                "truncate": False,
            },
        },
    ),
    # Solar-Open: Llama's attention (whole-head RoPE, theta 1e6, head_dim 32 x 4 heads != hidden,
    # no biases) and GLM-4.5's router (4 groups keep 2, scale 1.0, one shared expert), every
    # layer sparse. A partial_rotary_factor is not a case: transformers' SolarOpen attention
    # rotates whole heads and fails on any other (mixtilec refuses it).
    "solar_open": ("solar_open", {}, {}),
    # attention_bias (q/k/v; o_proj has none), tied embeddings, yarn, and group-limited routing
    # with selection biases ~ -0.9 (dropped groups masked to -inf, not 0).
    "solar_open_bias_tied_yarn": (
        "solar_open",
        {"rope": "yarn", "tie": True, "layers": 3, "attention_bias": True},
        {"n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5},
    ),
    # No group limit (Solar-Open-100B's n_group 1), llama3, top-3.
    "solar_open_nogroup_llama3": (
        "solar_open",
        {"rope": "llama3"},
        {"n_group": 1, "topk_group": 1, "num_experts_per_tok": 3},
    ),
}
SELECTION_BIAS_MEAN = {
    "deepseek_v3_negative_bias": -0.9,
    "glm4_moe_negative_bias": -0.9,
    "glm4_moe_lite_negative_bias": -0.9,
    "solar_open_bias_tied_yarn": -0.9,
}
# Cases that also run as a fine-grained fp8 checkpoint (the bf16 one's projections as e4m3 with
# one f32 scale per block, quantization_config as DeepSeek-V3's): 8 x 8 blocks divide every
# tiny matrix, as transformers' CPU dequantization requires (it derives the block from the
# scale grid and refuses ragged ones).
FP8_CASES = {"mixtral": (8, 8), "qwen3_moe": (8, 8), "deepseek_v3": (8, 8), "minimax_m2": (8, 8)}
PROMPT_LENGTHS = (9, 5, 12)
# One sparse layer of these cases also runs alone (check_layer): the layer, on LAYER_TOKENS
# random hidden states.
LAYER_CASES = {"gpt_oss": 1, "gpt_oss_layer_types_tied": 2, "gpt_oss_swiglu_short_yarn": 0}
LAYER_TOKENS = 32
# gpt-oss's experts as make_model.py draws them (gate_up_proj GPT_OSS_GATE_UP_SCALE/sqrt(D),
# so the clamp is reached; down_proj 0.02, biases 0.5) put out clamped-SwiGLU activations of
# rms ~13 and a block output of rms ~1.5, where every other family's block (HF's 0.02 init)
# adds 1e-3..5e-3 to a residual stream of ~0.03 (embeddings 0.02, attention ~0.02). The
# logits are then the routing weights' mix of expert outputs, the attention ~1.5% of the
# hidden state: perturbing the routers' inputs by one bf16 step moves the top-k softmax
# weights by up to ~0.03..0.04 and the logits of about half the positions past the bf16
# tolerance with no routing choice changed (router_sensitivity: 11 of 26 positions, none at
# a flip), and bf16 arithmetic itself (HF's own bf16 model) misses f32 by 1e-2..8e-2 rel-L2.
# So the experts' output side (down_proj and down_proj_bias together) is scaled by this: the
# block adds 1e-3..3e-3, a tenth of the residual stream as the other families' do, with the
# clamp, the activations and the biases' share of each expert's output unchanged (without
# the clamp the logits still move by 6e-2..1e-1; HF's own bf16 model then misses f32 by
# 4.5e-3..6.2e-3, as mixtral's by 5.2e-3..5.5e-3).
GPT_OSS_OUTPUT_SCALE = make_model.GPT_OSS_OUTPUT_SCALE
# The routers (gpt-oss's is mlp.router, every other family's mlp.gate).
ROUTER = re.compile(r"\.mlp\.(gate|router)\.weight$")
ROUTER_MODULE = re.compile(r"\.mlp\.(gate|router)$")


class Failure(Exception):
    pass


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def hf_config(family, options, extra, dtype):
    """make_model's config for these options, as transformers' own config object."""
    config = make_model.make_config(family, dtype, **options)
    config.update(extra)
    kwargs = {
        k: v
        for k, v in config.items()
        if k not in ("model_type", "transformers_version", "architectures", "dtype")
    }
    return AutoConfig.for_model(family, **kwargs)


def reinitialize(model, seed, bias_mean=0.0):
    """Routers N(0, 1), e_score_correction_bias bias_mean + 0.05·N, shared_expert_gate 0.1·N,
    norms 1 + 0.1·N, biases 0.02·N (HF's init leaves the last three at 1 or 0). gpt-oss's
    experts, router biases and sinks as make_model.py draws them (router biases and sinks
    N(0, 1), experts.gate_up_proj [E, D, 2F] GPT_OSS_GATE_UP_SCALE/sqrt(D)·N: pre-activations
    of std ~5 on RMS-normed tokens, so the clamp is reached; gate_up_proj_bias 0.5·N), except
    that the experts' output side, down_proj (0.02·N) and down_proj_bias (0.5·N), is scaled
    by GPT_OSS_OUTPUT_SCALE."""
    g = torch.Generator().manual_seed(seed + 1)
    gpt_oss = model.config.model_type == "gpt_oss"
    with torch.no_grad():
        for name, p in list(model.named_parameters()) + list(model.named_buffers()):
            if not p.is_floating_point() or name.endswith(("inv_freq", "original_inv_freq")):
                continue
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if ROUTER.search(name):
                p.copy_(z)
            elif gpt_oss and name.endswith((".mlp.router.bias", ".self_attn.sinks")):
                p.copy_(z)
            elif gpt_oss and name.endswith(".experts.gate_up_proj"):
                p.copy_(make_model.GPT_OSS_GATE_UP_SCALE / p.shape[1] ** 0.5 * z)
            elif gpt_oss and name.endswith(".experts.gate_up_proj_bias"):
                p.copy_(0.5 * z)
            elif gpt_oss and name.endswith(".experts.down_proj"):
                p.copy_(GPT_OSS_OUTPUT_SCALE * make_model.WEIGHT_STD * z)
            elif gpt_oss and name.endswith(".experts.down_proj_bias"):
                p.copy_(GPT_OSS_OUTPUT_SCALE * 0.5 * z)
            elif name.endswith("e_score_correction_bias"):
                p.copy_(bias_mean + 0.05 * z)
            elif name.endswith("shared_expert_gate.weight"):
                p.copy_(0.1 * z)
            elif name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * z)
            elif name.endswith(".bias"):
                p.copy_(0.02 * z)


def make_inputs(vocab, seed):
    rng = np.random.default_rng(seed)
    seq = max(PROMPT_LENGTHS)
    ids = np.zeros((len(PROMPT_LENGTHS), seq), np.int64)
    mask = np.zeros_like(ids)
    for b, n in enumerate(PROMPT_LENGTHS):
        ids[b, seq - n :] = rng.integers(3, vocab, n)
        mask[b, seq - n :] = 1
    return ids, mask


def hf_logits(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))
    return out.logits.double().numpy()


def hf_generate(model, ids, mask, new_tokens):
    """HF greedy generation, padded to S + N with the pad HF itself uses after a stop, and
    the logits each step chose from ([B, N, V], zeros after HF stopped every row)."""
    gc = model.generation_config
    eos = gc.eos_token_id
    eos_list = [] if eos is None else (eos if isinstance(eos, list) else [eos])
    pad = gc.pad_token_id if gc.pad_token_id is not None else (eos_list[0] if eos_list else 0)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = model.generate(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            do_sample=False,
            max_new_tokens=new_tokens,
            pad_token_id=pad,
            output_logits=True,
            return_dict_in_generate=True,
        )
    sequences = out.sequences.numpy().astype(np.int64)
    full = np.full((ids.shape[0], ids.shape[1] + new_tokens), pad, dtype=np.int64)
    full[:, : sequences.shape[1]] = sequences
    steps = np.zeros((ids.shape[0], new_tokens, model.config.vocab_size))
    for t, step in enumerate(out.logits):
        steps[:, t] = step.double().numpy()
    return full, steps


def hf_outputs(model, ids, mask, new_tokens):
    sequences, steps = hf_generate(model, ids, mask, new_tokens)
    return {"logits": hf_logits(model, ids, mask), "sequences": sequences, "step_logits": steps}


def router_sensitivity(model, ids, mask, base, trials=4, rel=2.0**-8, seed=0):
    """[B, S]: the most each position's logits (rel-L2 over the vocabulary, against `base`, the
    model's own hf_logits) move when only the routers' inputs are perturbed, each element by a
    factor 1 + rel * N(0, 1), rel one bf16 rounding step, over `trials` draws. Nothing else changes, so a position moves by more than
    the gate weights' own change only where a routing decision at it or before it in its
    sequence flips: a near-tie that bf16 arithmetic decides either way. (That holds where a
    sparse block's output is small beside the residual stream, so that the routing weights'
    continuous change moves the logits far less than tol, as every family's is here: see
    GPT_OSS_OUTPUT_SCALE.)"""
    gates = [m for n, m in model.named_modules() if ROUTER_MODULE.search(n)]
    g = torch.Generator().manual_seed(seed + 7)

    def perturb(module, args):
        x = args[0]
        return (x * (1 + rel * torch.randn(x.shape, generator=g, dtype=x.dtype)),) + tuple(args[1:])

    handles = [m.register_forward_pre_hook(perturb) for m in gates]
    worst = np.zeros(ids.shape)
    try:
        for _ in range(trials):
            moved = hf_logits(model, ids, mask)
            d = np.linalg.norm(moved - base, axis=-1) / np.maximum(np.linalg.norm(base, axis=-1), 1e-300)
            worst = np.maximum(worst, d)
    finally:
        for h in handles:
            h.remove()
    return worst


def compare(name, logits, sequences, hf, mask, tol, eos=(), tie_allowance=None, sensitivity=None):
    """One result line: rel-L2 / max-abs of logits over unmasked positions, exact zeros at
    masked ones, and identical greedy sequences. With tie_allowance (a multiple of the
    observed max-abs logits error), a row may part from HF at a step where HF's own top-1 /
    top-2 margin is within that many max-abs errors (a legitimate near-tie: the tokens after
    it are not compared); without, every token must match. With `sensitivity`
    (router_sensitivity), positions that a bf16-sized perturbation of the routers' inputs
    alone moves by more than tol are left out of the logits check and counted on the line
    (at most a quarter of the positions; more is a failure)."""
    keep = mask.astype(bool)
    logits = np.asarray(logits, np.float64)
    excluded = ""
    if sensitivity is not None:
        near = keep & (sensitivity > tol)
        n_near, n_all = int(near.sum()), int(keep.sum())
        keep = keep & ~near
        if n_near:
            excluded = f" (excluded {n_near} of {n_all} positions: router near-ties)"
    r = rel_l2(logits[keep], hf["logits"][keep])
    m = float(np.abs(logits[keep] - hf["logits"][keep]).max())
    problems = []
    if sensitivity is not None and 4 * n_near > n_all:
        problems.append(f"{n_near} of {n_all} positions at router near-ties")
    if not np.isfinite(r) or r > tol:
        problems.append(f"rel_l2 {r:.2e} > {tol:.0e}")
    if np.any(logits[~mask.astype(bool)] != 0):
        problems.append("masked logits not 0")
    seq = mask.shape[1]
    if sequences is None:
        tokens = "no sequences"
        problems.append("no sequences")
    elif sequences.shape != hf["sequences"].shape:
        tokens = f"sequences {list(sequences.shape)} vs HF {list(hf['sequences'].shape)}"
        problems.append("sequence shape")
    elif (sequences == hf["sequences"]).all():
        tokens = "tokens identical"
    else:
        ties, differ = [], []
        for b in np.unique(np.argwhere(sequences != hf["sequences"])[:, 0]):
            t = int(np.argwhere(sequences[b] != hf["sequences"][b])[0, 0])
            # A near-tie only counts at a step HF really chose from (not the prompt, not
            # after HF stopped the row).
            stopped = np.isin(hf["sequences"][b, seq:t], eos).any()
            step = hf["step_logits"][b, t - seq] if t >= seq and not stopped else None
            margin = np.inf if step is None else float(np.diff(np.sort(step)[-2:])[0])
            what = f"row {b} position {t}: {sequences[b, t]} vs HF {hf['sequences'][b, t]}, HF margin {margin:.1e}"
            if tie_allowance is not None and margin <= tie_allowance * m:
                ties.append(what)
            else:
                differ.append(what)
        if differ:
            tokens = "tokens DIFFER (" + "; ".join(differ) + ")"
            problems.append("tokens")
        else:
            tokens = f"tokens identical up to near-ties ({'; '.join(ties)})"
    status = "FAIL (" + "; ".join(problems) + ")" if problems else "PASS"
    return f"{name}: logits rel_l2={r:.2e} max_abs={m:.2e}{excluded}, {tokens}  {status}", not problems


def eos_ids(model_dir):
    with open(os.path.join(model_dir, "config.json")) as f:
        eos = json.load(f).get("eos_token_id")
    return [] if eos is None else (eos if isinstance(eos, list) else [eos])


def run_reference(model_dir, ids_path, new_tokens):
    out, _ = model_reference.compute(model_dir, ids_path, new_tokens)
    return out["logits"], out["sequences"]


def save_hf_outputs(path, hf):
    safetensors_io.write_file(
        path,
        {name: a if name == "sequences" else a.astype(np.float32) for name, a in hf.items()},
        {"logits": "F32", "sequences": "I64", "step_logits": "F32"},
    )


def pick_eos(model, ids, mask, family, new_tokens):
    """An eos id that row 0 emits a few tokens in, so generation stops rows early."""
    gc = model.generation_config
    gc.eos_token_id, gc.pad_token_id = None, 0
    free, _ = hf_generate(model, ids, mask, new_tokens)
    eos = int(free[0, ids.shape[1] + min(2, new_tokens - 1)])
    if family == "qwen3_moe":
        # A list, as real Qwen3 configs have; the second id rarely shows up.
        eos = [eos, int(free[1, -1])] if int(free[1, -1]) != eos else [eos]
    pad = model.config.pad_token_id
    for target in (model.config, gc):
        target.eos_token_id = eos
        target.pad_token_id = pad
    return eos


def check_make_model(case, family, options, work, ids_path, ids, mask, new_tokens, tol, seed):
    """make_model.py's files against what transformers writes and computes."""
    directory = os.path.join(work, "make_model")
    make_model.write_model(directory, family, seed=seed, **options)
    problems = []
    with open(os.path.join(directory, "config.json")) as f:
        written = json.load(f)
    config = AutoConfig.from_pretrained(directory)
    resaved_dir = os.path.join(work, "make_model_resaved")
    config.save_pretrained(resaved_dir)
    with open(os.path.join(resaved_dir, "config.json")) as f:
        resaved = json.load(f)
    if resaved != written:
        keys = sorted(
            k for k in set(resaved) | set(written) if resaved.get(k, "<absent>") != written.get(k, "<absent>")
        )
        problems.append(
            "config differs: "
            + ", ".join(f"{k}: ours {written.get(k, '<absent>')} HF {resaved.get(k, '<absent>')}" for k in keys)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        native, info = AutoModelForCausalLM.from_pretrained(
            directory, dtype="auto", output_loading_info=True
        )
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        if info.get(kind):
            problems.append(f"{kind}: {sorted(info[kind])[:4]}")
    native.save_pretrained(resaved_dir)
    ours = safetensors_io.load(directory, raw=True)
    theirs = safetensors_io.load(resaved_dir, raw=True)
    layout = lambda t: {n: (a.shape, t[1][n]) for n, a in t[0].items()}  # noqa: E731
    if layout(ours) != layout(theirs):
        a, b = layout(ours), layout(theirs)
        diff = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
        problems.append(f"tensors differ: {[(n, a.get(n), b.get(n)) for n in diff[:4]]}")
    else:
        same = all(np.array_equal(ours[0][n], theirs[0][n]) for n in ours[0])
        if not same:
            problems.append("tensor values change through a transformers load/save")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf_model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    hf = hf_outputs(hf_model, ids, mask, new_tokens)
    logits, sequences = run_reference(directory, ids_path, new_tokens)
    line, ok = compare(f"{case:<26} make_model", logits, sequences, hf, mask, tol)
    if problems:
        line = line.replace("  PASS", "") + "  FAIL (" + "; ".join(problems) + ")"
        ok = False
    else:
        line = line.replace("  PASS", f", config+{len(ours[0])} tensors as transformers saves  PASS")
    return line, ok


def run_mixtile(args, model_dir, ids_path, scratch, new_tokens):
    """(logits, sequences) from mixtilec + mixtile-run, or raises Failure."""
    out = os.path.join(scratch, "compiled")
    run_tools(
        args,
        [
            [args.mixtilec, "--hf-config", os.path.join(model_dir, "config.json"), "--model", "-o", out],
            [args.mixtile_run, out, "--weights", model_dir, "--inputs", ids_path, "-o", os.path.join(scratch, "logits.safetensors")],
            [
                args.mixtile_run, out, "--weights", model_dir, "--inputs", ids_path,
                "--generate", str(new_tokens), "-o", os.path.join(scratch, "seq.safetensors"),
            ],
        ],
        scratch,
    )
    try:
        logits = safetensors_io.load(os.path.join(scratch, "logits.safetensors"))[0]["logits"]
        sequences = safetensors_io.load(os.path.join(scratch, "seq.safetensors"), raw=True)[0]["sequences"]
    except (KeyError, OSError, safetensors_io.SafetensorsError) as e:
        raise Failure(f"reading mixtile-run output: {e}") from None
    return logits, np.asarray(sequences).astype(np.int64)


def run_tools(args, steps, scratch):
    """Runs each command of `steps` in turn; raises Failure (the first error line, the whole
    log under scratch) on a timeout or a nonzero exit."""
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.mixtile_timeout)
        except subprocess.TimeoutExpired:
            raise Failure(f"{os.path.basename(cmd[0])} timed out") from None
        if done.returncode != 0:
            tool = os.path.basename(cmd[0])
            log = os.path.join(scratch, f"{tool}.log")
            with open(log, "w") as f:
                f.write(" ".join(cmd) + "\n" + done.stdout + done.stderr)
            lines = [l.strip() for l in (done.stderr + done.stdout).splitlines() if l.strip()]
            errors = [l for l in lines if "error" in l.lower()]
            first = (errors or lines[-1:] or [""])[0]
            raise Failure(f"{tool} exit {done.returncode}: {first[:300]} (log: {log})")


def hf_block(model, layer, x):
    """[T, D] float64: HF's own sparse block model.model.layers[layer].mlp on tokens x [T, D]
    (GptOssMLP.forward returns (hidden, router_scores))."""
    with torch.no_grad():
        out = model.model.layers[layer].mlp(torch.tensor(x, dtype=torch.float32)[None])
    if isinstance(out, tuple):
        out = out[0]
    return out[0].double().numpy()


def compare_layer(name, y, ref, tol, near=None):
    """One result line: rel-L2 / max-abs of a layer's output [T, D] against `ref`; with
    `near` ([T] bool, hf_reference's near-tie tokens), those tokens are left out and counted,
    at most check.py's MAX_NEAR_TIE of them (at least one)."""
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    problems = []
    if y.shape != ref.shape:
        return f"{name}: output {list(y.shape)} vs HF {list(ref.shape)}  FAIL (shape)", False
    keep = np.ones(ref.shape[0], dtype=bool)
    excluded = ""
    if near is not None:
        keep = ~near
        n_near = int(near.sum())
        if n_near:
            excluded = f" (excluded {n_near} of {ref.shape[0]} near-tie tokens)"
        if n_near > max(1, math.ceil(check.MAX_NEAR_TIE * ref.shape[0])):
            problems.append(f"{n_near} of {ref.shape[0]} tokens at near-ties")
    r = rel_l2(y[keep], ref[keep])
    m = float(np.abs(y[keep] - ref[keep]).max()) if keep.any() else 0.0
    if not np.isfinite(r) or r > tol:
        problems.append(f"rel_l2 {r:.2e} > {tol:.0e}")
    status = "FAIL (" + "; ".join(problems) + ")" if problems else "PASS"
    return f"{name}: output rel_l2={r:.2e} max_abs={m:.2e}{excluded}  {status}", not problems


def check_layer(case, args, work, dirs, natives, layer):
    """Sparse layer `layer` alone on LAYER_TOKENS random N(0, 1) hidden states (bf16-valued
    for the bf16 checkpoint, as its block takes them), against HF's own block
    (hf_block, run in f32 on each checkpoint as the whole model is): hf_reference.py's block
    reference, and with --mixtilec `mixtilec --hf-config CONFIG --layer L --dtype D` +
    mixtile-run. On the bf16 checkpoint Mixtile's tokens whose routing hf_reference finds
    near a tie (check.py's rule: f32 router logits of bf16 tokens) are left out and counted."""
    lines = []
    rng = np.random.default_rng(args.seed + 2)
    x = rng.standard_normal((LAYER_TOKENS, natives["f32"].config.hidden_size))
    ran = {}
    for dtype in ("f32", "bf16"):
        directory = dirs[dtype]
        config_path = os.path.join(directory, "config.json")
        inputs_path = os.path.join(work, f"layer_inputs_{dtype}.safetensors")
        safetensors_io.write_file(
            inputs_path, {"hidden_states": x}, {"hidden_states": "F32" if dtype == "f32" else "BF16"}
        )
        tokens = safetensors_io.load(inputs_path)[0]["hidden_states"]
        hf = hf_block(natives[dtype], layer, tokens)
        results, near, _ = hf_reference.compute(config_path, directory, inputs_path, layer, "f32")
        name = f"{case:<26} {dtype:<4} layer {layer} reference"
        lines.append(compare_layer(name, results["output"], hf, args.tol))
        ran[dtype] = (directory, config_path, inputs_path, hf, near)
    if not (args.mixtilec or args.mixtile_run):
        return lines
    for dtype, (directory, config_path, inputs_path, hf, near) in ran.items():
        name = f"{case:<26} {dtype:<4} layer {layer} mixtile"
        missing = [p for p in (args.mixtilec, args.mixtile_run) if not p or not os.path.exists(p)]
        if missing:
            lines.append((f"{name}: SKIP (not found: {missing})", True))
            continue
        scratch = os.path.join(work, f"mixtile_layer_{dtype}")
        os.makedirs(scratch, exist_ok=True)
        out, result = os.path.join(scratch, "compiled"), os.path.join(scratch, "output.safetensors")
        try:
            run_tools(
                args,
                [
                    [args.mixtilec, "--hf-config", config_path, "--layer", str(layer), "--dtype", dtype, "-o", out],
                    [args.mixtile_run, out, "--weights", directory, "--inputs", inputs_path, "-o", result],
                ],
                scratch,
            )
            y = safetensors_io.load(result)[0]["output"]
        except (KeyError, OSError, safetensors_io.SafetensorsError) as e:
            lines.append((f"{name}: FAIL (reading mixtile-run output: {e})", False))
            continue
        except Failure as e:
            lines.append((f"{name}: FAIL ({e})", False))
            continue
        if dtype == "f32":
            lines.append(compare_layer(name, y, hf, args.mixtile_tol))
        else:
            lines.append(compare_layer(name, y, hf, args.mixtile_tol_bf16, near))
    return lines


def write_fp8(bf16_dir, out_dir, block):
    """The bf16 checkpoint as a fine-grained fp8 one (make_model.quantize_fp8)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(bf16_dir, "config.json")) as f:
        config = json.load(f)
    tensors, dtypes = safetensors_io.load(bf16_dir)
    make_model.quantize_fp8(config, tensors, dtypes, block)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    shutil.copy(os.path.join(bf16_dir, "generation_config.json"), out_dir)
    safetensors_io.write_file(
        os.path.join(out_dir, "model.safetensors"), tensors, dtypes, metadata={"format": "pt"}
    )


def run_case(case, args, root):
    family, options, extra = CASES[case]
    work = os.path.join(root, case)
    os.makedirs(work, exist_ok=True)
    lines = []
    torch.manual_seed(args.seed)
    config = hf_config(family, options, extra, "f32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    reinitialize(model, args.seed, SELECTION_BIAS_MEAN.get(case, 0.0))
    ids, mask = make_inputs(config.vocab_size, args.seed)
    ids_path = os.path.join(work, "ids.safetensors")
    safetensors_io.write_file(ids_path, {"input_ids": ids, "attention_mask": mask})
    pick_eos(model, ids, mask, family, args.generate)
    dirs = {"f32": os.path.join(work, "f32"), "bf16": os.path.join(work, "bf16")}
    model.save_pretrained(dirs["f32"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low = AutoModelForCausalLM.from_config(model.config, dtype=torch.bfloat16)
        low.load_state_dict(model.state_dict())
        low.generation_config = model.generation_config
    low.save_pretrained(dirs["bf16"])
    skipped = []
    if case in FP8_CASES and importlib.util.find_spec("accelerate") is None:
        skipped.append((f"{case:<26} fp8: SKIP (transformers' fp8 loader needs accelerate: pip install accelerate)", True))
    elif case in FP8_CASES:
        dirs["fp8"] = os.path.join(work, "fp8")
        write_fp8(dirs["bf16"], dirs["fp8"], FP8_CASES[case])
    hf, sensitivity, natives = {}, {}, {}
    for dtype, directory in dirs.items():
        if dtype == "f32":
            native = model
        elif dtype == "fp8":
            # transformers dequantizes an fp8 checkpoint on a CPU to the parameters' dtype:
            # load it as the config says (bf16 parameters, as Mixtile's artifact), then run the
            # same values in f32, as the bf16 checkpoint is run above.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                native = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.bfloat16)
            native = native.float().eval()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                native = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        natives[dtype] = native
        hf[dtype] = hf_outputs(native, ids, mask, args.generate)
        if dtype != "f32":
            sensitivity[dtype] = router_sensitivity(native, ids, mask, hf[dtype]["logits"], seed=args.seed)
        save_hf_outputs(os.path.join(work, f"hf_{dtype}.safetensors"), hf[dtype])
        logits, sequences = run_reference(directory, ids_path, args.generate)
        lines.append(compare(f"{case:<26} {dtype:<4} reference", logits, sequences, hf[dtype], mask, args.tol))
    if not extra and case not in SELECTION_BIAS_MEAN:
        lines.append(
            check_make_model(case, family, options, work, ids_path, ids, mask, args.generate, args.tol, args.seed)
        )
    if args.mixtilec or args.mixtile_run:
        for dtype, directory in dirs.items():
            name = f"{case:<26} {dtype:<4} mixtile"
            missing = [p for p in (args.mixtilec, args.mixtile_run) if not p or not os.path.exists(p)]
            if missing:
                lines.append((f"{name}: SKIP (not found: {missing})", True))
                continue
            scratch = os.path.join(work, f"mixtile_{dtype}")
            os.makedirs(scratch, exist_ok=True)
            try:
                logits, sequences = run_mixtile(args, directory, ids_path, scratch, args.generate)
            except Failure as e:
                lines.append((f"{name}: FAIL ({e})", False))
                continue
            tol = args.mixtile_tol if dtype == "f32" else args.mixtile_tol_bf16
            lines.append(
                compare(
                    name, logits, sequences, hf[dtype], mask, tol, eos_ids(directory), args.tie_allowance,
                    sensitivity.get(dtype),
                )
            )
    if case in LAYER_CASES:
        lines += check_layer(case, args, work, dirs, natives, LAYER_CASES[case])
    return lines + skipped


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--families", nargs="+", choices=make_model.FAMILIES, default=list(make_model.FAMILIES))
    p.add_argument("--cases", nargs="+", choices=sorted(CASES), help="exact cases (overrides --families)")
    p.add_argument("--no-variants", action="store_true", help="only the plain case of each family")
    p.add_argument("--save", metavar="DIR", help="keep every model, ids and HF output under DIR/<case>/")
    p.add_argument("--mixtilec", help="path of mixtilec")
    p.add_argument("--mixtile-run", help="path of mixtile-run")
    p.add_argument("--generate", type=int, default=8, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-5, help="reference vs HF f32 logits rel-L2")
    p.add_argument("--mixtile-tol", type=float, default=1e-4, help="mixtile vs HF, f32 checkpoint")
    p.add_argument("--mixtile-tol-bf16", type=float, default=1e-2, help="mixtile vs HF, bf16 checkpoint")
    p.add_argument("--mixtile-timeout", type=float, default=600.0)
    p.add_argument(
        "--tie-allowance",
        type=float,
        default=4.0,
        help="mixtile may part from HF's greedy tokens where HF's top-2 margin <= this x its max-abs logits error",
    )
    args = p.parse_args(argv)
    if args.cases:
        cases = args.cases
    else:
        cases = [
            c
            for c, (family, _, _) in CASES.items()
            if family in args.families and (c == family or not args.no_variants)
        ]
    torch.set_num_threads(min(8, os.cpu_count() or 1))
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    failures = 0
    with contextlib.ExitStack() as stack:
        root = args.save or stack.enter_context(tempfile.TemporaryDirectory())
        for case in cases:
            try:
                lines = run_case(case, args, root)
            except Exception as e:  # a crash in one case must not hide the others
                lines = [(f"{case:<26} FAIL ({type(e).__name__}: {e})", False)]
            for line, ok in lines:
                print(line, flush=True)
                failures += not ok
    print(f"hf_model_parity: {'FAILED ' + str(failures) if failures else 'all passed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
