#include "yocotron/recompute.h"

#include <torch/torch.h>

namespace yt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct SegmentHolder : torch::CustomClassHolder {
  explicit SegmentHolder(Segment s) : segment(std::move(s)) {}
  Segment segment;
};

struct RecomputeSegment : torch::autograd::Function<RecomputeSegment> {
  static variable_list forward(AutogradContext* ctx, at::TensorList inputs, const c10::IValue& holder) {
    ctx->saved_data["segment"] = holder;
    ctx->saved_data["n"] = static_cast<int64_t>(inputs.size());
    ctx->save_for_backward(inputs.vec());
    auto* seg = static_cast<SegmentHolder*>(holder.toCapsule().get());
    return seg->segment(inputs.vec());  // grad mode is off here: nothing inside is kept
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    std::vector<at::Tensor> inputs;
    for (const auto& t : saved) inputs.push_back(t.defined() ? t.detach().requires_grad_(t.requires_grad()) : t);
    auto* seg = static_cast<SegmentHolder*>(ctx->saved_data["segment"].toCapsule().get());
    variable_list outputs;
    {
      torch::AutoGradMode on(true);
      outputs = seg->segment(inputs);
    }
    variable_list roots, root_grads;
    for (size_t i = 0; i < outputs.size(); ++i)
      if (grads[i].defined() && outputs[i].requires_grad()) roots.push_back(outputs[i]), root_grads.push_back(grads[i]);
    if (!roots.empty()) torch::autograd::backward(roots, root_grads);
    variable_list out;
    for (const auto& t : inputs) out.push_back(t.defined() && t.requires_grad() ? t.grad() : at::Tensor());
    out.emplace_back();  // the holder
    return out;
  }
};

}  // namespace

std::vector<at::Tensor> recompute_in_backward(const Segment& segment, const std::vector<at::Tensor>& inputs) {
  if (!at::GradMode::is_enabled()) return segment(inputs);
  auto holder = c10::IValue::make_capsule(c10::make_intrusive<SegmentHolder>(segment));
  return RecomputeSegment::apply(at::TensorList(inputs), holder);
}

}  // namespace yt
