// Text generation with a KV cache: prompts of different lengths are left-padded into one batch,
// prefilled in one forward call (with early exit where the plan allows it), then decoded one token
// per sequence per step, greedily (temperature 0) or by sampling with temperature, top-k and top-p.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "yocotron/decode_graph.h"
#include "yocotron/decoder.h"

namespace yt {

struct SamplingOptions {
  double temperature = 1.0;  // 0: greedy (argmax)
  int64_t top_k = 0;         // > 0: only the k most likely tokens
  double top_p = 1.0;        // < 1: only the smallest set of most likely tokens whose mass reaches p
  int64_t vocab_limit = 0;   // > 0: only ids below it (a model vocabulary padded past its tokenizer's)
};

// Next token per sequence [B] (int64, on the CPU) from last-position logits [B, V]. Sampling draws
// from `gen` (a CPU generator), so a seed gives the same tokens on every device and TP rank.
at::Tensor choose_next_tokens(const at::Tensor& logits, const SamplingOptions& o, at::Generator& gen);

struct GenerationOptions {
  int64_t max_new_tokens = 64;
  SamplingOptions sampling;
  uint64_t seed = 0;
  int64_t eos_id = -1;      // a sequence stops after emitting it; -1: every sequence runs max_new_tokens
  bool early_exit = true;   // layers that store no K/V see only the last prompt token in prefill
  DecodeGraphs graphs = DecodeGraphs::Auto;  // decode steps replayed from a CUDA graph (decode_graph.h)
};

struct GenerationResult {
  std::vector<std::vector<int64_t>> tokens;  // generated ids per sequence (the EOS included)
  double prefill_ms = 0;       // prompts in to first tokens chosen, device synchronised
  double decode_ms = 0;        // every later step
  int64_t decode_tokens = 0;   // tokens chosen after the first ones, summed over running sequences
  int64_t kv_cache_bytes = 0;  // allocated for the whole batch
  bool cuda_graphs = false;    // the decode steps were replayed from a CUDA graph
  double decode_tokens_per_s() const { return decode_ms > 0 ? decode_tokens / (decode_ms / 1000.0) : 0.0; }
};

// Called once per step with each sequence's new token (-1 for a sequence that already stopped).
using OnTokens = std::function<void(const std::vector<int64_t>& chosen)>;

// Every prompt needs at least one token; the longest prompt plus max_new_tokens must fit in
// model.max_seq_len (std::invalid_argument otherwise).
GenerationResult generate(Decoder& model, const std::vector<std::vector<int64_t>>& prompts, const GenerationOptions& o,
                          const OnTokens& on_tokens = {});

}  // namespace yt
