#include "yocotron/optimizer.h"

#include <torch/version.h>

#include <cmath>

#include "yocotron/str.h"

namespace yt {

FlatAdamW::FlatAdamW(Decoder& model, const TrainConfig& cfg, at::ScalarType compute) : cfg_(cfg) {
  torch::NoGradGuard no_grad;
  const auto& specs = model->shard_specs();
  // Group parameters by (dtype, decay), keeping module order inside each group.
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (auto& p : model->named_parameters()) params.emplace_back(p.key(), p.value());
  for (int keep32 = 0; keep32 < 2; ++keep32) {
    for (int decay = 1; decay >= 0; --decay) {
      FlatGroup g;
      g.dtype = keep32 ? at::kFloat : compute;
      g.decay = decay == 1;
      int64_t total = 0;
      std::vector<std::pair<std::string, at::Tensor>> members;
      for (auto& [name, p] : params) {
        const ShardSpec& s = specs.at(name);
        if (s.keep_fp32 != (keep32 == 1) || s.decay != g.decay) continue;
        g.slots.push_back({name, total, p.numel(), p.sizes().vec()});
        total += p.numel();
        members.emplace_back(name, p);
      }
      if (members.empty()) continue;
      auto device = members.front().second.device();
      auto opts = at::TensorOptions().device(device);
      g.master = at::empty({total}, opts.dtype(at::kFloat));
      for (size_t i = 0; i < members.size(); ++i)
        g.master.narrow(0, g.slots[i].offset, g.slots[i].numel).copy_(members[i].second.reshape({-1}));
      g.params = g.dtype == at::kFloat ? g.master : g.master.to(g.dtype);
      g.grads = at::zeros({total}, opts.dtype(g.dtype));
      if (g.dtype != at::kFloat) g.grad_acc = at::zeros({total}, opts.dtype(at::kFloat));
      g.exp_avg = at::zeros({total}, opts.dtype(at::kFloat));
      g.exp_avg_sq = at::zeros({total}, opts.dtype(at::kFloat));
      g.step = at::zeros({}, opts.dtype(at::kFloat));
      for (size_t i = 0; i < members.size(); ++i) {
        const auto& slot = g.slots[i];
        at::Tensor& p = members[i].second;
        p.set_data(g.params.narrow(0, slot.offset, slot.numel).view(slot.shape));
        p.mutable_grad() = g.grads.narrow(0, slot.offset, slot.numel).view(slot.shape);
      }
      groups_.push_back(std::move(g));
    }
  }
}

void FlatAdamW::zero_grad() {
  for (auto& g : groups_) {
    g.grads.zero_();
    if (g.grad_acc.defined()) g.grad_acc.zero_();
  }
}

void FlatAdamW::accumulate_micro_step(bool first_micro) {
  for (auto& g : groups_) {
    if (!g.grad_acc.defined()) continue;
    if (first_micro) g.grad_acc.copy_(g.grads);
    else g.grad_acc.add_(g.grads);
    g.grads.zero_();
  }
}

at::Tensor FlatAdamW::grad_norm_sq() const {
  at::Tensor total;
  for (const auto& g : groups_) {
    auto sq = g.final_grads().pow(2).sum();
    total = total.defined() ? total + sq : sq;
  }
  return total;
}

void FlatAdamW::step(double lr, const at::Tensor& clip_coef, const at::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
  for (auto& g : groups_) {
    const double wd = g.decay ? cfg_.weight_decay : 0.0;
    at::Tensor grads = g.final_grads();
#if TORCH_VERSION_MAJOR >= 2
    if (g.master.is_cuda()) {
      // The fused kernel reads grad / grad_scale and leaves everything untouched where found_inf.
      auto inv_clip = at::reciprocal(clip_coef).to(at::kFloat).reshape({});
      auto inf = found_inf.to(at::kFloat).reshape({});
      g.step.add_(1.0 - inf);  // the kernel expects the step already counted
      at::_fused_adamw_({g.master}, {grads}, {g.exp_avg}, {g.exp_avg_sq}, {}, {g.step}, lr, b1, b2, wd, eps,
                        /*amsgrad=*/false, /*maximize=*/false, inv_clip, inf);
      if (g.params.data_ptr() != g.master.data_ptr()) g.params.copy_(g.master);
      continue;
    }
#endif
    // Plain ops (CPU, or LibTorch 1.13): the host may look at found_inf; on CPU that costs nothing.
    if (found_inf.item<double>() != 0.0) continue;
    g.step.add_(1.0);
    const double t = g.step.item<double>();
    auto gs = grads * clip_coef.to(grads.device());
    g.exp_avg.mul_(b1).add_(gs, 1.0 - b1);
    g.exp_avg_sq.mul_(b2).addcmul_(gs, gs, 1.0 - b2);
    const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
    g.master.mul_(1.0 - lr * wd);
    auto denom = (g.exp_avg_sq.sqrt() / std::sqrt(bc2)).add_(eps);
    g.master.addcdiv_(g.exp_avg, denom, -lr / bc1);
    if (g.params.data_ptr() != g.master.data_ptr()) g.params.copy_(g.master);
  }
}

std::map<std::string, at::Tensor> FlatAdamW::tensors(const std::string& which) const {
  std::map<std::string, at::Tensor> out;
  for (const auto& g : groups_) {
    const at::Tensor& flat = which == "master" ? g.master : which == "exp_avg" ? g.exp_avg : g.exp_avg_sq;
    for (const auto& s : g.slots) out[s.name] = flat.narrow(0, s.offset, s.numel).view(s.shape);
  }
  return out;
}

double FlatAdamW::adam_steps() const { return groups_.empty() ? 0.0 : groups_.front().step.item<double>(); }

void FlatAdamW::set_adam_steps(double steps) {
  for (auto& g : groups_) g.step.fill_(steps);
}

void FlatAdamW::load(const std::string& which, const std::map<std::string, at::Tensor>& named) {
  torch::NoGradGuard no_grad;
  for (auto& g : groups_) {
    at::Tensor& flat = which == "master" ? g.master : which == "exp_avg" ? g.exp_avg : g.exp_avg_sq;
    for (const auto& s : g.slots) {
      auto it = named.find(s.name);
      if (it == named.end()) throw std::runtime_error(cat("checkpoint has no ", which, " for '", s.name, "'"));
      flat.narrow(0, s.offset, s.numel).copy_(it->second.reshape({-1}));
    }
  }
  if (which == "master") sync_params_from_master();
}

void FlatAdamW::sync_params_from_master() {
  for (auto& g : groups_)
    if (g.params.data_ptr() != g.master.data_ptr()) g.params.copy_(g.master);
}

}  // namespace yt
