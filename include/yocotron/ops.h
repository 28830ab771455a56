// Numerical building blocks of the decoder: RMSNorm (with the residual add), RoPE (half-split
// "rotate_half" layout, as in Hugging Face Llama), SwiGLU and causal grouped-query attention.
// Each op has a plain-LibTorch path (what the CPU build and LibTorch 1.13 run, and the reference
// the tests hold the fast paths to) and, on CUDA tensors, a fast path: yocotron's own kernels
// (`fused` = true and the build has them) or LibTorch's attention backends.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <utility>

namespace yt {

enum class AttentionKernel { Auto, Sdpa, Cudnn, Flash, Math };
AttentionKernel parse_attention_kernel(const std::string& name);  // auto | sdpa | cudnn | flash | math
bool sdpa_available();  // compiled against LibTorch >= 2
// What `kernel` resolves to for these inputs (Auto: cuDNN for bf16/fp16 on Hopper, else SDPA's own
// choice where available, else math).
AttentionKernel resolve_attention_kernel(AttentionKernel kernel, const at::Tensor& q);
const char* attention_kernel_name(AttentionKernel kernel);

// x * rsqrt(mean(x^2) + eps) * weight, computed in fp32 and returned in x's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps);
// (sum, normed): sum = residual + delta (delta undefined: sum is residual), normed = rms_norm(sum).
std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                                               double eps, bool fused);

// cos/sin tables [max_seq_len, head_dim] in fp32: angle(p, i) = p * theta^(-2i/head_dim), each
// frequency repeated for both halves of the head. linspace: theta^(-i/(head_dim/2 - 1)) instead, the
// original YOCO code's frequencies (model.yoco.rope_freqs).
std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, int64_t max_seq_len, double theta, bool linspace = false);
// x: [B, T, H, D] (a projection's output viewed as heads); rotates position p = position_offset + t.
// Returns [B, T, H, D] contiguous.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool fused,
                      int64_t position_offset = 0);

// silu(gate) * up.
at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, bool fused);

// Causal attention. q: [B, H, T, D]; k, v: [B, H_kv, T, D] with H a multiple of H_kv (grouped-query:
// query head h reads KV head h / (H / H_kv)). Any strides with a unit last dimension. Returns
// [B, H, T, D] (the SDPA backends return it laid out as [B, T, H, D], so the heads merge for free).
at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionKernel kernel);

// Causal attention within a sliding window: query t sees keys t-window+1 .. t (shapes as
// causal_attention). On CUDA in bf16/fp16 it runs flash attention with window_size_left, which
// skips the key blocks outside the window (O(T·window) work); elsewhere the math path with a band
// mask (O(T²), the reference). Needs LibTorch >= 2.5 for the kernel.
at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                            AttentionKernel kernel);
bool window_kernel_available();  // this build can call flash attention with a window

// Attention of q [B, H, Tq, D] over k, v [B, H_kv, Tk, D] (grouped-query as above) under an explicit
// mask: bool, broadcastable to [B, 1, Tq, Tk], true where a query may attend (every row must allow
// at least one key); undefined: every query sees every key (decoding one token). Used at inference,
// where queries continue a cache. With a mask, SDPA picks its backend (flash and cuDNN take none).
at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            AttentionKernel kernel);

}  // namespace yt
