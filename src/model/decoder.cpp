#include "yocotron/decoder.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "yocotron/fused_ops.h"
#include "yocotron/kv_mix.h"
#include "yocotron/linear_cross_entropy.h"
#include "yocotron/recompute.h"
#include "yocotron/retention.h"
#include "yocotron/str.h"

namespace yt {
namespace {

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace

// ---- Attention --------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp)
    : plan_(plan),
      head_dim_(cfg.head_dim()),
      local_heads_(cfg.n_heads / tp.size),
      kernel_(parse_attention_kernel(cfg.attention)) {
  const int64_t d = cfg.d_model, dh = head_dim_;
  q_proj = register_module("q_proj", ColumnParallelLinear(d, cfg.n_heads * dh, tp));
  if (plan.own_k_heads > 0) k_proj = register_module("k_proj", ColumnParallelLinear(d, plan.own_k_heads * dh, tp));
  if (plan.own_v_heads > 0) v_proj = register_module("v_proj", ColumnParallelLinear(d, plan.own_v_heads * dh, tp));
  o_proj = register_module("o_proj", RowParallelLinear(cfg.n_heads * dh, d, tp));
  if (plan.mixer == Mixer::Retention) {
    g_proj = register_module("g_proj", ColumnParallelLinear(d, cfg.n_heads * dh, tp));
    gt_proj = register_module("gt_proj", ColumnParallelLinear(d, cfg.n_heads, tp));
    retention_chunk_ = cfg.yoco.chunk;
    norm_eps_ = cfg.norm_eps;
  }
  auto weights = [&](const KvSource& s) {
    if (!s.has_weights()) return at::Tensor();
    auto shape = s.kind == KvCombine::ScalarMix ? std::vector<int64_t>{2} : std::vector<int64_t>{2, head_dim_ / 2};
    return torch::zeros(shape);
  };
  // A learnable mixing weight is replicated and shared by this rank's heads only: its gradient is
  // summed over the TP group.
  auto declare_mix = [&](const char* name, const at::Tensor& t, const KvSource& src) {
    ShardSpec s;
    s.global_shape = t.sizes().vec();
    s.tp_partial_grad = true;
    s.keep_fp32 = true;
    s.decay = src.weight_decay;
    s.initial = [src, dh](at::Generator gen) { return initial_kv_weights(src, dh, gen); };
    declare_shard(name, s);
  };
  if (plan.k.has_weights()) {
    k_mix = weights(plan.k);
    k_mix = plan.k.learnable ? register_parameter("k_mix", k_mix) : register_buffer("k_mix", k_mix);
    if (plan.k.learnable) declare_mix("k_mix", k_mix, plan.k);
  }
  if (plan.v.has_weights()) {
    v_mix = weights(plan.v);
    v_mix = plan.v.learnable ? register_parameter("v_mix", v_mix) : register_buffer("v_mix", v_mix);
    if (plan.v.learnable) declare_mix("v_mix", v_mix, plan.v);
  }
}

void AttentionImpl::init_fixed_mix(uint64_t seed) {
  torch::NoGradGuard no_grad;
  if (k_mix.defined() && !plan_.k.learnable)
    k_mix.copy_(initial_kv_weights(plan_.k, head_dim_, at::detail::createCPUGenerator(seed)));
  if (v_mix.defined() && !plan_.v.learnable)
    v_mix.copy_(initial_kv_weights(plan_.v, head_dim_, at::detail::createCPUGenerator(seed)));
}

std::vector<at::Tensor> AttentionImpl::input_weights() const {
  std::vector<at::Tensor> w{q_proj->weight};
  if (k_proj) w.push_back(k_proj->weight);
  if (v_proj) w.push_back(v_proj->weight);
  if (g_proj) w.push_back(g_proj->weight);
  if (gt_proj) w.push_back(gt_proj->weight);
  return w;
}

at::Tensor AttentionImpl::attend(const std::vector<at::Tensor>& projected, const at::Tensor& cos, const at::Tensor& sin,
                                 std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v,
                                 const BlockOpOptions& opt) {
  const bool fused = opt.fused;
  const int64_t B = projected[0].size(0), T = projected[0].size(1), D = head_dim_;
  // RoPE on [B, T, h, D] (unless the layer has none), then heads first as a view: [B, h, T, D].
  auto rope = [&](const at::Tensor& x) { return plan_.rope ? apply_rope(x, cos, sin, fused) : x; };
  auto q = rope(projected[0].view({B, T, local_heads_, D})).transpose(1, 2);
  size_t next = 1;
  at::Tensor own_k, own_v;
  if (k_proj) own_k = rope(projected[next++].view({B, T, -1, D})).transpose(1, 2);
  if (v_proj) own_v = projected[next++].view({B, T, -1, D}).transpose(1, 2);
  finals_k.push_back(combine_kv(plan_.k, own_k, finals_k, k_mix, fused));
  finals_v.push_back(combine_kv(plan_.v, own_v, finals_v, v_mix, fused));
  if (plan_.mixer == Mixer::Retention)
    return retention_output(q, own_k, own_v, projected[next], projected[next + 1], nullptr, opt.layout);
  auto out = plan_.window > 0 ? window_attention(q, finals_k.back(), finals_v.back(), plan_.window, kernel_)
                              : causal_attention(q, finals_k.back(), finals_v.back(), kernel_);  // [B, h, T, D]
  out = out.transpose(1, 2).reshape({B, T, local_heads_ * D});
  return o_proj->forward(out, opt.layout);
}

at::Tensor AttentionImpl::retention_output(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                           const at::Tensor& g, const at::Tensor& gt, at::Tensor* state,
                                           StreamLayout layout) {
  const int64_t B = q.size(0), T = q.size(2), D = head_dim_;
  // Per-head decay log γ = logsigmoid(x W_γ)/16 (the original's gate_logit_normalizer): [B, h, T].
  at::Tensor log_gamma = at::log_sigmoid(gt.to(at::kFloat)).transpose(1, 2) / 16.0;
  at::Tensor ks = k * (1.0 / std::sqrt(static_cast<double>(D)));
  at::Tensor empty;
  auto [o, s] = state && T == 1 ? retention_recurrent(q, ks, v, log_gamma, *state)
                                : retention_chunkwise(q, ks, v, log_gamma, retention_chunk_, state ? *state : empty);
  if (state) *state = s;
  // Per-head RMSNorm without affine (the original's subln), in fp32: [B, h, T, D].
  at::Tensor of = o.to(at::kFloat);
  of = of * at::rsqrt(of.pow(2).mean(-1, /*keepdim=*/true) + norm_eps_);
  at::Tensor out = of.to(q.scalar_type()).transpose(1, 2).reshape({B, T, local_heads_ * D});
  return o_proj->forward(at::silu(g) * out, layout);
}

// ---- Global K/V (original YOCO) -----------------------------------------------------------------

GlobalKvImpl::GlobalKvImpl(const ModelConfig& cfg, int kv_heads, const TpContext& tp) {
  norm = register_module("norm", RmsNorm(cfg.d_model, cfg.norm_eps, tp));
  k_proj = register_module("k_proj", ColumnParallelLinear(cfg.d_model, kv_heads * cfg.head_dim(), tp));
  v_proj = register_module("v_proj", ColumnParallelLinear(cfg.d_model, kv_heads * cfg.head_dim(), tp));
}

// ---- MLP (SwiGLU) -----------------------------------------------------------------------------

MlpImpl::MlpImpl(const ModelConfig& cfg, const TpContext& tp) {
  gate_proj = register_module("gate_proj", ColumnParallelLinear(cfg.d_model, cfg.d_ffn, tp));
  up_proj = register_module("up_proj", ColumnParallelLinear(cfg.d_model, cfg.d_ffn, tp));
  down_proj = register_module("down_proj", RowParallelLinear(cfg.d_ffn, cfg.d_model, tp));
}

at::Tensor MlpImpl::forward(const at::Tensor& gate, const at::Tensor& up, const BlockOpOptions& opt) {
  return down_proj->leave(swiglu_down(gate, up, down_proj->weight, opt), opt.layout);
}

// ---- Block ------------------------------------------------------------------------------------

BlockImpl::BlockImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp) : eps_(cfg.norm_eps) {
  input_layernorm = register_module("input_layernorm", RmsNorm(cfg.d_model, cfg.norm_eps, tp));
  self_attn = register_module("self_attn", Attention(cfg, plan, tp));
  post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(cfg.d_model, cfg.norm_eps, tp));
  mlp = register_module("mlp", Mlp(cfg, tp));
}

