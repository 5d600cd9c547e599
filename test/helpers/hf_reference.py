#!/usr/bin/python3
"""Maps a Hugging Face MoE config.json and layer index to one sparse block (layers.md §2
table) and computes its float64 reference output straight from the checkpoint's own tensors.

Owns the family -> (attributes, checkpoint tensor names) mapping, which hf_fixtures.py reuses
to write checkpoints; the math itself is reference.py's, except GPT-OSS's biased experts with
their clamped SwiGLU (evaluate_block, which routes through reference.route). Refuses what
layers.md refuses.
Usage: hf_reference.py CONFIG.json CHECKPOINT INPUTS.safetensors [--layer N] [-o REF.safetensors]
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402
import safetensors_io  # noqa: E402

# transformers' ACT2FN names -> layers.md activations (gelu_new/gelu_fast/gelu_pytorch_tanh
# are all the tanh approximation; "gelu" is the exact erf form).
HF_ACTIVATIONS = {
    "silu": "silu",
    "swish": "silu",
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
}
UNIT_ROUNDOFF = {"F32": 0.0, "BF16": 2.0**-8, "F16": 2.0**-11}
# transformers 5.24's config-class defaults that differ between the DeepSeek-V3-style families.
FIRST_DENSE_DEFAULT = {"glm4_moe": 1}
NORM_TOPK_DEFAULT = {"glm4_moe": True, "glm4_moe_lite": True, "solar_open": True}
# Dots1Config's is None, which transformers cannot build.
SHARED_EXPERTS_DEFAULT = {"glm4_moe": 1, "glm4_moe_lite": 1, "solar_open": 1}
SCALE_DEFAULT = {"glm4_moe_lite": 1.8}
# The families whose shared experts are one gated MLP `mlp.shared_experts.{gate,up,down}_proj`
# of width moe_intermediate_size * (their count).
SHARED_EXPERTS_FAMILIES = (
    "deepseek_v2",
    "deepseek_v3",
    "glm4_moe",
    "dots1",
    "glm4_moe_lite",
    "ernie4_5_moe",
    "solar_open",
)
SUPPORTED = (
    "mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, glm4_moe, dots1, "
    "glm4_moe_lite, minimax_m2, ernie4_5_moe, gpt_oss, solar_open, switch_transformers"
)
# Ernie4_5_MoeConfig's defaults (moe_norm_min is ERNIE's only routing knob).
ERNIE_DEFAULTS = {
    "moe_layer_interval": 1,
    "moe_layer_start_index": 1,
    "moe_layer_end_index": -1,
    "moe_num_shared_experts": 2,
    "moe_norm_min": 1e-12,
}
# GptOssConfig's defaults of its experts' clamped SwiGLU.
GPT_OSS_SWIGLU_ALPHA, GPT_OSS_SWIGLU_LIMIT = 1.702, 7.0


class ConfigError(Exception):
    pass


def field(config, name, default=None, required=True):
    if name in config and config[name] is not None:
        return config[name]
    if not required:
        return default
    raise ConfigError(
        f"config.json: missing field '{name}' for model_type '{config.get('model_type')}'"
    )


def activation(config, name, default="silu"):
    act = field(config, name, default, required=False)
    if act not in HF_ACTIVATIONS:
        raise ConfigError(
            f"config.json: field '{name}' = '{act}' is not one of {sorted(HF_ACTIVATIONS)}"
        )
    return HF_ACTIVATIONS[act]


def expert_count(config):
    """olmoe/qwen2_moe/qwen3_moe: `num_experts`, or `num_local_experts` as transformers 5.x
    saves Qwen3-MoE's."""
    if "num_experts" not in config and "num_local_experts" in config:
        return field(config, "num_local_experts")
    return field(config, "num_experts")


