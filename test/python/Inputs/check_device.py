#!/usr/bin/env python3
"""The Python package on a cuda-target artifact with tensors in device memory, without a GPU:
a real layer compiled for the cpu is wrapped as a cuda artifact over the stand-in device of
test/runtime/Inputs/fake_cuda_device.cpp, whose "device memory" is its own registry (a host
pointer reaching the entry point, a copy in the wrong direction, a stream it does not know,
a leak abort the run). Device tensors are DLPack objects of device type kDLCUDA over memory
that device allocated, as a CUDA framework hands them (torch CUDA tensors take the same road
through mixtile_tensors_add_device).

Checked: weights bound in device memory are not uploaded; a run with device inputs and
outputs on the caller's stream copies nothing, launches on that stream and returns without
synchronizing; mixed host/device inputs and outputs; the results equal the cpu artifact's on
the same numbers; switching back to the session's stream waits for the caller's first; the
refusals (device memory on a cpu session, a misaligned device pointer, a stream on a cpu
session). Usage: check_device.py MIXTILE_SRC WORKDIR
       check_device.py --case ARTIFACT CASE_DIR OUT.safetensors   (test/gpu/run.sh: one case
       through device tensors, on a real GPU or the stand-in; see run_case)
"""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np

import mixtile
from mixtile import _core
from checks import check, refused, rel, summary

INT = ctypes.c_int
VP = ctypes.c_void_p


class HostApi(ctypes.Structure):
    """codegen/cuda/kernels/host_api.h, version 1."""
    _fields_ = [("version", INT),
                ("device_count", ctypes.CFUNCTYPE(INT, ctypes.POINTER(INT))),
                ("device_info", ctypes.CFUNCTYPE(INT, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(INT))),
                ("malloc", ctypes.CFUNCTYPE(INT, ctypes.POINTER(VP), ctypes.c_size_t)),
                ("free", ctypes.CFUNCTYPE(INT, VP)),
                ("copy_to_device", ctypes.CFUNCTYPE(INT, VP, VP, ctypes.c_size_t, VP)),
                ("copy_to_host", ctypes.CFUNCTYPE(INT, VP, VP, ctypes.c_size_t, VP)),
                ("fill_bytes", ctypes.CFUNCTYPE(INT, VP, INT, ctypes.c_size_t, VP)),
                ("stream_create", ctypes.CFUNCTYPE(INT, ctypes.POINTER(VP))),
                ("stream_destroy", ctypes.CFUNCTYPE(INT, VP)),
                ("stream_synchronize", ctypes.CFUNCTYPE(INT, VP))]


class Device:
    """Device memory and a stream of the fake device, through the artifact's own host API."""

    def __init__(self, library, symbol):
        self.lib = ctypes.CDLL(library)
        getter = getattr(self.lib, symbol)
        getter.restype = ctypes.POINTER(HostApi)
        self.api = getter().contents
        self.stream = VP()
        assert self.api.stream_create(ctypes.byref(self.stream)) == 0
        self.buffers = []

    def upload(self, array, offset=0, dtype=None):
        """A device copy of `array` (offset: bytes past the allocation's 256-byte aligned start;
        dtype: its safetensors dtype, default from the numpy one; BF16 storage is uint16)."""
        array = np.require(array, requirements="C")  # (ascontiguousarray makes a 0-d array 1-d)
        pointer = VP()
        assert self.api.malloc(ctypes.byref(pointer), array.nbytes + offset) == 0
        self.buffers.append(pointer)
        address = pointer.value + offset
        assert self.api.copy_to_device(address, array.ctypes.data, array.nbytes, self.stream) == 0
        return DeviceArray(address, array.shape, array.dtype, dtype)

    def empty(self, shape, dtype):
        """Uninitialized device memory of safetensors dtype `dtype` (F32, BF16, ...)."""
        return self.upload(np.zeros(shape, STORAGE[dtype]), dtype=dtype)

    def download(self, tensor):
        host = np.empty(tensor.shape, tensor.dtype)
        assert self.api.copy_to_host(host.ctypes.data, tensor.address, host.nbytes, self.stream) == 0
        assert self.api.stream_synchronize(self.stream) == 0
        return host

    def close(self):
        for pointer in self.buffers:
            self.api.free(pointer)
        self.api.stream_destroy(self.stream)


