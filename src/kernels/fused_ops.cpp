// ATen side of the fused CUDA kernels (src/kernels/*.cu): checks tensors, allocates outputs, takes the
// current stream and calls the launchers; then the autograd Functions built on them. Compiled in every
// build: without YOCOTRON_WITH_CUDA there are no kernels to call, kernels::available() is false and
// the decoder takes its plain-op path; a direct call of a raw function then throws (so do the autograd
// versions, through it) instead of computing anything.
#include "yocotron/fused_ops.h"

#include <torch/autograd.h>

#include <stdexcept>
#include <string>

#ifdef YOCOTRON_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "launchers.h"
#endif

namespace yt::kernels {

#ifdef YOCOTRON_WITH_CUDA

namespace {

using cu::DType;

void check_on_cuda(const at::Tensor& t, const char* fn, const char* name) {
  TORCH_CHECK(t.defined(), fn, ": ", name, " is undefined");
  TORCH_CHECK(t.is_cuda(), fn, ": ", name, " must be a CUDA tensor (got one on ", t.device(), ")");
}

void check_cuda_tensor(const at::Tensor& t, const char* fn, const char* name) {
  check_on_cuda(t, fn, name);
  TORCH_CHECK(t.is_contiguous(), fn, ": ", name, " must be contiguous (sizes ", t.sizes(), ", strides ",
              t.strides(), ")");
}

DType storage_dtype(const at::Tensor& t, const char* fn, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, fn, ": ", name,
              " must be float32 or bfloat16 (got ", t.scalar_type(), ")");
  return t.scalar_type() == at::kFloat ? DType::F32 : DType::BF16;
}

// `other` must be a contiguous CUDA tensor matching `ref` in device, dtype and shape.
void check_like(const at::Tensor& ref, const at::Tensor& other, const char* fn, const char* ref_name,
                const char* name) {
  check_cuda_tensor(other, fn, name);
  TORCH_CHECK(other.device() == ref.device(), fn, ": ", name, " is on ", other.device(), " but ", ref_name,
              " is on ", ref.device());
  TORCH_CHECK(other.scalar_type() == ref.scalar_type(), fn, ": ", name, " is ", other.scalar_type(), " but ",
              ref_name, " is ", ref.scalar_type());
  TORCH_CHECK(other.sizes() == ref.sizes(), fn, ": ", name, " has shape ", other.sizes(), " but ", ref_name,
              " has shape ", ref.sizes());
}

// A contiguous CUDA tensor with `numel` elements of `dtype` on ref's device (per-row vectors, tables).
void check_vector(const at::Tensor& ref, const at::Tensor& t, at::ScalarType dtype, int64_t numel, const char* fn,
                  const char* name) {
  check_cuda_tensor(t, fn, name);
  TORCH_CHECK(t.device() == ref.device(), fn, ": ", name, " is on ", t.device(), " but the input is on ",
              ref.device());
  TORCH_CHECK(t.scalar_type() == dtype, fn, ": ", name, " must be ", dtype, " (got ", t.scalar_type(), ")");
  TORCH_CHECK(t.numel() == numel, fn, ": ", name, " must have ", numel, " elements (got shape ", t.sizes(), ")");
}

// The norm weight: [d], in the input's dtype or fp32.
DType check_weight(const at::Tensor& x, const at::Tensor& weight, const char* fn) {
  const int64_t d = x.size(-1);
  check_cuda_tensor(weight, fn, "weight");
  TORCH_CHECK(weight.device() == x.device(), fn, ": weight is on ", weight.device(), " but the input is on ",
              x.device());
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == d, fn, ": weight must have shape [", d, "] (got ",
              weight.sizes(), ")");
  TORCH_CHECK(weight.scalar_type() == x.scalar_type() || weight.scalar_type() == at::kFloat, fn,
              ": weight must be float32 or the input's dtype ", x.scalar_type(), " (got ", weight.scalar_type(), ")");
  return storage_dtype(weight, fn, "weight");
}

// [..., d] with d > 0; returns (rows, d).
std::pair<int64_t, int64_t> rows_of(const at::Tensor& x, const char* fn, const char* name) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) > 0, fn, ": ", name, " must be [..., d] with d > 0 (got shape ",
              x.sizes(), ")");
  return {x.numel() / x.size(-1), x.size(-1)};
}

