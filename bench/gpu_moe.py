#!/usr/bin/env python3
"""The GPU benchmark of issue 5: Mixtral-8x7B (hidden 4096, intermediate 14336, 8 experts,
top-2) and DeepSeek-V3 (hidden 7168, expert size 2048, 256 experts, top-8, one shared expert)
sparse blocks, bf16 weights, at T = 1, 16, 256, 4096, beside their peers measured in the same
run: PyTorch running the same block the Hugging Face way (transformers' own
MixtralSparseMoeBlock / DeepseekV3MoE on the same weights), cuBLAS dense GEMM at equal FLOPs
and the device's measured copy bandwidth.

Two stages, because mixtilec cannot run on the device machine (it needs libMLIR):
  here (no GPU):   bash bench/gpu_prepare.sh
                   (writes build/gpu-bench/<shape>/config.json and compiles each with
                   `mixtilec --hf-config ... --dtype bf16 --target cuda` into .../artifact)
  on the device:   run(command="bash bench/gpu_run.sh", carry=["build/gpu-bench"])
                   (= python3 bench/gpu_moe.py --artifacts build/gpu-bench --out "$OUT")
Proving the same code path on the CPU, with tiny shapes and CPU artifacts:
                   bash bench/gpu_prepare.sh --tiny      (build/gpu-bench-tiny, --target cpu)
                   python3 bench/gpu_moe.py --device cpu --tiny --artifacts build/gpu-bench-tiny
Writing the configs only (what gpu_prepare.sh calls; needs no torch):
                   python3 bench/gpu_moe.py --write-configs DIR [--tiny]

Per shape: random bf16 weights (normal, std 0.02; the routing bias std 0.05) are made on the
device once under the checkpoint's own tensor names (test/helpers/hf_reference.py owns them);
the Hugging Face block and the Mixtile artifact share that storage (transformers 5.x keeps the
experts as fused [E, 2F, D] / [E, D, F] parameters, and Mixtile's per-expert arguments are
views into them; 4.x per-expert Linear layers get the same views). Correctness first, at
T = 16 and 256 on fresh inputs: Mixtile's output (poisoned with NaN before the call) against
the same Hugging Face block computed in float32 on upcast weights, by relative L2 error over the
tokens that are not on a routing near-tie (the f32 accumulation-order error of the router
logits could flip their choice; see routing()), ≤ 1e-2, no NaN. Then timing, CUDA events, median of many calls after warm-up, rotating 4 input sets:
  - Mixtile: the packed entry point on torch's current stream, once per call; and the same
    call captured in a CUDA graph, replayed (the ABI makes a call capturable).
  - PyTorch: the HF block in bf16, eager, torch.no_grad, with transformers' experts
    implementation "eager" (the loop over experts) and "grouped_mm" (transformers 5.x's
    default for a model loaded with from_pretrained); "vs PyTorch" is against the faster.
  - cuBLAS: torch's bf16 F.linear of the same expert work as dense GEMMs: [T·k, D]x[D, 2F]
    and [T·k, F]x[F, D] (plus [T, D]x[D, 2S] and [T, S]x[S, D] for shared experts of width S).
    TFLOP/s of both count these GEMMs' FLOPs, 2·T·(k·3·D·F + 3·D·S) (the router, <1%, is
    left out of both).
  - Copy bandwidth: a 2 GiB device-to-device copy, bytes read plus written, median of 20.
  GB/s counts the weight bytes the run must read: the router and shared experts, plus each
  expert the batch's routing actually selects (distinct experts, counted from the router on
  each input set, averaged over the rotation).
Targets (issue 5): T ≤ 16 at ≥ 70% of the copy bandwidth over the active weights; T = 4096 at
≥ 70% of the cuBLAS rate; faster than PyTorch at every T (each judged on the plain call).

Prints progress, then one table last; writes everything to OUT/gpu-moe-<date>.json.
Exit status 1 when a check failed or a shape could not run (the table says which).
"""
import argparse
import ctypes
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "test", "helpers"))
import hf_reference  # noqa: E402  (tensor names and roles per family: numpy only)

TOKENS = (1, 16, 256, 4096)
CHECK_TOKENS = (16, 256)
TOL = 1e-2
WEIGHT_STD = 0.02
BIAS_STD = 0.05
ROTATE = 4
TARGET_BANDWIDTH = 0.70
TARGET_CUBLAS = 0.70

# Mixtral-8x7B's config.json as published (mistralai/Mixtral-8x7B-v0.1).
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_attention_heads": 32,
    "num_experts_per_tok": 2,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "num_local_experts": 8,
    "output_router_logits": False,
    "rms_norm_eps": 1e-05,
    "rope_theta": 1000000.0,
    "router_aux_loss_coef": 0.02,
    "sliding_window": None,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0",
    "use_cache": True,
    "vocab_size": 32000,
}

# DeepSeek-V3's config.json (deepseek-ai/DeepSeek-V3) less its fp8 quantization_config: the MoE
# fields are the real ones (layers 3..60 are sparse).
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "aux_loss_alpha": 0.001,
    "bos_token_id": 0,
    "eos_token_id": 1,
    "ep_size": 1,
    "first_k_dense_replace": 3,
    "hidden_act": "silu",
    "hidden_size": 7168,
    "initializer_range": 0.02,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "moe_layer_freq": 1,
    "n_group": 8,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "norm_topk_prob": True,
    "num_attention_heads": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1,
    "pretraining_tp": 1,
    "q_lora_rank": 1536,
    "qk_nope_head_dim": 128,
    "qk_rope_head_dim": 64,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "rope_theta": 10000,
    "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid",
    "seq_aux": True,
    "tie_word_embeddings": False,
    "topk_group": 4,
    "topk_method": "noaux_tc",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "use_cache": True,
    "v_head_dim": 128,
    "vocab_size": 129280,
}

