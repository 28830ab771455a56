// The output head and the cross entropy as one operation over chunks of tokens: for each chunk the
// logits are computed, reduced to the loss and, when gradients are wanted, turned into the chunk's
// gradients at once (d hidden = G W, d W += G^T hidden with G = softmax - onehot), so neither a
// full fp32 nor a full bf16 logits tensor ever exists; backward only scales what forward computed.
// Under tensor parallelism each rank holds a slice of the vocabulary (rows of W): the row max, the
// sum of exponentials and the target's logit are combined over the group, so no rank holds a
// whole row of logits. Same loss and gradients as head + cross entropy over the full logits.
#pragma once
#include <ATen/ATen.h>

namespace yt {

class Communicator;

struct LinearCrossEntropyOptions {
  int64_t chunk_tokens = 4096;  // rows of `hidden` per chunk (> 0)
  int64_t vocab_start = 0;      // global id of this rank's first row of W
  int64_t vocab_valid = -1;     // rows of W that are real tokens (the rest is padding); -1: all
  bool fused = false;           // CUDA kernels for the per-chunk softmax statistics and gradient
  Communicator* tp = nullptr;   // vocabulary-parallel group; null: one rank
};

// hidden [N, d] (under TP: the same on every rank of the group), weight [V_local, d], targets [N]
// int64 global ids. Returns the mean over the N rows of -log softmax(logits)[target], an fp32 scalar.
at::Tensor linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const LinearCrossEntropyOptions& opt);

}  // namespace yt
