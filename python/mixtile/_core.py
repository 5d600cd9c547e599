"""The runtime's C API (runtime/mixtile_runtime.h) through ctypes, and mixtilec as a subprocess.

No extension module: the package is the runtime library, the tools and this file, so it needs
no Python headers to build and works with any CPython 3.8+. Tensors cross as raw pointers
(numpy's buffer, torch's data_ptr, any other object's DLPack capsule), never through a copy,
except a non-contiguous numpy array or torch tensor, which is made contiguous first (a
non-contiguous DLPack object is refused).
"""

import ctypes
import json
import os
import subprocess
import tempfile

import numpy as np

__all__ = ["Artifact", "MixtileError", "Model", "Session", "compile", "home"]


class MixtileError(RuntimeError):
    """A refusal of the compiler or the runtime; the message is theirs, one line."""


# ---------------------------------------------------------------------------------------------
# Where the tools and the runtime live
# ---------------------------------------------------------------------------------------------

_RUNTIME = "libmixtile_runtime.so"


def home():
    """The directory holding bin/mixtilec and lib/libmixtile_runtime.so: $MIXTILE_HOME, else
    the installed package's own, else the source tree's build/ (for a checkout on PYTHONPATH)."""
    here = os.path.dirname(os.path.abspath(__file__))
    candidates = [os.environ.get("MIXTILE_HOME"), here, os.path.join(here, "..", "..", "build")]
    for candidate in candidates:
        if candidate and os.path.exists(os.path.join(candidate, "lib", _RUNTIME)):
            return os.path.abspath(candidate)
    raise MixtileError(
        "cannot find the Mixtile runtime (lib/" + _RUNTIME + "): install the package with "
        "`pip install .`, or set MIXTILE_HOME to a build directory"
    )


_lib = None

# mixtile_dtype values and their numpy / torch spellings. bf16 has no numpy dtype: numpy
# callers pass and receive its raw bits as uint16.
_F32, _BF16, _F16, _I32, _I64, _BOOL = 0, 1, 2, 3, 5, 9
_NUMPY = {_F32: np.float32, _BF16: np.uint16, _F16: np.float16, _I32: np.int32, _I64: np.int64,
          _BOOL: np.bool_}
_NAMES = {_F32: "f32", _BF16: "bf16", _F16: "f16", _I32: "i32", _I64: "i64", _BOOL: "bool"}


class _ModelTiming(ctypes.Structure):
    """mixtile_model_timing (mixtile_runtime.h)."""
    _fields_ = [("prefill_seconds", ctypes.c_double), ("prefill_tokens", ctypes.c_int64),
                ("decode_seconds", ctypes.c_double), ("decode_tokens", ctypes.c_int64),
                ("decode_steps", ctypes.c_int64)]


def _runtime():
    global _lib
    if _lib is not None:
        return _lib
    lib = ctypes.CDLL(os.path.join(home(), "lib", _RUNTIME))
    p, i64, c_int, c_size = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_size_t
    pp = ctypes.POINTER(ctypes.c_void_p)
    signatures = {
        "mixtile_last_error": ([], ctypes.c_char_p),
        "mixtile_artifact_open": ([ctypes.c_char_p, pp], c_int),
        "mixtile_artifact_close": ([p], None),
        "mixtile_artifact_target": ([p], ctypes.c_char_p),
        "mixtile_artifact_entry_count": ([p], c_size),
        "mixtile_artifact_entry_name": ([p, c_size], ctypes.c_char_p),
        "mixtile_artifact_is_model": ([p], c_int),
        "mixtile_artifact_model_max_positions": ([p], i64),
        "mixtile_tensors_open": ([ctypes.c_char_p, pp], c_int),
        "mixtile_tensors_create": ([pp], c_int),
        "mixtile_tensors_add": (
            [p, ctypes.c_char_p, c_int, c_int, ctypes.POINTER(i64), p], c_int),
        "mixtile_tensors_add_device": (
            [p, ctypes.c_char_p, c_int, c_int, ctypes.POINTER(i64), p], c_int),
        "mixtile_tensors_close": ([p], None),
        "mixtile_session_create": ([p, ctypes.c_char_p, p, c_int, pp], c_int),
        "mixtile_session_run": ([p, p, c_int], c_int),
        "mixtile_session_run_into": ([p, p, p, c_int], c_int),
        "mixtile_session_set_stream": ([p, p], c_int),
        "mixtile_session_result_count": ([p], c_size),
        "mixtile_session_result_name": ([p, c_size], ctypes.c_char_p),
        "mixtile_session_result_dtype": ([p, c_size], c_int),
        "mixtile_session_result_rank": ([p, c_size], c_int),
        "mixtile_session_result_shape": ([p, c_size], ctypes.POINTER(i64)),
        "mixtile_session_result_data": ([p, c_size], p),
        "mixtile_session_result_bytes": ([p, c_size], c_size),
        "mixtile_session_last_run_seconds": ([p], ctypes.c_double),
        "mixtile_session_close": ([p], None),
        "mixtile_model_create": ([p, p, i64, i64, pp], c_int),
        "mixtile_model_vocab_size": ([p], i64),
        "mixtile_model_forward": ([p, i64, i64, p, p, p, c_int], c_int),
        "mixtile_model_generate": ([p, i64, i64, p, p, i64, p, p, p, p, c_int], c_int),
        "mixtile_model_last_timing": ([p, ctypes.POINTER(_ModelTiming)], c_int),
        "mixtile_model_close": ([p], None),
    }
    for name, (args, result) in signatures.items():
        function = getattr(lib, name)
        function.argtypes = args
        function.restype = result
    _lib = lib
    return lib


