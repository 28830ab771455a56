// The parallel layers: their shard declarations and how activations cross their TP regions.
#include "yocotron/parallel_layers.h"

#include "yocotron/comm.h"
#include "yocotron/ops.h"
#include "yocotron/str.h"

namespace yt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

at::Tensor rows(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

// x W^T whose input arrives split along T: gathered for the product, and gathered again in backward
// rather than kept, so a rank holds only its tokens' activations between forward and backward.
struct SequenceColumnLinear : torch::autograd::Function<SequenceColumnLinear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const TpContext* tp) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["tp"] = reinterpret_cast<int64_t>(tp);
    return at::matmul(tp::all_gather_sequence(x, *tp), w.t());
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto saved = ctx->get_saved_variables();
    const TpContext& tp = *reinterpret_cast<const TpContext*>(ctx->saved_data["tp"].toInt());
    at::Tensor total = tp::all_gather_sequence(saved[0], tp);  // [B, T, in]
    at::Tensor g2 = rows(g[0].contiguous());                    // [N, out_local]
    at::Tensor grad_w = g2.t().mm(rows(total));
    at::Tensor grad_total = at::matmul(g[0], saved[1]);         // [B, T, in]
    return {tp::reduce_scatter_sequence(grad_total, tp), grad_w, at::Tensor()};
  }
};

ShardSpec split_spec(int dim, std::vector<int64_t> global_shape, int64_t padded_size) {
  ShardSpec s;
  s.split_dim = dim;
  s.global_shape = std::move(global_shape);
  s.padded_size = padded_size;
  return s;
}

}  // namespace

// ---- specs ------------------------------------------------------------------------------------

at::Tensor local_shard(const at::Tensor& global, const ShardSpec& spec, int rank, int size) {
  if (spec.split_dim < 0) return global;
  at::Tensor full = global;
  int64_t pad = spec.padded_size - spec.global_shape[spec.split_dim];
  if (pad > 0) {
    auto shape = full.sizes().vec();
    shape[spec.split_dim] = pad;
    full = torch::cat({full, torch::zeros(shape, full.options())}, spec.split_dim);
  }
  return full.chunk(size, spec.split_dim)[rank];
}

at::Tensor gather_global(const at::Tensor& shard, const ShardSpec& spec, const TpContext& tp) {
  if (spec.split_dim < 0) return shard;
  at::Tensor full = tp::gather_shards(shard, spec.split_dim, tp);
  return full.narrow(spec.split_dim, 0, spec.global_shape[spec.split_dim]);
}

std::map<std::string, ShardSpec> collect_shard_specs(const torch::nn::Module& root) {
  std::map<std::string, ShardSpec> out;
  auto take = [&](const std::string& prefix, const torch::nn::Module& m) {
    if (auto* d = dynamic_cast<const DeclaresShards*>(&m))
      for (const auto& [name, spec] : d->declared_shards()) out[prefix.empty() ? name : prefix + "." + name] = spec;
  };
  take("", root);
  for (const auto& item : root.named_modules("", /*include_self=*/false)) take(item.key(), *item.value());
  for (const auto& p : root.named_parameters())
    if (!out.count(p.key())) throw std::logic_error(cat("parameter '", p.key(), "' has no shard declaration"));
  return out;
}

// ---- regions ----------------------------------------------------------------------------------

at::Tensor ColumnInput::gather(const at::Tensor& local) const {
  if (tp.size == 1 || layout == StreamLayout::Replicated) return local;
  return tp::all_gather_sequence(local, tp);
}

at::Tensor ColumnInput::reduce_grad(const at::Tensor& grad) const {
  if (tp.size == 1) return grad;
  if (layout == StreamLayout::SequenceSharded) return tp::reduce_scatter_sequence(grad, tp);
  at::Tensor out = grad.contiguous();
  tp.comm->all_reduce(out);
  return out;
}

// ---- layers -----------------------------------------------------------------------------------

