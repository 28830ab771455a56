// One optimizer step, shared by `yocotron train` and `yocotron bench`: micro-batches forward and
// backward with gradients accumulated in flat buffers, global-norm clipping, a non-finite check and
// AdamW. Nothing here waits for the device: losses, norms and skip counters stay device tensors
// until a log point reads them.
#pragma once
#include <torch/torch.h>

#include <functional>

#include "yocotron/config.h"
#include "yocotron/decoder.h"
#include "yocotron/optimizer.h"

namespace yt {

class TrainStep {
 public:
  TrainStep(Decoder model, FlatAdamW& opt, const TrainConfig& cfg, at::Device device);

  // `next_batch` yields `accum` micro-batches of [micro, T + 1] tokens. `poison` multiplies the
  // loss by NaN (a test hook for the skip path).
  void run(const std::function<at::Tensor()>& next_batch, int64_t accum, double lr, bool poison = false);

  at::Tensor loss_sum;          // sum of per-step mean losses since the last reset_interval()
  at::Tensor last_grad_norm;    // of the last step, before clipping
  at::Tensor skipped_total;     // steps skipped so far
  at::Tensor skipped_in_a_row;  // current streak of skipped steps

 private:
  Decoder model_;
  FlatAdamW& opt_;
  TrainConfig cfg_;
  at::Device device_;
};

}  // namespace yt
