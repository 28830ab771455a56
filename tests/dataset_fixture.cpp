#include "dataset_fixture.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "helpers.h"
#include "yocotron/dataset.h"
#include "yocotron/shard.h"

namespace yt::test {
namespace fs = std::filesystem;

std::string make_dataset(const fs::path& dir, const std::string& split, const std::vector<std::vector<uint32_t>>& shards,
                         uint64_t vocab_size, uint64_t fingerprint, size_t doc_len) {
  fs::create_directories(dir / split);
  nlohmann::json entries = nlohmann::json::array();
  uint64_t total = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "%s/shard_%05zu.bin", split.c_str(), s);
    std::vector<uint64_t> starts;
    for (size_t i = 0; i < shards[s].size(); i += doc_len) starts.push_back(i);
    write_shard((dir / name).string(), shards[s], starts, vocab_size, fingerprint);
    entries.push_back({{"file", name}, {"tokens", shards[s].size()}, {"docs", starts.size()}});
    total += shards[s].size();
  }
  nlohmann::json m;
  fs::path mpath = dir / "manifest.json";
  if (fs::exists(mpath)) m = nlohmann::json::parse(read_file(mpath));
  m["format"] = "yocotron-dataset";
  m["version"] = 1;
  m["tokenizer"] = {{"file", "tokenizer.model"}, {"fingerprint", hex64(fingerprint)}, {"vocab_size", vocab_size}};
  m["splits"][split] = {{"tokens", total}, {"shards", entries}};
  write_file(mpath, m.dump(2));
  return (dir / split).string();
}

fs::path tokenized_brown(const fs::path& dir, int vocab) {
  fs::path out = dir / "brown";
  auto r = run_yocotron("tokenize --input " + source_dir() + "/tests/data/brown_sample.txt --txt-split blank-lines"
                        " --vocab-size " + std::to_string(vocab) + " --val-fraction 0.05 --out " + out.string());
  if (r.exit_code != 0) throw std::runtime_error("yocotron tokenize failed: " + r.err);
  return out;
}

ModelConfig small_model(const std::string& arch, int64_t layers) {
  ModelConfig m;
  m.arch = arch;
  m.n_layers = layers;
  m.d_model = 32;
  m.n_heads = 4;
  m.n_kv_heads = 2;
  m.d_ffn = 48;
  m.vocab_size = 50;
  m.max_seq_len = 16;
  m.attention = "math";
  // Original YOCO family: a window, loops and retention chunks shorter than the tests' sequences.
  m.yoco.window = 4;
  m.yoco.loops = 2;
  m.yoco.chunk = 4;
  return m;
}

std::vector<uint32_t> markov_tokens(size_t n, uint32_t vocab, uint64_t seed) {
  std::vector<uint32_t> toks;
  uint64_t x = seed;
  uint32_t t = 0;
  for (size_t i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t = (x >> 60) < 12 ? (t * 5 + 3) % vocab : static_cast<uint32_t>((x >> 33) % vocab);
    toks.push_back(t);
  }
  return toks;
}

std::vector<std::string> synthetic_documents(size_t n_docs, uint64_t seed) {
  static const char* words[] = {
      "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with", "be", "by", "on",
      "not", "he", "this", "are", "or", "his", "from", "at", "which", "but", "have", "an", "had", "they", "you",
      "were", "their", "one", "all", "we", "can", "her", "has", "there", "been", "if", "more", "when", "will",
      "would", "who", "so", "no", "river", "mountain", "library", "engine", "garden", "letter", "window",
      "morning", "station", "country", "history", "question", "example", "system", "number", "water", "light",
      "children", "government", "thousand", "company", "between", "important", "different", "following",
      "without", "sometimes", "mathematics", "experiment", "language", "machine", "computer", "attention",
      "transformer", "memory", "cache", "layer", "weight", "residual", "gradient", "training", "tokens"};
  const size_t n_words = sizeof(words) / sizeof(words[0]);
  uint64_t s = seed * 6364136223846793005ull + 1442695040888963407ull;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return s >> 33;
  };
  std::vector<std::string> docs;
  for (size_t d = 0; d < n_docs; ++d) {
    std::string doc;
    size_t sentences = 1 + next() % 6;
    for (size_t k = 0; k < sentences; ++k) {
      size_t len = 4 + next() % 12;
      std::string sent;
      for (size_t w = 0; w < len; ++w) {
        std::string word = words[next() % n_words];
        if (w == 0) word[0] = static_cast<char>(std::toupper(word[0]));
        sent += (w ? " " : "") + word;
      }
      doc += (k ? " " : "") + sent + (next() % 5 == 0 ? "?" : ".");
      if (next() % 4 == 0) doc += "\n";
    }
    docs.push_back(doc);
  }
  return docs;
}

}  // namespace yt::test
