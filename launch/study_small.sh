#!/usr/bin/env bash
# The small-scale GPU study of docs/results.md: the ~125M recipes of eight architectures on the same
# data and token budget, two seeds for transformer and yocopp, then `yocotron compare`.
#   launch/study_small.sh [STEPS]     (env: YOCOTRON=build-gpu/bin/yocotron DATA=data/study VOCAB=8192 RUNS=runs/study)
set -euo pipefail
STEPS=${1:-200}
Y=${YOCOTRON:-build-gpu/bin/yocotron}
DATA=${DATA:-data/study}
VOCAB=${VOCAB:-8192}
RUNS=${RUNS:-runs/study}
COMMON=(--set data.train="$DATA/train" --set data.val="$DATA/val" --set model.vocab_size="$VOCAB"
        --set train.steps="$STEPS" --set train.warmup_steps=$((STEPS / 10)) --set train.eval_every=$((STEPS / 4))
        --set checkpoint.every=0 --set checkpoint.keep_last=1 --set log.every=5)
run() {  # ARCH SEED
  "$Y" train --config "recipes/small/$1.yaml" "${COMMON[@]}" --set train.seed="$2" --run-dir "$RUNS/$1-s$2" --resume auto \
    2>&1 | grep -E "training|finished|error" || true
}
for arch in transformer yocopp; do run $arch 1; done
for arch in yoco fusedkv fusedkv_lite yoco_swa yoco_gret yocou; do run $arch 1; done
for arch in transformer yocopp; do run $arch 2; done
"$Y" compare "$RUNS"/transformer-s1 "$RUNS"/transformer-s2 "$RUNS"/yoco-s1 "$RUNS"/yocopp-s1 "$RUNS"/yocopp-s2 \
  "$RUNS"/fusedkv-s1 "$RUNS"/fusedkv_lite-s1 "$RUNS"/yoco_swa-s1 "$RUNS"/yoco_gret-s1 "$RUNS"/yocou-s1 --out "$RUNS/compare" --smooth 5 | sed -n '/^| run/,/^$/p'