# safetensors dtype -> (numpy storage, DLPack type code and bits)
STORAGE = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16, "I32": np.int32, "I64": np.int64,
           "BOOL": np.bool_}
DLPACK = {"F32": (2, 32), "BF16": (4, 16), "F16": (2, 16), "I32": (0, 32), "I64": (0, 64), "BOOL": (6, 8)}
MANIFEST = {"f32": "F32", "bf16": "BF16", "f16": "F16", "i32": "I32", "i64": "I64", "bool": "BOOL"}


class DeviceArray:
    """Device memory exported through DLPack as kDLCUDA, as CuPy or torch export a CUDA
    array; remembers the stream the consumer asked for."""

    def __init__(self, address, shape, storage, dtype=None):
        self.address, self.shape, self.dtype = address, tuple(shape), np.dtype(storage)
        self.kind = dtype or {np.dtype(v): k for k, v in STORAGE.items() if k != "BF16"}[self.dtype]
        self.streams, self._keep = [], []

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        self.streams.append(stream)
        shape = (ctypes.c_int64 * max(len(self.shape), 1))(*self.shape)
        managed = _core._DLManagedTensor()
        code, bits = DLPACK[self.kind]
        managed.dl_tensor = _core._DLTensor(self.address, _core._DLDevice(2, 0), len(self.shape),
                                            _core._DLDataType(code, bits, 1), shape, None, 0)
        managed.deleter = _core._DLManagedTensor._fields_[2][1](lambda m: None)
        self._keep.append((managed, shape))
        ctypes.pythonapi.PyCapsule_New.restype = ctypes.py_object
        ctypes.pythonapi.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return ctypes.pythonapi.PyCapsule_New(ctypes.addressof(managed), b"dltensor", None)


def log_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [line.strip() for line in f]
    os.remove(path)
    return lines


