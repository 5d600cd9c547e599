#!/usr/bin/env bash
# mixtilec --cpu sapphirerapids (every bf16 matrix path on AMX tiles: experts, linear maps,
# attention) with the artifact's library built for x86-64-v4 and the tile instructions replaced by
# amx_emulation.h's software model, so the AMX code the compiler emits runs on any AVX-512 CPU.
# The manifest then lists the features that library needs (x86-64-v4's), not Sapphire Rapids'
# (the runtime would refuse a host without AMX, and ask the kernel for tile state it never uses).
# Usage: mixtilec_amx_emulated.sh MIXTILEC-ARGS... -o OUTDIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
python=${MIXTILE_PYTHON:-/usr/bin/python3}
out=
prev=
for a in "$@"; do
  [[ "$prev" == -o ]] && out=$a
  prev=$a
done
[[ -n "$out" ]] || { echo "mixtilec_amx_emulated.sh: give -o OUTDIR" >&2; exit 2; }
MIXTILE_CXXFLAGS="${MIXTILE_CXXFLAGS:-} -march=x86-64-v4 -include $here/amx_emulation.h" \
  mixtilec --cpu sapphirerapids "$@"
"$python" - "$out/manifest.json" <<'PY'
import json, os, sys
path = sys.argv[1]
with open(path) as f:
    manifest = json.load(f)
cpu = manifest["cpu"]
paths = {p["matmul_path"] for p in cpu.get("matmul_paths", [])}
if "amx_bf16" not in paths:
    sys.exit(f"{path}: no kernel takes the amx_bf16 path: nothing would be emulated")
emulated = {"avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"}
cpu["required_features"] = [f for f in cpu["required_features"] if f not in emulated]
cpu["amx_emulation"] = True
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(manifest, f, indent=2)
os.replace(tmp, path)
PY