METHOD = {
    "mixtile": "packed entry point via ctypes on torch's current stream, f32 hidden_states in/output out "
               "(the manifest's dtypes), bf16 weights; graph: the same call captured once per input set",
    "pytorch": "transformers' own sparse block (MixtralSparseMoeBlock / DeepseekV3MoE) in bf16, eager, "
               "torch.no_grad, input [1, T, D] bf16; experts implementation 'eager' and 'grouped_mm'",
    "cublas": "torch F.linear bf16: [T*k, D]x[D, 2F] + [T*k, F]x[F, D] (+ [T, D]x[D, 2S] + [T, S]x[S, D] "
              "for shared experts), i.e. the expert GEMMs dense at equal FLOPs",
    "flops": "2*T*(k*3*D*F + 3*D*S) for Mixtile and cuBLAS alike (router left out)",
    "active_weight_bytes": "manifest dense_weight_bytes (router, shared experts) + distinct experts routed "
                           "(mean over the rotated input sets) * expert_weight_bytes",
    "copy_bandwidth": "device-to-device copy of 2 GiB, (read + written bytes) / median time",
    "check": f"rel L2 vs the HF block in f32 on upcast weights, near-tie tokens left out, tol {TOL}",
}

SHAPES = {
    "mixtral-8x7b": {"config": MIXTRAL_8X7B, "layer": 0},
    "deepseek-v3": {"config": DEEPSEEK_V3, "layer": 3},
}
# --tiny: the same families and routing, small enough for the CPU.
TINY = {
    "mixtral-8x7b": {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
                     "num_attention_heads": 4, "num_key_value_heads": 2},
    "deepseek-v3": {"hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
                    "n_routed_experts": 16, "num_experts_per_tok": 4, "n_group": 4,
                    "topk_group": 2, "num_hidden_layers": 2, "first_k_dense_replace": 1,
                    "num_attention_heads": 4, "num_key_value_heads": 4, "kv_lora_rank": 32,
                    "q_lora_rank": 48, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8,
                    "v_head_dim": 16},
}
TINY_LAYER = {"mixtral-8x7b": 0, "deepseek-v3": 1}


def shapes(tiny):
    out = {}
    for name, shape in SHAPES.items():
        config = dict(shape["config"])
        layer = shape["layer"]
        if tiny:
            config.update(TINY[name])
            layer = TINY_LAYER[name]
        out[name] = {"config": config, "layer": layer}
    return out


def write_configs(directory, tiny):
    """Writes DIR/<shape>/config.json and prints `<shape> <layer>` per line (gpu_prepare.sh)."""
    for name, shape in shapes(tiny).items():
        hf_reference.block_spec(shape["config"], shape["layer"])  # refuses a dense layer
        os.makedirs(os.path.join(directory, name), exist_ok=True)
        with open(os.path.join(directory, name, "config.json"), "w") as f:
            json.dump(shape["config"], f, indent=2)
            f.write("\n")
        with open(os.path.join(directory, name, "shape.json"), "w") as f:
            json.dump({"name": name, "layer": shape["layer"], "tiny": tiny}, f, indent=2)
            f.write("\n")
        print(name, shape["layer"])


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------------------------------------
# The Mixtile artifact, through ctypes.
# ---------------------------------------------------------------------------------------------

TORCH_DTYPES = {}  # filled in main() once torch is imported


def _load_library(path):
    try:
        return ctypes.CDLL(path)
    except OSError as first:
        if "libcudart" not in str(first):
            raise
        # A library linked against the shared CUDA runtime: torch's wheel or the toolkit has one.
        candidates = []
        try:
            import nvidia  # noqa: F401  (torch's CUDA wheels)

            for base in nvidia.__path__:
                for sub in ("cu13/lib", "cuda_runtime/lib"):
                    candidates.append(os.path.join(base, sub, "libcudart.so.13"))
        except ImportError:
            pass
        candidates += ["/usr/local/cuda/lib64/libcudart.so.13", "/usr/local/cuda/lib/libcudart.so.13"]
        for candidate in candidates:
            if os.path.exists(candidate):
                ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
                log(f"note: preloaded {candidate} for {os.path.basename(path)}")
                return ctypes.CDLL(path)
        raise


class _HostApi(ctypes.Structure):
    """codegen/cuda/kernels/host_api.h, version 1 (only the calls used here are typed)."""
    _fields_ = [("version", ctypes.c_int),
                ("device_count", ctypes.c_void_p),
                ("device_info", ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t,
                                                 ctypes.POINTER(ctypes.c_int))),
                ("malloc", ctypes.c_void_p), ("free", ctypes.c_void_p), ("copy_to_device", ctypes.c_void_p),
                ("copy_to_host", ctypes.c_void_p), ("fill_bytes", ctypes.c_void_p),
                ("stream_create", ctypes.c_void_p), ("stream_destroy", ctypes.c_void_p),
                ("stream_synchronize", ctypes.c_void_p), ("event_create", ctypes.c_void_p),
                ("event_destroy", ctypes.c_void_p), ("event_record", ctypes.c_void_p),
                ("event_elapsed_ms", ctypes.c_void_p),
                ("last_error", ctypes.CFUNCTYPE(ctypes.c_int)),
                ("error_string", ctypes.CFUNCTYPE(ctypes.c_char_p, ctypes.c_int))]


