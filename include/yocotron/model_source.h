// A trained model named on the command line: a checkpoint directory, a run directory (its newest
// valid checkpoint) or hf:DIR (Hugging Face files, e.g. from `export-hf`). Opens its recipe, loads
// its weights, and finds the SentencePiece model that goes with it. `generate` and `export-hf`
// share it, so both read a model the same way.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/decoder.h"

namespace yt {

struct ModelSource {
  std::string dir;          // the checkpoint directory, or the Hugging Face directory
  bool hf = false;
  Config config;            // the checkpoint's recipe; for hf:DIR, a recipe around config.json's model
  std::string config_file;  // DIR/config.yaml or DIR/config.json
};

// Whether `arg` names a model source rather than a recipe file: hf:DIR or a directory.
bool is_model_source(const std::string& arg);

// Reads the recipe only (cheap). `sets` override recipe keys (checkpoints only). A path that names
// no model (missing, or a directory without a valid checkpoint) is a ConfigError naming it.
ModelSource open_model_source(const std::string& source, const std::vector<std::string>& sets = {});

// The model with its weights (a checkpoint's fp32 master weights), fp32 on the CPU.
Decoder load_model(const ModelSource& src);

// The model ready for inference on `device`: on a GPU its weights in bf16 (except those training
// keeps in fp32, the KV mixing weights), on the CPU in fp32, or in `dtype` when given; autograd off.
void prepare_for_inference(Decoder& model, const at::Device& device, std::optional<at::ScalarType> dtype = std::nullopt);

struct TokenizerSearch {
  std::string path;                   // "" when none was found
  std::vector<std::string> searched;  // every file looked for, in order
};
// DIR/tokenizer.model of the model's directory (`model_dir`, "" for none), else the tokenizer.model
// of the dataset whose split `recipe.data.train` names (DATASET/train -> DATASET/tokenizer.model).
TokenizerSearch find_tokenizer(const std::string& model_dir, const Config& recipe);

class TokenizerClient;

// The tokenizer service for `src`'s tokenizer: `given` (--tokenizer FILE.model) when not empty, else
// find_tokenizer()'s. A missing or foreign file (more pieces than the model's vocabulary) is a
// ConfigError naming it; `source` is the model as the user named it.
std::unique_ptr<TokenizerClient> open_model_tokenizer(const ModelSource& src, const std::string& source,
                                                      const std::string& given);

// --device cpu|cuda|auto of an inference command ("" or auto = cuda when a GPU is visible, else cpu;
// cpu never initialises CUDA; GPU 0, which eval moves to its local rank's): a UsageError for anything
// else, a runtime error for cuda without a GPU.
at::Device inference_device(const std::string& name);

}  // namespace yt
