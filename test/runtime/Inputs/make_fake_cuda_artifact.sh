#!/usr/bin/env bash
# Turns a cpu-target artifact (CPU_OUTDIR, built by mixtilec) into a cuda-target one served by
# fake_cuda_device.cpp, so the runtime's cuda backend runs without a GPU.
# Usage: make_fake_cuda_artifact.sh MIXTILE_SRC CPU_OUTDIR FAKE_OUTDIR
set -euo pipefail
src=$1 cpu=$(cd "$2" && pwd) out=$3
python=${MIXTILE_PYTHON:-/usr/bin/python3}
mkdir -p "$out"
read -r name fn tensors < <("$python" - "$cpu/manifest.json" "$out/manifest.json" <<'PY'
import json, sys
manifest = json.load(open(sys.argv[1]))
# A model's entry point is the one its "model" section names (the others are its callees,
# inside the cpu library); a layer's, the first.
model = manifest.get("model")
entry = next(e for e in manifest["entry_points"] if not model or e["function"] == model["entry"])
manifest["target"] = "cuda"
manifest.pop("profile_symbol", None)  # the cpu library's kernel profile is not the fake's
manifest["library"] = "lib%s.so" % manifest["name"]
manifest["cuda_host_api_symbol"] = manifest["name"] + "_cuda_host_api"
manifest["entry_points"] = [entry]
json.dump(manifest, open(sys.argv[2], "w"), indent=2)
print(manifest["name"], entry["function"], len(entry["arguments"]) + len(entry["results"]))
PY
)
g++ -std=c++17 -O1 -shared -fPIC -I"$src" -DFAKE_NAME="$name" -DFAKE_FN="$fn" \
  -DFAKE_TENSORS="$tensors" -DFAKE_CPU_LIBRARY="\"$cpu/lib$name.so\"" \
  "$src/test/runtime/Inputs/fake_cuda_device.cpp" -o "$out/lib$name.so" -ldl
