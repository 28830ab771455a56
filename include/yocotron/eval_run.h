// Multiple-choice tasks evaluated on a model, shared out over data-parallel ranks: each rank
// tokenizes and scores the items i with i % dp == dp_rank, the per-choice log-likelihoods are summed
// over the ranks (each value comes from exactly one rank, so the sum is exact) and every rank
// reports the same numbers as one process. `yocotron eval` and the trainer's eval_tasks use it.
#pragma once
#include <mpi.h>

#include <functional>
#include <optional>
#include <vector>

#include "yocotron/decoder.h"
#include "yocotron/eval_metrics.h"
#include "yocotron/eval_tasks.h"
#include "yocotron/tokenizer_client.h"

namespace yt {

struct EvalShard {
  int dp_rank = 0, dp = 1;
  MPI_Comm comm = MPI_COMM_SELF;  // the data-parallel ranks (MPI_COMM_SELF for one)
  bool owns(size_t item) const { return static_cast<int>(item % static_cast<size_t>(dp)) == dp_rank; }
};

// A task with this rank's items tokenized (the others' left empty), ready to score any number of times.
struct TokenizedTask {
  McTask task;
  std::vector<std::vector<TokenizedRequest>> requests;  // per item, per choice
};
TokenizedTask tokenize_task(McTask task, TokenizerClient& tok, const EvalShard& shard);

struct ScoredTask {
  TaskResult result;
  std::vector<std::vector<double>> lls;  // per item, per choice: every item's, on every rank
};

// Scores a tokenized task (no autograd, the model's own device and dtype). `stop` must give the
// same answer on every rank (it may be collective: it is asked equally often on each); nullopt when
// it said stop. Collective over shard.comm.
std::optional<ScoredTask> score_task(Decoder& model, const TokenizedTask& t, const EvalShard& shard, int64_t batch_items,
                                     const std::function<bool()>& stop = {},
                                     const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace yt