std::pair<at::Tensor, at::Tensor> BlockImpl::forward(const at::Tensor& residual, const at::Tensor& delta,
                                                     const at::Tensor& cos, const at::Tensor& sin,
                                                     std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v,
                                                     const BlockOpOptions& opt, CachedStep* cached) {
  auto a = norm_project(residual, delta, input_layernorm->weight, eps_, self_attn->input_weights(),
                        self_attn->input(opt.layout), opt);
  const at::Tensor x = delta.defined() ? a[0] : residual;  // the stream entering this block
  std::vector<at::Tensor> projected(a.begin() + (delta.defined() ? 1 : 0), a.end());
  at::Tensor attn = cached ? self_attn->attend_cached(projected, *cached, opt.fused)
                           : self_attn->attend(projected, cos, sin, finals_k, finals_v, opt);
  // h = x + attn; gate and up from RMSNorm(h).
  auto m = norm_project(x, attn, post_attention_layernorm->weight, eps_, {mlp->gate_proj->weight, mlp->up_proj->weight},
                        mlp->gate_proj->input(opt.layout), opt);
  return {m[0], mlp->forward(m[1], m[2], opt)};
}

// ---- Decoder ----------------------------------------------------------------------------------

Recompute parse_recompute(const std::string& name) {
  if (name == "none") return Recompute::None;
  if (name == "selective") return Recompute::Selective;
  if (name == "full") return Recompute::Full;
  throw std::invalid_argument("train.recompute: unknown mode '" + name + "'");
}

