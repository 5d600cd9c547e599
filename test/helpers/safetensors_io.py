"""Reads and writes safetensors files (and sharded Hugging Face checkpoints) with numpy only.

Owns the file format and the bf16 <-> f32 bit conversions; knows nothing about layers.
Format: 8-byte little-endian header length, a JSON header, then the raw little-endian data.
"""

import json
import os
import struct

import numpy as np

# safetensors dtype name -> numpy storage dtype. BF16 is stored as its raw uint16 bits.
STORAGE = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "U8": np.dtype("u1"),  # MXFP4 blocks and scales (gpt-oss)
    "F8_E4M3": np.dtype("u1"),  # raw e4m3fn codes
}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3")
INDEX_NAME = "model.safetensors.index.json"


def f32_to_bf16_bits(values):
    """Rounds to bf16 (round to nearest, ties to even) and returns the uint16 bit patterns."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    # Adding the rounding bias to a NaN could carry into the exponent and make it Inf;
    # keep NaNs NaN (quiet, sign preserved).
    nan = np.isnan(np.asarray(values, dtype=np.float32))
    rounded[nan] = (bits[nan] >> 16).astype(np.uint16) | 0x0040
    return rounded


def bf16_bits_to_f32(bits):
    """Widens bf16 bit patterns to float32 exactly (bf16 is the top half of an f32)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _e4m3_table():
    """float64 value of each e4m3fn code (sign, 4 exponent bits of bias 7, 3 mantissa bits;
    no infinities, S.1111.111 is NaN)."""
    codes = np.arange(256)
    exponent, mantissa = (codes >> 3) & 0xF, codes & 0x7
    magnitude = np.where(
        exponent == 0, mantissa * 2.0**-9, (8 + mantissa) * np.exp2(exponent.astype(np.float64) - 10)
    )
    magnitude[(exponent == 0xF) & (mantissa == 0x7)] = np.nan
    return np.where(codes & 0x80, -magnitude, magnitude)


E4M3_VALUES = _e4m3_table()
# Every e4m3fn code but the two NaNs (0x7f, 0xff).
E4M3_FINITE_CODES = np.array([c for c in range(256) if c & 0x7F != 0x7F], dtype=np.uint8)


def e4m3_bits_to_f64(bits):
    """Widens e4m3fn codes to float64 exactly."""
    return E4M3_VALUES[np.asarray(bits, dtype=np.uint8)]


def f32_to_e4m3_bits(values):
    """Rounds to e4m3fn (nearest, ties to the even code; beyond 448 saturates to +-448, as
    torch's float8_e4m3fn cast of a scaled weight never goes past it) and returns the codes."""
    values = np.asarray(values, dtype=np.float64)
    finite = E4M3_VALUES[:0x7F]  # codes 0 .. 0x7e: 0 .. 448, increasing
    magnitude = np.minimum(np.abs(values), 448.0)
    upper = np.clip(np.searchsorted(finite, magnitude), 1, 0x7E)
    lower = upper - 1
    below, above = magnitude - finite[lower], finite[upper] - magnitude
    pick_upper = (above < below) | ((above == below) & (upper % 2 == 0))
    codes = np.where(pick_upper, upper, lower).astype(np.uint8)
    codes[magnitude == 0] = 0
    return codes | np.where(np.signbit(values), 0x80, 0).astype(np.uint8)


def round_to_dtype(values, dtype):
    """The float64 values a tensor holds after being stored as `dtype` (F32, BF16, F16)."""
    return widen(to_storage(values, dtype), dtype)


def to_storage(values, dtype):
    """Converts a numpy array to the storage array of safetensors dtype `dtype`."""
    if dtype == "BF16":
        return f32_to_bf16_bits(values)
    if dtype == "F8_E4M3":
        values = np.asarray(values)
        return values if values.dtype == np.uint8 else f32_to_e4m3_bits(values)
    return np.asarray(values).astype(STORAGE[dtype])


def widen(storage, dtype):
    """Storage array -> float64 (exact for every float dtype here)."""
    if dtype == "BF16":
        return bf16_bits_to_f32(storage).astype(np.float64)
    if dtype == "F8_E4M3":
        return e4m3_bits_to_f64(storage)
    return storage.astype(np.float64)


