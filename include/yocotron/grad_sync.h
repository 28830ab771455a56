// Data-parallel gradient reduction in buckets. On the last micro-step of a step, an autograd hook on
// every parameter's gradient accumulator counts down its bucket; when a bucket's last gradient is in,
// its micro-step gradients are folded into the fp32 accumulator and its all-reduce (or, with ZeRO-1,
// reduce-scatter) is launched on the communication stream while backward goes on. Buckets launch in
// a fixed order on every rank (a ready bucket waits for the ones before it), as NCCL requires.
// Gradients arrive summed; the loss is pre-scaled by 1/dp, so they are averages.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "yocotron/comm.h"
#include "yocotron/optimizer.h"

namespace yt {

class GradSync {
 public:
  // overlap=false: no hooks; everything is reduced in finish().
  GradSync(Decoder& model, FlatAdamW& opt, Communicator* dp, bool overlap);
  ~GradSync();

  // Before the last micro-step's backward.
  void arm(bool first_micro);
  // After it: launches buckets not launched yet and orders later work after every reduction.
  void finish();

 private:
  struct Pending;
  void on_grad_ready(size_t group, size_t bucket);
  void launch_ready();
  void launch(size_t group, size_t bucket);

  FlatAdamW& opt_;
  Communicator* dp_;
  bool overlap_;
  bool armed_ = false, first_micro_ = false;
  std::vector<std::pair<size_t, size_t>> order_;        // (group, bucket) in launch order
  std::vector<std::vector<int>> remaining_, expected_;  // per group, per bucket: gradients still to come
  std::vector<std::vector<bool>> launched_;
  size_t next_ = 0;
  std::vector<std::unique_ptr<Work>> works_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive for their hooks
};

}  // namespace yt
