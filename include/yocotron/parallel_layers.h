// Megatron-style parallel layers that own their sharding. Each registers its weight together with
// the ShardSpec that says how this rank's tensor relates to the global one (split dimension,
// padding, gradient rule, weight decay, dtype rule, initial value) and keeps the TP group it talks
// over; the decoder composes them and calls no collective itself. The optimizer, the gradient
// sync, checkpoints and exports read the specs (collect_shard_specs), never parameter names.
//
// Activations between the layers are [B, T, d], replicated over the TP group or, with sequence
// parallelism (StreamLayout::SequenceSharded), split along T: a column-parallel layer all-gathers
// its input along T, a row-parallel one reduce-scatters its output along T (Megatron-LM's SP).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

#include "yocotron/tp_ops.h"

namespace yt {

struct ShardSpec {
  int split_dim = -1;                 // -1: every TP rank holds the whole tensor
  std::vector<int64_t> global_shape;  // unpadded
  int64_t padded_size = 0;            // split-dim size after padding to a multiple of tp (vocabulary)
  // Replicated, but each rank's gradient covers only its heads or (sequence parallelism) its tokens:
  // summed over the TP group before the optimizer sees it.
  bool tp_partial_grad = false;
  bool decay = true;                  // in AdamW's weight-decay group
  bool keep_fp32 = false;             // stays fp32 when the compute weights are bf16
  // The global tensor at initialisation from a generator seeded per parameter; null: N(0, init_std).
  std::function<at::Tensor(at::Generator)> initial;
};

// This rank's part of a global tensor: padded along the split dimension, then chunked.
at::Tensor local_shard(const at::Tensor& global, const ShardSpec& spec, int rank, int size);
// The global (unpadded) tensor from every rank's shard (a collective over the TP group).
at::Tensor gather_global(const at::Tensor& shard, const ShardSpec& spec, const TpContext& tp);

// A module that declares the specs of the parameters it registers itself.
class DeclaresShards {
 public:
  virtual ~DeclaresShards() = default;
  const std::map<std::string, ShardSpec>& declared_shards() const { return declared_; }

 protected:
  void declare_shard(const std::string& parameter, ShardSpec spec) { declared_[parameter] = std::move(spec); }

 private:
  std::map<std::string, ShardSpec> declared_;
};

// Every parameter of `root` by its full name with the spec its module declared; a parameter no
// module declared is an error naming it.
std::map<std::string, ShardSpec> collect_shard_specs(const torch::nn::Module& root);

// How activations enter column-parallel layers, for fused ops that multiply several of them at once:
// gather() gives the input every rank multiplies (all-gathered along T when sequence-sharded),
// reduce_grad() turns the gradient with respect to that input into this rank's input gradient
// (reduce-scattered along T, or summed over the group). Plain tensors, no autograd.
struct ColumnInput {
  TpContext tp;
  StreamLayout layout = StreamLayout::Replicated;
  at::Tensor gather(const at::Tensor& local) const;
  at::Tensor reduce_grad(const at::Tensor& grad) const;
};

// y = x W^T with W's output features split over the TP group: W [out_local, in].
class ColumnParallelLinearImpl : public torch::nn::Module, public DeclaresShards {
 public:
  // out_features: global; `pad` rounds it up to a multiple of the TP size (the vocabulary).
  ColumnParallelLinearImpl(int64_t in_features, int64_t out_features, const TpContext& tp, bool pad = false);
  // x: [B, T or T/tp, in] -> [B, T, out_local]. Under sequence parallelism only the local part of x
  // is kept for backward, and it is gathered again there.
  at::Tensor forward(const at::Tensor& x, StreamLayout layout);
  // x entering the region as an autograd op (for ops that take the weight themselves, the chunked loss).
  at::Tensor enter(const at::Tensor& x, StreamLayout layout) const;
  ColumnInput input(StreamLayout layout) const { return {tp_, layout}; }
  // Inference: this rank's outputs [..., out_local] -> every rank's [..., out_padded] (no autograd).
  at::Tensor gather_outputs(const at::Tensor& y) const;
  int64_t local_out() const { return weight.size(0); }
  at::Tensor weight;

 private:
  TpContext tp_;
};
TORCH_MODULE(ColumnParallelLinear);

// y = x W^T with W's input features split over the TP group: W [out, in_local]; the partial products
// are summed over the group (reduce-scattered along T when sequence-sharded).
class RowParallelLinearImpl : public torch::nn::Module, public DeclaresShards {
 public:
  RowParallelLinearImpl(int64_t in_features, int64_t out_features, const TpContext& tp);
  // x: [B, T, in_local] -> [B, T or T/tp, out].
  at::Tensor forward(const at::Tensor& x, StreamLayout layout);
  // The sum over the group of partial outputs computed elsewhere (the fused SwiGLU + down projection).
  at::Tensor leave(const at::Tensor& partial, StreamLayout layout) const;
  at::Tensor weight;

 private:
  TpContext tp_;
};
TORCH_MODULE(RowParallelLinear);

// Token embeddings with the vocabulary split over the TP group (padded to a multiple of it).
class VocabParallelEmbeddingImpl : public torch::nn::Module, public DeclaresShards {
 public:
  VocabParallelEmbeddingImpl(int64_t vocab, int64_t dim, const TpContext& tp);
  // tokens [B, T] -> [B, T or T/tp, dim].
  at::Tensor forward(const at::Tensor& tokens, StreamLayout layout);
  at::Tensor weight;  // [local_vocab, dim]

 private:
  TpContext tp_;
};
TORCH_MODULE(VocabParallelEmbedding);

// RMSNorm over the stream: its weight is replicated; under sequence parallelism each rank's gradient
// covers its tokens only, so the spec asks for a sum over the TP group.
class RmsNormImpl : public torch::nn::Module, public DeclaresShards {
 public:
  RmsNormImpl(int64_t dim, double eps, const TpContext& tp = {});
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RmsNorm);

// Mean cross entropy over vocabulary-parallel logits [N, local_vocab] (fp32 math), targets [N].
at::Tensor vocab_parallel_cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp);

}  // namespace yt
