#!/usr/bin/python3
"""Writes a tiny random WHOLE decoder-only MoE model as transformers 5.24's save_pretrained
writes it: OUTDIR/config.json (every key 5.24 writes for that family, in its spelling:
`dtype`, `rope_parameters`, ...), OUTDIR/generation_config.json, and OUTDIR/model.safetensors
(or shards + model.safetensors.index.json) under the tensor names 5.24 saves. Numpy only.

5.24 keeps fused experts in memory (`experts.gate_up_proj` [E, 2F, D]) but save_pretrained
converts them back to the per-expert names every hub checkpoint uses, so this writes those:
mixtral, minimax_m2  model.layers.L.block_sparse_moe.experts.E.{w1,w2,w3}.weight,
                    ...block_sparse_moe.gate.weight (minimax_m2: ...block_sparse_moe.e_score_correction_bias)
gpt_oss             fused, as 5.24 holds them (no per-expert names exist for it):
                    model.layers.L.mlp.experts.{gate_up_proj [E, D, 2F], gate_up_proj_bias [E, 2F],
                    down_proj [E, F, D], down_proj_bias [E, D]}, ...mlp.router.{weight, bias}
others              model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight, ...mlp.gate.weight
                    (ernie4_5_moe: ...mlp.moe_statics.e_score_correction_bias [1, E] f32, which
                    5.24 holds as mlp.gate.moe_statics.e_score_correction_bias and renames back)
(checked against bench/hf_model_parity.py, which saves real transformers models).

Families: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, glm4_moe, dots1,
glm4_moe_lite, minimax_m2, ernie4_5_moe, gpt_oss, solar_open.
Sizes: hidden 64, 4 heads, 2 kv heads (MLA: 4, as real DeepSeek configs), head_dim 16
(qwen3_moe, glm4_moe, minimax_m2 and solar_open: 32), 8 experts top-2 of width 32, dense MLP width 96,
vocab 256, 2 layers. glm4_moe: partial_rotary_factor 0.5, q/k/v biases, 4 groups keep 2,
scale 2.5, one shared expert, layer 0 dense (--qk-norm: use_qk_norm); dots1: q/k/v/o biases
and q/k norms, no group limit, top-k weights not normalized, scale 2.0, 2 shared experts,
every layer sparse (--sliding-window W: layers 1, 2, ... slide); glm4_moe_lite: DeepSeek-V3's
MLA (q_lora_rank 48) and router, 4 groups keep 2, scale 1.8, one shared expert, layer 0 dense
(mlp_layer_types); minimax_m2: full-width q/k norms, rotary_dim 16 of head_dim 32, theta 5e6,
sigmoid top-2 with a selection bias, every layer sparse; ernie4_5_moe: 3 layers by default,
layer 0 dense (moe_layer_start_index 1), interleaved RoPE with theta 5e5, softmax top-2 with a
selection bias, 2 shared experts, tied embeddings unless --no-tie; gpt_oss: head_dim 32,
q/k/v/o biases, attention sinks, layer_types sliding/full alternating with sliding_window 4
(--sliding-window W), its own yarn by default (factor 32 over 4096 positions, truncate false,
theta 1.5e5), every layer sparse: router with a bias, experts with biases and the clamped
SwiGLU (swiglu_limit 7, swiglu_alpha 1.702); solar_open: Llama's attention (whole-head RoPE
at theta 1e6, no biases: attention_bias false as Solar-Open-100B), GLM-4.5's router with 4
groups keep 2, scale 1.0, one shared expert, every layer sparse (--attention-bias: q/k/v biases).
Weights ~ N(0, 0.02) like HF's init, routers ~ N(0, 1) (no routing near-ties), norm weights
1 + 0.1·N(0, 1), biases (qkv, e_score_correction_bias) small and nonzero so they matter.
gpt_oss: gate_up_proj ~ N(0, (5/sqrt(D))²), so on RMS-normed tokens its pre-activations have a
std of ~5: ~8% of the gates pass +swiglu_limit and ~16% of the ups ±swiglu_limit (the clamp
matters); router and gate/up biases and sinks O(1), the experts' output side (down_proj and
its bias) scaled by GPT_OSS_OUTPUT_SCALE. No --fp8 for gpt_oss (--mxfp4: its hub form).
Usage: make_model.py OUTDIR --family F [--dtype f32|bf16] [--layers N] [--seed S] [--vocab V]
       [--fp8 ROWS,COLS [--fp8-scales f32|bf16]] [--qk-norm] [--attention-bias]
       [--sliding-window W] [--rope default|linear|llama3|yarn] [--tie|--no-tie] [--sharded]
       (--rope: default for every family but gpt_oss, whose default is its own yarn)
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402
import model_reference  # noqa: E402
import safetensors_io  # noqa: E402

# The families and which of them use latent attention: the whole-model reference's lists.
FAMILIES = model_reference.FAMILIES
MLA_FAMILIES = model_reference.MLA_FAMILIES
TRANSFORMERS_VERSION = "5.24.0"
ARCHITECTURES = {
    "mixtral": "MixtralForCausalLM",
    "qwen2_moe": "Qwen2MoeForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "olmoe": "OlmoeForCausalLM",
    "deepseek_v2": "DeepseekV2ForCausalLM",
    "deepseek_v3": "DeepseekV3ForCausalLM",
    "glm4_moe": "Glm4MoeForCausalLM",
    "dots1": "Dots1ForCausalLM",
    "glm4_moe_lite": "Glm4MoeLiteForCausalLM",
    "minimax_m2": "MiniMaxM2ForCausalLM",
    "ernie4_5_moe": "Ernie4_5_MoeForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
    "solar_open": "SolarOpenForCausalLM",
}
# The families whose router weight and e_score_correction_bias stay f32 in a bf16 checkpoint
# (_keep_in_fp32_modules_strict = ["e_score_correction_bias", "gate.weight"]); MiniMax-M2's
# router and selection bias are in the checkpoint's dtype.
F32_ROUTER_FAMILIES = (
    "deepseek_v2",
    "deepseek_v3",
    "glm4_moe",
    "dots1",
    "glm4_moe_lite",
    "ernie4_5_moe",
    "solar_open",
)
# The config classes' default_theta (MixtralConfig, MiniMaxM2Config, Ernie4_5_MoeConfig,
# GptOssConfig, SolarOpenConfig); every other family 1e4.
DEFAULT_THETA = {
    "mixtral": 1e6,
    "minimax_m2": 5e6,
    "ernie4_5_moe": 5e5,
    "gpt_oss": 150000.0,
    "solar_open": 1e6,
}
# Per-family defaults of --rope and --sliding-window: GPT-OSS always runs its yarn and
# alternates sliding and full layers (a window of 4 slides within the tests' prompts; the real
# models' is 128).
DEFAULT_ROPE = {"gpt_oss": "yarn"}
DEFAULT_SLIDING_WINDOW = {"gpt_oss": 4}
# GPT-OSS: heads * head_dim (128) differs from hidden (64), as in the real models.
GPT_OSS_HEAD_DIM = 32
# GptOssConfig's clamped-SwiGLU defaults; gate_up_proj's std is this over sqrt(hidden), so its
# pre-activations (on RMS-normed tokens) have a std of ~5 and some pass ±7.
GPT_OSS_SWIGLU_ALPHA, GPT_OSS_SWIGLU_LIMIT, GPT_OSS_GATE_UP_SCALE = 1.702, 7.0, 5.0
# The clamped activations of those draws have an rms of ~13: with down_proj at WEIGHT_STD and
# its bias at 0.5, each block would add ~1.5 to a residual stream of ~0.03, the logits would be
# almost only the routing weights' mix of expert outputs and bf16 arithmetic (transformers'
# own included) would miss f32 by 1e-2..8e-2. down_proj and down_proj_bias are scaled by this
# together: each block adds ~1e-3..3e-3, as the other families' do (bench/hf_model_parity.py
# draws the same).
GPT_OSS_OUTPUT_SCALE = 1 / 500
# Per-family defaults of --layers and --tie (ERNIE-4.5: one dense layer, then two sparse ones
# so that a sparse layer follows another; Ernie4_5_MoeConfig ties by default).
DEFAULT_LAYERS = {"ernie4_5_moe": 3}
DEFAULT_TIE = {"ernie4_5_moe": True}
# MiniMax-M2 rotates rotary_dim of each head (its hub configs' field; 5.24 also saves
# rotary_dim / head_dim as rope_parameters' partial_rotary_factor).
MINIMAX_HEAD_DIM, MINIMAX_ROTARY_DIM = 32, 16
HIDDEN, HEADS, KV_HEADS, EXPERTS, TOP_K, EXPERT_WIDTH, DENSE_WIDTH = 64, 4, 2, 8, 2, 32, 96
ROUTER_STD, WEIGHT_STD = 1.0, 0.02
# olmoe's clip_qkv: q and k come out of their RMSNorm with RMS ~1, so 0.5 clips most of
# them (and the occasional large v); the selftest checks that something is clipped.
OLMOE_CLIP_QKV = 0.5


def rope_parameters(family, rope, max_positions):
    """rope_parameters as 5.24 saves them (its standardization adds rope_theta/rope_type)."""
    params = _rope_kind(family, rope, max_positions, DEFAULT_THETA.get(family, 10000.0))
    if family == "glm4_moe":
        # GLM rotates half of each head; 5.24 saves the factor inside rope_parameters.
        params = dict(sorted({**params, "partial_rotary_factor": 0.5}.items()))
    if family == "minimax_m2":
        factor = MINIMAX_ROTARY_DIM / MINIMAX_HEAD_DIM
        params = dict(sorted({**params, "partial_rotary_factor": factor}.items()))
    return params


def _rope_kind(family, rope, max_positions, theta):
    if rope == "default":
        return {"rope_theta": theta, "rope_type": "default"}
    if rope == "linear":
        return {"factor": 2.0, "rope_theta": theta, "rope_type": "linear"}
    if rope == "llama3":
        # original 64 puts head_dim 16's wavelengths in all three llama3 bands.
        return {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 64,
            "rope_theta": theta,
            "rope_type": "llama3",
        }
    if rope == "yarn" and family == "gpt_oss":
        # GptOssConfig's own default (__post_init__), rope_theta added by the standardization.
        return {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_theta": theta,
            "rope_type": "yarn",
            "truncate": False,
        }
    if rope == "yarn":
        params = {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 4.0,
            "original_max_position_embeddings": max_positions // 4,
            "rope_theta": theta,
            "rope_type": "yarn",
        }
        if family in MLA_FAMILIES:
            # mscale != mscale_all_dim: both the cos/sin attention factor and DeepSeek's
            # softmax-scale correction differ from 1.
            params.update(mscale=1.0, mscale_all_dim=0.8)
        return params
    raise ValueError(f"unknown rope type '{rope}'")


def make_config(
    family,
    dtype="bf16",
    layers=None,
    vocab=256,
    sliding_window=None,
    rope=None,
    tie=None,
    qk_norm=False,
    attention_bias=False,
):
    """config.json exactly as transformers 5.24 writes it for these sizes (sorted keys).
    layers, tie, rope and (gpt_oss) sliding_window None: the family's default (DEFAULT_LAYERS,
    else 2; DEFAULT_TIE, else no; DEFAULT_ROPE, else default; DEFAULT_SLIDING_WINDOW)."""
    if layers is None:
        layers = DEFAULT_LAYERS.get(family, 2)
    if tie is None:
        tie = DEFAULT_TIE.get(family, False)
    if rope is None:
        rope = DEFAULT_ROPE.get(family, "default")
    if sliding_window is not None and family not in ("mixtral", "qwen2_moe", "dots1", "gpt_oss"):
        raise ValueError("--sliding-window is for mixtral, qwen2_moe, dots1 and gpt_oss")
    if sliding_window is None:
        sliding_window = DEFAULT_SLIDING_WINDOW.get(family)
    if attention_bias and family != "solar_open":
        raise ValueError("--attention-bias is for solar_open (the other families' defaults hold)")
    if qk_norm and family != "glm4_moe":
        raise ValueError("--qk-norm is for glm4_moe (qwen3_moe and dots1 always normalize q/k)")
    torch_dtype = {"bf16": "bfloat16", "f32": "float32"}[dtype]
    common = {
        "architectures": [ARCHITECTURES[family]],
        "attention_dropout": 0.0,
        "dtype": torch_dtype,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "model_type": family,
        "num_attention_heads": HEADS,
        "num_hidden_layers": layers,
        "output_router_logits": False,
        "tie_word_embeddings": bool(tie),
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": vocab,
    }
    max_positions = {"deepseek_v2": 2048}.get(family, 4096)
    common["max_position_embeddings"] = max_positions
    common["rope_parameters"] = rope_parameters(family, rope, max_positions)
    dense = [0] if layers >= 2 else []
    if family == "mixtral":
        config = {
            "bos_token_id": 1,
            "eos_token_id": 2,
            # transformers' yarn reads config.head_dim and fails on null: spell it out then.
            "head_dim": HIDDEN // HEADS if rope == "yarn" else None,
            "intermediate_size": EXPERT_WIDTH,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "num_local_experts": EXPERTS,
            "pad_token_id": None,
            "rms_norm_eps": 1e-05,
            "router_aux_loss_coef": 0.001,
            "router_jitter_noise": 0.0,
            "sliding_window": sliding_window,
        }
    elif family == "qwen2_moe":
        use_sliding = sliding_window is not None
        max_window_layers = 28
        config = {
            "bos_token_id": 1,
            "decoder_sparse_step": 1,
            "eos_token_id": 2,
            "intermediate_size": DENSE_WIDTH,
            # Qwen2MoeConfig.__post_init__: layers 0, 2, 4, ... below max_window_layers slide.
            "layer_types": [
                "sliding_attention"
                if (i + 1) % 2 and i < max_window_layers and use_sliding
                else "full_attention"
                for i in range(layers)
            ],
            "max_window_layers": max_window_layers,
            "mlp_only_layers": dense,
            "moe_intermediate_size": EXPERT_WIDTH,
            "norm_topk_prob": False,
            "num_experts": EXPERTS,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "pad_token_id": None,
            "qkv_bias": True,
            "rms_norm_eps": 1e-06,
            "router_aux_loss_coef": 0.001,
            "shared_expert_intermediate_size": 48,
            # 5.24 stores 0, not null, when use_sliding_window is false.
            "sliding_window": sliding_window if use_sliding else 0,
            "use_sliding_window": use_sliding,
        }
    elif family == "qwen3_moe":
        config = {
            "attention_bias": False,
            "bos_token_id": 1,
            "decoder_sparse_step": 1,
            "eos_token_id": [2, 3],
            "head_dim": 32,
            "intermediate_size": DENSE_WIDTH,
            # The last layer dense (qwen2_moe makes the first one dense).
            "mlp_only_layers": [layers - 1] if layers >= 2 else [],
            "moe_intermediate_size": EXPERT_WIDTH,
            "norm_topk_prob": True,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            # 5.24 saves Qwen3-MoE's expert count as num_local_experts (attribute_map).
            "num_local_experts": EXPERTS,
            "pad_token_id": None,
            "rms_norm_eps": 1e-06,
            "router_aux_loss_coef": 0.001,
            "sliding_window": None,
            "use_sliding_window": False,
        }
    elif family == "olmoe":
        config = {
            "attention_bias": False,
            "bos_token_id": None,
            "clip_qkv": OLMOE_CLIP_QKV,
            "eos_token_id": 2,
            "intermediate_size": EXPERT_WIDTH,
            "norm_topk_prob": False,
            "num_experts": EXPERTS,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "pad_token_id": 1,
            "rms_norm_eps": 1e-05,
            "router_aux_loss_coef": 0.01,
        }
    elif family in ("deepseek_v2", "deepseek_v3"):
        v3 = family == "deepseek_v3"
        config = {
            "attention_bias": False,
            "bos_token_id": 0 if v3 else 1,
            "eos_token_id": 1 if v3 else 2,
            "first_k_dense_replace": 1,
            "head_dim": 8,  # 5.x sets head_dim = qk_rope_head_dim
            "intermediate_size": DENSE_WIDTH,
            "kv_lora_rank": 32,
            "moe_intermediate_size": EXPERT_WIDTH,
            "n_group": 4 if v3 else None,
            "n_routed_experts": EXPERTS,
            "n_shared_experts": 1 if v3 else 2,
            "norm_topk_prob": v3,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": HEADS,
            "pad_token_id": None,
            "pretraining_tp": 1,
            "q_lora_rank": 48 if v3 else None,
            "qk_head_dim": 24,
            "qk_nope_head_dim": 16,
            "qk_rope_head_dim": 8,
            "rms_norm_eps": 1e-06,
            "routed_scaling_factor": 2.5 if v3 else 1.0,
            "topk_group": 2 if v3 else None,
            "v_head_dim": 16,
        }
        if v3:
            # 5.x's DeepSeek-V3 config has no scoring_func/topk_method (always sigmoid/noaux_tc).
            config.update(num_nextn_predict_layers=1, rope_interleave=True)
        else:
            config.update(mlp_bias=False, topk_method="greedy")
    elif family == "glm4_moe":
        # Glm4MoeConfig has no head_dim field: an explicit one (as every GLM-4.5 config has,
        # 5120 / 96 heads not being whole) is saved as an extra key.
        config = {
            "attention_bias": True,
            "bos_token_id": None,
            "eos_token_id": [2, 3],
            "first_k_dense_replace": 1,
            "head_dim": 32,
            "intermediate_size": DENSE_WIDTH,
            "moe_intermediate_size": EXPERT_WIDTH,
            "n_group": 4,
            "n_routed_experts": EXPERTS,
            "n_shared_experts": 1,
            "norm_topk_prob": True,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            # Saved under this name (Glm4MoeConfig's num_mtp_layers is an attribute_map alias).
            "num_nextn_predict_layers": 1,
            "pad_token_id": 1,
            "rms_norm_eps": 1e-05,
            "routed_scaling_factor": 2.5,
            "topk_group": 2,
            "use_qk_norm": bool(qk_norm),
        }
    elif family == "dots1":
        # Dots1Config.__post_init__: layers at or above max_window_layers slide when
        # sliding_window is set; 5.24 saves the derived layer_types.
        max_window_layers = 1
        config = {
            "attention_bias": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "first_k_dense_replace": 0,
            "intermediate_size": DENSE_WIDTH,
            "layer_types": [
                "sliding_attention"
                if sliding_window is not None and i >= max_window_layers
                else "full_attention"
                for i in range(layers)
            ],
            "max_window_layers": max_window_layers,
            "moe_intermediate_size": EXPERT_WIDTH,
            "n_group": 1,
            "n_routed_experts": EXPERTS,
            "n_shared_experts": 2,
            "norm_topk_prob": False,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "pad_token_id": None,
            "rms_norm_eps": 1e-06,
            "routed_scaling_factor": 2.0,
            "sliding_window": sliding_window,
            "topk_group": 1,
        }
    elif family == "glm4_moe_lite":
        # DeepSeek-V3's sizes. Glm4MoeLiteConfig has no head_dim (an attribute_map alias of
        # qk_rope_head_dim) and no first_k_dense_replace: mlp_layer_types says which layers
        # are dense (its default, as here, is layer 0 only); __post_init__ saves qk_head_dim.
        config = {
            "attention_bias": False,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "intermediate_size": DENSE_WIDTH,
            "kv_lora_rank": 32,
            "mlp_layer_types": ["dense" if i in dense else "sparse" for i in range(layers)],
            "moe_intermediate_size": EXPERT_WIDTH,
            "n_group": 4,
            "n_routed_experts": EXPERTS,
            "n_shared_experts": 1,
            "norm_topk_prob": True,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": HEADS,
            "pad_token_id": None,
            "pretraining_tp": 1,
            "q_lora_rank": 48,
            "qk_head_dim": 24,
            "qk_nope_head_dim": 16,
            "qk_rope_head_dim": 8,
            "rms_norm_eps": 1e-05,
            "rope_interleave": True,
            "routed_scaling_factor": 1.8,
            "topk_group": 2,
            "v_head_dim": 16,
        }
    elif family == "minimax_m2":
        # rotary_dim is no MiniMaxM2Config field: saved as an extra key, as a hub config
        # re-saved by 5.24 has it.
        config = {
            "bos_token_id": 1,
            "eos_token_id": 2,
            "head_dim": MINIMAX_HEAD_DIM,
            "intermediate_size": EXPERT_WIDTH,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "num_local_experts": EXPERTS,
            "pad_token_id": None,
            "rms_norm_eps": 1e-06,
            "rotary_dim": MINIMAX_ROTARY_DIM,
            "router_aux_loss_coef": 0.001,
            "router_jitter_noise": 0.0,
        }
    elif family == "ernie4_5_moe":
        # Ernie4_5_MoeConfig saves the counts under moe_k / moe_num_experts (num_experts_per_tok
        # and num_experts are attribute_map aliases), resolves moe_layer_end_index -1 to the
        # last layer, and has no attention_dropout.
        config = {
            "bos_token_id": 1,
            "eos_token_id": 2,
            "intermediate_size": DENSE_WIDTH,
            "moe_intermediate_size": EXPERT_WIDTH,
            "moe_k": TOP_K,
            "moe_layer_end_index": layers - 1,
            "moe_layer_interval": 1,
            "moe_layer_start_index": len(dense),
            "moe_norm_min": 1e-12,
            "moe_num_experts": EXPERTS,
            "moe_num_shared_experts": 2,
            "num_key_value_heads": KV_HEADS,
            "pad_token_id": 0,
            "rms_norm_eps": 1e-05,
            "router_aux_loss_coef": 0.001,
            "use_bias": False,
        }
        del common["attention_dropout"]
    elif family == "gpt_oss":
        # GptOssConfig.__post_init__ derives layer_types (layers 0, 2, 4, ... slide) and
        # 5.24 saves them; swiglu_alpha/swiglu_limit are fields (the hub configs lack alpha).
        config = {
            "attention_bias": True,
            "bos_token_id": None,
            "eos_token_id": 2,
            "head_dim": GPT_OSS_HEAD_DIM,
            "intermediate_size": EXPERT_WIDTH,
            "layer_types": [
                "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(layers)
            ],
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "num_local_experts": EXPERTS,
            "pad_token_id": 1,
            "rms_norm_eps": 1e-05,
            "router_aux_loss_coef": 0.001,
            "sliding_window": sliding_window,
            "swiglu_alpha": GPT_OSS_SWIGLU_ALPHA,
            "swiglu_limit": GPT_OSS_SWIGLU_LIMIT,
        }
    elif family == "solar_open":
        # SolarOpenConfig: Glm4MoeConfig's fields less intermediate_size, first_k_dense_replace,
        # use_qk_norm and the MTP layers; head_dim is a field (default 128).
        config = {
            "attention_bias": bool(attention_bias),
            "bos_token_id": None,
            "eos_token_id": 2,
            "head_dim": 32,
            "moe_intermediate_size": EXPERT_WIDTH,
            "n_group": 4,
            "n_routed_experts": EXPERTS,
            "n_shared_experts": 1,
            "norm_topk_prob": True,
            "num_experts_per_tok": TOP_K,
            "num_key_value_heads": KV_HEADS,
            "pad_token_id": 1,
            "rms_norm_eps": 1e-05,
            "routed_scaling_factor": 1.0,
            "topk_group": 2,
        }
    else:
        raise ValueError(f"unknown family '{family}'")
    config.update(common)
    return dict(sorted(config.items()))


def generation_config(config):
    """generation_config.json as save_pretrained derives it from the model config."""
    out = {"_from_model_config": True}
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if config.get(key) is not None:
            out[key] = config[key]
    out.update(
        output_attentions=False,
        output_hidden_states=False,
        transformers_version=TRANSFORMERS_VERSION,
        use_cache=True,
    )
    return out


def tensor_shapes(config):
    """[(name, shape, kind)] for every tensor 5.24 saves, kind in weight/norm/router/bias/
    selection_bias/shared_gate, and gpt_oss's router_bias/sink/gate_up/expert_bias. The
    sparse blocks' names come from hf_reference.block_spec."""
    family = config["model_type"]
    hidden, heads, vocab = config["hidden_size"], config["num_attention_heads"], config["vocab_size"]
    kv_heads = config.get("num_key_value_heads") or heads
    out = [("model.embed_tokens.weight", (vocab, hidden), "weight")]
    sparse = set(hf_reference.sparse_layers(config))
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        out.append((p + "input_layernorm.weight", (hidden,), "norm"))
        out.append((p + "post_attention_layernorm.weight", (hidden,), "norm"))
        a = p + "self_attn."
        if family in MLA_FAMILIES:
            nope, rope, v = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
            rank, q_rank = config["kv_lora_rank"], config.get("q_lora_rank")
            bias = bool(config.get("attention_bias"))  # q_a_proj, kv_a_proj_with_mqa, o_proj
            if q_rank is None:
                out.append((a + "q_proj.weight", (heads * (nope + rope), hidden), "weight"))
            else:
                out.append((a + "q_a_proj.weight", (q_rank, hidden), "weight"))
                if bias:
                    out.append((a + "q_a_proj.bias", (q_rank,), "bias"))
                out.append((a + "q_a_layernorm.weight", (q_rank,), "norm"))
                out.append((a + "q_b_proj.weight", (heads * (nope + rope), q_rank), "weight"))
            out.append((a + "kv_a_proj_with_mqa.weight", (rank + rope, hidden), "weight"))
            if bias:
                out.append((a + "kv_a_proj_with_mqa.bias", (rank + rope,), "bias"))
            out.append((a + "kv_a_layernorm.weight", (rank,), "norm"))
            out.append((a + "kv_b_proj.weight", (heads * (nope + v), rank), "weight"))
            out.append((a + "o_proj.weight", (hidden, heads * v), "weight"))
            if bias:
                out.append((a + "o_proj.bias", (hidden,), "bias"))
        else:
            head_dim = config.get("head_dim") or hidden // heads
            q, kv = heads * head_dim, kv_heads * head_dim
            gpt_oss_bias = family == "gpt_oss" and config.get("attention_bias", True)
            qkv_bias = (
                (family == "qwen2_moe" and config.get("qkv_bias", True))
                or (family in ("glm4_moe", "dots1", "solar_open") and config.get("attention_bias", False))
                or gpt_oss_bias
            )
            for proj, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
                out.append((a + proj + ".weight", (rows, hidden), "weight"))
                if qkv_bias:
                    out.append((a + proj + ".bias", (rows,), "bias"))
            out.append((a + "o_proj.weight", (hidden, q), "weight"))
            # GLM's and Solar-Open's o_proj have none.
            if (family == "dots1" and config.get("attention_bias", False)) or gpt_oss_bias:
                out.append((a + "o_proj.bias", (hidden,), "bias"))
            if family == "gpt_oss":
                out.append((a + "sinks", (heads,), "sink"))
            if family in ("qwen3_moe", "dots1") or (family == "glm4_moe" and config.get("use_qk_norm")):
                out.append((a + "q_norm.weight", (head_dim,), "norm"))
                out.append((a + "k_norm.weight", (head_dim,), "norm"))
            if family in ("olmoe", "minimax_m2"):  # over all heads at once
                out.append((a + "q_norm.weight", (q,), "norm"))
                out.append((a + "k_norm.weight", (kv,), "norm"))
        if layer in sparse:
            spec = hf_reference.block_spec(config, layer)
            for role, names in spec["tensors"].items():
                kind = {
                    "router": "router",
                    "selection_bias": "selection_bias",
                    "shared_expert_gate": "shared_gate",
                    "router_bias": "router_bias",  # GPT-OSS's fused experts and their biases
                    "gate_up_proj": "gate_up",
                    "gate_up_proj_bias": "expert_bias",
                    "down_proj": "expert_down",
                    "down_proj_bias": "expert_down_bias",
                }.get(role, "weight")
                for name in names if isinstance(names, list) else [names]:
                    out.append((name, spec["shapes"][role], kind))
        else:
            width = config["intermediate_size"]
            m = p + "mlp."
            out.append((m + "gate_proj.weight", (width, hidden), "weight"))
            out.append((m + "up_proj.weight", (width, hidden), "weight"))
            out.append((m + "down_proj.weight", (hidden, width), "weight"))
    out.append(("model.norm.weight", (hidden,), "norm"))
    if not config.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", (vocab, hidden), "weight"))
    return out


