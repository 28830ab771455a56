#include "yocotron/kv_plan.h"

#include "yocotron/checked_int.h"
#include "yocotron/str.h"

namespace yt {
namespace {

KvSource own() { return {}; }

KvSource reuse(int layer) {
  KvSource s;
  s.kind = KvCombine::Reuse;
  s.from = layer;
  return s;
}

LayerKvPlan layer_plan(int i, int kv_heads, KvSource k, KvSource v) {
  auto own_heads = [&](const KvSource& s) {
    switch (s.kind) {
      case KvCombine::Own:
      case KvCombine::ScalarMix: return kv_heads;
      case KvCombine::HeadSplice: return kv_heads / 2;
      default: return 0;
    }
  };
  auto cached_heads = [&](const KvSource& s) {
    switch (s.kind) {
      case KvCombine::Own:
      case KvCombine::ScalarMix: return kv_heads;  // the mixed result is what gets cached
      case KvCombine::HeadSplice: return kv_heads / 2;
      default: return 0;  // derived from other layers' caches on the fly
    }
  };
  LayerKvPlan p;
  p.layer = i;
  p.k = k;
  p.v = v;
  p.own_k_heads = own_heads(k);
  p.own_v_heads = own_heads(v);
  p.cached_k_heads = cached_heads(k);
  p.cached_v_heads = cached_heads(v);
  return p;
}

int n_layers(const ModelConfig& m) { return static_cast<int>(m.n_layers); }
int kv_heads(const ModelConfig& m) { return static_cast<int>(m.n_kv_heads); }

KvPlan transformer_plan(const ModelConfig& m) {
  KvPlan p{"transformer", {}};
  for (int i = 0; i < n_layers(m); ++i) p.layers.push_back(layer_plan(i, kv_heads(m), own(), own()));
  return p;
}

// Cross-layer YOCO: layers 1..n compute K,V; n+1..L attend with layer n's.
KvPlan yoco_plan(const ModelConfig& m) {
  KvPlan p{"yoco", {}};
  int n = n_layers(m) / 2;
  for (int i = 0; i < n_layers(m); ++i) {
    bool top = i >= n;
    p.layers.push_back(layer_plan(i, kv_heads(m), top ? reuse(n - 1) : own(), top ? reuse(n - 1) : own()));
  }
  return p;
}

// YOCO++: layers 2..n replace K,V by s*(a K_1 + b K_i), s*(c V_1 + d V_i); a=c=0, b=d=1/s at init.
KvPlan yocopp_plan(const ModelConfig& m) {
  KvPlan p = yoco_plan(m);
  p.arch = "yocopp";
  KvSource mix;
  mix.kind = KvCombine::ScalarMix;
  mix.from = 0;
  mix.scale = m.yocopp.scaling_factor;
  mix.w0_init = 0.0;
  mix.w1_init = 1.0 / m.yocopp.scaling_factor;
  mix.learnable = true;
  mix.weight_decay = m.yocopp.weight_decay;
  int n = n_layers(m) / 2;
  for (int i = 1; i < n; ++i) p.layers[i] = layer_plan(i, kv_heads(m), mix, mix);
  return p;
}

// FusedKV: top layer i: K = a⊙K_1 + a'⊙K_n, V = b⊙V_1 + b'⊙V_n.
KvPlan fusedkv_plan(const ModelConfig& m) {
  KvPlan p = yoco_plan(m);
  p.arch = "fusedkv";
  int n = n_layers(m) / 2;
  bool lite = m.fusedkv.init == "lite";
  auto fuse = [&](double w_first, double w_middle) {
    KvSource s;
    s.kind = KvCombine::VectorMix;
    s.from = 0;
    s.from2 = n - 1;
    s.w0_init = w_first;
    s.w1_init = w_middle;
    s.random_init = !lite;
    s.learnable = true;
    s.weight_decay = m.fusedkv.weight_decay;
    return s;
  };
  // "lite" starts as FusedKV-Lite: K = K_n (a=0, a'=1), V = V_1 (b=1, b'=0).
  for (int i = n; i < n_layers(m); ++i) p.layers[i] = layer_plan(i, kv_heads(m), fuse(0, 1), fuse(1, 0));
  return p;
}

KvPlan fusedkv_lite_plan(const ModelConfig& m) {
  KvPlan p = yoco_plan(m);
  p.arch = "fusedkv_lite";
  int n = n_layers(m) / 2;
  for (int i = n; i < n_layers(m); ++i) p.layers[i] = layer_plan(i, kv_heads(m), reuse(n - 1), reuse(0));
  return p;
}

// CLA-2: odd layers (1-based) compute K,V; each even layer 2j reuses layer 2j-1.
KvPlan cla2_plan(const ModelConfig& m) {
  KvPlan p{"cla2", {}};
  for (int i = 0; i < n_layers(m); ++i) {
    bool shares = i % 2 == 1;
    p.layers.push_back(layer_plan(i, kv_heads(m), shares ? reuse(i - 1) : own(), shares ? reuse(i - 1) : own()));
  }
  return p;
}

// SkipV1Former: layers >= 2 project half of their value heads and take the other half from layer 1.
KvPlan skipv1_plan(const ModelConfig& m) {
  KvPlan p{"skipv1", {}};
  KvSource splice;
  splice.kind = KvCombine::HeadSplice;
  splice.from = 0;
  for (int i = 0; i < n_layers(m); ++i) p.layers.push_back(layer_plan(i, kv_heads(m), own(), i == 0 ? own() : splice));
  return p;
}

// ResFormer (value residual): layers >= 2 attend with V'_i = λ1 V_1 + λ2 V_i.
KvPlan resformer_plan(const ModelConfig& m) {
  KvPlan p{"resformer", {}};
  KvSource mix;
  mix.kind = KvCombine::ScalarMix;
  mix.from = 0;
  mix.w0_init = m.resformer.lambda1;
  mix.w1_init = m.resformer.lambda2;
  mix.learnable = m.resformer.learnable;
  mix.weight_decay = m.resformer.learnable && m.resformer.weight_decay;
  for (int i = 0; i < n_layers(m); ++i) p.layers.push_back(layer_plan(i, kv_heads(m), own(), i == 0 ? own() : mix));
  return p;
}

// Original YOCO: a self-decoder of the bottom n layers (sliding-window attention or gated
// retention) applied `loops` times, then one global K^/V^ shared by the top n (cross-decoder)
// layers. Only K^/V^ grow with the sequence; windows and retention states are constant.
KvPlan yoco_original_plan(const ModelConfig& m, const std::string& arch, Mixer mixer, int loops, bool cross_rope) {
  KvPlan p{arch, {}};
  const int n = n_layers(m) / 2;
  p.self_layers = n;
  p.loops = loops;
  p.global_kv_heads = kv_heads(m);
  p.global_rope = cross_rope;
  p.retention_chunk = m.yoco.chunk;
  KvSource global;
  global.kind = KvCombine::Global;
  global.from = n - 1;
  for (int i = 0; i < n_layers(m); ++i) {
    LayerKvPlan l;
    l.layer = i;
    if (i < n) {
      l.mixer = mixer;
      l.loop_group = 0;
      // gRet projects K and V for every query head (no GQA), as the original's GateRetention.
      l.own_k_heads = l.own_v_heads = mixer == Mixer::Retention ? static_cast<int>(m.n_heads) : kv_heads(m);
      l.window = mixer == Mixer::Attention ? m.yoco.window : 0;
    } else {
      l.k = l.v = global;
      l.rope = cross_rope;
    }
    p.layers.push_back(l);
  }
  return p;
}

KvPlan yoco_swa_plan(const ModelConfig& m) { return yoco_original_plan(m, "yoco_swa", Mixer::Attention, 1, m.yoco.cross_rope); }
KvPlan yoco_gret_plan(const ModelConfig& m) { return yoco_original_plan(m, "yoco_gret", Mixer::Retention, 1, m.yoco.cross_rope); }
KvPlan yocou_plan(const ModelConfig& m) {
  return yoco_original_plan(m, "yocou", Mixer::Attention, static_cast<int>(m.yoco.loops), m.yoco.cross_rope);
}

std::vector<std::string> no_extra_checks(const ModelConfig&, const ParallelConfig&) { return {}; }

std::vector<std::string> yoco_family_checks(const ModelConfig& m, const ParallelConfig&) {
  if (m.n_layers % 2 != 0 || m.n_layers < 2)
    return {cat("model.n_layers=", m.n_layers, " must be even (and >= 2) for model.arch=", m.arch,
                ": the top half reuses the middle layer's keys and values")};
  return {};
}

std::vector<std::string> yocopp_checks(const ModelConfig& m, const ParallelConfig& p) {
  auto out = yoco_family_checks(m, p);
  if (!(m.yocopp.scaling_factor > 0))
    out.push_back(cat("model.yocopp.scaling_factor=", m.yocopp.scaling_factor, " must be > 0"));
  return out;
}

std::vector<std::string> yoco_original_checks(const ModelConfig& m, const ParallelConfig&) {
  if (m.n_layers % 2 != 0 || m.n_layers < 2)
    return {cat("model.n_layers=", m.n_layers, " must be even (and >= 2) for model.arch=", m.arch,
                ": the bottom half is the self-decoder, the top half the cross-decoder")};
  return {};
}

std::vector<std::string> skipv1_checks(const ModelConfig& m, const ParallelConfig& p) {
  if (m.n_kv_heads % 2 != 0)
    return {cat("model.n_kv_heads=", m.n_kv_heads, " must be even for model.arch=skipv1: half of the value heads come from layer 1")};
  if (p.tp > 0 && m.n_kv_heads % p.tp == 0 && (m.n_kv_heads / p.tp) % 2 != 0)  // tp not dividing is the general rule's
    return {cat("model.n_kv_heads/parallel.tp=", m.n_kv_heads / p.tp,
                " must be even for model.arch=skipv1 (each rank needs whole own/shared head pairs)")};
  return {};
}

}  // namespace

const std::vector<Architecture>& architectures() {
  static const std::vector<Architecture> archs = {
      {"transformer", "every layer computes its own K,V (Llama)", transformer_plan, no_extra_checks},
      {"yoco", "top half reuses the middle layer's K,V", yoco_plan, yoco_family_checks},
      {"yocopp", "YOCO + learnable scaled residuals from each bottom layer's K,V to layer 1's", yocopp_plan, yocopp_checks},
      {"fusedkv", "top layers fuse layer 1's and the middle layer's K,V with learned vectors", fusedkv_plan, yoco_family_checks},
      {"fusedkv_lite", "top layers use the middle layer's K and layer 1's V", fusedkv_lite_plan, yoco_family_checks},
      {"cla2", "each even layer reuses the K,V of the layer below it", cla2_plan, no_extra_checks},
      {"skipv1", "layers >= 2 take half their value heads from layer 1", skipv1_plan, skipv1_checks},
      {"resformer", "layers >= 2 attend with a residual mix of layer 1's values", resformer_plan, no_extra_checks},
      {"yoco_swa", "original YOCO: sliding-window self-decoder, one global K,V for the cross-decoder", yoco_swa_plan,
       yoco_original_checks},
      {"yoco_gret", "original YOCO: gated-retention self-decoder, one global K,V for the cross-decoder", yoco_gret_plan,
       yoco_original_checks},
      {"yocou", "Universal YOCO: yoco_swa with its self-decoder looped model.yoco.loops times", yocou_plan,
       yoco_original_checks},
  };
  return archs;
}

const Architecture* find_architecture(const std::string& name) {
  for (const auto& a : architectures())
    if (a.name == name) return &a;
  return nullptr;
}

const std::vector<std::string>& architecture_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& a : architectures()) n.push_back(a.name);
    return n;
  }();
  return names;
}

