// Hugging Face interop. `transformer` models export as LlamaForCausalLM (model.safetensors +
// config.json) that transformers loads directly: our parameter names are Llama's and our RoPE uses
// the same half-split layout, so no weight permutation is needed. Other architectures export the
// same files with model_type "yocotron", the recipe and KV plan inside config.json (for our own
// loader), the plan settings at its top level, and our modeling files with an auto_map (for
// transformers with trust_remote_code, hf_modeling.h). Import accepts both (a Llama directory such
// as a TinyLlama checkpoint, or our export) and refuses plan settings that differ from the model's.
#pragma once
#include <string>

#include "yocotron/decoder.h"

namespace yt {

struct HfExportOptions {
  at::ScalarType dtype = at::kFloat;
  int64_t sample_tokens = 0;  // > 0: also write yocotron_sample.safetensors (input_ids [2, N], our fp32 logits)
  uint64_t sample_seed = 0;
  std::string shown_as;  // the directory messages name (export-hf writes into a staging one); "" = DIR
};

// Writes DIR/model.safetensors, then DIR/config.json (and the sample; for non-Llama architectures
// DIR/modeling_yocotron.py and DIR/configuration_yocotron.py). Between tensors it honours
// a stop signal (stop_signal.h): it throws Stopped, leaving no new model.safetensors or config.json.
void export_hf(Decoder& model, const std::string& dir, const HfExportOptions& opts);

// The model section of config.json read as our ModelConfig (Llama fields or our embedded recipe).
ModelConfig model_config_from_hf(const std::string& dir);

// Loads DIR/model.safetensors (or the shards listed in model.safetensors.index.json) into `model`.
// The directory's shape must equal the model's: each mismatch is reported naming both keys.
void load_hf_weights(Decoder& model, const std::string& dir);

// Applies `model.init_from`: "" = nothing, "hf:DIR" = load_hf_weights, "checkpoint:DIR" = the fp32
// master weights of a yocotron checkpoint (a step_* directory, or a run directory: its newest valid
// checkpoint), re-sliced for this model's TP rank. Only weights: the optimizer starts fresh.
void apply_init_from(Decoder& model, const std::string& init_from);

// The checkpoint directory a path names: itself when it holds a manifest, else the newest valid
// checkpoint under PATH/checkpoints (a run directory). Throws naming the path.
std::string resolve_checkpoint_path(const std::string& path);

}  // namespace yt
