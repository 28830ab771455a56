// The decoder at inference: one forward call continues a KV cache (prefill: the whole prompt;
// decode: one token per sequence). Layers reuse Block::forward; only attention differs from
// training: new K/V are written where the plan stores them, and every other layer's K/V over all
// slots is rebuilt from the stored ones by the same combine rules as in training (kv_mix.h).
#include <algorithm>

#include "yocotron/decoder.h"
#include "yocotron/kv_cache.h"
#include "yocotron/kv_mix.h"
#include "yocotron/str.h"

namespace yt {
namespace {

// RoPE with per-token tables: x [B, T, H, D], cos/sin [B, T, 1, D] (fp32).
at::Tensor rope_per_token(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(3) / 2;
  auto x1 = x.narrow(-1, 0, half), x2 = x.narrow(-1, half, half);
  auto rotated = at::cat({-x2, x1}, -1);
  return x * cos.to(x.scalar_type()) + rotated * sin.to(x.scalar_type());
}

// RoPE of the last T of a cached step's new tokens: x [B, T, h, D].
at::Tensor rope_new(const at::Tensor& x, const CachedStep& step, int64_t T, bool fused) {
  if (step.cos.defined())
    return rope_per_token(x, step.cos.narrow(1, step.new_tokens - T, T), step.sin.narrow(1, step.new_tokens - T, T));
  return apply_rope(x, step.rope_table_cos, step.rope_table_sin, fused, step.position_offset + step.new_tokens - T);
}

// Which keys each new token of a sliding-window layer may see: [B, 1, T, W + T] over the ring's W
// slots, then the T new tokens. Ring index r holds slot s_r (the newest slot < past with s % W == r);
// a key is visible if it is a token of the sequence (not padding, except a padding query's own slot)
// and fewer than W slots back.
at::Tensor window_mask(int64_t past, int64_t T, int64_t W, const at::Tensor& pad) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(pad.device());
  const int64_t B = pad.size(0);
  auto r = at::arange(W, opts), back = past - 1 - r;
  auto ring_slot = at::where(back >= 0, past - 1 - back.remainder(W), at::full_like(r, -1));  // [W]
  auto q = at::arange(past, past + T, opts).view({1, T, 1}), p = pad.view({B, 1, 1});
  auto s = ring_slot.view({1, 1, W});
  auto ring_ok = (s >= 0) & (s >= p) & (q - s < W);  // [B, T, W]
  auto u = at::arange(past, past + T, opts).view({1, 1, T});
  auto new_ok = (u <= q) & (q - u < W) & ((u >= p) | (u == q));  // [B, T, T]
  return at::cat({ring_ok.expand({B, T, W}), new_ok.expand({B, T, T})}, 2).unsqueeze(1);
}

}  // namespace

at::Tensor AttentionImpl::attend_cached_window(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               CachedStep& step) {
  KvCache& cache = *step.cache;
  at::Tensor& rk = cache.window_k(step.loop, plan_.layer);
  at::Tensor& rv = cache.window_v(step.loop, plan_.layer);
  const int64_t B = q.size(0), T = q.size(2), R = rk.size(2), past = cache.length();
  at::Tensor out;  // [B, h, T, D]
  if (!step.window_mask.defined()) out = window_attention(q, k, v, plan_.window, kernel_);  // fresh unpadded prefill
  else out = masked_attention(q, at::cat({rk, k}, 2), at::cat({rv, v}, 2), step.window_mask, kernel_);
  // Keep the newest min(T, W) tokens: slot s goes to ring index s % W (distinct indices).
  const int64_t keep = std::min(T, R);
  auto idx = at::arange(past + T - keep, past + T, at::TensorOptions().dtype(at::kLong).device(k.device())).remainder(R);
  rk.index_copy_(2, idx, k.narrow(2, T - keep, keep));
  rv.index_copy_(2, idx, v.narrow(2, T - keep, keep));
  out = out.transpose(1, 2).reshape({B, T, local_heads_ * head_dim_});
  return o_proj->forward(out, StreamLayout::Replicated);
}

