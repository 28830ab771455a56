// The two halves of a block's matmul plumbing as autograd functions that decide what they keep for
// backward, so selective recomputation can drop the memory-hungry pointwise results and keep every
// matmul output:
//   norm_project: (residual + delta) -> RMSNorm -> several projections (Q/K/V, or gate/up); the
//     normalised activations are kept, or recomputed from the sum in backward.
//   swiglu_down: silu(gate) * up -> down projection; the product is kept, or recomputed.
// Both run yocotron's CUDA kernels for the pointwise parts when `fused` (CUDA tensors, kernels built)
// and plain LibTorch ops otherwise. Backward is the same code whether an activation was kept or
// recomputed, so recomputation changes no result, bit for bit.
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "yocotron/parallel_layers.h"

namespace yt {

struct BlockOpOptions {
  bool fused = false;      // CUDA kernels for the pointwise parts
  bool recompute = false;  // drop the pointwise result and recompute it in backward
  // Whether this call's stream is split along T over the TP group (sequence parallelism).
  StreamLayout layout = StreamLayout::Replicated;
};

// residual, delta: [B, T, d] (delta undefined: the sum is residual); weights: [out_j, d] each, the
// column-parallel projections entered through `in` (under TP the normed activations are gathered
// along T with sequence parallelism, and their gradient is summed over the group before the norm's
// backward). Returns {sum, y_1, ..., y_m} with y_j = RMSNorm(sum) W_j^T : [B, T, out_j] (T: the
// whole sequence); when delta is undefined, sum is not returned ({y_1, ..., y_m}). Under sequence
// parallelism only this rank's tokens' normed activations are kept, and they are gathered again in
// backward.
std::vector<at::Tensor> norm_project(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& norm_weight,
                                     double eps, const std::vector<at::Tensor>& weights, const ColumnInput& in,
                                     const BlockOpOptions& opt);

// gate, up: [B, T, f]; down_weight: [d, f]. Returns (silu(gate) * up) down_weight^T : [B, T, d].
at::Tensor swiglu_down(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& down_weight, const BlockOpOptions& opt);

}  // namespace yt
