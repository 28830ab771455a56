#include "yocotron/ops.h"

#include <torch/version.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace yt {

AttentionKernel parse_attention_kernel(const std::string& name) {
  if (name == "auto") return AttentionKernel::Auto;
  if (name == "sdpa") return AttentionKernel::Sdpa;
  if (name == "cudnn") return AttentionKernel::Cudnn;
  if (name == "flash") return AttentionKernel::Flash;
  if (name == "math") return AttentionKernel::Math;
  throw std::invalid_argument("model.attention: unknown kernel '" + name + "'");
}

bool sdpa_available() { return TORCH_VERSION_MAJOR >= 2; }

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
#if TORCH_VERSION_MAJOR >= 2
  // Fused where LibTorch has it; it normalises reduced-precision inputs in fp32, like the path below.
  if (x.is_cuda()) return at::rms_norm(x, {x.size(-1)}, weight, eps);
#endif
  // Normalise in fp32, scale in the input dtype (as HF Llama's LlamaRMSNorm).
  auto xf = x.to(at::kFloat);
  auto normed = xf * at::rsqrt(xf.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, int64_t max_seq_len, double theta) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto inv_freq = at::pow(theta, -at::arange(0, head_dim, 2, opts) / static_cast<double>(head_dim));
  auto freqs = at::outer(at::arange(max_seq_len, opts), inv_freq);  // [T, D/2]
  auto emb = at::cat({freqs, freqs}, -1);                          // [T, D]
  return {emb.cos().to(at::kFloat), emb.sin().to(at::kFloat)};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  int64_t T = x.size(2), half = x.size(3) / 2;
  auto c = cos.slice(0, 0, T).to(x.scalar_type());
  auto s = sin.slice(0, 0, T).to(x.scalar_type());
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto rotated = at::cat({-x2, x1}, -1);
  return x * c + rotated * s;
}

namespace {

at::Tensor math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  int64_t B = k.size(0), Hkv = k.size(1), T = k.size(2), D = k.size(3);
  int64_t group = q.size(1) / Hkv;
  auto expand = [&](const at::Tensor& t) {
    if (group == 1) return t;
    return t.unsqueeze(2).expand({B, Hkv, group, T, D}).reshape({B, Hkv * group, T, D});
  };
  auto scores = at::matmul(q, expand(k).transpose(-2, -1)).to(at::kFloat) / std::sqrt(static_cast<double>(D));
  auto mask = at::ones({T, T}, q.options().dtype(at::kBool)).triu(1);
  scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  auto probs = at::softmax(scores, -1).to(q.scalar_type());
  return at::matmul(probs, expand(v));
}

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionKernel kernel) {
  bool use_sdpa = kernel == AttentionKernel::Sdpa || (kernel == AttentionKernel::Auto && sdpa_available());
#if TORCH_VERSION_MAJOR >= 2
  if (use_sdpa) {
    // enable_gqa: the kernel reads each KV head for its query group without materialising copies.
    return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                            /*scale=*/std::nullopt, /*enable_gqa=*/k.size(1) != q.size(1));
  }
#else
  if (kernel == AttentionKernel::Sdpa)
    throw std::runtime_error("model.attention=sdpa needs LibTorch >= 2 (this build has " TORCH_VERSION ")");
  (void)use_sdpa;
#endif
  return math_attention(q, k, v);
}

}  // namespace yt
