// The decoder family against an independent reference: explicit per-head loops, an explicit causal
// mask, explicit RoPE per (position, pair), and each architecture's K/V sources written out here
// from docs (not from the KV plan), in double precision.
#include <cmath>
#include <functional>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/decoder.h"
#include "yocotron/str.h"

using namespace yt;

namespace {

ModelConfig small_config(const std::string& arch, int64_t layers) {
  ModelConfig m = test::small_model(arch, layers);
  m.init_std = 0.08;  // larger weights: attention far from uniform, so the comparison has teeth
  m.rope_theta = 500.0;
  return m;
}

Decoder make_model(const ModelConfig& m, uint64_t seed = 7) {
  Decoder d(m);
  d->init_weights(seed);
  return d;
}

// Moves norms away from 1 and mixing weights away from their init, so the test sees them.
void perturb(Decoder& d, uint64_t seed) {
  torch::NoGradGuard g;
  auto gen = at::detail::createCPUGenerator(seed);
  auto jiggle = [&](const std::string& name, at::Tensor t) {
    if (ends_with(name, "norm.weight")) t.add_(at::normal(0.0, 0.1, t.sizes(), gen));
    if (ends_with(name, "k_mix") || ends_with(name, "v_mix")) t.add_(at::normal(0.0, 0.3, t.sizes(), gen));
  };
  for (auto& p : d->named_parameters()) jiggle(p.key(), p.value());
  for (auto& b : d->named_buffers()) jiggle(b.key(), b.value());
}

at::Tensor tokens_for(const ModelConfig& m, int64_t batch, int64_t T, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, m.vocab_size, {batch, T}, gen, at::kLong);
}

// ---- the reference ----------------------------------------------------------------------------

struct Ref {
  const Decoder& model;
  const ModelConfig& m;
  std::map<std::string, at::Tensor> w;

  Ref(const Decoder& d) : model(d), m(d->config()) {
    for (const auto& p : d->named_parameters()) w[p.key()] = p.value().detach().to(at::kDouble);
    for (const auto& b : d->named_buffers()) w[b.key()] = b.value().detach().to(at::kDouble);
  }
  // Unrolled loops (yocou): loop_w[l] may give loop l its own copy of a self-decoder weight.
  std::vector<std::map<std::string, at::Tensor>> loop_w;
  mutable int loop = -1;

  at::Tensor W(const std::string& name) const {
    if (loop >= 0 && loop < static_cast<int>(loop_w.size())) {
      auto it = loop_w[loop].find(name);
      if (it != loop_w[loop].end()) return it->second;
    }
    return w.at(name);
  }
  bool has(const std::string& name) const { return w.count(name) > 0; }
  std::string L(int i, const std::string& rest) const { return "layers." + std::to_string(i) + "." + rest; }

  at::Tensor rmsnorm(const at::Tensor& x, const at::Tensor& g) const {  // x [T, d]
    return x / (x.pow(2).mean(-1, true) + m.norm_eps).sqrt() * g;
  }

  at::Tensor rope(const at::Tensor& x) const {  // x [T, dh], pairs (i, i + dh/2)
    int64_t T = x.size(0), dh = x.size(1), half = dh / 2;
    // The angle of each (position, pair), then the rotation as tensor ops (so gradients flow).
    auto c = at::empty({T, half}, at::kDouble), sn = at::empty({T, half}, at::kDouble);
    auto ca = c.accessor<double, 2>(), sa = sn.accessor<double, 2>();
    for (int64_t p = 0; p < T; ++p) {
      for (int64_t i = 0; i < half; ++i) {
        // model.yoco.rope_freqs: linspace = the original YOCO code's theta^(-linspace(0, 1, dh/2)).
        double expo = m.yoco.rope_freqs == "linspace" ? (half > 1 ? static_cast<double>(i) / (half - 1) : 0.0) : 2.0 * i / dh;
        double ang = p * std::pow(m.rope_theta, -expo);
        ca[p][i] = std::cos(ang);
        sa[p][i] = std::sin(ang);
      }
    }
    auto x1 = x.narrow(1, 0, half), x2 = x.narrow(1, half, half);
    return at::cat({x1 * c - x2 * sn, x2 * c + x1 * sn}, 1);
  }