DecoderImpl::DecoderImpl(const ModelConfig& cfg, TpContext tp)
    : cfg_(cfg),
      plan_(make_kv_plan(cfg)),
      tp_(tp),
      fused_(cfg.fused_kernels && kernels::available()) {
  embed_tokens = register_module("embed_tokens", VocabParallelEmbedding(cfg.vocab_size, cfg.d_model, tp));
  layers = register_module("layers", torch::nn::ModuleList());
  for (const auto& lp : plan_.layers) layers->push_back(Block(cfg, lp, tp));
  if (plan_.has_global_kv()) global_kv = register_module("global_kv", GlobalKv(cfg, plan_.global_kv_heads, tp));
  norm = register_module("norm", RmsNorm(cfg.d_model, cfg.norm_eps, tp));
  lm_head = register_module("lm_head", ColumnParallelLinear(cfg.d_model, cfg.vocab_size, tp, /*pad=*/true));
  local_vocab_ = lm_head->local_out();
  auto [c, s] = rope_tables(cfg.head_dim(), cfg.max_seq_len, cfg.rope_theta, cfg.yoco.rope_freqs == "linspace");
  rope_cos_ = register_buffer("rope_cos", c);
  rope_sin_ = register_buffer("rope_sin", s);
  specs_ = collect_shard_specs(*this);
  init_weights(0);
}