def sparse_layers(config):
    """The layer indices holding a sparse block, by each family's rule in transformers."""
    family = config.get("model_type")
    if family in ("mixtral", "olmoe", "minimax_m2", "gpt_oss", "solar_open"):
        # SolarOpenConfig has no first_k_dense_replace: every layer is sparse.
        return list(range(field(config, "num_hidden_layers")))
    if family == "glm4_moe_lite":
        return _mlp_layer_types_sparse(config)
    if family == "ernie4_5_moe":
        return _ernie_sparse(config)
    if family in ("qwen2_moe", "qwen3_moe"):
        step, dense = field(config, "decoder_sparse_step", 1, False), field(
            config, "mlp_only_layers", [], False
        )
        experts = expert_count(config)
        return [
            i
            for i in range(field(config, "num_hidden_layers"))
            if i not in dense and experts > 0 and (i + 1) % step == 0
        ]
    if family in ("deepseek_v2", "deepseek_v3", "glm4_moe", "dots1"):
        # Layers below first_k_dense_replace are dense (Glm4MoeConfig's default is 1, the
        # others' 0); num_hidden_layers excludes GLM's multi-token-prediction layers.
        first = field(config, "first_k_dense_replace", FIRST_DENSE_DEFAULT.get(family, 0), False)
        return list(range(first, field(config, "num_hidden_layers")))
    if family == "switch_transformers":
        # SwitchTransformersStack: block i is sparse iff i % step == 1 (every block when step
        # is 1, none when 0); --layer names encoder blocks. SwitchTransformersConfig derives
        # the step from num_sparse_encoder_layers, but a stored encoder_sparse_step wins.
        layers = field(config, "num_layers")
        sparse = field(config, "num_sparse_encoder_layers", 3, False)
        step = field(config, "encoder_sparse_step", layers // sparse if sparse > 0 else 0, False)
        return [i for i in range(layers) if step > 0 and (i % step == 1 or step == 1)]
    raise ConfigError(f"config.json: model_type '{family}' is not a supported MoE family ({SUPPORTED})")


def _mlp_layer_types_sparse(config):
    """Glm4MoeLiteConfig: layer i is sparse iff mlp_layer_types[i] is "sparse", by default
    ["dense"] + ["sparse"] * (num_hidden_layers - 1). transformers 5.24 ignores the hub
    configs' first_k_dense_replace (GLM's own code reads it), so one that disagrees with the
    layout transformers builds is refused, as is a layer type other than dense/sparse
    (transformers would silently build a dense MLP) or a list shorter than the layers."""
    layers = field(config, "num_hidden_layers")
    types = field(config, "mlp_layer_types", None, False)
    if types is None:
        types = ["dense"] + ["sparse"] * (layers - 1)
    if len(types) < layers:
        raise ConfigError(
            f"config.json: field 'mlp_layer_types' has {len(types)} entries for {layers} layers"
        )
    types = types[:layers]
    unknown = sorted(set(types) - {"dense", "sparse"})
    if unknown:
        raise ConfigError(
            f"config.json: field 'mlp_layer_types' holds {unknown} (only 'dense' and 'sparse')"
        )
    first = config.get("first_k_dense_replace")
    if first is not None and types != ["dense" if i < first else "sparse" for i in range(layers)]:
        raise ConfigError(
            f"config.json: field 'first_k_dense_replace' = {first} disagrees with the dense "
            f"layers transformers builds from mlp_layer_types ({types})"
        )
    return [i for i, t in enumerate(types) if t == "sparse"]


def _ernie_sparse(config):
    """Ernie4_5_MoeDecoderLayer: layer i is sparse iff (i + 1) % moe_layer_interval == 0 and
    moe_layer_start_index <= i <= moe_layer_end_index (-1: the last layer, which
    Ernie4_5_MoeConfig.__post_init__ resolves, so a config 5.24 saved holds the index)."""
    layers = field(config, "num_hidden_layers")
    interval = field(config, "moe_layer_interval", ERNIE_DEFAULTS["moe_layer_interval"], False)
    start = field(config, "moe_layer_start_index", ERNIE_DEFAULTS["moe_layer_start_index"], False)
    end = field(config, "moe_layer_end_index", ERNIE_DEFAULTS["moe_layer_end_index"], False)
    if interval < 1:
        raise ConfigError(f"config.json: field 'moe_layer_interval' = {interval} must be >= 1")
    if start < 0:
        raise ConfigError(f"config.json: field 'moe_layer_start_index' = {start} must be >= 0")
    if end < -1:
        raise ConfigError(
            f"config.json: field 'moe_layer_end_index' = {end} must be -1 or a layer index"
        )
    last = layers - 1 if end == -1 else end
    return [i for i in range(layers) if (i + 1) % interval == 0 and start <= i <= last]


def _ernie_alias(config, alias, name):
    """Ernie4_5_MoeConfig.attribute_map: config.json's `num_experts_per_tok` / `num_experts`
    win over `moe_k` / `moe_num_experts` when both are there (save_pretrained writes moe_*)."""
    return field(config, alias) if config.get(alias) is not None else field(config, name)


def _gated_experts(prefix, num_experts, names):
    gate, up, down = names
    return {
        "gate": [f"{prefix}experts.{e}.{gate}.weight" for e in range(num_experts)],
        "up": [f"{prefix}experts.{e}.{up}.weight" for e in range(num_experts)],
        "down": [f"{prefix}experts.{e}.{down}.weight" for e in range(num_experts)],
    }


def block_spec(config, layer):
    """Layer `layer`'s sparse block: {kind, attrs, tensors: {role: name or [names]},
    shapes: {role: shape per tensor}, hidden, experts, ffn}."""
    family = config.get("model_type")
    layers = sparse_layers(config)
    if layer not in layers:
        raise ConfigError(
            f"layer {layer} of this {family} config is dense; the sparse layers are {layers}"
        )
    attrs = {
        "scoring": "softmax",
        "normalize": False,
        "norm_epsilon": 0.0,
        "scale": 1.0,
        "n_group": 1,
        "topk_group": 1,
        "group_score": "max",
    }
    tensors = {}
    if family == "switch_transformers":
        hidden, num_experts, ffn = (
            field(config, "d_model"),
            field(config, "num_experts"),
            field(config, "d_ff"),
        )
        prefix = f"encoder.block.{layer}.layer.1.mlp."
        tensors["router"] = prefix + "router.classifier.weight"
        if field(config, "router_bias", False, False):
            tensors["router_bias"] = prefix + "router.classifier.bias"
        tensors["up"] = [f"{prefix}experts.expert_{e}.wi.weight" for e in range(num_experts)]
        tensors["down"] = [f"{prefix}experts.expert_{e}.wo.weight" for e in range(num_experts)]
        attrs.update(
            k=1,
            capacity=field(config, "expert_capacity", 64, False),
            activation=activation(config, "dense_act_fn", "relu"),
        )
    else:
        hidden = field(config, "hidden_size")
        if family == "ernie4_5_moe":
            k = _ernie_alias(config, "num_experts_per_tok", "moe_k")
        else:
            k = field(config, "num_experts_per_tok")
        # GPT-OSS's experts ignore hidden_act (their clamped SwiGLU is fixed).
        act = "silu" if family == "gpt_oss" else activation(config, "hidden_act")
        attrs.update(k=k, activation=act)
        if family == "gpt_oss":
            # GptOssMLP. GptOssTopKRouter: logits x·Wᵀ + b (a bias per expert), top-k of the
            # logits, softmax over the k chosen ones (= the chosen softmax probabilities
            # renormalized, no epsilon), no scaling, groups or shared experts. GptOssExperts
            # keeps the experts fused in an in-major layout (x @ W, not nn.Linear's x @ Wᵀ),
            # and 5.24's save_pretrained writes them so: gate_up_proj [E, D, 2F] (gate =
            # columns 0::2, up = columns 1::2), gate_up_proj_bias [E, 2F], down_proj [E, F, D],
            # down_proj_bias [E, D]. block_tensors splits them into the usual roles; the
            # clamped SwiGLU (swiglu_alpha, swiglu_limit) is clamped_swiglu below.
            # The hub checkpoints store the experts as MXFP4 (quant_method "mxfp4":
            # gate_up_proj_blocks/_scales, down_proj_blocks/_scales), dequantized on load as
            # transformers does on a CPU (dequantize_mxfp4); any other quantization is refused.
            quant = config.get("quantization_config") or {}
            if quant and quant.get("quant_method") != "mxfp4":
                raise ConfigError(
                    f"config.json: quantization_config (quant_method "
                    f"'{quant.get('quant_method')}') is not supported for gpt_oss; the "
                    "experts must be dequantized first"
                )
            num_experts = field(config, "num_local_experts", None, False) or field(
                config, "num_experts"
            )
            ffn = field(config, "intermediate_size")
            prefix = f"model.layers.{layer}.mlp."
            tensors.update(
                router=prefix + "router.weight",
                router_bias=prefix + "router.bias",
                gate_up_proj=prefix + "experts.gate_up_proj",
                gate_up_proj_bias=prefix + "experts.gate_up_proj_bias",
                down_proj=prefix + "experts.down_proj",
                down_proj_bias=prefix + "experts.down_proj_bias",
            )
            attrs.update(
                normalize=True,
                swiglu_alpha=float(field(config, "swiglu_alpha", GPT_OSS_SWIGLU_ALPHA, False)),
                swiglu_limit=float(field(config, "swiglu_limit", GPT_OSS_SWIGLU_LIMIT, False)),
            )
        elif family == "mixtral":
            num_experts, ffn = field(config, "num_local_experts"), field(
                config, "intermediate_size"
            )
            prefix = f"model.layers.{layer}.block_sparse_moe."
            tensors.update(_gated_experts(prefix, num_experts, ("w1", "w3", "w2")))
            attrs["normalize"] = True
        elif family in ("qwen2_moe", "qwen3_moe", "olmoe"):
            num_experts = expert_count(config)
            ffn = field(
                config, "intermediate_size" if family == "olmoe" else "moe_intermediate_size"
            )
            prefix = f"model.layers.{layer}.mlp."
            tensors.update(
                _gated_experts(prefix, num_experts, ("gate_proj", "up_proj", "down_proj"))
            )
            attrs["normalize"] = bool(field(config, "norm_topk_prob", False, False))
            shared_width = (
                field(config, "shared_expert_intermediate_size", 0, False)
                if family == "qwen2_moe"
                else 0
            )
            if shared_width:
                for role, proj in (
                    ("shared_gate", "gate_proj"),
                    ("shared_up", "up_proj"),
                    ("shared_down", "down_proj"),
                ):
                    tensors[role] = f"{prefix}shared_expert.{proj}.weight"
                tensors["shared_expert_gate"] = prefix + "shared_expert_gate.weight"
        elif family in ("deepseek_v2", "deepseek_v3"):
            num_experts, ffn = field(config, "n_routed_experts"), field(
                config, "moe_intermediate_size"
            )
            prefix = f"model.layers.{layer}.mlp."
            tensors.update(
                _gated_experts(prefix, num_experts, ("gate_proj", "up_proj", "down_proj"))
            )
            attrs["scale"] = float(field(config, "routed_scaling_factor", 1.0, False))
            # transformers' DeepSeek-V3 implies sigmoid / noaux_tc (its 5.x configs omit them).
            v3 = family == "deepseek_v3"
            method = field(config, "topk_method", "noaux_tc" if v3 else "greedy", False)
            scoring = field(config, "scoring_func", "sigmoid" if v3 else "softmax", False)
            if family == "deepseek_v2":
                # Hugging Face and DeepSeek's own modeling code disagree on these (layers.md §2).
                if field(config, "norm_topk_prob", False, False):
                    raise ConfigError(
                        "config.json: field 'norm_topk_prob' = true is not supported for deepseek_v2"
                    )
                if field(config, "moe_layer_freq", 1, False) != 1:
                    raise ConfigError(
                        "config.json: field 'moe_layer_freq' other than 1 is not supported for deepseek_v2"
                    )
                if scoring != "softmax":
                    raise ConfigError(
                        f"config.json: field 'scoring_func' = '{scoring}' is not supported for deepseek_v2"
                    )
                if method == "group_limited_greedy":
                    attrs.update(
                        n_group=field(config, "n_group"), topk_group=field(config, "topk_group")
                    )
                elif method != "greedy":
                    raise ConfigError(
                        f"config.json: field 'topk_method' = '{method}' is not supported for deepseek_v2"
                    )
            else:
                if scoring != "sigmoid":
                    raise ConfigError(
                        f"config.json: field 'scoring_func' = '{scoring}' is not supported for deepseek_v3"
                    )
                if method != "noaux_tc":
                    raise ConfigError(
                        f"config.json: field 'topk_method' = '{method}' is not supported for deepseek_v3"
                    )
                attrs.update(
                    scoring="sigmoid",
                    n_group=field(config, "n_group"),
                    topk_group=field(config, "topk_group"),
                    group_score="top2_sum",
                    normalize=bool(field(config, "norm_topk_prob", False, False)),
                    norm_epsilon=1e-20,
                )
                tensors["selection_bias"] = prefix + "gate.e_score_correction_bias"
            shared = field(config, "n_shared_experts", 0, False)
        elif family == "ernie4_5_moe":
            # Ernie4_5_MoeTopKRouter: f32 softmax over all experts, top-k of softmax + the
            # selection bias (Ernie4_5_MoeStatics, stored [1, E] in f32 as
            # mlp.moe_statics.e_score_correction_bias), the chosen unbiased probabilities
            # divided by max(their sum, moe_norm_min), no scaling; shared experts are one gated
            # MLP of width moe_intermediate_size * moe_num_shared_experts. use_bias puts biases
            # on the shared experts (and on every other projection): refused.
            if field(config, "use_bias", False, False):
                raise ConfigError(
                    "config.json: field 'use_bias' = true is not supported for ernie4_5_moe"
                )
            num_experts = _ernie_alias(config, "num_experts", "moe_num_experts")
            ffn = field(config, "moe_intermediate_size")
            prefix = f"model.layers.{layer}.mlp."
            tensors.update(
                _gated_experts(prefix, num_experts, ("gate_proj", "up_proj", "down_proj"))
            )
            norm_min = float(field(config, "moe_norm_min", ERNIE_DEFAULTS["moe_norm_min"], False))
            if norm_min < 0:
                raise ConfigError(f"config.json: field 'moe_norm_min' = {norm_min} must be >= 0")
            attrs.update(normalize=True, norm_min=norm_min)
            tensors["selection_bias"] = prefix + "moe_statics.e_score_correction_bias"
            shared = field(
                config, "moe_num_shared_experts", ERNIE_DEFAULTS["moe_num_shared_experts"], False
            )
        elif family == "minimax_m2":
            # MiniMaxM2TopKRouter: sigmoid scores, top-k of scores + e_score_correction_bias
            # (a buffer of the block, not of its gate), the unbiased scores of the chosen
            # experts divided by their sum (no epsilon, no scaling), no groups, no shared
            # experts. transformers 5.24 ignores the hub configs' switches for these; values
            # that would ask MiniMax's own code for something else are refused.
            for name, allowed in (
                ("scoring_func", ("sigmoid",)),
                ("use_routing_bias", (True,)),
                ("shared_intermediate_size", (0,)),
            ):
                if config.get(name) is not None and config[name] not in allowed:
                    raise ConfigError(
                        f"config.json: field '{name}' = {json.dumps(config[name])} is not "
                        "supported for minimax_m2 (transformers ignores it)"
                    )
            num_experts = field(config, "num_local_experts", None, False) or field(
                config, "num_experts"
            )
            ffn = field(config, "intermediate_size")
            prefix = f"model.layers.{layer}.block_sparse_moe."
            tensors.update(_gated_experts(prefix, num_experts, ("w1", "w3", "w2")))
            attrs.update(scoring="sigmoid", normalize=True)
            tensors["selection_bias"] = prefix + "e_score_correction_bias"
        elif family in ("glm4_moe", "dots1", "glm4_moe_lite", "solar_open"):
            # Glm4MoeTopkRouter / Dots1TopkRouter / Glm4MoeLiteTopkRouter / SolarOpenTopkRouter
            # (a copy of Glm4Moe's): DeepSeek-V3's
            # noaux_tc router without the scoring_func/topk_method fields (always sigmoid,
            # group top-2 sums, -inf masking).
            num_experts = field(config, "n_routed_experts", None, False) or field(
                config, "num_local_experts"
            )
            ffn = field(config, "moe_intermediate_size")
            prefix = f"model.layers.{layer}.mlp."
            tensors.update(
                _gated_experts(prefix, num_experts, ("gate_proj", "up_proj", "down_proj"))
            )
            attrs.update(
                scoring="sigmoid",
                n_group=field(config, "n_group", 1, False),
                topk_group=field(config, "topk_group", 1, False),
                group_score="top2_sum",
                normalize=bool(
                    field(config, "norm_topk_prob", NORM_TOPK_DEFAULT.get(family, False), False)
                ),
                norm_epsilon=1e-20,
                scale=float(
                    field(config, "routed_scaling_factor", SCALE_DEFAULT.get(family, 1.0), False)
                ),
            )
            tensors["selection_bias"] = prefix + "gate.e_score_correction_bias"
            # The shared experts are always built: one gated MLP of width
            # moe_intermediate_size * n_shared_experts.
            shared = field(
                config, "n_shared_experts", SHARED_EXPERTS_DEFAULT.get(family), family == "dots1"
            )
        if family in SHARED_EXPERTS_FAMILIES:
            if shared:
                for role, proj in (
                    ("shared_gate", "gate_proj"),
                    ("shared_up", "up_proj"),
                    ("shared_down", "down_proj"),
                ):
                    tensors[role] = f"{prefix}shared_experts.{proj}.weight"
                shared_width = shared * ffn
        if family != "gpt_oss":
            tensors["router"] = prefix + "gate.weight"
    shapes = {
        "router": (num_experts, hidden),
        "router_bias": (num_experts,),
        # ERNIE-4.5 stores its selection bias [1, E] (one row per expert group); block_tensors
        # flattens it.
        "selection_bias": (1, num_experts) if family == "ernie4_5_moe" else (num_experts,),
        "gate": (ffn, hidden),
        "up": (ffn, hidden),
        "down": (hidden, ffn),
        "shared_expert_gate": (1, hidden),
        # GPT-OSS's fused experts, as stored.
        "gate_up_proj": (num_experts, hidden, 2 * ffn),
        "gate_up_proj_bias": (num_experts, 2 * ffn),
        "down_proj": (num_experts, ffn, hidden),
        "down_proj_bias": (num_experts, hidden),
    }
    if "shared_up" in tensors:
        shapes.update(
            shared_gate=(shared_width, hidden),
            shared_up=(shared_width, hidden),
            shared_down=(hidden, shared_width),
        )
    return {
        "kind": "token_choice",
        "family": family,
        "layer": layer,
        "attrs": attrs,
        "tensors": tensors,
        "shapes": {r: shapes[r] for r in tensors},
        "hidden": hidden,
        "experts": num_experts,
        "ffn": ffn,
    }


def block_tensors(spec, lookup):
    """The block's float64 tensors by role for evaluate_block: each expert role stacked
    [E, ...], the selection bias flattened to [E] (ERNIE-4.5 stores [1, E]), GPT-OSS's fused
    experts split into gate/up [E, F, D], down [E, D, F] and their biases gate_bias/up_bias
    [E, F], down_bias [E, D]; `lookup(name)` gives a checkpoint tensor."""
    tensors = {}
    for role, names in spec["tensors"].items():
        if isinstance(names, list):
            tensors[role] = np.stack([lookup(n) for n in names])
        else:
            tensors[role] = lookup(names)
    if "selection_bias" in tensors:
        tensors["selection_bias"] = tensors["selection_bias"].reshape(-1)
    if "gate_up_proj" in tensors:
        gate_up, bias = tensors.pop("gate_up_proj"), tensors.pop("gate_up_proj_bias")
        # Column 2j of gate_up_proj[e] is gate unit j, column 2j + 1 up unit j.
        tensors["gate"] = np.ascontiguousarray(gate_up[..., 0::2].transpose(0, 2, 1))
        tensors["up"] = np.ascontiguousarray(gate_up[..., 1::2].transpose(0, 2, 1))
        tensors["gate_bias"], tensors["up_bias"] = bias[:, 0::2], bias[:, 1::2]
        tensors["down"] = np.ascontiguousarray(tensors.pop("down_proj").transpose(0, 2, 1))
        tensors["down_bias"] = tensors.pop("down_proj_bias")
    return tensors


# ---------------------------------------------------------------------------------------------
# GPT-OSS's experts (GptOssExperts): biases and a clamped SwiGLU. The routing is
# reference.route's; only the experts differ from reference.token_choice.
# ---------------------------------------------------------------------------------------------


def clamped_swiglu(gate, up, alpha, limit):
    """GptOssExperts._apply_gate: gate clamped from above only, up on both sides, then
    (up + 1) · gate · sigmoid(alpha · gate). NaN passes through (as torch.clamp's)."""
    gate = np.minimum(gate, limit)
    up = np.clip(up, -limit, limit)
    return (up + 1.0) * gate * reference.sigmoid(alpha * gate)


def gpt_oss_expert(x, t, e, alpha, limit):
    """Expert e on tokens x [m, D]: clamped_swiglu(x·gateᵀ + b_g, x·upᵀ + b_u)·downᵀ + b_d."""
    h = clamped_swiglu(
        x @ t["gate"][e].T + t["gate_bias"][e], x @ t["up"][e].T + t["up_bias"][e], alpha, limit
    )
    return h @ t["down"][e].T + t["down_bias"][e]


def evaluate_block(x, t, a, unit_roundoff=0.0):
    """One sparse block of an HF family: reference.token_choice, or for GPT-OSS's (attrs
    swiglu_limit) the same routing with its biased, clamped experts: y_t = Σ_j w_tj ·
    expert_{e_tj}(x_t) (each expert's down bias weighted too). Returns (results {output,
    router_logits, aux_loss, z_loss}, near_tie [T], info) as reference.token_choice does."""
    if a.get("swiglu_limit") is None:
        return reference.token_choice(x, t, a, unit_roundoff)
    routing = reference.route(
        x, t["router"], a["k"], "softmax", t.get("router_bias"), normalize=a.get("normalize", True)
    )
    experts, weights = routing["experts"], routing["weights"]
    alpha, limit = float(a["swiglu_alpha"]), float(a["swiglu_limit"])
    y = np.zeros((x.shape[0], t["down"].shape[1]))
    for e in range(t["router"].shape[0]):
        rows, cols = np.nonzero(experts == e)
        if rows.size:
            np.add.at(y, rows, weights[rows, cols][:, None] * gpt_oss_expert(x[rows], t, e, alpha, limit))
    results = {
        "output": y,
        "router_logits": routing["logits"],
        "aux_loss": reference.load_balancing_loss(routing["logits"], experts),
        "z_loss": reference.z_loss(routing["logits"]),
    }
    dl = reference.logit_error_bound(x, t["router"], unit_roundoff)
    near = reference.token_choice_near_ties(routing, dl, "softmax")
    num_experts = t["router"].shape[0]
    info = {
        "routing": routing,
        "kept": experts.copy(),
        "capacity": None,
        "mean_prob": (
            reference.softmax(routing["logits"]).mean(axis=0) if x.shape[0] else np.zeros(num_experts)
        ),
    }
    return results, near, info


def model_dtype(config):
    """The safetensors dtype the model computes in: 5.x's `dtype`, 4.x's `torch_dtype`."""
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    return {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(name, "F32")


def block_scales(scale, block, shape):
    """Each element's scale: `scale` [ceil(rows / block[0]), ceil(cols / block[1])] spread
    over a matrix of `shape` (the last blocks cut at its edges)."""
    full = np.repeat(np.repeat(scale, block[0], axis=0), block[1], axis=1)
    return full[: shape[0], : shape[1]]


def dequantize(values, scale, block, dtype):
    """An fp8 weight's values (float64) times its block scales as transformers dequantizes on
    a CPU: one f32 product, rounded to the safetensors dtype `dtype`; float64 result."""
    full = block_scales(scale, block, values.shape)
    return safetensors_io.round_to_dtype(values.astype(np.float32) * full.astype(np.float32), dtype)


def dequantize_fp8(config, weights, dtypes):
    """Replaces each F8_E4M3 weight of a fine-grained fp8 checkpoint (quantization_config
    quant_method "fp8": DeepSeek-V3, Qwen3 FP8) by its dequantized value, as transformers
    loads one on a CPU: dtype(f32(w) * f32(scale)), the scale of the weight's block
    (weight_block_size, default 128 x 128) from `<name>_scale_inv`, dtype the model's.
    Returns the weights' names whose scales it used (so they can be dropped)."""
    quant = config.get("quantization_config")
    if not quant:
        return set()
    block = quant.get("weight_block_size") or (128, 128)
    target = model_dtype(config)
    used = set()
    for name in [n for n, d in dtypes.items() if d == "F8_E4M3"]:
        scale_name = name + "_scale_inv"
        if scale_name not in weights:
            raise ConfigError(f"checkpoint: fp8 weight '{name}' has no '{scale_name}'")
        weights[name] = dequantize(weights[name], weights[scale_name], block, target)
        dtypes[name] = target
        used.add(scale_name)
    return used


# e2m1 values by code (transformers' integrations/mxfp4.py FP4_VALUES).
FP4_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                       -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_values(blocks, scales):
    """transformers' convert_moe_packed_tensors: blocks [..., N, G, 16] bytes (low nibble the
    even element) and scales [..., N, G] (e8m0: 2^(s - 127)) -> [..., K, N] (K = 32 G), the
    in-major tensor its experts keep. Every value is exact in bf16 at sane scales."""
    blocks = np.asarray(blocks, np.uint8)
    codes = np.stack([blocks & 0x0F, blocks >> 4], axis=-1).reshape(*blocks.shape[:-1], 32)
    values = FP4_VALUES[codes] * np.ldexp(1.0, np.asarray(scales, np.int64) - 127)[..., None]
    values = values.reshape(*blocks.shape[:-2], -1)  # [..., N, K]
    return np.swapaxes(values, -1, -2)


def dequantize_mxfp4(config, weights, dtypes):
    """Replaces each `<name>_blocks` / `<name>_scales` pair of an MXFP4 checkpoint
    (quantization_config quant_method "mxfp4": gpt-oss's experts) by `<name>`, dequantized as
    transformers loads one on a CPU (in the model's dtype). Returns the names it removed."""
    quant = config.get("quantization_config") or {}
    if quant.get("quant_method") != "mxfp4":
        return set()
    target = model_dtype(config)
    removed = set()
    for blocks_name in [n for n in weights if n.endswith("_blocks")]:
        name = blocks_name[: -len("_blocks")]
        scales_name = name + "_scales"
        if scales_name not in weights:
            raise ConfigError(f"checkpoint: MXFP4 '{blocks_name}' has no '{scales_name}'")
        weights[name] = safetensors_io.round_to_dtype(
            mxfp4_values(weights[blocks_name], weights[scales_name]), target)
        dtypes[name] = target
        for n in (blocks_name, scales_name):
            del weights[n], dtypes[n]
            removed.add(n)
    return removed


def pick_layer(config, checkpoint_names):
    """The first sparse layer whose router tensor is in the checkpoint (else the first)."""
    layers = sparse_layers(config)
    for layer in layers:
        if block_spec(config, layer)["tensors"]["router"] in checkpoint_names:
            return layer
    if not layers:
        raise ConfigError("config.json: this config has no sparse layer")
    return layers[0]


def checkpoint_names(checkpoint):
    if os.path.isdir(checkpoint):
        index = os.path.join(checkpoint, safetensors_io.INDEX_NAME)
        if os.path.exists(index):
            with open(index) as f:
                return set(json.load(f)["weight_map"])
        files = [
            os.path.join(checkpoint, p)
            for p in os.listdir(checkpoint)
            if p.endswith(".safetensors")
        ]
    else:
        files = [checkpoint]
    names = set()
    for path in files:
        header, _ = safetensors_io.read_header(path)
        names.update(n for n in header if n != "__metadata__")
    return names


def compute(config_path, checkpoint, inputs_path, layer=None, router_precision="weights"):
    """Returns (results {"output": [T, hidden]}, near_tie [T], info with spec, router dtype
    and the unit roundoff the near-tie bound used)."""
    with open(config_path) as f:
        config = json.load(f)
    if layer is None:
        layer = pick_layer(config, checkpoint_names(checkpoint))
    spec = block_spec(config, layer)
    wanted = {n for v in spec["tensors"].values() for n in (v if isinstance(v, list) else [v])}
    weights, dtypes = safetensors_io.load(
        checkpoint,
        names=wanted | {n + s for n in wanted for s in ("_scale_inv", "_blocks", "_scales")},
    )
    for scale in dequantize_fp8(config, weights, dtypes):
        del weights[scale], dtypes[scale]
    dequantize_mxfp4(config, weights, dtypes)
    missing = sorted(wanted - set(weights))
    if missing:
        raise ConfigError(
            f"{checkpoint}: missing tensor(s) {missing[:4]}{' ...' if len(missing) > 4 else ''}"
        )
    tensors = block_tensors(spec, weights.__getitem__)
    inputs, _ = safetensors_io.load(inputs_path)
    x = inputs["hidden_states"]
    router_dtype = dtypes[spec["tensors"]["router"]]
    # "f32": the implementation keeps tokens in f32 (only accumulation error remains).
    unit = UNIT_ROUNDOFF[router_dtype] if router_precision == "weights" else 0.0
    results, near, info = evaluate_block(x, tensors, spec["attrs"], unit)
    info.update(spec=spec, router_dtype=router_dtype, weight_dtypes=sorted(set(dtypes.values())))
    return {"output": results["output"]}, near, info


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config")
    p.add_argument("checkpoint", help="a .safetensors file or a (sharded) checkpoint directory")
    p.add_argument("inputs", help="safetensors file holding hidden_states [T, hidden]")
    p.add_argument("--layer", type=int, help="default: the sparse layer present in the checkpoint")
    p.add_argument("-o", "--output", help="write the reference (f32) under the name 'output'")
    args = p.parse_args(argv)
    try:
        results, near, info = compute(args.config, args.checkpoint, args.inputs, args.layer)
    except (ConfigError, safetensors_io.SafetensorsError) as e:
        print(f"hf_reference.py: error: {e}", file=sys.stderr)
        return 1
    spec = info["spec"]
    print(f"{spec['family']} layer {spec['layer']}: {spec['attrs']}")
    print(
        f"output {list(results['output'].shape)}, {int(near.sum())} near-tie tokens "
        f"(router {info['router_dtype']})"
    )
    if args.output:
        safetensors_io.write_file(args.output, {"output": results["output"].astype(np.float32)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
