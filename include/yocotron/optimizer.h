// AdamW over flat buffers. The model's parameters become views into a few flat buffers (one per
// compute dtype and weight-decay group), and so do their gradients, so the optimizer, gradient
// clipping, the data-parallel reduction and ZeRO sharding each touch a handful of large tensors.
// bf16 training keeps fp32 master weights, an fp32 gradient accumulator and fp32 Adam state; fp32
// training updates the parameters in place. On CUDA with LibTorch >= 2 the update is
// at::_fused_adamw_ (one multi-tensor kernel per group, skipped on the device when the step is
// non-finite, no host sync); elsewhere the same formula in plain ops.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/decoder.h"

namespace yt {

struct FlatGroup {
  at::ScalarType dtype;  // compute dtype of the parameters in it
  bool decay = true;
  at::Tensor params;     // flat compute buffer; the module's parameters are views into it
  at::Tensor grads;      // flat, compute dtype; the parameters' .grad are views into it
  at::Tensor grad_acc;   // fp32 sum over micro-steps (bf16 groups only; fp32 groups accumulate in grads)
  at::Tensor master;     // fp32 weights (the same tensor as params for fp32 groups)
  at::Tensor exp_avg, exp_avg_sq;
  at::Tensor step;       // fp32 scalar on the device: Adam steps taken (bias correction)
  struct Slot {
    std::string name;
    int64_t offset, numel;
    std::vector<int64_t> shape;
  };
  std::vector<Slot> slots;

  at::Tensor final_grads() const { return grad_acc.defined() ? grad_acc : grads; }  // fp32
};

class FlatAdamW {
 public:
  // Moves every parameter of `model` (already on its device) into flat buffers of `compute` dtype,
  // except those whose ShardSpec says keep_fp32.
  FlatAdamW(Decoder& model, const TrainConfig& cfg, at::ScalarType compute);

  void zero_grad();
  // After each micro-step's backward: folds bf16 gradients into the fp32 accumulator.
  void accumulate_micro_step(bool first_micro);
  // Sum of squared fp32 gradients of this process's groups (a device scalar; no host sync).
  at::Tensor grad_norm_sq() const;
  // One AdamW update at `lr`, gradients scaled by `clip_coef` (device scalar), skipped entirely
  // where `found_inf` (device scalar, 0/1) is 1.
  void step(double lr, const at::Tensor& clip_coef, const at::Tensor& found_inf);

  std::vector<FlatGroup>& groups() { return groups_; }
  const std::vector<FlatGroup>& groups() const { return groups_; }

  // Per-parameter views for checkpoints: fp32 master weights, Adam moments, and the step count.
  std::map<std::string, at::Tensor> tensors(const std::string& which) const;  // master | exp_avg | exp_avg_sq
  double adam_steps() const;
  // Loads named fp32 tensors into master weights (and copies them to the compute parameters) or moments.
  void load(const std::string& which, const std::map<std::string, at::Tensor>& named);
  void set_adam_steps(double steps);

 private:
  void sync_params_from_master();
  TrainConfig cfg_;
  std::vector<FlatGroup> groups_;
};

}  // namespace yt
