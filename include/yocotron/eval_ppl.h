// Perplexity of a tokenized split (`yocotron eval --ppl DATASET/SPLIT`): the split's token stream
// cut into consecutive windows of seq_len + 1 tokens overlapping by one (every token after the first
// is predicted once, from at most seq_len tokens before it, across document boundaries as in
// training), the summed negative log-likelihood, and bits per byte. The dataset does not record the
// text's bytes per split (the manifest's shard "bytes" are file sizes), so they are counted by
// decoding each document (the stream between EOS tokens) with the dataset's tokenizer.
#pragma once
#include "yocotron/dataset.h"
#include "yocotron/decoder.h"
#include "yocotron/eval_metrics.h"
#include "yocotron/eval_run.h"

namespace yt {

struct PplOptions {
  int64_t seq_len = 0;  // 0: model.max_seq_len
  int64_t batch = 8;    // windows per forward
  EvalShard shard;      // windows and documents w with w % dp == dp_rank
};

PplResult split_perplexity(Decoder& model, const TokenDataset& ds, TokenizerClient& tok, const PplOptions& o);

}  // namespace yt
