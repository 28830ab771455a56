// Numerical building blocks of the decoder: RMSNorm, RoPE (half-split "rotate_half" layout, as in
// Hugging Face Llama) and causal grouped-query attention. Each has a fast path where LibTorch >= 2
// provides one (at::rms_norm, at::scaled_dot_product_attention) and a plain-ops path that LibTorch
// 1.13 runs; tests check that both agree.
#pragma once
#include <ATen/ATen.h>

namespace yt {

enum class AttentionKernel { Auto, Sdpa, Cudnn, Flash, Math };
AttentionKernel parse_attention_kernel(const std::string& name);  // auto | sdpa | cudnn | flash | math
bool sdpa_available();  // compiled against LibTorch >= 2

// x * rsqrt(mean(x^2) + eps) * weight, computed in fp32 and returned in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);

// cos/sin tables [max_seq_len, head_dim] in fp32: angle(p, i) = p * theta^(-2i/head_dim), each
// frequency repeated for both halves of the head.
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, int64_t max_seq_len, double theta);
// x: [B, H, T, D]; rotates the first T positions.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin);

// Causal attention. q: [B, H, T, D]; k, v: [B, H_kv, T, D] with H a multiple of H_kv (grouped-query:
// query head h reads KV head h / (H / H_kv)). Returns [B, H, T, D].
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionKernel kernel);

}  // namespace yt
