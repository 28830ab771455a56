// Fused CUDA kernels for the decoder's memory-bound steps: residual add + RMSNorm, RoPE, SwiGLU, the row
// helpers of a chunked, vocabulary-parallel cross-entropy and YOCO++'s scalar K/V mixing. Raw functions
// (no autograd) take and return CUDA tensors and run on the current stream; the autograd-aware versions at
// the end call them in forward and backward. All arithmetic is fp32; inputs are fp32 or bf16 and outputs
// come back in the input dtype. This header needs no CUDA: a build without CUDA kernels has
// available() == false, and every function then throws std::runtime_error("... built without CUDA kernels").
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <tuple>
#include <utility>

namespace yt::kernels {

bool available();  // compiled with the CUDA kernels

// ---- raw kernels ----

// residual, delta: [..., d] contiguous, same dtype (fp32 or bf16); weight: [d] in that dtype or fp32.
// Returns (sum, normed, rstd): sum = residual + delta in the input dtype (exactly ATen's residual + delta;
// with delta undefined, sum is residual itself, not a copy); normed = (sum * rstd) * weight rounded once
// to the input dtype; rstd = 1 / sqrt(mean(sum^2) + eps) in fp32, shape [rows] (rows = numel / d).
std::tuple<at::Tensor, at::Tensor, at::Tensor> add_rms_norm_fwd(const at::Tensor& residual, const at::Tensor& delta,
                                                                const at::Tensor& weight, double eps);

// Backward of normed = sum * rstd * weight. grad_normed, sum: [..., d]; rstd: fp32 [rows] from the forward;
// grad_sum_extra: gradient arriving at sum from elsewhere (same shape; may be undefined).
// Returns (grad_sum, grad_weight): grad_sum = rstd * (g - x_hat * mean(g * x_hat)) + grad_sum_extra with
// x_hat = sum * rstd, g = grad_normed * weight; grad_weight = sum over rows of grad_normed * x_hat,
// accumulated in fp32 in a fixed order (bitwise reproducible on a given GPU), in weight's dtype.
std::pair<at::Tensor, at::Tensor> rms_norm_bwd(const at::Tensor& grad_normed, const at::Tensor& sum,
                                               const at::Tensor& rstd, const at::Tensor& weight,
                                               const at::Tensor& grad_sum_extra);

// x: [B, T, H, D] contiguous, D even; cos, sin: fp32 [max_pos, D] as yt::rope_tables makes them (each
// frequency in both halves). Half-split rotation at positions position_offset .. position_offset + T - 1:
// for i < D/2, out_i = x_i c - x_{i+D/2} s and out_{i+D/2} = x_{i+D/2} c + x_i s with c, s the table entries
// at (t + position_offset, i). inverse uses -s: the backward. Returns [B, T, H, D] in x's dtype.
at::Tensor rope_fwd(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset,
                    bool inverse);

// silu(gate) * up; gate, up: same shape, contiguous, same dtype.
at::Tensor swiglu_fwd(const at::Tensor& gate, const at::Tensor& up);
// Returns (grad_gate, grad_up) = (grad * up * s * (1 + gate * (1 - s)), grad * gate * s), s = sigmoid(gate).
std::pair<at::Tensor, at::Tensor> swiglu_bwd(const at::Tensor& grad, const at::Tensor& gate, const at::Tensor& up);

// Cross-entropy chunk helpers. logits: [n, V] contiguous, fp32 or bf16, holding global vocabulary columns
// [vocab_start, vocab_start + V); targets: int64 [n], global token ids.
// Fills caller-allocated fp32 [n] tensors: row_max = max_j logits[i, j]; sum_exp = sum_j exp(logits[i, j] -
// row_max); target_logit = logits[i, target - vocab_start] when the target is in this shard, else 0.
// V == 0 gives row_max = -inf, sum_exp = 0.
void ce_row_stats(const at::Tensor& logits, const at::Tensor& targets, int64_t vocab_start, at::Tensor& row_max,
                  at::Tensor& sum_exp, at::Tensor& target_logit);
// In place: logits[i, j] = (exp(logits[i, j] - lse[i]) - [vocab_start + j == targets[i]]) * scale, in the
// logits' dtype. lse: fp32 [n], the log-sum-exp over the whole (all-shard) row.
void ce_grad_(at::Tensor& logits, const at::Tensor& targets, const at::Tensor& lse, int64_t vocab_start,
              double scale);

// YOCO++'s scalar K/V mixing: scale * (w[0] * a + w[1] * b). a, b: same shape, dtype (fp32 or bf16) and
// device, any strides (in the model [B, H_kv, T, D] views of [B, T, H_kv, D] memory); w: fp32, 2 elements,
// used in fp32 (not rounded to a's dtype). One pass in fp32, rounded once to a's dtype. When a and b share
// one dense layout (same strides, non-overlapping and dense) the result has a's strides; otherwise a and b
// are copied to contiguous first and the result is contiguous.
at::Tensor scalar_mix_fwd(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale);
// Its backward for grad (a's shape and dtype, any strides; copied into the inputs' layout when its strides
// differ). Returns (grad_a, grad_b, grad_w): grad_a = scale * w[0] * grad and grad_b = scale * w[1] * grad in
// a's dtype and the forward's output layout; grad_w = scale * (sum grad * a, sum grad * b), fp32 [2],
// accumulated in fp32 in a fixed order (bitwise reproducible on a given GPU).
std::tuple<at::Tensor, at::Tensor, at::Tensor> scalar_mix_bwd(const at::Tensor& grad, const at::Tensor& a,
                                                              const at::Tensor& b, const at::Tensor& w,
                                                              double scale);

// ---- autograd-aware versions (gradients through the raw kernels) ----

// Returns (sum, normed) as add_rms_norm_fwd; gradients reach residual, delta (both get grad_sum) and weight.
// Saves sum, rstd and weight for the backward (not normed). delta may be undefined.
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta,
                                               const at::Tensor& weight, double eps);
// rope_fwd(x, cos, sin, position_offset, false) with its gradient (the inverse rotation) to x.
at::Tensor rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, int64_t position_offset);
// swiglu_fwd with gradients to gate and up; saves gate and up only.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up);
// scalar_mix_fwd with gradients to a, b and w (w's is computed even when w does not require it); saves a, b
// and w.
at::Tensor scalar_mix(const at::Tensor& a, const at::Tensor& b, const at::Tensor& w, double scale);

}  // namespace yt::kernels