class SafetensorsError(Exception):
    pass


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: truncated (no 8-byte header length)")
        (length,) = struct.unpack("<Q", raw)
        text = f.read(length)
        if len(text) != length:
            raise SafetensorsError(f"{path}: truncated header")
    header = json.loads(text)
    return header, 8 + length


def read_file(path, raw=False, names=None):
    """Returns {name: array} from one safetensors file.

    Float tensors come back as float64 unless raw=True, which returns the storage arrays
    (BF16 as uint16 bits). Also returns each tensor's safetensors dtype: (tensors, dtypes).
    """
    header, data_start = read_header(path)
    header.pop("__metadata__", None)
    data_size = os.path.getsize(path) - data_start
    tensors, dtypes = {}, {}
    with open(path, "rb") as f:
        for name, info in header.items():
            if names is not None and name not in names:
                continue
            dtype, shape = info["dtype"], tuple(info["shape"])
            if dtype not in STORAGE:
                raise SafetensorsError(f"{path}: tensor '{name}' has unsupported dtype {dtype}")
            begin, end = info["data_offsets"]
            expected = int(np.prod(shape, dtype=np.int64)) * STORAGE[dtype].itemsize
            if end - begin != expected or end > data_size:
                raise SafetensorsError(f"{path}: tensor '{name}' has bad data_offsets {begin, end}")
            f.seek(data_start + begin)
            array = np.frombuffer(f.read(end - begin), dtype=STORAGE[dtype]).reshape(shape)
            if not raw and dtype in FLOAT_DTYPES:
                array = widen(array, dtype)
            tensors[name], dtypes[name] = array, dtype
    return tensors, dtypes


def write_file(path, tensors, dtypes=None, metadata=None):
    """Writes {name: array} to `path`. `dtypes` maps a name to F32/BF16/F16/I32/I64; by
    default a float array is written as F32 and an integer one as I32 (I64 if int64)."""
    dtypes = dtypes or {}
    header, blobs, offset = {}, [], 0
    for name, array in tensors.items():
        array = np.asarray(array)
        dtype = dtypes.get(name) or _default_dtype(array)
        blob = np.ascontiguousarray(to_storage(array, dtype)).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(blob)],
        }
        blobs.append(blob)
        offset += len(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the reference writer pads the header to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def _default_dtype(array):
    if array.dtype == np.int64:
        return "I64"
    if np.issubdtype(array.dtype, np.integer):
        return "I32"
    if array.dtype == np.float16:
        return "F16"
    return "F32"


def write_sharded(directory, tensors, dtypes=None, max_shard_bytes=1 << 20):
    """Writes a Hugging Face sharded checkpoint: model-0000i-of-0000n.safetensors plus
    model.safetensors.index.json (weight_map: tensor name -> shard file)."""
    dtypes = dtypes or {}
    os.makedirs(directory, exist_ok=True)
    shards, current, size = [], {}, 0
    for name, array in tensors.items():
        nbytes = (
            np.asarray(array).size
            * STORAGE[dtypes.get(name) or _default_dtype(np.asarray(array))].itemsize
        )
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = array
        size += nbytes
    if current or not shards:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file_name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_file(
            os.path.join(directory, file_name),
            shard,
            {n: dtypes[n] for n in shard if n in dtypes},
            metadata={"format": "pt"},
        )
        for name, array in shard.items():
            weight_map[name] = file_name
            total += (
                np.asarray(array).size
                * STORAGE[dtypes.get(name) or _default_dtype(np.asarray(array))].itemsize
            )
    with open(os.path.join(directory, INDEX_NAME), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load(path, raw=False, names=None):
    """Loads a file, or a directory: sharded via model.safetensors.index.json when present,
    otherwise every *.safetensors in it. Returns (tensors, dtypes)."""
    if not os.path.isdir(path):
        return read_file(path, raw, names)
    index_path = os.path.join(path, INDEX_NAME)
    if os.path.exists(index_path):
        with open(index_path) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = sorted(p for p in os.listdir(path) if p.endswith(".safetensors"))
    if not files:
        raise SafetensorsError(f"{path}: no safetensors files")
    tensors, dtypes = {}, {}
    for file_name in files:
        t, d = read_file(os.path.join(path, file_name), raw, names)
        tensors.update(t)
        dtypes.update(d)
    return tensors, dtypes
