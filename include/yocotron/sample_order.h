// The global sample order: a pure function of (seed, epoch, index). Global batch k holds global
// samples [k*B, (k+1)*B); each epoch visits every sample of the split once, in a pseudorandom
// order (a keyed Feistel permutation, O(1) memory); data-parallel rank r takes its contiguous slice
// of every global batch. A checkpoint stores only the number of consumed samples; resuming with
// another DP size yields the same global batches.
#pragma once
#include <cstdint>
#include <vector>

namespace yt {

class SamplePermutation {
 public:
  SamplePermutation(uint64_t n, uint64_t seed, uint64_t epoch);
  uint64_t operator()(uint64_t i) const;  // a bijection of [0, n)

 private:
  uint64_t n_, key_;
  int half_bits_;
};

struct BatchLayout {
  int64_t global_batch = 1;  // sequences per optimizer step, all ranks together
  int64_t micro_batch = 1;   // sequences per rank per micro-step
  int64_t dp_rank = 0;
  int64_t dp_size = 1;
  int64_t accum_steps() const { return global_batch / (micro_batch * dp_size); }
};

// Which samples of the split (indices into [0, n_samples)) form micro-step `micro` on this rank of
// the global batch that starts at global sample `batch_start` (= samples consumed before it).
std::vector<uint64_t> micro_batch_samples(uint64_t batch_start, int64_t micro, const BatchLayout& layout,
                                          uint64_t n_samples, uint64_t seed);

}  // namespace yt
