// Megatron-style tensor parallelism as autograd functions over the TP group's communicator.
#include "yocotron/tp_ops.h"

#include <torch/torch.h>

#include "yocotron/comm.h"

namespace yt::tp {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Communicator* comm_of(AutogradContext* ctx) { return reinterpret_cast<Communicator*>(ctx->saved_data["comm"].toInt()); }
void keep_comm(AutogradContext* ctx, Communicator* c) { ctx->saved_data["comm"] = reinterpret_cast<int64_t>(c); }

at::Tensor summed(const at::Tensor& t, Communicator* c) {
  at::Tensor out = t.contiguous().clone();
  c->all_reduce(out);
  return out;
}

struct CopyToRegion : torch::autograd::Function<CopyToRegion> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, Communicator* c) {
    keep_comm(ctx, c);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) { return {summed(g[0], comm_of(ctx)), at::Tensor()}; }
};

struct ReduceFromRegion : torch::autograd::Function<ReduceFromRegion> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, Communicator* c) { return summed(x, c); }
  static variable_list backward(AutogradContext*, variable_list g) { return {g[0], at::Tensor()}; }
};

struct GatherFromSequence : torch::autograd::Function<GatherFromSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const TpContext* tp) {
    ctx->saved_data["tp"] = reinterpret_cast<int64_t>(tp);
    return all_gather_sequence(x, *tp);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {reduce_scatter_sequence(g[0], *reinterpret_cast<const TpContext*>(ctx->saved_data["tp"].toInt())), at::Tensor()};
  }
};

struct ReduceScatterToSequence : torch::autograd::Function<ReduceScatterToSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const TpContext* tp) {
    ctx->saved_data["tp"] = reinterpret_cast<int64_t>(tp);
    return reduce_scatter_sequence(x, *tp);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {all_gather_sequence(g[0], *reinterpret_cast<const TpContext*>(ctx->saved_data["tp"].toInt())), at::Tensor()};
  }
};

// Cross entropy over logits split along the vocabulary: max, sum of exponentials and the target's
// logit are combined over the group, so no rank ever holds the whole row.
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& targets, Communicator* c,
                            int64_t vocab_start) {
    at::Tensor l = logits.to(at::kFloat);
    at::Tensor row_max = std::get<0>(l.max(-1)).contiguous();
    c->all_reduce(row_max, ReduceOp::Max);
    l = l - row_max.unsqueeze(-1);
    at::Tensor e = l.exp();
    at::Tensor sum_exp = e.sum(-1).contiguous();
    c->all_reduce(sum_exp);
    const int64_t local_vocab = l.size(-1);
    at::Tensor local_t = targets - vocab_start;
    at::Tensor mine = (local_t >= 0) & (local_t < local_vocab);
    local_t = local_t.masked_fill(~mine, 0);
    at::Tensor picked = l.gather(-1, local_t.unsqueeze(-1)).squeeze(-1).masked_fill(~mine, 0.0).contiguous();
    c->all_reduce(picked);
    at::Tensor loss = (sum_exp.log() - picked).mean();
    ctx->save_for_backward({e / sum_exp.unsqueeze(-1), local_t, mine});
    ctx->saved_data["dtype"] = static_cast<int64_t>(logits.scalar_type());
    return loss;
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto saved = ctx->get_saved_variables();
    at::Tensor grad = saved[0].clone();
    grad.scatter_add_(-1, saved[1].unsqueeze(-1), -saved[2].to(at::kFloat).unsqueeze(-1));
    grad.mul_(g[0] / static_cast<double>(grad.size(0)));
    auto dtype = static_cast<at::ScalarType>(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor copy_to_region(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  return CopyToRegion::apply(x, tp.comm);
}

at::Tensor reduce_from_region(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  return ReduceFromRegion::apply(x, tp.comm);
}

at::Tensor gather_from_sequence(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  return GatherFromSequence::apply(x, &tp);
}

at::Tensor reduce_scatter_to_sequence(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  return ReduceScatterToSequence::apply(x, &tp);
}

at::Tensor all_gather_sequence(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  // Collectives concatenate along dim 0: gather [T/tp, B, ...] chunks, then put B first again.
  at::Tensor moved = x.transpose(0, 1).contiguous();
  auto sizes = moved.sizes().vec();
  sizes[0] *= tp.size;
  at::Tensor out = at::empty(sizes, moved.options());
  tp.comm->all_gather(moved, out);
  return out.transpose(0, 1).contiguous();
}

at::Tensor reduce_scatter_sequence(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  TORCH_CHECK(x.size(1) % tp.size == 0, "sequence parallelism: ", x.size(1), " tokens do not split over ", tp.size, " ranks");
  at::Tensor moved = x.transpose(0, 1).contiguous();  // [T, B, ...]: rank r's part is rows [r*T/tp, (r+1)*T/tp)
  auto sizes = moved.sizes().vec();
  sizes[0] /= tp.size;
  at::Tensor out = at::empty(sizes, moved.options());
  tp.comm->reduce_scatter(moved, out);
  return out.transpose(0, 1).contiguous();
}

at::Tensor cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp) {
  if (tp.size == 1) return at::cross_entropy_loss(local_logits.to(at::kFloat), targets);
  return VocabParallelCrossEntropy::apply(local_logits, targets, tp.comm, tp.rank * local_logits.size(-1));
}

at::Tensor gather_shards(const at::Tensor& shard, int64_t dim, const TpContext& tp) {
  if (tp.size == 1) return shard;
  at::Tensor moved = shard.movedim(dim, 0).contiguous();
  auto sizes = moved.sizes().vec();
  sizes[0] *= tp.size;
  at::Tensor out = at::empty(sizes, moved.options());
  tp.comm->all_gather(moved, out);
  return out.movedim(0, dim);
}

}  // namespace yt::tp