// Parameters only: fixed mixing weights (buffers) are a function of the recipe (ResFormer's λ), so
// checkpoints, exports and init_from carry the recipe keys instead, and loaders compare those.
std::vector<std::pair<std::string, at::Tensor>> DecoderImpl::state_tensors() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& p : named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

std::vector<std::pair<std::string, at::Tensor>> DecoderImpl::mix_tensors() {
  std::vector<std::pair<std::string, at::Tensor>> learnable, fixed;
  for (size_t i = 0; i < layers->size(); ++i) {
    auto& attn = *layers[i]->as<Block>()->self_attn;
    auto add = [&](const char* name, const at::Tensor& t, const KvSource& src) {
      if (t.defined()) (src.learnable ? learnable : fixed).emplace_back(cat("layers.", i, ".self_attn.", name), t);
    };
    add("k_mix", attn.k_mix, plan_.layers[i].k);
    add("v_mix", attn.v_mix, plan_.layers[i].v);
  }
  learnable.insert(learnable.end(), fixed.begin(), fixed.end());  // parameters first, as before
  return learnable;
}

std::map<std::string, at::Tensor> DecoderImpl::global_state() {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : state_tensors()) {
    auto it = specs_.find(name);
    if (it == specs_.end() || it->second.split_dim < 0) {
      out[name] = t.detach();
      continue;
    }
    out[name] = gather_global(t.detach(), it->second, tp_);
  }
  return out;
}

void DecoderImpl::load_global_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> problems;
  std::set<std::string> seen;
  for (auto& [name, t] : state_tensors()) {
    seen.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end()) {
      problems.push_back(cat(source, ": missing tensor '", name, "'"));
      continue;
    }
    auto spec_it = specs_.find(name);
    std::vector<int64_t> want = spec_it == specs_.end() ? t.sizes().vec() : spec_it->second.global_shape;
    if (it->second.sizes().vec() != want) {
      problems.push_back(cat(source, ": tensor '", name, "' has shape ", it->second.sizes(), ", the model expects ",
                             at::IntArrayRef(want)));
      continue;
    }
    at::Tensor src = it->second.to(t.device(), t.scalar_type());
    if (spec_it != specs_.end()) src = local_shard(src, spec_it->second, tp_.rank, tp_.size);
    t.copy_(src);
  }
  for (const auto& kv : tensors)
    if (!seen.count(kv.first)) problems.push_back(cat(source, ": unexpected tensor '", kv.first, "' (not in this model)"));
  if (!problems.empty()) throw std::runtime_error(join(problems, "\n"));
}

void DecoderImpl::init_weights(uint64_t seed) {
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    const ShardSpec& spec = specs_.at(name);
    auto gen = at::detail::createCPUGenerator(seed ^ fnv1a(name));
    at::Tensor full = spec.initial ? spec.initial(gen)
                                   : at::normal(0.0, cfg_.init_std, spec.global_shape, gen, at::TensorOptions().dtype(at::kFloat));
    item.value().copy_(local_shard(full, spec, tp_.rank, tp_.size));
  }
  for (auto& layer : *layers) layer->as<Block>()->self_attn->init_fixed_mix(seed);
}

StreamLayout DecoderImpl::layout_for(int64_t T) const {
  if (tp_.size == 1 || !tp_.sequence_parallel) return StreamLayout::Replicated;
  if (T % tp_.size == 0) return StreamLayout::SequenceSharded;
  // Norm weights' gradients would be summed over ranks that each saw every token.
  TORCH_CHECK(!at::GradMode::is_enabled(), "sequence parallelism: ", T, " tokens do not split over parallel.tp=", tp_.size);
  return StreamLayout::Replicated;
}

