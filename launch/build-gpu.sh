#!/usr/bin/env bash
# Builds yocotron on a GPU node against the PyTorch wheel's LibTorch (CUDA) and the system NCCL.
# Usage: launch/build-gpu.sh [build-dir]   (default build-gpu). Nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build-gpu}
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
      -DCMAKE_CUDA_COMPILER="$CUDACXX"
cmake --build "$BUILD_DIR" -j "$(nproc)"
