#!/usr/bin/env bash
# Renders an SVG to a PNG with rsvg-convert (librsvg; Debian: librsvg2-bin) and fails when librsvg
# cannot parse it (malformed XML, no <svg> root) or writes no image.
#   tests/svg/render_svg.sh FILE.svg OUT.png
# Exit status: 0 rendered, 1 the SVG is bad, 2 usage, 3 rsvg-convert is not installed (tests skip).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 FILE.svg OUT.png" >&2; exit 2; }
SVG=$1
PNG=$2
RSVG=${RSVG_CONVERT:-$(command -v rsvg-convert || true)}
[ -n "$RSVG" ] && command -v "$RSVG" >/dev/null || { echo "render_svg: rsvg-convert not found (Debian/Ubuntu: apt-get install librsvg2-bin)" >&2; exit 3; }
rm -f "$PNG"
if ! ERR=$("$RSVG" --format=png --background-color=white -o "$PNG" "$SVG" 2>&1); then
  echo "render_svg: $SVG: rsvg-convert could not render it: $ERR" >&2
  rm -f "$PNG"
  exit 1
fi
[ -s "$PNG" ] || { echo "render_svg: $SVG: no image written" >&2; exit 1; }
echo "rendered $SVG -> $PNG"
