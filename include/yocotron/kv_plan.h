// The per-layer KV plan: where each layer's keys and values come from. Every architecture is a
// small function from the model config to this plan; one decoder interprets it, and parameter
// counts and KV-cache bytes are derived from it. Layers are 0-based here (docs number them 1..L).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "yocotron/config.h"

namespace yt {

enum class KvCombine {
  Own,         // the layer's own projection (post-RoPE for K)
  Reuse,       // the final K (or V) of layer `from`, used as is
  ScalarMix,   // scale * (w0 * final[from] + w1 * own); two scalars per tensor (YOCO++, ResFormer)
  VectorMix,   // w0 ⊙ final[from] + w1 ⊙ final[from2]; two vectors of head_dim/2, tied within RoPE
               // pairs and shared across heads (FusedKV)
  HeadSplice,  // even KV heads from the own projection, odd heads from final[from] (SkipV1Former)
  Global,      // the one global K^/V^ projected from the self-decoder's output (original YOCO's
               // cross-decoder); the decoder places it at final[from]
};

// What mixes tokens in a layer.
enum class Mixer {
  Attention,  // softmax attention, causal; with window > 0 each query sees itself and window-1 previous
  Retention,  // gated retention (YOCO's gRet): per-head decayed linear attention, O(1) state
};

struct KvSource {
  KvCombine kind = KvCombine::Own;
  int from = -1;
  int from2 = -1;
  double scale = 1.0;
  double w0_init = 0.0;
  double w1_init = 1.0;
  bool random_init = false;  // VectorMix: weights drawn from N(0, 1) instead of (w0_init, w1_init)
  bool learnable = false;
  bool weight_decay = false;

  bool has_weights() const { return kind == KvCombine::ScalarMix || kind == KvCombine::VectorMix; }
};

struct LayerKvPlan {
  int layer = 0;
  int own_k_heads = 0;  // KV heads this layer projects itself (0: no W_K at all)
  int own_v_heads = 0;
  KvSource k, v;
  int cached_k_heads = 0;  // KV heads a decode-time cache stores for this layer
  int cached_v_heads = 0;
  Mixer mixer = Mixer::Attention;
  int64_t window = 0;   // Attention: 0 = full causal; W = sliding window of W tokens (current included)
  bool rope = true;     // RoPE on this layer's queries (and own keys)
  int loop_group = -1;  // >= 0: part of the self-decoder block the plan applies `loops` times
};

struct KvPlan {
  std::string arch;
  std::vector<LayerKvPlan> layers;
  // Original YOCO family: layers [0, self_layers) are the self-decoder, applied `loops` times with
  // the same weights; then one global K^/V^ (global_kv_heads heads, RoPE if global_rope) is
  // projected from its output for every later layer. self_layers = 0: no global K/V.
  int self_layers = 0;
  int loops = 1;
  int global_kv_heads = 0;
  bool global_rope = true;
  int64_t retention_chunk = 256;

  bool has_global_kv() const { return self_layers > 0; }
  // Bytes that grow with the sequence: the layers' cached K/V plus the global K^/V^.
  int64_t kv_cache_bytes_per_token(int64_t head_dim, int64_t bytes_per_element = 2) const;
  // Bytes a decode cache needs per sequence whatever its length: one window ring of W slots per
  // (loop, window layer) at `bytes_per_element`, and one fp32 d_h x d_h state per (loop,
  // retention layer, head) with `heads` query heads.
  int64_t kv_cache_constant_bytes(int64_t head_dim, int64_t heads, int64_t bytes_per_element = 2) const;
};

struct ParamCounts {
  int64_t total = 0;
  int64_t embedding = 0;      // input embedding + output head (untied)
  int64_t non_embedding = 0;  // total - embedding
  int64_t kv_weights = 0;     // learnable mixing/fusion weights (YOCO++ scalars, FusedKV vectors, ...)
  int64_t looped = 0;         // in the self-decoder block a looped plan applies `loops` times (counted once)
};

// Counted from the plan and the shapes alone, without building the model.
ParamCounts count_parameters(const ModelConfig& m, const KvPlan& plan);

struct Architecture {
  std::string name;
  std::string summary;
  KvPlan (*plan)(const ModelConfig&);
  // Extra constraints on the model shape and how it is split (parallel.*), one message per problem
  // naming the keys.
  std::vector<std::string> (*check)(const ModelConfig&, const ParallelConfig&);
};

const std::vector<Architecture>& architectures();
const Architecture* find_architecture(const std::string& name);
const std::vector<std::string>& architecture_names();
KvPlan make_kv_plan(const ModelConfig& m);

// The recipe keys, besides the shape, that the model's function depends on and that its weights
// do not store: model.yocopp.scaling_factor, model.fusedkv.init, model.resformer.{learnable,
// lambda1, lambda2}, model.yoco.{window, loops, cross_rope, embed_scale, rope_freqs} for the
// architectures that use them (the plan is rebuilt from these; model.yoco.chunk only changes how
// retention is computed, not what). Loading
// weights under other values is an error naming the key (hf.cpp); exports carry them (config.json).
struct PlanSetting {
  std::string key;      // recipe key, e.g. model.yocopp.scaling_factor
  std::string hf_key;   // its field in an exported config.json, e.g. yocopp_scaling_factor
  std::string value;    // as text (format_double / true|false / the string)
};
std::vector<PlanSetting> plan_settings(const ModelConfig& m);

// "own", "layer 3", "0.00*L1 + 0.03*self (x35)": a short human description of a source
// (layers printed 1-based, as in the papers).
std::string describe(const KvSource& s);

}  // namespace yt
