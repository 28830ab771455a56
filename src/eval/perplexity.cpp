#include "yocotron/eval_ppl.h"

#include <chrono>

namespace yt {
namespace {

// Summed next-token NLL of `rows` windows of `len` tokens each ([rows, len] int64, host).
double window_nll(Decoder& model, const std::vector<int64_t>& tokens, int64_t rows, int64_t len) {
  const at::Device dev = model->embed_tokens->weight.device();
  at::Tensor t = at::tensor(tokens, at::TensorOptions().dtype(at::kLong)).view({rows, len}).to(dev);
  at::Tensor logits = model->forward(t.narrow(1, 0, len - 1)).to(at::kFloat);  // [rows, len - 1, V]
  at::Tensor target = t.narrow(1, 1, len - 1).unsqueeze(2);
  return (logits.logsumexp(2) - logits.gather(2, target).squeeze(2)).sum().item<double>();
}

}  // namespace

PplResult split_perplexity(Decoder& model, const TokenDataset& ds, TokenizerClient& tok, const PplOptions& o) {
  torch::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  PplResult r;
  r.split = ds.split_dir();
  const int64_t L = o.seq_len > 0 ? o.seq_len : model->config().max_seq_len;
  const int64_t T = static_cast<int64_t>(ds.n_tokens());
  const int64_t windows = T > 1 ? (T - 2) / L + 1 : 0;  // window w: tokens [w L, min(w L + L + 1, T))
  std::vector<int64_t> batch;
  int64_t rows = 0;
  double nll = 0;
  auto flush = [&](int64_t len) {
    if (rows > 0) nll += window_nll(model, batch, rows, len);
    batch.clear();
    rows = 0;
  };
  for (int64_t w = 0; w < windows; ++w) {
    if (!o.shard.owns(static_cast<size_t>(w))) continue;
    const int64_t begin = w * L, len = std::min(L + 1, T - begin);
    if (len < L + 1) flush(L + 1);  // the short last window goes alone
    batch.resize(batch.size() + static_cast<size_t>(len));
    ds.copy_tokens(static_cast<uint64_t>(begin), static_cast<uint64_t>(len), batch.data() + batch.size() - len);
    ++rows;
    if (rows == o.batch || len < L + 1) flush(len);
  }
  flush(L + 1);
  // The text's bytes, document by document (a document's leading space decodes differently in the
  // middle of a text): this rank's documents, summed over the ranks.
  int64_t bytes = 0, doc = 0;
  std::vector<int64_t> chunk(1 << 20), current;
  for (int64_t pos = 0; pos < T; pos += static_cast<int64_t>(chunk.size())) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(chunk.size()), T - pos);
    ds.copy_tokens(static_cast<uint64_t>(pos), static_cast<uint64_t>(n), chunk.data());
    for (int64_t k = 0; k < n; ++k) {
      const bool end = chunk[static_cast<size_t>(k)] == tok.eos_id() || pos + k == T - 1;
      if (chunk[static_cast<size_t>(k)] != tok.eos_id()) current.push_back(chunk[static_cast<size_t>(k)]);
      if (!end) continue;
      if (o.shard.owns(static_cast<size_t>(doc++)) && !current.empty()) bytes += static_cast<int64_t>(tok.decode(current).size());
      current.clear();
    }
  }
  double sums[2] = {nll, static_cast<double>(bytes)};
  if (o.shard.dp > 1) MPI_Allreduce(MPI_IN_PLACE, sums, 2, MPI_DOUBLE, MPI_SUM, o.shard.comm);
  r.nll_sum = sums[0];
  r.bytes = static_cast<int64_t>(sums[1]);
  r.tokens = T > 0 ? T - 1 : 0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace yt