  // Per-head projections of h [T, d] with a weight of heads*dh rows -> vector of [T, dh].
  std::vector<at::Tensor> project(const at::Tensor& h, const at::Tensor& weight, bool with_rope) const {
    int64_t dh = m.head_dim();
    std::vector<at::Tensor> heads;
    auto all = h.matmul(weight.t());
    for (int64_t j = 0; j < weight.size(0) / dh; ++j) {
      auto x = all.narrow(1, j * dh, dh).contiguous();
      heads.push_back(with_rope ? rope(x) : x);
    }
    return heads;
  }

  at::Tensor logits(const at::Tensor& tokens) const {
    std::vector<at::Tensor> per_sequence;
    for (int64_t b = 0; b < tokens.size(0); ++b) per_sequence.push_back(sequence(tokens[b]));
    return at::stack(per_sequence);
  }

  // Softmax attention of one query head over [T, dh] keys/values; query t sees key u when
  // visible(t, u).
  at::Tensor attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                    const std::function<bool(int64_t, int64_t)>& visible) const {
    auto scores = q.matmul(k.t()) / std::sqrt(static_cast<double>(m.head_dim()));
    auto sa = scores.accessor<double, 2>();
    for (int64_t t = 0; t < q.size(0); ++t)
      for (int64_t u = 0; u < k.size(0); ++u)
        if (!visible(t, u)) sa[t][u] = -INFINITY;
    return at::softmax(scores, -1).matmul(v);
  }

  at::Tensor mlp(const at::Tensor& x, int i) const {
    auto h2 = rmsnorm(x, W(L(i, "post_attention_layernorm.weight")));
    auto g = h2.matmul(W(L(i, "mlp.gate_proj.weight")).t());
    auto u = h2.matmul(W(L(i, "mlp.up_proj.weight")).t());
    return (g * at::sigmoid(g) * u).matmul(W(L(i, "mlp.down_proj.weight")).t());
  }

  // Gated retention of layer i on h [T, d], token by token (the recurrent definition):
  // S_t = γ_t S_{t-1} + k_tᵀ v_t, o_t = q_t S_t per head, γ_t = exp(logsigmoid(x_t W_γ)/16),
  // k scaled by dh^-1/2; then a per-head RMSNorm without weight, silu(x W_g) ⊙ o, W_o.
  at::Tensor gated_retention(const at::Tensor& h, int i) const {
    const int64_t T = h.size(0), H = m.n_heads, dh = m.head_dim();
    auto q = project(h, W(L(i, "self_attn.q_proj.weight")), true);
    auto k = project(h, W(L(i, "self_attn.k_proj.weight")), true);
    auto v = project(h, W(L(i, "self_attn.v_proj.weight")), false);
    auto gate = h.matmul(W(L(i, "self_attn.g_proj.weight")).t());
    auto gt = h.matmul(W(L(i, "self_attn.gt_proj.weight")).t());  // [T, H]
    std::vector<at::Tensor> outs;
    for (int64_t j = 0; j < H; ++j) {
      auto S = at::zeros({dh, dh}, h.options());
      auto o = at::zeros({T, dh}, h.options());
      for (int64_t t = 0; t < T; ++t) {
        double x = gt[t][j].item<double>();
        double log_sig = -std::log1p(std::exp(-x));
        S = std::exp(log_sig / 16.0) * S + at::outer(k[j][t] / std::sqrt(static_cast<double>(dh)), v[j][t]);
        o[t] = q[j][t].matmul(S);
      }
      outs.push_back(o / (o.pow(2).mean(-1, true) + m.norm_eps).sqrt());
    }
    auto o = at::cat(outs, 1);
    return (gate * at::sigmoid(gate) * o).matmul(W(L(i, "self_attn.o_proj.weight")).t());
  }

  // Original YOCO (yoco_swa, yoco_gret, yocou) from docs/architectures.md: the self-decoder
  // (sliding window or gated retention; yocou: applied `loops` times with the same weights), one
  // global K^, V^ from its output, the cross-decoder attending causally to it.
  at::Tensor yoco_sequence(const at::Tensor& toks) const {
    const int64_t H = m.n_heads, Hkv = m.n_kv_heads, W_ = m.yoco.window;
    const int Lyr = static_cast<int>(m.n_layers), n = Lyr / 2;
    const int loops = m.arch == "yocou" ? static_cast<int>(m.yoco.loops) : 1;
    const bool cross_rope = m.yoco.cross_rope;
    auto x = W("embed_tokens.weight").index_select(0, toks);
    if (m.yoco.embed_scale) x = x * std::sqrt(static_cast<double>(m.d_model));
    for (loop = 0; loop < loops; ++loop) {
      for (int i = 0; i < n; ++i) {
        auto h = rmsnorm(x, W(L(i, "input_layernorm.weight")));
        if (m.arch == "yoco_gret") {
          x = x + gated_retention(h, i);
        } else {
          auto q = project(h, W(L(i, "self_attn.q_proj.weight")), true);
          auto k = project(h, W(L(i, "self_attn.k_proj.weight")), true);
          auto v = project(h, W(L(i, "self_attn.v_proj.weight")), false);
          std::vector<at::Tensor> outs;
          for (int64_t hh = 0; hh < H; ++hh)
            outs.push_back(attend(q[hh], k[hh / (H / Hkv)], v[hh / (H / Hkv)],
                                  [&](int64_t t, int64_t u) { return u <= t && t - u < W_; }));
          x = x + at::cat(outs, 1).matmul(W(L(i, "self_attn.o_proj.weight")).t());
        }
        x = x + mlp(x, i);
      }
    }
    loop = -1;
    auto hk = rmsnorm(x, W("global_kv.norm.weight"));
    auto K = project(hk, W("global_kv.k_proj.weight"), cross_rope);
    auto V = project(hk, W("global_kv.v_proj.weight"), false);
    REQUIRE(K.size() == static_cast<size_t>(Hkv));
    for (int i = n; i < Lyr; ++i) {
      auto h = rmsnorm(x, W(L(i, "input_layernorm.weight")));
      auto q = project(h, W(L(i, "self_attn.q_proj.weight")), cross_rope);
      std::vector<at::Tensor> outs;
      for (int64_t hh = 0; hh < H; ++hh)
        outs.push_back(attend(q[hh], K[hh / (H / Hkv)], V[hh / (H / Hkv)], [](int64_t t, int64_t u) { return u <= t; }));
      x = x + at::cat(outs, 1).matmul(W(L(i, "self_attn.o_proj.weight")).t());
      x = x + mlp(x, i);
    }
    return rmsnorm(x, W("norm.weight")).matmul(W("lm_head.weight").t());
  }

  at::Tensor sequence(const at::Tensor& toks) const {
    if (m.arch == "yoco_swa" || m.arch == "yoco_gret" || m.arch == "yocou") return yoco_sequence(toks);
    const int64_t T = toks.size(0), H = m.n_heads, Hkv = m.n_kv_heads, dh = m.head_dim();
    const int Lyr = static_cast<int>(m.n_layers), n = Lyr / 2;
    auto x = W("embed_tokens.weight").index_select(0, toks);
    using Heads = std::vector<at::Tensor>;
    std::vector<Heads> K(Lyr), V(Lyr);
    for (int i = 0; i < Lyr; ++i) {
      auto h = rmsnorm(x, W(L(i, "input_layernorm.weight")));
      Heads q = project(h, W(L(i, "self_attn.q_proj.weight")), true);
      Heads ok = has(L(i, "self_attn.k_proj.weight")) ? project(h, W(L(i, "self_attn.k_proj.weight")), true) : Heads{};
      Heads ov = has(L(i, "self_attn.v_proj.weight")) ? project(h, W(L(i, "self_attn.v_proj.weight")), false) : Heads{};
      sources(i, n, ok, ov, K, V);
      REQUIRE(K[i].size() == static_cast<size_t>(Hkv));
      REQUIRE(V[i].size() == static_cast<size_t>(Hkv));
      // Attention, one query head at a time, explicit causal mask.
      std::vector<at::Tensor> outs;
      for (int64_t hh = 0; hh < H; ++hh) {
        int64_t kvh = hh / (H / Hkv);
        auto scores = q[hh].matmul(K[i][kvh].t()) / std::sqrt(static_cast<double>(dh));
        auto sa = scores.accessor<double, 2>();
        for (int64_t t = 0; t < T; ++t)
          for (int64_t u = t + 1; u < T; ++u) sa[t][u] = -INFINITY;
        outs.push_back(at::softmax(scores, -1).matmul(V[i][kvh]));
      }
      x = x + at::cat(outs, 1).matmul(W(L(i, "self_attn.o_proj.weight")).t());
      auto h2 = rmsnorm(x, W(L(i, "post_attention_layernorm.weight")));
      auto g = h2.matmul(W(L(i, "mlp.gate_proj.weight")).t());
      auto u = h2.matmul(W(L(i, "mlp.up_proj.weight")).t());
      x = x + (g * at::sigmoid(g) * u).matmul(W(L(i, "mlp.down_proj.weight")).t());
    }
    return rmsnorm(x, W("norm.weight")).matmul(W("lm_head.weight").t());
  }

  // Where layer i's keys and values come from, per architecture (docs/architectures.md).
  void sources(int i, int n, const std::vector<at::Tensor>& ok, const std::vector<at::Tensor>& ov,
               std::vector<std::vector<at::Tensor>>& K, std::vector<std::vector<at::Tensor>>& V) const {
    const std::string& a = m.arch;
    auto scalar_mix = [&](const std::vector<at::Tensor>& first, const std::vector<at::Tensor>& own,
                          const at::Tensor& wts, double s) {
      std::vector<at::Tensor> out;
      for (size_t h = 0; h < own.size(); ++h)
        out.push_back(s * (wts[0].item<double>() * first[h] + wts[1].item<double>() * own[h]));
      return out;
    };
    auto pair_fuse = [&](const std::vector<at::Tensor>& A, const std::vector<at::Tensor>& B, const at::Tensor& wts) {
      std::vector<at::Tensor> out;
      int64_t half = m.head_dim() / 2;
      for (size_t h = 0; h < A.size(); ++h) {
        auto r = at::zeros_like(A[h]);
        for (int64_t c = 0; c < m.head_dim(); ++c) {
          double wa = wts[0][c % half].item<double>(), wb = wts[1][c % half].item<double>();
          r.select(1, c).copy_(wa * A[h].select(1, c) + wb * B[h].select(1, c));
        }
        out.push_back(r);
      }
      return out;
    };
    if (a == "transformer") {
      K[i] = ok, V[i] = ov;
    } else if (a == "yoco") {
      K[i] = i < n ? ok : K[n - 1];
      V[i] = i < n ? ov : V[n - 1];
    } else if (a == "yocopp") {
      double s = m.yocopp.scaling_factor;
      if (i == 0) K[i] = ok, V[i] = ov;
      else if (i < n) K[i] = scalar_mix(K[0], ok, W(L(i, "self_attn.k_mix")), s),
                      V[i] = scalar_mix(V[0], ov, W(L(i, "self_attn.v_mix")), s);
      else K[i] = K[n - 1], V[i] = V[n - 1];
    } else if (a == "fusedkv") {
      if (i < n) K[i] = ok, V[i] = ov;
      else K[i] = pair_fuse(K[0], K[n - 1], W(L(i, "self_attn.k_mix"))),
           V[i] = pair_fuse(V[0], V[n - 1], W(L(i, "self_attn.v_mix")));
    } else if (a == "fusedkv_lite") {
      K[i] = i < n ? ok : K[n - 1];
      V[i] = i < n ? ov : V[0];
    } else if (a == "cla2") {
      K[i] = i % 2 == 1 ? K[i - 1] : ok;
      V[i] = i % 2 == 1 ? V[i - 1] : ov;
    } else if (a == "skipv1") {
      K[i] = ok;
      if (i == 0) V[i] = ov;
      else {
        V[i].clear();
        for (int64_t h = 0; h < m.n_kv_heads; ++h) V[i].push_back(h % 2 == 0 ? ov[h / 2] : V[0][h]);
      }
    } else if (a == "resformer") {
      K[i] = ok;
      V[i] = i == 0 ? ov : scalar_mix(V[0], ov, W(L(i, "self_attn.v_mix")), 1.0);
    } else {
      FAIL("no reference for " << a);
    }
  }
};

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST_CASE("every architecture matches the naive reference (fp32, L = 4 and 6, GQA, batch 3)", "[model]") {
  for (const auto& arch : architecture_names()) {
    for (int64_t layers : {4, 6}) {
      ModelConfig m = small_config(arch, layers);
      Decoder d = make_model(m);
      perturb(d, 11);
      auto tokens = tokens_for(m, 3, 9, 5);
      auto got = d->forward(tokens);
      auto want = Ref(d).logits(tokens);
      INFO(arch << " L=" << layers);
      CHECK(got.sizes() == want.sizes());
      CHECK(max_diff(got, want) <= 1e-5);
      CHECK(want.abs().max().item<double>() > 0.05);  // the comparison is not between near-zeros
    }
  }
}

