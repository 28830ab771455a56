// Megatron-style tensor-parallel regions as autograd functions, the communication under the parallel
// layers (parallel_layers.h). With one TP rank each is the identity; with several, the
// communication happens on the TP group of the context. Activations outside the regions are
// [B, T, d], replicated over the group or, with sequence parallelism, split along T (dim 1).
#pragma once
#include <ATen/ATen.h>

namespace yt {

class Communicator;

struct TpContext {
  int rank = 0;
  int size = 1;
  Communicator* comm = nullptr;    // null when size == 1
  bool sequence_parallel = false;  // parallel.sequence_parallel: training activations split along T
};

// How one forward call's activations between the TP regions are laid out. Training with sequence
// parallelism shards them; inference and TP = 1 keep them replicated.
enum class StreamLayout { Replicated, SequenceSharded };

namespace tp {

// Before a column-parallel layer: identity forward, gradient summed over the group backward.
at::Tensor copy_to_region(const at::Tensor& x, const TpContext& tp);
// After a row-parallel layer: sum over the group forward, identity backward.
at::Tensor reduce_from_region(const at::Tensor& x, const TpContext& tp);
// Sequence parallelism: [B, T/tp, ...] -> [B, T, ...] all-gathered forward, reduce-scattered backward.
at::Tensor gather_from_sequence(const at::Tensor& x, const TpContext& tp);
// Sequence parallelism: [B, T, ...] partial sums -> this rank's [B, T/tp, ...] of the sum forward,
// all-gathered backward.
at::Tensor reduce_scatter_to_sequence(const at::Tensor& x, const TpContext& tp);

// The same collectives on plain tensors (no autograd), for autograd functions that run their own
// backward: [B, T/tp, ...] -> [B, T, ...] and [B, T, ...] -> [B, T/tp, ...] summed over the group.
at::Tensor all_gather_sequence(const at::Tensor& x, const TpContext& tp);
at::Tensor reduce_scatter_sequence(const at::Tensor& x, const TpContext& tp);

// Mean cross entropy over vocabulary-parallel logits [N, local_vocab] (fp32 math), targets [N].
at::Tensor cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp);

// The full tensor from every rank's shard along `dim` (concatenated in rank order; no autograd).
at::Tensor gather_shards(const at::Tensor& shard, int64_t dim, const TpContext& tp);

}  // namespace tp
}  // namespace yt
