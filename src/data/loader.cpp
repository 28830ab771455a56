#include "yocotron/loader.h"

#include "yocotron/str.h"

namespace yt {

at::Tensor gather_samples(const TokenDataset& ds, const std::vector<uint64_t>& samples, int64_t seq_len, bool pin) {
  auto opts = at::TensorOptions().dtype(at::kLong).pinned_memory(pin);
  auto out = at::empty({static_cast<int64_t>(samples.size()), seq_len + 1}, opts);
  int64_t* p = out.data_ptr<int64_t>();
  for (size_t i = 0; i < samples.size(); ++i)
    ds.copy_tokens(samples[i] * static_cast<uint64_t>(seq_len), static_cast<uint64_t>(seq_len + 1), p + i * (seq_len + 1));
  return out;
}

TrainLoader::TrainLoader(std::shared_ptr<const TokenDataset> ds, LoaderOptions opts, uint64_t consumed_samples)
    : ds_(std::move(ds)), opts_(opts), start_(consumed_samples) {
  uint64_t n = ds_->n_samples(opts_.seq_len);
  if (n < static_cast<uint64_t>(opts_.layout.global_batch))
    throw std::runtime_error(cat(ds_->split_dir(), ": too small for one batch: ", ds_->n_tokens(), " tokens make ", n,
                                 " samples of ", opts_.seq_len, "+1 tokens, train.global_batch needs ",
                                 opts_.layout.global_batch));
  worker_ = std::thread([this] { run(); });
}

TrainLoader::~TrainLoader() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void TrainLoader::run() {
  const uint64_t n = ds_->n_samples(opts_.seq_len);
  uint64_t batch_start = start_;
  int64_t micro = 0;
  try {
    while (true) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || static_cast<int64_t>(ready_.size()) < opts_.prefetch; });
        if (stop_) return;
      }
      auto ids = micro_batch_samples(batch_start, micro, opts_.layout, n, opts_.seed);
      at::Tensor batch = gather_samples(*ds_, ids, opts_.seq_len, opts_.pin_memory);
      if (++micro == opts_.layout.accum_steps()) micro = 0, batch_start += static_cast<uint64_t>(opts_.layout.global_batch);
      {
        std::lock_guard<std::mutex> g(mu_);
        ready_.push_back(std::move(batch));
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> g(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

at::Tensor TrainLoader::next() {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !ready_.empty() || error_; });
  if (ready_.empty() && error_) std::rethrow_exception(error_);
  at::Tensor b = std::move(ready_.front());
  ready_.pop_front();
  lk.unlock();
  cv_.notify_all();
  return b;
}

at::Tensor eval_batch(const TokenDataset& ds, int64_t seq_len, int64_t micro_batch, int64_t dp_rank, int64_t dp_size,
                      int64_t index) {
  uint64_t n = ds.n_samples(seq_len);
  if (n == 0)
    throw std::runtime_error(cat(ds.split_dir(), ": too small for one evaluation sample of ", seq_len + 1, " tokens"));
  std::vector<uint64_t> ids;
  uint64_t first = static_cast<uint64_t>((index * dp_size + dp_rank) * micro_batch);
  for (int64_t j = 0; j < micro_batch; ++j) ids.push_back((first + static_cast<uint64_t>(j)) % n);
  return gather_samples(ds, ids, seq_len);
}

}  // namespace yt
