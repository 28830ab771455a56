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

namespace yt {

class Communicator;

struct BlockOpOptions {
  bool fused = false;      // CUDA kernels for the pointwise parts
  bool recompute = false;  // drop the pointwise result and recompute it in backward
  // Tensor parallelism: the projections are column-parallel, so the gradient reaching the normed
  // activations is summed over this group before the norm's backward. Null: one rank.
  Communicator* tp = nullptr;
};

// residual, delta: [B, T, d] (delta undefined: the sum is residual); weights: [out_j, d] each.
// Returns {sum, y_1, ..., y_m} with y_j = RMSNorm(sum) W_j^T : [B, T, out_j]; when delta is
// undefined, sum is not returned ({y_1, ..., y_m}).
std::vector<at::Tensor> norm_project(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& norm_weight,
                                     double eps, const std::vector<at::Tensor>& weights, const BlockOpOptions& opt);

// gate, up: [B, T, f]; down_weight: [d, f]. Returns (silu(gate) * up) down_weight^T : [B, T, d].
at::Tensor swiglu_down(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& down_weight, const BlockOpOptions& opt);

}  // namespace yt