KvPlan make_kv_plan(const ModelConfig& m) {
  const Architecture* a = find_architecture(m.arch);
  if (!a) throw ConfigError({cat("model.arch: unknown architecture '", m.arch, "'")});
  return a->plan(m);
}

int64_t KvPlan::kv_cache_bytes_per_token(int64_t head_dim, int64_t bytes_per_element) const {
  CheckedInt heads = 0;
  for (const auto& l : layers) heads += CheckedInt(l.cached_k_heads) + l.cached_v_heads;
  heads += CheckedInt(global_kv_heads) * 2;
  CheckedInt bytes = heads * head_dim * bytes_per_element;
  if (bytes.overflowed())
    throw ConfigError({cat("model.n_layers=", layers.size(), " x model.n_kv_heads x head dim ", head_dim,
                           ": the KV-cache bytes per token overflow a 64-bit integer; make the model smaller")});
  return bytes.value();
}

int64_t KvPlan::kv_cache_constant_bytes(int64_t head_dim, int64_t heads, int64_t bytes_per_element) const {
  CheckedInt bytes = 0;
  for (const auto& l : layers) {
    if (l.loop_group < 0) continue;  // only the self-decoder keeps constant state
    if (l.mixer == Mixer::Retention) bytes += CheckedInt(loops) * heads * head_dim * head_dim * 4;  // fp32 state
    else if (l.window > 0)
      bytes += CheckedInt(loops) * l.window * (CheckedInt(l.own_k_heads) + l.own_v_heads) * head_dim * bytes_per_element;
  }
  if (bytes.overflowed()) throw ConfigError({cat("model.yoco.window=", layers.empty() ? 0 : layers[0].window,
                                                 ": the constant cache bytes overflow a 64-bit integer")});
  return bytes.value();
}

