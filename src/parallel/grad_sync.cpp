#include "yocotron/grad_sync.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/variable.h>

namespace yt {
namespace {

struct AfterAccumulate : torch::autograd::FunctionPostHook {
  std::function<void()> fn;
  explicit AfterAccumulate(std::function<void()> f) : fn(std::move(f)) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    fn();
    return outputs;
  }
};

}  // namespace

GradSync::GradSync(Decoder& model, FlatAdamW& opt, Communicator* dp, bool overlap) : opt_(opt), dp_(dp), overlap_(overlap) {
  auto& groups = opt_.groups();
  size_t max_buckets = 0;
  for (const auto& g : groups) max_buckets = std::max(max_buckets, g.buckets.size());
  // Launch order: bucket 0 of every group first (the last layers), then bucket 1, ...
  for (size_t b = 0; b < max_buckets; ++b)
    for (size_t gi = 0; gi < groups.size(); ++gi)
      if (b < groups[gi].buckets.size()) order_.emplace_back(gi, b);
  expected_.resize(groups.size());
  launched_.resize(groups.size());
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    expected_[gi].assign(groups[gi].buckets.size(), 0);
    launched_[gi].assign(groups[gi].buckets.size(), false);
    for (const auto& s : groups[gi].slots) expected_[gi][s.bucket]++;
  }
  remaining_ = expected_;
  if (!overlap_) return;
  auto params = model->named_parameters();
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    for (const auto& s : groups[gi].slots) {
      auto acc = torch::autograd::impl::grad_accumulator(params[s.name]);
      size_t bucket = s.bucket;
      acc->add_post_hook(std::make_unique<AfterAccumulate>([this, gi, bucket] { on_grad_ready(gi, bucket); }));
      accumulators_.push_back(acc);
    }
  }
}

GradSync::~GradSync() = default;

void GradSync::arm(bool first_micro) {
  armed_ = overlap_;
  first_micro_ = first_micro;
  remaining_ = expected_;
  for (auto& l : launched_) std::fill(l.begin(), l.end(), false);
  next_ = 0;
  works_.clear();
}

void GradSync::on_grad_ready(size_t group, size_t bucket) {
  if (!armed_) return;
  if (--remaining_[group][bucket] == 0) launch_ready();
}

void GradSync::launch_ready() {
  while (next_ < order_.size()) {
    auto [gi, b] = order_[next_];
    if (remaining_[gi][b] > 0) return;
    launch(gi, b);
    ++next_;
  }
}

void GradSync::launch(size_t gi, size_t b) {
  FlatGroup& g = opt_.groups()[gi];
  const Bucket& bucket = g.buckets[b];
  opt_.fold_micro_step(g, bucket, first_micro_);
  at::Tensor region = g.reduce_buffer(opt_.layout().reduce_in_fp32).narrow(0, bucket.begin, bucket.length());
  if (opt_.layout().zero1) {
    auto [start, len] = opt_.owned(bucket);
    works_.push_back(dp_->reduce_scatter_async(region, g.reduce_buffer(opt_.layout().reduce_in_fp32).narrow(0, start, len)));
  } else {
    works_.push_back(dp_->all_reduce_async(region));
  }
  launched_[gi][b] = true;
}

void GradSync::finish() {
  armed_ = false;
  for (; next_ < order_.size(); ++next_) launch(order_[next_].first, order_[next_].second);
  for (auto& w : works_) w->wait();
  works_.clear();
}

}  // namespace yt
