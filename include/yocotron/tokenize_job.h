// `yocotron tokenize`: a corpus into a dataset directory of checksummed token shards.
//   OUT/manifest.json, OUT/tokenizer.model, OUT/train/shard_00000.bin ..., OUT/val/...
// Records are read in order, tokenized on all cores, and written in input order; each document
// ends with EOS (and starts with BOS on request) and goes to the validation split when a hash of
// its text falls under the validation fraction, so the split does not depend on file order. The
// dataset is built in OUT.partial-<pid> and renamed into place only when complete; a failure, or a
// stop signal seen between records (Stopped, stop_signal.h), removes it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "yocotron/corpus.h"

namespace yt {

struct TokenizeOptions {
  std::vector<std::string> inputs;
  std::string out_dir;
  std::string tokenizer_model;  // load this .model, or
  int vocab_size = 0;           // train one with this vocabulary
  std::string tokenizer_type = "bpe";
  int64_t train_sample_mb = 64;  // text sampled (evenly, by hash) to train the tokenizer
  double val_fraction = 0.005;
  int threads = 0;  // 0 = all cores
  CorpusOptions corpus;
  bool add_bos = false;
  int64_t shard_tokens = 100000000;
  double max_bad_fraction = 0.01;  // fail when more records than this are unusable
  bool overwrite = false;
  bool progress = true;
};

struct TokenizeReport {
  uint64_t input_bytes = 0;
  uint64_t records = 0;
  uint64_t bad_records = 0;
  uint64_t docs[2] = {0, 0};  // train, val
  uint64_t tokens[2] = {0, 0};
  uint64_t shards[2] = {0, 0};
  double seconds = 0;            // whole job
  double tokenizer_seconds = 0;  // training the tokenizer (0 when one was given)
  double encode_seconds = 0;     // reading, tokenizing and writing shards
  int vocab_size = 0;
};

TokenizeReport tokenize_corpus(const TokenizeOptions& opts);

// True when a document with this text belongs to the validation split.
bool is_validation_doc(const std::string& text, double val_fraction);

}  // namespace yt
