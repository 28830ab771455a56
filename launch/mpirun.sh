#!/usr/bin/env bash
# Launches yocotron on one or several nodes with one process per GPU.
#   launch/mpirun.sh [-H HOSTFILE] [-g GPUS_PER_NODE] -- train --config RECIPE [--set parallel.tp=2 ...]
# One node: -g defaults to the GPUs nvidia-smi sees (else 1 process). Several nodes: a hostfile with
# "hostname slots=GPUS" lines; ranks are placed GPUS_PER_NODE per node, consecutively, so a TP group
# (consecutive ranks) never crosses nodes. The NCCL/OMP environment below is passed to every rank.
set -euo pipefail
HOSTFILE=""
GPUS=""
while [ $# -gt 0 ]; do
  case "$1" in
    -H) HOSTFILE=$2; shift 2 ;;
    -g) GPUS=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: $0 [-H HOSTFILE] [-g GPUS_PER_NODE] -- <yocotron command and options>" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "usage: $0 [-H HOSTFILE] [-g GPUS_PER_NODE] -- <yocotron command and options>" >&2; exit 2; }
if [ -z "$GPUS" ]; then GPUS=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$GPUS" -gt 0 ] || GPUS=1; fi
NODES=1
[ -n "$HOSTFILE" ] && NODES=$(grep -cv '^\s*\(#\|$\)' "$HOSTFILE")
NP=$((NODES * GPUS))
YOCOTRON=${YOCOTRON:-$(cd "$(dirname "$0")/.." && pwd)/build/bin/yocotron}
[ -x "$YOCOTRON" ] || YOCOTRON=$(cd "$(dirname "$0")/.." && pwd)/build-gpu/bin/yocotron

export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}   # no NVLink multicast on shared hosts
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
ENV=(-x NCCL_NVLS_ENABLE -x NCCL_DEBUG -x OMP_NUM_THREADS -x PATH)
for v in LD_LIBRARY_PATH NCCL_SOCKET_IFNAME NCCL_IB_HCA NCCL_IB_DISABLE NCCL_NET_GDR_LEVEL NCCL_P2P_LEVEL CUDA_DEVICE_MAX_CONNECTIONS; do
  [ -n "${!v:-}" ] && ENV+=(-x "$v")
done
ARGS=(-np "$NP" --map-by "ppr:${GPUS}:node" --bind-to none "${ENV[@]}")
[ -n "$HOSTFILE" ] && ARGS+=(--hostfile "$HOSTFILE")
[ "$(id -u)" -eq 0 ] && ARGS+=(--allow-run-as-root)
exec mpirun "${ARGS[@]}" "$YOCOTRON" "$@"
