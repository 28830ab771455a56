#include "yocotron/linear_cross_entropy.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <limits>

#include "yocotron/comm.h"
#include "yocotron/fused_ops.h"
#include "yocotron/phase.h"

namespace yt {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct RowStats {
  at::Tensor max, sum_exp, target;  // fp32 [n]: row max, Σ exp(l - max), the target's logit (0 off-shard)
};

RowStats local_stats(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start, bool fused) {
  const int64_t n = logits.size(0), V = logits.size(1);
  auto f32 = logits.options().dtype(at::kFloat);
  RowStats s{at::empty({n}, f32), at::empty({n}, f32), at::empty({n}, f32)};
  if (V == 0) {  // a rank that holds only vocabulary padding
    s.max.fill_(-std::numeric_limits<float>::infinity());
    s.sum_exp.zero_();
    s.target.zero_();
    return s;
  }
  if (fused) {
    kernels::ce_row_stats(logits, targets, vocab_start, s.max, s.sum_exp, s.target);
    return s;
  }
  at::Tensor lf = logits.to(at::kFloat);
  s.max = std::get<0>(lf.max(-1));
  s.sum_exp = (lf - s.max.unsqueeze(-1)).exp().sum(-1);
  at::Tensor local = targets - vocab_start;
  at::Tensor mine = (local >= 0) & (local < V);
  s.target = lf.gather(-1, local.masked_fill(~mine, 0).unsqueeze(-1)).squeeze(-1).masked_fill(~mine, 0.0);
  return s;
}

// Turns the chunk's logits into (softmax - onehot) * scale, in the logits' dtype.
at::Tensor logits_grad(at::Tensor logits, const at::Tensor& targets, const at::Tensor& lse, int64_t vocab_start, double scale,
                       bool fused) {
  if (fused) {
    kernels::ce_grad_(logits, targets, lse, vocab_start, scale);
    return logits;
  }
  const int64_t V = logits.size(1);
  at::Tensor p = (logits.to(at::kFloat) - lse.unsqueeze(-1)).exp();
  at::Tensor local = targets - vocab_start;
  at::Tensor mine = (local >= 0) & (local < V);
  p.scatter_add_(-1, local.masked_fill(~mine, 0).unsqueeze(-1), -mine.to(at::kFloat).unsqueeze(-1));
  return p.mul_(scale).to(logits.scalar_type());
}

// out (fp32) += a @ b, with a and b in the compute dtype.
void add_product_fp32(at::Tensor out, const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() == at::kFloat) {
    out.addmm_(a, b);
    return;
  }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 8)
  if (a.is_cuda()) {  // bf16 inputs, fp32 accumulation in the GEMM itself (no bf16 partial)
    at::addmm_out(out, out, a, b, at::kFloat);
    return;
  }
#endif
  out.add_(at::mm(a, b).to(at::kFloat));
}

struct LinearCrossEntropy : torch::autograd::Function<LinearCrossEntropy> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                            int64_t tp_ptr, int64_t vocab_start, int64_t vocab_valid, int64_t chunk, bool fused,
                            bool need_grad) {
    PhaseScope range("yocotron::linear_cross_entropy");
    auto* tp = reinterpret_cast<Communicator*>(tp_ptr);
    const int64_t N = hidden.size(0);
    at::Tensor w = weight.narrow(0, 0, vocab_valid);  // [V_valid, d]
    at::Tensor loss_sum = at::zeros({}, hidden.options().dtype(at::kFloat));
    at::Tensor grad_hidden, grad_w32;
    if (need_grad) {
      grad_hidden = at::empty_like(hidden);
      grad_w32 = at::zeros(weight.sizes(), weight.options().dtype(at::kFloat));  // padding rows stay 0
    }
    for (int64_t start = 0; start < N; start += chunk) {
      const int64_t n = std::min(chunk, N - start);
      at::Tensor h = hidden.narrow(0, start, n), t = targets.narrow(0, start, n);
      at::Tensor logits = at::mm(h, w.t());  // [n, V_valid], compute dtype
      RowStats s = local_stats(logits, t, vocab_start, fused);
      if (tp) {  // combine the vocabulary shards: global max, then rescaled sums
        at::Tensor global_max = s.max.clone();
        tp->all_reduce(global_max, ReduceOp::Max);
        at::Tensor packed = at::stack({s.sum_exp * (s.max - global_max).exp(), s.target});
        tp->all_reduce(packed);
        s = {global_max, packed[0], packed[1]};
      }
      at::Tensor lse = s.max + s.sum_exp.log();
      loss_sum += (lse - s.target).sum();
      if (!need_grad) continue;
      if (vocab_valid == 0) {
        grad_hidden.narrow(0, start, n).zero_();
        continue;
      }
      at::Tensor g = logits_grad(logits, t, lse, vocab_start, 1.0 / static_cast<double>(N), fused);  // [n, V_valid]
      at::Tensor grad_rows = grad_hidden.narrow(0, start, n);
      at::mm_out(grad_rows, g, w);                                                                   // [n, d]
      add_product_fp32(grad_w32.narrow(0, 0, vocab_valid), g.t(), h);                               // [V_valid, d]
    }
    if (need_grad) ctx->save_for_backward({grad_hidden, grad_w32.to(weight.scalar_type())});
    return loss_sum / static_cast<double>(N);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto saved = ctx->get_saved_variables();
    at::Tensor g = grads[0];
    return {saved[0] * g.to(saved[0].scalar_type()), saved[1] * g.to(saved[1].scalar_type()), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor linear_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                const LinearCrossEntropyOptions& opt) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
              "linear_cross_entropy: hidden [N, d] and weight [V, d] expected");
  TORCH_CHECK(opt.chunk_tokens > 0, "linear_cross_entropy: chunk_tokens must be > 0");
  const int64_t valid = opt.vocab_valid < 0 ? weight.size(0) : std::min(opt.vocab_valid, weight.size(0));
  const bool need_grad = at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  return LinearCrossEntropy::apply(hidden.contiguous(), weight, targets.contiguous(), reinterpret_cast<int64_t>(opt.tp),
                                   opt.vocab_start, std::max<int64_t>(valid, 0), opt.chunk_tokens,
                                   opt.fused && hidden.is_cuda(), need_grad);
}

}  // namespace yt