at::Tensor AttentionImpl::attend_cached(const std::vector<at::Tensor>& projected, CachedStep& step, bool fused) {
  const int64_t B = projected[0].size(0), T = projected[0].size(1), D = head_dim_;
  const int layer = plan_.layer;
  KvCache& cache = *step.cache;
  const int64_t slots = cache.length() + step.new_tokens;
  // [B, T, h, D] -> RoPE at the positions of these T tokens (the last T of the call's new tokens).
  auto rope = [&](const at::Tensor& x) { return plan_.rope ? rope_new(x, step, T, fused) : x; };
  auto q = rope(projected[0].view({B, T, local_heads_, D})).transpose(1, 2);  // [B, h, T, D]
  size_t next = 1;
  at::Tensor own_k, own_v;
  if (k_proj) own_k = rope(projected[next++].view({B, T, -1, D})).transpose(1, 2);
  if (v_proj) own_v = projected[next++].view({B, T, -1, D}).transpose(1, 2);
  if (plan_.mixer == Mixer::Retention) {
    at::Tensor k = own_k;
    if (cache.padded()) {  // padding tokens must not enter the state: their keys are zeroed
      auto slot = at::arange(cache.length(), cache.length() + T, at::TensorOptions().dtype(at::kLong).device(k.device()));
      auto real = slot.view({1, 1, T, 1}) >= cache.pad_tensor().view({B, 1, 1, 1});
      k = k * real.to(k.scalar_type());
    }
    return retention_output(q, k, own_v, projected[next], projected[next + 1], &cache.retention_state(step.loop, layer),
                            StreamLayout::Replicated);
  }
  if (plan_.window > 0) return attend_cached_window(q, own_k, own_v, step);

  // This layer's K (or V) over every slot, storing the new tokens' part where the plan says.
  auto resolve = [&](const KvSource& src, const at::Tensor& own, std::vector<at::Tensor>& news,
                     std::vector<at::Tensor>& fulls, const at::Tensor& mix, bool is_k) {
    if (src.kind == KvCombine::Global) {  // the cross-decoder reads the one global K^/V^
      news.push_back(at::Tensor());
      fulls.push_back(is_k ? cache.global_keys(slots) : cache.global_values(slots));
      return fulls.back();
    }
    const bool stores = is_k ? cache.stores_k(layer) : cache.stores_v(layer);
    TORCH_CHECK(!(stores && step.last_only), "early exit past a layer that stores K/V (layer ", layer, ")");
    at::Tensor fresh = step.last_only ? at::Tensor() : combine_kv(src, own, news, mix, fused);  // [B, H_kv, T, D]
    news.push_back(fresh);
    at::Tensor full;
    if (stores) {
      // A spliced layer stores only its own heads; the borrowed ones stay in their layer's cache.
      const at::Tensor& stored = src.kind == KvCombine::HeadSplice ? own : fresh;
      const bool at_slot = step.slot.defined();
      if (is_k) at_slot ? cache.write_k_at(layer, stored, step.slot) : cache.write_k(layer, stored);
      else at_slot ? cache.write_v_at(layer, stored, step.slot) : cache.write_v(layer, stored);
      const int64_t n = at_slot ? cache.capacity() : slots;
      at::Tensor all = is_k ? cache.keys(layer, n) : cache.values(layer, n);
      full = src.kind == KvCombine::HeadSplice ? combine_kv(src, all, fulls, mix, fused) : all;
    } else {
      full = combine_kv(src, at::Tensor(), fulls, mix, fused);
    }
    fulls.push_back(full);
    return full;
  };
  at::Tensor k = resolve(plan_.k, own_k, step.new_k, step.full_k, k_mix, true);
  at::Tensor v = resolve(plan_.v, own_v, step.new_v, step.full_v, v_mix, false);

  at::Tensor out;  // [B, h, T, D]
  if (step.causal && !step.last_only) {
    out = causal_attention(q, k, v, kernel_);
  } else {
    at::Tensor mask = step.mask;
    if (mask.defined() && step.last_only) mask = mask.narrow(2, mask.size(2) - 1, 1);
    out = masked_attention(q, k, v, mask, kernel_);
  }
  out = out.transpose(1, 2).reshape({B, T, local_heads_ * D});
  return o_proj->forward(out, StreamLayout::Replicated);
}