cu::Stream current_stream(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

const void* ptr_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr() : nullptr; }

}  // namespace

bool available() { return true; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fwd(const at::Tensor& residual, const at::Tensor& delta,
                                                                const at::Tensor& weight, double eps) {
  const char* fn = "add_rms_norm_fwd";
  check_cuda_tensor(residual, fn, "residual");
  const DType dtype = storage_dtype(residual, fn, "residual");
  const auto [rows, d] = rows_of(residual, fn, "residual");
  if (delta.defined()) check_like(residual, delta, fn, "residual", "delta");
  const DType wdtype = check_weight(residual, weight, fn);

  const c10::cuda::CUDAGuard guard(residual.device());
  at::Tensor sum = delta.defined() ? at::empty(residual.sizes(), residual.options()) : residual;
  at::Tensor normed = at::empty(residual.sizes(), residual.options());
  at::Tensor rstd = at::empty({rows}, residual.options().dtype(at::kFloat));
  cu::add_rms_norm_fwd(residual.data_ptr(), ptr_or_null(delta), weight.data_ptr(),
                       delta.defined() ? sum.data_ptr() : nullptr, normed.data_ptr(), rstd.data_ptr<float>(), rows, d,
                       dtype, wdtype, static_cast<float>(eps), current_stream(residual));
  return {sum, normed, rstd};
}

std::pair<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor& grad_normed, const at::Tensor& sum,
                                               const at::Tensor& rstd, const at::Tensor& weight,
                                               const at::Tensor& grad_sum_extra) {
  const char* fn = "rms_norm_bwd";
  check_cuda_tensor(sum, fn, "sum");
  const DType dtype = storage_dtype(sum, fn, "sum");
  const auto [rows, d] = rows_of(sum, fn, "sum");
  check_like(sum, grad_normed, fn, "sum", "grad_normed");
  if (grad_sum_extra.defined()) check_like(sum, grad_sum_extra, fn, "sum", "grad_sum_extra");
  check_vector(sum, rstd, at::kFloat, rows, fn, "rstd");
  const DType wdtype = check_weight(sum, weight, fn);

  const c10::cuda::CUDAGuard guard(sum.device());
  const int64_t blocks = cu::rms_norm_bwd_blocks(rows, d, dtype, wdtype);
  at::Tensor workspace = at::empty({blocks, d}, sum.options().dtype(at::kFloat));
  at::Tensor grad_sum = at::empty(sum.sizes(), sum.options());
  at::Tensor grad_weight = at::empty({d}, weight.options());
  cu::rms_norm_bwd(grad_normed.data_ptr(), sum.data_ptr(), rstd.data_ptr<float>(), weight.data_ptr(),
                   ptr_or_null(grad_sum_extra), grad_sum.data_ptr(), grad_weight.data_ptr(),
                   workspace.data_ptr<float>(), blocks, rows, d, dtype, wdtype, current_stream(sum));
  return {grad_sum, grad_weight};
}

at::Tensor rope_fwd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset,
                    bool inverse) {
  const char* fn = "rope_fwd";
  check_cuda_tensor(x, fn, "x");
  const DType dtype = storage_dtype(x, fn, "x");
  TORCH_CHECK(x.dim() == 4 && x.size(3) > 0 && x.size(3) % 2 == 0, fn,
              ": x must be [B, T, H, D] with D even (got shape ", x.sizes(), ")");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  check_cuda_tensor(cos, fn, "cos");
  TORCH_CHECK(cos.dim() == 2 && cos.size(1) == D, fn, ": cos must be [max_pos, ", D, "] (got shape ", cos.sizes(),
              ")");
  check_vector(x, cos, at::kFloat, cos.numel(), fn, "cos");
  check_vector(x, sin, at::kFloat, cos.numel(), fn, "sin");
  TORCH_CHECK(sin.sizes() == cos.sizes(), fn, ": sin has shape ", sin.sizes(), " but cos has ", cos.sizes());
  TORCH_CHECK(position_offset >= 0 && T + position_offset <= cos.size(0), fn, ": positions ", position_offset,
              " .. ", position_offset + T - 1, " are outside the tables' ", cos.size(0), " positions");

  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(x.sizes(), x.options());
  cu::rope_fwd(x.data_ptr(), cos.data_ptr<float>(), sin.data_ptr<float>(), out.data_ptr(), B, T, H, D,
               position_offset, inverse, dtype, current_stream(x));
  return out;
}