TEST_CASE("causality: changing token t+1 leaves logits at positions <= t unchanged", "[model]") {
  for (const auto& arch : architecture_names()) {
    ModelConfig m = small_config(arch, 4);
    Decoder d = make_model(m);
    perturb(d, 3);
    auto tokens = tokens_for(m, 2, 10, 9);
    auto before = d->forward(tokens);
    auto changed = tokens.clone();
    const int64_t t = 5;
    changed.select(1, t + 1).fill_((changed[0][t + 1].item<int64_t>() + 1) % m.vocab_size);
    auto after = d->forward(changed);
    INFO(arch);
    CHECK(max_diff(before.narrow(1, 0, t + 1), after.narrow(1, 0, t + 1)) == 0.0);
    CHECK(max_diff(before.narrow(1, t + 1, 1), after.narrow(1, t + 1, 1)) > 0.0);
  }
}

TEST_CASE("yocopp at initialisation equals yoco with the same weights", "[model]") {
  for (int64_t layers : {4, 6}) {
    auto yoco = make_model(small_config("yoco", layers), 21);
    auto yocopp = make_model(small_config("yocopp", layers), 21);
    auto tokens = tokens_for(yoco->config(), 3, 8, 2);
    CHECK(max_diff(yoco->forward(tokens), yocopp->forward(tokens)) <= 1e-6);
    perturb(yocopp, 4);
    CHECK(max_diff(yoco->forward(tokens), yocopp->forward(tokens)) > 1e-3);
  }
  // And with the paper's init the effective weights are (0, 1): s*a = 0, s*b = 1.
  auto m = small_config("yocopp", 4);
  auto d = make_model(m);
  auto w = d->named_parameters()["layers.1.self_attn.k_mix"];
  CHECK(w[0].item<double>() == 0.0);
  CHECK(w[1].item<double>() * m.yocopp.scaling_factor == Approx(1.0));
  CHECK(w.scalar_type() == at::kFloat);
}

