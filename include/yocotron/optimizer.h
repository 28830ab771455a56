// AdamW over flat buffers. The model's parameters become views into a few flat buffers (one per
// compute dtype, weight-decay group and tensor-parallel kind), and so do their gradients, so the
// optimizer, gradient clipping, the data-parallel reduction and ZeRO-1 each touch a few large
// tensors. Each buffer is cut into buckets (about parallel.bucket_mb, in the reverse of module order:
// the order backward produces gradients), padded to a multiple of the data-parallel size.
//
// bf16 training keeps fp32 master weights, an fp32 gradient accumulator and fp32 Adam state; fp32
// training updates the parameters in place. With train.grad_accum_dtype=bf16 there is no fp32
// accumulator: micro-steps accumulate in the bf16 gradient buffer itself (autograd adds into the
// .grad views), that buffer is what the data-parallel reduction reduces, the norm is taken in fp32
// bucket by bucket, and the update reads each bucket's gradients through one fp32 scratch buffer. With ZeRO-1 each data-parallel rank keeps master weights
// and Adam state only for its slice of every bucket, updates that slice, and the slices are
// all-gathered back into the parameters. On CUDA with LibTorch >= 2 the update is
// at::_fused_adamw_ (skipped on the device when the step is non-finite, no host sync); elsewhere
// the same formula in plain ops.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/decoder.h"

namespace yt {

class Communicator;

struct OptimizerLayout {
  int dp_rank = 0;
  int dp_size = 1;
  Communicator* dp = nullptr;  // needed when dp_size > 1
  bool zero1 = false;
  double bucket_mb = 25.0;
  bool reduce_in_fp32 = true;  // bf16 groups: reduce the fp32 accumulator (else the bf16 gradients)
};

struct Bucket {
  int64_t begin = 0, end = 0;  // [begin, end) of the group's flat buffers; (end - begin) % dp_size == 0
  int64_t shard_offset = 0;    // ZeRO-1: where this rank's slice sits in the shard buffers
  int64_t length() const { return end - begin; }
};

struct FlatGroup {
  at::ScalarType dtype;     // compute dtype of the parameters in it
  bool decay = true;
  bool tp_sharded = false;  // its parameters are split across tensor-parallel ranks
  bool tp_partial = false;  // replicated across TP ranks, each holding a partial gradient (KV mixing weights)
  at::Tensor params;        // flat compute buffer; the module's parameters are views into it
  at::Tensor grads;         // flat, compute dtype; the parameters' .grad are views into it
  at::Tensor grad_acc;      // fp32 sum over micro-steps (bf16 groups, unless train.grad_accum_dtype=bf16)
  at::Tensor master;        // fp32 weights: the whole buffer, or with ZeRO-1 this rank's slices
  at::Tensor exp_avg, exp_avg_sq;
  at::Tensor step;          // fp32 scalar on the device: Adam steps taken
  std::vector<Bucket> buckets;  // launch order (the end of the buffer first)
  struct Slot {
    std::string name;
    int64_t offset, numel;
    std::vector<int64_t> shape;
    size_t bucket;
  };
  std::vector<Slot> slots;

  // What gradient reductions read: the fp32 accumulator when there is one, else the gradients.
  at::Tensor reduce_buffer(bool reduce_in_fp32) const { return grad_acc.defined() && reduce_in_fp32 ? grad_acc : grads; }
  at::Tensor fp32_grads() const { return grad_acc.defined() ? grad_acc : grads; }
};

class FlatAdamW {
 public:
  // Moves every parameter of `model` (already on its device) into flat buffers of `compute` dtype,
  // except those whose ShardSpec says keep_fp32.
  FlatAdamW(Decoder& model, const TrainConfig& cfg, at::ScalarType compute, OptimizerLayout layout = {});

  void zero_grad();
  // Folds this micro-step's bf16 gradients of one bucket (or all) into the fp32 accumulator (a no-op
  // where there is none: fp32 groups and train.grad_accum_dtype=bf16 accumulate in place).
  void fold_micro_step(FlatGroup& g, const Bucket& b, bool first_micro);
  void fold_micro_step(bool first_micro);
  // Sum of squared fp32 gradients this rank owns (all of them; with ZeRO-1 its slices); a device scalar.
  at::Tensor grad_norm_sq(const FlatGroup& g) const;
  // One AdamW update at `lr`, gradients scaled by `clip_coef` (device scalar), skipped entirely
  // where `found_inf` (device scalar, 0/1) is 1. With ZeRO-1 the slices are then all-gathered.
  void step(double lr, const at::Tensor& clip_coef, const at::Tensor& found_inf);

  std::vector<FlatGroup>& groups() { return groups_; }
  const std::vector<FlatGroup>& groups() const { return groups_; }
  const OptimizerLayout& layout() const { return layout_; }
  // This rank's slice of a bucket (the whole bucket without ZeRO-1).
  std::pair<int64_t, int64_t> owned(const Bucket& b) const;

  // Full per-parameter fp32 tensors (with ZeRO-1 gathered over the DP group: a collective), for
  // checkpoints. `which`: master | exp_avg | exp_avg_sq.
  std::map<std::string, at::Tensor> tensors(const std::string& which);
  double adam_steps() const;
  // Loads full named fp32 tensors (this rank keeps its part) into master weights (and the compute
  // parameters) or moments.
  void load(const std::string& which, const std::map<std::string, at::Tensor>& named);
  void set_adam_steps(double steps);

 private:
  at::Tensor& state(FlatGroup& g, const std::string& which);
  // bf16 gradients without an fp32 accumulator (train.grad_accum_dtype=bf16)
  bool reads_through_scratch(const FlatGroup& g) const { return g.dtype != at::kFloat && !g.grad_acc.defined(); }
  void step_through_scratch(FlatGroup& g, double lr, double wd, const at::Tensor& clip_coef, const at::Tensor& found_inf);
  at::Tensor owned_view(const at::Tensor& full, const Bucket& b) const;
  at::Tensor shard_view(const at::Tensor& shard, const Bucket& b) const;
  void publish_params(FlatGroup& g);  // compute params from master (+ all-gather with ZeRO-1)
  TrainConfig cfg_;
  OptimizerLayout layout_;
  bool accumulate_in_compute_dtype_ = false;
  std::vector<FlatGroup> groups_;
  at::Tensor grad_scratch_;  // fp32, the largest bucket or slice (train.grad_accum_dtype=bf16 only)
};

}  // namespace yt
