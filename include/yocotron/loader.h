// Batches for training and evaluation. The training loader prepares micro-batches on a background
// thread (into pinned memory when requested) in the order the step consumes them; what it yields
// depends only on (dataset, seed, consumed samples, layout), never on history, so a resume starts
// it at the checkpoint's consumed-samples counter.
#pragma once
#include <ATen/ATen.h>

#include <condition_variable>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>

#include "yocotron/dataset.h"
#include "yocotron/sample_order.h"

namespace yt {

struct LoaderOptions {
  int64_t seq_len = 128;
  BatchLayout layout;
  uint64_t seed = 0;
  int64_t prefetch = 4;  // micro-batches prepared ahead
  bool pin_memory = false;
};

// Tokens [samples.size(), seq_len + 1] (int64) of the given samples.
at::Tensor gather_samples(const TokenDataset& ds, const std::vector<uint64_t>& samples, int64_t seq_len, bool pin = false);

class TrainLoader {
 public:
  // Throws when the split cannot fill one global batch, naming the split and the sizes.
  TrainLoader(std::shared_ptr<const TokenDataset> ds, LoaderOptions opts, uint64_t consumed_samples);
  ~TrainLoader();
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;

  // The next micro-batch, [micro_batch, seq_len + 1]; blocks until it is ready.
  at::Tensor next();
  int64_t accum_steps() const { return opts_.layout.accum_steps(); }

 private:
  void run();
  std::shared_ptr<const TokenDataset> ds_;
  LoaderOptions opts_;
  uint64_t start_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<at::Tensor> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread worker_;
};

// Evaluation: a fixed, unshuffled pass over the split. Batch `index` (of this rank) holds samples
// [(index*dp + rank)*micro, +micro), wrapping around a split shorter than the pass.
at::Tensor eval_batch(const TokenDataset& ds, int64_t seq_len, int64_t micro_batch, int64_t dp_rank, int64_t dp_size,
                      int64_t index);

}  // namespace yt
