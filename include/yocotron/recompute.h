// Activation recomputation of a whole segment (a decoder block): the forward runs without keeping
// any intermediate; backward runs the segment again with gradients on, from the saved inputs, and
// backpropagates through that second copy (parameters receive their gradients from it). The
// segment must be deterministic, must not return any of its inputs, and may use parameters that
// are not among `inputs` (they are leaves of the re-run).
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <vector>

namespace yt {

using Segment = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>& inputs)>;

// Returns segment(inputs), keeping only `inputs` alive for backward. Undefined inputs stay undefined.
std::vector<at::Tensor> recompute_in_backward(const Segment& segment, const std::vector<at::Tensor>& inputs);

}  // namespace yt
