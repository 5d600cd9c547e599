#!/usr/bin/env python3
"""mixtile.hf.patch against the unpatched transformers model, same process, same weights:
prefill and decode tokens/s on the CPU in bf16, for models of real layer sizes with few layers
(bench/cpu_model.py's OLMoE-1B-7B with 4 layers and Qwen3-30B-A3B with 2), and the patched
logits against the unpatched ones.

Unpatched: transformers' experts implementations `eager` and `grouped_mm` (both timed; the
faster is the baseline), sdpa attention. Patched: the same model with every sparse block
replaced by its compiled Mixtile layer (attention, norms and the lm head stay PyTorch's).
Prefill: one prompt of --prompt tokens, model(ids, logits_to_keep=1). Decode: --decode-prompt
token prompts, batch 1 and 8, greedy generate of --new-tokens; decode tokens/s = batch x
(N - 1) / (t(N) - t(1)). Medians of --reps runs.

Usage: python3 bench/python_hf_patch.py [--models olmoe qwen3_moe] [--threads 2] [--reps 3]
       [--out bench/results/python-hf-patch-DATE.json]   (pyenv Python with torch, transformers)
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import cpu_model  # noqa: E402  (the models and the weight scheme of the whole-model benchmark)

import mixtile.hf  # noqa: E402


def timed(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def generate(model, ids, n):
    with torch.inference_mode():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                              max_new_tokens=n, min_new_tokens=n, pad_token_id=0)


def rates(model, args, prompt, decode_ids):
    out = {}
    with torch.inference_mode():
        seconds = timed(lambda: model(input_ids=prompt, logits_to_keep=1), args.reps)
    out["prefill"] = args.prompt / seconds
    for batch in (1, 8):
        ids = decode_ids[:batch]
        t1 = timed(lambda: generate(model, ids, 1), args.reps)
        tn = timed(lambda: generate(model, ids, args.new_tokens), args.reps)
        out[f"decode_b{batch}"] = batch * (args.new_tokens - 1) / max(tn - t1, 1e-9)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["olmoe", "qwen3_moe"], choices=sorted(cpu_model.MODELS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--prompt", type=int, default=512)
    p.add_argument("--decode-prompt", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--out")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    cpu = cpu_model.machine_info()
    report = {"date": datetime.date.today().isoformat(), "machine": cpu, "threads": args.threads,
              "torch": torch.__version__, "python": platform.python_version(), "models": {}}
    import transformers
    report["transformers"] = transformers.__version__
    for name in args.models:
        config, _ = cpu_model.config_object(name)
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
        cpu_model.init_weights(torch, model, 0, 0.5)  # cpu_model.py's scheme and router std
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(3, config.vocab_size, (1, args.prompt), generator=g)
        decode_ids = torch.randint(3, config.vocab_size, (8, args.decode_prompt), generator=g)
        entry = {"title": cpu_model.MODELS[name]["title"], "hf": {}}
        for impl in ("eager", "grouped_mm"):
            model.set_experts_implementation(impl)
            entry["hf"][impl] = rates(model, args, prompt, decode_ids)
            print(f"[{name}] HF {impl}: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["hf"][impl].items()), flush=True)
        with torch.inference_mode():
            reference = model(input_ids=prompt[:, :64]).logits.float()
        t0 = time.perf_counter()
        mixtile.hf.patch(model)
        entry["patch_seconds"] = time.perf_counter() - t0
        entry["mixtile"] = rates(model, args, prompt, decode_ids)
        with torch.inference_mode():
            patched_logits = model(input_ids=prompt[:, :64]).logits.float()
        mixtile.hf.unpatch(model)
        # Both sides against the same model in f32 (64 tokens), after the timings: how far each
        # bf16 run lies from it.
        import copy
        wide = copy.deepcopy(model).float()
        with torch.inference_mode():
            exact = wide(input_ids=prompt[:, :64]).logits.float()
        del wide
        entry["hf_bf16_logits_rel_l2_vs_f32"] = float((reference - exact).norm() / exact.norm())
        entry["logits_rel_l2_vs_unpatched"] = float((patched_logits - reference).norm() / reference.norm())
        entry["patched_logits_rel_l2_vs_f32"] = float((patched_logits - exact).norm() / exact.norm())
        best = {k: max(entry["hf"][i][k] for i in entry["hf"]) for k in entry["mixtile"]}
        entry["speedup_vs_best_hf"] = {k: entry["mixtile"][k] / best[k] for k in best}
        print(f"[{name}] patched: " + ", ".join(f"{k} {v:.1f}" for k, v in entry["mixtile"].items())
              + f"; vs best HF " + ", ".join(f"{k} {v:.2f}x" for k, v in entry["speedup_vs_best_hf"].items())
              + f"; logits rel L2 vs f32: patched {entry['patched_logits_rel_l2_vs_f32']:.2e}, HF bf16 "
              f"{entry['hf_bf16_logits_rel_l2_vs_f32']:.2e}; patch {entry['patch_seconds']:.1f} s",
              flush=True)
        report["models"][name] = entry
        del model
    out = args.out or os.path.join(HERE, "results", f"python-hf-patch-{report['date']}.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
