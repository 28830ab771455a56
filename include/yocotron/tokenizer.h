// A SentencePiece tokenizer (libsentencepiece): load a .model (e.g. Llama's tokenizer.model) or
// train one. Its fingerprint (FNV-1a of the .model bytes) is stamped into every shard it makes.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace yt {

class Tokenizer {
 public:
  static Tokenizer load(const std::string& model_path);

  struct TrainOptions {
    int vocab_size = 8000;
    std::string model_type = "bpe";  // bpe | unigram
    int threads = 1;
  };
  // Trains on `sentences` (a bounded sample: the caller chooses it) and writes `out_model_path`.
  // Byte fallback is on, normalisation is the identity, and <unk>=0, <s>=1, </s>=2 as in Llama.
  static void train(const std::vector<std::string>& sentences, const TrainOptions& opts, const std::string& out_model_path);

  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Thread-safe.
  std::vector<uint32_t> encode(std::string_view text) const;
  std::string decode(const std::vector<uint32_t>& ids) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;
  uint64_t fingerprint() const { return fingerprint_; }
  const std::string& path() const { return path_; }

 private:
  Tokenizer();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t fingerprint_ = 0;
  std::string path_;
};

}  // namespace yt
