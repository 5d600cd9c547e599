#!/usr/bin/env python3
"""Whole MoE models on the CPU: Mixtile (mixtilec --model + mixtile-run) beside Hugging Face
transformers and llama.cpp (llama-cpp-python), all peers measured in the same run, on 2 threads,
same weights.

Models (transformers builds them from their config classes, random bf16 weights):
  olmoe      OLMoE-1B-7B-0924's config (OlmoeConfig defaults where they match the published
             allenai/OLMoE-1B-7B-0924 config.json; intermediate_size 1024 as published, the class
             default is 2048): hidden 2048, 16 heads (head_dim 128), 64 experts of 1024 top-8,
             norm_topk_prob false, q/k RMS norms, vocab 50304, rms eps 1e-5, rope theta 1e4;
             num_hidden_layers = 4 (of 16).
  qwen3_moe  Qwen3-30B-A3B's config (as published): hidden 2048, 32 heads, 4 kv heads, head_dim
             128, 128 experts of 768 top-8, norm_topk_prob true, vocab 151936, rms eps 1e-6, rope
             theta 1e6; num_hidden_layers = 2 (of 48).
  deepseek_v2  DeepSeek-V2-Lite's (3 of 27 layers; see MODELS).
  glm4_moe   GLM-4.5-Air's (3 of 46 layers; see MODELS), only when named (a 12 GB checkpoint).
  ernie4_5_moe  ERNIE-4.5-21B-A3B's (3 of 28 layers; see MODELS), only when named.
  olmoe_8l   olmoe at 8 layers, only when named (--models olmoe_8l; a 7.5 GB checkpoint): how the
             ratios move with depth.
  gpt_oss    gpt-oss-20b's (3 of 24 layers, the experts in bf16), only when named.
  gpt_oss_mxfp4  the same with the experts in MXFP4, the hub's form (blocks and scales; see
             MODELS), only when named.
Weights (torch.manual_seed(seed), drawn once, kept in --workdir and reused): embeddings N(0,1);
every projection (attention, experts, lm_head) N(0, 1/fan_in); routers N(0, --router-std^2)
(0.5: routing far from ties and spread over the experts; GLM's sigmoid router N(0, (2 x
router-std)^2 / hidden), whose logits N(0, 1) do not saturate the sigmoid into ties);
RMS-norm weights 1 + 0.1 N(0,1). Saved
with save_pretrained in bf16 (per-expert tensors, as transformers 5 writes them).

Per model:
  1. the checkpoint (built or reused), 2. `mixtilec --hf-config DIR/config.json --model -o ART`,
     timed (wall s, peak RSS);
  3. speed, 2 threads everywhere (torch.set_num_threads(2), OMP_WAIT_POLICY=PASSIVE for torch;
     mixtile-run --threads 2; llama.cpp n_threads=n_threads_batch=2):
       prefill  prompt 512, batch 1: tokens/s of the forward over the prompt with the last
                position's logits (HF: model(ids, logits_to_keep=1) with a fresh cache;
                Mixtile: mixtile-run --generate 1 --bench R, its prefill figure (every Mixtile
                figure: the median over --mixtile-invocations processes of --bench R medians);
                llama.cpp: Llama.eval(512 tokens), n_batch = n_ubatch = 512)
       decode   batch 1 and 8: prompts of 16 random tokens, N = 32 new tokens greedy; the rate is
                the tokens produced by the decode steps (B x (N - 1): the first new token comes
                out of the prefill) per second of those steps.
                HF: model.generate(do_sample=False, min_new_tokens=max_new_tokens) timed with
                max_new_tokens=N and with 1: rate = B (N - 1) / (median t_N - median t_1)
                (the generate-difference method: HF's per-step overhead counts, its prefill not).
                Mixtile: mixtile-run --generate N --bench R, its decode figure (decode steps only).
                llama.cpp: after the prompt, N - 1 single-token llama_decode steps with a numpy
                argmax of the logits; batch 8 through llama_decode on a second context of the same
                model with n_seq_max = 8 (llama_cpp.Llama keeps one sequence).
     HF: bf16, the attention implementation the model picks (recorded), and every experts
     implementation transformers 5 offers on the CPU (eager, grouped_mm, batched_mm; batched_mm is
     skipped where its per-(token, expert) gathered weights would exceed --batched-mm-cap-gb);
     the best is reported, as bench/cpu_hf_moe.py does.
  4. correctness: the 8 decode prompts' logits [8, 16, V] from mixtile-run -o against HF on the
     same bf16 checkpoint loaded in float32 (relative L2 over all positions; HF bf16's own error
     is given beside it), and the greedy tokens (N new ones per row) of Mixtile and of HF bf16
     against HF f32: tokens equal position by position, the first divergence per row and HF f32's
     top-1/top-2 logit margin there (a small margin = a near-tie, not a bug). llama.cpp's logits
     of prompt 0 against the same reference.
  5. where the time goes: Mixtile under `perf record` (cpu-clock, if perf works here), grouped by
     symbol into attention / experts / GEMM / norms / ... (prefill and decode batch 1); HF under
     torch.profiler with a record_function per module kind (attention, MoE block, lm_head, rest)
     for prefill and for decode steps, plus the top aten ops.
  6. llama.cpp: the checkpoint converted to a bf16 GGUF by convert_hf_to_gguf.py from the
     llama-cpp-python sdist's vendored llama.cpp (pip download llama-cpp-python --no-binary :all:,
     kept in --workdir), with the tokenizer replaced by "none" + vocab_size (the random checkpoint
     has no tokenizer; benchmarks feed token ids), then timed as above in a separate process.
  7. the JSON (bench/results/cpu-model-<date>.json; --quick: in --workdir) with every figure, the
     machine, versions and commands, and a table.

Usage:
  python3 bench/cpu_model.py                     # both models (~20-25 min on 2 idle cores)
  python3 bench/cpu_model.py --models olmoe
  python3 bench/cpu_model.py --quick             # prompt 128, 8 new tokens, 1 timed run each
Options: --workdir DIR (default /tmp/mixtile-bench-models), --threads 2, --out FILE, --reps R,
--impls eager,grouped_mm,batched_mm, --no-llama, --no-profile, --llama-src DIR (a llama.cpp
source tree with convert_hf_to_gguf.py), --quiet-wait S (wait for other processes to leave the
CPUs before each measurement; the busy fraction is recorded either way).
Exit status 1 when a Mixtile step failed or its logits are off (rel L2 > 5e-2).
"""
import os

# Before torch is imported: torch's OpenMP workers sleep instead of spinning between calls, so a
# child process (mixtile-run, llama.cpp) started right after does not compete with them.
CHILD_ENV = dict(os.environ)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MIXTILE_BUILD_DIR", os.path.join(ROOT, "build"))
MIXTILEC = os.path.join(BUILD, "bin", "mixtilec")
MIXTILE_RUN = os.path.join(BUILD, "bin", "mixtile-run")
THIS = os.path.abspath(__file__)

TOL = 5e-2  # Mixtile's logits vs HF f32: beyond this the run is marked FAILED (bf16 expects ~1e-2)

