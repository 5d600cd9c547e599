#!/usr/bin/env bash
# The README's main job: installs what is missing, builds Mixtile, compiles the bundled
# Mixtral-style layer (examples/mixtral_token_choice.mlir) and runs it with mixtile-run on
# random weights and tokens, then times it. Everything lands in build/demo/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/build.sh"
bin="${MIXTILE_BUILD_DIR:-$root/build}/bin"
demo="${MIXTILE_BUILD_DIR:-$root/build}/demo"
rm -rf "$demo"
mkdir -p "$demo"

echo "== mixtilec examples/mixtral_token_choice.mlir -o $demo/mixtral"
"$bin/mixtilec" "$root/examples/mixtral_token_choice.mlir" -o "$demo/mixtral"
ls "$demo/mixtral"

echo "== random weights and 64 tokens"
/usr/bin/python3 "$root/scripts/random_tensors.py" "$demo/mixtral" \
  "$demo/weights.safetensors" "$demo/inputs.safetensors" --tokens 64

echo "== mixtile-run"
"$bin/mixtile-run" "$demo/mixtral" --weights "$demo/weights.safetensors" \
  --inputs "$demo/inputs.safetensors" -o "$demo/output.safetensors"
PYTHONPATH="$root/test/helpers" /usr/bin/python3 -c '
import sys, numpy as np, safetensors_io as st
tensors, dtypes = st.read_file(sys.argv[1])
for name, value in tensors.items():
    print(f"{name}: {dtypes[name]} {list(value.shape)}, mean |y| = {np.abs(value).mean():.4f}, finite: {np.isfinite(value).all()}")
' "$demo/output.safetensors"
"$bin/mixtile-run" "$demo/mixtral" --weights "$demo/weights.safetensors" \
  --inputs "$demo/inputs.safetensors" --bench 50
echo "== done: $demo/output.safetensors holds the layer's output"