TEST_CASE("yocopp scalars and layer 1's W_K/W_V get gradients from the mixed layers", "[model]") {
  // Silence layer 1's own attention output: its K and V can then reach the loss only through the
  // layers that mix them in.
  auto grads_with = [](const std::string& arch, bool perturbed) {
    auto d = make_model(small_config(arch, 4), 5);
    {
      torch::NoGradGuard g;
      d->named_parameters()["layers.0.self_attn.o_proj.weight"].zero_();
    }
    if (perturbed) perturb(d, 8);
    auto tokens = tokens_for(d->config(), 2, 8, 1);
    d->loss(tokens, tokens_for(d->config(), 2, 8, 2)).backward();
    std::map<std::string, at::Tensor> g;
    for (auto& p : d->named_parameters()) g[p.key()] = p.value().grad().clone();
    return g;
  };
  auto yoco = grads_with("yoco", false);
  CHECK(yoco["layers.0.self_attn.k_proj.weight"].abs().max().item<double>() == 0.0);
  auto init = grads_with("yocopp", false);  // a = c = 0: no path from K_1 yet, but a and c learn
  CHECK(init["layers.0.self_attn.k_proj.weight"].abs().max().item<double>() == 0.0);
  CHECK(init["layers.1.self_attn.k_mix"][0].item<double>() != 0.0);
  CHECK(init["layers.1.self_attn.v_mix"][0].item<double>() != 0.0);
  auto mixed = grads_with("yocopp", true);
  CHECK(mixed["layers.0.self_attn.k_proj.weight"].abs().max().item<double>() > 0.0);
  CHECK(mixed["layers.0.self_attn.v_proj.weight"].abs().max().item<double>() > 0.0);
  CHECK(mixed["layers.1.self_attn.k_mix"].abs().min().item<double>() > 0.0);
}

