#!/usr/bin/env python3
"""The Python package (python/mixtile) as a user drives it, against the float64 reference:
a sparse layer compiled from a config and bound to a checkpoint directory or to a dict of
arrays, a whole model's logits and greedy tokens, and its refusals. With torch importable, the
same through torch tensors (bf16 included); without, that part says it is skipped.

Usage: check_api.py WORKDIR  (PYTHONPATH: python/ and test/helpers/; MIXTILE_HOME: build/)
"""

import ctypes
import os
import sys

import numpy as np

import make_model
import model_reference
import safetensors_io

import mixtile
from checks import check, refused, rel, summary


def main(work):
    directory = os.path.join(work, "olmoe")
    make_model.write_model(directory, "olmoe", dtype="f32", layers=2)
    reference = model_reference.Model(directory)
    rng = np.random.default_rng(1)

    # A sparse layer from the config, on the checkpoint directory's own tensors.
    layer = mixtile.compile(directory, layer=1, cpu="x86-64-v4", out=os.path.join(work, "layer"))
    check(layer.entries == ["sparse_block"], f"entries {layer.entries}")
    x = rng.standard_normal((7, reference.hidden)).astype(np.float32)
    session = layer.bind(directory)
    out = session(hidden_states=x)
    expected = reference.mlp(1, x.astype(np.float64))
    check(set(out) == {"output"} and out["output"].dtype == np.float32, f"results {sorted(out)}")
    check(rel(out["output"], expected) < 1e-5, f"layer vs float64: rel L2 {rel(out['output'], expected):.2e}")
    # Every token count through the same session; a non-contiguous input (copied first).
    for tokens in (1, 33):
        xs = rng.standard_normal((tokens, reference.hidden)).astype(np.float32)
        got = session(hidden_states=xs)["output"]
        check(rel(got, reference.mlp(1, xs.astype(np.float64))) < 1e-5, f"T={tokens}")
    wide = rng.standard_normal((reference.hidden, 9)).astype(np.float32).T
    check(rel(session(hidden_states=wide)["output"], session(hidden_states=np.ascontiguousarray(wide))["output"]) == 0.0,
          "a non-contiguous input gives the contiguous one's result")
    # Results into the caller's arrays (session.run(..., out=)): the same object comes back,
    # filled as a plain run fills a new one; aligned or not; a wrong shape, a read-only or a
    # non-contiguous array, an unknown result name are refused.
    for offset in (0, 1):
        raw = np.empty(x.size + 16, np.float32)
        base = (-raw.ctypes.data // 4) % 16  # elements to the next 64-byte boundary
        target = raw[base + offset: base + offset + x.size].reshape(x.shape)
        target[...] = np.nan
        got = session.run({"hidden_states": x}, out={"output": target})
        check(got["output"] is target and rel(target, out["output"]) == 0.0,
              f"out= fills the caller's array (offset {offset} elements from 64-byte aligned)")
    refused(lambda: session.run({"hidden_states": x}, out={"output": np.empty((8, reference.hidden), np.float32)}),
            "expected f32 [7,", "an out= array of the wrong shape")
    frozen = np.empty_like(x)
    frozen.flags.writeable = False
    refused(lambda: session.run({"hidden_states": x}, out={"output": frozen}), "writable", "a read-only out= array")
    refused(lambda: session.run({"hidden_states": x}, out={"output": np.empty((x.shape[1], 7), np.float32).T}),
            "contiguous", "a non-contiguous out= array")
    refused(lambda: session.run({"hidden_states": x}, out={"logits": np.empty_like(x)}),
            "not a result", "an out= name that is no result")
    # Weights as a dict of arrays (borrowed, not copied).
    weights, _ = safetensors_io.load(os.path.join(directory, "model.safetensors"))
    from_dict = layer.bind({k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()})
    check(rel(from_dict(hidden_states=x)["output"], out["output"]) == 0.0, "weights from a dict")

    # The experts as transformers 5.x holds them in memory (fused_experts): each expert's
    # matrices are views into gate_up_proj [E, 2F, D] and down_proj [E, D, F].
    p = "model.layers.1.mlp."
    experts = reference.config["num_experts"]
    fused = {
        p + "gate.weight": weights[p + "gate.weight"].astype(np.float32),
        p + "experts.gate_up_proj": np.stack([
            np.concatenate([weights[f"{p}experts.{e}.gate_proj.weight"],
                            weights[f"{p}experts.{e}.up_proj.weight"]]) for e in range(experts)
        ]).astype(np.float32),
        p + "experts.down_proj": np.stack(
            [weights[f"{p}experts.{e}.down_proj.weight"] for e in range(experts)]).astype(np.float32),
    }
    fused_layer = mixtile.compile(directory, layer=1, cpu="x86-64-v4", fused_experts=True)
    got = fused_layer.bind(fused)(hidden_states=x)["output"]
    check(rel(got, out["output"]) == 0.0, "fused experts give the per-expert layer's output exactly")

    # An f32 weight given narrower (f16 here; DeepSeek's bf16 hub routers) is widened once,
    # exactly: the result equals binding the widened values.
    narrow = dict(fused)
    narrow[p + "gate.weight"] = fused[p + "gate.weight"].astype(np.float16)
    wide = dict(fused)
    wide[p + "gate.weight"] = narrow[p + "gate.weight"].astype(np.float32)
    a = fused_layer.bind(narrow)(hidden_states=x)["output"]
    b = fused_layer.bind(wide)(hidden_states=x)["output"]
    check(rel(a, b) == 0.0, "an f16 router bound to an f32 weight is widened exactly")

    # Refusals: one MixtileError with the runtime's or the compiler's message.
    refused(lambda: session(hidden_states=x.astype(np.float64)), "float64", "a float64 input")
    refused(lambda: session(hidden_states=np.zeros((3, reference.hidden + 1), np.float32)),
            "hidden_states", "a wrong shape")
    refused(lambda: session(), "hidden_states", "a missing input")
    refused(lambda: mixtile.compile({"model_type": "llama"}), "model_type", "an unsupported config")
    refused(lambda: mixtile.compile("func.func @f( {"), "error", "bad MLIR text")
    refused(lambda: layer.bind(os.path.join(work, "nowhere.safetensors")), "nowhere", "a missing checkpoint")

    # Any object exporting DLPack (JAX, CuPy host arrays, ...; here numpy's own export behind a
    # wrapper with no __array__) is borrowed through its capsule: the same result, and the
    # producer's deleter runs once the run is done; bf16 arrives as bf16 (this layer takes f32,
    # so the runtime names it); a non-contiguous one and one on a device are refused.
    class Exporter:
        def __init__(self, array, device=(1, 0), capsule=None):
            self.array, self.device, self.capsule, self.exports = array, device, capsule, 0

        def __dlpack__(self, stream=None):
            self.exports += 1
            return self.capsule() if self.capsule else self.array.__dlpack__()

        def __dlpack_device__(self):
            return self.device

    source = Exporter(x)
    got = session(hidden_states=source)["output"]
    check(source.exports == 1 and rel(got, out["output"]) == 0.0, "a DLPack object gives the array's result")
    strided = rng.standard_normal((reference.hidden, 7)).astype(np.float32).T
    refused(lambda: session(hidden_states=Exporter(strided)), "contiguous", "a non-contiguous DLPack object")
    refused(lambda: session(hidden_states=Exporter(x, device=(2, 0))), "device type 2", "a DLPack object on a GPU")
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)  # bf16 by truncation, as a producer would hand it
    freed = []

    def bf16_capsule():
        # A DLManagedTensor made here, with a deleter that records its call.
        from mixtile import _core
        shape = (ctypes.c_int64 * 2)(*bits.shape)
        managed = _core._DLManagedTensor()
        managed.dl_tensor = _core._DLTensor(bits.ctypes.data, _core._DLDevice(1, 0), 2, _core._DLDataType(4, 16, 1),
                                            shape, None, 0)
        managed.deleter = _core._DLManagedTensor._fields_[2][1](lambda m: freed.append(True))
        keep.append((managed, shape))
        ctypes.pythonapi.PyCapsule_New.restype = ctypes.py_object
        ctypes.pythonapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return ctypes.pythonapi.PyCapsule_New(ctypes.addressof(managed), b"dltensor", None)

    keep = []
    refused(lambda: session(hidden_states=Exporter(bits, capsule=bf16_capsule)), "got bf16",
            "a bf16 DLPack object on an f32 input (read as bf16)")
    check(freed == [True], f"the producer's deleter ran once ({len(freed)})")

    # The whole model: logits of a left-padded batch and greedy tokens.
    model = mixtile.Model.from_pretrained(directory, cpu="x86-64-v4", out=os.path.join(work, "model"))
    ids = np.array([[0, 0, 5, 6, 7], [9, 10, 11, 12, 13]], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    mask[1] = 1
    logits = model.forward(ids, mask)
    ref = model_reference.run(reference, ids, mask)
    ref_logits = ref["logits"] if isinstance(ref, dict) else ref
    keep = mask.astype(bool)
    check(rel(logits[keep], ref_logits[keep]) < 1e-5, f"model logits vs float64: rel L2 {rel(logits[keep], ref_logits[keep]):.2e}")
    sequences = model.generate(ids, mask, max_new_tokens=4)
    ref_seq = model_reference.run(reference, ids, mask, generate=4)
    ref_seq = ref_seq["sequences"] if isinstance(ref_seq, dict) else ref_seq
    check(np.array_equal(sequences, ref_seq), f"greedy tokens {sequences[:, 5:].tolist()} vs {np.asarray(ref_seq)[:, 5:].tolist()}")
    timing = model.last_timing()  # the generate call: 3 + 5 prompt tokens, then 3 steps of 2
    check(timing["prefill_tokens"] == 8 and timing["prefill_seconds"] > 0 and timing["decode_seconds"] > 0
          and 1 <= timing["decode_steps"] <= 3 and timing["decode_steps"] <= timing["decode_tokens"] <= 6,
          f"model timing of the last generate: {timing}")
    longer = model.generate(ids[:1], mask[:1], max_new_tokens=20)  # caches regrow, no recompile
    check(longer.shape == (1, 25), f"a longer generation {longer.shape}")
    refused(lambda: model.forward([[reference.vocab]]), "vocabulary", "an id outside the vocabulary")
    refused(lambda: model.forward(ids, mask[:, :3]), "attention_mask", "a mask of another shape")

    try:
        import torch
    except ImportError:
        print("skip torch: not importable here")
    else:
        t = torch.from_numpy(x)
        got = session(hidden_states=t)["output"]
        check(isinstance(got, torch.Tensor) and rel(got.numpy(), out["output"]) == 0.0, "torch in, torch out")
        check(rel(session(hidden_states=t.T.contiguous().T)["output"].numpy(), out["output"]) == 0.0,
              "a non-contiguous torch tensor")
        y = torch.full_like(t, float("nan"))
        got = session.run({"hidden_states": t}, out={"output": y})
        check(got["output"] is y and rel(y.numpy(), out["output"]) == 0.0, "torch out= tensor, written in place")
        refused(lambda: session(hidden_states=t.double()), "float64", "a float64 torch tensor")
        bf16 = mixtile.compile(directory, layer=1, token_dtype="bf16", cpu="x86-64-v4").bind(directory)
        y = bf16(hidden_states=t.to(torch.bfloat16))["output"]
        check(y.dtype == torch.bfloat16 and rel(y.float().numpy(), expected) < 2e-2, "bf16 tokens in and out")
        torch_logits = model.forward(torch.from_numpy(ids), torch.from_numpy(mask))
        check(isinstance(torch_logits, torch.Tensor) and rel(torch_logits.numpy(), logits) == 0.0, "model on torch ids")

    return summary()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
