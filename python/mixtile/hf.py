"""Swap the sparse blocks of a Hugging Face transformers 5.x model for compiled Mixtile layers.

    import mixtile.hf
    mixtile.hf.patch(model)      # every sparse block now runs Mixtile's kernels
    model.generate(...)          # same tokens as before
    mixtile.hf.unpatch(model)

Each distinct block shape is compiled once (`--fused-experts`: the layer takes the module's own
gate_up_proj [E, 2F, D] and down_proj [E, D, F]) and every layer of that shape binds its own
parameters, without a copy (gpt-oss keeps its experts in-major with gate and up interleaved:
the runtime builds Mixtile's layout from them once, when the layer is patched). The router module is still called, so transformers' hooks on it
(router logits, auxiliary losses) keep firing; its result is not used: Mixtile routes again,
as the config says, in f32. Families: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2,
deepseek_v3, glm4_moe, glm4_moe_lite, dots1, minimax_m2, ernie4_5_moe, gpt_oss, solar_open.
Inference only: the patched block has no backward.
"""

import types

import torch

from . import _core
from .torch import SparseBlock

__all__ = ["patch", "unpatch", "patched_layers"]

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "glm4_moe",
            "glm4_moe_lite", "dots1", "minimax_m2", "ernie4_5_moe", "gpt_oss", "solar_open")
_DTYPES = {torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


def _sparse_blocks(model):
    """(layer index, block module) of every sparse block: a module with fused experts."""
    decoder = getattr(model, "model", model)
    layers = getattr(decoder, "layers", None)
    if layers is None:
        raise _core.MixtileError(f"{type(model).__name__} has no decoder layers (model.model.layers)")
    found = []
    for index, layer in enumerate(layers):
        block = getattr(layer, "mlp", None)
        experts = getattr(block, "experts", None)
        if experts is not None and hasattr(experts, "gate_up_proj") and hasattr(experts, "down_proj"):
            found.append((index, block))
    return found


def _block_tensors(block):
    """The block's parameters and buffers by their names inside the block."""
    tensors = dict(block.named_parameters())
    tensors.update(dict(block.named_buffers()))
    return tensors


def patch(model, *, cpu=None, num_threads=0, out=None):
    """Replaces every sparse block's forward by its compiled Mixtile layer; returns the model.
    A model on a CUDA device gets cuda-target layers that read its parameters and the hidden
    states where they are and run on torch's current stream (needs nvcc at patch time).
    Refusals (another family, a config the compiler refuses, tensors on another device) raise
    MixtileError and leave the model as it was."""
    config = model.config
    family = getattr(config, "model_type", None)
    if family not in FAMILIES:
        raise _core.MixtileError(
            f"model_type '{family}' is not a family mixtile.hf.patch knows ({', '.join(FAMILIES)})")
    blocks = _sparse_blocks(model)
    if not blocks:
        raise _core.MixtileError(f"this {family} model has no sparse block to patch")
    config_dict = config.to_dict()
    # The layer binds the module's own parameters, which are float tensors (checked below): a
    # quantized checkpoint (gpt-oss's MXFP4, an fp8 one) was dequantized when transformers loaded
    # it, so a quantization_config left in the config (5.24 drops it then) does not describe them.
    config_dict.pop("quantization_config", None)
    plans = []
    artifacts = {}  # shapes -> (artifact, the layer it was compiled for)
    for index, block in blocks:
        if getattr(block, "_mixtile", None) is not None:
            continue  # patched already
        tensors = _block_tensors(block)
        experts = block.experts.gate_up_proj
        if experts.device.type not in ("cpu", "cuda"):
            raise _core.MixtileError(f"layer {index}: the experts are on {experts.device}; "
                                     "mixtile.hf.patch runs on the cpu or a CUDA device")
        target = "cuda" if experts.device.type == "cuda" else "cpu"
        if experts.dtype not in _DTYPES:
            raise _core.MixtileError(f"layer {index}: experts of dtype {experts.dtype}")
        dtype = _DTYPES[experts.dtype]
        key = (target, dtype) + tuple((name, tuple(t.shape), t.dtype) for name, t in sorted(tensors.items()))
        if key not in artifacts:
            artifact = _core.compile(config_dict, layer=index, dtype=dtype, token_dtype=dtype,
                                     fused_experts=True, cpu=cpu, target=target,
                                     out=None if out is None else f"{out}/layer{index}")
            artifacts[key] = (artifact, index)
        artifact, compiled_for = artifacts[key]
        prefix = f"model.layers.{compiled_for}.mlp."
        weights = {prefix + name: t for name, t in tensors.items()}
        plans.append((block, SparseBlock(artifact, weights, num_threads=num_threads)))
    for block, compiled in plans:
        block._mixtile = compiled
        # GptOssMLP returns (hidden states, router scores); its decoder layer drops the scores.
        block._mixtile_pair = family == "gpt_oss"
        block._mixtile_forward = block.forward
        block.forward = types.MethodType(_patched_forward, block)
    return model


def _patched_forward(self, hidden_states):
    gate = getattr(self, "gate", None) or getattr(self, "router", None)
    scores = None
    if gate is not None and (gate._forward_hooks or gate._forward_pre_hooks or
                             torch.nn.modules.module._global_forward_hooks):
        # Hooks on the router (router logits, aux losses) still fire.
        routed = gate(hidden_states.reshape(-1, hidden_states.shape[-1]))
        if self._mixtile_pair:
            scores = routed[1]
    out = self._mixtile(hidden_states)
    return (out, scores) if self._mixtile_pair else out


def unpatch(model):
    """Restores every patched block's own forward; returns the model."""
    for _, block in _sparse_blocks(model):
        compiled = getattr(block, "_mixtile", None)
        if compiled is None:
            continue
        block.forward = block._mixtile_forward
        del block._mixtile_forward
        block._mixtile = None
        compiled.close()
    return model


def patched_layers(model):
    """Indices of the layers whose sparse block runs Mixtile."""
    return [i for i, block in _sparse_blocks(model) if getattr(block, "_mixtile", None) is not None]
