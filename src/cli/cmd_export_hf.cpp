// `yocotron export-hf SOURCE --out DIR`: Hugging Face model.safetensors + config.json.
#include <filesystem>
#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/hf.h"
#include "yocotron/checkpoint.h"
#include "yocotron/model_factory.h"
#include "yocotron/stop_signal.h"

namespace yt::cli {

int run_export_hf(const Args& args) {
  ArgParser p("export-hf", "Write a model as Hugging Face files (model.safetensors + config.json). A `transformer`\n"
                           "loads with transformers.LlamaForCausalLM.from_pretrained(DIR); other architectures carry\n"
                           "their recipe and KV plan in config.json for yocotron's own loader (model.init_from: hf:DIR).");
  p.positional("SOURCE", "a checkpoint directory, a run directory (its newest valid checkpoint), or a recipe "
                         "(its initial weights, after model.init_from)", true)
      .option("--out", "DIR", "output directory (created)")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--dtype", "fp32|bf16", "dtype of the exported weights (default fp32; mixing weights stay fp32)")
      .option("--sample-tokens", "N", "also write yocotron_sample.safetensors: 2 x N random tokens and our logits");
  if (!p.parse(args)) return 0;
  if (!p.has("--out")) throw UsageError("missing --out DIR");
  install_stop_handlers();  // SIGTERM/SIGINT/SIGUSR1: stop between tensors, exit 75 (export_hf)
  HfExportOptions opts;
  std::string dtype = p.get("--dtype", "fp32");
  if (dtype == "bf16") opts.dtype = at::kBFloat16;
  else if (dtype != "fp32") throw UsageError("--dtype must be fp32 or bf16, found '" + dtype + "'");
  try {
    opts.sample_tokens = std::stoll(p.get("--sample-tokens", "0"));
  } catch (const std::exception&) {
    throw UsageError("--sample-tokens expects an integer, found '" + p.get("--sample-tokens") + "'");
  }
  const std::string source = p.positionals()[0];
  Config cfg;
  if (std::filesystem::is_directory(source)) {  // a checkpoint: its recipe and its fp32 master weights
    std::string dir = resolve_checkpoint_path(source);
    LoadedCheckpoint ck = load_checkpoint(dir);
    cfg = config_from_yaml(ck.state.config_yaml, p.all("--set"), dir + "/config.yaml");
    cfg.model.init_from.clear();
    Decoder model(cfg.model);
    model->load_global_state(ck.tensors.model, dir);
    opts.sample_seed = static_cast<uint64_t>(cfg.train.seed);
    export_hf(model, p.get("--out"), opts);
    std::cout << "wrote " << p.get("--out") << "/model.safetensors and config.json (" << cfg.model.arch << ", "
              << dir << ")\n";
    return 0;
  }
  cfg = load_config(source, p.all("--set"));
  Decoder model = build_decoder(cfg);
  opts.sample_seed = static_cast<uint64_t>(cfg.train.seed);
  export_hf(model, p.get("--out"), opts);
  std::cout << "wrote " << p.get("--out") << "/model.safetensors and config.json (" << cfg.model.arch << ")\n";
  return 0;
}

}  // namespace yt::cli
