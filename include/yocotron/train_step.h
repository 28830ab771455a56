// One optimizer step, shared by `yocotron train` and `yocotron bench`: micro-batches forward and
// backward with gradients accumulated in flat buffers, the data-parallel reduction (bucketed,
// overlapped with backward), the tensor-parallel sum of head-shared weights' gradients, the true
// global gradient norm over the mesh, clipping, a non-finite check and AdamW. Nothing here waits
// for the device: losses, norms and skip counters stay device tensors until a log point reads them.
// Each phase is a named range for the profiler (yocotron::step, ::forward, ::backward, ::grad_sync,
// ::optimizer) and is recorded for out-of-memory messages (phase.h).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

#include "yocotron/config.h"
#include "yocotron/decoder.h"
#include "yocotron/grad_sync.h"
#include "yocotron/mesh.h"
#include "yocotron/optimizer.h"

namespace yt {

// The optimizer layout (ZeRO-1, buckets, reduction dtype) a recipe implies on a mesh.
OptimizerLayout optimizer_layout(const Config& cfg, const Mesh& mesh);

class TrainStep {
 public:
  // `mesh` null: one process.
  TrainStep(Decoder model, FlatAdamW& opt, const TrainConfig& cfg, at::Device device, const Mesh* mesh = nullptr,
            bool overlap = true);

  // `next_batch` yields `accum` micro-batches of [micro, T + 1] tokens. `poison` multiplies the
  // loss by NaN (a test hook for the skip path).
  void run(const std::function<at::Tensor()>& next_batch, int64_t accum, double lr, bool poison = false);

  at::Tensor loss_sum;          // this rank's sum of per-step mean losses since it was last zeroed
  at::Tensor last_grad_norm;    // of the last step, over the whole mesh, before clipping
  at::Tensor skipped_total;     // steps skipped so far
  at::Tensor skipped_in_a_row;  // current streak of skipped steps

 private:
  at::Tensor global_grad_norm();
  Decoder model_;
  FlatAdamW& opt_;
  TrainConfig cfg_;
  at::Device device_;
  const Mesh* mesh_;
  std::unique_ptr<GradSync> sync_;
};

}  // namespace yt
