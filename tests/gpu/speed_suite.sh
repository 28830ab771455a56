#!/usr/bin/env bash
# On one GPU: yocotron's training throughput and peak memory at the shapes docs/benchmarks.md
# reports (TinyLlama-1.1B and 125M, transformer, yocopp and the original YOCO family, the fast paths on and off), one JSON
# line each into $OUT_FILE, then a table. With PEER=1 the Hugging Face peer (torch.compile) runs the
# same shapes in the same session and the table gains the ratio.
#   tests/gpu/speed_suite.sh        (env: YOCOTRON=build-gpu/bin/yocotron STEPS=15 PEER=0 OUT_FILE=speed.jsonl ONLY=regex)
set -uo pipefail
Y=${YOCOTRON:-build-gpu/bin/yocotron}
STEPS=${STEPS:-15}
OUT_FILE=${OUT_FILE:-speed.jsonl}
ONLY=${ONLY:-.}
TL=recipes/tinyllama-1.1b
SM=recipes/small
: > "$OUT_FILE"
run() {  # NAME RECIPE [--set ...]
  local name=$1 recipe=$2; shift 2
  [[ $name =~ $ONLY ]] || return 0
  local line
  if line=$("$Y" bench --config "$recipe" "$@" --steps "$STEPS" 2>/tmp/bench.err); then
    echo "{\"name\": \"$name\", \"ours\": $line}" >> "$OUT_FILE"
  else
    echo "{\"name\": \"$name\", \"error\": $(tail -c 400 /tmp/bench.err | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" >> "$OUT_FILE"
  fi
  if [ "${PEER:-0}" = 1 ] && [[ $name == *transformer* ]] && [[ $name != *nofused* ]] && [[ $name != *flash* ]] && [[ $name != *recompute* ]]; then
    local sets=()
    for a in "$@"; do [ "$a" = "--set" ] || sets+=(--set "$a"); done
    peer=$(python3 tests/peers/hf_llama_peer.py --recipe "$recipe" --yocotron "$Y" "${sets[@]}" --steps "$STEPS" 2>/dev/null | tail -1)
    [ -n "$peer" ] && echo "{\"name\": \"$name\", \"peer\": $peer}" >> "$OUT_FILE"
  fi
}
run tl-transformer-b8 $TL/transformer.yaml --set train.global_batch=8
run tl-yocopp-b8 $TL/yocopp.yaml --set train.global_batch=8
run tl-yoco_swa-b8 $TL/yoco_swa.yaml --set train.global_batch=8
run tl-yoco_gret-b8 $TL/yoco_gret.yaml --set train.global_batch=8
run tl-yocou-b8 $TL/yocou.yaml --set train.global_batch=8
run tl-transformer-b8-nofused $TL/transformer.yaml --set train.global_batch=8 --set model.fused_kernels=false
run tl-transformer-b8-flash $TL/transformer.yaml --set train.global_batch=8 --set model.attention=flash
run tl-transformer-b8-fulllogits $TL/transformer.yaml --set train.global_batch=8 --set train.loss_chunk_tokens=0
run tl-transformer-b16 $TL/transformer.yaml --set train.global_batch=16 --set train.micro_batch=16
run tl-transformer-b16-recompute-selective $TL/transformer.yaml --set train.global_batch=16 --set train.micro_batch=16 --set train.recompute=selective
run sm-transformer-b16 $SM/transformer.yaml
run sm-yocopp-b16 $SM/yocopp.yaml
run sm-yoco_swa-b16 $SM/yoco_swa.yaml
run sm-yoco_gret-b16 $SM/yoco_gret.yaml
run sm-yocou-b16 $SM/yocou.yaml
run sm-transformer-b16-nofused $SM/transformer.yaml --set model.fused_kernels=false
run sm-transformer-b32 $SM/transformer.yaml --set train.micro_batch=32 --set train.global_batch=64
run sm-yocopp-b32 $SM/yocopp.yaml --set train.micro_batch=32 --set train.global_batch=64
python3 - "$OUT_FILE" <<'PY'
import json, sys
rows, peers = [], {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "peer" in r: peers[r["name"]] = r["peer"]
    else: rows.append(r)
print(f"{'run':44s} {'tok/s':>9s} {'step ms':>8s} {'MFU':>6s} {'GB':>6s} {'peer tok/s':>10s} {'ratio':>6s} {'peer GB':>7s}")
for r in rows:
    if "error" in r:
        print(f"{r['name']:44s} ERROR {r['error'][-300:]!r}"); continue
    o = r["ours"]; p = peers.get(r["name"])
    extra = f" {p['tokens_per_s_per_gpu']:10.0f} {o['tokens_per_s_per_gpu']/p['tokens_per_s_per_gpu']:6.3f} {p['peak_mem_gb']:7.1f}" if p else ""
    print(f"{r['name']:44s} {o['tokens_per_s_per_gpu']:9.0f} {o['step_ms']:8.1f} {100*(o['mfu'] or 0):5.1f}% {o['peak_mem_gb']:6.1f}{extra}")
PY
