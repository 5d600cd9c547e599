#!/usr/bin/env python3
"""Mixtile beside the Hugging Face sparse MoE blocks on the CPU, all peers measured in the same
run, on 2 threads:

  mixtral      Mixtral-style block: hidden 1024, intermediate 3584, 8 experts, top-2
               (MixtralConfig; transformers' MixtralSparseMoeBlock; layer 0)
  qwen3_moe    Qwen3-30B-A3B's block: hidden 2048, 128 experts of 768, top-8, norm_topk_prob
               (Qwen3MoeConfig; Qwen3MoeSparseMoeBlock; layer 0)
  deepseek_v3  DeepSeek-V3's routed block with the hidden size reduced to 1024 (the real one is
               7168): 256 experts of 2048, top-8, n_group 8, topk_group 4, one shared expert of
               2048, sigmoid scores + e_score_correction_bias, routed_scaling_factor 2.5
               (DeepseekV3Config, first_k_dense_replace 1, layer 1; DeepseekV3MoE). 1.6 G
               parameters: 6.4 GB in f32, 3.2 GB in bf16 (hidden 2048 would need 12.9 GB f32 for
               the HF block plus as much again mapped by mixtile-run: too much for 24 GB).
at T = 1, 32, 512, 2048 tokens.

Per shape: transformers builds the config and the block; its weights are random (router
std 2/sqrt(D) so routing is not all near-ties, gate/up std 1/sqrt(D), down 1/sqrt(F), the
DeepSeek selection bias std 0.05, f32), rounded to bf16-representable values so that the f32 and
bf16 checkpoints hold the same numbers. The checkpoints (f32 and bf16) carry the names mixtilec
asks for (the artifact's manifest), the fused transformers-5.x expert tensors split per expert:
gate = gate_up_proj[e, :F], up = gate_up_proj[e, F:], down = down_proj[e]; the split is verified
by an independent per-expert re-implementation of the block from the checkpoint's tensors.
mixtilec --hf-config config.json --layer L --dtype {f32,bf16} compiles it (the bf16 artifact
takes and returns bf16 hidden states).

Peers, per dtype:
  HF       the transformers block in that dtype under torch.inference_mode(), for each experts
           implementation transformers offers on the CPU ("eager" = the loop over experts,
           "grouped_mm" = torch.nn.functional.grouped_mm, "batched_mm" = bmm over per-(token,
           expert) gathered weights, run only where the gathered copy stays under
           --batched-mm-cap-gb); chosen through config._experts_implementation.
  dense    torch F.linear in that dtype at equal FLOPs: [T*k, D]x[D, 2F] + [T*k, F]x[F, D]
           (+ [T, D]x[D, 2S] + [T, S]x[S, D] for a shared expert, + the router [T, D]x[D, E]).
  bw       the machine's streaming read bandwidth: bench/machine_limits.cpp (integer sum over
           1 GiB, median of 7, built here with g++ -fopenmp -lopenblas) as cpu_mixtral.py does;
           torch.sum over 1 GiB of f32 (median of 7) as well, the C figure is the one used.
Timing: every side twice, COLD (caches evicted before each timed call, as a layer inside a model
sees its weights: mixtile-run --bench N --cold, and for PyTorch the same read of 4x the L3 (256 MiB
to 2 GiB) before each call, outside the timing) and WARM (nothing between calls: weights that fit the L3 stay
there). PyTorch: warm-up, then the median of >= 5 calls, OMP_WAIT_POLICY=PASSIVE so its OpenMP
workers do not spin against Mixtile; Mixtile: N scaled so a row takes a few seconds, best median of
2 invocations, after a 1 s pause. --rounds R (default 2) times every side R times per row, the
sides alternating, and keeps each side's best round: the VM's speed drifts over minutes. Speedups are like for like, cold against cold and warm against
warm (reports before 2026-11-30 set Mixtile cold against PyTorch warm).
Correctness in the same run: mixtile-run -o on the timed input, against the HF block in f32 on
the same bf16-rounded input and weights (relative L2; also reported without the tokens whose
top-k choice is a near-tie, where an f32 accumulation-order difference may flip an expert); for
bf16 HF-bf16's own error against that reference is printed too. Rel L2 > 2e-2 is reported as
FAILED and the run goes on.
GB/s counts the weight bytes the call must read: router (+ bias, shared expert) plus every
distinct expert the batch's routing selects (from the f32 reference's router).

Usage:
  python3 bench/cpu_hf_moe.py                           # all shapes, T = 1,32,512,2048
  python3 bench/cpu_hf_moe.py --shapes mixtral --tokens 1,32
  python3 bench/cpu_hf_moe.py --quick                   # tiny shapes, T=1,32: checks the script
                                                        # (~1 min on an idle machine, mostly mixtilec)
Options: --threads 2, --work DIR (checkpoints, artifacts; default /tmp/mixtile-cpu-hf-moe),
--out FILE (default bench/results/cpu-hf-moe-<date>[-<shapes>].json; --quick: in --work),
--impls eager,grouped_mm,batched_mm, --keep (keep the checkpoints), --quiet-wait S (before
each row, wait up to S s for other processes to leave the CPUs; the busy fraction is recorded).
Writes the JSON after each shape; exits 1 when a correctness check failed or a shape failed.
"""
import os

# Before torch is imported: torch's OpenMP workers sleep instead of spinning between calls
# (a Mixtile process started right after spinning workers loses half its speed). mixtile-run
# gets the environment as it was, without this.
CHILD_ENV = dict(os.environ)
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MIXTILE_BUILD_DIR", os.path.join(ROOT, "build"))
MIXTILEC = os.path.join(BUILD, "bin", "mixtilec")
MIXTILE_RUN = os.path.join(BUILD, "bin", "mixtile-run")

TOKENS = (1, 32, 512, 2048)
QUICK_TOKENS = (1, 32)
TOL = 2e-2
ROUTER_STD = 2.0  # / sqrt(D)
BIAS_STD = 0.05
# Near-tie margins at the top-k boundary of the f32 reference's router: logits (softmax
# families), sigmoid scores + bias and group scores (DeepSeek-V3).
TIE_LOGIT = 1e-4
TIE_SCORE = 1e-5

