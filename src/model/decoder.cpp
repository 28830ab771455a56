#include "yocotron/decoder.h"

#include <set>

#include "yocotron/kv_mix.h"
#include "yocotron/str.h"
#include "yocotron/tp_ops.h"

namespace yt {
namespace {

torch::nn::Linear linear(int64_t in, int64_t out) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false));
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool is_mix_weight(const std::string& name) { return ends_with(name, "k_mix") || ends_with(name, "v_mix"); }

}  // namespace

// ---- RMSNorm ----------------------------------------------------------------------------------

RmsNormImpl::RmsNormImpl(int64_t dim, double eps) : eps_(eps) {
  weight = register_parameter("weight", torch::ones({dim}));
}

at::Tensor RmsNormImpl::forward(const at::Tensor& x) { return rms_norm(x, weight, eps_); }

// ---- Attention --------------------------------------------------------------------------------

AttentionImpl::AttentionImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp)
    : plan_(plan),
      head_dim_(cfg.head_dim()),
      local_heads_(cfg.n_heads / tp.size),
      kernel_(parse_attention_kernel(cfg.attention)),
      tp_(tp) {
  int64_t d = cfg.d_model;
  q_proj = register_module("q_proj", linear(d, local_heads_ * head_dim_));
  if (plan.own_k_heads > 0) k_proj = register_module("k_proj", linear(d, plan.own_k_heads / tp.size * head_dim_));
  if (plan.own_v_heads > 0) v_proj = register_module("v_proj", linear(d, plan.own_v_heads / tp.size * head_dim_));
  o_proj = register_module("o_proj", linear(local_heads_ * head_dim_, d));
  auto weights = [&](const KvSource& s) {
    if (!s.has_weights()) return at::Tensor();
    auto shape = s.kind == KvCombine::ScalarMix ? std::vector<int64_t>{2} : std::vector<int64_t>{2, head_dim_ / 2};
    return torch::zeros(shape);
  };
  if (plan.k.has_weights()) {
    k_mix = weights(plan.k);
    k_mix = plan.k.learnable ? register_parameter("k_mix", k_mix) : register_buffer("k_mix", k_mix);
  }
  if (plan.v.has_weights()) {
    v_mix = weights(plan.v);
    v_mix = plan.v.learnable ? register_parameter("v_mix", v_mix) : register_buffer("v_mix", v_mix);
  }
}

at::Tensor AttentionImpl::heads(const at::Tensor& projected, int64_t n_heads) const {
  return projected.view({projected.size(0), projected.size(1), n_heads, head_dim_}).transpose(1, 2);
}

at::Tensor AttentionImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                  std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v) {
  auto xin = tp::copy_to_region(x, tp_);
  auto q = apply_rope(heads(q_proj(xin), local_heads_), cos, sin);
  at::Tensor own_k, own_v;
  if (k_proj) own_k = apply_rope(heads(k_proj(xin), k_proj->weight.size(0) / head_dim_), cos, sin);
  if (v_proj) own_v = heads(v_proj(xin), v_proj->weight.size(0) / head_dim_);
  finals_k.push_back(combine_kv(plan_.k, own_k, finals_k, k_mix));
  finals_v.push_back(combine_kv(plan_.v, own_v, finals_v, v_mix));
  auto out = causal_attention(q, finals_k.back(), finals_v.back(), kernel_);
  out = out.transpose(1, 2).reshape({x.size(0), x.size(1), local_heads_ * head_dim_});
  return tp::reduce_from_region(o_proj(out), tp_);
}

// ---- MLP (SwiGLU) -----------------------------------------------------------------------------

MlpImpl::MlpImpl(const ModelConfig& cfg, const TpContext& tp) : tp_(tp) {
  int64_t f = cfg.d_ffn / tp.size;
  gate_proj = register_module("gate_proj", linear(cfg.d_model, f));
  up_proj = register_module("up_proj", linear(cfg.d_model, f));
  down_proj = register_module("down_proj", linear(f, cfg.d_model));
}

