// `yocotron export-hf SOURCE --out DIR`: Hugging Face model.safetensors + config.json (and, for
// the non-Llama architectures, the modeling files that transformers loads with trust_remote_code),
// and the model's tokenizer.model when one is found (model_source.h) with a tokenizer_config.json
// for transformers' LlamaTokenizer, so that DIR is complete for `generate` and for lm-eval.
// The files are written into a staging directory beside DIR that then replaces DIR whole: an export
// never mixes with an earlier one's files, and a failed or stopped export leaves DIR as it was.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/fileio.h"
#include "yocotron/hf.h"
#include "yocotron/model_factory.h"
#include "yocotron/model_source.h"
#include "yocotron/str.h"
#include "yocotron/stop_signal.h"

namespace yt::cli {
namespace {

namespace fs = std::filesystem;

// Whether our token streams start with BOS: the dataset's manifest says (`tokenize --bos`); a
// directory that already has a tokenizer_config.json (hf:DIR) keeps its own. false otherwise.
struct BosRule {
  bool add_bos = false;
  std::string why;
};

BosRule bos_rule(const std::string& tokenizer_path) {
  fs::path manifest = fs::path(tokenizer_path).parent_path() / "manifest.json";
  if (fs::is_regular_file(manifest)) {
    try {
      auto j = nlohmann::json::parse(read_text_file(manifest.string()));
      if (j.value("format", "") == "yocotron-dataset" && j.contains("tokenizer"))
        return {j["tokenizer"].value("add_bos", false), manifest.string() + " (tokenizer.add_bos)"};
    } catch (const nlohmann::json::exception&) {
    }
  }
  return {false, "no dataset manifest beside the tokenizer: documents were tokenized without BOS"};
}

// LlamaTokenizer over our SentencePiece model (ids: <unk> 0, <s> 1, </s> 2, as `tokenize` trains).
std::string tokenizer_config(const BosRule& bos, int64_t max_len) {
  nlohmann::json j = {{"tokenizer_class", "LlamaTokenizer"},
                      {"add_bos_token", bos.add_bos},
                      {"add_eos_token", false},
                      {"bos_token", "<s>"},
                      {"eos_token", "</s>"},
                      {"unk_token", "<unk>"},
                      {"pad_token", nullptr},
                      {"legacy", true},
                      {"clean_up_tokenization_spaces", false},
                      {"model_max_length", max_len}};
  return j.dump(2) + "\n";
}

// DIR without a trailing separator ("out/" and "out" name the same directory).
fs::path export_target(const std::string& out) {
  fs::path p = fs::path(out).lexically_normal();
  return p.has_filename() ? p : p.parent_path();
}

// Refuses DIR before any work: a file, or a directory with files in it unless --overwrite.
void check_export_target(const fs::path& dir, bool overwrite) {
  std::error_code ec;
  const auto st = fs::symlink_status(dir, ec);
  if (!fs::exists(st)) return;
  if (fs::is_symlink(st))
    throw UsageError(cat("--out ", dir.string(), ": is a symbolic link; give the directory it points to"));
  if (!fs::is_directory(st))
    throw UsageError(cat("--out ", dir.string(), ": exists and is not a directory"));
  if (fs::is_empty(dir, ec)) return;
  if (!overwrite)
    throw UsageError(cat("--out ", dir.string(), ": the directory is not empty; give --overwrite to replace it "
                                                 "(its files are removed, not merged)"));
  // --overwrite replaces an earlier export, never a dataset, a run's logs or a checkpoint.
  if (!fs::is_regular_file(dir / "config.json", ec) || !fs::is_regular_file(dir / "model.safetensors", ec))
    throw UsageError(cat("--out ", dir.string(), ": --overwrite replaces only an earlier export (a directory with "
                                                 "config.json and model.safetensors), and this is not one"));
}

// --overwrite replaces DIR whole: refused when DIR holds what is being exported (a run or a
// checkpoint inside it would go with it). hf:DIR into DIR itself is fine: it is read before the swap.
void refuse_replacing_the_source(const fs::path& dir, const std::string& source_dir, bool hf_source) {
  if (source_dir.empty()) return;
  std::error_code ec;
  const fs::path out = fs::weakly_canonical(dir, ec), src = fs::weakly_canonical(source_dir, ec);
  if (hf_source && out == src) return;
  const auto [o, s] = std::mismatch(out.begin(), out.end(), src.begin(), src.end());
  if (o == out.end())
    throw UsageError(cat("--out ", dir.string(), ": holds the source ", source_dir,
                         ", which replacing it would delete; export into another directory"));
}

}  // namespace

int run_export_hf(const Args& args) {
  ArgParser p("export-hf", "Write a model as Hugging Face files (model.safetensors + config.json). A `transformer`\n"
                           "loads with transformers.LlamaForCausalLM.from_pretrained(DIR); other architectures add\n"
                           "modeling_yocotron.py + configuration_yocotron.py (auto_map), so that\n"
                           "AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True) loads them; config.json also\n"
                           "carries the recipe and KV plan for yocotron's own loader (model.init_from: hf:DIR).\n"
                           "The model's tokenizer.model (as `generate` finds it) is copied into DIR when there is one, with a\n"
                           "tokenizer_config.json (LlamaTokenizer; add_bos_token as the dataset was tokenized).");
  p.positional("SOURCE", "a checkpoint directory, a run directory (its newest valid checkpoint), hf:DIR, or a "
                         "recipe (its initial weights, after model.init_from)", true)
      .option("--out", "DIR", "output directory (created; replaced whole with --overwrite)")
      .flag("--overwrite", "replace --out DIR when it holds an earlier export (config.json + model.safetensors): its files are removed, not merged")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--dtype", "fp32|bf16", "dtype of the exported weights (default fp32; mixing weights stay fp32)")
      .integer("--sample-tokens", "N",
               "also write yocotron_sample.safetensors: 2 x N random tokens and our logits (N <= model.max_seq_len)", 0);
  if (!p.parse(args)) return 0;
  if (!p.has("--out")) throw UsageError("missing --out DIR");
  const fs::path target = export_target(p.get("--out"));
  check_export_target(target, p.has("--overwrite"));
  install_stop_handlers();  // SIGTERM/SIGINT/SIGUSR1: stop between tensors, exit 75 (export_hf)
  HfExportOptions opts;
  std::string dtype = p.get("--dtype", "fp32");
  if (dtype == "bf16") opts.dtype = at::kBFloat16;
  else if (dtype != "fp32") throw UsageError("--dtype must be fp32 or bf16, found '" + dtype + "'");
  opts.sample_tokens = p.get_integer("--sample-tokens", 0);
  auto check_sample = [&](const Config& c) {  // before any weight is built or read
    if (opts.sample_tokens > c.model.max_seq_len)
      throw UsageError(cat("--sample-tokens ", opts.sample_tokens, ": out of range; expected an integer in [0, ",
                           c.model.max_seq_len, "] (model.max_seq_len)"));
  };
  const std::string source = p.positionals()[0];
  Config cfg;
  std::string model_dir, from;
  Decoder model{nullptr};
  if (is_model_source(source)) {  // a checkpoint (its recipe and fp32 master weights) or hf:DIR
    ModelSource src = open_model_source(source, p.all("--set"));
    check_sample(src.config);
    refuse_replacing_the_source(target, src.dir, starts_with(source, "hf:"));
    model = load_model(src);
    cfg = src.config;
    model_dir = src.dir;
    from = ", " + src.dir;
  } else {
    cfg = load_config(source, p.all("--set"));
    check_sample(cfg);
    model = build_decoder(cfg);
  }
  opts.sample_seed = static_cast<uint64_t>(cfg.train.seed);
  const std::string out = target.string();
  opts.shown_as = out;
  StagedDirectory staged(out, (target.parent_path() / cat(".", target.filename().string(), ".tmp-export-", ::getpid())).string());
  const fs::path staging(staged.path());
  export_hf(model, staging.string(), opts);
  std::vector<std::string> said{cat("wrote ", out, "/model.safetensors and config.json (", cfg.model.arch, from, ")")};
  // The tokenizer is read before DIR is replaced, so hf:DIR exported into DIR keeps its own.
  TokenizerSearch tok = find_tokenizer(model_dir, cfg);
  if (tok.path.empty()) {
    said.push_back(cat("no tokenizer found (looked for ", join(tok.searched, " and "), "); ", out,
                       " has none: give `generate` --tokenizer FILE.model"));
  } else {
    write_text_file_atomic((staging / "tokenizer.model").string(), read_text_file(tok.path));
    said.push_back(cat("copied ", tok.path, " to ", out, "/tokenizer.model"));
    const fs::path theirs = fs::path(tok.path).parent_path() / "tokenizer_config.json";
    const std::string config_out = (staging / "tokenizer_config.json").string();
    if (fs::is_regular_file(theirs)) {  // an HF directory's own settings win
      write_text_file_atomic(config_out, read_text_file(theirs.string()));
    } else {
      BosRule bos = bos_rule(tok.path);
      write_text_file_atomic(config_out, tokenizer_config(bos, cfg.model.max_seq_len));
      said.push_back(cat("wrote ", out, "/tokenizer_config.json (LlamaTokenizer, add_bos_token=",
                         bos.add_bos ? "true" : "false", ": ", bos.why, ")"));
    }
  }
  throw_if_stop_requested(cat("exporting to ", out));
  staged.commit();  // the old DIR is moved aside and removed only once the new one is in place
  for (const auto& line : said) std::cout << line << "\n";
  return 0;
}

}  // namespace yt::cli
