#!/usr/bin/env python3
"""Re-saves a bf16 Hugging Face checkpoint as a fine-grained fp8 one, as DeepSeek-V3's and the
Qwen3 FP8 releases are stored: every decoder-layer projection (attention, experts, shared
experts, dense MLPs; not the routers, embeddings, norms or lm head) as e4m3 codes of w / scale
with a f32 `<name>_scale_inv` per block (scale = the block's largest magnitude / 448), and the
config's quantization_config (quant_method "fp8", weight_block_size). For benchmarks of the
fp8 path on real layer sizes (the test suite's tiny models come from
test/helpers/make_model.py --fp8). Needs torch and safetensors (the pyenv python).

Usage: python3 bench/quantize_fp8.py SRC_DIR DST_DIR [--block 128,128]
"""
import argparse
import json
import os
import shutil

import torch
from safetensors import safe_open
from safetensors.torch import save_file


def quantize(w, rows, cols):
    out_dim, in_dim = w.shape
    gr, gc = -(-out_dim // rows), -(-in_dim // cols)
    padded = torch.zeros(gr * rows, gc * cols, dtype=torch.float32)
    padded[:out_dim, :in_dim] = w.float()
    blocks = padded.view(gr, rows, gc, cols)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
    codes = (blocks / scale[:, None, :, None]).view(gr * rows, gc * cols)[:out_dim, :in_dim]
    return codes.to(torch.float8_e4m3fn).contiguous(), scale.contiguous()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--block", default="128,128")
    args = ap.parse_args()
    rows, cols = (int(v) for v in args.block.split(","))
    os.makedirs(args.dst, exist_ok=True)
    for name in os.listdir(args.src):
        if not name.endswith(".safetensors") and name != "config.json":
            shutil.copy(os.path.join(args.src, name), os.path.join(args.dst, name))
    with open(os.path.join(args.src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                                     "weight_block_size": [rows, cols]}
    with open(os.path.join(args.dst, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    quantized = 0
    for name in sorted(os.listdir(args.src)):
        if not name.endswith(".safetensors"):
            continue
        out = {}
        with safe_open(os.path.join(args.src, name), framework="pt") as f:
            for key in f.keys():
                t = f.get_tensor(key)
                if (key.startswith("model.layers.") and t.ndim == 2 and not key.endswith(".gate.weight")
                        and "shared_expert_gate" not in key and "norm" not in key):
                    out[key], out[key + "_scale_inv"] = quantize(t, rows, cols)
                    quantized += 1
                else:
                    out[key] = t
        save_file(out, os.path.join(args.dst, name), metadata={"format": "pt"})
    print(f"quantize_fp8: {quantized} projections as e4m3 with {rows} x {cols} block scales -> {args.dst}")


if __name__ == "__main__":
    main()
