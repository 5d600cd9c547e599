#!/usr/bin/env python3
"""Whole models, Mixtile against Hugging Face transformers, call by call in ONE process.

bench/cpu_model.py times each side in its own stretch (mixtile-run in a child process); this
VM's speed moves by up to 2x within minutes, so a side can lose a row to a slow minute. Here
both run in one Python process and take turns: Mixtile's whole compiled model through the Python
package (mixtile.Model.from_pretrained: mixtilec --model, the checkpoint's own tensors), and the
transformers model on the same checkpoint in bf16 with each CPU experts implementation (eager,
grouped_mm). Same models and weights as bench/cpu_model.py (its checkpoints are reused or made
in --workdir): OLMoE-1B-7B with 4 of 16 layers, Qwen3-30B-A3B with 2 of 48.

One round = every side once, the order rotating:
  prefill  one prompt of --prompt tokens, batch 1: HF model(ids, logits_to_keep=1); Mixtile
           generate(ids, max_new_tokens=1) (the forward over the prompt, the last position's
           logits, the argmax).
  decode   batch 1 and 8, prompts of --decode-prompt tokens, greedy: each side generates
           N = --new-tokens tokens; decode tokens/s = B (N - 1) over the time of the N - 1 steps
           after the prompt's, timed inside the generation (Mixtile: Model.last_timing(); HF: a
           logits processor's timestamps at the first and the last step). (Before 2026-11-30's
           last runs: B (N - 1) / (t_N - t_1) from two whole calls, which long prompts drown in
           their prefill's noise.)
A row's ratio is the median over rounds of (Mixtile's rate / the round's best HF rate), with
quartiles; the rates are the medians over rounds.

Usage: python3 bench/cpu_model_paired.py [--models olmoe,qwen3_moe] [--rounds 5]
       [--out bench/results/cpu-model-paired-DATE.json]   (pyenv Python with torch, transformers)
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import cpu_model  # noqa: E402  (the models, their weights and checkpoints; sets OMP_WAIT_POLICY: undone)

os.environ.clear()
os.environ.update(cpu_model.CHILD_ENV)

import torch  # noqa: E402

import mixtile  # noqa: E402


def quartiles(values):
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="olmoe,qwen3_moe")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode-prompt", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--workdir", default="/tmp/mixtile-bench-models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--router-std", type=float, default=0.5)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    report = {"date": datetime.date.today().isoformat(), "machine": cpu_model.machine_info(),
              "threads": args.threads, "torch": torch.__version__, "transformers": transformers.__version__,
              "rounds": args.rounds, "prompt": args.prompt, "decode_prompt": args.decode_prompt,
              "new_tokens": args.new_tokens, "decode_timing": "inside the generation (steps after the prompt's)",
              "models": {}}
    for name in args.models.split(","):
        entry = {"title": cpu_model.MODELS[name]["title"]}
        ckpt = cpu_model.ensure_checkpoint(name, args, entry)
        t0 = time.perf_counter()
        mx = mixtile.Model.from_pretrained(ckpt, out=os.path.join(args.workdir, name, "paired-artifact"),
                                           max_batch=8, num_threads=args.threads)
        entry["mixtile_compile_s"] = time.perf_counter() - t0
        hf = transformers.AutoModelForCausalLM.from_pretrained(ckpt, dtype=torch.bfloat16).eval()
        vocab = hf.config.vocab_size
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(3, vocab, (1, args.prompt), generator=g)
        decode_ids = torch.randint(3, vocab, (8, args.decode_prompt), generator=g)
        n = args.new_tokens

        class StepClock(transformers.LogitsProcessor):
            """Timestamps of generate's steps (called once per step, after its forward)."""

            def __init__(self):
                self.times = []

            def __call__(self, input_ids, scores):
                self.times.append(time.perf_counter())
                return scores

        def hf_side(impl):
            def prefill():
                hf.set_experts_implementation(impl)
                with torch.inference_mode():
                    hf(input_ids=prompt, logits_to_keep=1)

            def generate(ids, k):  # decode tokens/s of the steps after the prompt's
                hf.set_experts_implementation(impl)
                clock = StepClock()
                cpu_model.hf_generate(torch, hf, ids, k, 0,
                                      logits_processor=transformers.LogitsProcessorList([clock]))
                return ids.shape[0] * (len(clock.times) - 1) / max(clock.times[-1] - clock.times[0], 1e-9)
            return prefill, generate

        def mx_prefill():
            mx.generate(prompt, max_new_tokens=1)

        def mx_generate(ids, k):
            mx.generate(ids, max_new_tokens=k)
            t = mx.last_timing()
            return t["decode_tokens"] / max(t["decode_seconds"], 1e-9)

        sides = {"mixtile": (mx_prefill, mx_generate)}
        for impl in ("eager", "grouped_mm"):
            sides["hf_" + impl] = hf_side(impl)
        # Same tokens first: greedy decoding of the 8 prompts, Mixtile against HF eager.
        same = [int((torch.as_tensor(mx.generate(decode_ids, max_new_tokens=8))[:, -8:] ==
                     cpu_model.hf_generate(torch, hf, decode_ids, 8, 0)[:, -8:]).all(dim=1).sum())]
        entry["greedy_rows_identical_of_8"] = same[0]
        names = list(sides)
        for s in sides.values():  # warm-up
            s[0]()
            s[1](decode_ids[:1], 2)
        rates = {nm: {"prefill": [], "decode_b1": [], "decode_b8": []} for nm in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for nm in order:
                prefill, generate = sides[nm]
                t = time.perf_counter()
                prefill()
                rates[nm]["prefill"].append(args.prompt / (time.perf_counter() - t))
                for b in (1, 8):
                    rates[nm][f"decode_b{b}"].append(generate(decode_ids[:b], n))
            print(f"[{name}] round {r + 1}: " + "; ".join(
                f"{nm} " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in rates[nm].items()) for nm in names), flush=True)
        entry["rates_per_round"] = rates
        entry["median_rates"] = {nm: {k: statistics.median(v) for k, v in rs.items()} for nm, rs in rates.items()}
        entry["speedup_vs_best_hf"] = {}
        for k in ("prefill", "decode_b1", "decode_b8"):
            ratios = [rates["mixtile"][k][i] / max(rates[h][k][i] for h in names if h != "mixtile")
                      for i in range(args.rounds)]
            entry["speedup_vs_best_hf"][k] = quartiles(ratios)
        report["models"][name] = entry
        print(f"[{name}] Mixtile vs best HF per round (median [q1-q3]): " + ", ".join(
            f"{k} {v['median']:.2f}x [{v['q1']:.2f}-{v['q3']:.2f}]" for k, v in entry["speedup_vs_best_hf"].items())
            + f"; greedy rows identical to HF eager: {same[0]}/8", flush=True)
        mx.close()
        del hf, mx
    out = args.out or os.path.join(HERE, "results", f"cpu-model-paired-{report['date']}.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2, default=str)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