at::Tensor DecoderImpl::final_hidden(const at::Tensor& tokens, StreamLayout layout) {
  TORCH_CHECK(tokens.dim() == 2, "Decoder: tokens must be [batch, time]");
  TORCH_CHECK(tokens.size(1) <= cfg_.max_seq_len, "Decoder: sequence of ", tokens.size(1),
              " tokens exceeds model.max_seq_len=", cfg_.max_seq_len);
  BlockOpOptions opt;
  opt.fused = fused_;
  opt.recompute = exec_.recompute == Recompute::Selective;
  opt.layout = layout;
  const bool full = exec_.recompute == Recompute::Full && at::GradMode::is_enabled();
  at::Tensor x = embed(tokens, layout), delta;  // [B, T or T/tp, d]
  std::vector<at::Tensor> finals_k, finals_v;
  finals_k.reserve(layers->size());
  finals_v.reserve(layers->size());
  size_t first = 0;
  if (plan_.has_global_kv()) {
    // Original YOCO: the self-decoder (looped for YOCO-U; no layer reads another's K/V), then one
    // global K^, V^ placed where the cross-decoder's plan reads it (final[self_layers - 1]).
    const size_t n = static_cast<size_t>(plan_.self_layers);
    for (int loop = 0; loop < plan_.loops; ++loop) {
      for (size_t i = 0; i < n; ++i) {
        finals_k.clear();
        finals_v.clear();
        std::tie(x, delta) = full ? recomputed_block(i, x, delta, finals_k, finals_v, opt)
                                  : layers[i]->as<Block>()->forward(x, delta, rope_cos_, rope_sin_, finals_k, finals_v, opt);
      }
    }
    auto g = project_global_kv(x, delta, opt, [&](const at::Tensor& t) { return apply_rope(t, rope_cos_, rope_sin_, fused_); });
    finals_k.assign(n, at::Tensor());
    finals_v.assign(n, at::Tensor());
    finals_k[n - 1] = g.k;
    finals_v[n - 1] = g.v;
    x = g.stream;
    delta = at::Tensor();
    first = n;
  }
  for (size_t i = first; i < layers->size(); ++i) {
    std::tie(x, delta) = full ? recomputed_block(i, x, delta, finals_k, finals_v, opt)
                              : layers[i]->as<Block>()->forward(x, delta, rope_cos_, rope_sin_, finals_k, finals_v, opt);
  }
  return add_rms_norm(x, delta, norm->weight, cfg_.norm_eps, fused_).second;
}

at::Tensor DecoderImpl::embed(const at::Tensor& tokens, StreamLayout layout) {
  at::Tensor x = embed_tokens->forward(tokens, layout);
  return cfg_.yoco.embed_scale ? x * std::sqrt(static_cast<double>(cfg_.d_model)) : x;
}

DecoderImpl::GlobalKvOut DecoderImpl::project_global_kv(const at::Tensor& x, const at::Tensor& delta,
                                                        const BlockOpOptions& opt,
                                                        const std::function<at::Tensor(const at::Tensor&)>& rope) {
  // {X_mid, RMSNorm(X_mid) W_K, RMSNorm(X_mid) W_V}; the column-parallel projections' gradient is
  // summed over the TP group inside norm_project.
  auto p = norm_project(x, delta, global_kv->norm->weight, cfg_.norm_eps,
                        {global_kv->k_proj->weight, global_kv->v_proj->weight}, global_kv->k_proj->input(opt.layout), opt);
  if (!delta.defined()) p.insert(p.begin(), x);  // norm_project returns the sum only when it adds one
  const int64_t B = p[1].size(0), T = p[1].size(1), D = cfg_.head_dim();
  at::Tensor k = p[1].view({B, T, -1, D});
  if (plan_.global_rope) k = rope(k);
  return {p[0], k.transpose(1, 2), p[2].view({B, T, -1, D}).transpose(1, 2)};  // [B, H_kv, T, D]
}

