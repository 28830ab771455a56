// `yocotron generate SOURCE --prompt TEXT ...`: text from a trained model. The model is read as
// model_source.h says, the prompt is tokenized by the tokenizer service (tokenizer_client.h:
// SentencePiece cannot be loaded in this process), and generate() continues it with the KV cache.
// The text streams to stdout as tokens come (one sequence), is printed per sequence (several), or
// comes as one JSON object (--json).
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/device.h"
#include "yocotron/fileio.h"
#include "yocotron/generation.h"
#include "yocotron/model_source.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

namespace yt::cli {
namespace {

using nlohmann::json;

std::vector<std::string> read_prompts(const ArgParser& p) {
  if (p.has("--prompt") == p.has("--prompt-file")) throw UsageError("give exactly one of --prompt TEXT and --prompt-file FILE");
  if (p.has("--prompt")) {
    if (p.get("--prompt").empty()) throw UsageError("--prompt is empty");
    return {p.get("--prompt")};
  }
  const std::string file = p.get("--prompt-file");
  std::string text;
  try {
    text = read_text_file(file);
  } catch (const std::runtime_error& e) {
    throw ConfigError({e.what()});
  }
  std::vector<std::string> lines = split(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();  // after the last line's newline
  if (lines.empty()) throw ConfigError({cat(file, ": no prompts (the file holds one per line)")});
  for (size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].empty() && lines[i].back() == '\r') lines[i].pop_back();
    if (lines[i].empty()) throw ConfigError({cat(file, ":", i + 1, ": an empty prompt")});
  }
  return lines;
}

// The text `generated` adds to `prompt`. SentencePiece text depends on context (a piece's leading
// space is dropped at the start of a text; byte pieces form a character only together), so the
// prompt and the new tokens are decoded together and what follows the prompt's own text is taken.
std::string continuation(TokenizerClient& tok, const std::vector<int64_t>& prompt, const std::string& prompt_text,
                         const std::vector<int64_t>& generated) {
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), generated.begin(), generated.end());
  std::string text = tok.decode(all);
  return starts_with(text, prompt_text) ? text.substr(prompt_text.size()) : tok.decode(generated);
}

// Prints a growing text's new part. Text that ends in U+FFFD (a character whose bytes have not all
// come yet) waits for the next token, so a multi-byte character is never printed half.
class Printer {
 public:
  void update(const std::string& text, bool last) {
    if (!last && ends_with(text, "\xEF\xBF\xBD")) return;
    if (!starts_with(text, printed_)) return;  // earlier text changed: nothing sound to add
    std::cout << text.substr(printed_.size()) << std::flush;
    printed_ = text;
  }

 private:
  std::string printed_;
};

std::string rounded(double v) { return format_double(std::round(v * 100) / 100); }

}  // namespace

