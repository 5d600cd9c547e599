#!/usr/bin/python3
"""The CPU benchmark rows of issue 4: the sparse layer kinds other than token choice, on 2
threads, with their peers measured in the same run.

  * Mixture of Tokens (layers.md §6): hidden 256, group size 32, 512 ReLU experts of width
    F = 16 and F = 64, B x S = 256 x 32 = 8192 tokens, f32. Peers: PyTorch eager written the
    way the MoT authors' llm-random continuous_moe.py is (bench/torch_mot.py), and "the two
    batched expert GEMMs alone" on already-mixed tokens: torch.bmm, and OpenBLAS sgemm per
    expert (bench/mot_kernels.cpp), the fastest of them. mot_kernels also times each kernel
    of the Mixtile layer (token_mix with its controller GEMM, the batched expert FFN,
    token_emit), called as the generated code calls them.
  * Expert choice (layers.md §5): hidden 1024, 64 GELU experts of width F = 1024, capacity
    factor 2, T = 512 and 2048, f32. Peer: PyTorch eager (bench/torch_expert_choice.py).

Timings: Mixtile runs with cold caches (mixtile-run --bench --cold), the per-kernel breakdown
and the OpenBLAS peer likewise (mot_kernels evicts the caches before each run); PyTorch runs
warm. Every figure is the median of its runs, best of 3 repetitions. Each peer's output is
checked against Mixtile's (relative L2) so the rows compare the same math.

Usage: bench/cpu_sparse_kinds.py [--threads 2] [--out build/bench/sparse_kinds.json]
Needs `bash scripts/setup.sh --bench` (OpenBLAS, python3-torch) and a build (scripts/build.sh).
"""
import argparse
import datetime
import json
import os
import platform
import re
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("MIXTILE_BUILD_DIR", os.path.join(ROOT, "build"))
PY = "/usr/bin/python3"
MOT = dict(hidden=256, experts=512, group=32, batch=256, seq=32, widths=(16, 64))
EC = dict(hidden=1024, experts=64, width=1024, capacity_factor=2.0, tokens=(512, 2048))


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def mixtile_latency(artifact, weights, inputs, threads, runs, repeats=3):
    """(median, fastest) seconds of cold-cache calls: the best median of `repeats` repetitions."""
    medians, bests = [], []
    for _ in range(repeats):
        out = run([os.path.join(BUILD, "bin", "mixtile-run"), artifact, "--weights", weights,
                   "--inputs", inputs, "--threads", str(threads), "--bench", str(runs), "--cold"])
        medians.append(float(re.search(r"median latency: ([0-9.]+) ms", out).group(1)))
        bests.append(float(re.search(r"min latency: ([0-9.]+) ms", out).group(1)))
    return min(medians) / 1e3, min(bests) / 1e3


def mixtile_output(artifact, weights, inputs, threads, path):
    run([os.path.join(BUILD, "bin", "mixtile-run"), artifact, "--weights", weights, "--inputs", inputs,
         "--threads", str(threads), "-o", path])
    return path


