#!/usr/bin/python3
"""Writes tiny but realistic Hugging Face MoE fixtures: config.json with each family's real
field names, a random checkpoint of one sparse layer under the checkpoint's exact tensor
names (f32 or bf16, single file or sharded with an index), and inputs.safetensors.

Owns the configs; tensor names and shapes come from hf_reference.block_spec (one home).
Layout: OUT/model/config.json, OUT/model/<checkpoint files>, OUT/inputs.safetensors.
Usage: hf_fixtures.py OUT_DIR --family mixtral [--dtype bf16] [--sharded] [--tokens T]
       hf_fixtures.py OUT_DIR --all          (one sub-directory per family)
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402
import safetensors_io  # noqa: E402

_DECODER = {
    "vocab_size": 1024,
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "initializer_range": 0.02,
    "tie_word_embeddings": False,
    "use_cache": True,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "transformers_version": "4.51.0",
}

CONFIGS = {
    "mixtral": {
        "architectures": ["MixtralForCausalLM"],
        "model_type": "mixtral",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.02,
        "router_jitter_noise": 0.0,
        "sliding_window": None,
        "rope_theta": 1e6,
    },
    "qwen2_moe": {
        "architectures": ["Qwen2MoeForCausalLM"],
        "model_type": "qwen2_moe",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "num_experts": 8,
        "num_experts_per_tok": 4,
        "norm_topk_prob": False,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [0],
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "max_window_layers": 4,
        "qkv_bias": True,
    },
    "qwen3_moe": {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "num_experts": 16,
        "num_experts_per_tok": 4,
        "norm_topk_prob": True,
        "decoder_sparse_step": 2,
        "mlp_only_layers": [],
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": 4,
        "attention_bias": False,
    },
    "olmoe": {
        "architectures": ["OlmoeForCausalLM"],
        "model_type": "olmoe",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "num_experts": 16,
        "num_experts_per_tok": 4,
        "norm_topk_prob": False,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.01,
        "clip_qkv": None,
        "attention_bias": False,
    },
    "deepseek_v2": {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "n_routed_experts": 8,
        "n_shared_experts": 2,
        "num_experts_per_tok": 2,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "routed_scaling_factor": 1.0,
        "topk_method": "greedy",
        "n_group": 1,
        "topk_group": 1,
        "scoring_func": "softmax",
        "norm_topk_prob": False,
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "kv_lora_rank": 32,
        "q_lora_rank": None,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
    },
    "deepseek_v2_group_limited": {
        "architectures": ["DeepseekV2ForCausalLM"],
        "model_type": "deepseek_v2",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 2,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "routed_scaling_factor": 16.0,
        "topk_method": "group_limited_greedy",
        "n_group": 4,
        "topk_group": 2,
        "scoring_func": "softmax",
        "norm_topk_prob": False,
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "kv_lora_rank": 32,
        "q_lora_rank": 48,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
    },
    "deepseek_v3": {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "moe_layer_freq": 1,
        "routed_scaling_factor": 2.5,
        "topk_method": "noaux_tc",
        "n_group": 4,
        "topk_group": 2,
        "scoring_func": "sigmoid",
        "norm_topk_prob": True,
        "aux_loss_alpha": 0.001,
        "seq_aux": True,
        "ep_size": 1,
        "num_nextn_predict_layers": 1,
        "kv_lora_rank": 32,
        "q_lora_rank": 48,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
    },
    # GLM-4.5-Air's fields scaled down: an explicit head_dim, partial_rotary_factor at the top
    # level (as the hub configs have it), q/k/v biases, one dense layer, one MTP layer.
    "glm4_moe": {
        "architectures": ["Glm4MoeForCausalLM"],
        "model_type": "glm4_moe",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "partial_rotary_factor": 0.5,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "routed_scaling_factor": 2.5,
        "n_group": 4,
        "topk_group": 2,
        "norm_topk_prob": True,
        "use_qk_norm": False,
        "attention_bias": True,
        "num_nextn_predict_layers": 1,
        "rope_scaling": None,
        "rms_norm_eps": 1e-5,
    },
    # dots.llm1's fields scaled down: 2 shared experts, no group limit, q/k norms always.
    "dots1": {
        "architectures": ["Dots1ForCausalLM"],
        "model_type": "dots1",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 2,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "routed_scaling_factor": 2.5,
        "n_group": 1,
        "topk_group": 1,
        "norm_topk_prob": True,
        "attention_bias": False,
        "sliding_window": None,
        "max_window_layers": 62,
        "rms_norm_eps": 1e-5,
    },
    # GLM-4.7-Flash's hub fields scaled down: DeepSeek-V3's MLA, no group limit, scale 1.8,
    # and the fields transformers 5.24 ignores (first_k_dense_replace, which agrees with its
    # default mlp_layer_types; topk_method; the top-level partial_rotary_factor 1.0).
    "glm4_moe_lite": {
        "architectures": ["Glm4MoeLiteForCausalLM"],
        "model_type": "glm4_moe_lite",
        "hidden_size": 64,
        "intermediate_size": 128,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "q_lora_rank": 48,
        "kv_lora_rank": 32,
        "qk_nope_head_dim": 16,
        "qk_rope_head_dim": 8,
        "v_head_dim": 16,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "first_k_dense_replace": 1,
        "routed_scaling_factor": 1.8,
        "n_group": 1,
        "topk_group": 1,
        "topk_method": "noaux_tc",
        "norm_topk_prob": True,
        "num_nextn_predict_layers": 1,
        "partial_rotary_factor": 1.0,
        "rope_scaling": None,
        "rope_theta": 1e6,
        "rms_norm_eps": 1e-5,
    },
    # MiniMax-M2's hub fields scaled down: rotary_dim (half of head_dim), the switches
    # transformers 5.24 ignores at the values it implies, experts of width intermediate_size.
    "minimax_m2": {
        "architectures": ["MiniMaxM2ForCausalLM"],
        "model_type": "minimax_m2",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "rotary_dim": 16,
        "hidden_act": "silu",
        "num_local_experts": 16,
        "num_experts_per_tok": 4,
        "scoring_func": "sigmoid",
        "use_routing_bias": True,
        "use_qk_norm": True,
        "qk_norm_type": "per_layer",
        "shared_intermediate_size": 0,
        "attn_type_list": [1, 1],
        "use_mtp": True,
        "num_mtp_modules": 3,
        "mtp_transformer_layers": 1,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "rope_theta": 5e6,
        "rms_norm_eps": 1e-6,
    },
    # ERNIE-4.5-21B-A3B-PT's hub fields scaled down (layer 0 dense, 2 shared experts, tied
    # embeddings, theta 5e5 at the top level, no moe_layer_end_index: -1, the last layer),
    # with the fields of Baidu's own code that transformers 5.24 ignores (moe_capacity,
    # moe_gate, moe_use_aux_free, the multi-token-prediction layer count).
    "ernie4_5_moe": {
        "architectures": ["Ernie4_5_MoeForCausalLM"],
        "model_type": "ernie4_5_moe",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "hidden_act": "silu",
        "moe_num_experts": 16,
        "moe_num_shared_experts": 2,
        "moe_layer_start_index": 1,
        "moe_layer_interval": 1,
        "moe_intermediate_size": 32,
        "moe_k": 4,
        "moe_capacity": [16, 16, 16],
        "moe_gate": "topk",
        "moe_use_aux_free": True,
        "num_nextn_predict_layers": 1,
        "use_bias": False,
        "tie_word_embeddings": True,
        "pad_token_id": 0,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
    },
    # gpt-oss-20b's hub fields scaled down: legacy rope_scaling (yarn, truncate false) with
    # rope_theta at the top level, alternating layer_types, q/k/v/o biases (attention_bias),
    # head_dim 32 (heads x head_dim != hidden), swiglu_limit without swiglu_alpha (a 5.x field:
    # 1.702 by default), and the hub's experts_per_token / initial_context_length, which
    # transformers ignores.
    "gpt_oss": {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "hidden_act": "silu",
        "num_local_experts": 16,
        "num_experts_per_tok": 4,
        "experts_per_token": 4,
        "initial_context_length": 4096,
        "layer_types": ["sliding_attention", "full_attention"],
        "sliding_window": 128,
        "attention_bias": True,
        "swiglu_limit": 7.0,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.9,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 32.0,
            "original_max_position_embeddings": 4096,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": 150000,
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-5,
        "pad_token_id": 0,
        "transformers_version": "4.55.0.dev0",
    },
    # SolarOpenConfig's fields scaled down: Glm4MoeConfig's less the dense layers, q/k norms and
    # MTP layers; head_dim a field (heads x head_dim != hidden), theta 1e6, every layer sparse,
    # no attention bias, 4 groups keep 2 (Solar-Open-100B itself has 1), one shared expert.
    "solar_open": {
        "architectures": ["SolarOpenForCausalLM"],
        "model_type": "solar_open",
        "hidden_size": 64,
        "moe_intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "hidden_act": "silu",
        "n_routed_experts": 16,
        "n_shared_experts": 1,
        "num_experts_per_tok": 4,
        "routed_scaling_factor": 1.0,
        "n_group": 4,
        "topk_group": 2,
        "norm_topk_prob": True,
        "attention_bias": False,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-5,
    },
    "switch_transformers": {
        "architectures": ["SwitchTransformersForConditionalGeneration"],
        "model_type": "switch_transformers",
        "d_model": 64,
        "d_ff": 128,
        "d_kv": 16,
        "num_heads": 4,
        "num_layers": 4,
        "num_decoder_layers": 4,
        "num_sparse_encoder_layers": 2,
        "num_sparse_decoder_layers": 2,
        "encoder_sparse_step": 2,
        "decoder_sparse_step": 2,
        "num_experts": 8,
        "expert_capacity": 4,
        "router_bias": False,
        "router_jitter_noise": 0.01,
        "router_dtype": "float32",
        "router_ignore_padding_tokens": False,
        "router_z_loss_coef": 0.001,
        "router_aux_loss_coef": 0.001,
        "dense_act_fn": "relu",
        "feed_forward_proj": "relu",
        "is_gated_act": False,
        "layer_norm_epsilon": 1e-6,
        "dropout_rate": 0.1,
        "relative_attention_num_buckets": 32,
        "relative_attention_max_distance": 128,
        "initializer_factor": 1.0,
        "vocab_size": 1024,
        "is_encoder_decoder": True,
        "add_router_probs": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
        "decoder_start_token_id": 0,
        "tie_word_embeddings": False,
        "use_cache": True,
    },
}
FAMILIES = tuple(CONFIGS)
ROUTER_STD = 2.0  # router logits ~ N(0, 2²) on N(0, 1) inputs: scores spread out
# GPT-OSS: gate/up pre-activations ~ N(0, 5²) on N(0, 1) tokens, so ~16% of the up and ~8% of
# the gate values pass swiglu_limit 7 (the clamp matters); its router and expert biases O(1).
GPT_OSS_GATE_UP_STD, GPT_OSS_BIAS_STD = 5.0, 0.5
# DeepSeek-V3, GLM, GLM-4.7-Flash, dots1, Solar-Open and ERNIE-4.5 (its [1, E] moe_statics) keep
# e_score_correction_bias in f32 even in a bf16 checkpoint; MiniMax-M2's (a buffer of the
# block, not of its gate) is in the model's dtype.
SELECTION_BIAS_IN_STORAGE_DTYPE = ("minimax_m2",)


def make_config(family, dtype, transformers5=False):
    config = dict(CONFIGS[family])
    if family != "switch_transformers":
        config = {**_DECODER, **config}
    config["torch_dtype"] = "bfloat16" if dtype == "bf16" else "float32"
    if transformers5:
        # As transformers 5.x's save_pretrained writes them (checked with 5.24): the dtype as
        # `dtype`, Qwen3-MoE's expert count as `num_local_experts`, DeepSeek-V3 without the
        # scoring_func/topk_method it always implies (sigmoid, noaux_tc), GPT-OSS with
        # swiglu_alpha and rope_parameters (theta inside) instead of rope_scaling.
        config["dtype"] = config.pop("torch_dtype")
        config["transformers_version"] = "5.24.0"
        if family == "qwen3_moe":
            config["num_local_experts"] = config.pop("num_experts")
        if family == "deepseek_v3":
            config.pop("scoring_func", None)
            config.pop("topk_method", None)
        if family == "ernie4_5_moe":  # __post_init__ resolves the last sparse layer's -1
            config["moe_layer_end_index"] = config["num_hidden_layers"] - 1
        if family == "gpt_oss":
            config["swiglu_alpha"] = 1.702
            config["rope_parameters"] = {
                **config.pop("rope_scaling"),
                "rope_theta": float(config.pop("rope_theta")),
            }
    return config


def make_checkpoint(config, layer, dtype, rng):
    """Random tensors of layer `layer`'s sparse block under the checkpoint's names, plus the
    block's norm weight (a tensor the runtime must ignore). Returns (tensors, dtypes)."""
    spec = hf_reference.block_spec(config, layer)
    family = config["model_type"]
    tensors, dtypes = {}, {}
    storage = "BF16" if dtype == "bf16" else "F32"
    for role, names in spec["tensors"].items():
        shape = spec["shapes"][role]
        if role == "router":
            std = ROUTER_STD / math.sqrt(shape[1])
        elif role == "gate_up_proj":  # GPT-OSS [E, D, 2F]: fan-in D
            std = GPT_OSS_GATE_UP_STD / math.sqrt(shape[1])
        elif family == "gpt_oss" and role in ("router_bias", "gate_up_proj_bias", "down_proj_bias"):
            std = GPT_OSS_BIAS_STD
        elif role in ("router_bias", "selection_bias"):
            std = 0.1
        else:
            std = 1.0 / math.sqrt(shape[1])  # 1/sqrt(fan_in): FFN outputs are O(1)
        for name in names if isinstance(names, list) else [names]:
            tensors[name] = (rng.standard_normal(shape) * std).astype(np.float32)
            f32 = role == "selection_bias" and family not in SELECTION_BIAS_IN_STORAGE_DTYPE
            dtypes[name] = "F32" if f32 else storage
    if config["model_type"] == "switch_transformers":
        norm = f"encoder.block.{layer}.layer.1.layer_norm.weight"
    else:
        norm = f"model.layers.{layer}.post_attention_layernorm.weight"
    tensors[norm], dtypes[norm] = np.ones(spec["hidden"], dtype=np.float32), storage
    return tensors, dtypes