MODELS = {
    "olmoe": {
        "title": "OLMoE-1B-7B-0924 config, 4 of 16 layers",
        "family": "olmoe",
        "class": "OlmoeConfig",
        # The published allenai/OLMoE-1B-7B-0924 config.json; differences from OlmoeConfig()'s
        # defaults are recorded in the JSON (intermediate_size and num_hidden_layers).
        "config": dict(vocab_size=50304, hidden_size=2048, intermediate_size=1024, num_hidden_layers=4,
                       num_attention_heads=16, num_key_value_heads=16, hidden_act="silu",
                       max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=1, bos_token_id=None,
                       eos_token_id=50279, tie_word_embeddings=False, attention_bias=False, clip_qkv=None,
                       num_experts=64, num_experts_per_tok=8, norm_topk_prob=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "json_extra": {},
        "experts": 64, "top_k": 8, "ffn": 1024,
    },
    "qwen3_moe": {
        "title": "Qwen3-30B-A3B config, 2 of 48 layers",
        "family": "qwen3_moe",
        "class": "Qwen3MoeConfig",
        "config": dict(vocab_size=151936, hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768,
                       num_hidden_layers=2, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                       hidden_act="silu", max_position_embeddings=40960, rms_norm_eps=1e-6,
                       bos_token_id=151643, eos_token_id=151645, tie_word_embeddings=False,
                       attention_bias=False, use_sliding_window=False, sliding_window=None,
                       max_window_layers=48, num_experts=128, num_experts_per_tok=8, norm_topk_prob=True,
                       decoder_sparse_step=1, mlp_only_layers=[],
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # transformers 5.24 writes the expert count as num_local_experts only; the published
        # config.json (and mixtilec) use num_experts.
        "json_extra": {"num_experts": 128},
        "experts": 128, "top_k": 8, "ffn": 768,
    },
    "deepseek_v2": {
        "title": "DeepSeek-V2-Lite config, 3 of 27 layers (1 dense + 2 MoE), default RoPE",
        "family": "deepseek_v2",
        "class": "DeepseekV2Config",
        # The published deepseek-ai/DeepSeek-V2-Lite config.json, but 3 layers and RoPE without
        # its yarn scaling (factor 40 matters only past 4096 positions): multi-head latent
        # attention with kv_lora_rank 512 (q_lora_rank null), 16 heads of 128 + 64 rope dims,
        # values of 128; 64 routed experts of 1408 top-6 and 2 shared; layer 0 dense (10944).
        "config": dict(vocab_size=102400, hidden_size=2048, intermediate_size=10944, moe_intermediate_size=1408,
                       num_hidden_layers=3, num_attention_heads=16, num_key_value_heads=16, q_lora_rank=None,
                       kv_lora_rank=512, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128,
                       head_dim=64, n_routed_experts=64, n_shared_experts=2, num_experts_per_tok=6,
                       first_k_dense_replace=1, n_group=1, topk_group=1, topk_method="greedy",
                       norm_topk_prob=False, routed_scaling_factor=1.0, hidden_act="silu",
                       max_position_embeddings=163840, rms_norm_eps=1e-6, bos_token_id=100000,
                       eos_token_id=100001, tie_word_embeddings=False, attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
        "json_extra": {},
        "experts": 64, "top_k": 6, "ffn": 1408,
    },
    "glm4_moe": {
        "title": "GLM-4.5-Air config, 3 of 46 layers (1 dense + 2 MoE)",
        "family": "glm4_moe",
        "class": "Glm4MoeConfig",
        # The published zai-org/GLM-4.5-Air config.json, but 3 layers and no multi-token
        # prediction layer (num_nextn_predict_layers 0; transformers never runs it): 96 heads of
        # 128 (8 kv heads) rotating the first half of each head, q/k/v biases, 128 routed experts
        # of 1408 top-8 (sigmoid, selection bias) and 1 shared; layer 0 dense (10944).
        "config": dict(vocab_size=151552, hidden_size=4096, intermediate_size=10944, moe_intermediate_size=1408,
                       num_hidden_layers=3, num_attention_heads=96, num_key_value_heads=8, head_dim=128,
                       n_routed_experts=128, n_shared_experts=1, num_experts_per_tok=8, first_k_dense_replace=1,
                       n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=1.0,
                       hidden_act="silu", max_position_embeddings=131072, rms_norm_eps=1e-5,
                       pad_token_id=151329, eos_token_id=[151329, 151336, 151338], tie_word_embeddings=False,
                       attention_bias=True, use_qk_norm=False, num_mtp_layers=0,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0,
                                        "partial_rotary_factor": 0.5}),
        "json_extra": {},
        "experts": 128, "top_k": 8, "ffn": 1408,
        "sigmoid_router": True,
        "optional": True,
    },
    "ernie4_5_moe": {
        "title": "ERNIE-4.5-21B-A3B config, 3 of 28 layers (1 dense + 2 MoE)",
        "family": "ernie4_5_moe",
        "class": "Ernie4_5_MoeConfig",
        # The published baidu/ERNIE-4.5-21B-A3B-PT config.json, but 3 layers: 20 heads of 128
        # (4 kv heads), RoPE on adjacent pairs (theta 5e5), 64 routed experts of 1536 top-6
        # (softmax, selection bias) and 2 shared; layer 0 dense (12288); tied embeddings.
        "config": dict(vocab_size=103424, hidden_size=2560, intermediate_size=12288, moe_intermediate_size=1536,
                       num_hidden_layers=3, num_attention_heads=20, num_key_value_heads=4, hidden_act="silu",
                       max_position_embeddings=131072, rms_norm_eps=1e-5, pad_token_id=0, bos_token_id=1,
                       eos_token_id=2, tie_word_embeddings=True, use_bias=False, moe_num_experts=64, moe_k=6,
                       moe_num_shared_experts=2, moe_layer_start_index=1, moe_layer_end_index=-1,
                       moe_layer_interval=1, moe_norm_min=1e-12,
                       rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
        "json_extra": {},
        "experts": 64, "top_k": 6, "ffn": 1536,
        "optional": True,
    },
    "gpt_oss": {
        "title": "gpt-oss-20b config, 3 of 24 layers, bf16 experts",
        "family": "gpt_oss",
        "class": "GptOssConfig",
        # The published openai/gpt-oss-20b config.json, but 3 layers (sliding, full, sliding)
        # and the experts in bf16 (the hub's are MXFP4; unsloth/gpt-oss-20b-BF16's form, as
        # transformers saves a dequantized model): 64 heads of 64 (8 kv heads) with biases and
        # sinks, YaRN x32, 32 experts of 2880 top-4 with biases and the clamped SwiGLU.
        "config": dict(vocab_size=201088, hidden_size=2880, intermediate_size=2880, num_hidden_layers=3,
                       num_attention_heads=64, num_key_value_heads=8, head_dim=64, num_local_experts=32,
                       num_experts_per_tok=4, sliding_window=128,
                       layer_types=["sliding_attention", "full_attention", "sliding_attention"],
                       max_position_embeddings=131072, rms_norm_eps=1e-5, attention_bias=True,
                       swiglu_limit=7.0, tie_word_embeddings=False, eos_token_id=200002,
                       pad_token_id=199999, hidden_act="silu",
                       rope_parameters={"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                        "beta_slow": 1.0, "truncate": False,
                                        "original_max_position_embeddings": 4096,
                                        "rope_theta": 150000.0}),
        "json_extra": {},
        "experts": 32, "top_k": 4, "ffn": 2880,
        "optional": True,
    },
}
# The same OLMoE at 8 layers: how the ratios move with depth (the last layer's MLP runs for the
# logit rows only, 1/L of the sparse work; the 4-layer model overstates that). Not in the default
# set (`optional`): its checkpoint is 7.5 GB.
MODELS["olmoe_8l"] = dict(MODELS["olmoe"], title="OLMoE-1B-7B-0924 config, 8 of 16 layers",
                          config=dict(MODELS["olmoe"]["config"], num_hidden_layers=8), optional=True)
# gpt-oss-20b as the hub ships it: the experts in MXFP4 (`<name>_blocks` / `_scales`, the random
# bf16 experts quantized as quantize_mxfp4 says), everything else bf16. Mixtile multiplies the
# e2m1 codes as they are (4.25 bits a weight); transformers dequantizes them to bf16 on a CPU
# (Mxfp4Config(dequantize=True)); llama.cpp's converter keeps them MXFP4.
MODELS["gpt_oss_mxfp4"] = dict(MODELS["gpt_oss"], title="gpt-oss-20b config, 3 of 24 layers, MXFP4 experts",
                               mxfp4=True)
# The whole gpt-oss-20b (24 layers, 13 GB as the hub ships it): too large for transformers to build
# or dequantize on a 24 GB machine (42 GB in bf16), so it is written directly (synthetic_gpt_oss)
# and HF is not run; Mixtile and llama.cpp are timed, their logits compared with each other.
MODELS["gpt_oss_mxfp4_24l"] = dict(
    MODELS["gpt_oss_mxfp4"], title="gpt-oss-20b config, all 24 layers, MXFP4 experts (synthetic)",
    synthetic=True, no_hf="transformers dequantizes MXFP4 to bf16 on a CPU: 42 GB, more than this machine has",
    config=dict(MODELS["gpt_oss"]["config"], num_hidden_layers=24,
                layer_types=["sliding_attention", "full_attention"] * 12))


def synthetic_gpt_oss(torch, d, conf, seed):
    """Writes gpt-oss's checkpoint as the hub ships it (bf16, MXFP4 experts) without building the
    model: one shard per layer plus one for the embeddings, an index, config.json. Values follow
    the module docstring's scheme (embeddings N(0,1), projections N(0, 1/fan_in), routers N(0, 0.5^2),
    norms 1 + 0.1 N(0,1), biases N(0, 0.02^2), sinks and router biases N(0, 0.5^2)); the experts'
    codes are uniform random bytes with scale 2^-7 (std ~0.023, about 1/sqrt(2880))."""
    from safetensors.torch import save_file
    g = torch.Generator().manual_seed(seed)
    D, V, L = conf["hidden_size"], conf["vocab_size"], conf["num_hidden_layers"]
    H, KV, hd = conf["num_attention_heads"], conf["num_key_value_heads"], conf["head_dim"]
    E, F = conf["num_local_experts"], conf["intermediate_size"]
    bf = torch.bfloat16

    def normal(shape, std, mean=0.0):
        return (torch.randn(shape, generator=g) * std + mean).to(bf)
    os.makedirs(d, exist_ok=True)
    weight_map = {}
    shards = [("embeddings", {"model.embed_tokens.weight": normal((V, D), 1.0),
                              "lm_head.weight": normal((V, D), D ** -0.5),
                              "model.norm.weight": normal((D,), 0.1, 1.0)})]
    for i in range(L):
        p = f"model.layers.{i}."
        t = {p + "input_layernorm.weight": normal((D,), 0.1, 1.0),
             p + "post_attention_layernorm.weight": normal((D,), 0.1, 1.0),
             p + "self_attn.q_proj.weight": normal((H * hd, D), D ** -0.5), p + "self_attn.q_proj.bias": normal((H * hd,), 0.02),
             p + "self_attn.k_proj.weight": normal((KV * hd, D), D ** -0.5), p + "self_attn.k_proj.bias": normal((KV * hd,), 0.02),
             p + "self_attn.v_proj.weight": normal((KV * hd, D), D ** -0.5), p + "self_attn.v_proj.bias": normal((KV * hd,), 0.02),
             p + "self_attn.o_proj.weight": normal((D, H * hd), (H * hd) ** -0.5), p + "self_attn.o_proj.bias": normal((D,), 0.02),
             p + "self_attn.sinks": normal((H,), 0.5),
             p + "mlp.router.weight": normal((E, D), 0.5), p + "mlp.router.bias": normal((E,), 0.5),
             p + "mlp.experts.gate_up_proj_bias": normal((E, 2 * F), 0.02),
             p + "mlp.experts.down_proj_bias": normal((E, D), 0.02)}
        for name, out, depth in (("gate_up_proj", 2 * F, D), ("down_proj", D, F)):
            t[p + f"mlp.experts.{name}_blocks"] = torch.randint(0, 256, (E, out, depth // 32, 16), generator=g,
                                                                dtype=torch.uint8)
            t[p + f"mlp.experts.{name}_scales"] = torch.full((E, out, depth // 32), 127 - 7, dtype=torch.uint8)
        shards.append((f"layer{i:02d}", t))
    for n, (tag, tensors) in enumerate(shards):
        f = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(d, f), metadata={"format": "pt"})
        weight_map.update({k: f for k in tensors})
    total = sum(os.path.getsize(os.path.join(d, f)) for f in set(weight_map.values()))
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(d, "model.safetensors.index.json"), "w"), indent=2)
    full = dict(conf, architectures=["GptOssForCausalLM"], model_type="gpt_oss", dtype="bfloat16",
                quantization_config={"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                "model.embed_tokens", "lm_head"],
                                     "quant_method": "mxfp4"})
    json.dump(full, open(os.path.join(d, "config.json"), "w"), indent=2, sort_keys=True)
    n_params = sum(t.numel() * (2 if t.dtype == torch.uint8 and k.endswith("_blocks") else 1)
                   for _, ts in shards for k, t in ts.items() if not k.endswith("_scales"))
    return n_params, total


def quantize_mxfp4(torch, w):
    """One expert's [N, K] weight (out-major) as the hub stores MXFP4: blocks [N, K/32, 16] U8
    (two e2m1 codes a byte, the even element in the low nibble) and scales [N, K/32] U8 (e8m0:
    127 + the power of two each group of 32 is divided by, the smallest putting its largest
    magnitude within 6), each value rounded to the nearest e2m1 value (test/helpers/make_model.py's
    quantize_mxfp4, in torch and per expert to bound the memory)."""
    n, k = w.shape
    g = w.float().reshape(n, k // 32, 32)
    top = g.abs().amax(-1)
    exp = torch.where(top > 0, torch.ceil(torch.log2(top.clamp_min(1e-30) / 6.0)), torch.zeros_like(top))
    exp = exp.clamp(-127, 127)
    scaled = g / torch.exp2(exp)[..., None]
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])
    idx = (scaled.abs()[..., None] - grid).abs().argmin(-1)  # the first (even) code on ties
    codes = (idx | ((scaled < 0).long() << 3)).to(torch.uint8)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).to(torch.uint8)
    return blocks.contiguous(), (exp + 127).to(torch.uint8).contiguous()


def mxfp4_checkpoint(torch, d):
    """Rewrites the bf16 gpt-oss checkpoint in `d` as the hub's MXFP4 form: each in-major
    `experts.gate_up_proj` [E, D, 2F] / `experts.down_proj` [E, F, D] becomes `<name>_blocks` and
    `<name>_scales` of its [E, out, in] transpose; config.json gains the quantization_config."""
    from safetensors.torch import load_file, save_file
    index = os.path.join(d, "model.safetensors.index.json")
    weight_map = json.load(open(index))["weight_map"] if os.path.exists(index) else None
    for f in sorted(glob.glob(os.path.join(d, "*.safetensors"))):
        tensors = load_file(f)
        for name in [n for n in tensors if n.endswith((".experts.gate_up_proj", ".experts.down_proj"))]:
            w = tensors.pop(name)
            parts = [quantize_mxfp4(torch, w[e].transpose(0, 1)) for e in range(w.shape[0])]
            tensors[name + "_blocks"] = torch.stack([b for b, _ in parts])
            tensors[name + "_scales"] = torch.stack([s for _, s in parts])
            if weight_map is not None:
                shard = weight_map.pop(name)
                weight_map[name + "_blocks"] = weight_map[name + "_scales"] = shard
            del w, parts
        save_file(tensors, f + ".tmp", metadata={"format": "pt"})
        os.replace(f + ".tmp", f)
        del tensors
        gc.collect()
    if weight_map is not None:
        idx = json.load(open(index))
        idx["weight_map"] = weight_map
        json.dump(idx, open(index, "w"), indent=2)
    cj = os.path.join(d, "config.json")
    conf = json.load(open(cj))
    conf["quantization_config"] = {"modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                              "model.embed_tokens", "lm_head"],
                                   "quant_method": "mxfp4"}
    json.dump(conf, open(cj, "w"), indent=2, sort_keys=True)


def hf_load_kwargs(name):
    """from_pretrained's extra arguments: an MXFP4 checkpoint dequantized to bf16 (as on any CPU)."""
    if not MODELS[name].get("mxfp4"):
        return {}
    from transformers import Mxfp4Config
    return {"quantization_config": Mxfp4Config(dequantize=True)}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Machine, processes
# ---------------------------------------------------------------------------------------------


def machine_info():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=20).stdout
        fields = {k.strip(): v.strip() for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l)}
        info["model_name"] = fields.get("Model name")
        flags = set(fields.get("Flags", "").split())
        info["flags"] = {f: f in flags for f in ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f",
                                                  "avx512_fp16", "avx512_vnni", "avx2")}
        info["caches"] = {k: fields[k] for k in ("L1d cache", "L2 cache", "L3 cache") if k in fields}
        info["threads_per_core"] = fields.get("Thread(s) per core")
    except Exception as e:  # noqa: BLE001
        info["lscpu_error"] = str(e)
    try:
        info["mem_total_gb"] = int(open("/proc/meminfo").readline().split()[1]) / 1e6
    except Exception:  # noqa: BLE001
        pass
    return info