def random_tensors(artifact, weights, inputs, seed, **dims):
    args = [PY, os.path.join(ROOT, "scripts", "random_tensors.py"), artifact, weights, inputs, "--seed", str(seed)]
    for k, v in dims.items():
        args += [f"--{k}", str(v)]
    run(args)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=os.path.join(BUILD, "bench", "sparse_kinds.json"))
    args = p.parse_args()
    work = os.path.join(BUILD, "bench", "sparse_kinds")
    os.makedirs(work, exist_ok=True)
    th = str(args.threads)

    breakdown_bin = os.path.join(work, "mot_kernels")
    run(["g++", "-std=c++17", "-O3", "-march=native", "-fopenmp", "-I", ROOT,
         os.path.join(ROOT, "bench", "mot_kernels.cpp"), "-o", breakdown_bin, "-lopenblas"])
    limits = os.path.join(work, "machine_limits")
    run(["g++", "-O3", "-march=native", "-fopenmp", os.path.join(ROOT, "bench", "machine_limits.cpp"),
         "-o", limits, "-lopenblas"])

    rows = []
    # ---- Mixture of Tokens -------------------------------------------------------------------
    B, S, D, E, G = MOT["batch"], MOT["seq"], MOT["hidden"], MOT["experts"], MOT["group"]
    for f in MOT["widths"]:
        name = f"mot_256_e512_f{f}"
        artifact = os.path.join(work, name)
        run([os.path.join(BUILD, "bin", "mixtilec"), os.path.join(ROOT, "bench", f"{name}.mlir"), "-o", artifact])
        weights, inputs = os.path.join(work, f"{name}_w.safetensors"), os.path.join(work, f"{name}_x.safetensors")
        random_tensors(artifact, weights, inputs, seed=f, batch=B, seq=S)
        median, best = mixtile_latency(artifact, weights, inputs, args.threads, runs=10)
        y = mixtile_output(artifact, weights, inputs, args.threads, os.path.join(work, f"{name}_y.safetensors"))
        torch = json.loads(run([PY, os.path.join(ROOT, "bench", "torch_mot.py"), weights, inputs, "--group", str(G),
                                "--threads", th, "--runs", "5", "--repeats", "3", "--check", y]))
        # Per-kernel breakdown and the OpenBLAS expert GEMMs: best median of 3 repetitions.
        parts = [json.loads(run([breakdown_bin, th, str(B), str(S), str(D), str(E), str(G), str(f), "7"]))
                 for _ in range(3)]
        kernels = {k: min(part[k] for part in parts) for k in parts[0]}
        alone = {"torch.bmm": torch["expert_gemms_s"],
                 "OpenBLAS sgemm per expert, one 2-thread call after another": kernels["openblas_experts_serial_s"],
                 "OpenBLAS sgemm per expert, experts split over 2 threads": kernels["openblas_experts_parallel_s"]}
        alone_how = min(alone, key=alone.get)
        rows.append({
            "layer": "mixture_of_tokens", "shape": f"D={D} E={E} F={f} G={G} B={B} S={S}", "tokens": B * S,
            "mixtile_s": median, "mixtile_best_s": best, "torch_s": torch["layer_s"],
            "torch_rel_l2_vs_mixtile": torch["rel_l2_vs_mixtile"],
            "expert_gemms_alone_s": alone[alone_how], "expert_gemms_alone_how": alone_how,
            "expert_gemms_alone_candidates_s": alone, "kernels_s": kernels,
            "macs_per_token": {"controller": E * D, "mix": E * D, "experts": E * 2 * D * f // G, "emit": E * D},
        })

    # ---- Expert choice -----------------------------------------------------------------------
    name = "expert_choice_1024_e64"
    artifact = os.path.join(work, name)
    run([os.path.join(BUILD, "bin", "mixtilec"), os.path.join(ROOT, "bench", f"{name}.mlir"), "-o", artifact])
    weights = os.path.join(work, f"{name}_w.safetensors")
    inputs, outputs = [], []
    for t in EC["tokens"]:
        x = os.path.join(work, f"{name}_x{t}.safetensors")
        random_tensors(artifact, weights if t == EC["tokens"][0] else os.path.join(work, "unused.safetensors"), x,
                       seed=t, tokens=t)
        inputs.append(x)
    os.remove(os.path.join(work, "unused.safetensors"))
    mixtile = {}
    for t, x in zip(EC["tokens"], inputs):
        mixtile[t] = mixtile_latency(artifact, weights, x, args.threads, runs=20 if t <= 512 else 8)
        outputs.append(mixtile_output(artifact, weights, x, args.threads, os.path.join(work, f"{name}_y{t}.safetensors")))
    torch = json.loads(run([PY, os.path.join(ROOT, "bench", "torch_expert_choice.py"), weights, *inputs,
                            "--capacity-factor", str(EC["capacity_factor"]), "--threads", th, "--runs", "5",
                            "--repeats", "3", "--check", *outputs]))
    for t in EC["tokens"]:
        rows.append({
            "layer": "expert_choice",
            "shape": f"D={EC['hidden']} E={EC['experts']} F={EC['width']} GELU cf={EC['capacity_factor']:g}",
            "tokens": t, "mixtile_s": mixtile[t][0], "mixtile_best_s": mixtile[t][1],
            "torch_s": torch["median_seconds"][str(t)], "torch_rel_l2_vs_mixtile": torch["rel_l2_vs_mixtile"][str(t)],
        })

    bandwidth = json.loads(run([limits, th]))["read_bandwidth_gbs"]
    for r in rows:
        r["speedup_vs_torch"] = r["torch_s"] / r["mixtile_s"]
        if "expert_gemms_alone_s" in r:
            r["over_expert_gemms_alone"] = r["mixtile_s"] / r["expert_gemms_alone_s"]
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")),
               platform.processor())
    report = {"date": datetime.date.today().isoformat(), "machine": cpu, "threads": args.threads,
              "read_bandwidth_gbs": bandwidth, "torch_version": torch["torch_version"], "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)

    print(f"Sparse layer kinds, f32, {args.threads} threads, {cpu}, {report['date']}; read bandwidth "
          f"{bandwidth:.1f} GB/s; PyTorch {torch['torch_version']}")
    print("| layer | T | Mixtile ms (best) | PyTorch ms | vs PyTorch | expert GEMMs alone ms | Mixtile / alone | "
          "token_mix (controller) / experts / token_emit ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        line = (f"| {r['layer']} {r['shape']} | {r['tokens']} | {r['mixtile_s'] * 1e3:.1f} ({r['mixtile_best_s'] * 1e3:.1f}) | "
                f"{r['torch_s'] * 1e3:.1f} | {r['speedup_vs_torch']:.1f}x | ")
        if "kernels_s" in r:
            k = r["kernels_s"]
            line += (f"{r['expert_gemms_alone_s'] * 1e3:.1f} ({r['expert_gemms_alone_how']}) | "
                     f"{r['over_expert_gemms_alone']:.2f}x | {k['token_mix_s'] * 1e3:.1f} "
                     f"({k['controller_gemm_s'] * 1e3:.1f}) / {k['expert_ffn_s'] * 1e3:.1f} / "
                     f"{k['token_emit_s'] * 1e3:.1f} |")
        else:
            line += "- | - | - |"
        print(line)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
