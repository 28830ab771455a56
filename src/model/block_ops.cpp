#include "yocotron/block_ops.h"

#include <torch/torch.h>

#include "yocotron/comm.h"
#include "yocotron/fused_ops.h"
#include "yocotron/phase.h"

namespace yt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// ---- the pointwise parts: kernels or plain ops, forward and backward written out ----------------

struct NormOut {
  at::Tensor sum, normed, rstd;  // rstd: fp32 [rows]
};

NormOut norm_forward(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& w, double eps, bool fused) {
  if (fused) {
    auto [sum, normed, rstd] = kernels::add_rms_norm_fwd(residual, delta, w, eps);
    return {sum, normed, rstd};
  }
  at::Tensor sum = delta.defined() ? residual + delta : residual;
  at::Tensor xf = sum.to(at::kFloat);
  at::Tensor rstd = at::rsqrt(xf.pow(2).mean(-1) + eps);
  // fp32 throughout, rounded once: the CUDA kernel computes the same.
  at::Tensor normed = (xf * rstd.unsqueeze(-1) * w.to(at::kFloat)).to(sum.scalar_type());
  return {sum, normed, rstd};
}

// Bit-identical to norm_forward's `normed` (same kernel or same expression on the same inputs).
at::Tensor recompute_normed(const at::Tensor& sum, const at::Tensor& rstd, const at::Tensor& w, double eps, bool fused) {
  if (fused) return std::get<1>(kernels::add_rms_norm_fwd(sum, at::Tensor(), w, eps));
  return (sum.to(at::kFloat) * rstd.unsqueeze(-1) * w.to(at::kFloat)).to(sum.scalar_type());
}

// (grad of the sum, grad of the norm weight); grad_sum_extra is the gradient that reaches the sum
// directly along the residual path (may be undefined).
std::pair<at::Tensor, at::Tensor> norm_backward(const at::Tensor& grad_normed, const at::Tensor& sum, const at::Tensor& rstd,
                                                const at::Tensor& w, const at::Tensor& grad_sum_extra, bool fused) {
  if (fused) return kernels::rms_norm_bwd(grad_normed, sum, rstd, w, grad_sum_extra);
  const int64_t d = sum.size(-1);
  at::Tensor r = rstd.unsqueeze(-1);
  at::Tensor x_hat = sum.to(at::kFloat) * r;
  at::Tensor gn = grad_normed.to(at::kFloat);
  at::Tensor g = gn * w.to(at::kFloat);
  at::Tensor dx = r * (g - x_hat * (g * x_hat).mean(-1, /*keepdim=*/true));
  if (grad_sum_extra.defined()) dx = dx + grad_sum_extra.to(at::kFloat);
  at::Tensor dw = (gn * x_hat).reshape({-1, d}).sum(0);
  return {dx.to(sum.scalar_type()), dw.to(w.scalar_type())};
}

at::Tensor swiglu_forward(const at::Tensor& gate, const at::Tensor& up, bool fused) {
  if (fused) return kernels::swiglu_fwd(gate, up);
  return at::silu(gate) * up;
}

std::pair<at::Tensor, at::Tensor> swiglu_backward(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up, bool fused) {
  if (fused) return kernels::swiglu_bwd(grad, gate, up);
  // The same ops autograd runs for silu(gate) * up.
  return {at::silu_backward(grad * up, gate), grad * at::silu(gate)};
}

at::Tensor rows(const at::Tensor& t) { return t.reshape({-1, t.size(-1)}); }

// The column input travels through saved_data as its fields.
void save_input(AutogradContext* ctx, const ColumnInput& in) {
  ctx->saved_data["tp_comm"] = reinterpret_cast<int64_t>(in.tp.comm);
  ctx->saved_data["tp_rank"] = static_cast<int64_t>(in.tp.rank);
  ctx->saved_data["tp_size"] = static_cast<int64_t>(in.tp.size);
  ctx->saved_data["sharded"] = in.layout == StreamLayout::SequenceSharded;
}

ColumnInput saved_input(AutogradContext* ctx) {
  ColumnInput in;
  in.tp.comm = reinterpret_cast<Communicator*>(ctx->saved_data["tp_comm"].toInt());
  in.tp.rank = static_cast<int>(ctx->saved_data["tp_rank"].toInt());
  in.tp.size = static_cast<int>(ctx->saved_data["tp_size"].toInt());
  in.layout = ctx->saved_data["sharded"].toBool() ? StreamLayout::SequenceSharded : StreamLayout::Replicated;
  return in;
}

// ---- norm + projections -------------------------------------------------------------------------

