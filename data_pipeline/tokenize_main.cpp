// `yocotron-tokenize` (run as `yocotron tokenize`): corpus files -> a dataset directory of token
// shards; `yocotron-tokenize serve --model FILE.model` is the tokenizer service that torch-side
// commands talk to (tokenizer_client.h). A separate, torch-free executable: Debian's
// libsentencepiece carries its own protobuf symbols, which crash at load time next to LibTorch's
// libprotobuf in one process.
#include <unistd.h>

#include <iostream>
#include <thread>

#include "yocotron/cli_args.h"
#include "yocotron/log.h"
#include "yocotron/stop_signal.h"
#include "yocotron/tokenize_job.h"
#include "yocotron/tokenizer_service.h"

namespace yt {
namespace {

// --vocab-size: SentencePiece's vocabulary holds <unk>, <s>, </s> and 256 byte-fallback pieces at least
// (and a piece per character it must cover); ids are stored in 32 bits and counted in an int.
constexpr int64_t kMinVocab = 3 + 256;
constexpr int64_t kMaxVocab = 2147483647;

int run_serve(const std::vector<std::string>& args) {
  ArgParser p("tokenize serve",
              "Serve a SentencePiece model over stdin/stdout: a Hello frame (vocabulary size, BOS, EOS), then\n"
              "answers to encode and decode requests until stdin ends. The frames are in docs/formats.md.");
  p.option("--model", "FILE.model", "the SentencePiece model to serve");
  if (!p.parse(args)) return 0;
  if (!p.has("--model")) throw UsageError("missing --model FILE.model");
  Tokenizer tok = [&] {
    try {
      return Tokenizer::load(p.get("--model"));
    } catch (const std::runtime_error& e) {  // a missing or foreign file is the caller's input
      throw UsageError(e.what());
    }
  }();
  return serve_tokenizer(tok, STDIN_FILENO, STDOUT_FILENO);
}

int run_tokenize(const std::vector<std::string>& args) {
  if (!args.empty() && args[0] == "serve") return run_serve({args.begin() + 1, args.end()});
  ArgParser p("tokenize",
              "Tokenize a corpus into checksummed token shards (a dataset directory with train/ and val/ splits,\n"
              "a manifest and the tokenizer). Inputs: files, directories or globs of .txt, .jsonl, .jsonl.zst.\n"
              "`yocotron tokenize serve --model FILE.model` serves a tokenizer over stdin/stdout instead.");
  p.option("--input", "PATH", "file, directory or quoted glob (repeatable)", true)
      .option("--out", "DATASET_DIR", "output dataset directory (must not exist unless --overwrite)")
      .option("--tokenizer", "FILE.model", "use this SentencePiece model (e.g. Llama's tokenizer.model)")
      .integer("--vocab-size", "N", "or train a SentencePiece tokenizer with N pieces on a sample of the input", kMinVocab,
               kMaxVocab)
      .option("--tokenizer-type", "bpe|unigram", "model type when training (default bpe)")
      .integer("--train-sample-mb", "MB", "text sampled evenly from the input to train on (default 64)", 1, 1048576)
      .number("--val-fraction", "F", "share of documents (by a hash of their text) in the val split (default 0.005)", 0, 1,
              /*max_open=*/true)
      .integer("--threads", "N", "tokenizer threads (default: all cores)", 1, 4096)
      .option("--txt-split", "file|blank-lines", ".txt files: one document per file (default) or per blank-line block")
      .option("--jsonl-field", "NAME", "JSON field holding the text (default text)")
      .flag("--bos", "start every document with BOS (every document always ends with EOS)")
      .integer("--shard-tokens", "N", "tokens per shard (default 100000000)", 1)
      .number("--max-bad-fraction", "F", "fail when more records than this are unusable (default 0.01)", 0, 1)
      .flag("--overwrite", "replace an existing DATASET_DIR (only once the new one is complete)");
  if (!p.parse(args)) return 0;
  TokenizeOptions o;
  o.inputs = p.all("--input");
  if (o.inputs.empty()) throw UsageError("missing --input PATH");
  if (!p.has("--out")) throw UsageError("missing --out DATASET_DIR");
  o.out_dir = p.get("--out");
  o.tokenizer_model = p.get("--tokenizer");
  o.vocab_size = static_cast<int>(p.get_integer("--vocab-size", 0));
  if (o.tokenizer_model.empty() == !p.has("--vocab-size"))
    throw UsageError("give exactly one of --tokenizer FILE.model and --vocab-size N");
  o.tokenizer_type = p.get("--tokenizer-type", "bpe");
  if (o.tokenizer_type != "bpe" && o.tokenizer_type != "unigram")
    throw UsageError("--tokenizer-type must be bpe or unigram, found '" + o.tokenizer_type + "'");
  o.train_sample_mb = p.get_integer("--train-sample-mb", 64);
  o.val_fraction = p.get_number("--val-fraction", 0.005);
  o.threads = static_cast<int>(p.get_integer("--threads", 0));  // 0: all cores
  std::string split = p.get("--txt-split", "file");
  if (split != "file" && split != "blank-lines")
    throw UsageError("--txt-split must be file or blank-lines, found '" + split + "'");
  o.corpus.txt_split_blank_lines = split == "blank-lines";
  o.corpus.jsonl_field = p.get("--jsonl-field", "text");
  o.add_bos = p.has("--bos");
  o.shard_tokens = p.get_integer("--shard-tokens", 100000000);
  o.max_bad_fraction = p.get_number("--max-bad-fraction", 0.01);
  o.overwrite = p.has("--overwrite");

  log::init(0);
  install_stop_handlers();  // SIGTERM/SIGINT/SIGUSR1: stop between records, leave nothing, exit 75
  TokenizeReport r = tokenize_corpus(o);
  double mb = static_cast<double>(r.input_bytes) / 1048576.0;
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  if (r.tokenizer_seconds > 0) std::cout << "trained the tokenizer in " << r.tokenizer_seconds << " s\n";
  std::cout << "tokenized " << mb << " MB in " << r.encode_seconds << " s (" << mb / r.encode_seconds << " MB/s, "
            << threads << " threads)\n"
            << "  train: " << r.docs[0] << " docs, " << r.tokens[0] << " tokens, " << r.shards[0] << " shards\n"
            << "  val:   " << r.docs[1] << " docs, " << r.tokens[1] << " tokens, " << r.shards[1] << " shards\n"
            << "  vocabulary " << r.vocab_size << "; " << r.bad_records << " unusable records skipped\n"
            << "dataset: " << o.out_dir << " (data.train: " << o.out_dir << "/train, data.val: " << o.out_dir << "/val)\n";
  return 0;
}

}  // namespace
}  // namespace yt

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool serve = !args.empty() && args[0] == "serve";
  return yt::run_cli(serve ? "tokenize serve" : "tokenize", [&] { return yt::run_tokenize(args); });
}
