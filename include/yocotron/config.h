// Recipes: the typed configuration of a run, loaded strictly from YAML.
// A recipe may name a `base:` recipe (path relative to itself) and override parts of it;
// `--set section.key=value` overrides any key, typed by the schema. Every problem (unknown key,
// wrong type, inconsistent values) is reported at once, one line each, naming the key.
// Keys and their meaning are documented in docs/configuration.md (a test keeps both in step).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace yt {

struct YocoppConfig {
  double scaling_factor = 35.0;  // s: K~ = s (a K_1 + b K_i); 1.0 = "without scaling factor"
  bool weight_decay = false;     // whether the mixing scalars are decayed by AdamW
};

struct FusedKvConfig {
  std::string init = "normal";  // normal | lite
  bool weight_decay = false;     // whether AdamW decays the fusion vectors
};

struct ResformerConfig {
  bool learnable = false;
  double lambda1 = 0.5;  // weight of layer 1's values
  double lambda2 = 0.5;  // weight of the layer's own values
  bool weight_decay = false;  // whether AdamW decays λ (learnable only)
};

// The original YOCO decoder-decoder family (yoco_swa, yoco_gret, yocou): see docs/architectures.md.
struct YocoConfig {
  int64_t window = 1024;        // sliding window W in tokens, the current one included (yoco_swa, yocou)
  int64_t loops = 3;            // T: times yocou applies its self-decoder block (1 = yoco_swa)
  bool cross_rope = true;       // RoPE on the cross-decoder's queries and the global keys
  int64_t chunk = 256;          // gated retention's training chunk (yoco_gret)
  bool embed_scale = false;     // multiply embeddings by sqrt(d_model), as the original code does
  std::string rope_freqs = "llama";  // llama: theta^(-2i/d_h) | linspace: theta^(-linspace(0, 1, d_h/2)) (original)
};

struct ModelConfig {
  std::string arch = "transformer";
  int64_t n_layers = 4;
  int64_t d_model = 128;
  int64_t n_heads = 4;
  int64_t n_kv_heads = 2;
  int64_t d_ffn = 352;
  int64_t vocab_size = 2048;
  int64_t max_seq_len = 256;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  std::string attention = "auto";  // auto | sdpa | cudnn | flash | math
  bool fused_kernels = true;       // CUDA kernels (src/kernels) for norms, RoPE, SwiGLU, the loss on CUDA tensors
  std::string init_from;           // "" | hf:DIR | checkpoint:DIR
  YocoppConfig yocopp;
  FusedKvConfig fusedkv;
  ResformerConfig resformer;
  YocoConfig yoco;

  int64_t head_dim() const { return d_model / n_heads; }
};

struct DataConfig {
  std::string train;  // a split directory of token shards, e.g. data/demo/train
  std::string val;    // "" = no evaluation
  int64_t seq_len = 128;
  int64_t prefetch = 4;  // batches prepared ahead by the loader thread
};

struct TrainConfig {
  int64_t steps = 200;
  int64_t micro_batch = 8;    // sequences per rank per forward/backward
  int64_t global_batch = 16;  // sequences per optimizer step, summed over data-parallel ranks
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 20;
  std::string schedule = "cosine";  // cosine | linear | constant
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double grad_clip = 1.0;  // 0 = no clipping
  std::string precision = "fp32";  // fp32 | bf16
  std::string device = "auto";     // auto | cpu | cuda
  int64_t seed = 1234;
  int64_t eval_every = 0;  // 0 = never
  int64_t eval_batches = 8;
  // Multiple-choice tasks scored during training (names or .jsonl files, as `yocotron eval --tasks`).
  std::vector<std::string> eval_tasks;
  int64_t eval_tasks_every = 0;     // 0: at train.eval_every
  std::string eval_tasks_data;      // where named tasks' raw files are ("" = the working directory)
  int64_t eval_tasks_limit = 0;     // > 0: the first N items of each task
  int64_t exit_after_steps = 0;  // 0 = run to train.steps
  int64_t max_skipped_in_a_row = 5;
  int64_t loss_chunk_tokens = 4096;      // head + cross entropy in chunks of this many tokens; 0 = full logits
  std::string recompute = "none";        // none | selective | full
  std::string grad_accum_dtype = "fp32";  // fp32 | bf16: gradient sum over micro-steps for bf16 runs
};

struct ParallelConfig {
  int64_t tp = 1;
  bool sequence_parallel = false;  // split activations outside the TP regions along the sequence
  double bucket_mb = 25.0;
  bool overlap = true;
  bool zero1 = false;
  std::string reduce_dtype = "fp32";  // fp32 | native
  double timeout_s = 300.0;
};

struct CheckpointConfig {
  int64_t every = 100;  // 0 = only at the end / on exit
  int64_t keep_last = 2;
};

struct LogConfig {
  int64_t every = 10;
  std::string level = "info";
  std::string run_dir;  // "" = runs/<recipe file stem>
  bool tensorboard = true;
  std::vector<int64_t> profile_steps;  // [] = off, else [a, b]: profile optimizer steps a..b (1-based)
};

struct Config {
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  ParallelConfig parallel;
  CheckpointConfig checkpoint;
  LogConfig log;
  std::string source;  // the recipe file it came from ("" for defaults)
};

// Thrown with every problem found; what() joins them with newlines.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<std::string> problems);
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  std::vector<std::string> problems_;
};

struct SchemaKey {
  std::string key;   // dotted path, e.g. model.yocopp.scaling_factor
  std::string type;  // integer | number | boolean | string | list of integers | one of a|b|c
  std::string default_text;
};

// Every key the schema knows, in document order.
std::vector<SchemaKey> schema();

// Loads a recipe, follows `base:` links, applies `--set` overrides ("model.n_layers=6"),
// type-checks every key and validates the whole. Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from YAML text (for tests and for config.yaml inside checkpoints).
Config config_from_yaml(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                        const std::string& origin = "<yaml>");

// The fully resolved recipe as YAML (no `base:`); loads back to an equal Config.
std::string to_yaml(const Config& cfg);

// Every key with its value as text ("model.n_layers" -> "4"), in schema order; for comparing recipes.
std::vector<std::pair<std::string, std::string>> flatten(const Config& cfg);

struct KeyDifference {
  std::string key, was, is;
};
// The model.* keys whose values differ, ignoring those that do not change the weights' function
// (model.init_from, model.attention): what must match to load weights of one model into another.
std::vector<KeyDifference> model_differences(const ModelConfig& was, const ModelConfig& is);

// Semantic problems of a typed config, one message per problem naming the keys.
std::vector<std::string> validate(const Config& cfg);

}  // namespace yt
