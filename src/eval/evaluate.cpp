#include "yocotron/eval_run.h"

#include <chrono>
#include <map>

#include "yocotron/config.h"
#include "yocotron/eval_scorer.h"
#include "yocotron/str.h"

namespace yt {

TokenizedTask tokenize_task(McTask task, TokenizerClient& tok, const EvalShard& shard) {
  TokenizedTask t;
  const int64_t prefix = tok.bos_id() >= 0 ? tok.bos_id() : tok.eos_id();
  std::map<std::string, std::vector<int64_t>> memo;  // an item's contexts repeat across its choices
  auto encode = [&](const std::string& text) {
    auto it = memo.find(text);
    if (it != memo.end()) return it->second;
    return memo[text] = tok.encode(text);
  };
  t.requests.resize(task.items.size());
  for (size_t i = 0; i < task.items.size(); ++i) {
    if (!shard.owns(i)) continue;
    memo.clear();
    for (size_t c = 0; c < task.items[i].n_choices(); ++c)
      t.requests[i].push_back(encode_request(request_for(task.items[i], c), encode, prefix));
  }
  t.task = std::move(task);
  return t;
}

std::optional<ScoredTask> score_task(Decoder& model, const TokenizedTask& t, const EvalShard& shard, int64_t batch_items,
                                     const std::function<bool()>& stop,
                                     const std::function<void(int64_t, int64_t)>& progress) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<size_t> mine;
  std::vector<std::vector<TokenizedRequest>> reqs;
  for (size_t i = 0; i < t.requests.size(); ++i)
    if (shard.owns(i)) mine.push_back(i), reqs.push_back(t.requests[i]);
  ScoreOptions o;
  o.batch_items = batch_items;
  o.stop = stop;
  if (shard.dp > 1)
    o.agree_batches = [&](int64_t mine_n) {
      MPI_Allreduce(MPI_IN_PLACE, &mine_n, 1, MPI_INT64_T, MPI_MAX, shard.comm);
      return mine_n;
    };
  const int64_t total = static_cast<int64_t>(t.task.items.size());
  if (progress) o.progress = [&](int64_t done) { progress(std::min(total, done * shard.dp), total); };
  std::optional<std::vector<std::vector<double>>> scored;
  try {
    scored = score_requests(model, reqs, o);
  } catch (const ConfigError& e) {
    throw ConfigError({cat(t.task.source, ": ", e.what())});
  }
  if (!scored) return std::nullopt;
  // Every choice's value on every rank: zeros where another rank scored the item, then a sum.
  std::vector<size_t> offset(t.task.items.size() + 1, 0);
  for (size_t i = 0; i < t.task.items.size(); ++i) offset[i + 1] = offset[i] + t.task.items[i].n_choices();
  std::vector<double> flat(offset.back(), 0.0);
  for (size_t k = 0; k < mine.size(); ++k)
    std::copy((*scored)[k].begin(), (*scored)[k].end(), flat.begin() + static_cast<long>(offset[mine[k]]));
  if (shard.dp > 1) MPI_Allreduce(MPI_IN_PLACE, flat.data(), static_cast<int>(flat.size()), MPI_DOUBLE, MPI_SUM, shard.comm);
  ScoredTask out;
  for (size_t i = 0; i < t.task.items.size(); ++i)
    out.lls.emplace_back(flat.begin() + static_cast<long>(offset[i]), flat.begin() + static_cast<long>(offset[i + 1]));
  out.result = summarize_task(t.task, out.lls);
  out.result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace yt
