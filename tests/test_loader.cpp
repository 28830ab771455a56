// The training loader over real shard files: contents, determinism, resume, DP slices, evaluation.
#include <set>

#include "catch.hpp"
#include "dataset_fixture.h"
#include "helpers.h"
#include "yocotron/loader.h"

using namespace yt;

namespace {

std::shared_ptr<const TokenDataset> dataset(uint64_t n_tokens) {
  auto dir = test::temp_dir("loader");
  std::vector<std::vector<uint32_t>> shards(3);
  uint64_t x = 88172645463325252ull;  // xorshift: no short period, so distinct samples differ
  for (uint64_t i = 0; i < n_tokens; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    shards[i * 3 / n_tokens].push_back(static_cast<uint32_t>(x % 1000));
  }
  return TokenDataset::open(test::make_dataset(dir, "train", shards, 1000));
}

// The micro-batches of steps [from, to) for one rank, concatenated per step in micro order.
std::vector<at::Tensor> steps(std::shared_ptr<const TokenDataset> ds, LoaderOptions o, int64_t from, int64_t to) {
  TrainLoader loader(ds, o, static_cast<uint64_t>(from * o.layout.global_batch));
  std::vector<at::Tensor> out;
  for (int64_t s = from; s < to; ++s) {
    std::vector<at::Tensor> micro;
    for (int64_t m = 0; m < loader.accum_steps(); ++m) micro.push_back(loader.next());
    out.push_back(at::cat(micro));
  }
  return out;
}

LoaderOptions options(int64_t global, int64_t micro, int64_t rank, int64_t dp, uint64_t seed = 9) {
  LoaderOptions o;
  o.seq_len = 16;
  o.layout = {global, micro, rank, dp};
  o.seed = seed;
  o.prefetch = 3;
  return o;
}

}  // namespace

TEST_CASE("a sample is seq_len + 1 consecutive tokens of the stream", "[loader]") {
  auto ds = dataset(5000);
  auto batch = gather_samples(*ds, {0, 7, ds->n_samples(16) - 1}, 16);
  REQUIRE(batch.sizes() == at::IntArrayRef({3, 17}));
  std::vector<int64_t> want(17);
  for (uint64_t row = 0; row < 3; ++row) {
    uint64_t id = row == 0 ? 0 : row == 1 ? 7 : ds->n_samples(16) - 1;
    ds->copy_tokens(id * 16, 17, want.data());
    for (int64_t j = 0; j < 17; ++j) CHECK(batch[row][j].item<int64_t>() == want[j]);
  }
}

TEST_CASE("loader: same seed, same batches; resuming at a step equals continuing", "[loader]") {
  auto ds = dataset(20000);  // 1249 samples: 16-sample batches cross epochs
  auto run1 = steps(ds, options(16, 4, 0, 1), 0, 100);
  auto run2 = steps(ds, options(16, 4, 0, 1), 0, 100);
  auto resumed = steps(ds, options(16, 4, 0, 1), 60, 100);
  auto other_seed = steps(ds, options(16, 4, 0, 1, 10), 0, 1);
  for (size_t s = 0; s < run1.size(); ++s) CHECK(torch::equal(run1[s], run2[s]));
  for (size_t s = 0; s < resumed.size(); ++s) CHECK(torch::equal(run1[60 + s], resumed[s]));
  CHECK(!torch::equal(run1[0], other_seed[0]));
  // One epoch sees every sample once.
  std::set<std::vector<int64_t>> rows;
  const int64_t per_epoch = static_cast<int64_t>(ds->n_samples(16)) / 16;
  for (int64_t s = 0; s < per_epoch; ++s)
    for (int64_t r = 0; r < 16; ++r) {
      auto row = run1[s][r].contiguous();
      rows.insert(std::vector<int64_t>(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + 17));
    }
  CHECK(rows.size() == static_cast<size_t>(per_epoch * 16));
}

TEST_CASE("loader: DP=1 and DP=2/4 yield the same global batches, ranks disjoint", "[loader]") {
  auto ds = dataset(12000);
  auto one = steps(ds, options(32, 8, 0, 1), 0, 12);
  for (int64_t dp : {2, 4}) {
    std::vector<std::vector<at::Tensor>> per_rank;
    for (int64_t r = 0; r < dp; ++r) per_rank.push_back(steps(ds, options(32, 4, r, dp), 0, 12));
    for (size_t s = 0; s < one.size(); ++s) {
      std::vector<at::Tensor> parts;
      for (int64_t r = 0; r < dp; ++r) parts.push_back(per_rank[r][s]);
      INFO("dp=" << dp << " step=" << s);
      CHECK(torch::equal(at::cat(parts), one[s]));
    }
  }
}

TEST_CASE("loader: a split too small for one batch is an error naming it", "[loader]") {
  auto ds = dataset(200);  // 12 samples of 16+1
  CHECK_THROWS_WITH(TrainLoader(ds, options(16, 4, 0, 1), 0), ContainsSubstring("too small for one batch"));
  CHECK_THROWS_WITH(TrainLoader(ds, options(16, 4, 0, 1), 0), ContainsSubstring("train.global_batch needs 16"));
}

TEST_CASE("evaluation batches: fixed, unshuffled, disjoint across ranks", "[loader]") {
  auto ds = dataset(3000);
  auto a = eval_batch(*ds, 16, 4, 0, 1, 0);
  auto b = eval_batch(*ds, 16, 4, 0, 1, 1);
  CHECK(torch::equal(a, gather_samples(*ds, {0, 1, 2, 3}, 16)));
  CHECK(torch::equal(b, gather_samples(*ds, {4, 5, 6, 7}, 16)));
  CHECK(torch::equal(at::cat({eval_batch(*ds, 16, 2, 0, 2, 0), eval_batch(*ds, 16, 2, 1, 2, 0)}), a));
}