class Artifact:
    def __init__(self, outdir):
        with open(os.path.join(outdir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.target = self.manifest["target"]
        entries = self.manifest["entry_points"]
        if len(entries) != 1:
            raise RuntimeError(f"{outdir}: expected one entry point, found {len(entries)}")
        self.entry = entries[0]
        self.lib = _load_library(os.path.join(outdir, self.manifest["library"]))
        self.fn = getattr(self.lib, self.entry["packed_symbol"])
        last = ctypes.c_void_p if self.target == "cuda" else ctypes.c_int
        self.fn.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, last]
        self.fn.restype = ctypes.c_int
        self.ws = getattr(self.lib, self.entry["workspace_symbol"])
        self.ws.argtypes = [ctypes.POINTER(ctypes.c_int64)]
        self.ws.restype = ctypes.c_size_t
        self.err = getattr(self.lib, self.manifest["error_message_symbol"])
        self.err.argtypes = [ctypes.c_int]
        self.err.restype = ctypes.c_char_p
        self.host_api = None
        symbol = self.manifest.get("cuda_host_api_symbol")
        if self.target == "cuda" and symbol:
            # The artifact links the CUDA runtime statically: its last error lives in that
            # runtime instance, readable only through the table it exports (host_api.h).
            try:
                getter = getattr(self.lib, symbol)
                getter.restype = ctypes.POINTER(_HostApi)
                api = getter().contents
                if api.version == 1:
                    self.host_api = api
            except (AttributeError, ValueError):
                pass
        self.dims = self.entry["dynamic_dims"]
        if self.dims != ["T"]:
            raise RuntimeError(f"{outdir}: expected the one dynamic dim T, found {self.dims}")

    def describe_error(self, code):
        text = f"mixtile returned {code}: {self.err(code).decode()}"
        if code == 1 and self.host_api is not None:
            cuda = self.host_api.last_error()
            text += f" [the artifact's CUDA runtime: error {cuda}, {self.host_api.error_string(cuda).decode()}]"
        return text

    def device_seen(self):
        """The device name and capability as the artifact's own CUDA runtime sees them."""
        if self.host_api is None:
            return None
        name = ctypes.create_string_buffer(256)
        cap = ctypes.c_int(0)
        code = self.host_api.device_info(name, 256, ctypes.byref(cap))
        return f"{name.value.decode()} (sm_{cap.value})" if code == 0 else f"device_info error {code}"

    def workspace_size(self, tokens):
        dims = (ctypes.c_int64 * 1)(tokens)
        return self.ws(dims)

    def bind(self, tokens, x, out, weights, workspace, torch):
        """A ready-to-call closure for one input set: checks every tensor against the
        manifest (name, dtype, shape, contiguity, 16-byte alignment, device) first."""
        tensors = []
        for arg in self.entry["arguments"] + self.entry["results"]:
            if arg in self.entry["results"]:
                t = out
            elif arg.get("kind") == "input":
                if arg["name"] != "hidden_states":
                    raise RuntimeError(f"unexpected input '{arg['name']}'")
                t = x
            else:
                t = weights[arg["name"]]
            shape = [tokens if s is None else s for s in arg["shape"]]
            want = TORCH_DTYPES[arg["dtype"]]
            if list(t.shape) != shape or t.dtype != want or not t.is_contiguous():
                raise RuntimeError(f"tensor '{arg['name']}': expected {arg['dtype']} {shape} contiguous, "
                                   f"got {t.dtype} {list(t.shape)} contiguous={t.is_contiguous()}")
            if t.data_ptr() % 16 and t.numel():
                raise RuntimeError(f"tensor '{arg['name']}' is not 16-byte aligned")
            if (t.device.type == "cuda") != (self.target == "cuda"):
                raise RuntimeError(f"tensor '{arg['name']}' is on {t.device}, artifact target {self.target}")
            tensors.append(t)
        ptrs = (ctypes.c_void_p * len(tensors))(*[t.data_ptr() for t in tensors])
        dims = (ctypes.c_int64 * 1)(tokens)
        ws = workspace.data_ptr() if workspace is not None else None
        fn, describe, keep = self.fn, self.describe_error, tensors

        if self.target == "cuda":
            def call():
                code = fn(ptrs, dims, ws, torch.cuda.current_stream().cuda_stream)
                if code:
                    raise RuntimeError(describe(code))
        else:
            # One thread: the artifact's OpenMP and torch's own pool would spin against each other
            # (the CPU mode proves the code path; its timings mean little).
            threads = 1

            def call():
                code = fn(ptrs, dims, ws, threads)
                if code:
                    raise RuntimeError(describe(code))
        call.keep = keep  # the tensors stay alive with the closure
        return call


# ---------------------------------------------------------------------------------------------
# Weights, under the checkpoint's names; the Hugging Face block on the same storage.
# ---------------------------------------------------------------------------------------------


class Weights:
    """Fused storage (HF 5.x layout) plus the per-name views the artifact binds."""

    def __init__(self, torch, config, layer, device, seed):
        self.spec = hf_reference.block_spec(config, layer)
        self.family = self.spec["family"]
        s = self.spec
        E, D, F = s["experts"], s["hidden"], s["ffn"]
        self.E, self.D, self.F, self.k = E, D, F, s["attrs"]["k"]
        g = torch.Generator(device=device)
        g.manual_seed(seed)

        def normal(shape, std, dtype=torch.bfloat16):
            return torch.empty(shape, dtype=dtype, device=device).normal_(0.0, std, generator=g)

        self.router = normal((E, D), WEIGHT_STD)
        self.gate_up = normal((E, 2 * F, D), WEIGHT_STD)  # rows [0, F): gate (w1), [F, 2F): up (w3)
        self.down = normal((E, D, F), WEIGHT_STD)
        self.bias = normal((E,), BIAS_STD, torch.float32) if "selection_bias" in s["tensors"] else None
        self.S = s["shapes"]["shared_gate"][0] if "shared_gate" in s["tensors"] else 0
        if self.S:
            self.shared_gate_up = normal((2 * self.S, D), WEIGHT_STD)
            self.shared_down = normal((D, self.S), WEIGHT_STD)
        known = {"router", "selection_bias", "gate", "up", "down", "shared_gate", "shared_up", "shared_down"}
        if set(s["tensors"]) - known:
            raise RuntimeError(f"unexpected tensor roles {sorted(set(s['tensors']) - known)}")

    def by_name(self):
        s, F, S = self.spec["tensors"], self.F, self.S
        named = {s["router"]: self.router}
        for e in range(self.E):
            named[s["gate"][e]] = self.gate_up[e, :F]
            named[s["up"][e]] = self.gate_up[e, F:]
            named[s["down"][e]] = self.down[e]
        if self.bias is not None:
            named[s["selection_bias"]] = self.bias
        if S:
            named[s["shared_gate"]] = self.shared_gate_up[:S]
            named[s["shared_up"]] = self.shared_gate_up[S:]
            named[s["shared_down"]] = self.shared_down
        return named

    def nbytes(self):
        total = self.router.nbytes + self.gate_up.nbytes + self.down.nbytes
        if self.bias is not None:
            total += self.bias.nbytes
        if self.S:
            total += self.shared_gate_up.nbytes + self.shared_down.nbytes
        return total


def _set(torch, module, name, tensor):
    if name in module._parameters:
        module._parameters[name] = torch.nn.Parameter(tensor, requires_grad=False)
    elif name in module._buffers:
        module._buffers[name] = tensor
    else:
        raise RuntimeError(f"{type(module).__name__} has no parameter or buffer '{name}'")


def hf_block(torch, family, config_dict, w, dtype):
    """transformers' own sparse block, built on the meta device, its weights set to `w`'s
    tensors (shared storage when dtype is bf16, upcast copies otherwise)."""
    if family == "mixtral":
        from transformers import MixtralConfig as Config
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock as Block
    elif family == "deepseek_v3":
        from transformers import DeepseekV3Config as Config
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE as Block
    else:
        raise RuntimeError(f"no Hugging Face block for {family}")
    config = Config(**config_dict)
    try:
        config._experts_implementation = "eager"
    except Exception:  # transformers 4.x: one implementation, nothing to choose
        pass
    with torch.device("meta"):
        block = Block(config)
    block.eval()

    def cast(t):
        return t if t.dtype == dtype else t.to(dtype)

    F, S = w.F, w.S
    _set(torch, block.gate, "weight", cast(w.router))
    if w.bias is not None:
        _set(torch, block.gate, "e_score_correction_bias", w.bias)  # f32, as in the checkpoint
    experts = block.experts
    if hasattr(experts, "gate_up_proj"):  # transformers 5.x: fused 3-D parameters
        _set(torch, experts, "gate_up_proj", cast(w.gate_up))
        _set(torch, experts, "down_proj", cast(w.down))
        layout = "fused"
    else:  # transformers 4.x: one module per expert
        gate_up, down = cast(w.gate_up), cast(w.down)
        names = ("w1", "w3", "w2") if family == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        for e, expert in enumerate(experts):
            _set(torch, getattr(expert, names[0]), "weight", gate_up[e, :F])
            _set(torch, getattr(expert, names[1]), "weight", gate_up[e, F:])
            _set(torch, getattr(expert, names[2]), "weight", down[e])
        layout = "per-expert"
    if S:
        shared = block.shared_experts
        sgu = cast(w.shared_gate_up)
        _set(torch, shared.gate_proj, "weight", sgu[:S])
        _set(torch, shared.up_proj, "weight", sgu[S:])
        _set(torch, shared.down_proj, "weight", cast(w.shared_down))
    left = [n for n, t in list(block.named_parameters()) + list(block.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"Hugging Face block tensors left unset: {left}")
    block.mixtile_layout = layout
    return block, config


def hf_forward(block, x3):
    """The block on [1, T, D]; transformers 4.x's Mixtral block also returns router logits."""
    y = block(x3)
    return y[0] if isinstance(y, tuple) else y


def set_experts_implementation(config, name):
    try:
        config._experts_implementation = name
        return True
    except Exception:
        return False


def hf_experts_implementations(block):
    """The implementations the installed transformers offers for this block's experts."""
    if not hasattr(block.experts, "gate_up_proj"):
        return ["eager"]
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
    except ImportError:
        return ["eager"]
    return ["eager"] + (["grouped_mm"] if "grouped_mm" in ALL_EXPERTS_FUNCTIONS else [])


# ---------------------------------------------------------------------------------------------
# Routing in f32 (the choice, for distinct-expert counts, and its near-ties for the check).
# ---------------------------------------------------------------------------------------------


def _may_differ(torch, values, bounds, chosen):
    """Per row: can a chosen entry, pushed down by its bound, reach an unchosen one pushed up?"""
    inf = torch.tensor(float("inf"), device=values.device, dtype=values.dtype)
    lowest = torch.where(chosen, values - bounds, inf).amin(dim=-1)
    highest = torch.where(chosen, -inf, values + bounds).amax(dim=-1)
    return lowest <= highest


def routing(torch, w, x):
    """x: [T, D] bf16 tokens. Returns (chosen [T, k] long, near_tie [T] bool).

    The tokens are bf16 values and so are the router weights: every product x_i·W_ei is exact
    in f32, and an implementation's logits differ from the reference's only by the order of its
    f32 accumulation. Summed in the worst order (one by one) that error stays near
    2^-24·sqrt(D)·||x ⊙ W_e||_2; six of those bound each logit (dl). As in the test helpers'
    reference.py: a softmax choice follows the logits, so a chosen and an unchosen logit
    closer than 2·dl is a near-tie; a sigmoid score moves by at most s(1-s)·e^dl·dl, a top-2
    group score by twice its largest member's bound. Near-tie tokens may legitimately route
    differently, and are left out of the error (and counted)."""
    attrs = w.spec["attrs"]
    xf, wf = x.float(), w.router.float()
    logits = xf @ wf.t()
    dl = 6.0 * 2.0 ** -24 * math.sqrt(w.D) * torch.sqrt((xf * xf) @ (wf * wf).t()).amax(dim=-1, keepdim=True)
    T, E, k = x.shape[0], w.E, attrs["k"]
    if attrs["scoring"] == "softmax":
        sel, bound = logits, dl.expand(-1, E)
    else:
        scores = torch.sigmoid(logits)
        sel = scores + w.bias
        bound = scores * (1 - scores) * torch.exp(dl) * dl
    near = torch.zeros(T, dtype=torch.bool, device=x.device)
    n_group, topk_group = attrs.get("n_group", 1), attrs.get("topk_group", 1)
    if n_group > 1:
        per = E // n_group
        gs = sel.view(T, n_group, per).topk(2, dim=-1)[0].sum(-1)  # group_score top2_sum
        gbound = 2.0 * bound.view(T, n_group, per).amax(dim=-1)
        kept = torch.zeros_like(gs, dtype=torch.bool).scatter_(1, gs.topk(topk_group, dim=-1)[1], True)
        near |= _may_differ(torch, gs, gbound, kept)
        mask = kept.unsqueeze(-1).expand(-1, -1, per).reshape(T, E)
        sel = sel.masked_fill(~mask, float("-inf"))
        bound = bound.masked_fill(~mask, 0.0)
    chosen = sel.topk(k, dim=-1)[1]
    if E > k:
        picked = torch.zeros_like(sel, dtype=torch.bool).scatter_(1, chosen, True)
        near |= _may_differ(torch, sel, bound, picked)
    return chosen, near


def rel_l2(torch, y, ref, keep):
    y, ref = y[keep].double(), ref[keep].double()
    nan = int((~torch.isfinite(y)).sum())
    denom = float(ref.norm())
    err = float((y - ref).nan_to_num(nan=float("inf")).norm())
    return (err / denom if denom else err), nan


# ---------------------------------------------------------------------------------------------
# Timing.
# ---------------------------------------------------------------------------------------------


class Timer:
    def __init__(self, torch, device, target_s, deadline):
        self.torch, self.cuda, self.target_s, self.deadline = torch, device == "cuda", target_s, deadline

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def __call__(self, calls, min_reps=5, max_reps=200, warmup=3):
        """Median and min ms of one call (cycling through `calls`), and the number of reps."""
        torch = self.torch
        for i in range(warmup):
            calls[i % len(calls)]()
        self.sync()
        t0 = time.perf_counter()
        calls[0]()
        self.sync()
        est = max(time.perf_counter() - t0, 1e-6)
        budget = self.target_s
        if time.monotonic() > self.deadline:  # running late: the fewest reps that still mean something
            budget, max_reps = 0.0, min_reps
        reps = int(min(max_reps, max(min_reps, budget / est)))
        if self.cuda:
            events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
                      for _ in range(reps)]
            for r in range(reps):
                events[r][0].record()
                calls[r % len(calls)]()
                events[r][1].record()
            torch.cuda.synchronize()
            times = [a.elapsed_time(b) for a, b in events]
        else:
            times = []
            for r in range(reps):
                t0 = time.perf_counter()
                calls[r % len(calls)]()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times), min(times), reps