TEST_CASE("fusedkv with init lite equals fusedkv_lite; its weights are tied within RoPE pairs", "[model]") {
  auto lite_cfg = small_config("fusedkv", 6);
  lite_cfg.fusedkv.init = "lite";
  auto fused = make_model(lite_cfg, 13);
  auto lite = make_model(small_config("fusedkv_lite", 6), 13);
  auto tokens = tokens_for(lite_cfg, 3, 9, 4);
  CHECK(max_diff(fused->forward(tokens), lite->forward(tokens)) <= 1e-6);
  // One weight per RoPE pair (head_dim/2 of them), shared across KV heads: the parameter itself has
  // no other degree of freedom. The reference applies w[c % (dh/2)] to channel c.
  auto w = make_model(small_config("fusedkv", 6))->named_parameters()["layers.4.self_attn.k_mix"];
  CHECK(w.sizes() == at::IntArrayRef({2, small_config("fusedkv", 6).head_dim() / 2}));
  CHECK(w.std().item<double>() > 0.3);  // N(0, 1) init as in the YOCO++ paper's baseline
}

TEST_CASE("parameter counts from the plan equal the module's", "[model]") {
  for (const auto& arch : architecture_names()) {
    auto m = small_config(arch, 6);
    auto d = make_model(m);
    int64_t numel = 0;
    for (const auto& p : d->parameters()) numel += p.numel();
    INFO(arch);
    CHECK(count_parameters(m, d->plan()).total == numel);
  }
}

