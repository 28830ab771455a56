// A split of a tokenized dataset (DATASET/<split>/, described by DATASET/manifest.json): its shards
// opened and validated, addressed as one token stream.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "yocotron/shard.h"

namespace yt {

// DATASET/manifest.json, validated (docs/formats.md): types, ranges, shard paths inside the
// dataset, split totals equal to the sum of their shards. Errors name the file and the field.
struct DatasetManifest {
  struct ShardEntry {
    std::string file;  // relative to the dataset directory
    uint64_t tokens = 0;
    std::optional<uint64_t> docs, bytes;
  };
  std::string path;            // the manifest file
  std::string tokenizer_file;  // relative to the dataset directory
  std::string tokenizer_json;  // the "tokenizer" object as written
  uint64_t fingerprint = 0, vocab_size = 0;
  std::map<std::string, std::vector<ShardEntry>> splits;
};
DatasetManifest read_dataset_manifest(const std::string& manifest_path);

class TokenDataset {
 public:
  // `split_dir` is DATASET/<split>. Opens every shard listed for that split in DATASET/manifest.json
  // and validates it (in parallel; payload checksums when `verify`). Shards from a different
  // tokenizer than the manifest's, or whose sizes disagree with it, are errors naming the shard.
  static std::shared_ptr<const TokenDataset> open(const std::string& split_dir, bool verify = true);

  const std::string& split_dir() const { return split_dir_; }
  const std::string& manifest_path() const { return manifest_path_; }
  const std::string& tokenizer_path() const { return tokenizer_path_; }
  uint64_t tokenizer_fingerprint() const { return fingerprint_; }
  uint64_t vocab_size() const { return vocab_size_; }
  uint64_t n_tokens() const { return n_tokens_; }
  uint64_t n_docs() const { return n_docs_; }
  const std::vector<Shard>& shards() const { return shards_; }

  // Samples of seq_len + 1 tokens with stride seq_len over the concatenated shards.
  uint64_t n_samples(int64_t seq_len) const { return n_tokens_ > 0 ? (n_tokens_ - 1) / static_cast<uint64_t>(seq_len) : 0; }
  // Tokens [begin, begin + count) of the concatenated stream, as int64.
  void copy_tokens(uint64_t begin, uint64_t count, int64_t* out) const;

 private:
  std::string split_dir_, manifest_path_, tokenizer_path_;
  uint64_t fingerprint_ = 0, vocab_size_ = 0, n_tokens_ = 0, n_docs_ = 0;
  std::vector<Shard> shards_;
  std::vector<uint64_t> starts_;  // first global token index of each shard
};

// 64-bit FNV-1a, the fingerprint of tokenizer files and the hash behind the train/val split.
uint64_t fnv1a64(const void* data, size_t bytes, uint64_t h = 1469598103934665603ull);
std::string hex64(uint64_t v);
uint64_t parse_hex64(const std::string& s);

}  // namespace yt