def write_fixture(
    out_dir, family, dtype="f32", sharded=False, layer=None, tokens=32, seed=0, transformers5=False
):
    rng = np.random.default_rng(seed)
    config = make_config(family, dtype, transformers5)
    layer = hf_reference.sparse_layers(config)[-1] if layer is None else layer
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    tensors, dtypes = make_checkpoint(config, layer, dtype, rng)
    if sharded:
        total = sum(t.size * safetensors_io.STORAGE[dtypes[n]].itemsize for n, t in tensors.items())
        safetensors_io.write_sharded(model_dir, tensors, dtypes, max_shard_bytes=total // 3 + 1)
    else:
        safetensors_io.write_file(
            os.path.join(model_dir, "model.safetensors"), tensors, dtypes, metadata={"format": "pt"}
        )
    hidden = hf_reference.block_spec(config, layer)["hidden"]
    # The model's hidden states come in its dtype (a bf16 model's block takes bf16 tokens).
    safetensors_io.write_file(
        os.path.join(out_dir, "inputs.safetensors"),
        {"hidden_states": rng.standard_normal((tokens, hidden)).astype(np.float32)},
        {"hidden_states": {"f32": "F32", "bf16": "BF16", "f16": "F16"}[dtype]},
    )
    with open(os.path.join(out_dir, "fixture.json"), "w") as f:
        json.dump(
            {
                "family": family,
                "model_type": config["model_type"],
                "layer": layer,
                "dtype": dtype,
                "sharded": sharded,
                "tokens": tokens,
                "seed": seed,
                "config": "model/config.json",
                "checkpoint": "model" if sharded else "model/model.safetensors",
                "inputs": "inputs.safetensors",
            },
            f,
            indent=2,
        )
        f.write("\n")
    return layer


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("out_dir")
    p.add_argument("--family", choices=FAMILIES)
    p.add_argument("--all", action="store_true", help="every family, in OUT_DIR/<family>")
    p.add_argument("--dtype", choices=("f32", "bf16"), default="f32")
    p.add_argument(
        "--sharded", action="store_true", help="several shards + model.safetensors.index.json"
    )
    p.add_argument("--layer", type=int, help="which sparse layer to write (default: the last)")
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--transformers5", action="store_true", help="write config.json as transformers 5.x does"
    )
    args = p.parse_args(argv)
    if not args.all and not args.family:
        p.error("give --family or --all")
    families = FAMILIES if args.all else (args.family,)
    for family in families:
        out = os.path.join(args.out_dir, family) if args.all else args.out_dir
        try:
            layer = write_fixture(
                out,
                family,
                args.dtype,
                args.sharded,
                args.layer,
                args.tokens,
                args.seed,
                args.transformers5,
            )
        except hf_reference.ConfigError as e:
            p.error(str(e))
        print(f"{out}: {family} layer {layer}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
