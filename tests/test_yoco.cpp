// The original YOCO family (yoco_swa, yoco_gret, yocou) beyond the per-architecture reference in
// test_model.cpp: gated retention's three forms against each other, the window's reach, YOCO-U's
// loops (T = 1 is yoco_swa; the gradient over loops is in test_model.cpp, against the unrolled
// reference) and the KV accounting at the TinyLlama shape, computed here by hand.
#include <cmath>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/config.h"
#include "yocotron/decoder.h"
#include "yocotron/flops.h"
#include "yocotron/ops.h"
#include "yocotron/retention.h"
#include "yocotron/str.h"

using namespace yt;

namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

// The quadratic parallel form, written from its definition: o_t = Σ_{s<=t} exp(G_t - G_s)(q_t·k_s) v_s.
at::Tensor retention_parallel(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& lg) {
  const int64_t T = q.size(2);
  auto G = lg.cumsum(-1);
  auto o = at::zeros_like(v);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s <= t; ++s) {
      auto w = (G.select(2, t) - G.select(2, s)).exp() * (q.select(2, t) * k.select(2, s)).sum(-1);  // [B, H]
      o.select(2, t).add_(w.unsqueeze(-1) * v.select(2, s));
    }
  return o;
}

ModelConfig yoco_config(const std::string& arch, int64_t layers = 4) {
  ModelConfig m = test::small_model(arch, layers);
  m.init_std = 0.08;
  m.rope_theta = 500.0;
  return m;
}

at::Tensor tokens_for(const ModelConfig& m, int64_t batch, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, m.vocab_size, {batch, T}, gen, at::kLong);
}

}  // namespace

TEST_CASE("gated retention: chunkwise, recurrent and the quadratic parallel form agree", "[yoco]") {
  auto gen = at::detail::createCPUGenerator(3);
  auto opt = at::TensorOptions().dtype(at::kDouble);
  const int64_t B = 2, H = 3, T = 11, D = 8;
  auto q = at::normal(0, 1, {B, H, T, D}, gen, opt), k = at::normal(0, 1, {B, H, T, D}, gen, opt);
  auto v = at::normal(0, 1, {B, H, T, D}, gen, opt);
  // Strong and weak decays: logsigmoid(x)/16 of x ~ N(0, 3), and some heads near γ = 0.5.
  auto lg = at::log_sigmoid(at::normal(0, 3, {B, H, T}, gen, opt)) / 16.0;
  lg.select(1, 2).fill_(std::log(0.5));
  auto want = retention_parallel(q, k, v, lg);
  CHECK(want.abs().max().item<double>() > 0.5);
  auto [rec, rec_state] = retention_recurrent(q, k, v, lg);
  CHECK(max_diff(rec, want) <= 1e-5);
  for (int64_t chunk : {1, 3, 4, 11, 256}) {
    INFO("chunk " << chunk);
    auto [o, s] = retention_chunkwise(q, k, v, lg, chunk);
    CHECK(max_diff(o, want) <= 1e-5);
    CHECK(max_diff(s, rec_state) <= 1e-5);
  }
  // Carrying the state: the second part continued from the first part's state.
  auto [first, state] = retention_chunkwise(q.narrow(2, 0, 5), k.narrow(2, 0, 5), v.narrow(2, 0, 5), lg.narrow(2, 0, 5), 2);
  auto [second, end] = retention_chunkwise(q.narrow(2, 5, 6), k.narrow(2, 5, 6), v.narrow(2, 5, 6), lg.narrow(2, 5, 6), 4, state);
  CHECK(max_diff(at::cat({first, second}, 2), want) <= 1e-5);
  auto [one, after] = retention_recurrent(q.narrow(2, 5, 1), k.narrow(2, 5, 1), v.narrow(2, 5, 1), lg.narrow(2, 5, 1), state);
  CHECK(max_diff(one, want.narrow(2, 5, 1)) <= 1e-5);
}

TEST_CASE("sliding window: a key W or more positions back has no influence", "[yoco]") {
  auto gen = at::detail::createCPUGenerator(5);
  const int64_t B = 1, H = 4, Hkv = 2, T = 12, D = 8, W = 4;
  auto q = at::normal(0, 1, {B, H, T, D}, gen), k = at::normal(0, 1, {B, Hkv, T, D}, gen);
  auto v = at::normal(0, 1, {B, Hkv, T, D}, gen);
  auto before = window_attention(q, k, v, W, AttentionKernel::Math);
  const int64_t s = 3;
  auto k2 = k.clone(), v2 = v.clone();
  k2.select(2, s).add_(1.0);
  v2.select(2, s).add_(1.0);
  auto after = window_attention(q, k2, v2, W, AttentionKernel::Math);
  for (int64_t t = 0; t < T; ++t) {
    INFO("query " << t);
    double diff = max_diff(before.select(2, t), after.select(2, t));
    if (t < s || t >= s + W) CHECK(diff == 0.0);
    else CHECK(diff > 1e-4);
  }
  // The whole model: with the cross-decoder's attention silenced, position t sees tokens back to
  // t - n·loops·(W-1) through the self-decoder and nothing further.
  for (const char* arch : {"yoco_swa", "yocou"}) {
    INFO(arch);
    ModelConfig m = yoco_config(arch);
    Decoder d(m);
    d->init_weights(4);
    {
      torch::NoGradGuard g;
      for (int i = 2; i < 4; ++i) d->named_parameters()[cat("layers.", i, ".self_attn.o_proj.weight")].zero_();
    }
    const int64_t reach = 2 * (std::string(arch) == "yocou" ? m.yoco.loops : 1) * (m.yoco.window - 1);
    auto tokens = tokens_for(m, 1, 16, 2);
    auto changed = tokens.clone();
    changed[0][0] = (tokens[0][0].item<int64_t>() + 1) % m.vocab_size;
    torch::NoGradGuard g;
    auto a = d->forward(tokens), b = d->forward(changed);
    CHECK(max_diff(a.select(1, reach), b.select(1, reach)) > 0.0);
    CHECK(max_diff(a.narrow(1, reach + 1, 16 - reach - 1), b.narrow(1, reach + 1, 16 - reach - 1)) == 0.0);
  }
}