def main(src, work):
    os.makedirs(work, exist_ok=True)
    cpu_dir, fake_dir = os.path.join(work, "cpu"), os.path.join(work, "fake")
    layer = mixtile.compile(os.path.join(src, "examples", "mixtral_token_choice.mlir"), cpu="x86-64-v3",
                            out=cpu_dir)
    subprocess.run(["bash", os.path.join(src, "test", "runtime", "Inputs", "make_fake_cuda_artifact.sh"), src,
                    cpu_dir, fake_dir], check=True)
    with open(os.path.join(fake_dir, "manifest.json")) as f:
        manifest = json.load(f)
    entry = manifest["entry_points"][0]
    rng = np.random.default_rng(7)
    numpy_dtype = {"f32": np.float32, "i32": np.int32, "i64": np.int64}
    weights = {a["name"]: (rng.standard_normal(a["shape"]) * 0.2).astype(numpy_dtype[a["dtype"]])
               for a in entry["arguments"] if a.get("kind") == "weight"}
    inputs = [a for a in entry["arguments"] if a.get("kind") == "input"]
    check(len(inputs) == 1 and len(entry["results"]) >= 1, f"one input, results {[r['name'] for r in entry['results']]}")
    in_name, hidden = inputs[0]["name"], inputs[0]["shape"][1]
    out_name = entry["results"][0]["name"]
    x = rng.standard_normal((5, hidden)).astype(np.float32)

    # The reference: the cpu artifact on the same numbers, one thread as the fake device runs it.
    expected = layer.bind(weights, num_threads=1).run({in_name: x})

    log = os.path.join(work, "fake.log")
    os.environ["FAKE_CUDA_LOG"] = log
    device = Device(os.path.join(fake_dir, manifest["library"]), manifest["cuda_host_api_symbol"])
    artifact = mixtile.Artifact(fake_dir)
    check(artifact.target == "cuda", "the fake artifact is a cuda one")
    on_device = {name: device.upload(w) for name, w in weights.items()}
    log_lines(log)

    # Weights in device memory: bound where they are, nothing uploaded.
    session = artifact.bind(on_device)
    lines = log_lines(log)
    check(not any(line.startswith(("h2d", "malloc")) for line in lines),
          f"device weights are not uploaded at bind ({[l for l in lines if l.startswith(('h2d', 'malloc'))][:3]})")

    # Device input and outputs on the caller's stream: no copy, the launch on that stream, no
    # synchronization before the call returns; the producer was asked for that stream.
    dx = device.upload(x)
    outs = {r["name"]: device.empty([5] + r["shape"][1:], MANIFEST[r["dtype"]]) for r in entry["results"]}
    log_lines(log)
    session.run({in_name: dx}, out=outs, stream=device.stream.value)  # allocates the workspace
    lines = log_lines(log)
    check(bool(lines) and lines[0] == "sync s2", f"taking the caller's stream waits for the session's first ({lines[:1]})")
    got = session.run({in_name: dx}, out=outs, stream=device.stream.value)
    lines = log_lines(log)
    # Streams are numbered as created: the caller's (Device) s1, the session's own s2.
    stream_id = next((line.split()[-1] for line in lines if line.startswith("launch")), None)
    check(stream_id == "s1", f"launched on the caller's stream ({lines})")
    check(not any(line.startswith(("h2d", "d2h", "sync", "malloc")) for line in lines),
          f"device in, device out: no copy, no allocation, no synchronization ({lines})")
    check(dx.streams == [device.stream.value] * 2, f"the input's producer was asked for the caller's stream ({dx.streams})")
    check(all(got[n] is outs[n] for n in outs), "the device outputs come back as the same objects")
    for r in entry["results"]:
        value = device.download(outs[r["name"]])
        check(rel(value, expected[r["name"]]) == 0.0 if r["dtype"] == "f32" else np.array_equal(value, expected[r["name"]]),
              f"device result '{r['name']}' equals the cpu artifact's")

    # Host input, device output; device input, host output (copied back, synchronized).
    out_dev = {out_name: device.empty([5, hidden], "F32")}
    session.run({in_name: x}, out=out_dev, stream=device.stream.value)
    lines = log_lines(log)
    check(any(line.startswith("h2d") and line.endswith(stream_id) for line in lines),
          "a host input is copied in on the caller's stream")
    check(rel(device.download(out_dev[out_name]), expected[out_name]) == 0.0, "host in, device out: the same result")
    host_out = np.full((5, hidden), np.nan, np.float32)
    got = session.run({in_name: dx}, out={out_name: host_out}, stream=device.stream.value)
    lines = log_lines(log)
    check(any(line.startswith("d2h") for line in lines) and lines[-1] == "sync " + stream_id,
          f"a host output is copied back and the call waits for the stream ({lines[-2:]})")
    check(got[out_name] is host_out and rel(host_out, expected[out_name]) == 0.0, "device in, host out: the same result")
    plain = session.run({in_name: dx}, stream=device.stream.value)
    check(rel(plain[out_name], expected[out_name]) == 0.0, "device in, results in the session: copied to new arrays")
    log_lines(log)

    # Back to the session's own stream: the caller's is waited for first.
    session.run({in_name: dx}, out=outs)
    lines = log_lines(log)
    check(bool(lines) and lines[0] == "sync " + stream_id, f"leaving the caller's stream waits for it first ({lines[:1]})")
    check(any(line == "launch s2" for line in lines) and lines[-1] == "sync s2",
          f"without a stream: the session's own, synchronized ({lines})")

    # Refusals: one MixtileError each, naming what is wrong.
    cpu_session = layer.bind(weights)
    refused(lambda: cpu_session.run({in_name: dx}), "device type 2", "device memory on a cpu session")
    refused(lambda: layer.bind(on_device), "device type 2", "device weights on a cpu session")
    odd = device.upload(x, offset=4)
    refused(lambda: session.run({in_name: odd}, out=outs, stream=device.stream.value), "not 16-byte aligned",
            "a device input 4 bytes past alignment")
    lib = _core._runtime()
    refused(lambda: _core._check(lib.mixtile_session_set_stream(cpu_session._handle, device.stream)),
            "a cpu session has no stream", "a stream on a cpu session")
    # The C API itself: a device tensor reaching a cpu session is named by the runtime.
    handle, owners = _core._tensor_set({in_name: dx}, cuda=True)
    try:
        refused(lambda: _core._check(lib.mixtile_session_run(cpu_session._handle, handle, 1)),
                "is in CUDA device memory", "the runtime refuses device memory on a cpu session")
    finally:
        lib.mixtile_tensors_close(handle)

    # Closing a session that ran on the caller's stream waits for that stream.
    session.run({in_name: dx}, out=outs, stream=device.stream.value)
    log_lines(log)
    session.close()
    lines = log_lines(log)
    check(bool(lines) and lines[0] == "sync " + stream_id, f"closing waits for the caller's stream ({lines[:1]})")
    cpu_session.close()
    device.close()

    # A whole model on the cuda backend: mixtile.Model over the stand-in wraps of a cpu model
    # artifact; the same logits and greedy tokens as the cpu artifact's.
    import make_model
    model_dir = os.path.join(work, "qwen")
    make_model.write_model(model_dir, "qwen3_moe", dtype="f32", layers=2)
    mixtile.compile(model_dir, model=True, cpu="x86-64-v3", out=os.path.join(work, "model-cpu"))
    subprocess.run(["bash", os.path.join(src, "test", "runtime", "Inputs", "make_fake_cuda_artifact.sh"), src,
                    os.path.join(work, "model-cpu"), os.path.join(work, "model-fake")], check=True)
    on_cpu = mixtile.Model(mixtile.Artifact(os.path.join(work, "model-cpu")), model_dir, num_threads=1)
    on_gpu = mixtile.Model(mixtile.Artifact(os.path.join(work, "model-fake")), model_dir)
    ids = np.array([[0, 5, 6, 7], [9, 10, 11, 12]], dtype=np.int64)
    mask = np.array([[0, 1, 1, 1], [1, 1, 1, 1]], dtype=np.int64)
    check(rel(on_gpu.forward(ids, mask), on_cpu.forward(ids, mask)) == 0.0, "cuda model logits equal the cpu model's")
    check(np.array_equal(on_gpu.generate(ids, mask, max_new_tokens=5), on_cpu.generate(ids, mask, max_new_tokens=5)),
          "cuda model greedy tokens equal the cpu model's")
    on_gpu.close()
    on_cpu.close()
    return summary()


