#!/usr/bin/env bash
# The YOCO++ paper's efficiency benchmark (prefill latency, maximum decode throughput, KV memory) for a
# list of recipes on one GPU, with the Hugging Face peer for the transformer recipe, then the charts:
#   launch/bench_inference.sh OUT_DIR RECIPE... (env: YOCOTRON=build-gpu/bin/yocotron PREFILL=2048,...,32768
#     DECODE=2048,4096,8192 SAMPLE=0 (decode: time every step; K: K cache lengths) PEER=1 SETS="--set k=v ...")
# Writes OUT_DIR/inference.jsonl (one line per run) and, through `yocotron compare --inference`,
# OUT_DIR/prefill.svg, decode_throughput.svg, decode_batch.svg, inference.md and inference.csv.
set -uo pipefail
[ $# -ge 2 ] || { sed -n 2,8p "$0"; exit 2; }
Y=${YOCOTRON:-build-gpu/bin/yocotron}
OUT=$1; shift
mkdir -p "$OUT"
J=$OUT/inference.jsonl
: > "$J"
for recipe in "$@"; do
  for part in prefill decode; do
    lengths=${PREFILL:-2048,4096,8192,16384,32768}
    extra=()
    if [ $part = decode ]; then lengths=${DECODE:-2048,4096,8192}; extra=(--sample-steps "${SAMPLE:-0}"); fi
    # shellcheck disable=SC2086
    if line=$("$Y" bench --config "$recipe" ${SETS:-} --part $part --lengths "$lengths" "${extra[@]}" 2>"$OUT/err.txt"); then
      echo "$line" >> "$J"
    else
      echo "bench $part $recipe failed: $(tail -2 "$OUT/err.txt")" >&2
    fi
    if [ "${PEER:-1}" = 1 ] && grep -q "arch: transformer" <("$Y" config --config "$recipe"); then
      peer_extra=()
      [ $part = decode ] && peer_extra=(--sample-steps "${PEER_SAMPLE:-64}")
      python3 tests/peers/hf_generate_peer.py --part $part --recipe "$recipe" --yocotron "$Y" --lengths "$lengths" \
        "${peer_extra[@]}" 2>>"$OUT/peer_err.txt" | tail -1 >> "$J"
    fi
  done
done
"$Y" compare --inference "$J" --out "$OUT"
