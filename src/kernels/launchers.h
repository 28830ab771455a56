// Host entry points of the fused CUDA kernels (src/kernels/*.cu). Plain C++ types only, so that the
// ATen wrappers (fused_ops.cpp) and nvcc never share headers: nvcc does not see torch, and this header
// does not need CUDA's. Pointers are device pointers to contiguous data; every launcher enqueues on
// `stream`, returns without synchronising, and throws std::runtime_error naming the kernel when a
// launch fails. Sizes of zero launch nothing, except where a backward must still write a zero reduction.
#pragma once
#include <cstdint>

struct CUstream_st;  // cudaStream_t is CUstream_st*

namespace yt::kernels::cu {

using Stream = CUstream_st*;

// Storage type of a tensor; the arithmetic is always fp32.
enum class DType { F32, BF16 };

// residual, delta, sum, normed: [rows, d] in `dtype`; weight: [d] in `wdtype`; rstd: fp32 [rows].
// sum = residual + delta rounded to `dtype`; normed = (sum * rstd) * weight; rstd = 1/sqrt(mean(sum^2) + eps).
// delta == nullptr: the residual is the sum and `sum` is not written (may be nullptr).
void add_rms_norm_fwd(const void* residual, const void* delta, const void* weight, void* sum, void* normed,
                      float* rstd, int64_t rows, int64_t d, DType dtype, DType wdtype, float eps, Stream stream);

// Rows of the fp32 workspace [blocks, d] that rms_norm_bwd needs for its per-block grad_weight partials
// (one per resident block on the current device; >= 1).
int64_t rms_norm_bwd_blocks(int64_t rows, int64_t d, DType dtype, DType wdtype);

// grad_normed, sum, grad_extra, grad_sum: [rows, d] in `dtype`; rstd fp32 [rows]; weight, grad_weight: [d]
// in `wdtype`; workspace: fp32 [blocks, d] with blocks from rms_norm_bwd_blocks. grad_extra may be nullptr.
// grad_sum = rstd * (g - x_hat * mean(g * x_hat)) + grad_extra with x_hat = sum * rstd, g = grad_normed * weight;
// grad_weight = sum over rows of grad_normed * x_hat, in a fixed order (deterministic).
void rms_norm_bwd(const void* grad_normed, const void* sum, const float* rstd, const void* weight,
                  const void* grad_extra, void* grad_sum, void* grad_weight, float* workspace, int64_t blocks,
                  int64_t rows, int64_t d, DType dtype, DType wdtype, Stream stream);

// x, out: [B, T, H, D] in `dtype`; cos, sin: fp32 [max_pos, D] (only the first D/2 columns are read).
// Half-split rotation at position t + position_offset; inverse rotates by the negative angle (the backward).
// The caller checks T + position_offset <= max_pos.
void rope_fwd(const void* x, const float* cos, const float* sin, void* out, int64_t B, int64_t T, int64_t H,
              int64_t D, int64_t position_offset, bool inverse, DType dtype, Stream stream);

// gate, up, out, grad, grad_gate, grad_up: n elements in `dtype`.
void swiglu_fwd(const void* gate, const void* up, void* out, int64_t n, DType dtype, Stream stream);
void swiglu_bwd(const void* grad, const void* gate, const void* up, void* grad_gate, void* grad_up, int64_t n,
                DType dtype, Stream stream);

// a, b, out: n elements in `dtype`; w: fp32 [2]. out = scale * (w[0] * a + w[1] * b), rounded once to `dtype`.
// The pointers may be any dense layout walked as flat memory, as long as all of them share it.
void scalar_mix_fwd(const void* a, const void* b, const float* w, void* out, int64_t n, float scale, DType dtype,
                    Stream stream);

// Rows of the fp32 workspace [blocks, 2] that scalar_mix_bwd needs for its per-block grad_w partials
// (resident blocks on the current device, fewer for small n; >= 1).
int64_t scalar_mix_bwd_blocks(int64_t n, DType dtype);

// grad, a, b, grad_a, grad_b: n elements in `dtype`, one shared layout; w, grad_w: fp32 [2]; workspace: fp32
// [blocks, 2] with blocks from scalar_mix_bwd_blocks. grad_a = scale * w[0] * grad, grad_b = scale * w[1] * grad;
// grad_w = scale * (sum grad * a, sum grad * b), in fp32 and a fixed order (deterministic). n == 0 gives
// grad_w = 0.
void scalar_mix_bwd(const void* grad, const void* a, const void* b, const float* w, void* grad_a, void* grad_b,
                    float* grad_w, float* workspace, int64_t blocks, int64_t n, float scale, DType dtype,
                    Stream stream);

// logits: [n, V] in `dtype` covering global columns [vocab_start, vocab_start + V); targets: int64 [n], global
// ids; row_max, sum_exp, target_logit: fp32 [n]. A target outside the shard gives target_logit 0.
void ce_row_stats(const void* logits, const int64_t* targets, float* row_max, float* sum_exp, float* target_logit,
                  int64_t n, int64_t V, int64_t vocab_start, DType dtype, Stream stream);

// In place: logits[i, j] = (exp(logits[i, j] - lse[i]) - [vocab_start + j == targets[i]]) * scale.
void ce_grad(void* logits, const int64_t* targets, const float* lse, int64_t n, int64_t V, int64_t vocab_start,
             float scale, DType dtype, Stream stream);

}  // namespace yt::kernels::cu
