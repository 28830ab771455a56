#!/usr/bin/env bash
# Measures yocotron and the Hugging Face peer (tests/peers/hf_llama_peer.py) on the same GPU, shape,
# batch and optimiser in one command, and prints both JSON lines and the throughput ratio.
#   launch/bench_vs_peer.sh RECIPE [--set k=v ...]      (env: YOCOTRON=build-gpu/bin/yocotron STEPS=20)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 RECIPE [--set k=v ...]" >&2; exit 2; }
RECIPE=$1; shift
YOCOTRON=${YOCOTRON:-build-gpu/bin/yocotron}
STEPS=${STEPS:-20}
ours=$("$YOCOTRON" bench --config "$RECIPE" "$@" --steps "$STEPS")
sets=()
for a in "$@"; do [ "$a" = "--set" ] || sets+=(--set "$a"); done
echo "yocotron: $ours"
peer=$(python3 tests/peers/hf_llama_peer.py --recipe "$RECIPE" --yocotron "$YOCOTRON" "${sets[@]}" --steps "$STEPS" | tail -1)
echo "peer:     $peer"
python3 -c "
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
print(f'ratio yocotron/peer tokens/s: {a[\"tokens_per_s_per_gpu\"] / b[\"tokens_per_s_per_gpu\"]:.3f} '
      f'({a[\"tokens_per_s_per_gpu\"]:.0f} vs {b[\"tokens_per_s_per_gpu\"]:.0f} tok/s on {b[\"device\"]})')
" "$ours" "$peer"
