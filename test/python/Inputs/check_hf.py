#!/usr/bin/env python3
"""mixtile.hf.patch and mixtile.torch as a transformers user drives them (needs torch and
transformers 5.x): for a tiny random model of every family, built by transformers itself, the
patched model's logits match the unpatched ones (f32: rel L2 < 1e-5; bf16: < 2e-2) and
model.generate gives the same tokens; unpatch restores the original forward; hooks on the
router still fire; the custom op goes through torch.compile (fullgraph) and torch.export; bad
input raises MixtileError. Without torch it prints why it skips and exits 0.

Usage: check_hf.py WORKDIR  (PYTHONPATH: python/ and test/helpers/)
"""

import os
import sys
import warnings

try:
    import torch
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM
except ImportError as e:
    print(f"skip: torch and transformers are not importable here ({e})")
    sys.exit(0)

import make_model

import mixtile
import mixtile.hf
import mixtile.torch
from checks import check, refused, rel, summary


def tiny(family, dtype):
    fields = make_model.make_config(family, "f32", layers=3 if family == "qwen2_moe" else 2)
    fields = {k: v for k, v in fields.items() if k not in ("model_type", "architectures", "transformers_version")}
    config = AutoConfig.for_model(family, **fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("mlp.gate.weight", "mlp.router.weight")):  # spread routers: no
                p.normal_(0.0, 1.0)                                      # near-ties in top-k
            elif "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    return model.to(dtype)


def main(work):
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    ids = torch.tensor([[3, 17, 42, 9, 100, 7], [5, 6, 7, 8, 9, 10]])
    mask = torch.ones_like(ids)
    for family in make_model.FAMILIES:
        for dtype in (torch.float32, torch.bfloat16) if family == "olmoe" else (torch.float32,):
            model = tiny(family, dtype)
            name = f"{family} {str(dtype).split('.')[-1]}"
            with torch.no_grad():
                before = model(ids).logits.float()
                tokens = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
                mixtile.hf.patch(model, cpu="x86-64-v4" if dtype == torch.float32 else None,
                                 out=os.path.join(work, family + str(dtype)))
                patched = mixtile.hf.patched_layers(model)
                after = model(ids).logits.float()
                new_tokens = model.generate(ids, attention_mask=mask, max_new_tokens=6, do_sample=False)
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            check(len(patched) > 0 and rel(after, before) < tol,
                  f"{name}: layers {patched} patched, logits rel L2 {rel(after, before):.2e}")
            check(torch.equal(tokens, new_tokens), f"{name}: generate gives the same tokens")
            if family == "mixtral":
                seen = []
                gate = model.model.layers[patched[0]].mlp.gate
                handle = gate.register_forward_hook(lambda m, i, o: seen.append(1))
                with torch.no_grad():
                    model(ids)
                handle.remove()
                check(len(seen) == 1, f"{name}: a hook on the router fires ({len(seen)} calls)")
            mixtile.hf.unpatch(model)
            with torch.no_grad():
                restored = model(ids).logits.float()
            check(mixtile.hf.patched_layers(model) == [] and torch.equal(restored, before),
                  f"{name}: unpatch restores the original forward")

    # The custom op: torch.compile with a full graph, and torch.export.
    model = tiny("olmoe", torch.float32)
    mixtile.hf.patch(model, cpu="x86-64-v4")
    block = model.model.layers[0].mlp._mixtile
    x = torch.randn(5, model.config.hidden_size)
    with torch.no_grad():
        eager = block(x)
        compiled = torch.compile(lambda t: block(t) * 2.0, fullgraph=True)(x)
    check(torch.allclose(compiled, eager * 2.0), "torch.compile(fullgraph=True) through the custom op")

    class Wrapper(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, t):
            return self.inner(t) + 1.0

    exported = torch.export.export(Wrapper(block), (x,))
    check("mixtile.sparse_block" in str(exported.graph) and torch.allclose(exported.module()(x), eager + 1.0),
          "torch.export keeps the op and runs it")

    # Bad input: one MixtileError, never a crash.
    refused(lambda: block(x.double()), "", "a float64 input")
    refused(lambda: block(torch.randn(3, model.config.hidden_size + 1)), "", "a wrong hidden size")
    llama = AutoModelForCausalLM.from_config(AutoConfig.for_model(
        "llama", hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
        vocab_size=64))
    refused(lambda: mixtile.hf.patch(llama), "llama", "a llama model")
    return summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