def run_case(artifact_dir, case_dir, out_path):
    """One case of the GPU test kit (test/gpu/run.sh) through device tensors: the weights and
    the inputs uploaded by the caller and bound where they are, the results written by the
    kernels into the caller's device memory, on the caller's stream; then downloaded into
    OUT_PATH for test/helpers/check.py, as mixtile-run -o writes them. A weight stored in
    another dtype than the layer takes (widened by the runtime) stays on the host."""
    import safetensors_io

    with open(os.path.join(artifact_dir, "manifest.json")) as f:
        manifest = json.load(f)
    entry = manifest["entry_points"][0]
    wanted = {a["name"]: MANIFEST[a["dtype"]] for a in entry["arguments"]}
    device = Device(os.path.join(artifact_dir, manifest["library"]), manifest["cuda_host_api_symbol"])
    weights, wdt = safetensors_io.read_file(os.path.join(case_dir, "weights.safetensors"), raw=True)
    inputs, idt = safetensors_io.read_file(os.path.join(case_dir, "inputs.safetensors"), raw=True)
    bound = {n: device.upload(a, dtype=wdt[n]) if wanted.get(n) == wdt[n] else a for n, a in weights.items()}
    given = {n: device.upload(a, dtype=idt[n]) for n, a in inputs.items()}
    session = None
    try:
        session = mixtile.Artifact(artifact_dir).bind(bound)
        shapes = session._result_shapes(given)
        outs = {n: device.empty(shape, MANIFEST[dt]) for n, (shape, dt) in shapes.items()}
        session.run(given, out=outs, stream=device.stream.value)
        results, dtypes = {}, {}
        for n, o in outs.items():
            value = device.download(o)
            dtypes[n] = o.kind
            results[n] = safetensors_io.bf16_bits_to_f32(value) if o.kind == "BF16" else value
        safetensors_io.write_file(out_path, results, dtypes)
    finally:  # the session first: it may wait on the caller's stream
        if session is not None:
            session.close()
        device.close()
    print(f"device tensors: {len(bound)} weights ({sum(isinstance(v, DeviceArray) for v in bound.values())} "
          f"on the device), {len(given)} inputs, {len(outs)} results on the caller's stream")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--case":
        sys.exit(run_case(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit(main(sys.argv[1], sys.argv[2]))