at::Tensor swiglu_fwd(const at::Tensor& gate, const at::Tensor& up) {
  const char* fn = "swiglu_fwd";
  check_cuda_tensor(gate, fn, "gate");
  const DType dtype = storage_dtype(gate, fn, "gate");
  check_like(gate, up, fn, "gate", "up");

  const c10::cuda::CUDAGuard guard(gate.device());
  at::Tensor out = at::empty(gate.sizes(), gate.options());
  cu::swiglu_fwd(gate.data_ptr(), up.data_ptr(), out.data_ptr(), gate.numel(), dtype, current_stream(gate));
  return out;
}

std::pair<at::Tensor, at::Tensor> swiglu_bwd(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up) {
  const char* fn = "swiglu_bwd";
  check_cuda_tensor(gate, fn, "gate");
  const DType dtype = storage_dtype(gate, fn, "gate");
  check_like(gate, up, fn, "gate", "up");
  check_like(gate, grad, fn, "gate", "grad");

  const c10::cuda::CUDAGuard guard(gate.device());
  at::Tensor grad_gate = at::empty(gate.sizes(), gate.options());
  at::Tensor grad_up = at::empty(gate.sizes(), gate.options());
  cu::swiglu_bwd(grad.data_ptr(), gate.data_ptr(), up.data_ptr(), grad_gate.data_ptr(), grad_up.data_ptr(),
                 gate.numel(), dtype, current_stream(gate));
  return {grad_gate, grad_up};
}

namespace {

// logits [n, V] and targets int64 [n]; returns n.
int64_t check_ce_inputs(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start, const char* fn) {
  check_cuda_tensor(logits, fn, "logits");
  storage_dtype(logits, fn, "logits");
  TORCH_CHECK(logits.dim() == 2, fn, ": logits must be [n, V] (got shape ", logits.sizes(), ")");
  TORCH_CHECK(vocab_start >= 0, fn, ": vocab_start must be >= 0 (got ", vocab_start, ")");
  check_vector(logits, targets, at::kLong, logits.size(0), fn, "targets");
  return logits.size(0);
}

}  // namespace

void ce_row_stats(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start, at::Tensor& row_max,
                  at::Tensor& sum_exp, at::Tensor& target_logit) {
  const char* fn = "ce_row_stats";
  const int64_t n = check_ce_inputs(logits, targets, vocab_start, fn);
  check_vector(logits, row_max, at::kFloat, n, fn, "row_max");
  check_vector(logits, sum_exp, at::kFloat, n, fn, "sum_exp");
  check_vector(logits, target_logit, at::kFloat, n, fn, "target_logit");

  const c10::cuda::CUDAGuard guard(logits.device());
  cu::ce_row_stats(logits.data_ptr(), targets.data_ptr<int64_t>(), row_max.data_ptr<float>(),
                   sum_exp.data_ptr<float>(), target_logit.data_ptr<float>(), n, logits.size(1), vocab_start,
                   storage_dtype(logits, fn, "logits"), current_stream(logits));
}

void ce_grad_(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse, int64_t vocab_start,
              double scale) {
  const char* fn = "ce_grad_";
  const int64_t n = check_ce_inputs(logits, targets, vocab_start, fn);
  check_vector(logits, lse, at::kFloat, n, fn, "lse");

  const c10::cuda::CUDAGuard guard(logits.device());
  cu::ce_grad(logits.data_ptr(), targets.data_ptr<int64_t>(), lse.data_ptr<float>(), n, logits.size(1), vocab_start,
              static_cast<float>(scale), storage_dtype(logits, fn, "logits"), current_stream(logits));
}