struct NormProject : torch::autograd::Function<NormProject> {
  // Saved: [sum, rstd, norm_weight, W_1..W_m] and, unless recomputing, normed (this rank's tokens) last.
  static variable_list forward(AutogradContext* ctx, const at::Tensor& residual, const c10::optional<at::Tensor>& delta,
                               const at::Tensor& norm_weight, at::TensorList weights, double eps, bool fused,
                               bool recompute, const ColumnInput& in) {
    PhaseScope range("yocotron::norm_project");
    const bool has_delta = delta.has_value() && delta->defined();
    NormOut n = norm_forward(residual, has_delta ? *delta : at::Tensor(), norm_weight, eps, fused);
    variable_list out;
    if (has_delta) out.push_back(n.sum);
    const at::Tensor total = in.gather(n.normed);  // [B, T, d]: every token the projections see
    for (const auto& w : weights) out.push_back(at::matmul(total, w.t()));
    variable_list saved{n.sum, n.rstd, norm_weight};
    for (const auto& w : weights) saved.push_back(w);
    if (!recompute) saved.push_back(n.normed);
    ctx->save_for_backward(saved);
    ctx->saved_data["has_delta"] = has_delta;
    ctx->saved_data["fused"] = fused;
    ctx->saved_data["recompute"] = recompute;
    save_input(ctx, in);
    ctx->saved_data["m"] = static_cast<int64_t>(weights.size());
    ctx->saved_data["eps"] = eps;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    PhaseScope range("yocotron::norm_project_backward");
    auto saved = ctx->get_saved_variables();
    const bool has_delta = ctx->saved_data["has_delta"].toBool(), fused = ctx->saved_data["fused"].toBool();
    const int64_t m = ctx->saved_data["m"].toInt();
    const at::Tensor &sum = saved[0], &rstd = saved[1], &norm_weight = saved[2];
    at::Tensor normed = ctx->saved_data["recompute"].toBool() ? recompute_normed(sum, rstd, norm_weight, ctx->saved_data["eps"].toDouble(), fused) : saved[3 + m];
    at::Tensor grad_sum_extra = has_delta ? grads[0] : at::Tensor();
    const size_t first_y = has_delta ? 1 : 0;
    const ColumnInput in = saved_input(ctx);
    const at::Tensor total = in.gather(normed);
    at::Tensor n2 = rows(total), grad_normed;
    variable_list weight_grads;
    for (int64_t j = 0; j < m; ++j) {
      const at::Tensor& w = saved[3 + j];
      const at::Tensor& gy = grads[first_y + j];
      if (!gy.defined()) {
        weight_grads.emplace_back();
        continue;
      }
      at::Tensor g2 = rows(gy.contiguous());
      weight_grads.push_back(g2.t().mm(n2));                     // [out_j, d]
      if (grad_normed.defined()) grad_normed.addmm_(g2, w);       // [N, d]
      else grad_normed = g2.mm(w);
    }
    if (!grad_normed.defined()) grad_normed = at::zeros_like(n2);
    // Column-parallel inputs: summed over the heads (and scattered back to this rank's tokens).
    grad_normed = in.reduce_grad(grad_normed.view(total.sizes()));
    auto [grad_sum, grad_norm_weight] =
        norm_backward(grad_normed.view(sum.sizes()), sum, rstd, norm_weight,
                      grad_sum_extra.defined() ? grad_sum_extra.contiguous() : grad_sum_extra, fused);
    variable_list out{grad_sum};
    out.push_back(has_delta ? grad_sum : at::Tensor());
    out.push_back(grad_norm_weight);
    for (auto& g : weight_grads) out.push_back(g);
    out.resize(out.size() + 4);  // eps, fused, recompute, in
    return out;
  }
};

// ---- SwiGLU + down projection ------------------------------------------------------------------

struct SwigluDown : torch::autograd::Function<SwigluDown> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up, const at::Tensor& down_weight,
                            bool fused, bool recompute) {
    PhaseScope range("yocotron::swiglu_down");
    at::Tensor product = swiglu_forward(gate, up, fused);
    variable_list saved{gate, up, down_weight};
    if (!recompute) saved.push_back(product);
    ctx->save_for_backward(saved);
    ctx->saved_data["fused"] = fused;
    return at::matmul(product, down_weight.t());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    PhaseScope range("yocotron::swiglu_down_backward");
    auto saved = ctx->get_saved_variables();
    const bool fused = ctx->saved_data["fused"].toBool();
    const at::Tensor &gate = saved[0], &up = saved[1], &w = saved[2];
    at::Tensor product = saved.size() > 3 ? saved[3] : swiglu_forward(gate, up, fused);
    at::Tensor g2 = rows(grads[0].contiguous());
    at::Tensor grad_w = g2.t().mm(rows(product));                // [d, f]
    at::Tensor grad_product = g2.mm(w).view(product.sizes());    // [B, T, f]
    auto [grad_gate, grad_up] = swiglu_backward(grad_product, gate, up, fused);
    return {grad_gate, grad_up, grad_w, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<at::Tensor> norm_project(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& norm_weight,
                                     double eps, const std::vector<at::Tensor>& weights, const ColumnInput& in,
                                     const BlockOpOptions& opt) {
  c10::optional<at::Tensor> d;
  if (delta.defined()) d = delta;
  const bool fused = opt.fused && residual.is_cuda();
  return NormProject::apply(residual, d, norm_weight, at::TensorList(weights), eps, fused, opt.recompute, in);
}

at::Tensor swiglu_down(const at::Tensor& gate, const at::Tensor& up, const at::Tensor& down_weight, const BlockOpOptions& opt) {
  const bool fused = opt.fused && gate.is_cuda();
  return SwigluDown::apply(gate, up, down_weight, fused, opt.recompute);
}

}  // namespace yt
