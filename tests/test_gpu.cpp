// GPU-only checks (compiled when LibTorch has CUDA): the SDPA fast path against the plain-ops path,
// in fp32 and bf16, for every architecture.
#include "catch.hpp"
#include "yocotron/decoder.h"
#include "yocotron/kv_plan.h"
#include "yocotron/str.h"

using namespace yt;

TEST_CASE("SDPA and math attention agree on the GPU (fp32 <= 1e-5, bf16 <= 2e-2 relative)", "[gpu]") {
  REQUIRE(torch::cuda::is_available());
  for (const auto& arch : architecture_names()) {
    ModelConfig m;
    m.arch = arch;
    m.n_layers = 4;
    m.d_model = 256;
    m.n_heads = 8;
    m.n_kv_heads = 2;
    m.d_ffn = 512;
    m.vocab_size = 1000;
    m.max_seq_len = 256;
    auto tokens = at::randint(0, m.vocab_size, {4, 200}, at::kLong).cuda();
    auto run = [&](const std::string& kernel, at::ScalarType dtype) {
      ModelConfig k = m;
      k.attention = kernel;
      Decoder d(k);
      d->init_weights(5);
      d->to(at::kCUDA);
      for (auto& p : d->named_parameters())
        if (!ends_with(p.key(), "_mix")) p.value().set_data(p.value().to(dtype));
      torch::NoGradGuard g;
      return d->forward(tokens).to(at::kFloat);
    };
    INFO(arch);
    auto f_sdpa = run("sdpa", at::kFloat), f_math = run("math", at::kFloat);
    CHECK((f_sdpa - f_math).abs().max().item<double>() <= 1e-5);
    auto b_sdpa = run("sdpa", at::kBFloat16), b_math = run("math", at::kBFloat16);
    double rel = ((b_sdpa - b_math).abs().max() / b_math.abs().max()).item<double>();
    CHECK(rel <= 2e-2);
    CHECK(((b_sdpa - f_math).abs().max() / f_math.abs().max()).item<double>() <= 5e-2);
  }
}
