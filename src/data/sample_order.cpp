#include "yocotron/sample_order.h"

#include <stdexcept>

namespace yt {
namespace {

uint64_t mix64(uint64_t x) {  // splitmix64 finaliser
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

SamplePermutation::SamplePermutation(uint64_t n, uint64_t seed, uint64_t epoch)
    : n_(n), key_(mix64(mix64(seed) ^ mix64(epoch + 0x51ED270B))) {
  int bits = 2;
  while ((1ull << bits) < n) bits += 2;  // an even number of bits covering [0, n)
  half_bits_ = bits / 2;
}

uint64_t SamplePermutation::operator()(uint64_t i) const {
  if (i >= n_) throw std::out_of_range("SamplePermutation: index out of range");
  const uint64_t mask = (1ull << half_bits_) - 1;
  uint64_t x = i;
  do {  // cycle-walk: the Feistel domain is < 4n, so this ends after a few rounds on average
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t round = 0; round < 6; ++round) {
      uint64_t f = mix64(right ^ key_ ^ (round * 0xA24BAED4963EE407ull)) & mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

std::vector<uint64_t> micro_batch_samples(uint64_t batch_start, int64_t micro, const BatchLayout& l,
                                          uint64_t n_samples, uint64_t seed) {
  if (n_samples == 0) throw std::invalid_argument("no samples");
  const int64_t per_rank = l.global_batch / l.dp_size;
  const uint64_t first = batch_start + static_cast<uint64_t>(l.dp_rank * per_rank + micro * l.micro_batch);
  std::vector<uint64_t> out;
  out.reserve(static_cast<size_t>(l.micro_batch));
  uint64_t cached_epoch = UINT64_MAX;
  SamplePermutation perm(n_samples, seed, 0);
  for (int64_t j = 0; j < l.micro_batch; ++j) {
    uint64_t g = first + static_cast<uint64_t>(j);
    uint64_t epoch = g / n_samples;
    if (epoch != cached_epoch) {
      perm = SamplePermutation(n_samples, seed, epoch);
      cached_epoch = epoch;
    }
    out.push_back(perm(g % n_samples));
  }
  return out;
}

}  // namespace yt