# Published-model fields mixtilec reads that transformers 5.24's own config.json leaves out
# (see the plain-config probe in the JSON): Qwen3-MoE's expert count is stored as
# num_local_experts, DeepSeek-V3's scoring (always sigmoid/noaux_tc in transformers 5.x) not at all.
SHAPES = {
    "mixtral": {
        "family": "mixtral", "layer": 0,
        "config": dict(hidden_size=1024, intermediate_size=3584, num_local_experts=8, num_experts_per_tok=2,
                       num_hidden_layers=1, num_attention_heads=8, num_key_value_heads=8, hidden_act="silu",
                       vocab_size=32000),
    },
    "qwen3_moe": {
        "family": "qwen3_moe", "layer": 0,
        "config": dict(hidden_size=2048, intermediate_size=6144, moe_intermediate_size=768, num_experts=128,
                       num_experts_per_tok=8, norm_topk_prob=True, num_hidden_layers=1, num_attention_heads=32,
                       num_key_value_heads=4, head_dim=128, decoder_sparse_step=1, mlp_only_layers=[],
                       hidden_act="silu", vocab_size=151936),
        "extra": {"num_experts": 128},
    },
    "deepseek_v3": {
        "family": "deepseek_v3", "layer": 1,
        "config": dict(hidden_size=1024, intermediate_size=4096, moe_intermediate_size=2048, n_routed_experts=256,
                       num_experts_per_tok=8, n_group=8, topk_group=4, n_shared_experts=1, norm_topk_prob=True,
                       routed_scaling_factor=2.5, first_k_dense_replace=1, num_hidden_layers=2,
                       num_attention_heads=16, num_key_value_heads=16, kv_lora_rank=512, q_lora_rank=1536,
                       qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128, hidden_act="silu",
                       vocab_size=129280),
        "extra": {"scoring_func": "sigmoid", "topk_method": "noaux_tc"},
    },
}
QUICK = {
    "mixtral": dict(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2),
    "qwen3_moe": dict(hidden_size=64, moe_intermediate_size=32, num_experts=16, num_experts_per_tok=4,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    "deepseek_v3": dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, n_routed_experts=16,
                        num_experts_per_tok=4, n_group=4, topk_group=2, num_attention_heads=4,
                        num_key_value_heads=4, kv_lora_rank=32, q_lora_rank=48, qk_nope_head_dim=16,
                        qk_rope_head_dim=8, v_head_dim=16),
}
QUICK_EXTRA = {"qwen3_moe": {"num_experts": 16}}


def log(*a):
    print(*a, flush=True)


# ---------------------------------------------------------------------------------------------
# Machine, processes
# ---------------------------------------------------------------------------------------------


def machine_info():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=20).stdout
        fields = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["model_name"] = fields.get("Model name")
        flags = set(fields.get("Flags", "").split())
        info["flags"] = {f: f in flags for f in ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16",
                                                  "avx512f", "avx512_fp16")}
        info["caches"] = {k: fields[k] for k in ("L1d cache", "L2 cache", "L3 cache") if k in fields}
    except Exception as e:  # noqa: BLE001
        info["lscpu_error"] = str(e)
    try:
        info["mem_total_gb"] = int(open("/proc/meminfo").readline().split()[1]) / 1e6
    except Exception:  # noqa: BLE001
        pass
    return info