ColumnParallelLinearImpl::ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, const TpContext& tp, bool pad)
    : tp_(tp) {
  const int64_t padded = pad ? round_up(out_features, tp.size) : out_features;
  TORCH_CHECK(padded % tp.size == 0, "ColumnParallelLinear: ", out_features, " outputs do not split over ", tp.size, " ranks");
  weight = register_parameter("weight", torch::empty({padded / tp.size, in_features}));
  declare_shard("weight", split_spec(0, {out_features, in_features}, padded));
}

at::Tensor ColumnParallelLinearImpl::forward(const at::Tensor& x, StreamLayout layout) {
  if (tp_.size == 1) return at::linear(x, weight);
  if (layout == StreamLayout::Replicated) return at::linear(tp::copy_to_region(x, tp_), weight);
  return SequenceColumnLinear::apply(x, weight, &tp_);
}

at::Tensor ColumnParallelLinearImpl::enter(const at::Tensor& x, StreamLayout layout) const {
  if (tp_.size == 1) return x;
  return layout == StreamLayout::Replicated ? tp::copy_to_region(x, tp_) : tp::gather_from_sequence(x, tp_);
}

at::Tensor ColumnParallelLinearImpl::gather_outputs(const at::Tensor& y) const {
  return tp_.size == 1 ? y : tp::gather_shards(y, y.dim() - 1, tp_);
}

RowParallelLinearImpl::RowParallelLinearImpl(int64_t in_features, int64_t out_features, const TpContext& tp) : tp_(tp) {
  TORCH_CHECK(in_features % tp.size == 0, "RowParallelLinear: ", in_features, " inputs do not split over ", tp.size, " ranks");
  weight = register_parameter("weight", torch::empty({out_features, in_features / tp.size}));
  declare_shard("weight", split_spec(1, {out_features, in_features}, in_features));
}

at::Tensor RowParallelLinearImpl::forward(const at::Tensor& x, StreamLayout layout) { return leave(at::linear(x, weight), layout); }

at::Tensor RowParallelLinearImpl::leave(const at::Tensor& partial, StreamLayout layout) const {
  if (tp_.size == 1) return partial;
  return layout == StreamLayout::Replicated ? tp::reduce_from_region(partial, tp_) : tp::reduce_scatter_to_sequence(partial, tp_);
}

VocabParallelEmbeddingImpl::VocabParallelEmbeddingImpl(int64_t vocab, int64_t dim, const TpContext& tp) : tp_(tp) {
  const int64_t padded = round_up(vocab, tp.size);
  weight = register_parameter("weight", torch::empty({padded / tp.size, dim}));
  declare_shard("weight", split_spec(0, {vocab, dim}, padded));
}

at::Tensor VocabParallelEmbeddingImpl::forward(const at::Tensor& tokens, StreamLayout layout) {
  if (tp_.size == 1) return at::embedding(weight, tokens);
  // Rows [rank*local, (rank+1)*local) live here; other tokens contribute zeros to the sum.
  const int64_t local = weight.size(0), start = tp_.rank * local;
  at::Tensor outside = (tokens < start) | (tokens >= start + local);
  at::Tensor partial = at::embedding(weight, (tokens - start).masked_fill(outside, 0)).masked_fill(outside.unsqueeze(-1), 0.0);
  return layout == StreamLayout::Replicated ? tp::reduce_from_region(partial, tp_) : tp::reduce_scatter_to_sequence(partial, tp_);
}

RmsNormImpl::RmsNormImpl(int64_t dim, double eps, const TpContext& tp) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
  ShardSpec s;
  s.global_shape = {dim};
  s.decay = false;
  s.tp_partial_grad = tp.size > 1 && tp.sequence_parallel;
  s.initial = [dim](at::Generator) { return torch::ones({dim}); };
  declare_shard("weight", s);
}

at::Tensor RmsNormImpl::forward(const at::Tensor& x) { return rms_norm(x, weight, eps_); }

at::Tensor vocab_parallel_cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp) {
  return tp::cross_entropy(local_logits, targets, tp);
}

}  // namespace yt
