#!/usr/bin/env bash
# A synthetic multiple-choice cloze task from held-out text, for watching accuracy rise above chance
# while a model trains (docs/evaluation.md):
#   data_pipeline/make_cloze.sh SRC_DIR OUT.jsonl [ITEMS=400] [SEED=1]
# Every paragraph of SRC_DIR/*.txt (blank-line separated, files in name order) with at least
# CONTEXT + ANSWER words gives a candidate item: its first CONTEXT (30) words are the context, the
# next ANSWER (2) words the true continuation (short, so that what the context implies weighs in
# the sum: a tiny model rises from 25% to about 38% in the quickstart's 400 steps; with 8 words
# each choice's own fluency dominates and it stays near 28%). ITEMS candidates spread evenly over the text become
# items; each gets 3 distractors, the true continuations of other items (all 4 texts distinct), and the true one's position
# among the 4 choices, all drawn from a Park-Miller generator seeded with SEED: the same inputs and
# seed give the same file on every machine (no awk rand()). Chance is 25%. CONTEXT_WORDS and
# ANSWER_WORDS (environment) change the 30 and 2, e.g. 60 and 15 for HellaSwag-like lengths.
set -euo pipefail
[ $# -ge 2 ] && [ $# -le 4 ] || { echo "usage: $0 SRC_DIR OUT.jsonl [ITEMS] [SEED]" >&2; exit 2; }
SRC=$1 OUT=$2 ITEMS=${3:-400} SEED=${4:-1} CONTEXT_WORDS=${CONTEXT_WORDS:-30} ANSWER_WORDS=${ANSWER_WORDS:-2}
files=$(LC_ALL=C ls "$SRC"/*.txt 2>/dev/null) || { echo "make_cloze: no .txt files in $SRC" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"
# shellcheck disable=SC2086
LC_ALL=C awk -v items="$ITEMS" -v seed="$SEED" -v ctx_words="$CONTEXT_WORDS" -v ans_words="$ANSWER_WORDS" '
  function next_rand() { state = (state * 16807) % 2147483647; return state }   # exact in doubles
  function pick(n) { return next_rand() % n }
  function esc(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); gsub(/\t/, "\\t", s); return s }
  function words(from, to,    i, s) { s = w[from]; for (i = from + 1; i <= to; i++) s = s " " w[i]; return s }
  function flush(   n) {
    n = split(para, w, " ")
    if (n >= ctx_words + ans_words) { ctx[++cands] = words(1, ctx_words); ans[cands] = words(ctx_words + 1, ctx_words + ans_words) }
    para = ""
  }
  FNR == 1 && NR > 1 { flush() }
  /^[ \t]*$/ { flush(); next }
  { para = (para == "") ? $0 : para " " $0 }
  END {
    flush()
    if (cands < 4) { print "make_cloze: only " cands " paragraphs of " ctx_words + ans_words "+ words" > "/dev/stderr"; exit 2 }
    if (items > cands) items = cands
    state = seed % 2147483646 + 1
    for (k = 0; k < items; k++) take[k] = int(k * cands / items) + 1       # spread over the text
    for (k = 0; k < items; k++) {
      i = take[k]; gold = pick(4); m = 0
      delete used; delete text; used[i] = 1; text[ans[i]] = 1
      for (c = 0; c < 4; c++) {
        if (c == gold) { choice[c] = ans[i]; continue }
        do { j = take[pick(items)] } while ((j in used) || (ans[j] in text))   # distinct items and texts
        used[j] = 1; text[ans[j]] = 1; choice[c] = ans[j]
      }
      printf "{\"context\": \"%s\", \"choices\": [\"%s\", \"%s\", \"%s\", \"%s\"], \"gold\": %d}\n", \
        esc(ctx[i]), esc(choice[0]), esc(choice[1]), esc(choice[2]), esc(choice[3]), gold
    }
  }' $files > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT: $(wc -l < "$OUT") cloze items from $SRC (seed $SEED)"
