"""Writes the safetensors files (good and deliberately broken) and manifests the runtime tests use.

Owns only test fixtures: the byte layout is written by hand here, independent of the runtime's
reader, so a reader bug cannot hide behind a shared writer. Usage:
  make_inputs.py tensors DIR                 every fixture file below, into DIR
  make_inputs.py manifest IN OUT [--only F] [--set KEY=JSON ...]   a manifest variant
  make_inputs.py check-affine INPUTS WEIGHTS RESULT   y == 2 x + bias, exactly
  make_inputs.py check-pair INPUTS WEIGHTS RESULT     s == a + c * scale[0, 0], count == T
"""

import json
import os
import struct
import sys

import numpy as np

STORAGE = {"F32": "<f4", "BF16": "<u2", "F16": "<f2", "I32": "<i4", "I64": "<i8"}


def bf16_bits(values):
    """f32 -> bf16 bits by truncation; the test values are exactly representable anyway."""
    return (np.asarray(values, dtype="<f4").view("<u4") >> 16).astype("<u2")


def raw_file(path, header, data, header_length=None, pad=True):
    """Writes a safetensors file from a header dict (or raw bytes) and a data blob."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    length = len(text) if header_length is None else header_length
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + text + data)


def write(path, tensors, pad=True):
    """tensors: list of (name, dtype, storage array). Data laid out in the given order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, array in tensors:
        blob = np.ascontiguousarray(array, dtype=STORAGE[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(array)),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    raw_file(path, header, b"".join(blobs), pad=pad)


def read(path):
    """A minimal independent reader: {name: float64 or int array}."""
    with open(path, "rb") as f:
        blob = f.read()
    (length,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + length])
    data = blob[8 + length:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=STORAGE[info["dtype"]]).reshape(info["shape"])
        if info["dtype"] == "BF16":
            array = (array.astype("<u4") << 16).view("<f4")
        out[name] = (info["dtype"], array)
    return out


BIAS = np.array([0.5, -1.25, 3.0, 0.0078125], dtype=np.float32)  # exact in bf16
SCALE = np.array([[1.5, 2.0], [3.0, 4.0]], dtype=np.float32)


