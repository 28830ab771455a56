#include "yocotron/train_step.h"

#include <limits>

#include "yocotron/phase.h"

namespace yt {

OptimizerLayout optimizer_layout(const Config& cfg, const Mesh& mesh) {
  OptimizerLayout layout;
  layout.dp_rank = mesh.coord(MeshDim::dp);
  layout.dp_size = mesh.size(MeshDim::dp);
  layout.dp = mesh.group(MeshDim::dp);
  layout.zero1 = cfg.parallel.zero1 && mesh.size(MeshDim::dp) > 1;
  layout.bucket_mb = cfg.parallel.bucket_mb;
  layout.reduce_in_fp32 = cfg.parallel.reduce_dtype == "fp32";
  return layout;
}

TrainStep::TrainStep(Decoder model, FlatAdamW& opt, const TrainConfig& cfg, at::Device device, const Mesh* mesh,
                     bool overlap)
    : model_(std::move(model)), opt_(opt), cfg_(cfg), device_(device), mesh_(mesh) {
  auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  loss_sum = at::zeros({}, opts);
  last_grad_norm = at::zeros({}, opts);
  skipped_total = at::zeros({}, opts);
  skipped_in_a_row = at::zeros({}, opts);
  if (mesh_ && mesh_->size(MeshDim::dp) > 1) sync_ = std::make_unique<GradSync>(model_, opt_, mesh_->group(MeshDim::dp), overlap);
}

at::Tensor TrainStep::global_grad_norm() {
  // Count every gradient once: TP-sharded groups on every TP rank, replicated ones on TP rank 0;
  // with ZeRO-1 each DP rank holds distinct slices, without it the replicas are equal.
  const int tp_rank = mesh_ ? mesh_->coord(MeshDim::tp) : 0;
  at::Tensor sq = at::zeros({}, loss_sum.options());
  for (const auto& g : opt_.groups())
    if (g.tp_sharded || tp_rank == 0) sq += opt_.grad_norm_sq(g);
  if (mesh_ && mesh_->size(MeshDim::tp) > 1) mesh_->group(MeshDim::tp)->all_reduce(sq);
  if (mesh_ && mesh_->size(MeshDim::dp) > 1 && opt_.layout().zero1) mesh_->group(MeshDim::dp)->all_reduce(sq);
  return sq.sqrt();
}

void TrainStep::run(const std::function<at::Tensor()>& next_batch, int64_t accum, double lr, bool poison) {
  PhaseScope step_range("yocotron::step");
  const int64_t dp = mesh_ ? mesh_->size(MeshDim::dp) : 1;
  const double scale = 1.0 / static_cast<double>(accum * dp);  // reductions sum: this makes them means
  opt_.zero_grad();
  at::Tensor step_loss = at::zeros({}, loss_sum.options());
  for (int64_t m = 0; m < accum; ++m) {
    const bool last = m == accum - 1;
    if (sync_ && last) sync_->arm(m == 0);
    at::Tensor loss;
    {
      PhaseScope range(Phase::Forward, "yocotron::forward");
      at::Tensor batch = next_batch().to(device_, /*non_blocking=*/true);
      const int64_t T = batch.size(1) - 1;
      loss = model_->loss(batch.narrow(1, 0, T), batch.narrow(1, 1, T));
      if (poison) loss = loss * std::numeric_limits<float>::quiet_NaN();
    }
    {
      PhaseScope range(Phase::Backward, "yocotron::backward");
      (loss * scale).backward();
      if (!(sync_ && last)) opt_.fold_micro_step(m == 0);
    }
    step_loss += loss.detach().to(at::kFloat);
  }
  torch::NoGradGuard no_grad;
  at::Tensor norm, found_inf, clip;
  {
    PhaseScope range(Phase::GradSync, "yocotron::grad_sync");
    if (sync_) sync_->finish();
    // Replicated weights whose gradient saw only this rank's heads (K/V mixing) or tokens (norms under
    // sequence parallelism), as their layers declared.
    if (mesh_ && mesh_->size(MeshDim::tp) > 1)
      for (auto& g : opt_.groups())
        if (g.tp_partial) mesh_->group(MeshDim::tp)->all_reduce(g.reduce_buffer(opt_.layout().reduce_in_fp32));
    norm = global_grad_norm();
    found_inf = at::logical_not(at::isfinite(norm)).to(at::kFloat);
    clip = at::ones({}, norm.options());
    if (cfg_.grad_clip > 0) clip = at::clamp_max(cfg_.grad_clip / (norm + 1e-6), 1.0);
    clip = at::where(found_inf > 0, at::ones_like(clip), clip);
  }
  {
    PhaseScope range(Phase::Optimizer, "yocotron::optimizer");
    opt_.step(lr, clip, found_inf);
  }
  skipped_total += found_inf;
  skipped_in_a_row = (skipped_in_a_row + found_inf) * found_inf;
  loss_sum += step_loss / static_cast<double>(accum);
  last_grad_norm = norm;
}

}  // namespace yt
