#!/usr/bin/env python3
"""Decode at batch 1, Mixtile and llama.cpp taking turns: a bandwidth race read within one minute.

bench/cpu_model.py times each side in its own stretch; decode at batch 1 reads every active weight
once per token, so its rate follows the VM's memory bandwidth of the minute, which moves by 10-50%
within a run (there, llama.cpp runs last). Here the sides alternate round by round: llama.cpp
(llama-cpp-python, the bf16 GGUF bench/cpu_model.py wrote, loaded once in this process, 2 threads)
decodes N - 1 tokens one llama_eval at a time after a 16-token prompt with a numpy argmax per
step, as bench/cpu_model.py times it; then `mixtile-run ART --prompt-ids P --generate N --bench 2`
(its decode-steps figure) on the same checkpoint and prompt. The ratio of a round is Mixtile's
rate over llama.cpp's; the result is the median over rounds.

Needs bench/cpu_model.py's workdir (the checkpoints and the GGUF: run it once) and the pyenv
Python with llama-cpp-python. The Mixtile artifact is compiled into the workdir if missing.
Usage: python3 bench/cpu_decode_llama_paired.py [--models olmoe,qwen3_moe] [--rounds 5]
       [--new-tokens 32] [--workdir /tmp/mixtile-bench-models] [--out FILE.json]
"""

import argparse
import datetime
import json
import os
import random
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "..", "build", "bin")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="olmoe,qwen3_moe")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", default="/tmp/mixtile-bench-models")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    import llama_cpp
    import numpy as np

    report = {"date": datetime.date.today().isoformat(), "threads": args.threads, "rounds": args.rounds,
              "new_tokens": args.new_tokens, "llama_cpp_python": llama_cpp.__version__, "models": {}}
    for name in args.models.split(","):
        ckpt = os.path.join(args.workdir, name, "hf")
        gguf = os.path.join(args.workdir, name, "model-bf16.gguf")
        if not os.path.exists(gguf):
            sys.exit(f"{gguf} is missing: run bench/cpu_model.py first (it writes the checkpoint and the GGUF)")
        art = os.path.join(args.workdir, name, "decode-paired-artifact")
        subprocess.run([os.path.join(BIN, "mixtilec"), "--hf-config", os.path.join(ckpt, "config.json"), "--model",
                        "-o", art], check=True)
        random.seed(1)
        prompt = [random.randrange(1000, 40000) for _ in range(16)]
        llm = llama_cpp.Llama(model_path=gguf, n_threads=args.threads, n_threads_batch=args.threads, n_ctx=1024,
                              n_batch=512, n_ubatch=512, verbose=False, seed=0)
        n_vocab, ctx = llm.n_vocab(), llm._ctx.ctx

        def argmax_last():
            return int(np.argmax(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))))

        def llama_rate():
            llm.reset()
            llm.eval(prompt)
            tok = argmax_last()
            start = time.perf_counter()
            for _ in range(args.new_tokens - 1):
                llm.eval([tok])
                tok = argmax_last()
            return (args.new_tokens - 1) / (time.perf_counter() - start)

        def mixtile_rate():
            out = subprocess.run([os.path.join(BIN, "mixtile-run"), art, "--weights", ckpt, "--prompt-ids",
                                  ",".join(map(str, prompt)), "--generate", str(args.new_tokens), "--bench", "2",
                                  "--threads", str(args.threads)], capture_output=True, text=True, check=True).stdout
            return float([ln for ln in out.splitlines() if ln.startswith("decode tokens/s")][0].split()[-1])

        llama_rate()  # warm-up: the GGUF's pages mapped
        rounds = []
        for i in range(args.rounds):
            a = llama_rate()
            time.sleep(1)
            b = mixtile_rate()
            time.sleep(1)
            rounds.append({"llama_cpp": a, "mixtile": b, "ratio": b / a})
            print(f"[{name}] round {i + 1}: llama.cpp {a:.1f}, Mixtile {b:.1f} tokens/s, ratio {b / a:.2f}", flush=True)
        ratios = [r["ratio"] for r in rounds]
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        report["models"][name] = {"rounds": rounds, "ratio_median": statistics.median(ratios),
                                  "ratio_q1": q[0], "ratio_q3": q[2]}
        print(f"[{name}] Mixtile / llama.cpp, decode batch 1: median {statistics.median(ratios):.2f}x "
              f"[{q[0]:.2f}-{q[2]:.2f}]", flush=True)
        del llm
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
        print("wrote", args.out)


if __name__ == "__main__":
    main()
