#include "yocotron/tokenizer.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <stdexcept>

#include "yocotron/dataset.h"
#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

Tokenizer Tokenizer::load(const std::string& model_path) {
  std::string bytes = read_text_file(model_path);
  Tokenizer t;
  auto status = t.impl_->sp.LoadFromSerializedProto(bytes);
  if (!status.ok()) throw std::runtime_error(cat(model_path, ": not a SentencePiece model: ", status.ToString()));
  t.fingerprint_ = fnv1a64(bytes.data(), bytes.size());
  t.path_ = model_path;
  return t;
}

namespace {

class VectorIterator : public sentencepiece::SentenceIterator {
 public:
  explicit VectorIterator(const std::vector<std::string>& v) : v_(v) {}
  bool done() const override { return i_ >= v_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return v_[i_]; }
  // A default-constructed Status is OK in both sentencepiece 0.1.x and 0.2.x.
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const std::vector<std::string>& v_;
  size_t i_ = 0;
};

}  // namespace

void Tokenizer::train(const std::vector<std::string>& sentences, const TrainOptions& o, const std::string& out_model_path) {
  if (o.model_type != "bpe" && o.model_type != "unigram")
    throw std::invalid_argument(cat("tokenizer type must be bpe or unigram, found '", o.model_type, "'"));
  if (sentences.empty()) throw std::runtime_error("cannot train a tokenizer: the input has no text");
  std::string args = cat("--model_type=", o.model_type, " --vocab_size=", o.vocab_size,
                         " --byte_fallback=true --split_digits=true --normalization_rule_name=identity"
                         " --remove_extra_whitespaces=false --allow_whitespace_only_pieces=true"
                         " --character_coverage=0.9995 --max_sentence_length=16384"
                         " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --minloglevel=2"
                         " --input_sentence_size=2000000 --shuffle_input_sentence=true --num_threads=",
                         std::max(1, o.threads));
  VectorIterator it(sentences);
  std::string proto;
  auto status = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  if (!status.ok()) throw std::runtime_error(cat("training the tokenizer failed: ", status.ToString()));
  AtomicFile f(out_model_path);
  f.write(proto);
  f.commit();
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<int> ids;
  auto status = impl_->sp.Encode(text, &ids);
  if (!status.ok()) throw std::runtime_error(cat("tokenizer: ", status.ToString()));
  return std::vector<uint32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  std::vector<int> v(ids.begin(), ids.end());
  std::string out;
  auto status = impl_->sp.Decode(v, &out);
  if (!status.ok()) throw std::runtime_error(cat("tokenizer: ", status.ToString()));
  return out;
}

int Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }
int Tokenizer::bos_id() const { return impl_->sp.bos_id(); }
int Tokenizer::eos_id() const { return impl_->sp.eos_id(); }

}  // namespace yt