at::Tensor MlpImpl::forward(const at::Tensor& x) {
  auto xin = tp::copy_to_region(x, tp_);
  return tp::reduce_from_region(down_proj(at::silu(gate_proj(xin)) * up_proj(xin)), tp_);
}

// ---- Block ------------------------------------------------------------------------------------

BlockImpl::BlockImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp) {
  input_layernorm = register_module("input_layernorm", RmsNorm(cfg.d_model, cfg.norm_eps));
  self_attn = register_module("self_attn", Attention(cfg, plan, tp));
  post_attention_layernorm = register_module("post_attention_layernorm", RmsNorm(cfg.d_model, cfg.norm_eps));
  mlp = register_module("mlp", Mlp(cfg, tp));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                              std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, finals_k, finals_v);
  return h + mlp(post_attention_layernorm(h));
}

// ---- Decoder ----------------------------------------------------------------------------------

DecoderImpl::DecoderImpl(const ModelConfig& cfg, TpContext tp)
    : cfg_(cfg), plan_(make_kv_plan(cfg)), tp_(tp), local_vocab_(ceil_div(cfg.vocab_size, tp.size)) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(local_vocab_, cfg.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (const auto& lp : plan_.layers) layers->push_back(Block(cfg, lp, tp));
  norm = register_module("norm", RmsNorm(cfg.d_model, cfg.norm_eps));
  lm_head = register_module("lm_head", linear(cfg.d_model, local_vocab_));
  auto [c, s] = rope_tables(cfg.head_dim(), cfg.max_seq_len, cfg.rope_theta);
  rope_cos_ = register_buffer("rope_cos", c);
  rope_sin_ = register_buffer("rope_sin", s);
  describe_shards();
  init_weights(0);
}

void DecoderImpl::describe_shards() {
  const int64_t d = cfg_.d_model, dh = cfg_.head_dim();
  const int64_t vocab_padded = local_vocab_ * tp_.size;
  for (const auto& item : named_parameters()) {
    const std::string& name = item.key();
    ShardSpec s;
    s.global_shape = item.value().sizes().vec();
    auto row_split = [&](int64_t rows) {
      s.split_dim = 0;
      s.global_shape = {rows, d};
      s.padded_size = rows;
    };
    if (name == "embed_tokens.weight" || name == "lm_head.weight") {
      row_split(cfg_.vocab_size);
      s.padded_size = vocab_padded;
    } else if (ends_with(name, "q_proj.weight")) {
      row_split(cfg_.n_heads * dh);
    } else if (ends_with(name, "k_proj.weight") || ends_with(name, "v_proj.weight")) {
      int layer = std::stoi(split(name, '.')[1]);
      const auto& lp = plan_.layers[layer];
      row_split((ends_with(name, "k_proj.weight") ? lp.own_k_heads : lp.own_v_heads) * dh);
    } else if (ends_with(name, "gate_proj.weight") || ends_with(name, "up_proj.weight")) {
      row_split(cfg_.d_ffn);
    } else if (ends_with(name, "o_proj.weight") || ends_with(name, "down_proj.weight")) {
      int64_t cols = ends_with(name, "o_proj.weight") ? cfg_.n_heads * dh : cfg_.d_ffn;
      s.split_dim = 1;
      s.global_shape = {d, cols};
      s.padded_size = cols;
    } else if (ends_with(name, "norm.weight")) {
      s.decay = false;
    } else if (is_mix_weight(name)) {
      int layer = std::stoi(split(name, '.')[1]);
      const auto& src = ends_with(name, "k_mix") ? plan_.layers[layer].k : plan_.layers[layer].v;
      s.tp_partial_grad = true;
      s.keep_fp32 = true;
      s.decay = src.weight_decay;
    }
    specs_[name] = s;
  }
}

