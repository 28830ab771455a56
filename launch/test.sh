#!/usr/bin/env bash
# Sets up (Debian packages), configures, builds and runs every test. Usage: launch/test.sh [ctest args]
# BUILD_DIR (default build) and JOBS (default: number of cores) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."

launch/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
GEN=()
command -v ninja >/dev/null && GEN=(-G Ninja)
[ -f "$BUILD_DIR/CMakeCache.txt" ] || cmake -S . -B "$BUILD_DIR" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure "$@"