def run_child(cmd, env=None, cwd=None, timeout=None):
    """Runs cmd; returns (stdout, stderr, rc, peak RSS bytes via GNU time, wall s)."""
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
            tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as fr:
        full = [gnu_time, "-f", "%M", "-o", fr.name] + cmd if gnu_time else cmd
        t0 = time.monotonic()
        p = subprocess.Popen(full, stdout=fo, stderr=fe, env=env if env is not None else CHILD_ENV, cwd=cwd)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            fe.seek(0, 2)
            fe.write(f"\n[cpu_model.py: killed after {timeout} s]\n".encode())
        wall = time.monotonic() - t0
        fo.seek(0)
        fe.seek(0)
        rss = None
        if gnu_time:
            m = re.findall(r"^(\d+)\s*$", fr.read(), re.M)
            rss = int(m[-1]) * 1024 if m else None
        return fo.read().decode(errors="replace"), fe.read().decode(errors="replace"), p.returncode, rss, wall


class StepFailed(RuntimeError):
    pass


def checked(cmd, what, **kw):
    out, err, rc, rss, wall = run_child(cmd, **kw)
    if rc != 0:
        raise StepFailed(f"{what} failed (rc {rc}): {shlex.join(cmd)}\n{err.strip()[-3000:]}\n{out.strip()[-1500:]}")
    return out, err, rss, wall


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except Exception:  # noqa: BLE001
        return None


def cpu_busy(seconds=0.5):
    """Fraction of all CPUs busy over `seconds` while this script sleeps: other processes' load."""
    def snap():
        v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return sum(v), v[3] + v[4]
    try:
        a = snap()
        time.sleep(seconds)
        b = snap()
        total = b[0] - a[0]
        return 1.0 - (b[1] - a[1]) / total if total else 0.0
    except Exception:  # noqa: BLE001
        return None


class Others:
    """Other processes' share of the CPUs during a measurement: the machine's busy time
    (/proc/stat) less this process's and its waited-for children's CPU time (getrusage), over
    cpus x wall. 0 = the measurement had the machine to itself; 0.5 = others kept half of it busy."""

    def __enter__(self):
        self.t0, self.busy0, self.own0 = time.monotonic(), self._busy(), self._own()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.t0
        try:
            others = (self._busy() - self.busy0) - (self._own() - self.own0)
            self.value = max(0.0, others / ((os.cpu_count() or 1) * wall)) if wall > 0 else None
        except Exception:  # noqa: BLE001
            self.value = None
        return False

    @staticmethod
    def _busy():
        v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own():
        import resource
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def wait_quiet(limit_s, threshold=0.25):
    t0 = time.monotonic()
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.monotonic() - t0 < limit_s:
        time.sleep(1.5)
        busy = cpu_busy()
    return busy


def read_bandwidth(work, threads):
    """The machine's streaming read bandwidth: bench/machine_limits.cpp (integer sum over 1 GiB,
    median of 7), built here with g++ -fopenmp -lopenblas, as bench/cpu_hf_moe.py does."""
    exe = os.path.join(work, "machine_limits")
    try:
        if not os.path.exists(exe):
            subprocess.run(["g++", "-O3", "-march=native", "-fopenmp", os.path.join(ROOT, "bench", "machine_limits.cpp"),
                            "-o", exe, "-lopenblas"], check=True, capture_output=True, text=True)
        busy = wait_quiet(10)
        out, _, _, _ = checked([exe, str(threads)], "machine_limits")
        return {"gbs": json.loads(out)["read_bandwidth_gbs"], "source": "bench/machine_limits.cpp",
                "others_cpu_busy_before": busy}
    except Exception as e:  # noqa: BLE001
        return {"gbs": None, "error": str(e).strip()[:500]}


def decode_bytes_per_token(conf):
    """Weight bytes (bf16) one batch-1 decode step must read: lm_head, and per layer the
    attention projections and norms, the router and the top-k experts' three matrices (DeepSeek:
    latent attention's projections, dense MLPs in the first first_k_dense_replace layers, shared
    experts beside the routed ones)."""
    D, V, L = conf["hidden_size"], conf["vocab_size"], conf["num_hidden_layers"]
    if conf.get("model_type") == "ernie4_5_moe":
        H, KV = conf["num_attention_heads"], conf["num_key_value_heads"]
        hd = conf.get("head_dim") or D // H
        attn = 2 * D * H * hd + 2 * D * KV * hd + 2 * D
        start, interval = conf.get("moe_layer_start_index", 1), conf.get("moe_layer_interval", 1)
        end = conf.get("moe_layer_end_index", -1)
        end = L - 1 if end == -1 else end
        sparse = sum(1 for i in range(L) if (i + 1) % interval == 0 and start <= i <= end)
        F, E, k = conf["moe_intermediate_size"], conf["moe_num_experts"], conf["moe_k"]
        moe = 2 * E * D + (k + conf.get("moe_num_shared_experts", 0)) * 3 * D * F  # f32 router
        layers = (L - sparse) * (attn + 3 * D * conf["intermediate_size"]) + sparse * (attn + moe)
        return 2 * (V * D + D + layers + D)
    if conf.get("model_type") in ("glm4_moe", "dots1"):
        H, KV = conf["num_attention_heads"], conf["num_key_value_heads"]
        hd = conf.get("head_dim") or D // H
        bias = conf.get("attention_bias", False)
        attn = 2 * D * H * hd + 2 * D * KV * hd + (H * hd + 2 * KV * hd if bias else 0) + 2 * D
        dense = conf.get("first_k_dense_replace", 0)
        F, E, k = conf["moe_intermediate_size"], conf["n_routed_experts"], conf["num_experts_per_tok"]
        moe = 2 * E * D + (k + conf.get("n_shared_experts", 0)) * 3 * D * F  # the router is f32
        layers = dense * (attn + 3 * D * conf["intermediate_size"]) + (L - dense) * (attn + moe)
        return 2 * (V * D + D + layers + D)
    if conf.get("model_type", "").startswith("deepseek"):
        H, r, nope = conf["num_attention_heads"], conf["qk_rope_head_dim"], conf["qk_nope_head_dim"]
        vd, kvr, qr = conf["v_head_dim"], conf["kv_lora_rank"], conf.get("q_lora_rank")
        q = D * H * (nope + r) if not qr else D * qr + qr + qr * H * (nope + r)
        attn = q + D * (kvr + r) + kvr + kvr * H * (nope + vd) + H * vd * D
        dense = conf.get("first_k_dense_replace", 0)
        F, E, k = conf["moe_intermediate_size"], conf["n_routed_experts"], conf["num_experts_per_tok"]
        moe = E * D + (k + conf.get("n_shared_experts", 0)) * 3 * D * F
        layers = dense * (attn + 2 * D + 3 * D * conf["intermediate_size"]) + (L - dense) * (attn + 2 * D + moe)
        return 2 * (V * D + D + layers + D)
    H, KV = conf["num_attention_heads"], conf["num_key_value_heads"]
    hd = conf.get("head_dim") or D // H
    E = conf.get("num_experts") or conf.get("num_local_experts")
    k = conf["num_experts_per_tok"]
    F = conf.get("moe_intermediate_size") or conf["intermediate_size"]
    attn = D * H * hd * 2 + 2 * D * KV * hd
    norms = 2 * D + (2 * D if conf.get("model_type") == "olmoe" else 2 * hd)
    per_layer = attn + norms + E * D + k * 3 * D * F
    params = V * D + D + L * per_layer + D  # lm_head, embedding row, layers, final norm
    # MXFP4 experts (gpt-oss's hub form): 4 bits a weight and one byte of scale per 32.
    mxfp4 = (conf.get("quantization_config") or {}).get("quant_method") == "mxfp4"
    experts = L * k * 3 * D * F
    return 2 * (params - experts) + (17 / 32 if mxfp4 else 2) * experts


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------


def config_object(name):
    import transformers
    spec = MODELS[name]
    cls = getattr(transformers, spec["class"])
    cfg = cls(**spec["config"])
    defaults = cls().to_dict()
    ours = cfg.to_dict()
    differ = {k: {"ours": ours.get(k), "class_default": defaults.get(k)} for k in sorted(set(ours) | set(defaults))
              if k not in ("transformers_version", "architectures", "dtype", "_name_or_path")
              and ours.get(k) != defaults.get(k)}
    return cfg, differ


def init_weights(torch, model, seed, router_std, sigmoid=False):
    """The module docstring's scheme, parameter by parameter, in place (bf16)."""
    torch.manual_seed(seed)
    counts = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                kind = "norm"
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, dtype=torch.float32))
            elif name.endswith("embed_tokens.weight"):
                kind = "embedding"
                p.normal_(0.0, 1.0)
            elif re.search(r"\.mlp\.(gate|router)\.weight$", name):
                kind = "router"
                # A sigmoid router (GLM) with N(0, router_std^2) weights over thousands of
                # inputs saturates: most scores round to 1.0 and the top-k is a tie. Its
                # logits get the spread a softmax router's have relative to each other instead
                # (std router_std * 2 over the inputs: about N(0, 1)).
                std = router_std * 2 / math.sqrt(p.shape[1]) if sigmoid else router_std
                p.normal_(0.0, std)
            elif name.endswith(("_proj_bias", ".sinks", ".mlp.router.bias")):
                kind = "bias"  # gpt-oss: expert biases, sinks, router bias
                p.normal_(0.0, 0.5 if name.endswith((".sinks", ".mlp.router.bias")) else 0.02)
            elif p.dim() == 2:
                kind = "projection"
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif p.dim() == 3 and name.endswith((".experts.gate_up_proj", ".experts.down_proj")) \
                    and "GptOss" in type(model).__name__:  # gpt-oss: in-major [E, in, out]
                kind = "experts"
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]))
            elif p.dim() == 3:  # fused experts [E, out, in] (transformers 5)
                kind = "experts"
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[2]))
            else:
                kind = "other"
                p.normal_(0.0, 0.02)
            counts[kind] = counts.get(kind, 0) + p.numel()
    return counts


