#!/usr/bin/env python3
"""Mixtile beside the Hugging Face sparse MoE blocks, call by call in ONE process.

bench/cpu_hf_moe.py times each side in its own stretch of seconds (Mixtile through mixtile-run in
a child process), a few rounds, each side keeping its best. On a shared VM whose speed moves by up
to 2x within minutes, a side that met a slow minute still loses its row. Here the sides take turns
call by call inside one Python process: Mixtile through the Python package (python/mixtile: the
artifact bound once, its result written into a preallocated tensor), the HF block for every
experts implementation transformers offers on the CPU, and torch's dense F.linear at equal FLOPs.
One round = one call of every side, the order rotating from round to round; the speedup of a row
is the median over rounds of (that round's best HF time / that round's Mixtile time), so both
sides of every ratio ran within the same fraction of a second.

Same shapes, weights, inputs and checkpoint layout as bench/cpu_hf_moe.py (its functions are
imported): the Mixtral-style block, Qwen3-30B-A3B's and the DeepSeek-V3-like one, T = 1, 32, 512,
2048, bf16 by default.

Cold: before every call of every side, the same buffer of 4x the L3 (256 MiB to 2 GiB) is read
(untimed), as a layer inside a model sees its weights. Warm: every timed call right after --warm-calls untimed calls of
the same side (default 5), so that what the other sides' calls pushed out of the caches is back.
One untimed call did not bring it back: Mixtral-style T=1 (44 MB of active experts, 2026-12-03,
Sapphire Rapids VM) took 1.31 ms after one, 0.99 after three and 0.89 after six (0.88 with Mixtile
alone); HF's grouped_mm 1.48, 1.36, 1.33, while each HF implementation also found the weights its
siblings had just read (they share the block's tensors; Mixtile reads its own copy). Both sides share one OpenMP runtime
(torch's libgomp, which the Mixtile kernels bind to in this process) with its default wait policy,
as a Python user has them. The Mixtile time is the wall time of Session.run from Python (the ctypes
call, the tensor set, the run); the runtime's own figure is recorded beside it.
Correctness in the same run: Mixtile's output against the HF block in f32 (rel L2 <= 2e-2 in bf16,
1e-4 in f32), HF's own bf16 error beside it.

Usage:
  python3 bench/cpu_hf_moe_paired.py                       # all shapes, T=1,32,512,2048, bf16 (~15 min)
  python3 bench/cpu_hf_moe_paired.py --shapes mixtral --tokens 512,2048
  python3 bench/cpu_hf_moe_paired.py --quick               # tiny shapes: checks the script
Options: --threads 2, --dtype bf16|f32, --seconds S (timed seconds per row and mode, default 8),
--warm-calls N (default 5),
--impls, --work DIR, --out FILE (default bench/results/cpu-hf-moe-paired-<date>.json, then
-<date>-2.json, ... when that exists).
Exit status 1 when a correctness check or a shape failed.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import cpu_hf_moe as base  # noqa: E402  (sets OMP_WAIT_POLICY=PASSIVE for its own use: undone below)

os.environ.clear()
os.environ.update(base.CHILD_ENV)

import argparse  # noqa: E402
import datetime  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import struct  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

log = base.log


def time_rounds(sides, evict, seconds, min_rounds, max_rounds, warm_calls=1):
    """sides: {name: fn}. One warm-up call each, then rounds of one timed call per side (the
    order rotating). Cold (evict given): evict() before every timed call, untimed. Warm: the
    side's call runs warm_calls times untimed right before its timed call (its weights are where
    its own previous calls left them, not where the other sides pushed them). Returns {name: [ms
    per round]}."""
    names = list(sides)
    t0 = time.perf_counter()
    for n in names:
        if evict is not None:
            evict()
        sides[n]()
    est = (time.perf_counter() - t0) * (1 if evict is not None else 1 + warm_calls)
    rounds = int(max(min_rounds, min(max_rounds, seconds / max(est, 1e-6))))
    times = {n: [] for n in names}
    for r in range(rounds):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            if evict is not None:
                evict()
            else:
                for _ in range(warm_calls):
                    sides[n]()
            t = time.perf_counter()
            sides[n]()
            times[n].append((time.perf_counter() - t) * 1e3)
    return times


def summarize(times, hf_names):
    """Medians per side; per-round ratios against Mixtile (the round's best HF, each HF
    implementation, dense), their medians and quartiles."""
    mx = times["mixtile"]
    out = {"rounds": len(mx), "median_ms": {n: statistics.median(v) for n, v in times.items()},
           "min_ms": {n: min(v) for n, v in times.items()}}
    best = [min(times[h][i] for h in hf_names) for i in range(len(mx))] if hf_names else None

    def stats(ratios):
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        return {"median": statistics.median(ratios), "q1": q[0], "q3": q[2]}
    if best:
        out["speedup_vs_best_hf"] = stats([b / m for b, m in zip(best, mx)])
    out["speedup_vs_hf_impl"] = {h: stats([a / m for a, m in zip(times[h], mx)]) for h in hf_names}
    if "dense" in times:
        out["mixtile_over_dense_rate"] = stats([d / m for d, m in zip(times["dense"], mx)])
    return out


def run_shape(torch, mixtile, name, args, report, impls):
    spec = base.SHAPES[name]
    family, layer = spec["family"], spec["layer"]
    config, Block, _, extra = base.block_config(name, args.quick)
    work = os.path.join(args.work, name)
    os.makedirs(work, exist_ok=True)
    cfg_path = base.write_config(config, extra, work)
    D, E, F, k, S = base.block_dims(family, config)
    dt = args.dtype
    entry = {"family": family, "layer": layer, "hidden": D, "ffn": F, "experts": E, "top_k": k, "shared_width": S,
             "dtype": dt, "rows": [], "errors": []}
    report["shapes"][name] = entry

    t0 = time.perf_counter()
    art = base.compile_artifacts(cfg_path, layer, work, (dt,))[dt]
    entry["compile"] = {"seconds": art["compile_s"], "command": art["command"]}
    ep = art["manifest"]["entry_points"][0]
    in_name = [a for a in ep["arguments"] if a.get("kind") == "input"][0]["name"]
    out_name = ep["results"][0]["name"]
    block = Block(config).eval()
    base.fill_block(torch, block, family, D, F, S, args.seed)
    for p in block.parameters():
        p.requires_grad_(False)
    names = base.checkpoint_names(family, layer, E, S)
    log(f"[{name}] D={D} F={F} E={E} top-{k} shared={S}: compiled and built in {time.perf_counter() - t0:.1f} s")

    xs, refs = {}, {}
    for t in args.tokens:
        g = torch.Generator()
        g.manual_seed(args.seed * 1000 + t)
        xs[t] = torch.randn((t, D), generator=g).to(torch.bfloat16)
        with torch.inference_mode():
            refs[t] = base.hf_forward(block, xs[t].float()).clone()
    tdt = torch.bfloat16 if dt == "bf16" else torch.float32
    if dt == "bf16":
        bias = block.gate.e_score_correction_bias.clone() if family == "deepseek_v3" else None
        block = block.to(torch.bfloat16)
        if bias is not None:
            block.gate.e_score_correction_bias = bias  # f32, as in the checkpoint
    named = base.named_tensors(block, names, F)
    tensors = {}
    for a in ep["arguments"]:
        if a.get("kind") == "weight":
            want = torch.float32 if a["dtype"] == "f32" else torch.bfloat16
            tensors[a["name"]] = named[a["name"]] if named[a["name"]].dtype == want else named[a["name"]].to(want)
    weights = os.path.join(work, f"weights_paired_{dt}.safetensors")
    base.write_safetensors(torch, weights, tensors)
    # Where the tensors' data lie relative to a cache line: safetensors aligns to 8 bytes only,
    # and the kernels read the weights in place (matrix_engines.h, panel).
    with open(weights, "rb") as f:
        header_bytes = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_bytes))
    entry["weights_offset_mod_64"] = sorted({(8 + header_bytes + t["data_offsets"][0]) % 64
                                             for name, t in header.items() if name != "__metadata__"})
    del tensors, named
    gc.collect()
    session = mixtile.Artifact(art["dir"]).bind(weights, num_threads=args.threads)
    evict = base.make_evictor(torch)
    set_impl = lambda n: setattr(config, "_experts_implementation", n)  # noqa: E731
    ok = True
    elt = 2 if dt == "bf16" else 4
    for t in args.tokens:
        x = xs[t].to(tdt).contiguous()
        y = torch.empty((t, D), dtype=tdt)
        y.fill_(float("nan"))
        run_ms = []

        def mixtile_call():
            session.run({in_name: x}, out={out_name: y})
            run_ms.append(session.last_run_seconds * 1e3)
        mixtile_call()
        tol = base.TOL if dt == "bf16" else 1e-4
        with torch.inference_mode():
            rel = base.rel_l2(torch, y.float(), refs[t])
            set_impl("eager")
            hf_rel = base.rel_l2(torch, base.hf_forward(block, x).float(), refs[t])
        row = {"tokens": t, "rel_l2": rel, "hf_rel_l2": hf_rel, "tol": tol, "passed": rel <= tol}
        ok &= row["passed"]
        sides = {"mixtile": mixtile_call}
        hf_names = []
        for impl in impls:
            if impl == "batched_mm" and t * k * 3 * D * F * elt > args.batched_mm_cap_gb * 1e9:
                row.setdefault("skipped", {})[impl] = "gathered expert weights over --batched-mm-cap-gb"
                continue
            sides["hf_" + impl] = (lambda impl=impl: (set_impl(impl), base.hf_forward(block, x)))
            hf_names.append("hf_" + impl)
        g = torch.Generator()
        g.manual_seed(5)
        rnd = lambda *s: torch.randn(s, generator=g).to(tdt)  # noqa: E731
        dense_args = [(rnd(t, D), rnd(E, D)), (rnd(t * k, D), rnd(2 * F, D)), (rnd(t * k, F), rnd(D, F))]
        if S:
            dense_args += [(rnd(t, D), rnd(2 * S, D)), (rnd(t, S), rnd(D, S))]
        sides["dense"] = lambda: [torch.nn.functional.linear(a, w) for a, w in dense_args]
        with torch.inference_mode():
            for mode in ("cold", "warm"):
                run_ms.clear()
                times = time_rounds(sides, evict if mode == "cold" else None, args.seconds,
                                    3 if args.quick else 7, 200, args.warm_calls)
                row[mode] = summarize(times, hf_names)
                timed = run_ms[1:] if mode == "cold" else run_ms[1 + args.warm_calls::args.warm_calls + 1]
                row[mode]["mixtile_runtime_median_ms"] = statistics.median(timed or run_ms)
        flops = 2.0 * t * (k * 3 * D * F + 3 * D * S + D * E)
        row["flops"] = flops
        for mode in ("cold", "warm"):
            row[mode]["mixtile_tflops"] = flops / row[mode]["median_ms"]["mixtile"] / 1e9
        entry["rows"].append(row)
        c, w = row["cold"], row["warm"]
        log(f"[{name}] {dt} T={t}: Mixtile {c['median_ms']['mixtile']:.3f} / {w['median_ms']['mixtile']:.3f} ms "
            f"(cold / warm, {c['rounds']} / {w['rounds']} rounds); vs best HF "
            f"{c['speedup_vs_best_hf']['median']:.2f}x / {w['speedup_vs_best_hf']['median']:.2f}x; "
            f"warm over dense rate {w['mixtile_over_dense_rate']['median']:.2f}; rel L2 {rel:.1e} (HF {hf_rel:.1e})"
            + ("" if row["passed"] else " FAILED"))
        del dense_args, sides
        gc.collect()
    session.close()
    os.remove(weights)
    entry["checks_passed"] = ok
    return ok


def table(report):
    lines = []
    for name, e in report["shapes"].items():
        if not e.get("rows"):
            continue
        lines.append("")
        lines.append(f"{name}: D={e['hidden']} F={e['ffn']} E={e['experts']} top-{e['top_k']}"
                     + (f" shared={e['shared_width']}" if e["shared_width"] else "") + f", {e['dtype']}")
        impls = [n for n in e["rows"][0]["cold"]["median_ms"] if n.startswith("hf_")]
        head = ["T", "Mixtile ms cold / warm"] + [f"{n} ms cold / warm" for n in impls] + \
               ["vs best HF cold / warm (median of per-round ratios [q1-q3])", "Mixtile warm / dense rate", "rel L2 (HF)"]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in e["rows"]:
            c, w = r["cold"], r["warm"]
            cells = [str(r["tokens"]), f"{c['median_ms']['mixtile']:.2f} / {w['median_ms']['mixtile']:.2f}"]
            for n in impls:
                cells.append(f"{c['median_ms'].get(n, float('nan')):.2f} / {w['median_ms'].get(n, float('nan')):.2f}")
            sc, sw = c["speedup_vs_best_hf"], w["speedup_vs_best_hf"]
            cells.append(f"{sc['median']:.2f}x [{sc['q1']:.2f}-{sc['q3']:.2f}] / {sw['median']:.2f}x "
                         f"[{sw['q1']:.2f}-{sw['q3']:.2f}]")
            cells.append(f"{w['mixtile_over_dense_rate']['median']:.2f}")
            cells.append(f"{r['rel_l2']:.1e} ({r['hf_rel_l2']:.1e})" + ("" if r["passed"] else " FAILED"))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", default=",".join(base.SHAPES))
    p.add_argument("--tokens", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--dtype", choices=("bf16", "f32"), default="bf16")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per row and mode (default 8; --quick 0.2)")
    p.add_argument("--impls", default=None)
    # 1 GB, not the 3 GB of bench/cpu_hf_moe.py: here the sides take turns in one process, and on
    # the Emerald Rapids VM the call after a side that allocated, filled and freed gigabytes ran
    # slower whichever side it was (Qwen3-30B-A3B's block at T=32, Mixtile cold: 97 ms after
    # batched_mm's 2.4 GB of gathered weights, 52 ms with batched_mm skipped; a numpy array of
    # 2.4 GB made and freed before the call gave 99 ms against 50, with no page faults and no
    # system time in the call). batched_mm was 15-25x slower than grouped_mm at those sizes and
    # never the fastest HF side in any recorded run.
    p.add_argument("--batched-mm-cap-gb", type=float, default=1.0)
    p.add_argument("--warm-calls", type=int, default=5, help="untimed calls of a side before each warm timed call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=os.path.join(base.tempfile.gettempdir(), "mixtile-cpu-hf-moe-paired"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.seconds is None:
        args.seconds = 0.2 if args.quick else 8.0
    shapes = [s for s in args.shapes.split(",") if s]
    for s in shapes:
        if s not in base.SHAPES:
            p.error(f"unknown shape {s}; known: {', '.join(base.SHAPES)}")
    args.tokens = [int(t) for t in (args.tokens or ",".join(map(str, base.QUICK_TOKENS if args.quick
                                                                else base.TOKENS))).split(",")]
    date = datetime.date.today().isoformat()
    if args.out is None:
        suffix = ("-quick" if args.quick else "") + ("" if set(shapes) == set(base.SHAPES) else "-" + "-".join(shapes))
        where = args.work if args.quick else os.path.join(base.ROOT, "bench", "results")
        args.out = os.path.join(where, f"cpu-hf-moe-paired-{date}{suffix}.json")
        # A second full run on one day gets -2, -3, ...: the README cites the first by name.
        n = 2
        while not args.quick and os.path.exists(args.out):
            args.out = os.path.join(where, f"cpu-hf-moe-paired-{date}{suffix}-{n}.json")
            n += 1
    os.makedirs(args.work, exist_ok=True)
    if not os.access(base.MIXTILEC, os.X_OK):
        log(f"error: {base.MIXTILEC} missing (build first)")
        return 1

    import torch
    import transformers
    import mixtile

    torch.set_num_threads(args.threads)
    available, registered = base.experts_implementations()
    impls = args.impls.split(",") if args.impls else available
    git = base.subprocess.run(["git", "-C", base.ROOT, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {"date": date, "quick": args.quick, "threads": args.threads, "dtype": args.dtype, "tokens": args.tokens,
              "machine": base.machine_info(), "loadavg_start": base.loadavg(),
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "mixtile_git": git},
              "experts_implementations": impls,
              "timing": "one process; rounds of one call per side, order rotating; cold: a read of 4x the L3 (256 MiB to 2 GiB) before "
                        "every call (untimed); warm: warm_calls untimed calls of the side before its timed call; "
                        "speedups: median over rounds of best-HF-this-round / Mixtile-this-round",
              "seconds_per_row_and_mode": args.seconds, "warm_calls": args.warm_calls, "shapes": {}}
    m = report["machine"]
    log(f"{m.get('model_name')}; amx_bf16={m.get('flags', {}).get('amx_bf16')}; torch {torch.__version__}, "
        f"transformers {transformers.__version__}; {args.threads} threads; HF experts implementations {impls}")
    ok = True
    t_start = time.monotonic()
    for name in shapes:
        try:
            ok &= run_shape(torch, mixtile, name, args, report, impls)
        except Exception as e:  # noqa: BLE001
            ok = False
            traceback.print_exc()
            report["shapes"].setdefault(name, {}).setdefault("errors", []).append(f"{type(e).__name__}: {e}")
        gc.collect()
        report["wall_s"] = time.monotonic() - t_start
        base.write_report(report, args.out)
    report["all_checks_passed"] = ok
    base.write_report(report, args.out)
    log(table(report))
    log(f"wall {report['wall_s']:.0f} s; written to {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
