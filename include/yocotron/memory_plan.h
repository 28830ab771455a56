// Will the run fit? Before the model is built, `train` and `bench` estimate what one process must
// hold — weights, gradients, optimizer state (as include/yocotron/optimizer.h lays it out: bf16
// runs keep bf16 parameters and gradients, an fp32 gradient accumulator unless
// train.grad_accum_dtype=bf16, fp32 master weights and fp32 Adam moments, the fp32 state sharded
// over data-parallel ranks with ZeRO-1; tensor parallelism shards every matrix and the vocabulary)
// plus a lower bound on one micro-batch's activations for train.recompute — and refuse a run whose
// lower bound exceeds the device's free memory, with one line naming the keys to change. Every
// figure is a lower bound, so a run that fits is never refused. Sizes are overflow-checked.
#pragma once
#include <cstdint>
#include <string>

#include "yocotron/config.h"

namespace yt {

struct Mesh;

struct MemoryPlan {  // bytes one process holds on its device
  bool gpu = false;
  bool bf16 = false;
  bool overflow = false;  // some count does not fit 64 bits: more than 8 EiB
  int64_t params = 0;     // parameters this process holds (its tensor-parallel share)
  int64_t weights = 0;    // compute-dtype parameters
  int64_t grads = 0;      // compute-dtype gradients
  int64_t grad_accum = 0;  // fp32 gradient accumulator (bf16 runs with train.grad_accum_dtype=fp32)
  int64_t master = 0;     // fp32 master weights beyond the parameters themselves (bf16, or ZeRO-1's shard)
  int64_t moments = 0;    // Adam's two fp32 moments (ZeRO-1: this rank's shard)
  int64_t buffers = 0;    // RoPE tables
  int64_t activations = 0;  // lower bound for one micro-batch (tensors every train.recompute mode keeps)
  int64_t host_build = 0;   // host memory while building: the model is made in fp32 on the CPU first

  int64_t state() const { return weights + grads + grad_accum + master + moments + buffers; }
  int64_t total() const { return state() + activations; }
};

// The plan for one process of a dp x parallel.tp mesh. Throws ConfigError naming the model keys
// when even the parameter count overflows.
MemoryPlan plan_memory(const Config& cfg, int64_t dp, bool bf16, bool gpu);

// "" when `plan` fits in `free_bytes` on `device` (and its build in `host_free_bytes` of host memory
// for GPU runs); a negative figure means unknown and is not checked. Otherwise the one-line reason:
//   this run needs at least 2.91 TiB per process on cuda:0 but 78.52 GiB is free: weights ...; try
//   a smaller model (model.n_layers=..., ...), parallel.tp=2 (now 1), or ...
std::string memory_refusal(const Config& cfg, const MemoryPlan& plan, int64_t dp, const std::string& device,
                           int64_t free_bytes, int64_t host_free_bytes);

// MemAvailable + SwapFree from /proc/meminfo, in bytes; -1 when unknown.
int64_t host_available_bytes();

// Plans this process's memory, asks the device (cuda_device >= 0: cudaMemGetInfo; else the host),
// and throws ConfigError with the reason when the run cannot fit. Under mpirun every rank throws
// the first refusing rank's reason (an MPI collective: every rank of `mesh` must call it).
void check_memory_fits(const Config& cfg, const Mesh& mesh, bool bf16, int cuda_device);

}  // namespace yt
