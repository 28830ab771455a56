#!/usr/bin/env bash
# Throughput of `yocotron eval` at the target's scale, offline (nothing to download): a 10,000-item,
# 4-choice task with HellaSwag-like lengths (60-word contexts, 15-word endings, built by
# data_pipeline/make_cloze.sh from tests/data/brown_sample.txt and repeated), scored by a randomly
# initialised model of a recipe's shape (default the TinyLlama 1.1B Transformer) with a tokenizer
# trained on the same sample. Prints `yocotron eval --json` (tasks.bench10k.items_per_s, seconds).
#   launch/bench_eval.sh [BUILD_DIR=build-gpu] [RECIPE=recipes/tinyllama-1.1b/transformer.yaml] [BATCH=64]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build-gpu}/bin
RECIPE=${2:-recipes/tinyllama-1.1b/transformer.yaml}
BATCH=${3:-64}
W=${BENCH_DIR:-/tmp/yocotron-bench-eval}
mkdir -p "$W/src"
[ -f "$W/tok/tokenizer.model" ] || "$B/yocotron" tokenize --input tests/data/brown_sample.txt --out "$W/tok" \
  --vocab-size 512 --txt-split blank-lines >&2
cp tests/data/brown_sample.txt "$W/src/a.txt"
CONTEXT_WORDS=60 ANSWER_WORDS=15 data_pipeline/make_cloze.sh "$W/src" "$W/one.jsonl" 100000 1 >&2
awk -v n=10000 '{ line[NR] = $0 } END { for (i = 0; i < n; i++) print line[i % NR + 1] }' "$W/one.jsonl" > "$W/bench10k.jsonl"
[ -f "$W/hf/config.json" ] || "$B/yocotron" export-hf "$RECIPE" --out "$W/hf" >&2
"$B/yocotron" eval "hf:$W/hf" --tokenizer "$W/tok/tokenizer.model" --tasks "$W/bench10k.jsonl" --batch "$BATCH" --json