def _check(status):
    if status != 0:
        message = _runtime().mixtile_last_error() or b"unknown error"
        raise MixtileError(message.decode("utf-8", errors="replace"))


# ---------------------------------------------------------------------------------------------
# Tensors in and out
# ---------------------------------------------------------------------------------------------


def _is_torch(value):
    return type(value).__module__.split(".")[0] == "torch"


def _torch_codes():
    import torch

    return {torch.float32: _F32, torch.bfloat16: _BF16, torch.float16: _F16, torch.int32: _I32,
            torch.int64: _I64, torch.bool: _BOOL}


# DLPack (dlpack.h, v0.8 ABI): the C structures a __dlpack__ capsule ("dltensor") points to.
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", _DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", _DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class _DLManagedTensor(ctypes.Structure):
    pass


_DLManagedTensor._fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                             ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(_DLManagedTensor)))]

ctypes.pythonapi.PyCapsule_GetPointer.restype = ctypes.c_void_p
ctypes.pythonapi.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
ctypes.pythonapi.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]

_DL_CPU, _DL_CUDA, _DL_CUDA_HOST = 1, 2, 3
# (DLPack type code, bits) -> the runtime's dtype code: int, uint, float, bfloat, bool.
_DLPACK_CODES = {(2, 32): _F32, (4, 16): _BF16, (2, 16): _F16, (0, 32): _I32, (0, 64): _I64,
                 (6, 8): _BOOL}


class _DLPackTensor:
    """Any object with __dlpack__ (JAX, CuPy, PaddlePaddle, ...), read through the DLPack
    capsule itself: its memory is borrowed as it is, bf16 included, and released through the
    producer's deleter when this owner goes. GPU memory (kDLCUDA) only for a cuda session:
    the producer is asked to make it ready on `stream` (the DLPack stream protocol)."""

    def __init__(self, name, value, cuda=False, stream=None):
        device = int(value.__dlpack_device__()[0]) if hasattr(value, "__dlpack_device__") else _DL_CPU
        if device not in (_DL_CPU, _DL_CUDA_HOST) and not (cuda and device == _DL_CUDA):
            raise MixtileError(f"tensor '{name}' is on DLPack device type {device}; this "
                               + ("runs on a CUDA device (kDLCUDA, or host memory)" if cuda else
                                  "runs on the cpu (copy it to host memory first)"))
        self.device = device == _DL_CUDA
        capsule = value.__dlpack__(stream=stream) if self.device and stream is not None \
            else value.__dlpack__()
        address = ctypes.pythonapi.PyCapsule_GetPointer(capsule, b"dltensor")
        # Consumed: the producer's capsule destructor must no longer free it; we call the deleter.
        ctypes.pythonapi.PyCapsule_SetName(capsule, b"used_dltensor")
        self._managed = ctypes.cast(address, ctypes.POINTER(_DLManagedTensor))
        t = self._managed.contents.dl_tensor
        shape = tuple(int(t.shape[d]) for d in range(t.ndim))
        code = _DLPACK_CODES.get((t.dtype.code, t.dtype.bits))
        if code is None or t.dtype.lanes != 1:
            self.close()
            raise MixtileError(f"tensor '{name}' has DLPack dtype code {t.dtype.code}, {t.dtype.bits} "
                               "bits, which Mixtile cannot bind (float32, bfloat16, float16, int32, "
                               "int64, bool)")
        if t.strides:  # null strides: compact row-major
            expected, contiguous = 1, True
            for d in reversed(range(t.ndim)):
                if shape[d] != 1 and int(t.strides[d]) != expected:
                    contiguous = False
                expected *= shape[d]
            if not contiguous:
                self.close()
                raise MixtileError(f"tensor '{name}' is not contiguous; give a contiguous one "
                                   "(DLPack inputs are borrowed as they are, never copied)")
        self.code, self.shape = code, shape
        self.pointer = (t.data or 0) + int(t.byte_offset)

    def close(self):
        managed, self._managed = getattr(self, "_managed", None), None
        if managed and managed.contents.deleter:
            managed.contents.deleter(managed)

    def __del__(self):
        self.close()


