#!/usr/bin/env bash
# Hugging Face parity of every architecture's export (GPU node: python3 with torch + transformers).
# Usage: tests/parity/hf_export_parity.sh [YOCOTRON_BINARY]   (default build-gpu/bin/yocotron)
#  1. the eight tiny recipes (random weights, perturbed mixing weights), 128 tokens;
#  2. transformer, yocopp, fusedkv, skipv1 at the TinyLlama-1.1B shape, 64 tokens (yocotron's logits
#     on the CPU, a few minutes each).
# Prints one line per recipe and "N passed, M failed"; exits non-zero when any fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-build-gpu/bin/yocotron}
PY=tests/parity/hf_export_parity.py
status=0
python3 "$PY" --yocotron "$BIN" --tokens 128 recipes/tiny/{transformer,yoco,yocopp,fusedkv,fusedkv_lite,cla2,skipv1,resformer}.yaml || status=1
python3 "$PY" --yocotron "$BIN" --tokens 64 --no-generate \
  recipes/tinyllama-1.1b/{transformer,yocopp,fusedkv,skipv1}.yaml || status=1
exit $status
