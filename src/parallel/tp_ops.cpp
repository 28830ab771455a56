#include "yocotron/tp_ops.h"

#include <stdexcept>

#include "yocotron/decoder.h"

namespace yt::tp {
namespace {

void require_group(const TpContext& tp) {
  if (tp.comm == nullptr) throw std::logic_error("tensor parallelism: TP size > 1 without a communicator");
}

}  // namespace

at::Tensor copy_to_region(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  require_group(tp);
  return x;
}

at::Tensor reduce_from_region(const at::Tensor& x, const TpContext& tp) {
  if (tp.size == 1) return x;
  require_group(tp);
  return x;
}

at::Tensor embedding(const at::Tensor& tokens, const at::Tensor& local_weight, const TpContext& tp) {
  if (tp.size == 1) return at::embedding(local_weight, tokens);
  require_group(tp);
  return {};
}

at::Tensor cross_entropy(const at::Tensor& local_logits, const at::Tensor& targets, const TpContext& tp) {
  if (tp.size == 1) return at::cross_entropy_loss(local_logits.to(at::kFloat), targets);
  require_group(tp);
  return {};
}

at::Tensor gather_shards(const at::Tensor& shard, int64_t dim, const TpContext& tp) {
  if (tp.size == 1) return shard;
  require_group(tp);
  return {};
}

}  // namespace yt::tp
