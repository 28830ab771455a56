// Turns a layer's own K or V projection and earlier layers' final K/V into the tensor the layer
// attends with, as its KvSource says (reuse, scalar mix, vector fusion, head splice).
#pragma once
#include <ATen/ATen.h>

#include <vector>

#include "yocotron/kv_plan.h"

namespace yt {

// own: [B, h, T, D] or undefined when the layer projects nothing; finals[j]: layer j's final tensor
// [B, H_kv_local, T, D]; weights: [2] (ScalarMix) or [2, D/2] (VectorMix), fp32. `fused`: the
// scalar mix runs yocotron's CUDA kernel on CUDA tensors (fp32 weights applied unrounded).
at::Tensor combine_kv(const KvSource& src, const at::Tensor& own, const std::vector<at::Tensor>& finals,
                      const at::Tensor& weights, bool fused = false);

// Initial value of a source's weights ([2] or [2, head_dim/2]); random ones come from `gen`.
at::Tensor initial_kv_weights(const KvSource& src, int64_t head_dim, at::Generator gen);

}  // namespace yt