class _Borrowed:
    """A tensor handed to the runtime: dtype code, shape, data pointer, whether it is in CUDA
    device memory, and the object that owns the memory (kept alive as long as the runtime may
    read it). cuda: the session runs on a CUDA device (torch CUDA tensors are borrowed there)."""

    def __init__(self, name, value, cuda=False, stream=None):
        self.device = False
        if not _is_torch(value) and not isinstance(value, np.ndarray) and hasattr(value, "__dlpack__"):
            owner = _DLPackTensor(name, value, cuda, stream)
            self.code, self.pointer, self.shape, self.owner = owner.code, owner.pointer, owner.shape, owner
            self.device = owner.device
            return
        if _is_torch(value):
            if value.device.type != "cpu" and not (cuda and value.device.type == "cuda"):
                raise MixtileError(
                    f"tensor '{name}' is on {value.device}; this runs on "
                    + ("a CUDA device (give a CUDA or CPU tensor)" if cuda
                       else "the cpu (move it with .cpu())")
                )
            self.device = value.device.type == "cuda"
            codes = _torch_codes()
            if value.dtype not in codes:
                raise MixtileError(f"tensor '{name}' has dtype {value.dtype}, which Mixtile cannot "
                                   "bind (float32, bfloat16, float16, int32, int64, bool)")
            value = value.detach()
            if not value.is_contiguous():
                value = value.contiguous()  # documented: a non-contiguous input is copied
            self.code, self.pointer = codes[value.dtype], value.data_ptr()
        else:
            array = np.asarray(value)
            codes = {np.dtype(t): c for c, t in _NUMPY.items()}
            if array.dtype == np.float64:
                raise MixtileError(f"tensor '{name}' is float64; give float32 (or uint16 bf16 bits)")
            if array.dtype not in codes:
                raise MixtileError(f"tensor '{name}' has dtype {array.dtype}, which Mixtile cannot bind")
            value = np.ascontiguousarray(array)
            self.code, self.pointer = codes[value.dtype], value.ctypes.data
        self.owner = value
        self.shape = tuple(int(d) for d in value.shape)


def _tensor_set(tensors, cuda=False, stream=None):
    """A mixtile_tensors of borrowed memory, and the objects owning it. cuda: for a session on
    a CUDA device, which also takes tensors in device memory."""
    lib = _runtime()
    handle = ctypes.c_void_p()
    _check(lib.mixtile_tensors_create(ctypes.byref(handle)))
    owners = []
    try:
        for name, value in tensors.items():
            b = _Borrowed(name, value, cuda, stream)
            shape = (ctypes.c_int64 * max(len(b.shape), 1))(*b.shape)
            add = lib.mixtile_tensors_add_device if b.device else lib.mixtile_tensors_add
            _check(add(handle, name.encode(), b.code, len(b.shape), shape,
                       ctypes.c_void_p(b.pointer)))
            owners.append(b.owner)
    except Exception:
        lib.mixtile_tensors_close(handle)
        raise
    return handle, owners


def _wrap(array, as_torch):
    """A result array (numpy, owned) as the caller's kind."""
    if not as_torch:
        return array
    import torch

    if array.dtype == np.uint16:
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


# ---------------------------------------------------------------------------------------------
# Compile
# ---------------------------------------------------------------------------------------------


