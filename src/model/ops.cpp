#include "yocotron/ops.h"

#include <torch/version.h>

#include <array>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "yocotron/fused_ops.h"

#if TORCH_VERSION_MAJOR >= 2
#include <ATen/Context.h>
#endif
#ifdef YOCOTRON_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#endif

namespace yt {

AttentionKernel parse_attention_kernel(const std::string& name) {
  if (name == "auto") return AttentionKernel::Auto;
  if (name == "sdpa") return AttentionKernel::Sdpa;
  if (name == "cudnn") return AttentionKernel::Cudnn;
  if (name == "flash") return AttentionKernel::Flash;
  if (name == "math") return AttentionKernel::Math;
  throw std::invalid_argument("model.attention: unknown kernel '" + name + "'");
}

const char* attention_kernel_name(AttentionKernel kernel) {
  switch (kernel) {
    case AttentionKernel::Auto: return "auto";
    case AttentionKernel::Sdpa: return "sdpa";
    case AttentionKernel::Cudnn: return "cudnn";
    case AttentionKernel::Flash: return "flash";
    case AttentionKernel::Math: return "math";
  }
  return "?";
}

bool sdpa_available() { return TORCH_VERSION_MAJOR >= 2; }

namespace {

bool is_hopper(const at::Tensor& t) {
#ifdef YOCOTRON_WITH_CUDA
  if (t.is_cuda()) return at::cuda::getDeviceProperties(t.get_device())->major == 9;
#endif
  (void)t;
  return false;
}

}  // namespace

AttentionKernel resolve_attention_kernel(AttentionKernel kernel, const at::Tensor& q) {
  if (kernel != AttentionKernel::Auto) return kernel;
  if (!sdpa_available()) return AttentionKernel::Math;
  // Measured (docs/benchmarks.md): cuDNN's fused attention is ~1.45x flash's on H100 at our shapes.
  const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  if (half && is_hopper(q)) return AttentionKernel::Cudnn;
  return AttentionKernel::Sdpa;
}

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

std::pair<at::Tensor, at::Tensor> add_rms_norm(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& weight,
                                               double eps, bool fused) {
  if (fused && residual.is_cuda()) return kernels::add_rms_norm(residual, delta, weight, eps);
  at::Tensor sum = delta.defined() ? residual + delta : residual;
  return {sum, rms_norm(sum, weight, eps)};
}

std::pair<at::Tensor, at::Tensor> rope_tables(int64_t head_dim, int64_t max_seq_len, double theta, bool linspace) {
  auto opts = at::TensorOptions().dtype(at::kDouble);
  auto inv_freq = linspace ? at::pow(theta, -at::linspace(0.0, 1.0, head_dim / 2, opts))
                           : at::pow(theta, -at::arange(0, head_dim, 2, opts) / static_cast<double>(head_dim));
  auto freqs = at::outer(at::arange(max_seq_len, opts), inv_freq);  // [T, D/2]
  auto emb = at::cat({freqs, freqs}, -1);                          // [T, D]
  return {emb.cos().to(at::kFloat), emb.sin().to(at::kFloat)};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool fused,
                      int64_t position_offset) {
  if (fused && x.is_cuda()) return kernels::rope(x.contiguous(), cos, sin, position_offset);
  const int64_t T = x.size(1), D = x.size(3), half = D / 2;
  TORCH_CHECK(position_offset + T <= cos.size(0), "RoPE: position ", position_offset + T - 1,
              " is beyond the tables (model.max_seq_len=", cos.size(0), ")");
  // [T, 1, D]: broadcast over batch and heads.
  auto c = cos.slice(0, position_offset, position_offset + T).unsqueeze(1).to(x.scalar_type());
  auto s = sin.slice(0, position_offset, position_offset + T).unsqueeze(1).to(x.scalar_type());
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto rotated = at::cat({-x2, x1}, -1);
  return x * c + rotated * s;
}

at::Tensor swiglu(const at::Tensor& gate, const at::Tensor& up, bool fused) {
  if (fused && gate.is_cuda()) return kernels::swiglu(gate.contiguous(), up.contiguous());
  return at::silu(gate) * up;
}

namespace {

// hidden: bool, broadcastable to the scores [B, H, Tq, Tk], true where a key is masked out.
at::Tensor math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& hidden) {
  int64_t B = k.size(0), Hkv = k.size(1), T = k.size(2), D = k.size(3);
  int64_t group = q.size(1) / Hkv;
  auto expand = [&](const at::Tensor& t) {
    if (group == 1) return t;
    return t.unsqueeze(2).expand({B, Hkv, group, T, D}).reshape({B, Hkv * group, T, D});
  };
  auto scores = at::matmul(q, expand(k).transpose(-2, -1)).to(at::kFloat) / std::sqrt(static_cast<double>(D));
  if (hidden.defined()) scores = scores.masked_fill(hidden, -std::numeric_limits<float>::infinity());
  auto probs = at::softmax(scores, -1).to(q.scalar_type());
  return at::matmul(probs, expand(v));
}

at::Tensor math_causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  const int64_t T = k.size(2);
  return math_attention(q, k, v, at::ones({T, T}, q.options().dtype(at::kBool)).triu(1));
}