def ensure_checkpoint(name, args, entry):
    import torch
    from transformers import AutoModelForCausalLM
    spec = MODELS[name]
    d = os.path.join(args.workdir, name, "hf")
    meta_path = os.path.join(d, "cpu_model_meta.json")
    want = {"config": spec["config"], "json_extra": spec["json_extra"], "seed": args.seed,
            "router_std": args.router_std, "scheme": "v2" if spec.get("sigmoid_router") else "v1"}
    if spec.get("mxfp4"):
        want["mxfp4"] = True
    if os.path.exists(meta_path):
        try:
            have = json.load(open(meta_path))
            if have.get("want") == json.loads(json.dumps(want)):
                entry["checkpoint"] = dict(have, reused=True, dir=d)
                log(f"[{name}] reusing the checkpoint in {d}")
                return d
        except Exception:  # noqa: BLE001
            pass
    shutil.rmtree(d, ignore_errors=True)
    t0 = time.monotonic()
    if spec.get("synthetic"):
        n_params, total = synthetic_gpt_oss(torch, d, spec["config"], args.seed)
        files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(d, "*.safetensors")))
        meta = {"want": want, "params": n_params, "bytes": total, "files": files, "synthetic": True,
                "build_s": time.monotonic() - t0}
        json.dump(meta, open(meta_path, "w"), indent=2, default=str)
        entry["checkpoint"] = dict(meta, reused=False, dir=d)
        log(f"[{name}] synthetic checkpoint: {n_params / 1e9:.3f} G params, {total / 1e9:.2f} GB in {d}")
        return d
    cfg, differ = config_object(name)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    t_build = time.monotonic() - t0
    counts = init_weights(torch, model, args.seed, args.router_std, sigmoid=spec.get("sigmoid_router", False))
    t_init = time.monotonic() - t0 - t_build
    model.save_pretrained(d)
    cj = os.path.join(d, "config.json")
    conf = json.load(open(cj))
    conf.update(spec["json_extra"])
    json.dump(conf, open(cj, "w"), indent=2, sort_keys=True)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    gc.collect()
    if spec.get("mxfp4"):
        mxfp4_checkpoint(torch, d)
    files = sorted(glob.glob(os.path.join(d, "*.safetensors")))
    meta = {"want": want, "params": n_params, "params_by_kind": counts,
            "bytes": sum(os.path.getsize(f) for f in files), "files": [os.path.basename(f) for f in files],
            "config_differs_from_class_defaults": differ, "build_s": t_build, "init_s": t_init,
            "save_s": time.monotonic() - t0 - t_build - t_init}
    json.dump(meta, open(meta_path, "w"), indent=2, default=str)
    entry["checkpoint"] = dict(meta, reused=False, dir=d)
    log(f"[{name}] checkpoint: {n_params / 1e9:.3f} G params, {meta['bytes'] / 1e9:.2f} GB bf16 in {d} "
        f"({time.monotonic() - t0:.0f} s)")
    return d


def mem_available():
    """MemAvailable from /proc/meminfo, bytes (0 where unreadable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write_ids(path, ids):
    import numpy as np
    from safetensors.numpy import save_file
    save_file({"input_ids": ids.astype(np.int64), "attention_mask": np.ones_like(ids, dtype=np.int64)}, path)


# ---------------------------------------------------------------------------------------------
# Mixtile
# ---------------------------------------------------------------------------------------------


def mixtile_rates(out):
    pre = re.search(r"prefill tokens/s: ([0-9.eE+-]+)", out)
    dec = re.search(r"decode tokens/s: ([0-9.eE+-]+)", out)
    return (float(pre.group(1)) if pre else None), (float(dec.group(1)) if dec else None)


def mixtile_bench(art, ckpt, ids, threads, reps, generate, args):
    """mixtile-run --bench reps, --mixtile-invocations times (fresh processes: the rate moves more
    between processes than within one); the figure is the median of the invocations' medians."""
    busy = wait_quiet(args.quiet_wait)
    cmd = [MIXTILE_RUN, art, "--weights", ckpt, "--inputs", ids, "--threads", str(threads),
           "--generate", str(generate), "--bench", str(reps)]
    pres, decs, rss, walls, outs = [], [], 0, [], []
    with Others() as oth:
        for _ in range(args.mixtile_invocations):
            time.sleep(0.5)
            out, err, r, wall = checked(cmd, "mixtile-run --bench")
            pre, dec = mixtile_rates(out)
            pres.append(pre)
            decs.append(dec)
            rss = max(rss, r or 0)
            walls.append(wall)
            outs.append(out.strip()[-300:])
    med = lambda v: statistics.median(v) if all(x is not None for x in v) else None  # noqa: E731
    return {"prefill_tokens_s": med(pres), "decode_tokens_s": med(decs), "prefill_per_invocation": pres,
            "decode_per_invocation": decs, "reps": reps, "invocations": args.mixtile_invocations,
            "peak_rss_bytes": rss, "wall_s": walls, "command": shlex.join(cmd), "stdout": outs,
            "others_cpu_busy_before": busy, "others_cpu_during": oth.value}


PERF_DSO_GROUPS = [  # (group, regex over the shared object), checked first
    ("OpenMP runtime (barrier / spin waits)", r"libgomp|libomp|libiomp"),
    ("kernel (page faults, syscalls)", r"\[kernel"),
]
PERF_GROUPS = [  # (group, regex over the symbol, lower case), first match wins
    ("attention", r"attend|attn|attention|softmax|rope|rotary|kv_?cache|flash"),
    ("experts FFN (MoE)", r"expert|hiddentileepilogue|outputtileepilogue|pack_token|swiglu|moe|route|topk|router|"
                          r"scatter|combine|small_block<[^,]*, true|small_block<true|"
                          r"small_blocks_of_chunk<[^,]*, true|small_block_loop<[^,]*, true|"
                          r"dp_small_block<true|dp_tile<2,|small_block_dispatch<[^,]*, true|"
                          r"mxfp4|fp8"),  # quantized weights are the routed experts' only
    # The avx512_bf16 register tiles: gated ones (dp_tile<2, ...>) are the experts' gate/up
    # GEMMs above; plain ones serve the dense linears and the experts' down projections alike.
    ("register tiles (q/k/v/o, lm_head, experts' down projection)", r"dp_tile<1,"),
    # The GEMV-shaped path's plain blocks serve both the dense linears and the experts' down
    # projections (one template, told apart only by a call graph).
    ("GEMV path (lm_head, q/k/v/o, experts' down projection)",
     r"small_block<|small_blocks_of_chunk<|small_block_loop<|dp_small_block<|small_block_dispatch<"),
    ("dense linear (q/k/v/o, lm_head)", r"linear|gemm|matmul|dot<|transpose"),
    ("norms / residual / embedding", r"norm|add_rows|embed|gather|argmax"),
    ("memory", r"memcpy|memset|memmove|malloc|free"),
]


def perf_profile(art, ckpt, ids, threads, generate, reps, work, tag):
    """perf record (cpu-clock) over mixtile-run; self time grouped by symbol."""
    if not shutil.which("perf"):
        return {"error": "perf not installed"}
    data = os.path.join(work, f"perf-{tag}.data")
    cmd = ["perf", "record", "-e", "cpu-clock", "-F", "999", "-o", data, "--", MIXTILE_RUN, art, "--weights", ckpt,
           "--inputs", ids, "--threads", str(threads), "--generate", str(generate), "--bench", str(reps)]
    out, err, rc, _, wall = run_child(cmd)
    if rc != 0 or not os.path.exists(data):
        return {"error": f"perf record rc {rc}: {err.strip()[-400:]}", "command": shlex.join(cmd)}
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,sym",
                          "--percent-limit", "0.2"], capture_output=True, text=True, timeout=300)
    rows = []
    for line in rep.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(4).strip()))
    groups = {}
    for pct, dso, sym in rows:
        g = next((gname for gname, rx in PERF_DSO_GROUPS if re.search(rx, dso.lower())), None) or \
            next((gname for gname, rx in PERF_GROUPS if re.search(rx, sym.lower())), "other")
        groups[g] = groups.get(g, 0.0) + pct
    by_dso = {}
    for pct, dso, _ in rows:
        by_dso[dso] = by_dso.get(dso, 0.0) + pct
    try:
        os.remove(data)
    except OSError:
        pass
    return {"command": shlex.join(cmd), "wall_s": wall, "note": "whole process (load, warm-up and timed runs); "
            "self time by symbol, grouped by name; percentages of all samples >= 0.2%",
            "groups_pct": dict(sorted(groups.items(), key=lambda kv: -kv[1])),
            "by_dso_pct": dict(sorted(by_dso.items(), key=lambda kv: -kv[1])[:8]),
            "top_symbols": [{"pct": p, "dso": d, "sym": s[:120]} for p, d, s in rows[:25]]}


def run_mixtile(name, ckpt, paths, args, entry):
    art = os.path.join(args.workdir, name, "mixtile")
    shutil.rmtree(art, ignore_errors=True)
    cmd = [MIXTILEC, "--hf-config", os.path.join(ckpt, "config.json"), "--model", "-o", art]
    busy = wait_quiet(args.quiet_wait)
    out, err, rc, rss, wall = run_child(cmd)
    mx = entry["mixtile"] = {"compile": {"command": shlex.join(cmd), "wall_s": wall, "peak_rss_bytes": rss,
                                         "rc": rc, "others_cpu_busy_before": busy,
                                         "output": (out + err).strip()[-2000:]}}
    if rc != 0:
        raise StepFailed(f"mixtilec failed (rc {rc}): {shlex.join(cmd)}\n{(err + out).strip()[-3000:]}")
    try:
        mx["compile"]["artifact_bytes"] = sum(os.path.getsize(os.path.join(dp, f))
                                              for dp, _, fs in os.walk(art) for f in fs)
    except OSError:
        pass
    log(f"[{name}] mixtilec --model: {wall:.1f} s (peak RSS {rss / 1e9 if rss else 0:.2f} GB)")
    # Correctness outputs first (they also bring the checkpoint into the page cache).
    lo = os.path.join(args.workdir, name, "mixtile_logits.safetensors")
    sq = os.path.join(args.workdir, name, "mixtile_sequences.safetensors")
    cmd = [MIXTILE_RUN, art, "--weights", ckpt, "--inputs", paths["check"], "--threads", str(args.threads), "-o", lo]
    _, _, rss_fwd, wall_fwd = checked(cmd, "mixtile-run -o logits")
    mx["logits_command"] = shlex.join(cmd)
    mx["logits_peak_rss_bytes"] = rss_fwd
    cmd = [MIXTILE_RUN, art, "--weights", ckpt, "--inputs", paths["check"], "--threads", str(args.threads),
           "--generate", str(args.new_tokens), "-o", sq]
    checked(cmd, "mixtile-run --generate -o sequences")
    mx["sequences_command"] = shlex.join(cmd)
    # Speed.
    pre = mixtile_bench(art, ckpt, paths["prefill"], args.threads, args.reps_mixtile, 1, args)
    mx["prefill"] = dict(pre, tokens=args.prompt, batch=1)
    log(f"[{name}] Mixtile prefill {args.prompt}: {pre['prefill_tokens_s']} tokens/s (invocations {pre['prefill_per_invocation']})")
    for b in args.batches:
        r = mixtile_bench(art, ckpt, paths[f"decode{b}"], args.threads, args.reps_mixtile, args.new_tokens, args)
        mx[f"decode_b{b}"] = dict(r, batch=b, prompt=args.decode_prompt, new_tokens=args.new_tokens)
        log(f"[{name}] Mixtile decode batch {b}: {r['decode_tokens_s']} tokens/s (invocations {r['decode_per_invocation']}; its prefill of "
            f"{b}x{args.decode_prompt}: {r['prefill_tokens_s']} tokens/s)")
    if args.profile:
        mx["perf_prefill"] = perf_profile(art, ckpt, paths["prefill"], args.threads, 1, 2, args.workdir, f"{name}-p")
        mx["perf_decode_b1"] = perf_profile(art, ckpt, paths["decode1"], args.threads, min(args.new_tokens, 16), 1,
                                            args.workdir, f"{name}-d")
        for k in ("perf_prefill", "perf_decode_b1"):
            g = mx[k].get("groups_pct") or mx[k].get("error")
            log(f"[{name}] Mixtile {k}: {g}")
    return lo, sq


# ---------------------------------------------------------------------------------------------
# Hugging Face
# ---------------------------------------------------------------------------------------------


