#!/usr/bin/env bash
# The GPU parity check of `yocotron eval` against Hugging Face (tests/parity/eval_parity.py), from
# nothing but this repository: a tokenizer and dataset from tests/data/brown_sample.txt, a small
# `transformer` trained on it (max_seq_len 48, so long contexts are truncated), its export-hf
# directory, a cloze task (data_pipeline/make_cloze.sh) plus WinoGrande-form and empty-context
# items, scored in fp32 on the GPU with --dump-choices, then checked by eval_parity.py (every
# log-likelihood within 1e-4, token ids and acc/acc_norm identical). Exits non-zero on a difference.
#   tests/parity/eval_parity.sh [BUILD_DIR=build-gpu] [WORK=/tmp/yocotron-eval-parity]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${1:-build-gpu}/bin
W=${2:-/tmp/yocotron-eval-parity}
rm -rf "$W" && mkdir -p "$W/src"
"$B/yocotron" tokenize --input tests/data/brown_sample.txt --out "$W/ds" --vocab-size 512 --txt-split blank-lines \
  --val-fraction 0.05 >&2
cat > "$W/recipe.yaml" <<YAML
model: {arch: transformer, n_layers: 2, d_model: 64, n_heads: 4, n_kv_heads: 2, d_ffn: 128, vocab_size: 512, max_seq_len: 48}
data: {train: $W/ds/train, seq_len: 32}
train: {steps: 100, micro_batch: 8, global_batch: 8, lr: 0.01, min_lr: 0.001, warmup_steps: 5, precision: fp32}
checkpoint: {every: 0}
log: {every: 50}
YAML
"$B/yocotron" train --config "$W/recipe.yaml" --run-dir "$W/run" >&2
"$B/yocotron" export-hf "$W/run" --out "$W/hf" >&2
cp tests/data/brown_sample.txt "$W/src/a.txt"
data_pipeline/make_cloze.sh "$W/src" "$W/cloze.jsonl" 200 7 >&2
cat > "$W/forms.jsonl" <<'JSONL'
{"context": "", "choices": ["The jury said", "Of the of"], "gold": 0}
{"context": "He said that ", "choices": ["it was", "the"], "gold": 0}
{"context": "The city of", "choices": ["Atlanta", "a", "the election was conducted in the county"], "gold": 0}
JSONL
cat > "$W/wino.jsonl" <<'JSONL'
{"contexts": ["The jury", "The city"], "continuation": "said it was fair.", "gold": 0}
{"contexts": ["He went to", "He went of", "He went"], "continuation": "the house in the morning.", "gold": 0}
JSONL
"$B/yocotron" eval "hf:$W/hf" --tasks "$W/cloze.jsonl,$W/forms.jsonl,$W/wino.jsonl" --device cuda --dtype fp32 \
  --batch 16 --json --dump-choices "$W/choices.jsonl" > "$W/eval.json"
python3 tests/parity/eval_parity.py --hf "$W/hf" --choices "$W/choices.jsonl" --result "$W/eval.json"