ParamCounts count_parameters(const ModelConfig& m, const KvPlan& plan) {
  const CheckedInt d = m.d_model, dh = m.head_dim();
  auto weights = [&](const KvSource& s) -> CheckedInt {
    if (!s.learnable) return 0;
    if (s.kind == KvCombine::ScalarMix) return 2;
    if (s.kind == KvCombine::VectorMix) return dh;  // two vectors of dh/2
    return 0;
  };
  CheckedInt non_embedding = 0, kv_weights = 0, looped = 0;
  for (const auto& l : plan.layers) {
    CheckedInt layer = d * m.n_heads * dh * 2;                                // q_proj, o_proj
    layer += d * (CheckedInt(l.own_k_heads) + l.own_v_heads) * dh;           // k_proj, v_proj
    layer += CheckedInt(3) * d * m.d_ffn + CheckedInt(2) * d;                // SwiGLU, two norms
    if (l.mixer == Mixer::Retention) layer += d * m.n_heads * (dh + 1);       // g_proj, gt_proj
    non_embedding += layer;
    if (l.loop_group >= 0) looped += layer;
    kv_weights += weights(l.k) + weights(l.v);
  }
  non_embedding += kv_weights + d;  // + final norm
  if (plan.has_global_kv()) non_embedding += d * CheckedInt(plan.global_kv_heads) * dh * 2 + d;  // W_K^, W_V^, norm
  CheckedInt embedding = CheckedInt(2) * m.vocab_size * d;
  CheckedInt total = non_embedding + embedding;
  if (total.overflowed())
    throw ConfigError({cat("model.n_layers=", m.n_layers, ", model.d_model=", m.d_model, ", model.n_heads=", m.n_heads,
                           ", model.d_ffn=", m.d_ffn, ", model.vocab_size=", m.vocab_size,
                           ": the parameter count overflows a 64-bit integer (over 9.2e18); make the model smaller")});
  ParamCounts c;
  c.non_embedding = non_embedding.value();
  c.kv_weights = kv_weights.value();
  c.looped = looped.value();
  c.embedding = embedding.value();
  c.total = total.value();
  return c;
}