void DecoderImpl::to_inference(const at::Device& device, at::ScalarType dtype) {
  to(device, dtype);
  torch::NoGradGuard no_grad;
  // Mixing weights stay fp32, as the training step keeps them (ShardSpec::keep_fp32).
  for (auto& [name, t] : mix_tensors()) t.set_data(t.to(at::kFloat));
  auto [c, s] = rope_tables(cfg_.head_dim(), cfg_.max_seq_len, cfg_.rope_theta, cfg_.yoco.rope_freqs == "linspace");
  rope_cos_.set_data(c.to(device));
  rope_sin_.set_data(s.to(device));
}

int64_t DecoderImpl::early_exit_layer() const {
  if (plan_.has_global_kv()) return plan_.self_layers;  // the global K^/V^ is complete after the self-decoder
  int64_t first = static_cast<int64_t>(plan_.layers.size());
  while (first > 0 && plan_.layers[first - 1].cached_k_heads == 0 && plan_.layers[first - 1].cached_v_heads == 0) --first;
  return first;
}

at::Tensor DecoderImpl::forward_cached(const at::Tensor& tokens, KvCache& cache, bool all_logits, bool early_exit) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == cache.batch(), "forward_cached: tokens must be [", cache.batch(),
              ", T]");
  const int64_t B = tokens.size(0), T = tokens.size(1), past = cache.length(), slots = past + T;
  if (T < 1) throw std::invalid_argument("forward_cached: no tokens");
  if (slots > cache.capacity())
    throw std::out_of_range(cat("KV cache: ", slots, " tokens exceed its capacity of ", cache.capacity()));
  const int64_t min_pad = *std::min_element(cache.pad().begin(), cache.pad().end());
  if (slots - min_pad > cfg_.max_seq_len)
    throw std::out_of_range(cat("a sequence of ", slots - min_pad, " tokens exceeds model.max_seq_len=", cfg_.max_seq_len));

  CachedStep step;
  step.cache = &cache;
  step.new_tokens = T;
  step.rope_table_cos = rope_cos_;
  step.rope_table_sin = rope_sin_;
  step.position_offset = past;
  const auto dev = tokens.device();
  if (cache.padded()) {
    // Sequence b's slot s holds position s - pad[b]; padding slots (negative) take position 0.
    auto slot = at::arange(past, slots, at::TensorOptions().dtype(at::kLong).device(dev));  // [T]
    auto pos = (slot.unsqueeze(0) - cache.pad_tensor().unsqueeze(1)).clamp_min(0);           // [B, T]
    step.cos = rope_cos_.index_select(0, pos.reshape({-1})).view({B, T, 1, -1});
    step.sin = rope_sin_.index_select(0, pos.reshape({-1})).view({B, T, 1, -1});
    // Query slot s sees keys j in [pad[b], s]; a padding query sees itself only, so no row is empty.
    auto key = at::arange(slots, at::TensorOptions().dtype(at::kLong).device(dev));  // [slots]
    auto q = slot.view({1, T, 1}), j = key.view({1, 1, slots}), pad = cache.pad_tensor().view({B, 1, 1});
    step.mask = ((j <= q) & ((j >= pad) | (j == q))).unsqueeze(1);  // [B, 1, T, slots]
  } else if (past == 0) {
    step.causal = true;
  } else if (T > 1) {
    auto q = at::arange(past, slots, at::TensorOptions().dtype(at::kLong).device(dev)).view({T, 1});
    step.mask = (at::arange(slots, q.options()).view({1, slots}) <= q).view({1, 1, T, slots});
  }

  return run_cached_layers(tokens, step, all_logits, early_exit);
}