TEST_CASE("TinyLlama shape: KV-cache bytes and parameter counts", "[model]") {
  std::string dir = test::source_dir() + "/recipes/tinyllama-1.1b/";
  auto kv = [&](const std::string& arch) {
    Config c = load_config(dir + arch + ".yaml");
    return make_kv_plan(c.model).kv_cache_bytes_per_token(c.model.head_dim(), 2);
  };
  CHECK(kv("transformer") == 22528);
  for (const auto* a : {"yoco", "yocopp", "fusedkv", "fusedkv_lite", "cla2"}) {
    INFO(a);
    CHECK(kv(a) == 11264);
  }
  CHECK(kv("resformer") == 22528);
  CHECK(kv("skipv1") == (22 * 4 + 4 + 21 * 2) * 64 * 2);  // K everywhere, V: layer 1 all heads, others half

  auto params = [&](const std::string& arch) {
    Config c = load_config(dir + arch + ".yaml");
    return count_parameters(c.model, make_kv_plan(c.model));
  };
  CHECK(params("transformer").total == 1100048384LL);
  CHECK(params("transformer").total - params("yoco").total == 11LL * 2 * 2048 * 256);
  CHECK(params("yocopp").total - params("yoco").total == 10 * 4);  // layers 2..11, 4 scalars each
  CHECK(params("yocopp").kv_weights == 40);
  CHECK(params("fusedkv").total - params("yoco").total == 11 * 4 * 32);
}