def experts_implementations():
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
        registered = list(ALL_EXPERTS_FUNCTIONS._global_mapping)
    except Exception:  # noqa: BLE001
        registered = []
    gpu_only = {"deepgemm", "sonicmoe", "deepgemm_megamoe"}
    return ["eager"] + [n for n in registered if n not in gpu_only and n != "eager"], registered


def timed(fn, reps):
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def hf_generate(torch, model, ids, n, pad, min_new=True, **kw):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=n, min_new_tokens=n if min_new else None, pad_token_id=pad,
                              top_p=None, top_k=None, temperature=None, **kw)


class ModuleRanges:
    """record_function ranges around every attention / MoE block / lm_head call, so
    torch.profiler totals them (hooks: no change to the model's code)."""

    def __init__(self, torch, model):
        self.handles, self.stack = [], []
        kinds = {}
        for n, m in model.named_modules():
            cls = type(m).__name__
            if n.endswith("self_attn"):
                kinds[m] = "hf::attention"
            elif n.endswith(".mlp") and ("Moe" in cls or "MoE" in cls or "Sparse" in cls):
                kinds[m] = "hf::moe_block"
            elif n == "lm_head":
                kinds[m] = "hf::lm_head"
        for m, k in kinds.items():
            self.handles.append(m.register_forward_pre_hook(self._pre(torch, k)))
            self.handles.append(m.register_forward_hook(self._post()))

    def _pre(self, torch, k):
        def f(mod, inp):
            r = torch.profiler.record_function(k)
            r.__enter__()
            self.stack.append(r)
        return f

    def _post(self):
        def f(mod, inp, out):
            self.stack.pop().__exit__(None, None, None)
        return f

    def remove(self):
        for h in self.handles:
            h.remove()


def hf_profile(torch, model, fn, label):
    from torch.profiler import ProfilerActivity, profile, record_function
    ranges = ModuleRanges(torch, model)
    try:
        fn()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            with record_function("hf::total"):
                t0 = time.perf_counter()
                fn()
                wall = time.perf_counter() - t0
        ev = prof.key_averages()
        tot = {e.key: e.cpu_time_total / 1e3 for e in ev if e.key.startswith("hf::")}
        total = tot.get("hf::total", wall * 1e3)
        attn, moe, head = tot.get("hf::attention", 0.0), tot.get("hf::moe_block", 0.0), tot.get("hf::lm_head", 0.0)
        ops = sorted((e for e in ev if not e.key.startswith("hf::")), key=lambda e: -e.self_cpu_time_total)[:12]
        return {"what": label, "wall_ms_profiled": wall * 1e3, "total_ms": total,
                "attention_ms": attn, "moe_block_ms": moe, "lm_head_ms": head,
                "rest_ms": total - attn - moe - head,
                "pct": {k: 100.0 * v / total for k, v in (("attention", attn), ("moe_block", moe),
                                                          ("lm_head", head), ("rest", total - attn - moe - head))},
                "top_ops_self_ms": [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "calls": e.count}
                                    for e in ops]}
    finally:
        ranges.remove()


def batched_mm_gb(spec, hidden, tokens):
    return tokens * spec["top_k"] * 3 * hidden * spec["ffn"] * 2 / 1e9


def run_hf_bf16(name, ckpt, inputs, args, entry):
    import torch
    from transformers import AutoModelForCausalLM
    spec = MODELS[name]
    t0 = time.monotonic()
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16, **hf_load_kwargs(name)).eval()
    hf = entry["hf"] = {"load_s": time.monotonic() - t0,
                        "attn_implementation": model.config._attn_implementation,
                        "default_experts_implementation": model.config._experts_implementation,
                        "dtype": "bfloat16", "impls": {}}
    pad = model.generation_config.pad_token_id
    if pad is None:
        eos = model.generation_config.eos_token_id
        pad = (eos[0] if isinstance(eos, list) else eos) if eos is not None else 0
    hidden = model.config.hidden_size
    log(f"[{name}] HF: attention '{hf['attn_implementation']}', experts default "
        f"'{hf['default_experts_implementation']}'; timing {args.impls}")
    ids_p, ids_d = inputs["prefill"], inputs["decode"]
    for impl in args.impls:
        r = hf["impls"][impl] = {}
        try:
            model.set_experts_implementation(impl)
        except Exception as e:  # noqa: BLE001
            r["error"] = f"set_experts_implementation: {type(e).__name__}: {e}"
            log(f"[{name}] HF {impl}: {r['error']}")
            continue
        # prefill
        gb = batched_mm_gb(spec, hidden, args.prompt)
        if impl == "batched_mm" and gb > args.batched_mm_cap_gb:
            r["prefill"] = {"skipped": f"batched_mm would gather {gb:.1f} GB of expert weights per layer "
                                       f"(> --batched-mm-cap-gb {args.batched_mm_cap_gb})"}
        else:
            busy = wait_quiet(args.quiet_wait)
            x = torch.tensor(ids_p)

            def fwd():
                with torch.inference_mode():
                    model(input_ids=x, use_cache=True, logits_to_keep=1)
            with Others() as oth:
                ts = timed(fwd, args.reps)
            med = statistics.median(ts)
            r["prefill"] = {"tokens": args.prompt, "median_s": med, "times_s": ts,
                            "tokens_s": args.prompt / med, "others_cpu_busy_before": busy,
                            "others_cpu_during": oth.value}
            log(f"[{name}] HF {impl} prefill {args.prompt}: {args.prompt / med:.1f} tokens/s")
        # decode
        for b in args.batches:
            x = torch.tensor(ids_d[:b])
            gb = batched_mm_gb(spec, hidden, b * args.decode_prompt)
            if impl == "batched_mm" and gb > args.batched_mm_cap_gb:
                r[f"decode_b{b}"] = {"skipped": f"batched_mm would gather {gb:.1f} GB per layer in the "
                                                 f"{b}x{args.decode_prompt} prefill of generate (> cap)"}
                continue
            busy = wait_quiet(args.quiet_wait)
            # Probe (also the warm-up): generate 1 and 4; an implementation too slow to time at
            # N tokens x reps within --hf-budget-s gets fewer reps, then fewer new tokens.
            s0 = time.perf_counter()
            hf_generate(torch, model, x, 1, pad)
            p1 = time.perf_counter() - s0
            s0 = time.perf_counter()
            hf_generate(torch, model, x, 4, pad)
            step = max((time.perf_counter() - s0 - p1) / 3, 1e-4)
            n, reps = args.new_tokens, args.reps
            cost = lambda n_, r_: r_ * (2 * p1 + (n_ - 1) * step)  # noqa: E731
            while reps > 1 and cost(n, reps) > args.hf_budget_s:
                reps -= 1
            while n > 4 and cost(n, reps) > args.hf_budget_s:
                n = max(4, n // 2)
            if n != args.new_tokens:
                hf_generate(torch, model, x, n, pad)  # warm-up at this length
            tn, t1 = [], []
            with Others() as oth:
                for _ in range(reps):
                    s0 = time.perf_counter()
                    hf_generate(torch, model, x, 1, pad)
                    t1.append(time.perf_counter() - s0)
                    s0 = time.perf_counter()
                    out = hf_generate(torch, model, x, n, pad)
                    tn.append(time.perf_counter() - s0)
            dt = statistics.median(tn) - statistics.median(t1)
            rate = b * (n - 1) / dt if dt > 0 else None
            r[f"decode_b{b}"] = {"batch": b, "prompt": args.decode_prompt, "new_tokens": n, "reps": reps,
                                 "reduced": (n, reps) != (args.new_tokens, args.reps),
                                 "generated": int(out.shape[1] - x.shape[1]),
                                 "t_generate_N_s": tn, "t_generate_1_s": t1, "decode_s": dt,
                                 "tokens_s": rate, "others_cpu_busy_before": busy, "others_cpu_during": oth.value}
            log(f"[{name}] HF {impl} decode batch {b}: {rate:.2f} tokens/s (reps {reps}, generate {n}: "
                f"{statistics.median(tn):.2f} s, generate 1: {statistics.median(t1):.2f} s)")
        gc.collect()
    # best per metric
    best = {}
    for metric in ["prefill"] + [f"decode_b{b}" for b in args.batches]:
        cands = [(v[metric]["tokens_s"], i) for i, v in hf["impls"].items()
                 if isinstance(v.get(metric), dict) and v[metric].get("tokens_s")]
        if cands:
            rate, impl = max(cands)
            best[metric] = {"tokens_s": rate, "impl": impl}
    hf["best"] = best
    # profile with the best prefill implementation (else the default)
    prof_impl = best.get("prefill", {}).get("impl", hf["default_experts_implementation"])
    model.set_experts_implementation(prof_impl)
    if args.profile:
        x = torch.tensor(ids_p)

        def fwd():
            with torch.inference_mode():
                model(input_ids=x, use_cache=True, logits_to_keep=1)
        try:
            hf["profile_prefill"] = dict(hf_profile(torch, model, fwd, f"prefill {args.prompt}"), impl=prof_impl)
            p = hf["profile_prefill"]["pct"]
            log(f"[{name}] HF profile prefill ({prof_impl}): " + ", ".join(f"{k} {v:.0f}%" for k, v in p.items()))
        except Exception as e:  # noqa: BLE001
            hf["profile_prefill"] = {"error": f"{type(e).__name__}: {e}"}
        dec_impl = best.get("decode_b1", {}).get("impl", prof_impl)
        model.set_experts_implementation(dec_impl)
        xd = torch.tensor(ids_d[:1])
        steps = 8

        def dec():
            from transformers import DynamicCache
            with torch.inference_mode():
                cache = DynamicCache(config=model.config)
                out = model(input_ids=xd, past_key_values=cache, use_cache=True, logits_to_keep=1)
                tok = out.logits[:, -1].argmax(-1, keepdim=True)
                with torch.profiler.record_function("hf::decode_steps"):
                    for _ in range(steps):
                        out = model(input_ids=tok, past_key_values=cache, use_cache=True)
                        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        try:
            pd = hf_profile(torch, model, dec, f"prefill {args.decode_prompt} + {steps} decode steps, batch 1")
            hf["profile_decode_b1"] = dict(pd, impl=dec_impl,
                                           note="attention/MoE/lm_head totals include the 16-token prefill")
            p = pd["pct"]
            log(f"[{name}] HF profile decode ({dec_impl}): " + ", ".join(f"{k} {v:.0f}%" for k, v in p.items()))
        except Exception as e:  # noqa: BLE001
            hf["profile_decode_b1"] = {"error": f"{type(e).__name__}: {e}"}
    # correctness inputs: HF bf16 logits and greedy sequences (default experts implementation)
    model.set_experts_implementation(hf["default_experts_implementation"])
    xc = torch.tensor(inputs["check"])
    with torch.inference_mode():
        logits = model(input_ids=xc).logits.float()
    seq = hf_generate(torch, model, xc, args.new_tokens, pad, min_new=False)
    del model
    gc.collect()
    return logits, seq, pad


def run_hf_f32(name, ckpt, inputs, args, pad):
    import torch
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.float32, **hf_load_kwargs(name)).eval()
    xc = torch.tensor(inputs["check"])
    with torch.inference_mode():
        logits = model(input_ids=xc).logits.float()
    out = hf_generate(torch, model, xc, args.new_tokens, pad, min_new=False, output_logits=True,
                      return_dict_in_generate=True)
    steps = torch.stack([s.float() for s in out.logits], 1)  # [B, n, V]
    impl = model.config._experts_implementation
    del model
    gc.collect()
    return logits, out.sequences, steps, impl


