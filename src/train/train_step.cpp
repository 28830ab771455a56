#include "yocotron/train_step.h"

#include <limits>

namespace yt {

TrainStep::TrainStep(Decoder model, FlatAdamW& opt, const TrainConfig& cfg, at::Device device)
    : model_(std::move(model)), opt_(opt), cfg_(cfg), device_(device) {
  auto opts = at::TensorOptions().device(device).dtype(at::kFloat);
  loss_sum = at::zeros({}, opts);
  last_grad_norm = at::zeros({}, opts);
  skipped_total = at::zeros({}, opts);
  skipped_in_a_row = at::zeros({}, opts);
}

void TrainStep::run(const std::function<at::Tensor()>& next_batch, int64_t accum, double lr, bool poison) {
  opt_.zero_grad();
  at::Tensor step_loss = at::zeros({}, loss_sum.options());
  for (int64_t m = 0; m < accum; ++m) {
    at::Tensor batch = next_batch().to(device_, /*non_blocking=*/true);
    const int64_t T = batch.size(1) - 1;
    at::Tensor loss = model_->loss(batch.narrow(1, 0, T), batch.narrow(1, 1, T));
    if (poison) loss = loss * std::numeric_limits<float>::quiet_NaN();
    (loss / static_cast<double>(accum)).backward();
    opt_.accumulate_micro_step(m == 0);
    step_loss += loss.detach().to(at::kFloat);
  }
  torch::NoGradGuard no_grad;
  at::Tensor norm = opt_.grad_norm_sq().sqrt();
  at::Tensor found_inf = at::logical_not(at::isfinite(norm)).to(at::kFloat);
  at::Tensor clip = at::ones({}, norm.options());
  if (cfg_.grad_clip > 0) clip = at::clamp_max(cfg_.grad_clip / (norm + 1e-6), 1.0);
  clip = at::where(found_inf > 0, at::ones_like(clip), clip);
  opt_.step(lr, clip, found_inf);
  skipped_total += found_inf;
  skipped_in_a_row = (skipped_in_a_row + found_inf) * found_inf;
  loss_sum += step_loss / static_cast<double>(accum);
  last_grad_norm = norm;
}

}  // namespace yt