at::Tensor DecoderImpl::forward_decode_at(const at::Tensor& tokens, KvCache& cache, const at::Tensor& slot) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(tokens.dim() == 2 && tokens.size(0) == cache.batch() && tokens.size(1) == 1,
              "forward_decode_at: tokens must be [", cache.batch(), ", 1]");
  if (plan_.has_global_kv())  // its window rings, retention states and K^/V^ are addressed from the host
    throw std::invalid_argument(cat("forward_decode_at: ", cfg_.arch, " decodes through forward_cached only"));
  const int64_t B = cache.batch(), S = cache.capacity();
  CachedStep step;
  step.cache = &cache;
  step.new_tokens = 1;
  step.slot = slot;
  // Sequence b's slot s holds position s - pad[b]; it sees slots [pad[b], s].
  at::Tensor pos = (slot.view({1, 1}) - cache.pad_tensor().view({B, 1})).clamp_min(0);  // [B, 1]
  step.cos = rope_cos_.index_select(0, pos.reshape({-1})).view({B, 1, 1, -1});
  step.sin = rope_sin_.index_select(0, pos.reshape({-1})).view({B, 1, 1, -1});
  at::Tensor key = at::arange(S, slot.options()).view({1, S});                              // [1, S]
  step.mask = ((key <= slot.view({1, 1})) & (key >= cache.pad_tensor().view({B, 1}))).view({B, 1, 1, S});
  return run_cached_layers(tokens, step, false, false);
}

at::Tensor DecoderImpl::run_cached_layers(const at::Tensor& tokens, CachedStep& step, bool all_logits, bool early_exit) {
  KvCache& cache = *step.cache;
  const int64_t T = tokens.size(1), past = cache.length();
  BlockOpOptions opt;
  opt.fused = fused_;
  const int64_t exit_at = early_exit && !all_logits ? early_exit_layer() : static_cast<int64_t>(layers->size());
  at::Tensor x = embed(tokens, StreamLayout::Replicated), delta;  // [B, T, d]: inference is never sequence-sharded
  std::vector<at::Tensor> unused_k, unused_v;
  int64_t first = 0;
  if (plan_.has_global_kv()) {
    // Original YOCO: the (looped) self-decoder over every new token, then K^, V^ into the cache;
    // with early exit the cross-decoder runs for the last position only.
    bool windows = false;
    for (const auto& lp : plan_.layers) windows = windows || lp.window > 0;
    if (windows && (past > 0 || cache.padded())) step.window_mask = window_mask(past, T, plan_.layers[0].window, cache.pad_tensor());
    first = plan_.self_layers;
    for (int loop = 0; loop < plan_.loops; ++loop) {
      step.loop = loop;
      for (int64_t i = 0; i < first; ++i)
        std::tie(x, delta) = layers[i]->as<Block>()->forward(x, delta, {}, {}, unused_k, unused_v, opt, &step);
    }
    auto g = project_global_kv(x, delta, opt, [&](const at::Tensor& t) { return rope_new(t, step, T, fused_); });
    cache.write_global(g.k, g.v);
    x = g.stream;
    delta = at::Tensor();
    if (exit_at == first && T > 1) {
      x = x.narrow(1, T - 1, 1).contiguous();
      step.last_only = true;
    }
  }
  for (int64_t i = first; i < static_cast<int64_t>(layers->size()); ++i) {
    if (i == exit_at && T > 1 && !plan_.has_global_kv()) {
      // Only the last position's output is wanted and no later layer writes the cache.
      x = x.narrow(1, T - 1, 1).contiguous();
      delta = delta.narrow(1, T - 1, 1).contiguous();
    }
    step.last_only = step.last_only || (i >= exit_at && T > 1);
    std::tie(x, delta) = layers[i]->as<Block>()->forward(x, delta, {}, {}, unused_k, unused_v, opt, &step);
  }
  if (!step.slot.defined()) cache.advance(T);
  at::Tensor hidden = add_rms_norm(x, delta, norm->weight, cfg_.norm_eps, fused_).second;  // [B, T or 1, d]
  if (!all_logits) hidden = hidden.select(1, hidden.size(1) - 1);                         // [B, d]
  at::Tensor logits = lm_head->gather_outputs(lm_head->forward(hidden, StreamLayout::Replicated));
  return logits.narrow(-1, 0, cfg_.vocab_size);
}

}  // namespace yt