def token_agreement(torch, seq, ref, steps, prompt_len, eos_ids, err_rms=None, allowance=4.0):
    """Positions equal between seq and ref over the new tokens (both cut at the first EOS of
    ref), first divergence per row and ref's top-1 - top-2 margin there. With err_rms (the
    peer's RMS logits error against ref), a divergence where ref's margin is within `allowance`
    times it counts as a near-tie (a legitimate flip of a nearly tied choice, not a bug)."""
    rows = []
    total = same = 0
    n = min(seq.shape[1], ref.shape[1]) - prompt_len
    for b in range(ref.shape[0]):
        a, r = seq[b, prompt_len:prompt_len + n].tolist(), ref[b, prompt_len:prompt_len + n].tolist()
        stop = n
        for i, t in enumerate(r):
            if t in eos_ids:
                stop = i + 1
                break
        a, r = a[:stop], r[:stop]
        eq = sum(x == y for x, y in zip(a, r))
        total += len(r)
        same += eq
        first = next((i for i, (x, y) in enumerate(zip(a, r)) if x != y), None)
        margin = None
        if first is not None and steps is not None and first < steps.shape[1]:
            top = steps[b, first].topk(2).values
            margin = float(top[0] - top[1])
        tie = None if first is None or margin is None or err_rms is None else margin <= allowance * err_rms
        rows.append({"row": b, "compared": len(r), "equal": eq, "first_divergence": first,
                     "ref_top2_margin_there": margin, "near_tie": tie})
    div = [r for r in rows if r["first_divergence"] is not None]
    return {"equal": same, "compared": total,
            "prefix_equal": sum(r["compared"] if r["first_divergence"] is None else r["first_divergence"] for r in rows),
            "rows_identical": sum(r["first_divergence"] is None for r in rows),
            "rows": len(rows), "divergences_at_near_ties": sum(bool(r["near_tie"]) for r in div),
            "divergences_not_near_ties": sum(r["near_tie"] is False for r in div),
            "near_tie_rule": f"ref top-2 margin <= {allowance} x the peer's RMS logits error ({err_rms})",
            "per_row": rows}


def rel_l2(torch, a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------

CONVERT_SNIPPET = r"""
import sys, os
sys.argv = ["convert_hf_to_gguf.py", sys.argv[1], "--outtype", "bf16", "--outfile", sys.argv[2]]
sys.path.insert(0, os.getcwd())
import convert_hf_to_gguf as conv

def set_vocab_none(self):
    # The random checkpoint has no tokenizer: no vocab, only its size (token ids are fed directly).
    self.gguf_writer.add_tokenizer_model("none")
    self.gguf_writer.add_vocab_size(self.hparams["vocab_size"])

import conversion
names = {"OlmoeForCausalLM", "Qwen3MoeForCausalLM", "DeepseekV2ForCausalLM", "Glm4MoeForCausalLM",
         "Ernie4_5_MoeForCausalLM", "GptOssForCausalLM"}
patched = []
for arch in names:
    try:
        cls = conversion.get_model_class(arch)
    except Exception as e:
        print("no class for", arch, e)
        continue
    for c in cls.__mro__:
        if "set_vocab" in c.__dict__:
            c.set_vocab = set_vocab_none
            patched.append(c.__name__)
print("patched set_vocab of", patched, flush=True)
conv.main()
"""


def find_llama_src(args, entry):
    """A llama.cpp tree with convert_hf_to_gguf.py: --llama-src, else the llama-cpp-python sdist
    (pip download --no-binary :all:) unpacked in --workdir."""
    cands = []
    if args.llama_src:
        cands.append(args.llama_src)
    cands += glob.glob(os.path.join(args.workdir, "llama_src", "llama_cpp_python-*", "vendor", "llama.cpp"))
    for c in cands:
        if os.path.exists(os.path.join(c, "convert_hf_to_gguf.py")):
            return c
    dl = os.path.join(args.workdir, "llama_src")
    os.makedirs(dl, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "llama-cpp-python", "--no-binary", ":all:", "--no-deps", "-d", dl]
    entry["sdist_command"] = shlex.join(cmd)
    checked(cmd, "pip download llama-cpp-python (sdist)", timeout=900)
    for tgz in glob.glob(os.path.join(dl, "llama_cpp_python-*.tar.gz")):
        with tarfile.open(tgz) as t:
            t.extractall(dl)
    for c in glob.glob(os.path.join(dl, "llama_cpp_python-*", "vendor", "llama.cpp")):
        if os.path.exists(os.path.join(c, "convert_hf_to_gguf.py")):
            return c
    raise StepFailed("no convert_hf_to_gguf.py in the llama-cpp-python sdist")


def run_llama(name, ckpt, paths, args, report, entry):
    ll = entry["llama_cpp"] = {}
    probe = subprocess.run([sys.executable, "-c", "import llama_cpp, sys; sys.stdout.write(llama_cpp.__version__)"],
                           capture_output=True, text=True, env=CHILD_ENV)
    if probe.returncode != 0:
        ll["error"] = ("llama_cpp (llama-cpp-python) is not importable: " + probe.stderr.strip().splitlines()[-1]
                       if probe.stderr.strip() else "not importable") + \
                      "; install it with `pip install llama-cpp-python` (builds llama.cpp from the sdist, ~20 min on 2 cores)"
        log(f"[{name}] llama.cpp: {ll['error']}")
        return
    report["versions"]["llama_cpp_python"] = probe.stdout.strip()
    with open(os.path.join(ckpt, "config.json")) as f:
        conf = json.load(f)
    if conf.get("model_type") == "deepseek_v2" and conf.get("q_lora_rank") is None \
            and conf["num_hidden_layers"] not in (26, 27):
        # Not converted for nothing: this llama.cpp tells V2-Lite (no query latent) from V2 by the
        # layer count alone and refuses any other cut of it ("key not found: q_lora_rank").
        ll["error"] = (f"llama.cpp takes a DeepSeek-V2 without q_lora_rank for V2-Lite only at 26 or 27 layers; "
                       f"it refuses this {conf['num_hidden_layers']}-layer cut: not run")
        log(f"[{name}] llama.cpp: {ll['error']}")
        return
    src = find_llama_src(args, ll)
    ll["llama_cpp_src"] = src
    gguf_path = os.path.join(args.workdir, name, "model-bf16.gguf")
    ckpt_mtime = max(os.path.getmtime(f) for f in glob.glob(os.path.join(ckpt, "*.safetensors")))
    if os.path.exists(gguf_path) and os.path.getmtime(gguf_path) > ckpt_mtime:
        ll["convert"] = {"reused": True, "path": gguf_path}
    else:
        cmd = [sys.executable, "-c", CONVERT_SNIPPET, ckpt, gguf_path]
        busy = wait_quiet(args.quiet_wait)
        out, err, rc, rss, wall = run_child(cmd, cwd=src, timeout=1200)
        ll["convert"] = {"command": f"(cd {src} && python3 -c '<convert_hf_to_gguf.main with set_vocab -> "
                                    f"tokenizer none + vocab_size>' {ckpt} {gguf_path})",
                         "wall_s": wall, "peak_rss_bytes": rss, "rc": rc, "others_cpu_busy_before": busy,
                         "log_tail": (out + err).strip()[-1500:]}
        if rc != 0:
            ll["error"] = f"convert_hf_to_gguf.py failed (rc {rc}): {(err or out).strip()[-800:]}"
            log(f"[{name}] llama.cpp: {ll['error']}")
            return
        log(f"[{name}] GGUF bf16 written in {wall:.0f} s: {gguf_path}")
    ll["gguf_bytes"] = os.path.getsize(gguf_path)
    spec = {"gguf": gguf_path, "threads": args.threads, "prompt_ids": paths["prefill"], "decode_ids": paths["check"],
            "batches": args.batches, "new_tokens": args.new_tokens, "reps": args.reps_mixtile,
            "flash_attn": args.llama_flash_attn, "logits_out": os.path.join(args.workdir, name, "llama_logits.npy"),
            "quiet_wait": args.quiet_wait}
    cmd = [sys.executable, THIS, "--_llama-worker", json.dumps(spec)]
    busy = wait_quiet(args.quiet_wait)
    with Others() as oth:
        out, err, rc, rss, wall = run_child(cmd, timeout=1500)
    ll["others_cpu_busy_before"] = busy
    ll["others_cpu_during"] = oth.value
    ll["worker_peak_rss_bytes"] = rss
    ll["worker_wall_s"] = wall
    m = re.search(r"^LLAMA_RESULT (.*)$", out, re.M)
    if rc != 0 or not m:
        ll["error"] = f"llama.cpp worker failed (rc {rc}): {(err + out).strip()[-1500:]}"
        log(f"[{name}] llama.cpp: {ll['error']}")
        return
    ll.update(json.loads(m.group(1)))
    ll["worker_command"] = shlex.join(cmd)
    log(f"[{name}] llama.cpp: prefill {ll.get('prefill', {}).get('tokens_s')}, " + ", ".join(
        f"decode b{b} {ll.get(f'decode_b{b}', {}).get('tokens_s')}" for b in args.batches) + " tokens/s")


def llama_worker(spec):
    """Runs in its own process: loads the GGUF with llama_cpp.Llama, times prefill and decode."""
    import ctypes

    import llama_cpp
    import numpy as np
    from safetensors.numpy import load_file
    res = {"llama_cpp_python": llama_cpp.__version__, "system_info": None}
    try:
        res["system_info"] = llama_cpp.llama_print_system_info().decode()
    except Exception:  # noqa: BLE001
        pass
    prompt = load_file(spec["prompt_ids"])["input_ids"][0].tolist()
    dec_ids = load_file(spec["decode_ids"])["input_ids"]
    n_new = spec["new_tokens"]
    t0 = time.monotonic()
    llm = llama_cpp.Llama(model_path=spec["gguf"], n_threads=spec["threads"], n_threads_batch=spec["threads"],
                          n_ctx=max(1024, len(prompt) + 64), n_batch=512, n_ubatch=512, logits_all=False,
                          flash_attn=spec["flash_attn"], verbose=False, seed=0)
    res["load_s"] = time.monotonic() - t0
    res["flash_attn"] = spec["flash_attn"]
    n_vocab = llm.n_vocab()
    res["n_vocab"] = n_vocab
    ctx = llm._ctx.ctx

    def last_logits():
        ptr = llama_cpp.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    reps = spec["reps"]
    # prefill (Llama.eval: one llama_decode over the prompt in n_batch chunks)
    ts = []
    for i in range(reps + 1):
        llm.reset()
        wait_quiet(spec["quiet_wait"]) if i == 1 else None
        s = time.perf_counter()
        llm.eval(prompt)
        e = time.perf_counter() - s
        if i:
            ts.append(e)
    med = statistics.median(ts)
    res["prefill"] = {"tokens": len(prompt), "times_s": ts, "median_s": med, "tokens_s": len(prompt) / med,
                      "how": "Llama.reset(); Llama.eval(prompt)"}
    # decode batch 1 (Llama.eval one token at a time, argmax of the last logits)
    if 1 in spec["batches"]:
        ts = []
        for i in range(reps + 1):
            llm.reset()
            llm.eval(dec_ids[0].tolist())
            tok = int(np.argmax(last_logits()))
            s = time.perf_counter()
            for _ in range(n_new - 1):
                llm.eval([tok])
                tok = int(np.argmax(last_logits()))
            e = time.perf_counter() - s
            if i:
                ts.append(e)
        med = statistics.median(ts)
        res["decode_b1"] = {"batch": 1, "new_tokens": n_new, "times_s": ts, "median_s": med,
                            "tokens_s": (n_new - 1) / med,
                            "how": "Llama.eval([token]) x (N-1) after the prompt, numpy argmax each step"}
    # logits of prompt 0 at every position (the correctness check)
    cp = llama_cpp.llama_context_default_params()
    cp.n_ctx = 8 * (dec_ids.shape[1] + n_new) + 64
    cp.n_batch = 512
    cp.n_ubatch = 512
    cp.n_seq_max = max(8, max(spec["batches"]))
    cp.n_threads = spec["threads"]
    cp.n_threads_batch = spec["threads"]
    try:
        cp.flash_attn_type = 1 if spec["flash_attn"] else 0
    except Exception:  # noqa: BLE001
        pass
    ctx2 = llama_cpp.llama_init_from_model(llm._model.model, cp)
    if not ctx2:
        res["error_batched"] = "llama_init_from_model returned NULL"
        print("LLAMA_RESULT " + json.dumps(res), flush=True)
        return
    mem = llama_cpp.llama_get_memory(ctx2)
    batch = llama_cpp.llama_batch_init(512, 0, cp.n_seq_max)

    def fill(entries):
        batch.n_tokens = len(entries)
        for i, (tok, pos, seq, want) in enumerate(entries):
            batch.token[i] = int(tok)
            batch.pos[i] = int(pos)
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = int(seq)
            batch.logits[i] = bool(want)

    def decode(entries):
        fill(entries)
        rc = llama_cpp.llama_decode(ctx2, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    def logits_row(i):
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx2, i), shape=(n_vocab,)).copy()

    llama_cpp.llama_memory_clear(mem, True)
    row0 = dec_ids[0].tolist()
    decode([(t, p, 0, True) for p, t in enumerate(row0)])
    np.save(spec["logits_out"], np.stack([logits_row(i) for i in range(len(row0))]))
    res["logits_file"] = spec["logits_out"]
    # batched decode: B sequences, prompts of S, then N-1 steps of B tokens
    for b in spec["batches"]:
        if b == 1:
            continue
        S = dec_ids.shape[1]
        ts = []
        for i in range(reps + 1):
            llama_cpp.llama_memory_clear(mem, True)
            decode([(dec_ids[s][p], p, s, p == S - 1) for s in range(b) for p in range(S)])
            toks = [int(np.argmax(logits_row(s * S + S - 1))) for s in range(b)]
            st = time.perf_counter()
            for step in range(n_new - 1):
                decode([(toks[s], S + step, s, True) for s in range(b)])
                toks = [int(np.argmax(logits_row(s))) for s in range(b)]
            e = time.perf_counter() - st
            if i:
                ts.append(e)
        med = statistics.median(ts)
        res[f"decode_b{b}"] = {"batch": b, "new_tokens": n_new, "times_s": ts, "median_s": med,
                               "tokens_s": b * (n_new - 1) / med,
                               "how": f"llama_decode of {b} tokens (one per sequence, n_seq_max={cp.n_seq_max}) x (N-1), "
                                      "numpy argmax per sequence"}
    llama_cpp.llama_batch_free(batch)
    llama_cpp.llama_free(ctx2)
    del ctypes
    print("LLAMA_RESULT " + json.dumps(res), flush=True)


