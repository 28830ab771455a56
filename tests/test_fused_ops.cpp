// The fused-kernel API in every build: without CUDA kernels each function throws a clear error and
// available() is false; with them, tensors the kernels cannot take (here: CPU tensors) are refused by name.
// The numerical checks are GPU-only (test_gpu_kernels.cpp).
#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

#include "catch.hpp"
#include "yocotron/fused_ops.h"

namespace kn = yt::kernels;

TEST_CASE("Fused kernels: a build without CUDA kernels refuses calls to them; CPU tensors are refused too", "[model]") {
  auto x = at::randn({4, 8}), w = at::ones({8}), rstd = at::ones({4});
  auto q = at::randn({1, 3, 2, 8}), cos = at::ones({4, 8}), sin = at::zeros({4, 8});
  auto targets = at::zeros({4}, at::kLong), a = at::zeros({4}), b = at::zeros({4}), c = at::zeros({4});
  auto kv = at::randn({1, 3, 2, 8}).transpose(1, 2), mix = at::ones({2});
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"add_rms_norm_fwd", [&] { kn::add_rms_norm_fwd(x, x, w, 1e-5); }},
      {"rms_norm_bwd", [&] { kn::rms_norm_bwd(x, x, rstd, w, at::Tensor()); }},
      {"rope_fwd", [&] { kn::rope_fwd(q, cos, sin, 0, false); }},
      {"swiglu_fwd", [&] { kn::swiglu_fwd(x, x); }},
      {"swiglu_bwd", [&] { kn::swiglu_bwd(x, x, x); }},
      {"ce_row_stats", [&] { kn::ce_row_stats(x, targets, 0, a, b, c); }},
      {"ce_grad_", [&] { kn::ce_grad_(x, targets, a, 0, 1.0); }},
      {"add_rms_norm", [&] { kn::add_rms_norm(x, at::Tensor(), w, 1e-5); }},
      {"rope", [&] { kn::rope(q, cos, sin, 0); }},
      {"swiglu", [&] { kn::swiglu(x, x); }},
      {"scalar_mix_fwd", [&] { kn::scalar_mix_fwd(kv, kv, mix, 35.0); }},
      {"scalar_mix_bwd", [&] { kn::scalar_mix_bwd(kv, kv, kv, mix, 35.0); }},
      {"scalar_mix", [&] { kn::scalar_mix(kv, kv, mix, 35.0); }},
  };
#ifdef YOCOTRON_WITH_CUDA
  CHECK(kn::available());
  const std::string expected = "must be a CUDA tensor";
#else
  CHECK_FALSE(kn::available());
  const std::string expected = "built without CUDA kernels";
#endif
  for (const auto& [name, call] : calls) {
    INFO(name);
    CHECK_THROWS_WITH(call(), ContainsSubstring(expected));
  }
}
