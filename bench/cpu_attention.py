#!/usr/bin/env python3
"""Prefill attention on the CPU: Mixtile's attention kernel beside PyTorch's, in the same run, on
2 threads, bf16 (the KV cache a bf16 model keeps).

Shapes (one layer's causal self-attention over a prompt of S tokens, one sequence):
  qwen3_moe    Qwen3-30B-A3B: 32 query heads, 4 kv heads, head_dim 128
  mixtral      Mixtral-8x7B: 32 query heads, 8 kv heads, head_dim 128
  olmoe        OLMoE-1B-7B: 16 heads (no grouping), head_dim 128
  deepseek_v3  DeepSeek-V3's multi-head latent attention with 16 of its 128 heads: query/key
               heads of 192 (128 + the 64-dim rotary part), value heads of 128
at S = 512, 2048, 4096.

Peers:
  torch sdpa   torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) in bf16
               on [1, heads, S, dim] tensors, the way transformers' "sdpa" attention calls it:
               kv heads repeated to the query heads (repeat_kv) and, where PyTorch offers it,
               enable_gqa=True instead; the faster of the two. Timed warm (a warm-up call, then
               the median of 3), OMP_WAIT_POLICY=PASSIVE.
  Mixtile      bench/kernels/bench_attention.cpp (built here with -march=native): the library's
               `attention` on the whole prompt written into an empty bf16 cache (RoPE, the cache
               writes and both products), on the f32 tiles (fma_f32) and on the bf16 path mix-tile
               picks for bf16 caches: AMX tiles (amx_bf16) on a CPU with AMX, VDPBF16PS
               (avx512_bf16) on one with AVX512-BF16 (both run on a CPU with both); median of 3
               calls.
Both sides alternate for --rounds rounds (1 s pause between them, so neither sees the other's
spinning threads); the figure per side is the best round. GFLOP/s counts 4·heads·S²/2·dim
(+ value dim) multiply-adds of the causal products; the bf16 paths' results are compared with the
f32 path's (relative L2, expected ~2e-3: q and p rounded to bf16).

Usage: python3 bench/cpu_attention.py [--shapes qwen3_moe,...] [--lengths 512,2048,4096]
       [--rounds 3] [--threads 2] [--out FILE] (default bench/results/cpu-attention-<date>.json)
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cpu_hf_moe as common  # noqa: E402  (sets OMP_WAIT_POLICY=PASSIVE for torch)

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

ROOT = common.ROOT
SHAPES = {
    "qwen3_moe": dict(heads=32, kv_heads=4, dim=128, vdim=128),
    "mixtral": dict(heads=32, kv_heads=8, dim=128, vdim=128),
    "olmoe": dict(heads=16, kv_heads=16, dim=128, vdim=128),
    "deepseek_v3": dict(heads=16, kv_heads=16, dim=192, vdim=128),
}


def build(work):
    exe = os.path.join(work, "bench_attention")
    src = os.path.join(ROOT, "bench", "kernels", "bench_attention.cpp")
    subprocess.run(["g++", "-std=c++17", "-O3", "-fopenmp", "-march=native", "-I" + ROOT, "-w", src, "-o", exe],
                   check=True)
    return exe


def torch_sdpa_ms(torch, shape, S, threads):
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    h, kvh, d, vd = shape["heads"], shape["kv_heads"], shape["dim"], shape["vdim"]
    q = torch.randn(1, h, S, d, generator=g).to(torch.bfloat16)
    k = torch.randn(1, kvh, S, d, generator=g).to(torch.bfloat16)
    v = torch.randn(1, kvh, S, vd, generator=g).to(torch.bfloat16)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    variants = {"repeat_kv": lambda: sdpa(q, k.repeat_interleave(h // kvh, dim=1),
                                          v.repeat_interleave(h // kvh, dim=1), is_causal=True)}
    if h != kvh:
        try:
            sdpa(q[:, :, :8], k[:, :, :8], v[:, :, :8], is_causal=True, enable_gqa=True)
            variants["enable_gqa"] = lambda: sdpa(q, k, v, is_causal=True, enable_gqa=True)
        except TypeError:
            pass
    best = None
    with torch.inference_mode():
        for name, fn in variants.items():
            fn()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(times)
            if best is None or ms < best[0]:
                best = (ms, name)
    return best


def mixtile_ms(exe, shape, S, threads):
    out = subprocess.run([exe, str(S), str(shape["heads"]), str(shape["kv_heads"]), str(shape["dim"]),
                          str(shape["vdim"]), "3", str(threads)], capture_output=True, text=True, check=True,
                         env=common.CHILD_ENV).stdout
    res = {}
    for line in out.splitlines():
        r = json.loads(line)
        res[r["path"]] = {"ms": statistics.median(r["ms"]), "rel_l2_vs_fma_f32": r["rel_l2_vs_fma_f32"]}
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--lengths", default="512,2048,4096")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", default="/tmp/mixtile-cpu-attention")
    p.add_argument("--out")
    args = p.parse_args()
    import torch
    os.makedirs(args.work, exist_ok=True)
    exe = build(args.work)
    date = datetime.date.today().isoformat()
    out = args.out or os.path.join(ROOT, "bench", "results", f"cpu-attention-{date}.json")
    report = {"date": date, "threads": args.threads, "machine": common.machine_info(),
              "versions": {"torch": torch.__version__, "python": sys.version.split()[0]},
              "command": " ".join([sys.executable] + sys.argv), "rounds": args.rounds, "rows": []}
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        for S in (int(x) for x in args.lengths.split(",")):
            torch_runs, mx_runs = [], []
            for _ in range(args.rounds):
                common.wait_quiet(30)
                torch_runs.append(torch_sdpa_ms(torch, shape, S, args.threads))
                time.sleep(1.0)
                mx_runs.append(mixtile_ms(exe, shape, S, args.threads))
                time.sleep(1.0)
            t_ms, t_variant = min(torch_runs)
            row = {"shape": name, **shape, "S": S, "torch_sdpa_ms": round(t_ms, 3), "torch_variant": t_variant,
                   "torch_sdpa_ms_rounds": [round(r[0], 3) for r in torch_runs]}
            flops = 2.0 * shape["heads"] * S * (S + 1) / 2 * (shape["dim"] + shape["vdim"])
            for path in mx_runs[0]:
                ms = min(r[path]["ms"] for r in mx_runs)
                row[f"mixtile_{path}_ms"] = round(ms, 3)
                row[f"mixtile_{path}_ms_rounds"] = [round(r[path]["ms"], 3) for r in mx_runs]
                row[f"mixtile_{path}_gflops"] = round(flops / ms / 1e6, 1)
                row[f"speedup_{path}_vs_torch"] = round(t_ms / ms, 2)
                if path != "fma_f32":
                    row[f"{path}_rel_l2_vs_fma_f32"] = max(r[path]["rel_l2_vs_fma_f32"] for r in mx_runs)
            row["torch_sdpa_gflops"] = round(flops / t_ms / 1e6, 1)
            report["rows"].append(row)
            common.log(json.dumps(row))
            with open(out, "w") as f:
                json.dump(report, f, indent=1)
    common.log(f"wrote {out}")
    bf16 = next((p for p in ("amx_bf16", "avx512_bf16") if any(f"mixtile_{p}_ms" in r for r in report["rows"])),
                None)
    label = {"amx_bf16": "AMX", "avx512_bf16": "VDPBF16PS"}.get(bf16, "bf16")
    print(f"\n| shape | S | torch sdpa bf16 ms | Mixtile f32 tiles ms | Mixtile {label} ms | {label} vs torch | "
          f"{label} GFLOP/s |")
    print("|---|---|---|---|---|---|---|")
    for r in report["rows"]:
        ms = r.get(f"mixtile_{bf16}_ms")
        print(f"| {r['shape']} | {r['S']} | {r['torch_sdpa_ms']} | {r['mixtile_fma_f32_ms']} | "
              f"{ms if ms is not None else '-'} | "
              f"{str(r[f'speedup_{bf16}_vs_torch']) + 'x' if ms is not None else '-'} | "
              f"{r.get(f'mixtile_{bf16}_gflops', '-')} |")

if __name__ == "__main__":
    main()