# ---------------------------------------------------------------------------------------------
# Per model
# ---------------------------------------------------------------------------------------------


def run_model(name, args, report):
    import numpy as np
    import torch
    entry = report["models"][name] = {"title": MODELS[name]["title"], "family": MODELS[name]["family"]}
    t_model = time.monotonic()
    ckpt = ensure_checkpoint(name, args, entry)
    conf = json.load(open(os.path.join(ckpt, "config.json")))
    V = conf["vocab_size"]
    entry["config"] = {k: conf.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                "num_key_value_heads", "head_dim", "num_experts", "num_local_experts",
                                                "num_experts_per_tok", "intermediate_size", "moe_intermediate_size",
                                                "vocab_size", "norm_topk_prob", "rms_norm_eps", "rope_parameters",
                                                "eos_token_id", "pad_token_id")}
    entry["decode_b1_weight_bytes_per_token"] = decode_bytes_per_token(conf)
    rng = np.random.default_rng(args.seed + 17)
    inputs = {"prefill": rng.integers(0, V, (1, args.prompt)),
              "decode": rng.integers(0, V, (max(args.batches), args.decode_prompt))}
    inputs["check"] = inputs["decode"]
    paths = {}
    wd = os.path.join(args.workdir, name)
    for k, a in (("prefill", inputs["prefill"]), ("check", inputs["check"])):
        paths[k] = os.path.join(wd, f"ids_{k}.safetensors")
        write_ids(paths[k], a)
    for b in args.batches:
        paths[f"decode{b}"] = os.path.join(wd, f"ids_decode_b{b}.safetensors")
        write_ids(paths[f"decode{b}"], inputs["decode"][:b])
    entry["inputs"] = {"prefill": [1, args.prompt], "decode": {b: [b, args.decode_prompt] for b in args.batches},
                       "new_tokens": args.new_tokens, "check": list(inputs["check"].shape), "files": paths}
    ok = True
    # --- Mixtile ---
    mx_logits = mx_seq = None
    try:
        lo, sq = run_mixtile(name, ckpt, paths, args, entry)
        from safetensors.torch import load_file
        mx_logits = load_file(lo)["logits"].float()
        mx_seq = load_file(sq)["sequences"]
    except Exception as e:  # noqa: BLE001
        ok = False
        msg = f"{type(e).__name__}: {e}"
        entry.setdefault("mixtile", {})["error"] = msg
        log(f"[{name}] MIXTILE FAILED: {msg}")
    write_report(report, args.out)
    # --- HF bf16 (speed, profile, logits) ---
    try:
        if MODELS[name].get("no_hf"):
            entry["hf"] = {"skipped": MODELS[name]["no_hf"], "impls": {}}
            hf_logits = hf_seq = None
            pad = conf.get("pad_token_id") or 0
            log(f"[{name}] HF not run: {MODELS[name]['no_hf']}")
        else:
            hf_logits, hf_seq, pad = run_hf_bf16(name, ckpt, inputs, args, entry)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        entry.setdefault("hf", {})["error"] = f"{type(e).__name__}: {e}"
        hf_logits = hf_seq = None
        pad = conf.get("pad_token_id") or 0
    write_report(report, args.out)
    # --- HF f32 reference ---
    chk = entry["correctness"] = {}
    f32_bytes = 4 * entry.get("checkpoint", {}).get("params", 0)
    available = mem_available()
    if MODELS[name].get("no_hf"):
        chk["reference"] = f"none: {MODELS[name]['no_hf']}"
    elif f32_bytes > 0.8 * available:
        # GLM-4.5-Air's 3 layers are 6.2 G parameters: 24.7 GB in f32, more than this machine
        # has. Mixtile's logits are compared with HF bf16's instead, for information only (two
        # bf16 runs differ by about twice either one's error); the families' f32 parity is
        # bench/hf_model_parity.py's.
        chk["reference"] = (f"none: HF float32 needs {f32_bytes / 1e9:.1f} GB, "
                            f"{available / 1e9:.1f} GB available")
        if mx_logits is not None and hf_logits is not None:
            chk["mixtile_vs_hf_bf16_logits_rel_l2"] = rel_l2(torch, mx_logits, hf_logits)
        log(f"[{name}] correctness: no HF f32 reference ({chk['reference']}); Mixtile vs HF bf16 "
            f"logits rel L2 {chk.get('mixtile_vs_hf_bf16_logits_rel_l2')}")
    try:
        if "reference" in chk:
            raise MemoryError(chk["reference"])
        ref_logits, ref_seq, ref_steps, ref_impl = run_hf_f32(name, ckpt, inputs, args, pad)
        chk["reference"] = f"HF {MODELS[name]['class'].replace('Config', '')} float32 (experts '{ref_impl}') on the bf16 checkpoint"
        eos = conf.get("eos_token_id")
        eos_ids = set(eos if isinstance(eos, list) else ([eos] if eos is not None else []))
        S = args.decode_prompt
        if mx_logits is not None:
            chk["mixtile_logits_rel_l2"] = rel_l2(torch, mx_logits, ref_logits)
            chk["mixtile_logits_max_abs"] = float((mx_logits - ref_logits).abs().max())
            chk["mixtile_last_pos_argmax_equal"] = int((mx_logits[:, -1].argmax(-1) == ref_logits[:, -1].argmax(-1)).sum())
            err = float((mx_logits - ref_logits).double().pow(2).mean().sqrt())
            chk["mixtile_logits_rms_error"] = err
            chk["mixtile_tokens"] = token_agreement(torch, mx_seq, ref_seq, ref_steps, S, eos_ids, err)
            chk["passed"] = chk["mixtile_logits_rel_l2"] <= TOL
            ok &= chk["passed"]
        if hf_logits is not None:
            chk["hf_bf16_logits_rel_l2"] = rel_l2(torch, hf_logits, ref_logits)
            err = float((hf_logits - ref_logits).double().pow(2).mean().sqrt())
            chk["hf_bf16_logits_rms_error"] = err
            chk["hf_bf16_tokens"] = token_agreement(torch, hf_seq, ref_seq, ref_steps, S, eos_ids, err)
        chk["logits_scale"] = {"ref_std": float(ref_logits.std()),
                               "ref_median_top2_margin_last_pos": float((lambda t: (t[..., 0] - t[..., 1]).median())(
                                   ref_logits[:, -1].topk(2).values))}
        ref_row0 = ref_logits[0].clone()
        del ref_logits, ref_steps
        log(f"[{name}] correctness vs HF f32: Mixtile logits rel L2 {chk.get('mixtile_logits_rel_l2')}, tokens "
            f"{chk.get('mixtile_tokens', {}).get('equal')}/{chk.get('mixtile_tokens', {}).get('compared')}; "
            f"HF bf16 rel L2 {chk.get('hf_bf16_logits_rel_l2')}, tokens "
            f"{chk.get('hf_bf16_tokens', {}).get('equal')}/{chk.get('hf_bf16_tokens', {}).get('compared')}")
    except MemoryError:  # no room for the f32 reference (above)
        ref_row0 = None
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        chk["error"] = f"{type(e).__name__}: {e}"
        ref_row0 = None
    gc.collect()
    write_report(report, args.out)
    # --- llama.cpp ---
    if args.llama:
        try:
            run_llama(name, ckpt, paths, args, report, entry)
            lf = entry["llama_cpp"].get("logits_file")
            if lf and ref_row0 is not None and os.path.exists(lf):
                ll = torch.from_numpy(np.load(lf)).float()
                chk["llama_cpp_prompt0_logits_rel_l2"] = rel_l2(torch, ll, ref_row0)
                log(f"[{name}] llama.cpp logits (prompt 0) rel L2 vs HF f32: {chk['llama_cpp_prompt0_logits_rel_l2']:.3e}")
            elif lf and mx_logits is not None and os.path.exists(lf):  # no reference: the two peers
                ll = torch.from_numpy(np.load(lf)).float()
                chk["mixtile_vs_llama_cpp_prompt0_logits_rel_l2"] = rel_l2(torch, mx_logits[0], ll)
                log(f"[{name}] Mixtile vs llama.cpp logits (prompt 0) rel L2: "
                    f"{chk['mixtile_vs_llama_cpp_prompt0_logits_rel_l2']:.3e}")
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            entry.setdefault("llama_cpp", {})["error"] = f"{type(e).__name__}: {e}"
    else:
        entry["llama_cpp"] = {"skipped": "--no-llama"}
    entry["wall_s"] = time.monotonic() - t_model
    entry["ok"] = ok
    write_report(report, args.out)
    return ok


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def write_report(report, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    report["wall_s"] = time.monotonic() - report["_t0"]
    clean["wall_s"] = report["wall_s"]
    with open(path, "w") as f:
        json.dump(clean, f, indent=2, default=str)


def fmt(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"


def tables(report, args):
    lines = []
    for name, e in report["models"].items():
        mx, hf, ll = e.get("mixtile", {}), e.get("hf", {}), e.get("llama_cpp", {})
        lines.append("")
        ck = e.get("checkpoint", {})
        lines.append(f"{e['title']} ({ck.get('params', 0) / 1e9:.2f} G params, {ck.get('bytes', 0) / 1e9:.2f} GB bf16); "
                     f"HF attention '{hf.get('attn_implementation')}', experts default "
                     f"'{hf.get('default_experts_implementation')}'")
        impls = list(hf.get("impls", {}))
        head = ["tokens/s", "Mixtile"] + [f"HF {i}" for i in impls] + ["llama.cpp", "Mixtile / best HF",
                                                                        "Mixtile / llama.cpp"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        metrics = [("prefill", f"prefill {args.prompt} (b1)", "prefill_tokens_s", "prefill")] + \
                  [(f"decode_b{b}", f"decode b{b} ({args.new_tokens} new)", "decode_tokens_s", f"decode_b{b}")
                   for b in args.batches]
        for key, label, mkey, hkey in metrics:
            m = mx.get(key, {}).get(mkey)
            cells = [label, fmt(m)]
            for i in impls:
                v = hf["impls"][i].get(hkey, {})
                cells.append(fmt(v.get("tokens_s")) if v.get("tokens_s") else ("skip" if "skipped" in v else "-"))
            lv = ll.get(hkey, {}).get("tokens_s")
            cells.append(fmt(lv))
            best = hf.get("best", {}).get(hkey, {})
            cells.append(f"{m / best['tokens_s']:.2f}x ({best['impl']})" if m and best.get("tokens_s") else "-")
            cells.append(f"{m / lv:.2f}x" if m and lv else "-")
            lines.append("| " + " | ".join(cells) + " |")
        wb, bw = e.get("decode_b1_weight_bytes_per_token"), report.get("read_bandwidth", {}).get("gbs")
        if wb:
            rates = [("Mixtile", mx.get("decode_b1", {}).get("decode_tokens_s")),
                     (f"HF {hf.get('best', {}).get('decode_b1', {}).get('impl')}",
                      hf.get("best", {}).get("decode_b1", {}).get("tokens_s")),
                     ("llama.cpp", ll.get("decode_b1", {}).get("tokens_s"))]
            lines.append(f"decode b1 reads {wb / 1e6:.0f} MB of weights per token: " + ", ".join(
                f"{n} {r * wb / 1e9:.1f} GB/s" for n, r in rates if r) + (f" (machine read bandwidth {bw:.1f} GB/s)" if bw else ""))
        comp = mx.get("compile", {})
        lines.append(f"mixtilec --model: {fmt(comp.get('wall_s'))} s, peak RSS {fmt((comp.get('peak_rss_bytes') or 0) / 1e9, 2)} GB"
                     + (f"; artifact {comp['artifact_bytes'] / 1e6:.1f} MB" if comp.get("artifact_bytes") else ""))
        c = e.get("correctness", {})
        if c:
            mt, ht = c.get("mixtile_tokens", {}), c.get("hf_bf16_tokens", {})
            lines.append(f"correctness vs HF f32 ({args.batches and max(args.batches)}x{args.decode_prompt} prompts): "
                         f"Mixtile logits rel L2 {fmt(c.get('mixtile_logits_rel_l2'), 4) if c.get('mixtile_logits_rel_l2') is not None else '-'}"
                         f" (HF bf16 {fmt(c.get('hf_bf16_logits_rel_l2'), 4) if c.get('hf_bf16_logits_rel_l2') is not None else '-'}"
                         + (f", llama.cpp prompt 0 {c['llama_cpp_prompt0_logits_rel_l2']:.4f}" if c.get("llama_cpp_prompt0_logits_rel_l2") is not None else "")
                         + f"); greedy tokens equal (position by position / before each row's first divergence): "
                         f"Mixtile {mt.get('equal')} / {mt.get('prefix_equal')} of {mt.get('compared')}, "
                         f"{mt.get('rows_identical')}/{mt.get('rows')} rows identical, divergences at near-ties "
                         f"{mt.get('divergences_at_near_ties')}, not near-ties {mt.get('divergences_not_near_ties')}; "
                         f"HF bf16 {ht.get('equal')} / {ht.get('prefix_equal')} of {ht.get('compared')}, "
                         f"{ht.get('rows_identical')}/{ht.get('rows')} rows identical, near-ties "
                         f"{ht.get('divergences_at_near_ties')}, not {ht.get('divergences_not_near_ties')}"
                         + ("" if c.get("passed", True) else "  FAILED"))
        for k in ("perf_prefill", "perf_decode_b1"):
            p = mx.get(k, {})
            if p.get("groups_pct"):
                lines.append(f"Mixtile {k[5:]} (perf, % of samples): " + ", ".join(f"{g} {v:.0f}" for g, v in list(p["groups_pct"].items())[:7]))
            elif p.get("error"):
                lines.append(f"Mixtile {k[5:]}: no breakdown ({p['error'][:200]})")
        for k in ("profile_prefill", "profile_decode_b1"):
            p = hf.get(k, {})
            if p.get("pct"):
                lines.append(f"HF {k[8:]} ({p.get('impl')}, torch.profiler): " + ", ".join(f"{g} {v:.0f}%" for g, v in p["pct"].items()))
        if ll.get("error"):
            lines.append(f"llama.cpp: {ll['error'][:400]}")
        if mx.get("error"):
            lines.append(f"Mixtile ERROR: {mx['error'][:1500]}")
        noisy = []
        for src, d in (("mixtile", mx), ("hf", hf.get("impls", {})), ("llama.cpp", ll)):
            stack = [d]
            while stack:
                x = stack.pop()
                if isinstance(x, dict):
                    for kk, vv in x.items():
                        if kk == "others_cpu_during" and isinstance(vv, float) and vv > 0.15:
                            noisy.append(src)
                        stack.append(vv)
        if noisy:
            lines.append(f"WARNING: other processes kept > 15% of the CPUs busy during some {', '.join(sorted(set(noisy)))} "
                         "measurements (others_cpu_during in the JSON)")
    lines.append("")
    lines.append(f"{args.threads} threads everywhere. Mixtile: mixtile-run --bench {args.reps_mixtile} (median after a warm-up), "
                 f"median over {args.mixtile_invocations} processes; "
                 f"HF: median of {args.reps} after a warm-up; decode = tokens of the decode steps (B x (N-1)) per second of "
                 "those steps (HF: generate-difference N vs 1). llama.cpp: llama-cpp-python, bf16 GGUF.")
    return "\n".join(lines)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--_llama-worker":
        llama_worker(json.loads(sys.argv[2]))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(m for m in MODELS if not MODELS[m].get("optional")))
    p.add_argument("--quick", action="store_true", help="prompt 128, 8 new tokens, 1 timed run each")
    p.add_argument("--workdir", default="/tmp/mixtile-bench-models")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--reps", type=int, default=None, help="HF timed runs (default 3; --quick 1)")
    p.add_argument("--reps-mixtile", type=int, default=None, help="mixtile-run --bench R and llama.cpp runs (default 3; --quick 2)")
    p.add_argument("--mixtile-invocations", type=int, default=None,
                   help="mixtile-run processes per figure, median of their medians (default 3; --quick 1)")
    p.add_argument("--prompt", type=int, default=None, help="prefill prompt length (default 512; --quick 128)")
    p.add_argument("--decode-prompt", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=None, help="default 32; --quick 8")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--impls", default=None, help="HF experts implementations (default: every CPU one)")
    p.add_argument("--batched-mm-cap-gb", type=float, default=3.0)
    p.add_argument("--hf-budget-s", type=float, default=None,
                   help="seconds one HF decode measurement may take; slower implementations get fewer reps, "
                        "then fewer new tokens (default 60; --quick 20)")
    p.add_argument("--router-std", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-llama", dest="llama", action="store_false")
    p.add_argument("--llama-src", default=None)
    p.add_argument("--llama-flash-attn", action="store_true", help="llama.cpp flash attention (default off, as Llama's)")
    p.add_argument("--no-profile", dest="profile", action="store_false")
    p.add_argument("--quiet-wait", type=float, default=None, help="default 60 s (--quick 0)")
    args = p.parse_args()
    q = args.quick
    args.reps = args.reps or (1 if q else 3)
    args.reps_mixtile = args.reps_mixtile or (2 if q else 3)
    args.prompt = args.prompt or (128 if q else 512)
    args.mixtile_invocations = args.mixtile_invocations or (1 if q else 3)
    args.new_tokens = args.new_tokens or (8 if q else 32)
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.hf_budget_s is None:
        args.hf_budget_s = 20.0 if q else 60.0
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if q else 60.0
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m}; known: {', '.join(MODELS)}")
    date = datetime.date.today().isoformat()
    if args.out is None:
        suffix = ("-quick" if q else "") + ("" if set(models) == set(MODELS) else "-" + "-".join(models))
        base = args.workdir if q else os.path.join(ROOT, "bench", "results")
        args.out = os.path.join(base, f"cpu-model-{date}{suffix}.json")
    os.makedirs(args.workdir, exist_ok=True)
    for exe in (MIXTILEC, MIXTILE_RUN):
        if not os.access(exe, os.X_OK):
            log(f"error: {exe} missing (build first)")
            return 1
    import numpy
    import safetensors
    import torch
    import transformers
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        transformers.utils.logging.disable_progress_bar()
    except Exception:  # noqa: BLE001
        pass
    available, registered = experts_implementations()
    args.impls = args.impls.split(",") if args.impls else available
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
    except Exception:  # noqa: BLE001
        git, dirty = None, None
    report = {"date": date, "quick": q, "threads": args.threads, "command": shlex.join([sys.executable] + sys.argv),
              "settings": {k: v for k, v in vars(args).items()},
              "machine": machine_info(), "loadavg_start": loadavg(),
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "numpy": numpy.__version__,
                           "safetensors": safetensors.__version__, "mixtile_git": git, "mixtile_git_dirty": dirty},
              "experts_implementations": {"registered": registered, "timed": args.impls},
              "method": {
                  "prefill": "tokens/s of one forward over a 512-token prompt (batch 1) with the last position's "
                             "logits: HF model(ids, logits_to_keep=1); Mixtile mixtile-run --generate 1 --bench R "
                             "(its prefill); llama.cpp Llama.eval(prompt)",
                  "decode": "B x (N-1) tokens of the decode steps per second of those steps, prompts of 16, "
                            "N new tokens greedy; HF: generate-difference (median t(max_new_tokens=N) - median "
                            "t(max_new_tokens=1), min_new_tokens=max_new_tokens); Mixtile: mixtile-run --generate N "
                            "--bench R (decode steps timed inside); llama.cpp: llama_decode steps + numpy argmax",
                  "weights": f"seed {args.seed}; embeddings N(0,1); projections N(0,1/fan_in); routers "
                             f"N(0,{args.router_std}^2); norms 1+0.1N(0,1); bf16"},
              "models": {}, "_t0": time.monotonic()}
    m = report["machine"]
    log(f"{m.get('model_name')}; flags {m.get('flags')}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}; {args.threads} threads; HF experts implementations {args.impls}; load {loadavg()}")
    report["read_bandwidth"] = read_bandwidth(args.workdir, args.threads)
    log(f"read bandwidth ({args.threads} threads): {report['read_bandwidth']}")
    ok = True
    for name in models:
        try:
            ok &= run_model(name, args, report)
        except Exception as e:  # noqa: BLE001
            ok = False
            traceback.print_exc()
            report["models"].setdefault(name, {"title": name})["error"] = f"{type(e).__name__}: {e}"
        gc.collect()
        write_report(report, args.out)
    report["all_ok"] = ok
    report["table"] = tables(report, args)
    write_report(report, args.out)
    log(report["table"])
    log(f"wall {report['wall_s']:.0f} s; written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
