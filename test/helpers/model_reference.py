#!/usr/bin/python3
"""Float64 reference of a WHOLE decoder-only MoE model read from a Hugging Face checkpoint
directory (config.json + safetensors, sharded too): logits of a left-padded batch, and
greedy generation. Numpy only; the sparse blocks are reference.token_choice (GPT-OSS's:
hf_reference.evaluate_block's biased, clamped experts) through hf_reference.block_spec's family
table, everything around them (GPT-OSS's attention sinks included) is here.

Families (transformers 5.24 semantics): mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2,
deepseek_v3, glm4_moe, dots1, glm4_moe_lite, minimax_m2, ernie4_5_moe, gpt_oss, solar_open.
Weights are the checkpoint's values exactly (bf16 widened); every activation and the KV cache
stay float64 (so is MiniMax-M2's router, which transformers runs in the model's dtype, and
ERNIE-4.5's routing weights, which transformers rounds to the model's dtype).

Contract (the runtime's): IDS.safetensors holds input_ids [B, S] and optionally
attention_mask [B, S] (left padding only: each row zeros then ones). A row's unmasked tokens
get positions 0..n-1. `logits` f32 [B, S, vocab] equal HF's
model(input_ids, attention_mask).logits at unmasked positions and are exactly 0 at masked
ones. --generate N: greedy decoding of N tokens for all rows together; a row stops after it
emits an eos id (config eos_token_id, int or list); `sequences` int64 [B, S+N] = the input row
then its new tokens, padded after a stop with pad_token_id (else the first eos id).
Usage: model_reference.py MODELDIR --inputs IDS.safetensors [-o OUT.safetensors] [--generate N]
"""

import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_reference  # noqa: E402
import reference  # noqa: E402
import safetensors_io  # noqa: E402

FAMILIES = (
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "deepseek_v2",
    "deepseek_v3",
    "glm4_moe",
    "dots1",
    "glm4_moe_lite",
    "minimax_m2",
    "ernie4_5_moe",
    "gpt_oss",
    "solar_open",
)
# Multi-head latent attention (DeepSeek-V2's): GLM-4.7-Flash's is DeepSeek-V3's verbatim.
MLA_FAMILIES = ("deepseek_v2", "deepseek_v3", "glm4_moe_lite")

# transformers 5.24's config-class defaults for the optional fields read here (a saved
# config.json spells them all out; older or hand-written ones may not).
_DEFAULTS = {
    "mixtral": {"rms_norm_eps": 1e-5, "num_key_value_heads": 8, "rope_theta": 1e6},
    "qwen2_moe": {
        "rms_norm_eps": 1e-6,
        "num_key_value_heads": 16,
        "qkv_bias": True,
        "max_window_layers": 28,
        "sliding_window": 4096,
    },
    "qwen3_moe": {"rms_norm_eps": 1e-6, "num_key_value_heads": 4, "sliding_window": 4096},
    "olmoe": {"rms_norm_eps": 1e-5},
    "deepseek_v2": {"rms_norm_eps": 1e-6},
    "deepseek_v3": {"rms_norm_eps": 1e-6, "rope_interleave": True},
    # Glm4MoeConfig.__post_init__ sets partial_rotary_factor 0.5 when config.json has none.
    "glm4_moe": {"rms_norm_eps": 1e-5, "num_key_value_heads": 8, "partial_rotary_factor": 0.5},
    "dots1": {
        "rms_norm_eps": 1e-6,
        "num_key_value_heads": 32,
        "max_window_layers": 62,
        "sliding_window": 4096,
    },
    "glm4_moe_lite": {"rms_norm_eps": 1e-5, "rope_interleave": True},
    # MiniMaxM2Config: head_dim is a field (128), default_theta 5e6.
    "minimax_m2": {
        "rms_norm_eps": 1e-6,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rope_theta": 5e6,
    },
    # Ernie4_5_MoeConfig: default_theta 5e5, embeddings tied unless config.json says otherwise.
    "ernie4_5_moe": {
        "rms_norm_eps": 1e-5,
        "num_key_value_heads": 4,
        "rope_theta": 5e5,
        "tie_word_embeddings": True,
        "use_bias": False,
    },
    # GptOssConfig: head_dim 64, default_theta 1.5e5, sliding_window 128, attention_bias true.
    "gpt_oss": {
        "rms_norm_eps": 1e-5,
        "num_key_value_heads": 8,
        "head_dim": 64,
        "rope_theta": 150000.0,
        "sliding_window": 128,
        "attention_bias": True,
    },
    # SolarOpenConfig: head_dim is a field (128), default_theta 1e6; no partial rotary (its
    # apply_rotary_pos_emb rotates whole heads).
    "solar_open": {
        "rms_norm_eps": 1e-5,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "rope_theta": 1e6,
    },
}
# GptOssConfig.__post_init__'s rope_parameters when config.json has none (nor rope_scaling):
# yarn without truncating the correction range (rope_theta added as for any family).
GPT_OSS_ROPE = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 4096,
}
# The families whose attention rotates only the first int(head_dim * partial_rotary_factor)
# dims of each head; the others' apply_rotary_pos_emb rotates whole heads, so a factor other
# than 1 fails there (or is ignored) and is refused here.
PARTIAL_ROTARY_FAMILIES = ("glm4_moe", "minimax_m2")
# DeepseekV2/V3RMSNorm(q_lora_rank) and (kv_lora_rank) are built without eps=: always 1e-6.
MLA_LATENT_NORM_EPS = 1e-6


