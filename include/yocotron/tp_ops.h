// Megatron-style tensor-parallel regions as autograd functions. With one TP rank each is the
// identity; with several, the communication happens on the TP group of the context.
#pragma once
#include <ATen/ATen.h>

namespace yt {

struct TpContext;

namespace tp {

// Before a column-parallel layer: identity forward, gradient summed over the group backward.
at::Tensor copy_to_region(const at::Tensor& x, const TpContext& tp);
// After a row-parallel layer: sum over the group forward, identity backward.
at::Tensor reduce_from_region(const at::Tensor& x, const TpContext& tp);
// Vocabulary-parallel embedding lookup: this rank holds rows [rank*local, (rank+1)*local).
at::Tensor embedding(const at::Tensor& tokens, const at::Tensor& local_weight, const TpContext& tp);
// Mean cross entropy over vocabulary-parallel logits [N, local_vocab] (fp32 math), targets [N].
at::Tensor cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp);

// The full tensor from every rank's shard along `dim` (concatenated in rank order).
at::Tensor gather_shards(const at::Tensor& shard, int64_t dim, const TpContext& tp);

}  // namespace tp
}  // namespace yt