std::vector<PlanSetting> plan_settings(const ModelConfig& m) {
  auto b = [](bool v) { return std::string(v ? "true" : "false"); };
  if (m.arch == "yocopp") return {{"model.yocopp.scaling_factor", "yocopp_scaling_factor", format_double(m.yocopp.scaling_factor)}};
  if (m.arch == "fusedkv") return {{"model.fusedkv.init", "fusedkv_init", m.fusedkv.init}};
  if (m.arch == "resformer")
    return {{"model.resformer.learnable", "resformer_learnable", b(m.resformer.learnable)},
            {"model.resformer.lambda1", "resformer_lambda1", format_double(m.resformer.lambda1)},
            {"model.resformer.lambda2", "resformer_lambda2", format_double(m.resformer.lambda2)}};
  if (m.arch == "yoco_swa" || m.arch == "yoco_gret" || m.arch == "yocou") {
    std::vector<PlanSetting> s{{"model.yoco.cross_rope", "yoco_cross_rope", b(m.yoco.cross_rope)},
                               {"model.yoco.embed_scale", "yoco_embed_scale", b(m.yoco.embed_scale)},
                               {"model.yoco.rope_freqs", "yoco_rope_freqs", m.yoco.rope_freqs}};
    if (m.arch != "yoco_gret") s.push_back({"model.yoco.window", "yoco_window", std::to_string(m.yoco.window)});
    if (m.arch == "yocou") s.push_back({"model.yoco.loops", "yoco_loops", std::to_string(m.yoco.loops)});
    return s;
  }
  return {};
}

std::string describe(const KvSource& s) {
  switch (s.kind) {
    case KvCombine::Own: return "own";
    case KvCombine::Reuse: return cat("L", s.from + 1);
    case KvCombine::ScalarMix:
      return cat(s.scale == 1.0 ? "" : cat(format_double(s.scale), "*("), "a*L", s.from + 1, " + b*self",
                 s.scale == 1.0 ? "" : ")", s.learnable ? "" : " (fixed)");
    case KvCombine::VectorMix: return cat("w*L", s.from + 1, " + w'*L", s.from2 + 1);
    case KvCombine::HeadSplice: return cat("even heads own, odd heads L", s.from + 1);
    case KvCombine::Global: return "global K^,V^";
  }
  return "?";
}

}  // namespace yt
