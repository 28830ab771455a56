// Log-likelihoods of tokenized multiple-choice requests under a model, computed as
// lm-eval-harness's _loglikelihood_tokens does (full forward, no early exit, left truncation to
// model.max_seq_len), but sharing work: the requests of an item that share their context tokens
// become one prefix, prefilled once into a KV cache that is then copied per choice, and only the
// continuations run per choice. Items are batched; a stop request is honoured between batches.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "yocotron/decoder.h"
#include "yocotron/eval_tasks.h"

namespace yt {

struct ScoreOptions {
  int64_t batch_items = 32;                 // items per forward
  std::function<bool()> stop;               // asked before every batch; true ends scoring (nullopt)
  // Given this process's number of batches, the number to run (asking `stop` before each): ranks
  // whose `stop` is collective agree on the largest here. Unset: this process's own.
  std::function<int64_t(int64_t)> agree_batches;
  std::function<void(int64_t done)> progress;  // after every batch: items scored so far
};

// Per item, per request: the summed log-probability of the continuation's tokens (fp32 log-softmax
// of the model's logits). nullopt when `stop` said so. A request whose continuation alone exceeds
// model.max_seq_len is a ConfigError.
std::optional<std::vector<std::vector<double>>> score_requests(Decoder& model,
                                                               const std::vector<std::vector<TokenizedRequest>>& items,
                                                               const ScoreOptions& o = {});

}  // namespace yt
