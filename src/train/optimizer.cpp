#include "yocotron/optimizer.h"

#include <torch/version.h>

#include <cmath>

#include "yocotron/comm.h"
#include "yocotron/str.h"

namespace yt {
namespace {

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct Member {
  std::string name;
  at::Tensor param;
};

}  // namespace

FlatAdamW::FlatAdamW(Decoder& model, const TrainConfig& cfg, at::ScalarType compute, OptimizerLayout layout)
    : cfg_(cfg), layout_(layout), accumulate_in_compute_dtype_(compute != at::kFloat && cfg.grad_accum_dtype == "bf16") {
  torch::NoGradGuard no_grad;
  const auto& specs = model->shard_specs();
  std::vector<Member> params;
  for (auto& p : model->named_parameters()) params.push_back({p.key(), p.value()});
  const int64_t dp = layout_.dp_size;
  // One group per combination of the rules the layers declared (dtype, decay, split, partial gradient).
  for (int group_key = 0; group_key < 16; ++group_key) {
    const bool keep32 = group_key & 8, decay = !(group_key & 4), sharded = !(group_key & 2), partial = group_key & 1;
    std::vector<Member> members;
    for (auto& m : params) {
      const ShardSpec& s = specs.at(m.name);
      if (s.keep_fp32 == keep32 && s.decay == decay && (s.split_dim >= 0) == sharded && s.tp_partial_grad == partial)
        members.push_back(m);
    }
    if (members.empty()) continue;
    FlatGroup g;
    g.dtype = keep32 ? at::kFloat : compute;
    g.decay = decay;
    g.tp_sharded = sharded;
    g.tp_partial = partial;
    // Buckets: walk parameters from the last (their gradients come first in backward).
    const int64_t bucket_elems = std::max<int64_t>(1, static_cast<int64_t>(layout_.bucket_mb * 1048576.0) / 4);
    std::vector<size_t> bucket_of(members.size());
    size_t n_buckets = 0;
    int64_t filled = 0;
    for (size_t i = members.size(); i-- > 0;) {
      if (filled > 0 && filled + members[i].param.numel() > bucket_elems) ++n_buckets, filled = 0;
      bucket_of[i] = n_buckets;
      filled += members[i].param.numel();
    }
    ++n_buckets;
    // Lay the buffer out in module order; pad each bucket's end to a multiple of dp.
    g.buckets.resize(n_buckets);
    int64_t offset = 0;
    for (size_t i = 0; i < members.size(); ++i) {
      size_t b = bucket_of[i];
      if (i == 0 || bucket_of[i - 1] != b) g.buckets[b].begin = offset;
      g.slots.push_back({members[i].name, offset, members[i].param.numel(), members[i].param.sizes().vec(), b});
      offset += members[i].param.numel();
      if (i + 1 == members.size() || bucket_of[i + 1] != b) {
        offset = g.buckets[b].begin + round_up(offset - g.buckets[b].begin, dp);
        g.buckets[b].end = offset;
      }
    }
    const int64_t total = offset;
    int64_t shard = 0;
    for (auto& b : g.buckets) b.shard_offset = shard, shard += b.length() / dp;

    auto opts = at::TensorOptions().device(members.front().param.device());
    at::Tensor full_master = at::zeros({total}, opts.dtype(at::kFloat));
    for (size_t i = 0; i < members.size(); ++i)
      full_master.narrow(0, g.slots[i].offset, g.slots[i].numel).copy_(members[i].param.reshape({-1}));
    const int64_t state_size = layout_.zero1 ? shard : total;
    if (layout_.zero1) {
      g.params = full_master.to(g.dtype).clone();
      g.master = at::empty({shard}, opts.dtype(at::kFloat));
      for (const auto& b : g.buckets) shard_view(g.master, b).copy_(owned_view(full_master, b));
    } else {
      g.master = full_master;
      g.params = g.dtype == at::kFloat ? g.master : g.master.to(g.dtype);
    }
    g.grads = at::zeros({total}, opts.dtype(g.dtype));
    if (g.dtype != at::kFloat && !accumulate_in_compute_dtype_) g.grad_acc = at::zeros({total}, opts.dtype(at::kFloat));
    g.exp_avg = at::zeros({state_size}, opts.dtype(at::kFloat));
    g.exp_avg_sq = at::zeros({state_size}, opts.dtype(at::kFloat));
    g.step = at::zeros({}, opts.dtype(at::kFloat));
    for (size_t i = 0; i < members.size(); ++i) {
      const auto& slot = g.slots[i];
      at::Tensor& p = members[i].param;
      p.set_data(g.params.narrow(0, slot.offset, slot.numel).view(slot.shape));
      p.mutable_grad() = g.grads.narrow(0, slot.offset, slot.numel).view(slot.shape);
    }
    groups_.push_back(std::move(g));
  }
  // Without an fp32 accumulator the update reads each bucket's (or slice's) gradients through one
  // fp32 scratch buffer of the largest length.
  int64_t scratch = 0;
  for (const auto& g : groups_)
    if (g.dtype != at::kFloat && !g.grad_acc.defined())
      for (const auto& b : g.buckets) scratch = std::max(scratch, owned(b).second);
  if (scratch > 0) grad_scratch_ = at::empty({scratch}, groups_.front().master.options().dtype(at::kFloat));
}

std::pair<int64_t, int64_t> FlatAdamW::owned(const Bucket& b) const {
  if (!layout_.zero1) return {b.begin, b.length()};
  const int64_t len = b.length() / layout_.dp_size;
  return {b.begin + layout_.dp_rank * len, len};
}

at::Tensor FlatAdamW::owned_view(const at::Tensor& full, const Bucket& b) const {
  auto [start, len] = owned(b);
  return full.narrow(0, start, len);
}

at::Tensor FlatAdamW::shard_view(const at::Tensor& shard, const Bucket& b) const {
  return shard.narrow(0, b.shard_offset, b.length() / layout_.dp_size);
}

void FlatAdamW::zero_grad() {
  for (auto& g : groups_) {
    g.grads.zero_();
    if (g.grad_acc.defined()) g.grad_acc.zero_();
  }
}

void FlatAdamW::fold_micro_step(FlatGroup& g, const Bucket& b, bool first_micro) {
  if (!g.grad_acc.defined() || !layout_.reduce_in_fp32) return;  // fp32 groups accumulate in place
  at::Tensor acc = g.grad_acc.narrow(0, b.begin, b.length()), src = g.grads.narrow(0, b.begin, b.length());
  if (first_micro) acc.copy_(src);
  else acc.add_(src);
  src.zero_();
}

void FlatAdamW::fold_micro_step(bool first_micro) {
  for (auto& g : groups_)
    for (const auto& b : g.buckets) fold_micro_step(g, b, first_micro);
}

at::Tensor FlatAdamW::grad_norm_sq(const FlatGroup& g) const {
  if (reads_through_scratch(g)) {  // bf16 gradients: fp32 norms bucket by bucket, no fp32 copy of the whole
    at::Tensor total = at::zeros({}, g.grads.options().dtype(at::kFloat));
    for (const auto& b : g.buckets) {
      at::Tensor n = at::linalg_vector_norm(owned_view(g.grads, b), 2, at::OptionalIntArrayRef(), false, at::kFloat);
      total += n * n;
    }
    return total;
  }
  at::Tensor grads = g.reduce_buffer(layout_.reduce_in_fp32);
  if (!layout_.zero1) return grads.to(at::kFloat).pow(2).sum();
  at::Tensor total = at::zeros({}, grads.options().dtype(at::kFloat));
  for (const auto& b : g.buckets) total += owned_view(grads, b).to(at::kFloat).pow(2).sum();
  return total;
}

void FlatAdamW::publish_params(FlatGroup& g) {
  if (!layout_.zero1) {
    if (g.params.data_ptr() != g.master.data_ptr()) g.params.copy_(g.master);
    return;
  }
  for (const auto& b : g.buckets) {
    at::Tensor bucket = g.params.narrow(0, b.begin, b.length());
    owned_view(g.params, b).copy_(shard_view(g.master, b));
    if (layout_.dp_size > 1) layout_.dp->all_gather(owned_view(g.params, b), bucket);
  }
}

void FlatAdamW::step(double lr, const at::Tensor& clip_coef, const at::Tensor& found_inf) {
  torch::NoGradGuard no_grad;
  const double b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
  for (auto& g : groups_) {
    const double wd = g.decay ? cfg_.weight_decay : 0.0;
    if (reads_through_scratch(g)) {
      step_through_scratch(g, lr, wd, clip_coef, found_inf);
      continue;
    }
    // bf16 gradients reduced natively are read in fp32 by the update.
    if (g.grad_acc.defined() && !layout_.reduce_in_fp32) g.grad_acc.copy_(g.grads);
    std::vector<at::Tensor> w, gr, m, v;
    if (layout_.zero1) {
      for (const auto& b : g.buckets) {
        w.push_back(shard_view(g.master, b));
        gr.push_back(owned_view(g.fp32_grads(), b));
        m.push_back(shard_view(g.exp_avg, b));
        v.push_back(shard_view(g.exp_avg_sq, b));
      }
    } else {
      w = {g.master}, gr = {g.fp32_grads()}, m = {g.exp_avg}, v = {g.exp_avg_sq};
    }
#if TORCH_VERSION_MAJOR >= 2
    if (g.master.is_cuda()) {
      // The fused kernel reads grad / grad_scale and leaves everything untouched where found_inf.
      auto inv_clip = at::reciprocal(clip_coef).to(at::kFloat).reshape({});
      auto inf = found_inf.to(at::kFloat).reshape({});
      g.step.add_(1.0 - inf);  // the kernel expects the step already counted
      std::vector<at::Tensor> steps(w.size(), g.step);
      at::_fused_adamw_(w, gr, m, v, {}, steps, lr, b1, b2, wd, eps, /*amsgrad=*/false, /*maximize=*/false, inv_clip, inf);
      publish_params(g);
      continue;
    }
#endif
    // Plain ops (CPU, or LibTorch 1.13): the host may read found_inf; on the CPU that costs nothing.
    if (found_inf.item<double>() != 0.0) continue;
    g.step.add_(1.0);
    const double t = g.step.item<double>();
    const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
    for (size_t i = 0; i < w.size(); ++i) {
      auto gs = gr[i] * clip_coef.to(gr[i].device());
      m[i].mul_(b1).add_(gs, 1.0 - b1);
      v[i].mul_(b2).addcmul_(gs, gs, 1.0 - b2);
      w[i].mul_(1.0 - lr * wd);
      auto denom = (v[i].sqrt() / std::sqrt(bc2)).add_(eps);
      w[i].addcdiv_(m[i], denom, -lr / bc1);
    }
    publish_params(g);
  }
}

// train.grad_accum_dtype=bf16: the gradients are bf16 and the update (at::_fused_adamw_ needs one
// dtype for parameters, gradients and moments) reads them in fp32, one bucket (or ZeRO-1 slice) at a
// time through the scratch buffer. The same formula as step().
void FlatAdamW::step_through_scratch(FlatGroup& g, double lr, double wd, const at::Tensor& clip_coef, const at::Tensor& found_inf) {
  const double b1 = cfg_.beta1, b2 = cfg_.beta2, eps = cfg_.eps;
  struct Piece {
    at::Tensor w, grad, m, v;
  };
  std::vector<Piece> pieces;
  for (const auto& b : g.buckets) {
    if (layout_.zero1) {
      pieces.push_back({shard_view(g.master, b), owned_view(g.grads, b), shard_view(g.exp_avg, b), shard_view(g.exp_avg_sq, b)});
    } else {
      auto whole = [&](const at::Tensor& t) { return t.narrow(0, b.begin, b.length()); };
      pieces.push_back({whole(g.master), whole(g.grads), whole(g.exp_avg), whole(g.exp_avg_sq)});
    }
  }
  auto fp32 = [&](const at::Tensor& grad) { return grad_scratch_.narrow(0, 0, grad.numel()).copy_(grad); };
#if TORCH_VERSION_MAJOR >= 2
  if (g.master.is_cuda()) {
    auto inv_clip = at::reciprocal(clip_coef).to(at::kFloat).reshape({});
    auto inf = found_inf.to(at::kFloat).reshape({});
    g.step.add_(1.0 - inf);  // once per step; the kernel reads it
    for (auto& p : pieces)
      at::_fused_adamw_({p.w}, {fp32(p.grad)}, {p.m}, {p.v}, {}, {g.step}, lr, b1, b2, wd, eps, /*amsgrad=*/false,
                        /*maximize=*/false, inv_clip, inf);
    publish_params(g);
    return;
  }
#endif
  if (found_inf.item<double>() != 0.0) return;
  g.step.add_(1.0);
  const double t = g.step.item<double>();
  const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
  for (auto& p : pieces) {
    auto gs = fp32(p.grad) * clip_coef.to(p.grad.device());
    p.m.mul_(b1).add_(gs, 1.0 - b1);
    p.v.mul_(b2).addcmul_(gs, gs, 1.0 - b2);
    p.w.mul_(1.0 - lr * wd);
    auto denom = (p.v.sqrt() / std::sqrt(bc2)).add_(eps);
    p.w.addcdiv_(p.m, denom, -lr / bc1);
  }
  publish_params(g);
}

at::Tensor& FlatAdamW::state(FlatGroup& g, const std::string& which) {
  if (which == "master") return g.master;
  if (which == "exp_avg") return g.exp_avg;
  if (which == "exp_avg_sq") return g.exp_avg_sq;
  throw std::invalid_argument("FlatAdamW: unknown state '" + which + "'");
}

std::map<std::string, at::Tensor> FlatAdamW::tensors(const std::string& which) {
  std::map<std::string, at::Tensor> out;
  for (auto& g : groups_) {
    at::Tensor flat = state(g, which);
    if (layout_.zero1) {  // reassemble the full buffer from every rank's slices
      at::Tensor full = at::zeros({g.params.numel()}, flat.options());
      for (const auto& b : g.buckets) {
        owned_view(full, b).copy_(shard_view(flat, b));
        if (layout_.dp_size > 1) layout_.dp->all_gather(owned_view(full, b), full.narrow(0, b.begin, b.length()));
      }
      flat = full;
    }
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
    at::Tensor full = at::zeros({g.params.numel()}, g.master.options());
    for (const auto& s : g.slots) {
      auto it = named.find(s.name);
      if (it == named.end()) throw std::runtime_error(cat("checkpoint has no ", which, " for '", s.name, "'"));
      if (it->second.numel() != s.numel)
        throw std::runtime_error(cat("checkpoint ", which, " for '", s.name, "' has ", it->second.numel(),
                                     " elements, this rank's parameter has ", s.numel));
      full.narrow(0, s.offset, s.numel).copy_(it->second.reshape({-1}));
    }
    at::Tensor& dst = state(g, which);
    if (layout_.zero1) {
      for (const auto& b : g.buckets) shard_view(dst, b).copy_(owned_view(full, b));
    } else {
      dst.copy_(full);
    }
    if (which == "master") {
      if (layout_.zero1) g.params.copy_(full);
      else if (g.params.data_ptr() != g.master.data_ptr()) g.params.copy_(g.master);
    }
  }
}

}  // namespace yt