def make_tensors(config, dtype, rng, narrow_router=False):
    """Random tensors and their safetensors dtypes. DeepSeek, GLM (and GLM-4.7-Flash), dots1
    and ERNIE-4.5 keep the router weight and e_score_correction_bias in f32 even in a bf16
    checkpoint (_keep_in_fp32_modules_strict); narrow_router stores the router in the
    checkpoint's dtype, as DeepSeek's own hub checkpoints do (transformers widens it on load).
    MiniMax-M2 keeps both in the checkpoint's dtype."""
    storage = "BF16" if dtype == "bf16" else "F32"
    tensors, dtypes = {}, {}
    for name, shape, kind in tensor_shapes(config):
        z = rng.standard_normal(shape)
        if kind == "norm":
            value = 1.0 + 0.1 * z
        elif kind == "router":
            value = ROUTER_STD * z
        elif kind == "bias":
            value = WEIGHT_STD * z
        elif kind == "selection_bias":
            value = 0.05 * z
        elif kind == "shared_gate":
            value = 0.1 * z  # sigmoid gate logits ~ N(0, 0.8²): neither 0 nor 1
        elif kind in ("router_bias", "sink"):
            value = z  # O(1): moves some routing choices; a sink takes a real share
        elif kind == "gate_up":
            value = GPT_OSS_GATE_UP_SCALE / np.sqrt(shape[1]) * z  # [E, D, 2F]: fan-in D
        elif kind == "expert_bias":
            value = 0.5 * z
        elif kind == "expert_down":  # the experts' output side, scaled (GPT_OSS_OUTPUT_SCALE)
            value = GPT_OSS_OUTPUT_SCALE * WEIGHT_STD * z
        elif kind == "expert_down_bias":
            value = GPT_OSS_OUTPUT_SCALE * 0.5 * z
        else:
            value = WEIGHT_STD * z
        tensors[name] = value.astype(np.float32)
        keep_f32 = config["model_type"] in F32_ROUTER_FAMILIES and (
            kind == "selection_bias" or (kind == "router" and not narrow_router)
        )
        dtypes[name] = "F32" if keep_f32 else storage
    return tensors, dtypes


