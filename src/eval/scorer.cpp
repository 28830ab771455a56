// Batched, prefix-sharing log-likelihoods (eval_scorer.h). lm-eval scores request r from the input
// (context + continuation)[-(L+1):][:-1] (L = max length) and the logits at its last |continuation|
// positions. Here the tokens before the continuation are the prefix: prefixes of one batch are
// left-padded and prefilled together (the last position's logits predict each continuation's first
// token), the cache is copied once per choice, and continuation[:-1] runs on top of it, right-padded
// (causal attention keeps the padding out of the real positions). The sums are those of one full
// forward per request, up to floating-point summation order.
#include "yocotron/eval_scorer.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "yocotron/config.h"
#include "yocotron/kv_cache.h"
#include "yocotron/str.h"

namespace yt {
namespace {

// The requests of one item that share their prefix tokens.
struct Prefix {
  size_t item = 0;
  std::vector<int64_t> tokens;
  std::vector<size_t> requests;                   // indices into the item's requests
  std::vector<std::vector<int64_t>> continuations;  // one per request
};

std::vector<Prefix> prefixes_of(size_t item, const std::vector<TokenizedRequest>& reqs, int64_t max_len) {
  std::vector<Prefix> out;
  std::map<std::vector<int64_t>, size_t> seen;
  for (size_t r = 0; r < reqs.size(); ++r) {
    const auto& cont = reqs[r].continuation;
    if (cont.empty()) throw ConfigError({cat("a choice adds no tokens to its context (an empty continuation)")});
    if (static_cast<int64_t>(cont.size()) > max_len)
      throw ConfigError({cat("a continuation of ", cont.size(), " tokens exceeds model.max_seq_len=", max_len)});
    std::vector<int64_t> prefix = reqs[r].context;
    const int64_t total = static_cast<int64_t>(prefix.size() + cont.size());
    if (total > max_len + 1)  // lm-eval's left truncation keeps the last max_len + 1 tokens
      prefix.erase(prefix.begin(), prefix.begin() + (total - max_len - 1));
    auto [it, fresh] = seen.emplace(prefix, out.size());
    if (fresh) out.push_back({item, std::move(prefix), {}, {}});
    out[it->second].requests.push_back(r);
    out[it->second].continuations.push_back(cont);
  }
  return out;
}

// Scores the prefixes of one batch into `scores` (item -> request -> log-likelihood).
void score_batch(Decoder& model, const std::vector<const Prefix*>& batch, std::vector<std::vector<double>>& scores) {
  const at::TensorOptions wopt = model->embed_tokens->weight.options();
  const at::TensorOptions lopt = at::TensorOptions().dtype(at::kLong);
  const int64_t B = static_cast<int64_t>(batch.size());
  int64_t P = 0, C = 0;  // longest prefix; longest continuation fed (its last token is only a target)
  for (const Prefix* p : batch) {
    P = std::max<int64_t>(P, static_cast<int64_t>(p->tokens.size()));
    for (const auto& c : p->continuations) C = std::max<int64_t>(C, static_cast<int64_t>(c.size()) - 1);
  }
  std::vector<int64_t> pad, prefill(static_cast<size_t>(B * P), 0);
  std::vector<int64_t> rows, first;  // per choice: its prefix's row, its first token
  for (int64_t b = 0; b < B; ++b) {
    const auto& t = batch[static_cast<size_t>(b)]->tokens;
    pad.push_back(P - static_cast<int64_t>(t.size()));
    std::copy(t.begin(), t.end(), prefill.begin() + b * P + pad.back());
    for (const auto& c : batch[static_cast<size_t>(b)]->continuations) rows.push_back(b), first.push_back(c[0]);
  }
  const int64_t N = static_cast<int64_t>(rows.size());
  const at::Device dev = wopt.device();
  KvCache cache(model->plan(), model->config().head_dim(), model->tp().size, B, P + std::max<int64_t>(C, 1), wopt, pad);
  at::Tensor logits = model->forward_cached(at::tensor(prefill, lopt).view({B, P}).to(dev), cache, false, false);  // [B, V]
  at::Tensor row_t = at::tensor(rows, lopt).to(dev), first_t = at::tensor(first, lopt).to(dev).view({N, 1});
  logits = logits.index_select(0, row_t).to(at::kFloat);                                           // [N, V]
  at::Tensor total = logits.gather(1, first_t).squeeze(1) - logits.logsumexp(1);                    // [N]
  if (C > 0) {
    std::vector<int64_t> fed(static_cast<size_t>(N * C), 0), target(static_cast<size_t>(N * C), 0);
    std::vector<float> keep(static_cast<size_t>(N * C), 0.f);
    int64_t n = 0;
    for (const Prefix* p : batch)
      for (const auto& c : p->continuations) {
        for (size_t k = 0; k + 1 < c.size(); ++k) {
          const size_t slot = static_cast<size_t>(n * C) + k;
          fed[slot] = c[k];
          target[slot] = c[k + 1];
          keep[slot] = 1.f;
        }
        ++n;
      }
    KvCache choices = cache.select_rows(rows);
    at::Tensor out = model->forward_cached(at::tensor(fed, lopt).view({N, C}).to(dev), choices, true, false)
                         .to(at::kFloat);  // [N, C, V]
    at::Tensor target_t = at::tensor(target, lopt).view({N, C, 1}).to(dev);
    at::Tensor lp = out.gather(2, target_t).squeeze(2) - out.logsumexp(2);  // [N, C]
    total = total + (lp * at::tensor(keep).view({N, C}).to(dev)).sum(1);
  }
  at::Tensor host = total.to(at::kDouble).cpu();
  const double* v = host.data_ptr<double>();
  int64_t n = 0;
  for (const Prefix* p : batch)
    for (size_t r : p->requests) scores[p->item][r] = v[n++];
}

}  // namespace

std::optional<std::vector<std::vector<double>>> score_requests(Decoder& model,
                                                               const std::vector<std::vector<TokenizedRequest>>& items,
                                                               const ScoreOptions& o) {
  torch::NoGradGuard no_grad;
  const int64_t max_len = model->config().max_seq_len;
  std::vector<std::vector<double>> scores(items.size());
  std::vector<std::vector<Prefix>> prefixes(items.size());
  std::vector<size_t> longest(items.size(), 0);
  for (size_t i = 0; i < items.size(); ++i) {
    scores[i].assign(items[i].size(), 0.0);
    prefixes[i] = prefixes_of(i, items[i], max_len);
    for (const auto& p : prefixes[i]) {
      size_t cont = 0;
      for (const auto& c : p.continuations) cont = std::max(cont, c.size());
      longest[i] = std::max(longest[i], p.tokens.size() + cont);
    }
  }
  // Longest items first, so that a batch holds items of similar lengths (less padding) and a batch
  // too large for the device fails at once. A batch holds at most batch_items items, and its longest
  // prefix plus its longest continuation fit in the model's window (the continuations run right-padded
  // on top of the left-padded prefixes).
  std::vector<size_t> order(items.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return longest[a] > longest[b]; });
  std::vector<std::vector<const Prefix*>> batches;
  std::vector<int64_t> done_after;  // items fully scored once a batch is done
  int64_t P = 0, C = 0, in_batch = 0, done = 0;
  size_t last_item = SIZE_MAX;
  for (size_t k : order) {
    for (const auto& p : prefixes[k]) {
      int64_t cont = 0;
      for (const auto& c : p.continuations) cont = std::max<int64_t>(cont, static_cast<int64_t>(c.size()) - 1);
      const int64_t P2 = std::max<int64_t>(P, static_cast<int64_t>(p.tokens.size())), C2 = std::max(C, cont);
      const bool new_item = k != last_item;
      if (!batches.empty() && !batches.back().empty() && (P2 + C2 > max_len || (new_item && in_batch == o.batch_items))) {
        batches.emplace_back();
        done_after.push_back(done);
        P = C = in_batch = 0;
      }
      if (batches.empty()) batches.emplace_back(), done_after.push_back(0);
      if (new_item || batches.back().empty()) ++in_batch;
      last_item = k;
      P = std::max<int64_t>(P, static_cast<int64_t>(p.tokens.size()));
      C = std::max(C, cont);
      batches.back().push_back(&p);
    }
    ++done;
    done_after.back() = done;
  }
  const int64_t runs = o.agree_batches ? o.agree_batches(static_cast<int64_t>(batches.size())) : static_cast<int64_t>(batches.size());
  for (int64_t b = 0; b < runs; ++b) {
    if (o.stop && o.stop()) return std::nullopt;
    if (b >= static_cast<int64_t>(batches.size())) continue;
    score_batch(model, batches[static_cast<size_t>(b)], scores);
    if (o.progress) o.progress(done_after[static_cast<size_t>(b)]);
  }
  return scores;
}

}  // namespace yt
