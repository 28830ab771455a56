// Builds datasets for tests without a tokenizer: shards with known token streams and a manifest,
// exactly as `yocotron tokenize` lays them out.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "yocotron/config.h"

namespace yt::test {

// The small model most tests use: 4 layers, d_model 32, 4 heads over 2 KV heads (GQA), SwiGLU 48,
// vocabulary 50, sequences up to 16, the plain-ops attention path.
ModelConfig small_model(const std::string& arch, int64_t layers = 4);

// Writes DIR/manifest.json and DIR/<split>/shard_NNNNN.bin; shard s holds tokens[s] as one document
// per `doc_len` tokens. Returns DIR/<split>.
std::string make_dataset(const std::filesystem::path& dir, const std::string& split,
                         const std::vector<std::vector<uint32_t>>& shard_tokens, uint64_t vocab_size,
                         uint64_t fingerprint = 0x1234, size_t doc_len = 50);

// A token stream whose next token is mostly predictable from the previous one (so a model's loss
// can fall): with probability 3/4, t' = (5t + 3) mod vocab, else a random token.
std::vector<uint32_t> markov_tokens(size_t n, uint32_t vocab, uint64_t seed);

// The real `yocotron tokenize` on tests/data/brown_sample.txt (blank-line documents, 5% val), training
// a SentencePiece tokenizer of `vocab` pieces. Returns the dataset directory (train/, val/,
// tokenizer.model); throws with the command's stderr when it fails.
std::filesystem::path tokenized_brown(const std::filesystem::path& dir, int vocab);

// Deterministic English-like text: `n_docs` documents of sentences drawn from a fixed word list.
std::vector<std::string> synthetic_documents(size_t n_docs, uint64_t seed);

}  // namespace yt::test