namespace {

// x, y: same sizes and strides, and that layout non-overlapping and dense: their memory is numel consecutive
// elements from data_ptr() on, in the same logical order for both, so the kernels walk them as flat arrays.
bool same_dense_layout(const at::Tensor& x, const at::Tensor& y) {
  return x.is_non_overlapping_and_dense() && x.sizes() == y.sizes() && x.strides() == y.strides();
}

// A new tensor with like's sizes, strides, dtype and device.
at::Tensor empty_as(const at::Tensor& like) { return at::empty_strided(like.sizes(), like.strides(), like.options()); }

// a, b: CUDA, same device, dtype (fp32 or bf16) and shape, any strides; w: fp32 with 2 elements on their device.
DType check_mix_inputs(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, const char* fn) {
  check_on_cuda(a, fn, "a");
  const DType dtype = storage_dtype(a, fn, "a");
  check_on_cuda(b, fn, "b");
  TORCH_CHECK(b.device() == a.device(), fn, ": b is on ", b.device(), " but a is on ", a.device());
  TORCH_CHECK(b.scalar_type() == a.scalar_type(), fn, ": b is ", b.scalar_type(), " but a is ", a.scalar_type());
  TORCH_CHECK(b.sizes() == a.sizes(), fn, ": b has shape ", b.sizes(), " but a has shape ", a.sizes());
  check_on_cuda(w, fn, "w");
  TORCH_CHECK(w.device() == a.device(), fn, ": w is on ", w.device(), " but a is on ", a.device());
  TORCH_CHECK(w.scalar_type() == at::kFloat, fn, ": w must be float32 (got ", w.scalar_type(), ")");
  TORCH_CHECK(w.numel() == 2, fn, ": w must have 2 elements (got shape ", w.sizes(), ")");
  return dtype;
}

}  // namespace

at::Tensor scalar_mix_fwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale) {
  const char* fn = "scalar_mix_fwd";
  const DType dtype = check_mix_inputs(a, b, w, fn);

  const c10::cuda::CUDAGuard guard(a.device());
  const bool shared = same_dense_layout(a, b);
  const at::Tensor ac = shared ? a : a.contiguous(), bc = shared ? b : b.contiguous(), wc = w.contiguous();
  at::Tensor out = empty_as(ac);
  cu::scalar_mix_fwd(ac.data_ptr(), bc.data_ptr(), wc.data_ptr<float>(), out.data_ptr(), ac.numel(),
                     static_cast<float>(scale), dtype, current_stream(a));
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> scalar_mix_bwd(const at::Tensor& grad, const at::Tensor& a,
                                                              const at::Tensor& b, const at::Tensor& w,
                                                              double scale) {
  const char* fn = "scalar_mix_bwd";
  const DType dtype = check_mix_inputs(a, b, w, fn);
  check_on_cuda(grad, fn, "grad");
  TORCH_CHECK(grad.device() == a.device(), fn, ": grad is on ", grad.device(), " but a is on ", a.device());
  TORCH_CHECK(grad.scalar_type() == a.scalar_type(), fn, ": grad is ", grad.scalar_type(), " but a is ",
              a.scalar_type());
  TORCH_CHECK(grad.sizes() == a.sizes(), fn, ": grad has shape ", grad.sizes(), " but a has shape ", a.sizes());

  const c10::cuda::CUDAGuard guard(a.device());
  const bool shared = same_dense_layout(a, b);
  const at::Tensor ac = shared ? a : a.contiguous(), bc = shared ? b : b.contiguous(), wc = w.contiguous();
  // grad in the inputs' layout (ac is dense, so a grad with its strides is too).
  const at::Tensor g = grad.strides() == ac.strides() ? grad : empty_as(ac).copy_(grad);
  const int64_t n = ac.numel();
  const int64_t blocks = cu::scalar_mix_bwd_blocks(n, dtype);
  at::Tensor workspace = at::empty({blocks, 2}, a.options().dtype(at::kFloat));
  at::Tensor grad_a = empty_as(ac), grad_b = empty_as(ac);
  at::Tensor grad_w = at::empty({2}, a.options().dtype(at::kFloat));
  cu::scalar_mix_bwd(g.data_ptr(), ac.data_ptr(), bc.data_ptr(), wc.data_ptr<float>(), grad_a.data_ptr(),
                     grad_b.data_ptr(), grad_w.data_ptr<float>(), workspace.data_ptr<float>(), blocks, n,
                     static_cast<float>(scale), dtype, current_stream(a));
  return {grad_a, grad_b, grad_w};
}

#else  // no CUDA kernels in this build

namespace {
[[noreturn]] void unavailable(const char* fn) {
  throw std::runtime_error(std::string("yt::kernels::") + fn + ": yocotron was built without CUDA kernels");
}
}  // namespace

bool available() { return false; }

std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fwd(const at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, double) {
  unavailable("add_rms_norm_fwd");
}
std::pair<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const at::Tensor&, const at::Tensor&) {
  unavailable("rms_norm_bwd");
}
at::Tensor rope_fwd(const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, bool) {
  unavailable("rope_fwd");
}
at::Tensor swiglu_fwd(const at::Tensor&, const at::Tensor&) { unavailable("swiglu_fwd"); }
std::pair<at::Tensor, at::Tensor> swiglu_bwd(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  unavailable("swiglu_bwd");
}
void ce_row_stats(const at::Tensor&, const at::Tensor&, int64_t, at::Tensor&, at::Tensor&, at::Tensor&) {
  unavailable("ce_row_stats");
}
void ce_grad_(at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, double) { unavailable("ce_grad_"); }
at::Tensor scalar_mix_fwd(const at::Tensor&, const at::Tensor&, const at::Tensor&, double) {
  unavailable("scalar_mix_fwd");
}
std::tuple<at::Tensor, at::Tensor, at::Tensor> scalar_mix_bwd(const at::Tensor&, const at::Tensor&,
                                                              const at::Tensor&, const at::Tensor&, double) {
  unavailable("scalar_mix_bwd");
}

