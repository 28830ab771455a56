#include "yocotron/generation.h"

#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <stdexcept>

#include "yocotron/kv_cache.h"
#include "yocotron/str.h"

namespace yt {
namespace {

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

at::Tensor choose_next_tokens(const at::Tensor& logits, const SamplingOptions& o, at::Generator& gen) {
  at::Tensor scores = logits.to(at::kFloat).to(at::kCPU);  // [B, V]
  if (o.vocab_limit > 0 && o.vocab_limit < scores.size(-1)) scores = scores.narrow(-1, 0, o.vocab_limit);
  // Below float's smallest normal the divisor itself rounds to 0: that is greedy.
  if (o.temperature < std::numeric_limits<float>::min()) return scores.argmax(-1);
  // Shifted so the largest score is 0 before dividing: a tiny temperature then sends the others to
  // -inf (greedy in the limit) instead of overflowing every score to inf (NaN after softmax).
  scores = (scores - std::get<0>(scores.max(-1, /*keepdim=*/true))) / o.temperature;
  const float minus_inf = -std::numeric_limits<float>::infinity();
  if (o.top_k > 0 && o.top_k < scores.size(-1)) {
    at::Tensor kth = std::get<0>(scores.topk(o.top_k, -1)).narrow(-1, o.top_k - 1, 1);  // [B, 1]
    scores = scores.masked_fill(scores < kth, minus_inf);
  }
  if (o.top_p < 1.0) {
    auto [sorted, order] = scores.sort(-1, /*descending=*/true);
    at::Tensor probs = sorted.softmax(-1);
    // Keep a token while the mass of the tokens before it is below p (the most likely always stays).
    at::Tensor before = probs.cumsum(-1) - probs;
    at::Tensor drop_sorted = before >= o.top_p;
    at::Tensor drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    scores = scores.masked_fill(drop, minus_inf);
  }
  return at::multinomial(scores.softmax(-1), 1, /*replacement=*/false, gen).squeeze(-1);
}

GenerationResult generate(Decoder& model, const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& o,
                          const OnTokens& on_tokens) {
  torch::NoGradGuard no_grad;
  if (prompts.empty()) throw std::invalid_argument("generate: no prompts");
  if (o.max_new_tokens < 1) throw std::invalid_argument("generate: max_new_tokens must be >= 1");
  const int64_t B = static_cast<int64_t>(prompts.size());
  int64_t longest = 0;
  for (const auto& p : prompts) {
    if (p.empty()) throw std::invalid_argument("generate: an empty prompt (every prompt needs at least one token)");
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
  }
  const int64_t max_len = model->config().max_seq_len;
  if (longest + o.max_new_tokens > max_len)
    throw std::invalid_argument(cat("a prompt of ", longest, " tokens plus ", o.max_new_tokens,
                                    " new tokens exceeds model.max_seq_len=", max_len));
  const at::Tensor any_weight = model->embed_tokens->weight;
  const auto options = any_weight.options();
  std::vector<int64_t> pad(B), flat(B * longest, 0);  // padding slots hold token 0 (never attended to)
  for (int64_t b = 0; b < B; ++b) {
    pad[b] = longest - static_cast<int64_t>(prompts[b].size());
    std::copy(prompts[b].begin(), prompts[b].end(), flat.begin() + b * longest + pad[b]);
  }
  KvCache cache(model->plan(), model->config().head_dim(), model->tp().size, B, longest + o.max_new_tokens, options, pad);
  at::Generator gen = at::detail::createCPUGenerator(o.seed);

  GenerationResult r;
  r.tokens.resize(B);
  r.kv_cache_bytes = cache.bytes();
  std::vector<bool> running(B, true);
  int64_t still_running = B;
  auto record = [&](const at::Tensor& chosen) {  // chosen [B] on the CPU
    std::vector<int64_t> step(B, -1);
    auto acc = chosen.accessor<int64_t, 1>();
    for (int64_t b = 0; b < B; ++b) {
      if (!running[b]) continue;
      step[b] = acc[b];
      r.tokens[b].push_back(acc[b]);
      if (acc[b] == o.eos_id || static_cast<int64_t>(r.tokens[b].size()) >= o.max_new_tokens) {
        running[b] = false;
        --still_running;
      }
    }
    if (on_tokens) on_tokens(step);
  };

  synchronize(any_weight.device());
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor input = at::tensor(flat, at::TensorOptions().dtype(at::kLong)).view({B, longest}).to(any_weight.device());
  at::Tensor chosen = choose_next_tokens(model->forward_cached(input, cache, false, o.early_exit), o.sampling, gen);
  r.prefill_ms = ms_since(t0);  // choosing moved the logits to the host: the device is done
  record(chosen);

  const bool graphs = o.graphs == DecodeGraphs::On || (o.graphs == DecodeGraphs::Auto && decode_graphs_pay(model, cache));
  DecodeStepper stepper(model, cache, graphs);
  r.cuda_graphs = stepper.uses_graph();
  t0 = std::chrono::steady_clock::now();
  while (still_running > 0) {
    int64_t running_before = still_running;
    at::Tensor logits = stepper.step(chosen.view({B, 1}));
    chosen = choose_next_tokens(logits, o.sampling, gen);
    record(chosen);
    r.decode_tokens += running_before;
  }
  r.decode_ms = ms_since(t0);
  return r;
}

}  // namespace yt