TEST_CASE("yocou: the shared block's gradient is the sum of an unrolled reference's per-loop gradients", "[yoco]") {
  ModelConfig m = small_config("yocou", 4);
  m.yoco.loops = 3;
  Decoder d = make_model(m, 2);
  perturb(d, 6);
  auto tokens = tokens_for(m, 2, 9, 3), targets = tokens_for(m, 2, 9, 4);
  d->loss(tokens, targets).backward();
  // The reference with every self-decoder weight copied once per loop, in double.
  Ref ref(d);
  ref.loop_w.resize(m.yoco.loops);
  for (auto& [name, t] : ref.w)
    if (starts_with(name, "layers.0.") || starts_with(name, "layers.1."))
      for (auto& copies : ref.loop_w) copies[name] = t.clone().requires_grad_(true);
  auto logits = ref.logits(tokens);
  at::cross_entropy_loss(logits.reshape({-1, m.vocab_size}), targets.reshape({-1})).backward();
  auto params = d->named_parameters();
  int checked = 0;
  for (const auto& [name, first] : ref.loop_w[0]) {
    INFO(name);
    at::Tensor sum = at::zeros_like(first);
    for (auto& copies : ref.loop_w) sum = sum + copies.at(name).grad();
    at::Tensor got = params[name].grad().to(at::kDouble);
    double scale = sum.abs().max().item<double>();
    CHECK(scale > 0);
    CHECK(max_diff(got, sum) <= 1e-5 * scale);
    // Every loop contributes: no single loop's gradient is the whole.
    for (auto& copies : ref.loop_w) CHECK(max_diff(got, copies.at(name).grad()) > 1e-3 * scale);
    ++checked;
  }
  CHECK(checked == 2 * 9);  // 2 self-decoder layers x (q, k, v, o, gate, up, down, 2 norms)
}

TEST_CASE("original YOCO switches: embedding scale, linspace RoPE frequencies, no RoPE in the cross-decoder", "[yoco]") {
  for (const char* arch : {"yoco_swa", "yoco_gret", "yocou"}) {
    ModelConfig m = small_config(arch, 4);
    m.yoco.embed_scale = true;
    m.yoco.rope_freqs = "linspace";
    m.yoco.cross_rope = std::string(arch) != "yoco_swa";
    Decoder d = make_model(m);
    perturb(d, 12);
    auto tokens = tokens_for(m, 3, 9, 8);
    INFO(arch);
    CHECK(max_diff(d->forward(tokens), Ref(d).logits(tokens)) <= 1e-5);
    // Each switch changes the function (so the reference above is not passing by accident).
    ModelConfig plain = small_config(arch, 4);
    plain.yoco.cross_rope = m.yoco.cross_rope;
    Decoder p = make_model(plain);
    perturb(p, 12);
    CHECK(max_diff(d->forward(tokens), p->forward(tokens)) > 1e-3);
  }
  // A wrong value: one line naming the key.
  for (const char* bad : {"model.yoco.window=0", "model.yoco.loops=0", "model.yoco.chunk=-1", "model.yoco.rope_freqs=xyz"}) {
    INFO(bad);
    try {
      config_from_yaml("model:\n  arch: yocou\n", {bad});
      FAIL("accepted");
    } catch (const ConfigError& e) {
      REQUIRE(e.problems().size() == 1);
      CHECK(e.problems()[0].find(split(bad, '=')[0]) != std::string::npos);
    }
  }
}