int run_generate(const Args& args) {
  ArgParser p("generate",
              "Continue a prompt with a trained model, using its tokenizer and a KV cache. SOURCE is a run\n"
              "directory (its newest valid checkpoint), a checkpoint directory or hf:DIR (from `export-hf`).\n"
              "The tokenizer: --tokenizer, else DIR/tokenizer.model, else the tokenizer.model of the dataset\n"
              "the checkpoint's recipe trained on (data.train). docs/inference.md has the details.");
  p.positional("SOURCE", "RUN_DIR, CHECKPOINT_DIR or hf:DIR", true)
      .option("--prompt", "TEXT", "the text to continue")
      .option("--prompt-file", "FILE", "one prompt per line, all generated as one batch")
      .integer("--max-new-tokens", "N", "tokens to generate per sequence (default 64, or what fits in model.max_seq_len)", 1)
      .number("--temperature", "T", "0: greedy; else sample from softmax(logits / T) (default 1)", 0.0, 100.0)
      .integer("--top-k", "K", "sample among the K most likely tokens only (default 0: all)", 0)
      .number("--top-p", "P", "sample among the most likely tokens whose mass reaches P only (default 1: all)", 0.0, 1.0)
      .integer("--seed", "S", "sampling seed (default 0): the same seed gives the same text", 0)
      .integer("--batch", "B", "generate B samples of each prompt (default 1)", 1, 4096)
      .option("--tokenizer", "FILE.model", "use this SentencePiece model instead of the one found with the model")
      .option("--device", "cpu|cuda|auto", "where to run (default auto: cuda in bf16 when a GPU is visible, else cpu in fp32)")
      .option("--cuda-graphs", "auto|on|off",
              "replay decode steps from a CUDA graph (default auto: while the cache is smaller than the weights)")
      .flag("--bos", "start every prompt with BOS (for a model trained on `yocotron tokenize --bos` data)")
      .flag("--json", "print one JSON object (prompt_ids, output_ids, text, timings) instead of the text")
      .flag("--no-early-exit", "run every layer over the whole prompt (YOCO-family prefill skips the top half)");
  if (!p.parse(args)) return 0;
  const std::string source = p.positionals()[0];
  GenerationOptions go;
  const bool explicit_length = p.has("--max-new-tokens");
  go.max_new_tokens = p.get_integer("--max-new-tokens", 64);
  go.sampling.temperature = p.get_number("--temperature", 1.0);
  go.sampling.top_k = p.get_integer("--top-k", 0);
  go.sampling.top_p = p.get_number("--top-p", 1.0);
  if (go.sampling.top_p <= 0) throw UsageError("--top-p must be > 0, found " + p.get("--top-p"));
  go.seed = static_cast<uint64_t>(p.get_integer("--seed", 0));
  go.early_exit = !p.has("--no-early-exit");
  try {
    go.graphs = parse_decode_graphs(p.get("--cuda-graphs", "auto"), "--cuda-graphs");
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  const int64_t samples = p.get_integer("--batch", 1);
  const at::Device device = inference_device(p.get("--device"));
  const bool gpu = device.is_cuda();
  const bool json_out = p.has("--json");
  const bool batch_mode = p.has("--prompt-file") || p.has("--batch");  // JSON fields are arrays then
  std::vector<std::string> prompt_texts = read_prompts(p);

  ModelSource src = open_model_source(source);
  const ModelConfig& mc = src.config.model;
  std::unique_ptr<TokenizerClient> tok = open_model_tokenizer(src, source, p.get("--tokenizer"));
  const std::string tokenizer_path = tok->model_path();
  if (p.has("--bos") && tok->bos_id() < 0) throw ConfigError({cat("--bos: ", tokenizer_path, " has no BOS piece")});
  go.eos_id = tok->eos_id();
  go.sampling.vocab_limit = tok->vocab_size();

  std::vector<std::vector<int64_t>> prompts;  // one row per sample
  int64_t longest = 0;
  for (const auto& text : prompt_texts) {
    std::vector<int64_t> ids = tok->encode(text);
    if (p.has("--bos")) ids.insert(ids.begin(), tok->bos_id());
    longest = std::max<int64_t>(longest, static_cast<int64_t>(ids.size()));
    for (int64_t s = 0; s < samples; ++s) prompts.push_back(ids);
  }
  const int64_t room = mc.max_seq_len - longest;
  if (explicit_length && go.max_new_tokens > room)
    throw ConfigError({cat("a prompt of ", longest, " tokens plus --max-new-tokens ", go.max_new_tokens,
                           " exceeds model.max_seq_len=", mc.max_seq_len, " (", src.config_file, ")")});
  if (room < 1)
    throw ConfigError({cat("a prompt of ", longest, " tokens leaves no room to generate within model.max_seq_len=",
                           mc.max_seq_len, " (", src.config_file, ")")});
  go.max_new_tokens = std::min(go.max_new_tokens, room);

  // An inference run chooses its own attention kernel: training's cuDNN or flash choice needs a GPU.
  if (!gpu && (mc.attention == "cudnn" || mc.attention == "flash")) src.config.model.attention = "auto";
  if (gpu) set_current_cuda_device(0);
  Decoder model = load_model(src);
  prepare_for_inference(model, device);

  const size_t rows = prompts.size();
  std::vector<std::string> prompt_decoded;  // each distinct prompt's text as the tokenizer reads it back
  for (size_t i = 0; i < prompt_texts.size(); ++i) prompt_decoded.push_back(tok->decode(prompts[i * static_cast<size_t>(samples)]));
  auto prompt_of = [&](size_t row) { return row / static_cast<size_t>(samples); };
  const bool stream = rows == 1 && !json_out;
  Printer printer;
  std::vector<int64_t> so_far;
  if (stream) std::cout << prompt_texts[0] << std::flush;
  GenerationResult r = generate(model, prompts, go, [&](const std::vector<int64_t>& chosen) {
    if (!stream) return;
    so_far.push_back(chosen[0]);
    printer.update(continuation(*tok, prompts[0], prompt_decoded[0], so_far), false);
  });
  std::vector<std::string> text;
  for (size_t b = 0; b < rows; ++b) text.push_back(continuation(*tok, prompts[b], prompt_decoded[prompt_of(b)], r.tokens[b]));

  if (json_out) {
    json out;
    auto field = [&](auto per_row) {
      json a = json::array();
      for (size_t b = 0; b < rows; ++b) a.push_back(per_row(b));
      return batch_mode ? a : a[0];
    };
    out["prompt_ids"] = field([&](size_t b) { return json(prompts[b]); });
    out["output_ids"] = field([&](size_t b) { return json(r.tokens[b]); });
    out["text"] = field([&](size_t b) { return json(text[b]); });
    out["prefill_ms"] = r.prefill_ms;
    out["decode_tokens_per_s"] = r.decode_tokens_per_s();
    out["cuda_graphs"] = r.cuda_graphs;
    out["kv_cache_bytes"] = r.kv_cache_bytes;
    out["device"] = device.str();
    out["dtype"] = gpu ? "bf16" : "fp32";
    out["tokenizer"] = tokenizer_path;
    // Byte pieces can decode to invalid UTF-8: replaced (U+FFFD) rather than refused.
    std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  } else if (stream) {
    printer.update(text[0], true);
    std::cout << "\n";
  } else {
    for (size_t b = 0; b < rows; ++b)
      std::cout << "--- sequence " << b + 1 << " of " << rows << " ---\n"
                << prompt_texts[prompt_of(b)] << text[b] << "\n";
  }
  int64_t generated = 0;
  for (const auto& t : r.tokens) generated += static_cast<int64_t>(t.size());
  std::cerr << "generated " << generated << " tokens on " << device.str() << " (" << (gpu ? "bf16" : "fp32")
            << "): prefill " << rounded(r.prefill_ms) << " ms, decode "
            << rounded(r.decode_tokens_per_s()) << " tokens/s, KV cache " << r.kv_cache_bytes << " bytes\n";
  return 0;
}

}  // namespace yt::cli
