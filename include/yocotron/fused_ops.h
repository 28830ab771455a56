// TEMPORARY stub of the kernels API (replaced by the kernels branch): every function throws.
#pragma once
#include <ATen/ATen.h>

#include <tuple>
#include <utility>

namespace yt::kernels {
bool available();
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fwd(const at::Tensor& residual, const at::Tensor& delta,
                                                                const at::Tensor& weight, double eps);
std::pair<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor& grad_normed, const at::Tensor& sum, const at::Tensor& rstd,
                                               const at::Tensor& weight, const at::Tensor& grad_sum_extra);
at::Tensor rope_fwd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset, bool inverse);
at::Tensor swiglu_fwd(const at::Tensor& gate, const at::Tensor& up);
std::pair<at::Tensor, at::Tensor> swiglu_bwd(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up);
void ce_row_stats(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start, at::Tensor& row_max,
                  at::Tensor& sum_exp, at::Tensor& target_logit);
void ce_grad_(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse, int64_t vocab_start, double scale);
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                                               double eps);
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset);
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);
}  // namespace yt::kernels