class ModelError(Exception):
    pass


_REQUIRED = object()


def rms_norm(x, weight, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


# ---------------------------------------------------------------------------------------------
# RoPE (transformers' modeling_rope_utils, in float64)
# ---------------------------------------------------------------------------------------------


def rope_parameters(config):
    """The standardized rope_parameters: 5.x's `rope_parameters`, or 4.x's `rope_theta` +
    `rope_scaling` (whose legacy `type` key becomes `rope_type`)."""
    family = config["model_type"]
    theta = config.get("rope_theta") or _DEFAULTS[family].get("rope_theta", 10000.0)
    params = config.get("rope_parameters") or config.get("rope_scaling") or {}
    if not params and family == "gpt_oss":
        params = GPT_OSS_ROPE
    params = dict(params)
    if any(isinstance(v, dict) for v in params.values()):
        raise ModelError("config.json: per-layer-type rope_parameters are not supported")
    params.setdefault("rope_theta", theta)
    params.setdefault("rope_type", params.get("type", "default"))
    # 5.24's standardization: rope_parameters' own partial_rotary_factor, else config.json's
    # top-level one (even a null one: GLM's default only fills an absent key), else MiniMax's
    # legacy rotary_dim / head_dim (MiniMaxM2Config.convert_rope_params_to_dict), else the
    # config class's default.
    if "partial_rotary_factor" in config:
        partial = config["partial_rotary_factor"]
    elif family == "minimax_m2" and config.get("rotary_dim") is not None:
        partial = config["rotary_dim"] / (config.get("head_dim") or _DEFAULTS[family]["head_dim"])
    else:
        partial = _DEFAULTS[family].get("partial_rotary_factor")
    if partial is not None:
        params.setdefault("partial_rotary_factor", partial)
    if params["rope_type"] in ("llama3", "yarn"):
        if config.get("original_max_position_embeddings") is not None:
            params["original_max_position_embeddings"] = config["original_max_position_embeddings"]
        params.setdefault("original_max_position_embeddings", config["max_position_embeddings"])
    return params


def yarn_mscale(scale, mscale=1.0):
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def rotary_dim(config, head_dim):
    """How many leading dims of each head RoPE rotates: int(head_dim * partial_rotary_factor)
    for the families that honour the factor, else head_dim (a factor other than 1 refused)."""
    factor = float(rope_parameters(config).get("partial_rotary_factor", 1.0))
    if factor == 1.0:
        return head_dim
    if config["model_type"] not in PARTIAL_ROTARY_FAMILIES:
        raise ModelError("config.json: partial_rotary_factor other than 1 is not supported")
    dim = int(head_dim * factor)
    if dim <= 0 or dim % 2:
        raise ModelError(
            f"config.json: partial_rotary_factor {factor} gives an odd or empty rotary part "
            f"({dim} of head_dim {head_dim})"
        )
    return dim


def rope_frequencies(config, dim):
    """(inv_freq [dim/2], attention_factor) as transformers computes them for the rope type;
    `dim` is the rotary part of a head (rotary_dim)."""
    params = rope_parameters(config)
    kind, base = params["rope_type"], float(params["rope_theta"])
    exponent = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = 1.0 / base**exponent
    if kind == "default":
        return inv_freq, 1.0
    if kind == "linear":
        return inv_freq / float(params["factor"]), 1.0
    if kind == "llama3":
        factor = float(params["factor"])
        low, high = float(params["low_freq_factor"]), float(params["high_freq_factor"])
        old = float(params["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old / low, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old / high) & ~(wavelen > old / low)
        return np.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        original = params["original_max_position_embeddings"]
        factor = params.get("factor")
        if factor is None:
            factor = config["max_position_embeddings"] / original
        factor = float(factor)
        attention_factor = params.get("attention_factor")
        mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
        if attention_factor is None:
            if mscale and mscale_all_dim:
                attention_factor = yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim)
            else:
                attention_factor = yarn_mscale(factor)
        beta_fast = params.get("beta_fast") or 32
        beta_slow = params.get("beta_slow") or 1

        def correction_dim(rotations):
            return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

        low, high = correction_dim(beta_fast), correction_dim(beta_slow)
        if params.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        inv = (inv_freq / factor) * (1 - extrapolation) + inv_freq * extrapolation
        return inv, float(attention_factor)
    raise ModelError(
        f"config.json: rope_type '{kind}' is not supported (default, linear, llama3, yarn)"
    )


def apply_rope(x, positions, inv_freq, attention_factor, interleaved):
    """x [m, heads, dim] at positions [m]. Half-split pairs (i, i + r/2) as rotate_half
    does, or DeepSeek's and ERNIE's interleaved pairs (2i, 2i+1); cos and sin carry
    attention_factor.
    Only the first r = 2 * len(inv_freq) dims rotate (GLM's partial rotary); the rest pass."""
    rotary = 2 * inv_freq.shape[0]
    if rotary < x.shape[-1]:
        rotated = apply_rope(x[..., :rotary], positions, inv_freq, attention_factor, interleaved)
        return np.concatenate([rotated, x[..., rotary:]], axis=-1)
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]
    cos = (np.cos(angles) * attention_factor)[:, None, :]
    sin = (np.sin(angles) * attention_factor)[:, None, :]
    out = np.empty_like(x)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
    else:
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        out[..., :half] = a * cos - b * sin
        out[..., half:] = b * cos + a * sin
    return out


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


def _refuse_ignored_minimax_fields(config):
    """MiniMax-M2's hub configs carry switches that transformers 5.24 ignores (it always
    normalizes q and k over all heads and runs full softmax attention in every layer); a
    value asking MiniMax's own code for something else is refused."""
    for name, allowed in (
        ("use_qk_norm", (True,)),
        ("qk_norm_type", ("per_layer",)),
        ("attention_bias", (False,)),
    ):
        if config.get(name) is not None and config[name] not in allowed:
            raise ModelError(
                f"config.json: field '{name}' = {json.dumps(config[name])} is not supported "
                "for minimax_m2 (transformers ignores it)"
            )
    if any(t != 1 for t in config.get("attn_type_list") or []):
        raise ModelError(
            "config.json: field 'attn_type_list' asks for linear attention layers (0), which "
            "minimax_m2 in transformers does not have"
        )


def _eos_ids(config):
    eos = config.get("eos_token_id")
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


class Model:
    """Weights and structure of one checkpoint. forward() runs one row's next tokens
    against that row's KV cache (a list per layer of [keys, values] float64 arrays)."""

    def __init__(self, model_dir):
        config_path = os.path.join(model_dir, "config.json")
        try:
            with open(config_path) as f:
                self.config = config = json.load(f)
        except (OSError, ValueError) as e:
            raise ModelError(f"{config_path}: {e}") from None
        family = self.family = config.get("model_type")
        if family not in FAMILIES:
            raise ModelError(
                f"config.json: model_type '{family}' is not supported ({', '.join(FAMILIES)})"
            )
        self.defaults = _DEFAULTS[family]
        self.weights, self.dtypes = safetensors_io.load(model_dir)
        hf_reference.dequantize_fp8(config, self.weights, self.dtypes)
        hf_reference.dequantize_mxfp4(config, self.weights, self.dtypes)
        self.hidden = self.get("hidden_size")
        self.heads = self.get("num_attention_heads")
        self.layers = self.get("num_hidden_layers")
        self.vocab = self.get("vocab_size")
        self.eps = float(self.get("rms_norm_eps"))
        self.activation = hf_reference.activation(config, "hidden_act")
        self.mla = family in MLA_FAMILIES
        if family == "minimax_m2":
            _refuse_ignored_minimax_fields(config)
        if family == "ernie4_5_moe" and self.get("use_bias"):
            # Biases on q/k/v/o, the dense MLPs, the shared experts and the lm head.
            raise ModelError("config.json: field 'use_bias' = true is not supported for ernie4_5_moe")
        if self.mla:
            self.nope, self.rope_dim = self.get("qk_nope_head_dim"), self.get("qk_rope_head_dim")
            self.v_dim, self.kv_rank = self.get("v_head_dim"), self.get("kv_lora_rank")
            self.q_rank = config.get("q_lora_rank")
            self.kv_heads = self.heads  # MLA expands its latent to every head
            kv_heads = config.get("num_key_value_heads")
            if family == "glm4_moe_lite" and kv_heads is not None and kv_heads != self.heads:
                # transformers repeats the per-head keys num_heads / num_key_value_heads
                # times again and fails: only an equal count builds a model.
                raise ModelError(
                    f"config.json: num_key_value_heads {kv_heads} differs from "
                    f"num_attention_heads {self.heads} (transformers fails on it for {family})"
                )
            self.head_dim = self.nope + self.rope_dim
            self.scaling = self.head_dim**-0.5
            params = rope_parameters(config)
            # DeepSeek's yarn_apply_mscale: any non-default rope type with mscale_all_dim.
            if params["rope_type"] != "default" and params.get("mscale_all_dim"):
                self.scaling *= yarn_mscale(float(params["factor"]), params["mscale_all_dim"]) ** 2
            self.interleaved = family == "deepseek_v2" or bool(self.get("rope_interleave"))
            if self.get("mlp_bias", False):
                raise ModelError("config.json: field 'mlp_bias' = true is not supported")
            self.inv_freq, self.attention_factor = rope_frequencies(
                config, rotary_dim(config, self.rope_dim)
            )
        elif family == "gpt_oss":
            # GptOssConfig.__post_init__: a null head_dim is hidden / heads and a null
            # num_key_value_heads the heads; absent ones are the class defaults (64, 8).
            self.kv_heads = config.get("num_key_value_heads", self.defaults["num_key_value_heads"])
            self.kv_heads = self.kv_heads or self.heads
            self.head_dim = config.get("head_dim", self.defaults["head_dim"])
            self.head_dim = self.head_dim or self.hidden // self.heads
        else:
            self.kv_heads = config.get("num_key_value_heads") or self.defaults.get(
                "num_key_value_heads", self.heads
            )
            self.head_dim = (
                config.get("head_dim") or self.defaults.get("head_dim") or self.hidden // self.heads
            )
        if not self.mla:
            self.scaling = self.head_dim**-0.5
            # ERNIE-4.5 rotates adjacent pairs (2i, 2i+1) (its own rotate_half and
            # repeat_interleave'd cos/sin); the others rotate_half's (i, i + d/2).
            self.interleaved = family == "ernie4_5_moe"
            self.inv_freq, self.attention_factor = rope_frequencies(
                config, rotary_dim(config, self.head_dim)
            )
        if self.heads % self.kv_heads:
            raise ModelError(
                f"config.json: {self.heads} attention heads are not a multiple of "
                f"{self.kv_heads} key/value heads"
            )
        if family == "qwen2_moe":  # qkv_bias: q, k and v only
            self.attention_bias = ("q", "k", "v") if self.get("qkv_bias") else ()
        elif family in ("mixtral", "minimax_m2", "ernie4_5_moe"):  # ERNIE: use_bias refused
            self.attention_bias = ()
        elif family in ("glm4_moe", "solar_open"):  # attention_bias: q, k, v; o_proj never
            self.attention_bias = ("q", "k", "v") if self.get("attention_bias", False) else ()
        else:  # attention_bias: q, k, v and o (DeepSeek: q_a_proj, kv_a_proj_with_mqa, o_proj;
            # GPT-OSS: on by default)
            self.attention_bias = ("q", "k", "v", "o") if self.get("attention_bias", False) else ()
        # GPT-OSS's attention sinks: a learned logit per head joins each query's softmax and
        # its probability is dropped (self_attn.sinks [heads]).
        self.sinks = family == "gpt_oss"
        self.clip_qkv = config.get("clip_qkv") if family == "olmoe" else None
        # Per-head q/k RMSNorm over head_dim before RoPE: Qwen3 and dots1 always, GLM when
        # use_qk_norm (olmoe's and MiniMax-M2's full-width norms are separate).
        self.head_qk_norm = family in ("qwen3_moe", "dots1") or (
            family == "glm4_moe" and bool(self.get("use_qk_norm", False))
        )
        self.windows = self._sliding_windows()
        self.sparse = set(hf_reference.sparse_layers(config))
        self.blocks = {}
        for layer in sorted(self.sparse):
            spec = hf_reference.block_spec(config, layer)
            tensors = hf_reference.block_tensors(spec, self.tensor)
            attrs = dict(spec["attrs"])
            self.blocks[layer] = (tensors, attrs)
        self.embed = self.tensor("model.embed_tokens.weight")
        if self.get("tie_word_embeddings", False):
            self.lm_head = self.embed  # the tied lm_head is the embedding, saved or not
        else:
            self.lm_head = self.tensor("lm_head.weight")
        self.final_norm = self.tensor("model.norm.weight")
        self.eos = _eos_ids(config)
        pad = config.get("pad_token_id")
        self.fill = int(pad) if pad is not None else (self.eos[0] if self.eos else 0)

    def get(self, name, default=_REQUIRED):
        """A config field: its value, else transformers' class default, else `default`."""
        if self.config.get(name) is not None:
            return self.config[name]
        if name in self.defaults:
            return self.defaults[name]
        if default is not _REQUIRED:
            return default
        raise ModelError(f"config.json: missing field '{name}' for model_type '{self.family}'")

    def tensor(self, name):
        if name not in self.weights:
            raise ModelError(f"checkpoint: missing tensor '{name}'")
        return self.weights[name]

    def _sliding_windows(self):
        """Per layer: the sliding window (a query sees itself and the W-1 keys before it),
        or None; each family's rule in transformers 5.24."""
        config, family = self.config, self.family
        none = [None] * self.layers
        if family == "mixtral":
            window = config.get("sliding_window")
            return [window] * self.layers if window else none
        if family in ("qwen2_moe", "qwen3_moe"):
            if not config.get("use_sliding_window", False):
                return none
            window = config.get("sliding_window") or self.defaults["sliding_window"]
            if family == "qwen3_moe":
                return [window] * self.layers
            types = config.get("layer_types") or [
                "sliding_attention"
                if (i + 1) % 2 and i < self.get("max_window_layers")
                else "full_attention"
                for i in range(self.layers)
            ]
            return [window if t == "sliding_attention" else None for t in types]
        if family == "dots1":
            # Dots1Config.__post_init__: layers at or above max_window_layers slide when
            # sliding_window is set (a null one means none; an absent one the default 4096).
            window = config.get("sliding_window", self.defaults["sliding_window"])
            types = config.get("layer_types") or [
                "sliding_attention"
                if window is not None and i >= self.get("max_window_layers")
                else "full_attention"
                for i in range(self.layers)
            ]
            if window is None and "sliding_attention" in types:
                raise ModelError("config.json: sliding layer_types but sliding_window is null")
            return [window if t == "sliding_attention" else None for t in types[: self.layers]]
        if family == "gpt_oss":
            # GptOssConfig.__post_init__: layers 0, 2, 4, ... slide unless config.json has
            # layer_types; the window is sliding_window (absent: 128; a null one with sliding
            # layers makes transformers fail, so it is refused).
            window = config.get("sliding_window", self.defaults["sliding_window"])
            types = config.get("layer_types") or [
                "sliding_attention" if (i + 1) % 2 else "full_attention" for i in range(self.layers)
            ]
            if len(types) < self.layers:
                raise ModelError(
                    f"config.json: field 'layer_types' has {len(types)} entries for {self.layers} layers"
                )
            unknown = sorted(set(types) - {"sliding_attention", "full_attention"})
            if unknown:
                raise ModelError(
                    f"config.json: field 'layer_types' holds {unknown} "
                    "(only 'sliding_attention' and 'full_attention')"
                )
            if window is None and "sliding_attention" in types[: self.layers]:
                raise ModelError("config.json: sliding layer_types but sliding_window is null")
            return [window if t == "sliding_attention" else None for t in types[: self.layers]]
        # olmoe, deepseek, glm4_moe(_lite), minimax_m2 and ernie4_5_moe build a plain causal mask
        return none

    def linear(self, x, name, bias=False):
        y = x @ self.tensor(name + ".weight").T
        return y + self.tensor(name + ".bias") if bias else y

    # -- attention ------------------------------------------------------------------------

    def qkv(self, layer, x, positions):
        """Queries [m, H, dk], keys [m, Hkv, dk], values [m, Hkv, dv] after RoPE."""
        a = f"model.layers.{layer}.self_attn."
        m = x.shape[0]
        if self.mla:
            if self.q_rank is None:
                q = self.linear(x, a + "q_proj")
            else:
                q_latent = self.linear(x, a + "q_a_proj", "q" in self.attention_bias)
                q_latent = rms_norm(q_latent, self.tensor(a + "q_a_layernorm.weight"), MLA_LATENT_NORM_EPS)
                q = self.linear(q_latent, a + "q_b_proj")
            q = q.reshape(m, self.heads, self.head_dim)
            latent = self.linear(x, a + "kv_a_proj_with_mqa", "k" in self.attention_bias)
            kv = rms_norm(
                latent[:, : self.kv_rank], self.tensor(a + "kv_a_layernorm.weight"), MLA_LATENT_NORM_EPS
            )
            k_rope = latent[:, None, self.kv_rank :]  # one rotary key shared by every head
            kv = self.linear(kv, a + "kv_b_proj").reshape(m, self.heads, self.nope + self.v_dim)
            q_rope = apply_rope(
                q[..., self.nope :], positions, self.inv_freq, self.attention_factor, self.interleaved
            )
            k_rope = apply_rope(k_rope, positions, self.inv_freq, self.attention_factor, self.interleaved)
            q = np.concatenate([q[..., : self.nope], q_rope], axis=-1)
            k = np.concatenate(
                [kv[..., : self.nope], np.broadcast_to(k_rope, (m, self.heads, self.rope_dim))], axis=-1
            )
            return q, k, kv[..., self.nope :]
        bias = self.attention_bias
        q = self.linear(x, a + "q_proj", "q" in bias)
        k = self.linear(x, a + "k_proj", "k" in bias)
        v = self.linear(x, a + "v_proj", "v" in bias)
        if self.family in ("olmoe", "minimax_m2"):
            # OLMoE and MiniMax-M2: RMSNorm over the whole q / k projection (all heads at
            # once); OLMoE then clips q, k and v.
            q = rms_norm(q, self.tensor(a + "q_norm.weight"), self.eps)
            k = rms_norm(k, self.tensor(a + "k_norm.weight"), self.eps)
            if self.clip_qkv is not None:
                c = float(self.clip_qkv)
                q, k, v = np.clip(q, -c, c), np.clip(k, -c, c), np.clip(v, -c, c)
        q = q.reshape(m, self.heads, self.head_dim)
        k = k.reshape(m, self.kv_heads, self.head_dim)
        v = v.reshape(m, self.kv_heads, self.head_dim)
        if self.head_qk_norm:
            q = rms_norm(q, self.tensor(a + "q_norm.weight"), self.eps)
            k = rms_norm(k, self.tensor(a + "k_norm.weight"), self.eps)
        q = apply_rope(q, positions, self.inv_freq, self.attention_factor, self.interleaved)
        k = apply_rope(k, positions, self.inv_freq, self.attention_factor, self.interleaved)
        return q, k, v

    def attention(self, layer, x, positions, cache):
        q, k, v = self.qkv(layer, x, positions)
        keys = np.concatenate([cache[0], k]) if cache[0] is not None else k
        values = np.concatenate([cache[1], v]) if cache[1] is not None else v
        cache[0], cache[1] = keys, values
        key_positions = np.arange(keys.shape[0])
        visible = key_positions[None, :] <= positions[:, None]
        window = self.windows[layer]
        if window is not None:
            visible &= key_positions[None, :] > positions[:, None] - window
        group = self.heads // self.kv_heads
        keys = np.repeat(keys, group, axis=1)  # kv head g serves heads g*group .. g*group+group-1
        values = np.repeat(values, group, axis=1)
        scores = np.einsum("ihd,jhd->hij", q, keys) * self.scaling
        scores = np.where(visible[None], scores, -np.inf)
        if self.sinks:
            # softmax over [scores..., sink_h], then the sink's column dropped.
            sink = self.tensor(f"model.layers.{layer}.self_attn.sinks")
            column = np.broadcast_to(sink[:, None, None], (*scores.shape[:2], 1))
            probs = reference.softmax(np.concatenate([scores, column], axis=-1), axis=-1)[..., :-1]
        else:
            probs = reference.softmax(scores, axis=-1)
        out = np.einsum("hij,jhd->ihd", probs, values).reshape(x.shape[0], -1)
        return self.linear(out, f"model.layers.{layer}.self_attn.o_proj", "o" in self.attention_bias)

    # -- feed-forward ---------------------------------------------------------------------

    def mlp(self, layer, x):
        if layer in self.blocks:
            tensors, attrs = self.blocks[layer]
            results, _, _ = hf_reference.evaluate_block(x, tensors, attrs)
            return results["output"]
        m = f"model.layers.{layer}.mlp."
        return reference.ffn(
            x,
            self.tensor(m + "up_proj.weight"),
            self.tensor(m + "down_proj.weight"),
            self.tensor(m + "gate_proj.weight"),
            self.activation,
        )

    def forward(self, tokens, cache):
        """Logits [m, vocab] of `tokens` [m] appended to a row whose cache holds its first
        tokens (positions continue from there)."""
        start = cache[0][0].shape[0] if cache[0][0] is not None else 0
        positions = np.arange(start, start + len(tokens))
        h = self.embed[np.asarray(tokens)]
        for layer in range(self.layers):
            p = f"model.layers.{layer}."
            normed = rms_norm(h, self.tensor(p + "input_layernorm.weight"), self.eps)
            h = h + self.attention(layer, normed, positions, cache[layer])
            normed = rms_norm(h, self.tensor(p + "post_attention_layernorm.weight"), self.eps)
            h = h + self.mlp(layer, normed)
        return rms_norm(h, self.final_norm, self.eps) @ self.lm_head.T

    def new_cache(self):
        return [[None, None] for _ in range(self.layers)]


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------


def check_inputs(input_ids, attention_mask, vocab):
    """Validates the batch; returns (input_ids int64 [B, S], lengths [B])."""
    ids = np.asarray(input_ids)
    if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
        raise ModelError(f"input_ids must be an integer [B, S] tensor, got {ids.dtype} {list(ids.shape)}")
    ids = ids.astype(np.int64)
    if attention_mask is None:
        mask = np.ones_like(ids)
    else:
        mask = np.asarray(attention_mask)
        if mask.shape != ids.shape or not np.issubdtype(mask.dtype, np.integer):
            raise ModelError(
                f"attention_mask must be an integer tensor shaped like input_ids {list(ids.shape)}, "
                f"got {mask.dtype} {list(mask.shape)}"
            )
    if not np.isin(mask, (0, 1)).all():
        raise ModelError("attention_mask holds values other than 0 and 1")
    for b, row in enumerate(mask):
        if (np.diff(row) < 0).any():
            raise ModelError(
                f"attention_mask row {b} is not left padding (zeros then ones): {row.tolist()}"
            )
        if not row.any():
            raise ModelError(f"attention_mask row {b} has no unmasked token")
    used = ids[mask.astype(bool)]
    if used.size and (used.min() < 0 or used.max() >= vocab):
        raise ModelError(f"input_ids outside [0, {vocab}) at unmasked positions")
    return ids, mask.sum(axis=1).astype(np.int64)


def run(model, input_ids, attention_mask=None, generate=0):
    """Returns {"logits": float64 [B, S, V]} and, with generate > 0, "sequences" int64."""
    ids, lengths = check_inputs(input_ids, attention_mask, model.vocab)
    batch, seq = ids.shape
    logits = np.zeros((batch, seq, model.vocab))
    caches, last = [], []
    for b in range(batch):
        n = int(lengths[b])
        cache = model.new_cache()
        logits[b, seq - n :] = model.forward(ids[b, seq - n :], cache)
        caches.append(cache)
        last.append(logits[b, -1].copy())
    out = {"logits": logits}
    if generate > 0:
        sequences = np.full((batch, seq + generate), model.fill, dtype=np.int64)
        sequences[:, :seq] = ids
        done = np.zeros(batch, dtype=bool)
        for step in range(generate):
            for b in range(batch):
                if done[b]:
                    continue
                token = int(np.argmax(last[b]))  # ties to the lower id, as torch.argmax
                sequences[b, seq + step] = token
                if token in model.eos:
                    done[b] = True
                elif step + 1 < generate:
                    last[b] = model.forward([token], caches[b])[-1]
        out["sequences"] = sequences
    return out


def compute(model_dir, inputs_path, generate=0):
    model = Model(model_dir)
    inputs, _ = safetensors_io.load(inputs_path, raw=True)
    if "input_ids" not in inputs:
        raise ModelError(f"{inputs_path}: no tensor 'input_ids'")
    return run(model, inputs["input_ids"], inputs.get("attention_mask"), generate), model


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("model_dir", help="directory with config.json and *.safetensors")
    p.add_argument("--inputs", required=True, help="safetensors with input_ids [, attention_mask]")
    p.add_argument("-o", "--output", help="write logits (f32) [and sequences (i64)] here")
    p.add_argument("--generate", type=int, default=0, metavar="N", help="greedy-decode N tokens")
    args = p.parse_args(argv)
    if args.generate < 0:
        p.error("--generate must be >= 0")
    try:
        out, model = compute(args.model_dir, args.inputs, args.generate)
    except (ModelError, hf_reference.ConfigError, safetensors_io.SafetensorsError, OSError) as e:
        print(f"model_reference.py: error: {e}", file=sys.stderr)
        return 1
    logits = out["logits"]
    print(
        f"{model.family}: logits {list(logits.shape)}, sparse layers {sorted(model.sparse)}, "
        f"weights {sorted(set(model.dtypes.values()))}"
    )
    if "sequences" in out:
        for row in out["sequences"]:
            print("  " + " ".join(str(int(t)) for t in row))
    if args.output:
        tensors = {"logits": logits.astype(np.float32)}
        dtypes = {"logits": "F32"}
        if "sequences" in out:
            tensors["sequences"], dtypes["sequences"] = out["sequences"], "I64"
        safetensors_io.write_file(args.output, tensors, dtypes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
