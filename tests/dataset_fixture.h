// Builds datasets for tests without a tokenizer: shards with known token streams and a manifest,
// exactly as `yocotron tokenize` lays them out.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace yt::test {

// Writes DIR/manifest.json and DIR/<split>/shard_NNNNN.bin; shard s holds tokens[s] as one document
// per `doc_len` tokens. Returns DIR/<split>.
std::string make_dataset(const std::filesystem::path& dir, const std::string& split,
                         const std::vector<std::vector<uint32_t>>& shard_tokens, uint64_t vocab_size,
                         uint64_t fingerprint = 0x1234, size_t doc_len = 50);

// Deterministic English-like text: `n_docs` documents of sentences drawn from a fixed word list.
std::vector<std::string> synthetic_documents(size_t n_docs, uint64_t seed);

}  // namespace yt::test