def compile(source, *, target="cpu", dtype=None, layer=None, model=False, out=None, cpu=None,
            token_dtype=None, fused_experts=False):
    """Compiles `source` with mixtilec and returns the Artifact.

    source: a .mlir path or MLIR text, or a Hugging Face config.json path, a checkpoint
    directory holding one, or a config dict. layer: the sparse layer of a config (default: its
    first); model=True: the whole decoder. fused_experts=True: the layer takes the experts as
    transformers 5.x holds them in memory (mlp.experts.gate_up_proj [E, 2F, D] and
    mlp.experts.down_proj [E, D, F]). out: the output directory (default: a new temporary
    one, kept). Refusals raise MixtileError with the compiler's message."""
    work = tempfile.mkdtemp(prefix="mixtile-src-")
    args = []
    if isinstance(source, dict):
        path = os.path.join(work, "config.json")
        with open(path, "w") as f:
            json.dump(source, f)
        args += ["--hf-config", path]
    else:
        text = os.fspath(source)
        if os.path.isdir(text):
            text = os.path.join(text, "config.json")
        if os.path.exists(text) and text.endswith(".json"):
            args += ["--hf-config", text]
        elif os.path.exists(text):
            args.append(text)
        elif "func.func" in text or "module" in text:
            path = os.path.join(work, "layer.mlir")
            with open(path, "w") as f:
                f.write(text)
            args.append(path)
        else:
            raise MixtileError(f"source '{text}' is neither a file nor MLIR text")
    if model:
        args.append("--model")
    if fused_experts:
        args.append("--fused-experts")
    if layer is not None:
        args += ["--layer", str(int(layer))]
    if dtype is not None:
        args += ["--dtype", str(dtype)]
    if token_dtype is not None:
        args += ["--token-dtype", str(token_dtype)]
    if cpu is not None:
        args += ["--cpu", str(cpu)]
    args += ["--target", target]
    out = os.fspath(out) if out is not None else tempfile.mkdtemp(prefix="mixtile-")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    done = subprocess.run([os.path.join(home(), "bin", "mixtilec")] + args + ["-o", out],
                          capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        raise MixtileError("\n".join(lines) or f"mixtilec exited with status {done.returncode}")
    return Artifact(out)


# ---------------------------------------------------------------------------------------------
# Artifacts, sessions, models
# ---------------------------------------------------------------------------------------------


class _Closing:
    """Releases its runtime handles (close()) when collected."""

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Artifact(_Closing):
    """A compiled output directory (mixtilec -o OUTDIR)."""

    def __init__(self, outdir):
        self.path = os.fspath(outdir)
        self._handle = ctypes.c_void_p()
        _check(_runtime().mixtile_artifact_open(self.path.encode(), ctypes.byref(self._handle)))

    @property
    def target(self):
        return _runtime().mixtile_artifact_target(self._handle).decode()

    @property
    def entries(self):
        lib = _runtime()
        count = lib.mixtile_artifact_entry_count(self._handle)
        return [lib.mixtile_artifact_entry_name(self._handle, i).decode() for i in range(count)]

    @property
    def is_model(self):
        return bool(_runtime().mixtile_artifact_is_model(self._handle))

    def _entry_manifest(self, entry):
        """The manifest's description of entry point `entry` (None: the first)."""
        if getattr(self, "_manifest", None) is None:
            with open(os.path.join(self.path, "manifest.json")) as f:
                self._manifest = json.load(f)
        points = self._manifest.get("entry_points", [])
        for point in points:
            if entry is None or point.get("function") == entry:
                return point
        raise MixtileError(f"{self.path} has no entry point '{entry}'")

    def bind(self, weights=None, *, entry=None, num_threads=0):
        """A Session of `entry` (default: the only one) with `weights` bound: a safetensors
        file or checkpoint directory, or a dict of tensors (borrowed: keep them unchanged)."""
        return Session(self, weights, entry, num_threads)

    def model(self, weights, *, max_batch=1, max_length=None, num_threads=0):
        """A Model running this whole-model artifact on `weights`."""
        return Model(self, weights, max_batch=max_batch, max_length=max_length,
                     num_threads=num_threads)

    def close(self):
        if self._handle:
            _runtime().mixtile_artifact_close(self._handle)
            self._handle = ctypes.c_void_p()


def _open_weights(weights, cuda=False):
    """(mixtile_tensors handle or None, owners) for a path, a dict or None."""
    if weights is None:
        return None, []
    if isinstance(weights, dict):
        return _tensor_set(weights, cuda)
    handle = ctypes.c_void_p()
    _check(_runtime().mixtile_tensors_open(os.fspath(weights).encode(), ctypes.byref(handle)))
    return handle, []


class Session(_Closing):
    """One entry point with its weights bound. session(**inputs) runs it and returns a dict of
    results (numpy arrays, or torch tensors when any input is one). One run at a time: use a
    session per thread."""

    def __init__(self, artifact, weights=None, entry=None, num_threads=0):
        self.artifact = artifact
        self.entry = entry
        self.num_threads = int(num_threads)
        self.cuda = artifact.target == "cuda"
        lib = _runtime()
        self._weights, self._owners = _open_weights(weights, self.cuda)
        self._handle = ctypes.c_void_p()
        try:
            _check(lib.mixtile_session_create(
                artifact._handle, entry.encode() if entry else None, self._weights,
                1 if artifact.target == "cuda" else 0, ctypes.byref(self._handle)))
        except Exception:
            lib.mixtile_tensors_close(self._weights)
            raise
        self.last_run_seconds = None

    def __call__(self, **inputs):
        return self.run(inputs)

    def _result_shapes(self, inputs):
        """{result name: (shape, manifest dtype)} for these inputs: the manifest's result
        shapes with the symbols (T, B, S) the inputs bind."""
        point = self.artifact._entry_manifest(self.entry)
        values = {}
        for argument in point.get("arguments", []):
            value = inputs.get(argument["name"])
            if value is None or not hasattr(value, "shape"):
                continue
            for symbol, size in zip(argument.get("symbols") or [], tuple(value.shape)):
                if symbol:
                    values.setdefault(symbol, int(size))
        shapes = {}
        for result in point.get("results", []):
            dims = [values.get(symbol, -1) if symbol else size
                    for size, symbol in zip(result["shape"], result.get("symbols") or
                                            [None] * len(result["shape"]))]
            if all(d >= 0 for d in dims):
                shapes[result["name"]] = (tuple(dims), result["dtype"])
        return shapes

    def run(self, inputs, out=None, stream=None):
        """Runs on `inputs` ({name: array or tensor}); returns {result name: array or tensor}.
        out: {result name: a contiguous, writable array or CPU tensor of the result's exact
        dtype and shape} to write that result into, without a copy (64-byte aligned memory,
        as torch allocates it, is written in place; less aligned memory is filled by one
        copy); it comes back as the same object. Other results are copied out of the session
        into new arrays or tensors.

        On a cuda artifact, torch CUDA tensors (and DLPack objects in CUDA memory) are read
        and written in place, on `stream` (a cudaStream_t as an int, or a torch.cuda.Stream;
        default: torch's current stream when a torch CUDA tensor is given, else the session's
        own): results not in `out` are then new CUDA tensors on the inputs' device, and the
        call returns once the work is queued on that stream, as a torch operator does. Host
        arrays and CPU tensors are copied in, and results to them copied back, as before."""
        lib = _runtime()
        as_torch = any(_is_torch(v) for v in inputs.values())
        out = dict(out or {})
        def on_gpu(values):
            return [v for v in values if _is_torch(v) and v.device.type == "cuda"] if self.cuda else []
        gpu_inputs = on_gpu(inputs.values())
        gpu = gpu_inputs + on_gpu(out.values())
        for name, value in out.items():
            if _is_torch(value):
                if value.device.type not in (("cpu", "cuda") if self.cuda else ("cpu",)) \
                        or not value.is_contiguous() or value.requires_grad:
                    raise MixtileError(f"output '{name}' must be a contiguous "
                                       + ("CPU or CUDA" if self.cuda else "CPU")
                                       + " tensor that does not require grad")
            elif isinstance(value, np.ndarray):
                if not value.flags.c_contiguous or not value.flags.writeable:
                    raise MixtileError(f"output '{name}' must be a C-contiguous, writable numpy "
                                       "array")
            elif not hasattr(value, "__dlpack__"):  # DLPack objects: checked as they are read
                raise MixtileError(f"output '{name}' must be a numpy array, a tensor or a "
                                   "DLPack object")
        if self.cuda:
            if gpu:
                import torch
            if stream is None and gpu:
                stream = torch.cuda.current_stream(gpu[0].device)
            if stream is not None and not isinstance(stream, int):
                stream = stream.cuda_stream  # torch.cuda.Stream (or any object carrying one)
            _check(lib.mixtile_session_set_stream(self._handle, ctypes.c_void_p(stream or None)))
            if gpu_inputs:  # results not given stay on the inputs' device
                dtypes = {_NAMES[code]: dtype for dtype, code in _torch_codes().items()}
                for name, (shape, dtype) in self._result_shapes(inputs).items():
                    if name not in out:
                        out[name] = torch.empty(shape, dtype=dtypes[dtype], device=gpu_inputs[0].device)
        handle, owners = _tensor_set(inputs, self.cuda, stream)
        out_handle, out_owners = _tensor_set(out, self.cuda, stream) if out else (None, [])
        try:
            if out_handle is None:
                _check(lib.mixtile_session_run(self._handle, handle, self.num_threads))
            else:
                _check(lib.mixtile_session_run_into(self._handle, handle, out_handle,
                                                    self.num_threads))
        finally:
            lib.mixtile_tensors_close(handle)
            if out_handle is not None:
                lib.mixtile_tensors_close(out_handle)
            del owners, out_owners
        self.last_run_seconds = lib.mixtile_session_last_run_seconds(self._handle)
        results = {}
        for i in range(lib.mixtile_session_result_count(self._handle)):
            name = lib.mixtile_session_result_name(self._handle, i).decode()
            if name in out:
                results[name] = out[name]
                continue
            code = lib.mixtile_session_result_dtype(self._handle, i)
            rank = lib.mixtile_session_result_rank(self._handle, i)
            shape_ptr = lib.mixtile_session_result_shape(self._handle, i)
            shape = tuple(shape_ptr[d] for d in range(rank))
            nbytes = lib.mixtile_session_result_bytes(self._handle, i)
            data = lib.mixtile_session_result_data(self._handle, i)
            array = np.empty(shape, dtype=_NUMPY[code])
            if nbytes:
                ctypes.memmove(array.ctypes.data, data, nbytes)
            results[name] = _wrap(array, as_torch)
        return results

    def close(self):
        lib = _runtime()
        if self._handle:
            lib.mixtile_session_close(self._handle)
            self._handle = ctypes.c_void_p()
        if self._weights:
            lib.mixtile_tensors_close(self._weights)
            self._weights = None
        self._owners = []


class Model(_Closing):
    """A whole decoder-only model (mixtilec --hf-config ... --model) on its checkpoint: logits
    of a batch of prompts, and greedy generation. KV caches are sized to each call (regrown
    when a call needs more), never recompiled."""

    def __init__(self, artifact, weights, *, max_batch=1, max_length=None, num_threads=0,
                 checkpoint=None):
        if not artifact.is_model:
            raise MixtileError(f"{artifact.path} is not a model (compile one with model=True)")
        self.artifact = artifact
        self.num_threads = int(num_threads)
        self.checkpoint = checkpoint if checkpoint is not None else (
            weights if not isinstance(weights, dict) else None)
        self.max_positions = _runtime().mixtile_artifact_model_max_positions(artifact._handle)
        self._weights, self._owners = _open_weights(weights, artifact.target == "cuda")
        self._handle = ctypes.c_void_p()
        self._size = (0, 0)
        self._tokenizer = None
        self._ensure(max_batch, max_length or 1)

    @classmethod
    def from_pretrained(cls, directory, *, dtype=None, cpu=None, out=None, max_batch=1,
                        num_threads=0, target="cpu"):
        """Compiles the checkpoint directory's config.json as a whole model and binds its own
        tensors (a file or shards, unconverted). target="cuda": the model runs on the current
        GPU (weights and KV caches in device memory; nvcc at compile time)."""
        artifact = compile(os.path.join(os.fspath(directory), "config.json"), model=True,
                           dtype=dtype, cpu=cpu, out=out, target=target)
        return cls(artifact, os.fspath(directory), max_batch=max_batch, num_threads=num_threads,
                   checkpoint=os.fspath(directory))

    @property
    def vocab_size(self):
        return int(_runtime().mixtile_model_vocab_size(self._handle))

    def _ensure(self, batch, length):
        if batch <= self._size[0] and length <= self._size[1]:
            return
        lib = _runtime()
        batch, length = max(batch, self._size[0]), max(length, self._size[1])
        if self._handle:
            lib.mixtile_model_close(self._handle)
            self._handle = ctypes.c_void_p()
        _check(lib.mixtile_model_create(self.artifact._handle, self._weights, batch, length,
                                        ctypes.byref(self._handle)))
        self._size = (batch, length)

    @staticmethod
    def _prompts(ids, attention_mask):
        as_torch = _is_torch(ids)
        ids = np.ascontiguousarray(ids.cpu().numpy() if as_torch else np.asarray(ids),
                                   dtype=np.int64)
        if ids.ndim == 1:
            ids = ids[None]
        if ids.ndim != 2:
            raise MixtileError(f"input_ids must be [batch, length], got shape {list(ids.shape)}")
        mask = None
        if attention_mask is not None:
            m = attention_mask.cpu().numpy() if _is_torch(attention_mask) else attention_mask
            mask = np.ascontiguousarray(np.asarray(m), dtype=np.int64)
            if mask.ndim == 1:
                mask = mask[None]
            if mask.shape != ids.shape:
                raise MixtileError(f"attention_mask has shape {list(mask.shape)}, input_ids "
                                   f"{list(ids.shape)}")
        return ids, mask, as_torch

    def forward(self, input_ids, attention_mask=None):
        """logits f32 [batch, length, vocab], as transformers' model(input_ids,
        attention_mask).logits at unmasked positions (0 at masked ones)."""
        ids, mask, as_torch = self._prompts(input_ids, attention_mask)
        batch, length = ids.shape
        self._ensure(batch, length)
        logits = np.empty((batch, length, self.vocab_size), dtype=np.float32)
        _check(_runtime().mixtile_model_forward(
            self._handle, batch, length, ids.ctypes.data,
            mask.ctypes.data if mask is not None else None, logits.ctypes.data, self.num_threads))
        return _wrap(logits, as_torch)

    __call__ = forward

    def generate(self, input_ids, attention_mask=None, max_new_tokens=32):
        """Greedy generation: sequences int64 [batch, length + max_new_tokens] (the pad id
        after a row's end of sequence). Text (a string or a list of them) is tokenized with
        the checkpoint's tokenizer through transformers, and text comes back."""
        if isinstance(input_ids, str) or (
                isinstance(input_ids, (list, tuple)) and input_ids and isinstance(input_ids[0], str)):
            return self._generate_text(input_ids, max_new_tokens)
        ids, mask, as_torch = self._prompts(input_ids, attention_mask)
        batch, length = ids.shape
        new = int(max_new_tokens)
        if new < 0:
            raise MixtileError(f"max_new_tokens must be >= 0, got {new}")
        self._ensure(batch, length + new)
        sequences = np.empty((batch, length + new), dtype=np.int64)
        _check(_runtime().mixtile_model_generate(
            self._handle, batch, length, ids.ctypes.data,
            mask.ctypes.data if mask is not None else None, new, sequences.ctypes.data, None,
            None, None, self.num_threads))
        return _wrap(sequences, as_torch)

    def last_timing(self):
        """Times of the last forward or generate call: a dict with prefill_seconds and
        prefill_tokens (the call over the prompts: their unmasked tokens), decode_seconds,
        decode_tokens and decode_steps (every later generation step; tokens of all sequences
        together). All zero before the first call."""
        t = _ModelTiming()
        if self._handle:
            _check(_runtime().mixtile_model_last_timing(self._handle, ctypes.byref(t)))
        return {name: getattr(t, name) for name, _ in _ModelTiming._fields_}

    def _generate_text(self, text, max_new_tokens):
        if self._tokenizer is None:
            if not self.checkpoint:
                raise MixtileError("text prompts need the checkpoint directory's tokenizer")
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise MixtileError("text prompts need transformers (pip install transformers); "
                                   "give token ids instead") from None
            self._tokenizer = AutoTokenizer.from_pretrained(self.checkpoint, padding_side="left")
        single = isinstance(text, str)
        batch = self._tokenizer([text] if single else list(text), return_tensors="np",
                                padding=True)
        sequences = self.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens)
        prompt = batch["input_ids"].shape[1]
        out = [self._tokenizer.decode(row[prompt:], skip_special_tokens=True) for row in sequences]
        return out[0] if single else out

    def close(self):
        lib = _runtime()
        if self._handle:
            lib.mixtile_model_close(self._handle)
            self._handle = ctypes.c_void_p()
        if self._weights:
            lib.mixtile_tensors_close(self._weights)
            self._weights = None