def copy_bandwidth(torch, device, timer, nbytes):
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    med, best, reps = timer([lambda: dst.copy_(src)], min_reps=20, max_reps=20)
    return {"bytes_copied": src.nbytes, "median_ms": med, "min_ms": best, "reps": reps,
            "gbs": 2 * src.nbytes / (med * 1e-3) / 1e9}


# ---------------------------------------------------------------------------------------------
# One shape.
# ---------------------------------------------------------------------------------------------


def run_shape(torch, name, shape_dir, args, timer, bandwidth, report):
    F_ = torch.nn.functional
    device = args.device
    with open(os.path.join(shape_dir, "config.json")) as f:
        config = json.load(f)
    with open(os.path.join(shape_dir, "shape.json")) as f:
        layer = json.load(f)["layer"]
    art = Artifact(os.path.join(shape_dir, "artifact"))
    want_target = "cuda" if device == "cuda" else "cpu"
    if art.target != want_target:
        raise RuntimeError(f"{shape_dir}/artifact was built for {art.target}, this run is on {device}")
    t0 = time.perf_counter()
    w = Weights(torch, config, layer, device, seed=args.seed)
    if args.device == "cuda":
        torch.cuda.synchronize()
    E, D, F, k, S = w.E, w.D, w.F, w.k, w.S
    cost = art.entry["cost"]
    if art.target == "cuda":
        log(f"[{name}] the artifact's CUDA runtime sees: {art.device_seen()}")
    log(f"[{name}] layer {layer}: D={D} F={F} E={E} top-{k} shared={S}; "
        f"{w.nbytes() / 1e9:.2f} GB of bf16 weights made in {time.perf_counter() - t0:.1f} s")
    named = w.by_name()
    wanted = {a["name"] for a in art.entry["arguments"] if a.get("kind") == "weight"}
    if wanted != set(named):
        raise RuntimeError(f"manifest weights and checkpoint names differ: only in manifest "
                           f"{sorted(wanted - set(named))[:4]}, only here {sorted(set(named) - wanted)[:4]}")
    block, hf_config = hf_block(torch, w.family, config, w, torch.bfloat16)
    impls = hf_experts_implementations(block)
    entry = {"name": name, "family": w.family, "layer": layer, "hidden": D, "ffn": F, "experts": E,
             "top_k": k, "shared_width": S, "weight_bytes": w.nbytes(), "manifest_cost": cost,
             "hf_layout": block.mixtile_layout, "hf_experts_implementations": impls,
             "checks": [], "rows": [], "errors": []}
    report["shapes"][name] = entry
    gen = torch.Generator(device=device)
    gen.manual_seed(args.seed + 1)

    def tokens_bf16(t):
        return torch.randn((t, D), generator=gen, device=device, dtype=torch.float32).to(torch.bfloat16)

    workspaces = {}

    def workspace(t):
        size = art.workspace_size(t)
        if workspaces.get("size", -1) < size:
            workspaces.clear()
            workspaces["size"] = size
            # 256 bytes of slack so the CPU target's 64-byte alignment holds whatever the allocator gives.
            workspaces["buf"] = torch.empty(max(size, 1) + 256, dtype=torch.uint8, device=device)
        buf = workspaces["buf"]
        return buf[(-buf.data_ptr()) % 256:]

    # ---- correctness: HF block in f32 on upcast weights ------------------------------------
    need = 2 * w.nbytes() + (1 << 30)
    free = torch.cuda.mem_get_info()[0] if device == "cuda" else None
    ref_mode = args.reference
    if ref_mode == "auto":
        ref_mode = "literal" if free is None or free > need else "per-expert"
    log(f"[{name}] reference: {ref_mode} f32 HF block"
        + (f" (free {free / 2**30:.1f} GiB, literal needs {need / 2**30:.1f})" if free is not None else ""))
    if ref_mode == "literal":
        ref_block, _ = hf_block(torch, w.family, config, w, torch.float32)
    else:
        ref_block = None

    def reference(x_bf16):
        if ref_block is not None:
            return hf_forward(ref_block, x_bf16.float().unsqueeze(0)).squeeze(0)
        return per_expert_reference(torch, block, w, x_bf16)

    ok = True
    with torch.no_grad():
        for t in args.check_tokens:
            x = tokens_bf16(t)
            x32 = x.float().contiguous()
            out = torch.full((t, D), float("nan"), dtype=torch.float32, device=device)
            call = art.bind(t, x32, out, named, workspace(t), torch)
            call()
            if device == "cuda":
                torch.cuda.synchronize()
            ref = reference(x).float()
            hf16 = hf_forward(block, x.unsqueeze(0)).squeeze(0).float()
            _, near = routing(torch, w, x)
            keep = ~near
            err, nan = rel_l2(torch, out, ref, keep)
            err16, _ = rel_l2(torch, hf16, ref, keep)
            unwritten = int(torch.isnan(out).any(dim=-1).sum())
            # Diagnostics: tokens far off (a routing difference, an unwritten or wrong row).
            per_token = ((out.double() - ref.double()).norm(dim=-1) / ref.double().norm(dim=-1).clamp_min(1e-30))
            bad = (~torch.isfinite(per_token)) | (per_token > 0.1)
            passed = unwritten == 0 and nan == 0 and err <= TOL and int(near.sum()) <= max(1, t // 10)
            ok &= passed
            entry["checks"].append({"tokens": t, "rel_l2": err, "nan_values": nan, "rows_with_nan": unwritten,
                                    "near_tie_tokens": int(near.sum()), "tol": TOL, "passed": passed,
                                    "tokens_off_by_10pct": int(bad.sum()),
                                    "tokens_off_by_10pct_near_tie": int((bad & near).sum()),
                                    "worst_token_rel_l2_kept": float(per_token[keep].nan_to_num(nan=float("inf")).max())
                                    if bool(keep.any()) else 0.0,
                                    "pytorch_bf16_rel_l2": err16, "reference": ref_mode})
            log(f"[{name}] check T={t}: Mixtile rel_l2 {err:.2e} (PyTorch bf16 {err16:.2e}), "
                f"{nan} NaN in {unwritten} rows, {int(near.sum())} near-tie tokens left out, "
                f"{int(bad.sum())} tokens off by >10% ({int((bad & near).sum())} of them near-ties): "
                f"{'ok' if passed else 'FAILED'}")
            del x, x32, out, call, ref, hf16
    ref_block = None  # frees the f32 copy (45 GB for DeepSeek-V3) before timing
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    entry["checks_passed"] = ok

    # ---- timing ----------------------------------------------------------------------------
    tokens = args.tokens
    for t in tokens:
        row = {"tokens": t}
        xs = [tokens_bf16(t) for _ in range(ROTATE)]
        x32s = [x.float().contiguous() for x in xs]
        x3s = [x.unsqueeze(0) for x in xs]
        out = torch.empty((t, D), dtype=torch.float32, device=device)
        ws = workspace(t)
        calls = [art.bind(t, x32, out, named, ws, torch) for x32 in x32s]
        distinct = []
        with torch.no_grad():
            for x in xs:
                chosen, _ = routing(torch, w, x)
                distinct.append(int(torch.unique(chosen).numel()))
        row["distinct_experts"] = distinct
        active = cost["dense_weight_bytes"] + statistics.mean(distinct) * cost["expert_weight_bytes"]
        row["active_weight_bytes"] = active
        flops = 2.0 * t * (k * 3 * D * F + 3 * D * S)
        row["expert_gemm_flops"] = flops

        with torch.no_grad():
            med, best, reps = timer(calls)
            row.update(mixtile_ms=med, mixtile_min_ms=best, mixtile_reps=reps)
            # The same calls captured in CUDA graphs (one per input set), replayed.
            if device == "cuda" and not args.no_graph:
                try:
                    graphs = []
                    side = torch.cuda.Stream()
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        calls[0]()
                    torch.cuda.current_stream().wait_stream(side)
                    for c in calls:
                        g = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(g):
                            c()
                        graphs.append(g)
                    gmed, gbest, greps = timer([g.replay for g in graphs])
                    row.update(mixtile_graph_ms=gmed, mixtile_graph_min_ms=gbest, mixtile_graph_reps=greps)
                    del graphs
                except Exception as e:  # noqa: BLE001
                    row["mixtile_graph_error"] = f"{type(e).__name__}: {e}"
                    log(f"[{name}] T={t}: graph capture failed: {e}")
            torch_ms = {}
            for impl in impls:
                set_experts_implementation(hf_config, impl)
                slow = t >= 1024 or (E >= 64 and t >= 256)
                try:
                    pmed, pbest, preps = timer([lambda x3=x3: hf_forward(block, x3) for x3 in x3s],
                                               min_reps=3 if slow else 5, max_reps=50 if slow else 200,
                                               warmup=2 if slow else 3)
                    torch_ms[impl] = {"median_ms": pmed, "min_ms": pbest, "reps": preps}
                except Exception as e:  # noqa: BLE001  (one implementation failing is a finding, not a stop)
                    row.setdefault("pytorch_errors", {})[impl] = f"{type(e).__name__}: {e}"
                    log(f"[{name}] T={t}: PyTorch {impl} failed: {e}")
            set_experts_implementation(hf_config, "eager")
            if not torch_ms:
                raise RuntimeError(f"T={t}: no PyTorch implementation ran: {row.get('pytorch_errors')}")
            row["pytorch"] = torch_ms
            # cuBLAS (torch F.linear, bf16) at equal FLOPs: the routed and shared expert GEMMs dense.
            a1 = torch.randn((t * k, D), generator=gen, device=device).to(torch.bfloat16)
            a2 = torch.randn((t * k, F), generator=gen, device=device).to(torch.bfloat16)
            gu, dn = w.gate_up[0], w.down[0]
            if S:
                s1 = torch.randn((t, D), generator=gen, device=device).to(torch.bfloat16)
                s2 = torch.randn((t, S), generator=gen, device=device).to(torch.bfloat16)

                def dense():
                    F_.linear(a1, gu)
                    F_.linear(a2, dn)
                    F_.linear(s1, w.shared_gate_up)
                    F_.linear(s2, w.shared_down)
            else:
                def dense():
                    F_.linear(a1, gu)
                    F_.linear(a2, dn)
            cmed, cbest, creps = timer([dense])
            row.update(cublas_ms=cmed, cublas_min_ms=cbest, cublas_reps=creps)
            a1 = a2 = s1 = s2 = None

        ms = row["mixtile_ms"]
        best_torch = min(v["median_ms"] for v in torch_ms.values())
        row["gbs_active"] = active / (ms * 1e-3) / 1e9
        row["fraction_of_copy_bandwidth"] = row["gbs_active"] / bandwidth
        row["tflops"] = flops / (ms * 1e-3) / 1e12
        row["cublas_tflops"] = flops / (row["cublas_ms"] * 1e-3) / 1e12
        row["fraction_of_cublas"] = row["tflops"] / row["cublas_tflops"]
        row["speedup_vs_pytorch"] = best_torch / ms
        if "mixtile_graph_ms" in row:
            row["graph_speedup_vs_pytorch"] = best_torch / row["mixtile_graph_ms"]
            row["graph_fraction_of_copy_bandwidth"] = active / (row["mixtile_graph_ms"] * 1e-3) / 1e9 / bandwidth
        targets = {"faster_than_pytorch": row["speedup_vs_pytorch"] > 1.0}
        if t <= 16:
            targets["bandwidth_70pct"] = row["fraction_of_copy_bandwidth"] >= TARGET_BANDWIDTH
        if t == 4096:
            targets["cublas_70pct"] = row["fraction_of_cublas"] >= TARGET_CUBLAS
        row["targets"] = targets
        entry["rows"].append(row)
        graph = f", graph {row['mixtile_graph_ms']:.3f}" if "mixtile_graph_ms" in row else ""
        log(f"[{name}] T={t}: Mixtile {ms:.3f} ms{graph}; PyTorch "
            + ", ".join(f"{i} {v['median_ms']:.3f}" for i, v in torch_ms.items())
            + f"; cuBLAS {row['cublas_ms']:.3f} ms; {row['gbs_active']:.0f} GB/s "
            f"({row['fraction_of_copy_bandwidth']:.2f} of copy), {row['tflops']:.1f} TFLOP/s "
            f"({row['fraction_of_cublas']:.2f} of cuBLAS); distinct experts {distinct}")
        del xs, x32s, x3s, out, calls
        gc.collect()
    block = named = w = None
    workspaces.clear()
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return ok


def per_expert_reference(torch, block, w, x_bf16):
    """The HF block's math in f32 when an f32 copy of all weights does not fit: the block's own
    router (f32 inside for DeepSeek-V3; recomputed in f32 for Mixtral), then HF's eager loop over
    the experts hit with each expert's weights upcast one at a time, plus the shared expert."""
    F_ = torch.nn.functional
    x = x_bf16.float()
    attrs = w.spec["attrs"]
    logits = x @ w.router.float().t()
    if attrs["scoring"] == "softmax":
        probs = torch.softmax(logits, dim=-1)
        weights, chosen = torch.topk(probs, w.k, dim=-1)
        if attrs["normalize"]:
            weights = weights / weights.sum(dim=-1, keepdim=True)
    else:
        out = block.gate(x)  # DeepSeek-V3's router computes in f32 whatever the weights' dtype
        ints = [o for o in out if not o.dtype.is_floating_point]
        floats = [o for o in out if o.dtype.is_floating_point and o.shape == ints[0].shape]
        chosen, weights = ints[0], floats[0].float()
    y = torch.zeros_like(x)
    act = F_.silu
    for e in torch.unique(chosen).tolist():
        tok, pos = torch.where(chosen == e)
        h = x[tok]
        gu = w.gate_up[e].float()
        gate, up = F_.linear(h, gu).chunk(2, dim=-1)
        o = F_.linear(act(gate) * up, w.down[e].float())
        y.index_add_(0, tok, o * weights[tok, pos, None])
    if w.S:
        sgu = w.shared_gate_up.float()
        gate, up = F_.linear(x, sgu).chunk(2, dim=-1)
        y = y + F_.linear(act(gate) * up, w.shared_down.float())
    return y


# ---------------------------------------------------------------------------------------------


def table(report, bandwidth):
    lines = []
    dev = report["device"]
    lines.append(f"Mixtile vs peers on {dev['name']} ({report['date']}); copy bandwidth {bandwidth:.0f} GB/s "
                 f"(read+write); torch {report['torch_version']}, transformers {report['transformers_version']}")
    lines.append("| shape | T | Mixtile ms | graph ms | PyTorch eager ms | PyTorch grouped_mm ms | vs PyTorch "
                 "| GB/s active (of copy) | TFLOP/s (cuBLAS) | of cuBLAS | targets |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, entry in report["shapes"].items():
        for r in entry.get("rows", []):
            pt = r["pytorch"]
            eager = f"{pt['eager']['median_ms']:.3f}" if "eager" in pt else "-"
            grouped = f"{pt['grouped_mm']['median_ms']:.3f}" if "grouped_mm" in pt else "-"
            graph = f"{r['mixtile_graph_ms']:.3f}" if "mixtile_graph_ms" in r else "-"
            marks = " ".join(f"{k}:{'met' if v else 'MISSED'}" for k, v in r["targets"].items())
            lines.append(f"| {name} | {r['tokens']} | {r['mixtile_ms']:.3f} | {graph} | {eager} | {grouped} | "
                         f"{r['speedup_vs_pytorch']:.2f}x | {r['gbs_active']:.0f} ({r['fraction_of_copy_bandwidth']:.2f}) | "
                         f"{r['tflops']:.1f} ({r['cublas_tflops']:.1f}) | {r['fraction_of_cublas']:.2f} | {marks} |")
    lines.append("cuBLAS = torch bf16 F.linear of the expert GEMMs as dense [T*k, D]x[D, 2F] + [T*k, F]x[F, D] "
                 "(+ the shared expert's [T, D]x[D, 2S] + [T, S]x[S, D]); TFLOP/s count those FLOPs for both; "
                 "GB/s = router + shared + distinct routed experts' bf16 bytes / Mixtile time; "
                 "vs PyTorch = the faster HF implementation / Mixtile (plain call); targets judged on the plain call")
    for name, entry in report["shapes"].items():
        checks = ", ".join(f"T={c['tokens']} rel_l2 {c['rel_l2']:.2e}{'' if c['passed'] else ' FAILED'}"
                           for c in entry.get("checks", []))
        lines.append(f"{name}: checks {checks or 'none'}"
                     + (f"; ERRORS: {' | '.join(entry['errors'])}" if entry.get("errors") else ""))
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--artifacts", default=None,
                   help="build/gpu-bench (or build/gpu-bench-tiny with --tiny)")
    p.add_argument("--out", default=os.environ.get("OUT", os.path.join(ROOT, "build", "bench")))
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (gpu_prepare.sh --tiny)")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--tokens", default=None, help="default 1,16,256,4096 (--tiny: 1,16,256)")
    p.add_argument("--check-tokens", default=",".join(map(str, CHECK_TOKENS)))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-per-measure", type=float, default=None,
                   help="seconds of timed calls per figure (default 0.5; --tiny 0.05)")
    p.add_argument("--budget", type=float, default=330.0,
                   help="seconds after which every figure takes its fewest reps")
    p.add_argument("--reference", choices=("auto", "literal", "per-expert"), default="auto",
                   help="f32 reference: the HF block on upcast copies (literal) or per-expert upcasts")
    p.add_argument("--no-graph", action="store_true")
    p.add_argument("--write-configs", metavar="DIR", help="write the shapes' config.json files and exit")
    args = p.parse_args()
    if args.write_configs:
        write_configs(args.write_configs, args.tiny)
        return 0
    if args.artifacts is None:
        args.artifacts = os.path.join(ROOT, "build", "gpu-bench-tiny" if args.tiny else "gpu-bench")
    args.tokens = [int(t) for t in (args.tokens or ("1,16,256" if args.tiny else "1,16,256,4096")).split(",")]
    args.check_tokens = [int(t) for t in args.check_tokens.split(",") if t]
    target_s = args.time_per_measure if args.time_per_measure is not None else (0.05 if args.tiny else 0.5)
    start = time.monotonic()

    import torch
    import transformers

    TORCH_DTYPES.update({"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16, "i32": torch.int32})
    if args.device == "cuda":
        if not torch.cuda.is_available():
            log("error: torch sees no CUDA device")
            return 1
        props = torch.cuda.get_device_properties(0)
        device = {"name": props.name, "multiprocessors": props.multi_processor_count,
                  "memory_bytes": props.total_memory, "capability": f"{props.major}.{props.minor}",
                  "l2_bytes": getattr(props, "L2_cache_size", None), "cuda": torch.version.cuda}
        try:
            device["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit",
                 "--format=csv,noheader"], capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:  # noqa: BLE001
            pass
    else:
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
                   platform.processor())
        device = {"name": f"CPU {cpu}", "threads": torch.get_num_threads()}
    report = {"date": datetime.date.today().isoformat(), "device": device, "torch_version": torch.__version__,
              "transformers_version": transformers.__version__, "tiny": args.tiny,
              "tokens": args.tokens, "weight_std": WEIGHT_STD, "rotate_inputs": ROTATE,
              "timing": "CUDA events around each call, median of reps after warm-up" if args.device == "cuda"
              else "perf_counter around each call, median", "method": METHOD, "shapes": {}}
    log(f"device: {device['name']}; torch {torch.__version__}; transformers {transformers.__version__}")
    if args.device == "cuda":
        # The f32 reference must be IEEE f32, not TF32 (the bf16 peers keep torch's defaults).
        try:
            torch.backends.cuda.matmul.fp32_precision = "ieee"
        except (AttributeError, RuntimeError, ValueError):
            torch.backends.cuda.matmul.allow_tf32 = False
    timer = Timer(torch, args.device, target_s, start + args.budget)
    bw = copy_bandwidth(torch, args.device, timer, (64 << 20) if args.tiny else (2 << 30))
    if args.device == "cuda":
        torch.cuda.empty_cache()
    report["copy_bandwidth"] = bw
    bandwidth = bw["gbs"]
    log(f"copy bandwidth: {bandwidth:.0f} GB/s ({bw['bytes_copied'] / 2**30:.2f} GiB copied, read+write counted)")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"gpu-moe-{report['date']}{'-tiny' if args.tiny else ''}.json")
    ok = True
    for name in args.shapes.split(","):
        shape_dir = os.path.join(args.artifacts, name)
        try:
            ok &= run_shape(torch, name, shape_dir, args, timer, bandwidth, report)
        except Exception as e:  # noqa: BLE001  (report it, go on with the next shape)
            ok = False
            traceback.print_exc()
            entry = report["shapes"].setdefault(name, {"rows": [], "checks": [], "errors": []})
            entry.setdefault("errors", []).append(f"{type(e).__name__}: {e}")
            log(f"[{name}] FAILED: {type(e).__name__}: {e}")
            gc.collect()
            if args.device == "cuda":
                try:
                    torch.cuda.empty_cache()
                except Exception:  # noqa: BLE001
                    pass
        report["wall_s"] = time.monotonic() - start
        with open(path, "w") as f:
            json.dump(report, f, indent=2)
    report["all_checks_passed"] = ok
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    log(f"wall {report['wall_s']:.0f} s; written to {path}")
    log(table(report, bandwidth))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