std::pair<at::Tensor, at::Tensor> DecoderImpl::recomputed_block(size_t i, const at::Tensor& residual, const at::Tensor& delta,
                                                                std::vector<at::Tensor>& finals_k,
                                                                std::vector<at::Tensor>& finals_v, const BlockOpOptions& opt) {
  // Inputs of the segment: the stream pair and the earlier layers' K/V this layer reads.
  const LayerKvPlan& lp = plan_.layers[i];
  auto sources = [](const KvSource& s) {
    std::vector<int> from;
    for (int j : {s.from, s.from2})
      if (j >= 0) from.push_back(j);
    return from;
  };
  const std::vector<int> k_from = sources(lp.k), v_from = sources(lp.v);
  auto is_new = [](const KvSource& s) { return s.kind != KvCombine::Reuse && s.kind != KvCombine::Global; };
  const bool k_new = is_new(lp.k), v_new = is_new(lp.v);
  std::vector<at::Tensor> inputs{residual};
  if (delta.defined()) inputs.push_back(delta);
  for (int j : k_from) inputs.push_back(finals_k[j]);
  for (int j : v_from) inputs.push_back(finals_v[j]);
  Block block(std::static_pointer_cast<BlockImpl>(layers[i]));
  const bool has_delta = delta.defined();
  at::Tensor cos = rope_cos_, sin = rope_sin_;
  Segment segment = [block, i, has_delta, k_from, v_from, k_new, v_new, cos, sin, opt](const std::vector<at::Tensor>& in) mutable {
    size_t next = 0;
    at::Tensor r = in[next++];
    at::Tensor d = has_delta ? in[next++] : at::Tensor();
    std::vector<at::Tensor> fk(i), fv(i);  // only the entries this layer reads are set
    for (int j : k_from) fk[j] = in[next++];
    for (int j : v_from) fv[j] = in[next++];
    auto [h, m] = block->forward(r, d, cos, sin, fk, fv, opt);
    std::vector<at::Tensor> out{h, m};
    if (k_new) out.push_back(fk.back());
    if (v_new) out.push_back(fv.back());
    return out;
  };
  auto out = recompute_in_backward(segment, inputs);
  size_t next = 2;
  finals_k.push_back(k_new ? out[next++] : finals_k[lp.k.from]);
  finals_v.push_back(v_new ? out[next++] : finals_v[lp.v.from]);
  return {out[0], out[1]};
}

at::Tensor DecoderImpl::forward(const at::Tensor& tokens) {
  const StreamLayout layout = layout_for(tokens.size(1));
  auto logits = lm_head->forward(final_hidden(tokens, layout), layout);  // [B, T, local_vocab]
  int64_t first_pad = cfg_.vocab_size - tp_.rank * local_vocab_;  // local index of the first padding row
  if (first_pad < local_vocab_) {
    logits = logits.clone();
    logits.narrow(-1, std::max<int64_t>(first_pad, 0), local_vocab_ - std::max<int64_t>(first_pad, 0))
        .fill_(-std::numeric_limits<float>::infinity());
  }
  return logits;
}

at::Tensor DecoderImpl::loss(const at::Tensor& tokens, const at::Tensor& targets) {
  if (exec_.loss_chunk_tokens <= 0) {
    auto logits = forward(tokens);
    return vocab_parallel_cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), tp_);
  }
  const StreamLayout layout = layout_for(tokens.size(1));
  at::Tensor hidden = final_hidden(tokens, layout);
  LinearCrossEntropyOptions o;
  o.chunk_tokens = exec_.loss_chunk_tokens;
  o.vocab_start = tp_.rank * local_vocab_;
  o.vocab_valid = std::clamp<int64_t>(cfg_.vocab_size - o.vocab_start, 0, local_vocab_);
  o.fused = fused_;
  o.tp = tp_.size > 1 ? tp_.comm : nullptr;
  // Under TP the hidden state enters a vocabulary-parallel op (every token on every rank).
  at::Tensor h = lm_head->enter(hidden, layout);
  h = h.reshape({-1, h.size(-1)});
  return linear_cross_entropy(h, lm_head->weight, targets.reshape({-1}), o);
}

}  // namespace yt