def run_child(cmd, env=None):
    """Runs cmd; returns (stdout, stderr, rc, peak RSS in bytes of that process). The RSS comes
    from GNU time (-f %M): wait4's ru_maxrss of a child of this (large) Python process also
    counts the parent's memory the child saw before its exec."""
    gnu_time = shutil.which("time", path="/usr/bin:/bin")
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe, \
            tempfile.NamedTemporaryFile(mode="r", suffix=".rss") as fr:
        full = [gnu_time, "-f", "%M", "-o", fr.name] + cmd if gnu_time else cmd
        p = subprocess.Popen(full, stdout=fo, stderr=fe, env=env if env is not None else CHILD_ENV)
        _, status, usage = os.wait4(p.pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        rss = None
        if gnu_time:
            m = re.findall(r"^(\d+)\s*$", fr.read(), re.M)
            rss = int(m[-1]) * 1024 if m else None
        return fo.read().decode(errors="replace"), fe.read().decode(errors="replace"), rc, rss


def checked(cmd, what):
    out, err, rc, rss = run_child(cmd)
    if rc != 0:
        raise RuntimeError(f"{what} failed (rc {rc}): {' '.join(cmd)}\n{err.strip()}\n{out.strip()[-2000:]}")
    return out, rss


def loadavg():
    try:
        return [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except Exception:  # noqa: BLE001
        return None


def cpu_busy(seconds=0.5):
    """Fraction of all CPUs busy over `seconds` while this script sleeps: other tenants' load."""
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


def wait_quiet(limit_s, threshold=0.25):
    """Waits (up to limit_s) until other processes use under `threshold` of the CPUs; returns the
    last busy fraction seen and the seconds waited."""
    t0 = time.monotonic()
    busy = cpu_busy()
    while busy is not None and busy > threshold and time.monotonic() - t0 < limit_s:
        time.sleep(1.5)
        busy = cpu_busy()
    return busy, time.monotonic() - t0


def read_bandwidth(torch, work, threads, quick):
    res = {}
    exe = os.path.join(work, "machine_limits")
    try:
        if not os.path.exists(exe):
            subprocess.run(["g++", "-O3", "-march=native", "-fopenmp", os.path.join(ROOT, "bench", "machine_limits.cpp"),
                            "-o", exe, "-lopenblas"], check=True, capture_output=True, text=True)
        out, _ = checked([exe, str(threads)], "machine_limits")
        res["c_read_gbs"] = json.loads(out)["read_bandwidth_gbs"]
    except Exception as e:  # noqa: BLE001
        res["c_error"] = str(e).strip()[:500]
    n = (64 << 20 if quick else 1 << 30) // 4
    x = torch.ones(n, dtype=torch.float32)
    rates = []
    for _ in range(7):
        t0 = time.perf_counter()
        x.sum()
        rates.append(x.nbytes / (time.perf_counter() - t0) / 1e9)
    del x
    res["torch_sum_gbs"] = statistics.median(rates)
    res["gbs"] = res.get("c_read_gbs", res["torch_sum_gbs"])
    res["source"] = "bench/machine_limits.cpp" if "c_read_gbs" in res else "torch.sum"
    return res


# ---------------------------------------------------------------------------------------------
# Checkpoints
# ---------------------------------------------------------------------------------------------

ST_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}


def write_safetensors(torch, path, tensors):
    """Streams {name: tensor} into a safetensors file without a second copy in memory."""
    header, off = {}, 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": ST_DTYPES[str(t.dtype).replace("torch.", "")], "shape": list(t.shape),
                        "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().data)
    return off


def checkpoint_names(family, layer, E, shared):
    """role -> name(s), as mixtilec names the block's arguments."""
    if family == "mixtral":
        p = f"model.layers.{layer}.block_sparse_moe"
        g, u, d = "w1", "w3", "w2"
    else:
        p = f"model.layers.{layer}.mlp"
        g, u, d = "gate_proj", "up_proj", "down_proj"
    names = {"router": f"{p}.gate.weight",
             "gate": [f"{p}.experts.{e}.{g}.weight" for e in range(E)],
             "up": [f"{p}.experts.{e}.{u}.weight" for e in range(E)],
             "down": [f"{p}.experts.{e}.{d}.weight" for e in range(E)]}
    if family == "deepseek_v3":
        names["bias"] = f"{p}.gate.e_score_correction_bias"
    if shared:
        names.update(shared_gate=f"{p}.shared_experts.gate_proj.weight",
                     shared_up=f"{p}.shared_experts.up_proj.weight",
                     shared_down=f"{p}.shared_experts.down_proj.weight")
    return names


def named_tensors(block, names, F):
    """The checkpoint's tensors as views of the HF block's (fused) parameters."""
    ex = block.experts
    out = {names["router"]: block.gate.weight}
    if "bias" in names:
        out[names["bias"]] = block.gate.e_score_correction_bias
    for e in range(len(names["gate"])):
        out[names["gate"][e]] = ex.gate_up_proj[e, :F]
        out[names["up"][e]] = ex.gate_up_proj[e, F:]
        out[names["down"][e]] = ex.down_proj[e]
    if "shared_gate" in names:
        sh = block.shared_experts
        out[names["shared_gate"]] = sh.gate_proj.weight
        out[names["shared_up"]] = sh.up_proj.weight
        out[names["shared_down"]] = sh.down_proj.weight
    return out


# ---------------------------------------------------------------------------------------------
# The HF block
# ---------------------------------------------------------------------------------------------


def hf_classes(family):
    if family == "mixtral":
        from transformers import MixtralConfig
        from transformers.models.mixtral.modeling_mixtral import MixtralSparseMoeBlock
        return MixtralConfig, MixtralSparseMoeBlock
    if family == "qwen3_moe":
        from transformers import Qwen3MoeConfig
        from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
        return Qwen3MoeConfig, Qwen3MoeSparseMoeBlock
    if family == "deepseek_v3":
        from transformers import DeepseekV3Config
        from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE
        return DeepseekV3Config, DeepseekV3MoE
    raise ValueError(family)


def experts_implementations():
    """The experts implementations the installed transformers registers, less GPU-only ones."""
    try:
        from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS
        registered = list(ALL_EXPERTS_FUNCTIONS._global_mapping)
    except Exception:  # noqa: BLE001
        registered = []
    gpu_only = {"deepgemm", "sonicmoe"}  # need CUDA (and the `kernels` package)
    return ["eager"] + [n for n in registered if n not in gpu_only and n != "eager"], registered


def fill_block(torch, block, family, D, F, S, seed):
    """Random bf16-representable f32 weights, expert by expert (no big temporaries)."""
    g = torch.Generator()
    g.manual_seed(seed)

    def fill(t, std):
        with torch.no_grad():
            t.normal_(0.0, std, generator=g)
            t.copy_(t.to(torch.bfloat16).to(t.dtype))

    fill(block.gate.weight, ROUTER_STD / math.sqrt(D))
    ex = block.experts
    for e in range(ex.gate_up_proj.shape[0]):
        fill(ex.gate_up_proj[e], 1.0 / math.sqrt(D))
        fill(ex.down_proj[e], 1.0 / math.sqrt(F))
    if family == "deepseek_v3":
        with torch.no_grad():
            block.gate.e_score_correction_bias.normal_(0.0, BIAS_STD, generator=g)
    if S:
        sh = block.shared_experts
        fill(sh.gate_proj.weight, 1.0 / math.sqrt(D))
        fill(sh.up_proj.weight, 1.0 / math.sqrt(D))
        fill(sh.down_proj.weight, 1.0 / math.sqrt(S))


def hf_forward(block, x2):
    y = block(x2.unsqueeze(0))
    if isinstance(y, tuple):
        y = y[0]
    return y.reshape(x2.shape[0], -1)


def manual_forward(torch, family, named, names, cfg, x):
    """The block re-implemented from the checkpoint's per-expert tensors, in f32 (the split
    check: independent of transformers' fused layout)."""
    Fn = torch.nn.functional
    x = x.float()
    R = named[names["router"]].float()
    logits = x @ R.t()
    k = cfg["k"]
    if family in ("mixtral", "qwen3_moe"):
        p = torch.softmax(logits, dim=-1)
        w, idx = p.topk(k, dim=-1)
        if cfg["normalize"]:
            w = w / w.sum(-1, keepdim=True)
    else:
        s = torch.sigmoid(logits)
        sc = s + named[names["bias"]].float()
        T, E, ng = x.shape[0], R.shape[0], cfg["n_group"]
        gs = sc.view(T, ng, E // ng).topk(2, dim=-1)[0].sum(-1)
        keep = torch.zeros_like(gs).scatter_(1, gs.topk(cfg["topk_group"], dim=-1)[1], 1.0).bool()
        mask = keep.unsqueeze(-1).expand(T, ng, E // ng).reshape(T, E)
        idx = sc.masked_fill(~mask, float("-inf")).topk(k, dim=-1)[1]
        w = s.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * cfg["scaling"]
    y = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for j in range(k):
            e = int(idx[t, j])
            gt = Fn.silu(Fn.linear(x[t], named[names["gate"][e]].float()))
            up = Fn.linear(x[t], named[names["up"][e]].float())
            y[t] += w[t, j] * Fn.linear(gt * up, named[names["down"][e]].float())
    if "shared_gate" in names:
        gt = Fn.silu(Fn.linear(x, named[names["shared_gate"]].float()))
        up = Fn.linear(x, named[names["shared_up"]].float())
        y += Fn.linear(gt * up, named[names["shared_down"]].float())
    return y


def routing_f32(torch, family, block, cfg, x):
    """(chosen [T, k], near_tie [T]) from the f32 block's router on x."""
    logits = (x.float() @ block.gate.weight.float().t())
    k, T = cfg["k"], x.shape[0]
    if family in ("mixtral", "qwen3_moe"):
        top = logits.topk(min(k + 1, logits.shape[1]), dim=-1)
        chosen = top[1][:, :k]
        near = (top[0][:, k - 1] - top[0][:, k] < TIE_LOGIT) if logits.shape[1] > k else torch.zeros(T, dtype=torch.bool)
        return chosen, near
    E, ng, tg = logits.shape[1], cfg["n_group"], cfg["topk_group"]
    sc = torch.sigmoid(logits) + block.gate.e_score_correction_bias.float()
    gs = sc.view(T, ng, E // ng).topk(2, dim=-1)[0].sum(-1)
    gtop = gs.topk(min(tg + 1, ng), dim=-1)
    near = (gtop[0][:, tg - 1] - gtop[0][:, tg] < TIE_SCORE) if ng > tg else torch.zeros(T, dtype=torch.bool)
    keep = torch.zeros_like(gs).scatter_(1, gtop[1][:, :tg], 1.0).bool()
    mask = keep.unsqueeze(-1).expand(T, ng, E // ng).reshape(T, E)
    top = sc.masked_fill(~mask, float("-inf")).topk(k + 1, dim=-1)
    near |= top[0][:, k - 1] - top[0][:, k] < TIE_SCORE
    return top[1][:, :k], near


def rel_l2(torch, y, ref, keep=None):
    y, ref = y.double(), ref.double()
    if keep is not None:
        y, ref = y[keep], ref[keep]
    d = float(ref.norm())
    if not torch.isfinite(y).all():
        return float("inf")
    return float((y - ref).norm()) / d if d else float((y - ref).norm())


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def time_torch(fn, quick, target_s=2.0, min_runs=5, max_runs=50, evict=None):
    """Warm: one warm-up call, then the median (and min) ms of >= min_runs calls. With `evict`
    (cold), evict() runs before every timed call, outside the timing."""
    if quick:
        target_s, min_runs, max_runs = 0.05, 3, 10
    fn()
    t0 = time.perf_counter()
    fn()
    est = time.perf_counter() - t0
    n = int(max(min_runs, min(max_runs, target_s / max(est, 1e-6))))
    times = []
    for _ in range(n):
        if evict is not None:
            evict()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": n}


def best_round(kept, new, rnd):
    """The better (lower median) of two rounds' timings of one side: `new`'s timing fields replace
    `kept`'s when faster; everything else in `kept` (nested results, peak RSS) stays. Every
    round's median is listed in round_medians_ms."""
    out = dict(kept)
    out.setdefault("best_round", 0)
    if new["median_ms"] < kept["median_ms"]:
        out.update(new)
        out["best_round"] = rnd
    out["round_medians_ms"] = kept.get("round_medians_ms", [kept["median_ms"]]) + [new["median_ms"]]
    return out


def make_evictor(torch):
    """Cold caches for PyTorch, as mixtile-run --cold makes them: reads (no writes) a buffer of 4x
    the reported last-level cache, at least 256 MiB, at most 2 GiB (a 512 MiB read leaves much of a
    480 MiB L3's content in place: the cache keeps part of what a streaming pass meets)."""
    try:
        llc = os.sysconf("SC_LEVEL3_CACHE_SIZE")
    except (ValueError, OSError):
        llc = 0
    nbytes = min(max(4 * max(llc, 0), 256 << 20), 2048 << 20)
    buf = torch.ones(nbytes // 8, dtype=torch.int64)
    sink = []

    def evict():
        sink[:] = [int(buf.sum())]
    evict.bytes = nbytes
    return evict


def mixtile_bench(artifact, weights, inputs, threads, runs, repeats, pause=1.0, cold=True):
    """mixtile-run --bench runs [--cold]; best median of `repeats` invocations."""
    meds, mins, rss = [], [], 0
    for _ in range(repeats):
        time.sleep(pause)  # let any OpenMP worker of ours go quiet first
        out, r = checked([MIXTILE_RUN, artifact, "--weights", weights, "--inputs", inputs, "--threads",
                          str(threads), "--bench", str(runs)] + (["--cold"] if cold else []), "mixtile-run --bench")
        meds.append(float(re.search(r"median latency: ([0-9.eE+-]+) ms", out).group(1)))
        mins.append(float(re.search(r"min latency: ([0-9.eE+-]+) ms", out).group(1)))
        rss = max(rss, r or 0)
    return {"median_ms": min(meds), "medians_ms": meds, "min_ms": min(mins), "runs": runs,
            "repeats": repeats, "peak_rss_bytes": rss}


# ---------------------------------------------------------------------------------------------
# One shape
# ---------------------------------------------------------------------------------------------


def compile_artifacts(cfg_path, layer, work, dtypes):
    """Both dtypes in parallel (g++ is single-threaded)."""
    procs, out = {}, {}
    for dt in dtypes:
        d = os.path.join(work, f"artifact_{dt}")
        shutil.rmtree(d, ignore_errors=True)
        cmd = [MIXTILEC, "--hf-config", cfg_path, "--layer", str(layer), "--dtype", dt, "-o", d]
        procs[dt] = (subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env=CHILD_ENV), cmd, d, time.perf_counter())
    for dt, (p, cmd, d, t0) in procs.items():
        so, se = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"mixtilec failed (rc {p.returncode}): {' '.join(cmd)}\n{se.strip()}{so.strip()}")
        with open(os.path.join(d, "manifest.json")) as f:
            out[dt] = {"dir": d, "manifest": json.load(f), "compile_s": time.perf_counter() - t0,
                       "command": " ".join(cmd)}
    return out


def probe_plain_config(config, work, layer):
    """Does mixtilec take the config.json transformers itself writes (save_pretrained)?"""
    d = os.path.join(work, "plain")
    os.makedirs(d, exist_ok=True)
    config.to_json_file(os.path.join(d, "config.json"))
    cmd = [MIXTILEC, "--hf-config", os.path.join(d, "config.json"), "--layer", str(layer), "--emit", "mlir",
           "-o", os.path.join(d, "mlir")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=CHILD_ENV)
    return {"command": " ".join(cmd), "rc": r.returncode, "stderr": r.stderr.strip()[:500]}


def block_config(name, quick):
    """Shape `name`'s transformers config (eager experts) and block class, the config kwargs
    and the fields mixtilec asks for that transformers' own config.json leaves out."""
    spec = SHAPES[name]
    Config, Block = hf_classes(spec["family"])
    kw = dict(spec["config"])
    extra = dict(spec.get("extra", {}))
    if quick:
        kw.update(QUICK[name])
        extra.update(QUICK_EXTRA.get(name, {}))
    config = Config(**kw)
    config._experts_implementation = "eager"
    return config, Block, kw, extra


def write_config(config, extra, work):
    """config.json for mixtilec --hf-config: transformers' fields plus `extra`; returns its path."""
    cfg_dict = config.to_dict()
    cfg_dict.update(extra)
    cfg_dict.pop("_experts_implementation", None)
    cfg_path = os.path.join(work, "config.json")
    with open(cfg_path, "w") as f:
        json.dump(cfg_dict, f, indent=2, default=str)
    return cfg_path


def block_dims(family, config):
    """(hidden D, experts E, expert width F, top-k, shared expert width S) of a block."""
    if family == "mixtral":
        return config.hidden_size, config.num_local_experts, config.intermediate_size, config.num_experts_per_tok, 0
    if family == "qwen3_moe":
        return config.hidden_size, config.num_experts, config.moe_intermediate_size, config.num_experts_per_tok, 0
    return (config.hidden_size, config.n_routed_experts, config.moe_intermediate_size, config.num_experts_per_tok,
            config.moe_intermediate_size * config.n_shared_experts)


def run_shape(torch, name, args, report, bandwidth, impls):
    spec = SHAPES[name]
    family, layer = spec["family"], spec["layer"]
    evict = make_evictor(torch)
    config, Block, kw, extra = block_config(name, args.quick)
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    entry = {"family": family, "layer": layer, "config_kwargs": kw, "config_extra_fields": extra,
             "rows": {}, "checks": {}, "errors": []}
    report["shapes"][name] = entry
    entry["mixtilec_plain_transformers_config"] = probe_plain_config(config, work, layer)
    if entry["mixtilec_plain_transformers_config"]["rc"] != 0:
        log(f"[{name}] note: mixtilec refuses transformers' own config.json: "
            f"{entry['mixtilec_plain_transformers_config']['stderr']}; adding {extra}")
    cfg_path = write_config(config, extra, work)

    D, E, F, k, S = block_dims(family, config)
    if family == "mixtral":
        cfg = {"k": k, "normalize": True}
    elif family == "qwen3_moe":
        cfg = {"k": k, "normalize": bool(config.norm_topk_prob)}
    else:
        cfg = {"k": k, "n_group": config.n_group, "topk_group": config.topk_group,
               "scaling": config.routed_scaling_factor}
    entry.update(hidden=D, ffn=F, experts=E, top_k=k, shared_width=S,
                 params=E * 3 * D * F + E * D + 3 * D * S)
    log(f"[{name}] D={D} F={F} E={E} top-{k} shared={S} layer {layer}: "
        f"{entry['params'] / 1e9:.3f} G parameters ({entry['params'] * 4 / 1e9:.2f} GB f32, "
        f"{entry['params'] * 2 / 1e9:.2f} GB bf16)")

    t0 = time.perf_counter()
    arts = compile_artifacts(cfg_path, layer, work, ("f32", "bf16"))
    entry["compile"] = {dt: {"seconds": a["compile_s"], "command": a["command"],
                             "cost": a["manifest"]["entry_points"][0].get("cost")} for dt, a in arts.items()}
    log(f"[{name}] compiled f32 and bf16 in {time.perf_counter() - t0:.1f} s")

    # The HF block, f32, random bf16-representable weights.
    t0 = time.perf_counter()
    block = Block(config).eval()
    fill_block(torch, block, family, D, F, S, args.seed)
    for p in block.parameters():
        p.requires_grad_(False)
    bias_f32 = block.gate.e_score_correction_bias.clone() if family == "deepseek_v3" else None
    names = checkpoint_names(family, layer, E, S)
    named = named_tensors(block, names, F)
    log(f"[{name}] HF block {Block.__name__} built in {time.perf_counter() - t0:.1f} s")
    for dt, a in arts.items():
        ep = a["manifest"]["entry_points"][0]
        want = {x["name"]: x for x in ep["arguments"] if x.get("kind") == "weight"}
        if set(want) != set(named):
            raise RuntimeError(f"{dt} manifest names differ from the checkpoint's: only in manifest "
                               f"{sorted(set(want) - set(named))[:4]}, only here {sorted(set(named) - set(want))[:4]}")
        for n, x in want.items():
            if list(named[n].shape) != list(x["shape"]):
                raise RuntimeError(f"{n}: manifest shape {x['shape']}, HF {list(named[n].shape)}")
        ins = [x for x in ep["arguments"] if x.get("kind") == "input"]
        a["input_name"], a["input_dtype"] = ins[0]["name"], ins[0]["dtype"]
        a["weight_dtypes"] = {n: x["dtype"] for n, x in want.items()}
        a["output_name"] = ep["results"][0]["name"]
    entry["checkpoint_names_sample"] = {r: (v if isinstance(v, str) else v[:2] + ["..."]) for r, v in names.items()}

    # The split check: the block from the per-expert checkpoint tensors vs transformers' own.
    gen = torch.Generator()
    gen.manual_seed(args.seed + 7)
    xs16 = torch.randn((16, D), generator=gen).to(torch.bfloat16).float()
    with torch.inference_mode():
        y_hf = hf_forward(block, xs16)
        y_man = manual_forward(torch, family, named, names, cfg, xs16)
        swapped = dict(names, gate=names["up"], up=names["gate"])
        y_swap = manual_forward(torch, family, named, swapped, cfg, xs16)
    split = {"rel_l2_checkpoint_split_vs_hf": rel_l2(torch, y_man, y_hf),
             "rel_l2_if_gate_up_swapped": rel_l2(torch, y_swap, y_hf), "tokens": 16}
    split["ok"] = split["rel_l2_checkpoint_split_vs_hf"] < 1e-4
    entry["split_check"] = split
    log(f"[{name}] checkpoint split check (gate = gate_up_proj[e,:F], up = [e,F:]): rel L2 "
        f"{split['rel_l2_checkpoint_split_vs_hf']:.2e} vs HF (swapped would be "
        f"{split['rel_l2_if_gate_up_swapped']:.2e}): {'ok' if split['ok'] else 'FAILED'}")
    ok = split["ok"]

    # Inputs (bf16-rounded), the f32 reference and the routing per T.
    tokens = args.tokens
    xs, refs, routes = {}, {}, {}
    for t in tokens:
        g = torch.Generator()
        g.manual_seed(args.seed * 1000 + t)
        xs[t] = torch.randn((t, D), generator=g).to(torch.bfloat16)
        from safetensors.torch import save_file
        save_file({arts["bf16"]["input_name"]: xs[t].contiguous()}, os.path.join(work, f"x_T{t}_bf16.safetensors"))
        save_file({arts["f32"]["input_name"]: xs[t].float().contiguous()}, os.path.join(work, f"x_T{t}_f32.safetensors"))
        with torch.inference_mode():
            refs[t] = hf_forward(block, xs[t].float()).clone()
            chosen, near = routing_f32(torch, family, block, cfg, xs[t])
        routes[t] = {"distinct": int(torch.unique(chosen).numel()), "near": near,
                     "near_count": int(near.sum())}
    entry["routing"] = {t: {"distinct_experts": r["distinct"], "near_tie_tokens": r["near_count"]}
                        for t, r in routes.items()}

    weights_path = {}
    for dt in ("f32", "bf16"):
        tdt = torch.float32 if dt == "f32" else torch.bfloat16
        if dt == "bf16":
            block = block.to(torch.bfloat16)
            if bias_f32 is not None:
                block.gate.e_score_correction_bias = bias_f32.clone()  # f32, as in the checkpoint
            named = named_tensors(block, names, F)
            gc.collect()
        art = arts[dt]
        tensors = {}
        for a in art["manifest"]["entry_points"][0]["arguments"]:
            if a.get("kind") != "weight":
                continue
            want = torch.float32 if a["dtype"] == "f32" else torch.bfloat16
            t_ = named[a["name"]]
            tensors[a["name"]] = t_ if t_.dtype == want else t_.to(want)
        t0 = time.perf_counter()
        weights_path[dt] = os.path.join(work, f"weights_{dt}.safetensors")
        nbytes = write_safetensors(torch, weights_path[dt], tensors)
        del tensors
        router_bytes = named[names["router"]].numel() * (4 if art["weight_dtypes"][names["router"]] == "f32" else 2)
        elt = 4 if dt == "f32" else 2
        dense_bytes = router_bytes + (E * 4 if "bias" in names else 0) + 3 * D * S * elt
        expert_bytes = 3 * D * F * elt
        entry.setdefault("weight_bytes", {})[dt] = {"checkpoint": nbytes, "router_bias_shared": dense_bytes,
                                                     "per_expert": expert_bytes}
        log(f"[{name}] {dt}: wrote {nbytes / 1e9:.2f} GB checkpoint in {time.perf_counter() - t0:.1f} s")

        rows = entry["rows"].setdefault(dt, [])
        checks = entry["checks"].setdefault(dt, [])
        set_impl = lambda n: setattr(config, "_experts_implementation", n)  # noqa: E731
        for t in tokens:
            busy, waited = wait_quiet(args.quiet_wait)
            row = {"tokens": t, "loadavg_before": loadavg(), "others_cpu_busy_before": busy, "waited_for_quiet_s": waited}
            if busy is not None and busy > 0.25:
                log(f"[{name}] {dt} T={t}: WARNING other processes keep {busy:.0%} of the CPUs busy "
                    f"(waited {waited:.0f} s); timings are disturbed")
            x = xs[t] if dt == "bf16" else xs[t].float()
            # --- HF, each experts implementation (warm) ---
            hf = {}
            with torch.inference_mode():
                for impl in impls:
                    if impl == "batched_mm":
                        gathered = t * k * 3 * D * F * elt
                        if gathered > args.batched_mm_cap_gb * 1e9:
                            hf[impl] = {"skipped": f"gathers {gathered / 1e9:.1f} GB of expert weights "
                                                   f"(> --batched-mm-cap-gb {args.batched_mm_cap_gb})"}
                            continue
                    set_impl(impl)
                    try:
                        hf[impl] = time_torch(lambda: hf_forward(block, x), args.quick)
                        hf[impl]["cold"] = time_torch(lambda: hf_forward(block, x), args.quick, evict=evict)
                    except Exception as e:  # noqa: BLE001
                        hf[impl] = {"error": f"{type(e).__name__}: {e}"[:300]}
                        log(f"[{name}] {dt} T={t}: HF {impl} failed: {e}")
                    gc.collect()
                set_impl("eager")
                y_hf = hf_forward(block, x).float()
                # --- dense matmul at equal FLOPs (warm) ---
                g = torch.Generator()
                g.manual_seed(5)
                r = lambda *s: torch.randn(s, generator=g).to(tdt)  # noqa: E731
                a1, wgu, a2, wd, xr, wr = r(t * k, D), r(2 * F, D), r(t * k, F), r(D, F), r(t, D), r(E, D)
                if S:
                    s1, sgu, s2, sd = r(t, D), r(2 * S, D), r(t, S), r(D, S)
                Fn = torch.nn.functional

                def dense():
                    Fn.linear(xr, wr)
                    Fn.linear(a1, wgu)
                    Fn.linear(a2, wd)
                    if S:
                        Fn.linear(s1, sgu)
                        Fn.linear(s2, sd)
                row["dense"] = time_torch(dense, args.quick)
            row["hf"] = hf
            # --- Mixtile: correctness, then cold timing ---
            xin = os.path.join(work, f"x_T{t}_{dt}.safetensors")
            yout = os.path.join(work, f"y_T{t}_{dt}.safetensors")
            time.sleep(0.2 if args.quick else 1.0)
            _, rss = checked([MIXTILE_RUN, art["dir"], "--weights", weights_path[dt], "--inputs", xin, "-o", yout,
                              "--threads", str(args.threads)], "mixtile-run -o")
            from safetensors.torch import load_file
            y_raw = load_file(yout)[art["output_name"]]
            out_dtype = str(y_raw.dtype).replace("torch.", "")
            y_mx = y_raw.float()
            del y_raw
            os.remove(yout)
            keep = ~routes[t]["near"]
            chk = {"tokens": t, "rel_l2": rel_l2(torch, y_mx, refs[t]),
                   "rel_l2_no_near_ties": rel_l2(torch, y_mx, refs[t], keep) if bool(keep.any()) else None,
                   "near_tie_tokens": routes[t]["near_count"],
                   "hf_rel_l2": rel_l2(torch, y_hf, refs[t]),
                   "hf_rel_l2_no_near_ties": rel_l2(torch, y_hf, refs[t], keep) if bool(keep.any()) else None,
                   "output_dtype": out_dtype, "tol": TOL}
            chk["passed"] = chk["rel_l2"] <= TOL
            checks.append(chk)
            ok &= chk["passed"]
            if not chk["passed"]:
                log(f"[{name}] !!! FAILED {dt} T={t}: Mixtile rel L2 {chk['rel_l2']:.3e} > {TOL} "
                    f"(without {chk['near_tie_tokens']} near-tie tokens: {chk['rel_l2_no_near_ties']})")
            # N so that a row takes a few seconds (each cold run also streams 4x the L3, 256 MiB to 2 GiB, to evict).
            if args.quick:
                mx = mixtile_bench(art["dir"], weights_path[dt], xin, args.threads, 3, 1, pause=0.2)
            else:
                probe = mixtile_bench(art["dir"], weights_path[dt], xin, args.threads, 3, 1)
                est = probe["median_ms"] / 1e3 + 0.08
                runs = int(max(5, min(200, args.mixtile_seconds / est)))
                mx = mixtile_bench(art["dir"], weights_path[dt], xin, args.threads, runs, 2)
            # Warm as well, to set beside PyTorch warm (weights that fit the L3 stay there between calls).
            mx["warm"] = mixtile_bench(art["dir"], weights_path[dt], xin, args.threads,
                                       3 if args.quick else mx["runs"], 1 if args.quick else 2,
                                       pause=0.2 if args.quick else 1.0, cold=False)
            mx["warm"].pop("peak_rss_bytes", None)
            mx["peak_rss_bytes_cold_bench"] = mx.pop("peak_rss_bytes")  # includes the eviction buffer (4x the L3, 256 MiB to 2 GiB)
            mx["peak_rss_bytes"] = rss  # the plain call (mixtile-run -o): weights mapped + workspace
            row["mixtile"] = mx
            # More rounds, alternating the sides again: the VM's speed drifts over minutes, and a
            # side timed in a slow minute would lose the comparison for it. Each side keeps its
            # best round (lowest median); every round's median is in the JSON.
            for rnd in range(1, args.rounds):
                with torch.inference_mode():
                    for impl in impls:
                        if "median_ms" not in hf.get(impl, {}):
                            continue
                        set_impl(impl)
                        hf[impl] = best_round(hf[impl], time_torch(lambda: hf_forward(block, x), args.quick), rnd)
                        hf[impl]["cold"] = best_round(hf[impl]["cold"], time_torch(lambda: hf_forward(block, x),
                                                                                   args.quick, evict=evict), rnd)
                    set_impl("eager")
                    row["dense"] = best_round(row["dense"], time_torch(dense, args.quick), rnd)
                again = [mixtile_bench(art["dir"], weights_path[dt], xin, args.threads, runs,
                                       1 if args.quick else 2, pause=0.2 if args.quick else 1.0, cold=cold)
                         for runs, cold in ((mx["runs"], True), (mx["warm"]["runs"], False))]
                for a in again:
                    a.pop("peak_rss_bytes", None)  # the first round's figures stay
                warm = best_round(mx["warm"], again[1], rnd)
                mx = best_round(mx, again[0], rnd)
                mx["warm"] = warm
                row["mixtile"] = mx
            del a1, a2, wgu, wd, xr, wr
            if S:
                del s1, sgu, s2, sd
            row["loadavg_after"] = loadavg()
            row["others_cpu_busy_after"] = cpu_busy()

            ms = mx["median_ms"]
            flops = 2.0 * t * (k * 3 * D * F + 3 * D * S + D * E)
            active = dense_bytes + routes[t]["distinct"] * expert_bytes
            times = [v["median_ms"] for v in hf.values() if "median_ms" in v]
            best = min(times) if times else None
            cold_times = [(v["cold"]["median_ms"], i) for i, v in hf.items() if "cold" in v]
            best_cold = min(cold_times) if cold_times else (None, None)
            ms_warm = mx["warm"]["median_ms"]
            row.update(flops=flops, active_weight_bytes=active, distinct_experts=routes[t]["distinct"],
                       best_hf_ms=best, best_hf_impl=min((v["median_ms"], i) for i, v in hf.items()
                                                          if "median_ms" in v)[1] if times else None,
                       best_hf_cold_ms=best_cold[0], best_hf_cold_impl=best_cold[1],
                       mixtile_warm_ms=ms_warm,
                       # like for like: both cold (a layer of a model), both warm (a layer alone)
                       speedup_cold_vs_cold=best_cold[0] / ms if best_cold[0] else None,
                       speedup_warm_vs_warm=best / ms_warm if best else None,
                       speedup_vs_best_hf=best / ms if best else None,
                       mixtile_tflops=flops / (ms * 1e-3) / 1e12,
                       dense_tflops=flops / (row["dense"]["median_ms"] * 1e-3) / 1e12)
            row["mixtile_over_dense_rate"] = row["mixtile_tflops"] / row["dense_tflops"]
            row["gbs_active"] = active / (ms * 1e-3) / 1e9
            row["fraction_of_read_bw"] = row["gbs_active"] / bandwidth
            row["rel_l2"] = chk["rel_l2"]
            row["hf_rel_l2"] = chk["hf_rel_l2"]
            if dt == "bf16":
                tg = {}
                cc, ww = row["speedup_cold_vs_cold"], row["speedup_warm_vs_warm"]
                if t >= 512:
                    tg["2x_faster_than_best_hf (cold vs cold)"] = cc is not None and cc >= 2.0
                    tg["2x_faster_than_best_hf (warm vs warm)"] = ww is not None and ww >= 2.0
                    tg[">=1.0x_dense_bf16_rate (Mixtile warm vs dense warm)"] = \
                        row["dense"]["median_ms"] / ms_warm >= 1.0
                if t <= 32:
                    tg["1.5x_faster_than_best_hf (cold vs cold)"] = cc is not None and cc >= 1.5
                    tg["1.5x_faster_than_best_hf (warm vs warm)"] = ww is not None and ww >= 1.5
                if t == 1:
                    tg["cold_>=85%_read_bw"] = row["fraction_of_read_bw"] >= 0.85
                row["targets"] = tg
            rows.append(row)
            hfs = ", ".join(f"{i} {v['median_ms']:.2f}" if "median_ms" in v else f"{i} -" for i, v in hf.items())
            hfc = ", ".join(f"{i} {v['cold']['median_ms']:.2f}" for i, v in hf.items() if "cold" in v)
            log(f"[{name}] {dt} T={t}: Mixtile {ms:.3f} ms cold, {ms_warm:.3f} warm (N={mx['runs']}); HF {hfs} ms "
                f"warm, {hfc} ms cold; dense "
                f"{row['dense']['median_ms']:.3f} ms; rel L2 {chk['rel_l2']:.2e} (HF {chk['hf_rel_l2']:.2e}); "
                f"{row['distinct_experts']} experts touched; others' CPU use before/after "
                f"{row['others_cpu_busy_before']:.0%}/{row['others_cpu_busy_after']:.0%}")
            gc.collect()
        if not args.keep:
            os.remove(weights_path[dt])
        report["wall_s"] = time.monotonic() - report["_t0"]
        write_report(report, args.out)
    del block, named
    gc.collect()
    entry["checks_passed"] = ok
    return ok


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def write_report(report, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    clean = {k: v for k, v in report.items() if not k.startswith("_")}
    with open(path, "w") as f:
        json.dump(clean, f, indent=2, default=str)


def tables(report, impls):
    bw = report["read_bandwidth"]["gbs"]
    lines = []
    for name, e in report["shapes"].items():
        for dt, rows in e.get("rows", {}).items():
            if not rows:
                continue
            wb = e["weight_bytes"][dt]
            lines.append("")
            lines.append(f"{name} ({e['family']}, layer {e['layer']}) D={e['hidden']} F={e['ffn']} E={e['experts']} "
                         f"top-{e['top_k']}" + (f" shared={e['shared_width']}" if e["shared_width"] else "")
                         + f", {dt}; checkpoint {wb['checkpoint'] / 1e9:.3f} GB")
            head = ["T", "Mixtile ms cold / warm"] + [f"HF {i} ms cold / warm" for i in impls] + \
                   ["vs best HF cold / warm", "dense ms (eq. FLOPs, warm)", "Mixtile TFLOP/s (cold)",
                    "Mixtile warm / dense", "GB/s active cold (of bw)", "experts touched", "rel L2 (HF)"]
            lines.append("| " + " | ".join(head) + " |")
            lines.append("|" + "---|" * len(head))
            fx = lambda v: f"{v:.2f}x" if v else "-"  # noqa: E731
            for r in rows:
                mw = r.get("mixtile_warm_ms")
                cells = [str(r["tokens"]), f"{r['mixtile']['median_ms']:.3f} / " + (f"{mw:.3f}" if mw else "-")]
                for i in impls:
                    v = r["hf"].get(i, {})
                    cells.append((f"{v['cold']['median_ms']:.2f}" if "cold" in v else "-") + " / "
                                 + (f"{v['median_ms']:.2f}" if "median_ms" in v else "-"))
                over_dense = r["dense"]["median_ms"] / mw if mw else None
                cells += [f"{fx(r.get('speedup_cold_vs_cold'))} / {fx(r.get('speedup_warm_vs_warm'))}",
                          f"{r['dense']['median_ms']:.3f}",
                          f"{r['mixtile_tflops']:.3f}", f"{over_dense:.2f}" if over_dense else "-",
                          f"{r['gbs_active']:.1f} ({r['fraction_of_read_bw']:.2f})", str(r["distinct_experts"]),
                          f"{r['rel_l2']:.1e} ({r['hf_rel_l2']:.1e})" + ("" if r["rel_l2"] <= TOL else " FAILED")]
                lines.append("| " + " | ".join(cells) + " |")
            noisy = [str(r["tokens"]) for r in rows if (r.get("others_cpu_busy_before") or 0) > 0.25
                     or (r.get("others_cpu_busy_after") or 0) > 0.25]
            if noisy:
                lines.append(f"WARNING: other processes used > 25% of the CPUs around T={', '.join(noisy)}: "
                             "those timings are disturbed (see others_cpu_busy_* in the JSON)")
            big = max(rows, key=lambda r: r["tokens"])
            rss, rssb = big["mixtile"].get("peak_rss_bytes"), big["mixtile"].get("peak_rss_bytes_cold_bench")
            lines.append(f"peak RSS of mixtile-run at T={big['tokens']}: "
                         + (f"{rss / 1e9:.3f} GB" if rss else "?") + " (plain -o call; "
                         + (f"{rssb / 1e9:.3f} GB" if rssb else "?") + " in --bench --cold, with its eviction "
                         f"buffer) next to the checkpoint's {wb['checkpoint'] / 1e9:.3f} GB of weights")
            for r in rows:
                for tname, met in r.get("targets", {}).items():
                    lines.append(f"  target T={r['tokens']} {tname}: {'met' if met else 'MISSED'}")
        if e.get("errors"):
            lines.append(f"{name}: ERRORS {' | '.join(e['errors'])}")
    lines.append("")
    lines.append(f"Mixtile: mixtile-run --bench N [--cold] --threads {report['threads']}, best median of "
                 f"2 invocations; PyTorch: median of >= 5 calls, cold = a buffer of 4x the L3 (256 MiB to 2 GiB) read before each call "
                 f"(as mixtile-run --cold does), warm = nothing between calls. Read bandwidth {bw:.1f} GB/s "
                 f"({report['read_bandwidth']['source']}). dense = torch F.linear at the same FLOPs "
                 f"2T(k*3DF + 3DS + DE) in the same dtype. GB/s = router/bias/shared + distinct routed experts' bytes / "
                 f"Mixtile time. rel L2 vs the HF block in f32 on the same bf16-rounded input and weights; "
                 f"(HF) = the HF block in this dtype against the same reference.")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--tokens", default=None)
    p.add_argument("--quick", action="store_true", help="tiny shapes, T=1,32, few runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "mixtile-cpu-hf-moe"))
    p.add_argument("--out", default=None)
    p.add_argument("--impls", default=None, help="experts implementations (default: all the CPU ones)")
    p.add_argument("--batched-mm-cap-gb", type=float, default=3.0)
    p.add_argument("--mixtile-seconds", type=float, default=3.0, help="seconds of timed Mixtile runs per invocation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=2,
                   help="timing rounds per row, the sides alternating; each side keeps its best (default 2; --quick 1)")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="seconds to wait before each row for other processes to leave the CPUs (default 120; --quick 0)")
    p.add_argument("--keep", action="store_true", help="keep the checkpoints in --work")
    args = p.parse_args()
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if args.quick else 120.0
    if args.quick and "--rounds" not in sys.argv:
        args.rounds = 1
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in SHAPES:
            p.error(f"unknown shape {s}; known: {', '.join(SHAPES)}")
    args.tokens = [int(t) for t in (args.tokens or ",".join(map(str, QUICK_TOKENS if args.quick else TOKENS))).split(",")]
    date = datetime.date.today().isoformat()
    if args.out is None:
        suffix = ("-quick" if args.quick else "") + ("" if set(shapes) == set(SHAPES) else "-" + "-".join(shapes))
        base = args.work if args.quick else os.path.join(ROOT, "bench", "results")
        args.out = os.path.join(base, f"cpu-hf-moe-{date}{suffix}.json")
    os.makedirs(args.work, exist_ok=True)
    for exe in (MIXTILEC, MIXTILE_RUN):
        if not os.access(exe, os.X_OK):
            log(f"error: {exe} missing (build first)")
            return 1

    import numpy
    import safetensors
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    available, registered = experts_implementations()
    impls = [i for i in (args.impls.split(",") if args.impls else available)]
    try:
        git = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True).stdout.strip())
    except Exception:  # noqa: BLE001
        git, dirty = None, None
    report = {"date": date, "quick": args.quick, "threads": args.threads, "tokens": args.tokens,
              "machine": machine_info(), "loadavg_start": loadavg(),
              "versions": {"python": platform.python_version(), "torch": torch.__version__,
                           "transformers": transformers.__version__, "numpy": numpy.__version__,
                           "safetensors": safetensors.__version__, "mixtile_git": git, "mixtile_git_dirty": dirty,
                           "torch_mkldnn_bf16": bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)())},
              "experts_implementations": {"registered": registered, "run_on_cpu": impls},
              "timing": {"torch": "1 warm-up call, median of >= 5 calls (OMP_WAIT_POLICY=PASSIVE); warm: nothing "
                                  "between calls; cold: a buffer of 4x the L3 (256 MiB to 2 GiB) read before each call, untimed",
                         "mixtile": "mixtile-run --bench N (warm) and --bench N --cold, best median of 2 invocations, "
                                    "1 s pause first",
                         "rounds": f"{args.rounds} per row, sides alternating, each side's best round kept",
                         "speedups": "like for like: cold vs cold (a layer inside a model) and warm vs warm; "
                                     "speedup_vs_best_hf is Mixtile cold against HF warm (earlier reports)"},
              "weights": {"router_std": f"{ROUTER_STD}/sqrt(D)", "gate_up_std": "1/sqrt(D)", "down_std": "1/sqrt(F)",
                          "bias_std": BIAS_STD, "rounded_to_bf16": True},
              "tol": TOL, "shapes": {}, "_t0": time.monotonic()}
    m = report["machine"]
    log(f"{m.get('model_name')}; amx_bf16={m.get('flags', {}).get('amx_bf16')} avx512_bf16="
        f"{m.get('flags', {}).get('avx512_bf16')}; torch {torch.__version__}, transformers {transformers.__version__}; "
        f"{args.threads} threads; experts implementations registered {registered}, run here {impls}; load {loadavg()}")
    busy, _ = wait_quiet(args.quiet_wait)
    bw = read_bandwidth(torch, args.work, args.threads, args.quick)
    bw["others_cpu_busy_before"] = busy
    report["read_bandwidth"] = bw
    log(f"read bandwidth: {bw['gbs']:.1f} GB/s ({bw['source']}; torch.sum {bw['torch_sum_gbs']:.1f} GB/s)")

    ok = True
    for name in shapes:
        try:
            ok &= run_shape(torch, name, args, report, bw["gbs"], impls)
        except Exception as e:  # noqa: BLE001
            ok = False
            traceback.print_exc()
            report["shapes"].setdefault(name, {}).setdefault("errors", []).append(f"{type(e).__name__}: {e}")
            log(f"[{name}] FAILED: {type(e).__name__}: {e}")
        gc.collect()
        report["wall_s"] = time.monotonic() - report["_t0"]
        write_report(report, args.out)
    report["all_checks_passed"] = ok
    write_report(report, args.out)
    log(tables(report, impls))
    log(f"wall {report['wall_s']:.0f} s; written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