#if TORCH_VERSION_MAJOR >= 2
// Restricts SDPA to one backend for the duration of a call (the flags are read when the forward
// dispatches; backward runs whatever kernel the forward chose).
class OnlySdpaBackend {
 public:
  explicit OnlySdpaBackend(AttentionKernel k) {
    auto& c = at::globalContext();
    saved_ = {c.userEnabledFlashSDP(), c.userEnabledMemEfficientSDP(), c.userEnabledMathSDP(), c.userEnabledCuDNNSDP()};
    c.setSDPUseFlash(k == AttentionKernel::Flash);
    c.setSDPUseMemEfficient(false);
    c.setSDPUseMath(false);
    c.setSDPUseCuDNN(k == AttentionKernel::Cudnn);
  }
  ~OnlySdpaBackend() {
    auto& c = at::globalContext();
    c.setSDPUseFlash(saved_[0]);
    c.setSDPUseMemEfficient(saved_[1]);
    c.setSDPUseMath(saved_[2]);
    c.setSDPUseCuDNN(saved_[3]);
  }
  OnlySdpaBackend(const OnlySdpaBackend&) = delete;
  OnlySdpaBackend& operator=(const OnlySdpaBackend&) = delete;

 private:
  std::array<bool, 4> saved_{};
};

at::Tensor sdpa(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  // enable_gqa: the kernel reads each KV head for its query group without materialising copies.
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, /*dropout_p=*/0.0, /*is_causal=*/true,
                                          /*scale=*/std::nullopt, /*enable_gqa=*/k.size(1) != q.size(1));
}
#endif

}  // namespace

at::Tensor causal_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, AttentionKernel kernel) {
  kernel = resolve_attention_kernel(kernel, q);
  if (kernel == AttentionKernel::Math) return math_causal_attention(q, k, v);
#if TORCH_VERSION_MAJOR >= 2
  if (kernel == AttentionKernel::Sdpa) return sdpa(q, k, v);
  if (!q.is_cuda())
    throw std::runtime_error(std::string("model.attention=") + attention_kernel_name(kernel) + " needs a CUDA device");
  try {
    OnlySdpaBackend only(kernel);
    return sdpa(q, k, v);
  } catch (const c10::Error& e) {
    throw std::runtime_error(std::string("model.attention=") + attention_kernel_name(kernel) + " cannot run here (" +
                             std::string(c10::toString(q.scalar_type())) + ", head dim " + std::to_string(q.size(3)) +
                             "): " + e.what_without_backtrace() + " — use model.attention=auto or sdpa");
  }
#else
  throw std::runtime_error(std::string("model.attention=") + attention_kernel_name(kernel) +
                           " needs LibTorch >= 2 (this build has " TORCH_VERSION ")");
#endif
}

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 5)
#define YOCOTRON_WINDOW_KERNEL 1
#endif

bool window_kernel_available() {
#ifdef YOCOTRON_WINDOW_KERNEL
  return true;
#else
  return false;
#endif
}

at::Tensor window_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, int64_t window,
                            AttentionKernel kernel) {
  const int64_t T = k.size(2);
  if (window >= T) return causal_attention(q, k, v, kernel);  // the window covers every key
#ifdef YOCOTRON_WINDOW_KERNEL
  const bool half = q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf;
  if (q.is_cuda() && half && kernel != AttentionKernel::Math) {
    // Flash takes [B, T, H, D] and grouped-query heads as they are; autograd reaches
    // _flash_attention_backward with the same window. Returned as [B, H, T, D] (a view).
    auto out = at::_flash_attention_forward(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), std::nullopt,
                                            std::nullopt, T, T, 0.0, /*is_causal=*/true, /*return_debug_mask=*/false,
                                            /*scale=*/std::nullopt, /*window_size_left=*/window - 1,
                                            /*window_size_right=*/0);
    return std::get<0>(out).transpose(1, 2);
  }
#endif
  auto ones = at::ones({T, T}, q.options().dtype(at::kBool));
  return math_attention(q, k, v, ones.triu(1).logical_or(ones.tril(-window)));
}

at::Tensor masked_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask,
                            AttentionKernel kernel) {
  // Decoding one token over a cache whose length changes every step: cuDNN would build a new
  // graph per length (tens of ms each); flash takes any length as it comes.
  if (kernel == AttentionKernel::Auto && q.size(2) == 1 && !mask.defined())
    kernel = q.is_cuda() ? AttentionKernel::Flash : AttentionKernel::Sdpa;
  else kernel = resolve_attention_kernel(kernel, q);
  const at::Tensor hidden = mask.defined() ? mask.logical_not() : at::Tensor();
  if (kernel == AttentionKernel::Math || !sdpa_available()) return math_attention(q, k, v, hidden);
#if TORCH_VERSION_MAJOR >= 2
  const bool gqa = k.size(1) != q.size(1);
  if (mask.defined() || kernel == AttentionKernel::Sdpa) {
    // An undefined tensor is not "no mask" to SDPA: pass none.
    const std::optional<at::Tensor> attn_mask = mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt;
    return at::scaled_dot_product_attention(q, k, v, attn_mask, 0.0, /*is_causal=*/false, std::nullopt, gqa);
  }
  try {
    OnlySdpaBackend only(kernel);
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/false, std::nullopt, gqa);
  } catch (const c10::Error&) {
    // This backend cannot take these inputs (dtype, head dim): let SDPA choose.
    return at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/false, std::nullopt, gqa);
  }
#else
  return math_attention(q, k, v, hidden);
#endif
}

}  // namespace yt
