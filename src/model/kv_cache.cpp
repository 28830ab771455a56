#include "yocotron/kv_cache.h"

#include <stdexcept>

#include "yocotron/str.h"

namespace yt {

KvCache::KvCache(const KvPlan& plan, int64_t head_dim, int tp_size, int64_t batch, int64_t capacity,
                 const at::TensorOptions& options, std::vector<int64_t> pad)
    : batch_(batch), capacity_(capacity), pad_(std::move(pad)) {
  if (batch < 1 || capacity < 1) throw std::invalid_argument(cat("KvCache: batch ", batch, " and capacity ", capacity, " must be >= 1"));
  if (pad_.empty()) pad_.assign(batch, 0);
  if (static_cast<int64_t>(pad_.size()) != batch) throw std::invalid_argument("KvCache: one padding length per sequence");
  for (int64_t p : pad_) {
    if (p < 0 || p >= capacity) throw std::invalid_argument(cat("KvCache: padding ", p, " outside [0, ", capacity, ")"));
    padded_ = padded_ || p > 0;
  }
  pad_tensor_ = at::tensor(pad_, at::TensorOptions().dtype(at::kLong)).to(options.device());
  for (const auto& lp : plan.layers) {
    auto buffer = [&](int heads) {
      return heads > 0 ? at::zeros({batch, heads / tp_size, capacity, head_dim}, options) : at::Tensor();
    };
    k_.push_back(buffer(lp.cached_k_heads));
    v_.push_back(buffer(lp.cached_v_heads));
  }
  if (plan.has_global_kv()) {
    global_k_ = at::zeros({batch, plan.global_kv_heads / tp_size, capacity, head_dim}, options);
    global_v_ = at::zeros_like(global_k_);
    self_layers_ = plan.self_layers;
    for (int loop = 0; loop < plan.loops; ++loop) {
      for (int i = 0; i < plan.self_layers; ++i) {
        const auto& lp = plan.layers[i];
        at::Tensor rk, rv, st;
        if (lp.mixer == Mixer::Retention) {
          st = at::zeros({batch, lp.own_k_heads / tp_size, head_dim, head_dim}, options.dtype(at::kFloat));
        } else if (lp.window > 0) {
          // Zeros, not garbage: masked slots still enter the attention matmul (0 * NaN is NaN).
          rk = at::zeros({batch, lp.own_k_heads / tp_size, lp.window, head_dim}, options);
          rv = at::zeros({batch, lp.own_v_heads / tp_size, lp.window, head_dim}, options);
        }
        window_k_.push_back(rk);
        window_v_.push_back(rv);
        state_.push_back(st);
      }
    }
  }
}

void KvCache::write_global(const at::Tensor& k, const at::Tensor& v) {
  global_k_.narrow(2, length_, k.size(2)).copy_(k);
  global_v_.narrow(2, length_, v.size(2)).copy_(v);
}

int64_t KvCache::bytes() const {
  int64_t total = 0;
  for (const auto& t : {global_k_, global_v_})
    if (t.defined()) total += t.numel() * static_cast<int64_t>(t.element_size());
  for (const auto* list : {&k_, &v_, &window_k_, &window_v_, &state_})
    for (const auto& t : *list)
      if (t.defined()) total += t.numel() * static_cast<int64_t>(t.element_size());
  return total;
}

void KvCache::advance(int64_t tokens) {
  if (tokens < 0 || length_ + tokens > capacity_)
    throw std::out_of_range(cat("KV cache: ", length_, " + ", tokens, " tokens exceed its capacity of ", capacity_));
  length_ += tokens;
}

KvCache KvCache::select_rows(const std::vector<int64_t>& rows) const {
  if (rows.empty()) throw std::invalid_argument("KvCache::select_rows: no rows");
  KvCache c;
  c.batch_ = static_cast<int64_t>(rows.size());
  c.capacity_ = capacity_;
  c.length_ = length_;
  for (int64_t r : rows) {
    if (r < 0 || r >= batch_) throw std::out_of_range(cat("KvCache::select_rows: row ", r, " outside [0, ", batch_, ")"));
    c.pad_.push_back(pad_[static_cast<size_t>(r)]);
    c.padded_ = c.padded_ || c.pad_.back() > 0;
  }
  const at::Tensor index = at::tensor(rows, at::TensorOptions().dtype(at::kLong)).to(pad_tensor_.device());
  c.pad_tensor_ = pad_tensor_.index_select(0, index);
  auto rows_of = [&](const at::Tensor& t) { return t.defined() ? t.index_select(0, index) : at::Tensor(); };
  for (const auto& t : k_) c.k_.push_back(rows_of(t));
  for (const auto& t : v_) c.v_.push_back(rows_of(t));
  c.global_k_ = rows_of(global_k_);
  c.global_v_ = rows_of(global_v_);
  c.self_layers_ = self_layers_;
  for (const auto& t : window_k_) c.window_k_.push_back(rows_of(t));
  for (const auto& t : window_v_) c.window_v_.push_back(rows_of(t));
  for (const auto& t : state_) c.state_.push_back(rows_of(t));
  return c;
}

void KvCache::set_length_for_timing(int64_t n) {
  if (n < 0 || n > capacity_) throw std::out_of_range(cat("KV cache: length ", n, " outside [0, ", capacity_, "]"));
  length_ = n;
}

}  // namespace yt