def quantize_fp8(config, tensors, dtypes, block, scale_dtype="F32"):
    """Stores the decoder layers' projections (attention, experts, shared experts, dense
    MLPs; not the routers, embeddings or lm head) as a fine-grained fp8 checkpoint does:
    e4m3 codes of w / scale and a `<name>_scale_inv` (scale_dtype F32, as DeepSeek's, or BF16,
    as Qwen's) per block of block[0] x block[1], scale = the block's largest magnitude / 448.
    The first of them also holds every finite e4m3 code once (its first 254 elements),
    subnormals and -0 included."""
    rows, cols = block
    projections = [
        n
        for n, t in tensors.items()
        if n.startswith("model.layers.")
        and t.ndim == 2
        and not n.endswith(".gate.weight")  # routers stay as they are
        and "shared_expert_gate" not in n
    ]
    for name in projections:
        w = tensors[name].astype(np.float64)
        grid = (-(-w.shape[0] // rows), -(-w.shape[1] // cols))
        scale = np.empty(grid, dtype=np.float32)
        for i in range(grid[0]):
            for j in range(grid[1]):
                part = w[i * rows : (i + 1) * rows, j * cols : (j + 1) * cols]
                scale[i, j] = max(np.abs(part).max(), 1e-12) / 448.0
        if scale_dtype == "BF16":  # Qwen's FP8 releases store the scales in bf16
            scale = safetensors_io.round_to_dtype(scale, "BF16").astype(np.float32)
        codes = safetensors_io.f32_to_e4m3_bits(w / hf_reference.block_scales(scale, block, w.shape))
        if name == projections[0]:  # every finite code once (subnormals, -0), so decoding is checked
            finite = safetensors_io.E4M3_FINITE_CODES
            codes.reshape(-1)[: finite.size] = finite[: codes.size]
        tensors[name] = codes
        dtypes[name] = "F8_E4M3"
        tensors[name + "_scale_inv"], dtypes[name + "_scale_inv"] = scale, scale_dtype
    config["quantization_config"] = {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [rows, cols],
    }


def quantize_mxfp4(config, tensors, dtypes):
    """Stores gpt-oss's experts as its hub checkpoints do (quantization_config quant_method
    "mxfp4"): for each in-major `experts.gate_up_proj` [E, D, 2F] and `experts.down_proj`
    [E, F, D] (logical [E, K, N]), `<name>_blocks` [E, N, K/32, 16] U8 (two e2m1 codes a byte,
    the even element in the low nibble) and `<name>_scales` [E, N, K/32] U8 (e8m0: 127 + the
    power of two each group of 32 values is divided by, the smallest putting its largest
    magnitude within 6), codes rounded to the nearest e2m1 value (ties to the even code)."""
    grid = hf_reference.FP4_VALUES[:8]  # 0, 0.5 .. 6
    for name in [n for n in tensors if n.endswith((".experts.gate_up_proj", ".experts.down_proj"))]:
        w = np.swapaxes(np.asarray(tensors[name], np.float64), -1, -2)  # [E, N, K]
        if w.shape[-1] % 32:
            raise ValueError(f"{name}: MXFP4 needs the input width to be a multiple of 32")
        groups = w.reshape(*w.shape[:-1], w.shape[-1] // 32, 32)
        top = np.abs(groups).max(axis=-1)
        exponent = np.where(top > 0, np.ceil(np.log2(np.maximum(top, 1e-300) / 6.0)), 0).astype(np.int64)
        exponent = np.clip(exponent, -127, 127)
        scaled = groups / np.ldexp(1.0, exponent)[..., None]
        index = np.abs(np.abs(scaled)[..., None] - grid).argmin(axis=-1)  # first = even on ties
        codes = (index | np.where(scaled < 0, 8, 0)).astype(np.uint8)
        packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
        del tensors[name], dtypes[name]
        tensors[name + "_blocks"], dtypes[name + "_blocks"] = packed, "U8"
        tensors[name + "_scales"], dtypes[name + "_scales"] = (exponent + 127).astype(np.uint8), "U8"
    config["quantization_config"] = {
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"],
        "quant_method": "mxfp4",
    }


def write_model(
    out_dir,
    family,
    dtype="bf16",
    layers=None,
    seed=0,
    vocab=256,
    sliding_window=None,
    rope=None,
    tie=None,
    sharded=False,
    narrow_router=False,
    fp8_block=None,
    fp8_scales="F32",
    qk_norm=False,
    mxfp4=False,
    attention_bias=False,
):
    if mxfp4 and family != "gpt_oss":
        raise ValueError("--mxfp4 is for gpt_oss")
    if fp8_block and family == "gpt_oss":
        # Its hub checkpoints quantize the experts as MXFP4, which the references refuse.
        raise ValueError("--fp8 is not for gpt_oss")
    config = make_config(family, dtype, layers, vocab, sliding_window, rope, tie, qk_norm, attention_bias)
    tensors, dtypes = make_tensors(config, dtype, np.random.default_rng(seed), narrow_router)
    if fp8_block:
        quantize_fp8(config, tensors, dtypes, fp8_block, fp8_scales)
    if mxfp4:
        quantize_mxfp4(config, tensors, dtypes)
    os.makedirs(out_dir, exist_ok=True)
    for name, value in (("config.json", config), ("generation_config.json", generation_config(config))):
        with open(os.path.join(out_dir, name), "w") as f:
            json.dump(value, f, indent=2)
            f.write("\n")
    if sharded:
        total = sum(t.size * safetensors_io.STORAGE[dtypes[n]].itemsize for n, t in tensors.items())
        safetensors_io.write_sharded(out_dir, tensors, dtypes, max_shard_bytes=total // 3 + 1)
    else:
        safetensors_io.write_file(
            os.path.join(out_dir, "model.safetensors"), tensors, dtypes, metadata={"format": "pt"}
        )
    return config


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir")
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument("--dtype", choices=("f32", "bf16"), default="bf16")
    p.add_argument("--layers", type=int, help="default 2 (ernie4_5_moe: 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument(
        "--sliding-window",
        type=int,
        help="mixtral: every layer; qwen2_moe: use_sliding_window, layers 0, 2, ... slide; "
        "dots1: layers 1, 2, ... slide (max_window_layers 1); gpt_oss: layers 0, 2, ... slide "
        "(default 4)",
    )
    p.add_argument("--qk-norm", action="store_true", help="glm4_moe: use_qk_norm (per-head q/k RMSNorm)")
    p.add_argument(
        "--attention-bias", action="store_true", help="solar_open: attention_bias (q/k/v biases, none on o_proj)"
    )
    p.add_argument(
        "--rope",
        choices=("default", "linear", "llama3", "yarn"),
        help="default: default RoPE (gpt_oss: its own yarn, truncate false)",
    )
    p.add_argument(
        "--tie",
        action=argparse.BooleanOptionalAction,
        help="tie_word_embeddings (no lm_head.weight); default: the family's (ernie4_5_moe ties)",
    )
    p.add_argument("--sharded", action="store_true", help="3 shards + model.safetensors.index.json")
    p.add_argument(
        "--narrow-router",
        action="store_true",
        help="deepseek, glm4_moe, dots1, glm4_moe_lite, ernie4_5_moe, solar_open: the router in the "
        "checkpoint's dtype (as DeepSeek's hub checkpoints), not f32",
    )
    p.add_argument(
        "--fp8",
        metavar="ROWS,COLS",
        help="a fine-grained fp8 checkpoint: the layers' projections as e4m3 with one f32 "
        "scale per ROWS x COLS block (quantization_config as DeepSeek-V3's)",
    )
    p.add_argument(
        "--fp8-scales", choices=("f32", "bf16"), default="f32", help="with --fp8: the scales' dtype"
    )
    p.add_argument("--mxfp4", action="store_true",
                   help="gpt_oss: the experts as MXFP4 blocks and scales, as its hub checkpoints")
    args = p.parse_args(argv)
    if (args.layers is not None and args.layers < 1) or args.vocab < 4:
        p.error("need --layers >= 1 and --vocab >= 4")
    fp8_block = None
    if args.fp8:
        try:
            fp8_block = [int(v) for v in args.fp8.split(",")]
        except ValueError:
            fp8_block = []
        if len(fp8_block) != 2 or min(fp8_block) < 1:
            p.error("--fp8 takes two positive integers ROWS,COLS")
    try:
        config = write_model(
            args.out_dir,
            args.family,
            args.dtype,
            args.layers,
            args.seed,
            args.vocab,
            args.sliding_window,
            args.rope,
            args.tie,
            args.sharded,
            args.narrow_router,
            fp8_block,
            args.fp8_scales.upper(),
            args.qk_norm,
            args.mxfp4,
            args.attention_bias,
        )
    except (ValueError, hf_reference.ConfigError) as e:
        p.error(str(e))
    print(
        f"{args.out_dir}: {args.family} {args.dtype}, {config['num_hidden_layers']} layers, "
        f"sparse layers {hf_reference.sparse_layers(config)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
