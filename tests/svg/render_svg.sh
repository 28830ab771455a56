#!/usr/bin/env bash
# Renders an SVG in headless Chromium: writes a PNG screenshot and fails when the browser reports an
# XML/SVG parse error or the document holds no <svg> element.
#   tests/svg/render_svg.sh FILE.svg OUT.png
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 FILE.svg OUT.png" >&2; exit 2; }
SVG=$(readlink -f "$1")
PNG=$2
BROWSER=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)}
[ -n "$BROWSER" ] || { echo "render_svg: no chromium found" >&2; exit 3; }
PROFILE=$(mktemp -d)
trap 'rm -rf "$PROFILE"' EXIT
FLAGS=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$PROFILE")
W=$(grep -o 'width="[0-9.]*"' "$SVG" | head -1 | tr -dc '0-9.'); H=$(grep -o 'height="[0-9.]*"' "$SVG" | head -1 | tr -dc '0-9.')
DOM=$("$BROWSER" "${FLAGS[@]}" --dump-dom "file://$SVG" 2>/dev/null)
if grep -q "parsererror" <<<"$DOM"; then echo "render_svg: $1: the browser could not parse it:" >&2; grep -o "<parsererror.*</parsererror>" <<<"$DOM" | head -c 600 >&2; exit 1; fi
grep -q "<svg" <<<"$DOM" || { echo "render_svg: $1: no <svg> element in the rendered document" >&2; exit 1; }
"$BROWSER" "${FLAGS[@]}" --window-size="${W%.*},${H%.*}" --screenshot="$(readlink -f "$(dirname "$PNG")")/$(basename "$PNG")" "file://$SVG" >/dev/null 2>&1
[ -s "$PNG" ] || { echo "render_svg: no screenshot written" >&2; exit 1; }
echo "rendered $1 -> $PNG"