def make_tensors(directory):
    os.makedirs(directory, exist_ok=True)
    p = lambda name: os.path.join(directory, name)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    c = rng.integers(-9, 9, size=5).astype(np.int32)

    # Weights hold an unrelated I64 tensor too: reading other dtypes must work.
    weights = [("bias", "BF16", bf16_bits(BIAS)), ("scale", "F32", SCALE),
               ("position_ids", "I64", np.arange(3))]
    write(p("weights.safetensors"), weights)
    write(p("inputs.safetensors"), [("x", "F32", x), ("a", "F32", a), ("c", "I32", c)])
    write(p("inputs_t0.safetensors"), [("x", "F32", np.zeros((0, 4), np.float32)),
                                       ("a", "F32", np.zeros((0, 4), np.float32)),
                                       ("c", "I32", np.zeros((0,), np.int32))])
    write(p("inputs_t3.safetensors"), [("a", "F32", a[:3]), ("c", "I32", c[:3])])
    # An unpadded header of odd length puts x at an address not aligned to 4 bytes.
    header = {"x": {"dtype": "F32", "shape": [5, 4], "data_offsets": [0, 80]}}
    text = json.dumps(header).encode()
    text += b" " * ((-len(text) % 4) + 1)
    raw_file(p("inputs_misaligned.safetensors"), text, x.tobytes(), pad=False)

    # Binding errors: the files are valid, the tensors do not fit the manifest.
    write(p("x_bf16.safetensors"), [("x", "BF16", bf16_bits(x))])
    write(p("x_wrong_shape.safetensors"), [("x", "F32", x[:, :3])])
    write(p("x_rank1.safetensors"), [("x", "F32", x.reshape(-1))])
    write(p("no_x.safetensors"), [("z", "F32", x)])
    write(p("bias_wrong_shape.safetensors"), [("bias", "BF16", bf16_bits(np.ones(5)))])
    write(p("bias_f32.safetensors"), [("bias", "F32", BIAS)])
    # Precedence: inputs are looked up in the inputs first, weights in the weights first,
    # so the wrong-shaped decoys below must be ignored.
    write(p("weights_with_x.safetensors"), weights + [("x", "F32", x[:, :3])])
    write(p("inputs_with_bias.safetensors"), [("x", "F32", x), ("bias", "BF16", bf16_bits(np.ones(5)))])
    write(p("t_conflict.safetensors"), [("a", "F32", a), ("c", "I32", np.zeros(6, np.int32))])

    # Malformed files.
    raw_file(p("header_past_end.safetensors"), b"{}", b"", header_length=1000)
    raw_file(p("bad_json.safetensors"), b'{"x": {"dtype": "F32", "shape": [1,', b"")
    raw_file(p("not_object.safetensors"), b"[1, 2]", b"")
    with open(p("too_short.safetensors"), "wb") as f:
        f.write(b"\x01\x02")
    raw_file(p("unknown_dtype.safetensors"),
             {"x": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    raw_file(p("overlap.safetensors"),
             {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
    raw_file(p("size_mismatch.safetensors"),
             {"x": {"dtype": "F32", "shape": [5, 4], "data_offsets": [0, 76]}}, b"\0" * 76)
    raw_file(p("end_before_begin.safetensors"),
             {"x": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}, b"\0" * 8)
    raw_file(p("hole.safetensors"),
             {"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8)
    raw_file(p("duplicate_key.safetensors"),
             b'{"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
             b' "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4)
    write(p("truncated.safetensors"), [("x", "F32", x)])
    with open(p("truncated.safetensors"), "r+b") as f:
        f.truncate(os.path.getsize(p("truncated.safetensors")) - 8)

    # Checkpoint directories.
    sharded = p("sharded")
    os.makedirs(sharded, exist_ok=True)
    write(os.path.join(sharded, "model-00001-of-00002.safetensors"), [weights[0]])
    write(os.path.join(sharded, "model-00002-of-00002.safetensors"), weights[1:])
    with open(os.path.join(sharded, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 40}, "weight_map": {
            "bias": "model-00001-of-00002.safetensors",
            "scale": "model-00002-of-00002.safetensors"}}, f)
    bad_index = p("bad_index")
    os.makedirs(bad_index, exist_ok=True)
    write(os.path.join(bad_index, "model-00001-of-00001.safetensors"), [weights[1]])
    with open(os.path.join(bad_index, "model.safetensors.index.json"), "w") as f:
        json.dump({"weight_map": {"bias": "model-00001-of-00001.safetensors"}}, f)
    unindexed = p("unindexed")
    os.makedirs(unindexed, exist_ok=True)
    write(os.path.join(unindexed, "first.safetensors"), [weights[0]])
    write(os.path.join(unindexed, "second.safetensors"), weights[1:])
    duplicated = p("duplicated")
    os.makedirs(duplicated, exist_ok=True)
    write(os.path.join(duplicated, "first.safetensors"), [weights[0]])
    write(os.path.join(duplicated, "second.safetensors"), weights[:2])
    os.makedirs(p("empty_dir"), exist_ok=True)


def make_manifest(source, target, options):
    with open(source) as f:
        manifest = json.load(f)
    i = 0
    while i < len(options):
        if options[i] == "--only":
            manifest["entry_points"] = [e for e in manifest["entry_points"]
                                        if e["function"] == options[i + 1]]
        elif options[i] == "--set":
            key, value = options[i + 1].split("=", 1)
            manifest[key] = json.loads(value)
        i += 2
    with open(target, "w") as f:
        json.dump(manifest, f, indent=2)


def check_affine(inputs, weights, result):
    x = read(inputs)["x"][1]
    bias = read(weights)["bias"][1]
    dtype, y = read(result)["y"]
    assert dtype == "F32" and y.shape == x.shape, (dtype, y.shape, x.shape)
    expected = 2.0 * x.astype(np.float64) + bias.astype(np.float64)
    error = np.max(np.abs(y - expected)) if y.size else 0.0
    assert error <= 1e-6 * max(1.0, np.max(np.abs(expected), initial=0.0)), error
    print(f"affine ok: T={x.shape[0]} max error {error:g}")


def check_pair(inputs, weights, result):
    tensors = read(inputs)
    a, c = tensors["a"][1], tensors["c"][1]
    scale = read(weights)["scale"][1]
    results = read(result)
    assert list(results) == ["s", "count"], list(results)  # manifest order
    s_dtype, s = results["s"]
    count_dtype, count = results["count"]
    assert s_dtype == "F32" and count_dtype == "I32" and count.shape == (), (s_dtype, count_dtype)
    expected = a.astype(np.float64) + c[:, None] * float(scale[0, 0])
    assert s.shape == a.shape and np.allclose(s, expected, rtol=1e-6, atol=1e-6)
    assert int(count) == a.shape[0], int(count)
    print(f"pair ok: T={a.shape[0]}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "tensors":
        make_tensors(args[0])
    elif command == "manifest":
        make_manifest(args[0], args[1], args[2:])
    elif command == "check-affine":
        check_affine(*args)
    elif command == "check-pair":
        check_pair(*args)
    else:
        sys.exit(f"unknown command {command}")
