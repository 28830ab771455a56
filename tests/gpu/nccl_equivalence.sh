#!/usr/bin/env bash
# On a node with 2 GPUs: trains one recipe in fp32 on 1 GPU, with DP=2, TP=2 and DP=2 + ZeRO-1 over
# NCCL, and checks that every logged loss agrees with the 1-GPU run to 1e-5 (relative).
#   tests/gpu/nccl_equivalence.sh          (env: YOCOTRON=build-gpu/bin/yocotron DATA=data/demo)
set -euo pipefail
Y=${YOCOTRON:-build-gpu/bin/yocotron}
DATA=${DATA:-data/demo}
RUNS=${RUNS:-/tmp/nccl-equivalence}
R=(--config recipes/tiny/yocopp.yaml --set data.train="$DATA/train" --set data.val= --set train.device=cuda
   --set train.precision=fp32 --set train.steps=30 --set train.global_batch=16 --set train.micro_batch=8
   --set log.every=1 --set checkpoint.every=0 --resume none)
MPI=(mpirun --allow-run-as-root -np 2 -x NCCL_NVLS_ENABLE)
rm -rf "$RUNS"
CUDA_VISIBLE_DEVICES=0 "$Y" train "${R[@]}" --run-dir "$RUNS/one" > /dev/null
"${MPI[@]}" "$Y" train "${R[@]}" --run-dir "$RUNS/dp2" > /dev/null
"${MPI[@]}" "$Y" train "${R[@]}" --set parallel.tp=2 --run-dir "$RUNS/tp2" > /dev/null
"${MPI[@]}" "$Y" train "${R[@]}" --set parallel.zero1=true --run-dir "$RUNS/zero1" > /dev/null
python3 - "$RUNS" <<'PY'
import json, sys
runs = sys.argv[1]
def losses(name):
    return [json.loads(l)["loss"] for l in open(f"{runs}/{name}/metrics.jsonl") if '"loss"' in l]
ref = losses("one")
ok = True
for name in ("dp2", "tp2", "zero1"):
    got = losses(name)
    worst = max(abs(a - b) / abs(b) for a, b in zip(got, ref))
    good = len(got) == len(ref) and worst <= 1e-5
    ok &= good
    print(f"{name}: {len(got)} steps, max relative loss difference vs 1 GPU {worst:.2e} {'ok' if good else 'FAIL'}")
print(f"1 GPU: loss {ref[0]:.4f} -> {ref[-1]:.4f} over {len(ref)} steps")
sys.exit(0 if ok else 1)
PY