TEST_CASE("original YOCO family is causal: a token changes no earlier position's logits", "[yoco]") {
  for (const char* arch : {"yoco_swa", "yoco_gret", "yocou"}) {
    for (int64_t layers : {4, 6}) {
      INFO(arch << ", " << layers << " layers");
      ModelConfig m = yoco_config(arch, layers);
      m.yoco.chunk = 4;  // several retention chunks, a partial last one
      Decoder d(m);
      d->init_weights(6);
      const int64_t T = 15, p = 7;
      auto tokens = tokens_for(m, 2, T, 8);
      auto changed = tokens.clone();
      changed[1][p] = (tokens[1][p].item<int64_t>() + 5) % m.vocab_size;
      torch::NoGradGuard g;
      auto a = d->forward(tokens), b = d->forward(changed);  // [B, T, V]
      CHECK(max_diff(a[0], b[0]) == 0.0);                          // the other sequence
      CHECK(max_diff(a[1].narrow(0, 0, p), b[1].narrow(0, 0, p)) == 0.0);  // positions before p
      CHECK(max_diff(a[1][p], b[1][p]) > 1e-4);
      CHECK(max_diff(a[1][T - 1], b[1][T - 1]) > 1e-6);            // reached through the cross-decoder's K^, V^
    }
  }
}

TEST_CASE("yocou with one loop is yoco_swa; more loops change it", "[yoco]") {
  for (int64_t layers : {4, 6}) {
    ModelConfig swa = yoco_config("yoco_swa", layers), u = yoco_config("yocou", layers);
    u.yoco.loops = 1;
    Decoder a(swa), b(u);
    a->init_weights(9);
    b->init_weights(9);  // weights drawn per name: the same tensors
    auto tokens = tokens_for(swa, 3, 10, 1);
    CHECK(max_diff(a->forward(tokens), b->forward(tokens)) == 0.0);
    u.yoco.loops = 3;
    Decoder c(u);
    c->init_weights(9);
    CHECK(max_diff(a->forward(tokens), c->forward(tokens)) > 1e-3);
  }
}

TEST_CASE("original YOCO at the TinyLlama shape: 1,024 B per token and the constants by hand", "[yoco]") {
  std::string dir = test::source_dir() + "/recipes/tinyllama-1.1b/";
  for (const char* arch : {"yoco_swa", "yoco_gret", "yocou"}) {
    INFO(arch);
    Config c = load_config(dir + arch + ".yaml");
    KvPlan plan = make_kv_plan(c.model);
    // One global K^, V^: 2 x 4 KV heads x 64 x 2 bytes.
    CHECK(plan.kv_cache_bytes_per_token(c.model.head_dim(), 2) == 1024);
    const int64_t constant = plan.kv_cache_constant_bytes(c.model.head_dim(), c.model.n_heads, 2);
    const std::string a = arch;
    if (a == "yoco_swa") CHECK(constant == 11LL * 1 * 1024 * 2 * 4 * 64 * 2);        // 11 layers x W = 1024
    if (a == "yocou") CHECK(constant == 11LL * 3 * 512 * 2 * 4 * 64 * 2);            // x 3 loops, W = 512
    if (a == "yoco_gret") CHECK(constant == 11LL * 32 * 64 * 64 * 4);                // fp32 64x64 state per head
    // Parameters: the Transformer minus the cross-decoder's 11 K/V projections, plus W_K^, W_V^
    // and their norm; gRet adds W_g (2048x2048) and W_γ (2048x32) per self-decoder layer and its
    // K/V projections are full-width (32 heads, not 4).
    Config t = load_config(dir + "transformer.yaml");
    const int64_t base = count_parameters(t.model, make_kv_plan(t.model)).total;
    const int64_t kv = 2048LL * 256 * 2, global = kv + 2048;
    const int64_t params = count_parameters(c.model, plan).total;
    if (a != "yoco_gret") CHECK(params == base - 11 * kv + global);
    else CHECK(params == base - 11 * kv + global + 11 * (2048LL * 2048 * 2 - kv) + 11 * (2048LL * 2048 + 2048 * 32));
  }
  // FLOPs: yocou's looped block counts three times; at T = 2048 its FLOPs per token are about 2x
  // yoco_swa's at W = 512 (the YOCO-U paper's figure).
  Config swa = load_config(dir + "yoco_swa.yaml"), u = load_config(dir + "yocou.yaml");
  swa.model.yoco.window = 512;
  const double ratio = flops_per_token(u.model, 2048) / flops_per_token(swa.model, 2048);
  CHECK(ratio > 1.6);
  CHECK(ratio < 2.2);
}