#endif

// ---- autograd ----

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// delta travels as an optional: LibTorch 2.x records metadata (device, dtype) of every at::Tensor argument
// and fails on an undefined one, while an empty optional is simply not an input.
struct AddRmsNormFunction : public torch::autograd::Function<AddRmsNormFunction> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& residual,
                               const c10::optional<at::Tensor>& delta, const at::Tensor& weight, double eps) {
    auto [sum, normed, rstd] = add_rms_norm_fwd(residual, delta.value_or(at::Tensor()), weight, eps);
    ctx->save_for_backward({sum, rstd, weight});
    ctx->saved_data["has_delta"] = delta.has_value();
    return {sum, normed};
  }

  // Unused outputs arrive as zeros (materialised grads), so both gradients are always defined.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto [grad_sum, grad_weight] =
        rms_norm_bwd(grads[1].contiguous(), saved[0], saved[1], saved[2], grads[0].contiguous());
    const bool has_delta = ctx->saved_data["has_delta"].toBool();
    return {grad_sum, has_delta ? grad_sum : at::Tensor(), grad_weight, at::Tensor()};
  }
};

struct RopeFunction : public torch::autograd::Function<RopeFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                            int64_t position_offset) {
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["position_offset"] = position_offset;
    return rope_fwd(x, cos, sin, position_offset, /*inverse=*/false);
  }

  // The rotation is orthogonal: its transpose is the rotation by the negative angle.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const int64_t position_offset = ctx->saved_data["position_offset"].toInt();
    return {rope_fwd(grads[0].contiguous(), saved[0], saved[1], position_offset, /*inverse=*/true), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

struct SwigluFunction : public torch::autograd::Function<SwigluFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    ctx->save_for_backward({gate, up});
    return swiglu_fwd(gate, up);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto [grad_gate, grad_up] = swiglu_bwd(grads[0].contiguous(), saved[0], saved[1]);
    return {grad_gate, grad_up};
  }
};

// Saves a, b and w; the scale travels in saved_data. w's gradient is returned whether or not w requires it
// (autograd drops it then): it comes out of the same pass as a's and b's.
struct ScalarMixFunction : public torch::autograd::Function<ScalarMixFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b, const at::Tensor& w,
                            double scale) {
    ctx->save_for_backward({a, b, w});
    ctx->saved_data["scale"] = scale;
    return scalar_mix_fwd(a, b, w, scale);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto [grad_a, grad_b, grad_w] =
        scalar_mix_bwd(grads[0], saved[0], saved[1], saved[2], ctx->saved_data["scale"].toDouble());
    return {grad_a, grad_b, grad_w, at::Tensor()};
  }
};

}  // namespace

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta,
                                               const at::Tensor& weight, double eps) {
  const c10::optional<at::Tensor> maybe_delta =
      delta.defined() ? c10::optional<at::Tensor>(delta) : c10::optional<at::Tensor>();
  const variable_list out = AddRmsNormFunction::apply(residual, maybe_delta, weight, eps);
  return {out[0], out[1]};
}

at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset) {
  return RopeFunction::apply(x, cos, sin, position_offset);
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up) { return SwigluFunction::apply(gate, up); }

at::Tensor scalar_mix(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale) {
  return ScalarMixFunction::apply(a, b, w, scale);
}

}  // namespace yt::kernels
