// `yocotron export-hf SOURCE --out DIR`: Hugging Face model.safetensors + config.json, and the
// model's tokenizer.model when one is found (model_source.h), so that DIR is complete for `generate`.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/fileio.h"
#include "yocotron/hf.h"
#include "yocotron/model_factory.h"
#include "yocotron/model_source.h"
#include "yocotron/str.h"
#include "yocotron/stop_signal.h"

namespace yt::cli {

int run_export_hf(const Args& args) {
  ArgParser p("export-hf", "Write a model as Hugging Face files (model.safetensors + config.json). A `transformer`\n"
                           "loads with transformers.LlamaForCausalLM.from_pretrained(DIR); other architectures carry\n"
                           "their recipe and KV plan in config.json for yocotron's own loader (model.init_from: hf:DIR).\n"
                           "The model's tokenizer.model (as `generate` finds it) is copied into DIR when there is one.");
  p.positional("SOURCE", "a checkpoint directory, a run directory (its newest valid checkpoint), hf:DIR, or a "
                         "recipe (its initial weights, after model.init_from)", true)
      .option("--out", "DIR", "output directory (created)")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--dtype", "fp32|bf16", "dtype of the exported weights (default fp32; mixing weights stay fp32)")
      .integer("--sample-tokens", "N",
               "also write yocotron_sample.safetensors: 2 x N random tokens and our logits (N <= model.max_seq_len)", 0);
  if (!p.parse(args)) return 0;
  if (!p.has("--out")) throw UsageError("missing --out DIR");
  const std::string out = p.get("--out");
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
  export_hf(model, out, opts);
  std::cout << "wrote " << out << "/model.safetensors and config.json (" << cfg.model.arch << from << ")\n";
  TokenizerSearch tok = find_tokenizer(model_dir, cfg);
  if (tok.path.empty()) {
    std::cout << "no tokenizer found (looked for " << join(tok.searched, " and ") << "); " << out
              << " has none: give `generate` --tokenizer FILE.model\n";
    return 0;
  }
  const std::string copy = (std::filesystem::path(out) / "tokenizer.model").string();
  std::error_code same_file_unknown;
  if (std::filesystem::equivalent(tok.path, copy, same_file_unknown)) return 0;  // hf:DIR exported into DIR
  write_text_file_atomic(copy, read_text_file(tok.path));
  std::cout << "copied " << tok.path << " to " << copy << "\n";
  return 0;
}

}  // namespace yt::cli
