#include "yocotron/kv_mix.h"

#include "yocotron/fused_ops.h"

#include <torch/torch.h>

#include <stdexcept>

namespace yt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// scale * (w[0] * a + w[1] * b) with fp32 master scalars applied in the compute dtype. Written out
// so the scalars' gradients are reductions over contiguous operands: their bits then depend on the
// values alone, not on the strides autograd happens to hand over (recomputation stays bitwise).
struct ScalarMix : torch::autograd::Function<ScalarMix> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale) {
    at::Tensor wd = w.to(a.scalar_type());
    ctx->save_for_backward({a, b, w});
    ctx->saved_data["scale"] = scale;
    at::Tensor mixed = wd[0] * a + wd[1] * b;
    return scale == 1.0 ? mixed : mixed * scale;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor &a = saved[0], &b = saved[1], &w = saved[2];
    const double scale = ctx->saved_data["scale"].toDouble();
    at::Tensor g = grads[0].contiguous();
    if (scale != 1.0) g = g * scale;
    at::Tensor wd = w.to(a.scalar_type());
    at::Tensor gf = g.to(at::kFloat);
    at::Tensor gw = at::stack({(gf * a.contiguous().to(at::kFloat)).sum(), (gf * b.contiguous().to(at::kFloat)).sum()});
    return {g * wd[0], g * wd[1], gw.to(w.scalar_type()), at::Tensor()};
  }
};

}  // namespace

at::Tensor combine_kv(const KvSource& src, const at::Tensor& own, const std::vector<at::Tensor>& finals,
                      const at::Tensor& weights, bool fused) {
  switch (src.kind) {
    case KvCombine::Own: return own;
    case KvCombine::Reuse:
    case KvCombine::Global: return finals.at(src.from);
    case KvCombine::ScalarMix: {
      if (fused && own.is_cuda()) return kernels::scalar_mix(finals.at(src.from), own, weights, src.scale);
      return ScalarMix::apply(finals.at(src.from), own, weights, src.scale);
    }
    case KvCombine::VectorMix: {
      const auto& a = finals.at(src.from);
      // Tied within each RoPE pair: with the half-split layout, element i pairs with i + D/2.
      auto w = at::cat({weights, weights}, -1).to(a.scalar_type());
      return w[0] * a + w[1] * finals.at(src.from2);
    }
    case KvCombine::HeadSplice: {
      // Even heads from the own projection, odd heads from layer `from` (same head index).
      const auto& other = finals.at(src.from);
      auto odd = other.slice(1, 1, other.size(1), 2);
      auto sizes = other.sizes().vec();
      return at::stack({own, odd}, 2).reshape(sizes);
    }
  }
  throw std::logic_error("combine_kv: unknown KvCombine");
}

at::Tensor initial_kv_weights(const KvSource& src, int64_t head_dim, at::Generator gen) {
  auto opts = at::TensorOptions().dtype(at::kFloat);
  if (src.kind == KvCombine::ScalarMix) {
    return at::tensor({src.w0_init, src.w1_init}, opts.dtype(at::kDouble)).to(at::kFloat);
  }
  if (src.kind == KvCombine::VectorMix) {
    if (src.random_init) return at::normal(0.0, 1.0, {2, head_dim / 2}, gen, opts);
    auto w = at::empty({2, head_dim / 2}, opts);
    w[0].fill_(src.w0_init);
    w[1].fill_(src.w1_init);
    return w;
  }
  throw std::logic_error("initial_kv_weights: source has no weights");
}

}  // namespace yt
