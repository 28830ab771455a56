#include "yocotron/model_source.h"

#include <filesystem>

#include "yocotron/checkpoint.h"
#include "yocotron/cli_args.h"
#include "yocotron/device.h"
#include "yocotron/fileio.h"
#include "yocotron/hf.h"
#include "yocotron/str.h"
#include "yocotron/tokenizer_client.h"

namespace yt {
namespace fs = std::filesystem;

bool is_model_source(const std::string& arg) { return starts_with(arg, "hf:") || fs::is_directory(arg); }

ModelSource open_model_source(const std::string& source, const std::vector<std::string>& sets) {
  ModelSource src;
  if (starts_with(source, "hf:")) {
    src.hf = true;
    src.dir = source.substr(3);
    src.config_file = (fs::path(src.dir) / "config.json").string();
    if (!fs::is_directory(src.dir)) throw ConfigError({cat(source, ": no such directory")});
    if (!fs::exists(src.config_file))
      throw ConfigError({cat(source, ": no config.json (a directory written by `yocotron export-hf` or a Hugging Face model)")});
    if (!sets.empty()) throw ConfigError({cat(source, ": --set applies to checkpoints only")});
    try {
      src.config.model = model_config_from_hf(src.dir);
    } catch (const ConfigError&) {
      throw;
    } catch (const std::runtime_error& e) {  // a config.json we cannot read as a model is the caller's input
      throw ConfigError({e.what()});
    }
    return src;
  }
  if (!fs::is_directory(source)) throw ConfigError({cat(source, ": no such run or checkpoint directory")});
  try {
    src.dir = resolve_checkpoint_path(source);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::runtime_error& e) {  // a directory that holds no model is the caller's input
    throw ConfigError({e.what()});
  }
  src.config_file = (fs::path(src.dir) / "config.yaml").string();
  src.config = config_from_yaml(read_text_file(src.config_file), sets, src.config_file);
  src.config.model.init_from.clear();  // the checkpoint's weights replace any initial ones
  return src;
}

Decoder load_model(const ModelSource& src) {
  Decoder model(src.config.model);
  if (src.hf) {
    load_hf_weights(model, src.dir);
  } else {
    LoadedCheckpoint ck = load_checkpoint(src.dir);
    model->load_global_state(ck.tensors.model, src.dir);
  }
  return model;
}

void prepare_for_inference(Decoder& model, const at::Device& device, std::optional<at::ScalarType> dtype) {
  model->eval();
  for (auto& p : model->parameters()) p.set_requires_grad(false);
  model->to_inference(device, dtype.value_or(device.is_cuda() ? at::kBFloat16 : at::kFloat));
}

TokenizerSearch find_tokenizer(const std::string& model_dir, const Config& recipe) {
  TokenizerSearch s;
  auto look = [&](const fs::path& p) {
    s.searched.push_back(p.string());
    if (s.path.empty() && fs::is_regular_file(p)) s.path = p.string();
  };
  if (!model_dir.empty()) look(fs::path(model_dir) / "tokenizer.model");
  if (s.path.empty() && !recipe.data.train.empty()) {
    fs::path split = fs::path(recipe.data.train).lexically_normal();
    if (!split.has_filename()) split = split.parent_path();  // "DATASET/train/"
    look(split.parent_path() / "tokenizer.model");
  }
  return s;
}

std::unique_ptr<TokenizerClient> open_model_tokenizer(const ModelSource& src, const std::string& source,
                                                      const std::string& given) {
  std::string path = given;
  if (path.empty()) {
    TokenizerSearch found = find_tokenizer(src.dir, src.config);
    if (found.path.empty())
      throw ConfigError({cat(source, ": no tokenizer found (looked for ", join(found.searched, " and "),
                             "); give --tokenizer FILE.model")});
    path = found.path;
  } else if (!fs::is_regular_file(path)) {
    throw ConfigError({cat("--tokenizer ", path, ": no such file")});
  }
  std::unique_ptr<TokenizerClient> tok;
  try {
    tok = std::make_unique<TokenizerClient>(path);
  } catch (const std::invalid_argument& e) {  // the service refused the file: the user's input
    throw ConfigError({e.what()});
  }
  if (tok->vocab_size() > src.config.model.vocab_size)
    throw ConfigError({cat(path, " has ", tok->vocab_size(), " pieces but the model's vocabulary (", src.config_file, ") has ",
                           src.config.model.vocab_size, ": not this model's tokenizer")});
  return tok;
}

at::Device inference_device(const std::string& name) {
  const std::string want = name.empty() ? "auto" : name;
  if (want != "cpu" && want != "cuda" && want != "auto")
    throw UsageError("--device must be cpu, cuda or auto, found '" + want + "'");
  const int cuda = choose_cuda_device(want, "--device", 0);
  return cuda >= 0 ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda)) : at::Device(at::kCPU);
}

}  // namespace yt