at::Tensor local_shard(const at::Tensor& global, const ShardSpec& spec, int rank, int size) {
  if (spec.split_dim < 0) return global;
  at::Tensor full = global;
  int64_t pad = spec.padded_size - spec.global_shape[spec.split_dim];
  if (pad > 0) {
    auto shape = full.sizes().vec();
    shape[spec.split_dim] = pad;
    full = torch::cat({full, torch::zeros(shape, full.options())}, spec.split_dim);
  }
  return full.chunk(size, spec.split_dim)[rank];
}

std::vector<std::pair<std::string, at::Tensor>> DecoderImpl::state_tensors() {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& p : named_parameters()) out.emplace_back(p.key(), p.value());
  for (auto& b : named_buffers())
    if (is_mix_weight(b.key())) out.emplace_back(b.key(), b.value());
  return out;
}

std::map<std::string, at::Tensor> DecoderImpl::global_state() {
  std::map<std::string, at::Tensor> out;
  for (auto& [name, t] : state_tensors()) {
    auto it = specs_.find(name);
    if (it == specs_.end() || it->second.split_dim < 0) {
      out[name] = t.detach();
      continue;
    }
    const ShardSpec& spec = it->second;
    at::Tensor full = tp::gather_shards(t.detach(), spec.split_dim, tp_);
    out[name] = full.narrow(spec.split_dim, 0, spec.global_shape[spec.split_dim]);
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
    at::Tensor full;
    if (ends_with(name, "norm.weight")) {
      full = torch::ones(spec.global_shape);
    } else if (is_mix_weight(name)) {
      int layer = std::stoi(split(name, '.')[1]);
      const auto& src = ends_with(name, "k_mix") ? plan_.layers[layer].k : plan_.layers[layer].v;
      full = initial_kv_weights(src, cfg_.head_dim(), gen);
    } else {
      full = at::normal(0.0, cfg_.init_std, spec.global_shape, gen, at::TensorOptions().dtype(at::kFloat));
    }
    item.value().copy_(local_shard(full, spec, tp_.rank, tp_.size));
  }
  for (auto& item : named_buffers()) {  // fixed (non-learnable) mixing weights
    const std::string& name = item.key();
    if (!is_mix_weight(name)) continue;
    int layer = std::stoi(split(name, '.')[1]);
    const auto& src = ends_with(name, "k_mix") ? plan_.layers[layer].k : plan_.layers[layer].v;
    item.value().copy_(initial_kv_weights(src, cfg_.head_dim(), at::detail::createCPUGenerator(seed)));
  }
}

at::Tensor DecoderImpl::forward(const at::Tensor& tokens) {
  TORCH_CHECK(tokens.dim() == 2, "Decoder: tokens must be [batch, time]");
  TORCH_CHECK(tokens.size(1) <= cfg_.max_seq_len, "Decoder: sequence of ", tokens.size(1),
              " tokens exceeds model.max_seq_len=", cfg_.max_seq_len);
  auto x = tp::embedding(tokens, embed_tokens->weight, tp_);
  std::vector<at::Tensor> finals_k, finals_v;
  finals_k.reserve(layers->size());
  finals_v.reserve(layers->size());
  for (const auto& layer : *layers) x = layer->as<Block>()->forward(x, rope_cos_, rope_sin_, finals_k, finals_v);
  auto logits = lm_head(tp::copy_to_region(norm(x), tp_));
  int64_t first_pad = cfg_.vocab_size - tp_.rank * local_vocab_;  // local index of the first padding row
  if (first_pad < local_vocab_) {
    logits = logits.clone();
    logits.narrow(-1, std::max<int64_t>(first_pad, 0), local_vocab_ - std::max<int64_t>(first_pad, 0))
        .fill_(-std::numeric_limits<float>::infinity());
  }
  return logits;
}

at::Tensor DecoderImpl::loss(const at::Tensor& tokens, const at::Tensor& targets) {
  auto logits = forward(tokens);
  return tp::cross_entropy(logits.reshape({-1, logits.size(-1)}), targets.reshape({-1}), tp_);
}

}  // namespace yt
