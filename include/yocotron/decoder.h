// The one decoder every architecture runs through: a pre-norm Llama stack (RMSNorm, RoPE, GQA
// attention, SwiGLU, untied head) whose layers take their keys and values where the KV plan says.
// Parameter names follow Hugging Face Llama (layers.3.self_attn.k_proj.weight, ...), so export and
// import are renames. The layers are the parallel layers of parallel_layers.h: under tensor
// parallelism each rank holds its heads and vocabulary slice, each layer declares how its weights are
// split, and with sequence parallelism the stream between them is split along the sequence.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

#include "yocotron/block_ops.h"
#include "yocotron/config.h"
#include "yocotron/kv_plan.h"
#include "yocotron/ops.h"
#include "yocotron/parallel_layers.h"

namespace yt {

class Communicator;
class KvCache;

// What every layer of one cached forward call shares (decode.cpp): the cache, where the new tokens
// sit, and the K/V each layer resolved, so later layers can reuse or mix them.
struct CachedStep {
  KvCache* cache = nullptr;
  int64_t new_tokens = 0;       // T: tokens this call appends, at slots [cache length, + T)
  bool last_only = false;       // layers past the early exit: queries for the last new token only
  at::Tensor rope_table_cos, rope_table_sin;  // the model's tables [max_seq_len, D]
  int64_t position_offset = 0;  // unpadded batch: token t sits at position offset + t
  int loop = 0;                 // which application of a looped self-decoder is running (yocou)
  at::Tensor window_mask;       // sliding-window layers: [B, 1, T, W + T] over (ring slots, new tokens)
  at::Tensor cos, sin;          // padded batch: RoPE of each new token [B, T, 1, D] (else undefined)
  bool causal = false;          // the new tokens are the whole cache (a fresh unpadded prefill)
  at::Tensor mask;              // otherwise: [B or 1, 1, T, slots] true where a query may attend; undefined: all
  at::Tensor slot;              // device-indexed decode: the new token's slot [1] (int64, on the device);
                                // K/V are read over the whole capacity under `mask`
  std::vector<at::Tensor> new_k, new_v;    // per layer: the new tokens' final K/V [B, H_kv, T, D]
  std::vector<at::Tensor> full_k, full_v;  // per layer: K/V over every slot [B, H_kv, slots, D]
};

class AttentionImpl : public torch::nn::Module, public DeclaresShards {
 public:
  AttentionImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp);
  // The column-parallel projections applied to the normalised input, in order: W_Q, then W_K and
  // W_V where the layer has them, then (gated retention) the output gate W_G and the decay gate W_γ.
  std::vector<at::Tensor> input_weights() const;
  ColumnInput input(StreamLayout layout) const { return q_proj->input(layout); }
  // projected: the input_weights() outputs, each [B, T, heads_local*D] over the whole sequence.
  // Appends this layer's final K and V ([B, H_kv_local, T, D]) to `finals_k` / `finals_v`; returns
  // the attention output after W_O, summed over the TP group: [B, T or T/tp, d] (opt.layout).
  at::Tensor attend(const std::vector<at::Tensor>& projected, const at::Tensor& cos, const at::Tensor& sin,
                    std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v, const BlockOpOptions& opt);
  // The same at inference (decode.cpp): the new tokens' K/V go into `step`'s cache where the plan
  // stores them, and queries attend over every cached slot.
  at::Tensor attend_cached(const std::vector<at::Tensor>& projected, CachedStep& step, bool fused);
  // Fixed (non-learnable) mixing weights follow from the recipe; a learnable one's initial value is
  // declared with its shard.
  void init_fixed_mix(uint64_t seed);

  ColumnParallelLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr};
  RowParallelLinear o_proj{nullptr};
  ColumnParallelLinear g_proj{nullptr}, gt_proj{nullptr};  // gated retention only
  at::Tensor k_mix, v_mix;  // defined only for mixing/fusing layers

 private:
  // Gated retention from rotated q, k and v [B, h, T, D], the gate projections g [B, T, h*D] and
  // gt [B, T, h]: decay, retention (chunkwise; recurrent when `state` is given and T == 1), the
  // per-head RMSNorm, silu(g) ⊙ o and W_O. `state` [B, h, D, D]: carried in and out when decoding.
  at::Tensor retention_output(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                              const at::Tensor& gt, at::Tensor* state, StreamLayout layout);
  at::Tensor attend_cached_window(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, CachedStep& step);

  LayerKvPlan plan_;
  int64_t head_dim_, local_heads_;
  int64_t retention_chunk_ = 256;
  double norm_eps_ = 1e-5;
  AttentionKernel kernel_;
};
TORCH_MODULE(Attention);

class MlpImpl : public torch::nn::Module {
 public:
  MlpImpl(const ModelConfig& cfg, const TpContext& tp);
  // gate, up: the gate/up projections' outputs [B, T, f_local] -> [B, T or T/tp, d], summed over the
  // TP group.
  at::Tensor forward(const at::Tensor& gate, const at::Tensor& up, const BlockOpOptions& opt);
  ColumnParallelLinear gate_proj{nullptr}, up_proj{nullptr};
  RowParallelLinear down_proj{nullptr};
};
TORCH_MODULE(Mlp);

// The original YOCO's global keys and values, projected once from the self-decoder's output X_mid
// and read by every cross-decoder layer: K^ = RoPE(RMSNorm(X_mid) W_K), V^ = RMSNorm(X_mid) W_V.
class GlobalKvImpl : public torch::nn::Module {
 public:
  GlobalKvImpl(const ModelConfig& cfg, int kv_heads, const TpContext& tp);
  RmsNorm norm{nullptr};
  ColumnParallelLinear k_proj{nullptr}, v_proj{nullptr};
};
TORCH_MODULE(GlobalKv);

// The residual stream enters and leaves a block as a pair (base, delta) whose sum is the stream:
// the add is fused into the next RMSNorm (the next block's, or the final one).
class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(const ModelConfig& cfg, const LayerKvPlan& plan, const TpContext& tp);
  // residual, delta: [B, T, d] (delta undefined for the first block). Returns (h, mlp_out) with
  // h = residual + delta + attention, the stream after this block being h + mlp_out.
  // With `cached`, attention continues its KV cache (cos, sin and finals unused).
  std::pair<at::Tensor, at::Tensor> forward(const at::Tensor& residual, const at::Tensor& delta, const at::Tensor& cos,
                                            const at::Tensor& sin, std::vector<at::Tensor>& finals_k,
                                            std::vector<at::Tensor>& finals_v, const BlockOpOptions& opt,
                                            CachedStep* cached = nullptr);
  RmsNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  Mlp mlp{nullptr};

 private:
  double eps_;
};
TORCH_MODULE(Block);

enum class Recompute { None, Selective, Full };
Recompute parse_recompute(const std::string& name);  // none | selective | full

// How the model executes (not what it computes): recomputation and the loss's chunking.
struct ExecOptions {
  Recompute recompute = Recompute::None;
  int64_t loss_chunk_tokens = 0;  // > 0: head + cross entropy in chunks (linear_cross_entropy.h); 0: full logits
};

class DecoderImpl : public torch::nn::Module {
 public:
  explicit DecoderImpl(const ModelConfig& cfg, TpContext tp = {});

  // tokens [B, T] (int64) -> logits [B, T, vocab] (this rank's vocabulary slice under TP; padding
  // columns are -inf).
  at::Tensor forward(const at::Tensor& tokens);
  // Mean next-token cross entropy over every position; targets [B, T].
  at::Tensor loss(const at::Tensor& tokens, const at::Tensor& targets);

  // Inference (no autograd; decode.cpp): tokens [B, T] continue every sequence at the cache's
  // length and the cache grows by T. Returns the logits of the last position [B, vocab] (all_logits:
  // [B, T, vocab]), over the whole vocabulary under TP. early_exit: the layers from
  // early_exit_layer() on run for the last position only — exact, since they store no K/V.
  at::Tensor forward_cached(const at::Tensor& tokens, KvCache& cache, bool all_logits = false, bool early_exit = false);
  // One decode step whose every address and position is read from the device: tokens [B, 1] go to
  // the slot held in `slot` ([1] int64 on the cache's device; normally cache.length()), attention runs
  // over the whole capacity under a mask. Same logits as forward_cached(tokens, cache); the kernels do
  // not depend on the length, so a CUDA graph of it replays at any length (decode_graph.h). Does not
  // advance the cache. Returns [B, vocab]. Not for plans with a global K^/V^ (the original YOCO
  // family), whose self-decoder state is addressed from the host: they throw.
  at::Tensor forward_decode_at(const at::Tensor& tokens, KvCache& cache, const at::Tensor& slot);
  // Moves the model to `device` with its weights in `dtype` for inference; the RoPE tables stay fp32
  // (as in training, where only the optimizer's compute copy is bf16).
  void to_inference(const at::Device& device, at::ScalarType dtype);
  // The first layer from which no layer stores keys or values (YOCO's top half); n_layers if none.
  int64_t early_exit_layer() const;

  void set_exec_options(const ExecOptions& o) { exec_ = o; }
  const ExecOptions& exec_options() const { return exec_; }
  // Whether CUDA tensors go through yocotron's kernels (model.fused_kernels and a build that has them).
  bool fused_kernels() const { return fused_; }

  // Deterministic N(0, init_std) initialisation: each parameter's global tensor is drawn from a
  // generator seeded by (seed, parameter name), then sliced, so the weights do not depend on the
  // TP size, the device or the construction order.
  void init_weights(uint64_t seed);

  // Every parameter of the model, by name, at its global unpadded shape (not RoPE tables, not
  // fixed mixing weights: those follow from the recipe, see plan_settings in kv_plan.h). With TP > 1 the shards are gathered over the group.
  std::map<std::string, at::Tensor> global_state();
  // Copies global tensors into this rank's shards. Every model tensor must be present with its
  // global shape; a missing, unexpected or misshapen one is an error naming it and `source`.
  void load_global_state(const std::map<std::string, at::Tensor>& tensors, const std::string& source);
  // Tensors of global_state(), in module order.
  std::vector<std::pair<std::string, at::Tensor>> state_tensors();
  // The KV mixing weights, learnable (parameters) and fixed (buffers), in module order.
  std::vector<std::pair<std::string, at::Tensor>> mix_tensors();

  const ModelConfig& config() const { return cfg_; }
  const KvPlan& plan() const { return plan_; }
  const TpContext& tp() const { return tp_; }
  // Every parameter's spec, as its layer declared it (parallel_layers.h).
  const std::map<std::string, ShardSpec>& shard_specs() const { return specs_; }
  int64_t local_vocab() const { return local_vocab_; }

  VocabParallelEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  GlobalKv global_kv{nullptr};  // original YOCO family only
  RmsNorm norm{nullptr};
  ColumnParallelLinear lm_head{nullptr};  // vocabulary-parallel, padded to a multiple of the TP size

 private:
  // Sequence-sharded when parallel.sequence_parallel is on and T tokens split over the TP group.
  StreamLayout layout_for(int64_t T) const;
  // Token embeddings [B, T or T/tp, d], scaled by sqrt(d) where model.yoco.embed_scale says so.
  at::Tensor embed(const at::Tensor& tokens, StreamLayout layout);
  // Original YOCO: the stream after the (looped) self-decoder -> K^, V^ [B, H_kv_local, T, D] and
  // the stream entering the cross-decoder. rope: (x [B, T, h, D]) -> rotated.
  struct GlobalKvOut {
    at::Tensor stream, k, v;
  };
  GlobalKvOut project_global_kv(const at::Tensor& x, const at::Tensor& delta, const BlockOpOptions& opt,
                                const std::function<at::Tensor(const at::Tensor&)>& rope);
  // The final RMSNorm's output [B, T, d] (replicated over the TP group), or this rank's
  // [B, T/tp, d] when `layout` is sequence-sharded.
  at::Tensor final_hidden(const at::Tensor& tokens, StreamLayout layout);
  // Block i with train.recompute=full: only its inputs are kept for backward.
  std::pair<at::Tensor, at::Tensor> recomputed_block(size_t i, const at::Tensor& residual, const at::Tensor& delta,
                                                     std::vector<at::Tensor>& finals_k, std::vector<at::Tensor>& finals_v,
                                                     const BlockOpOptions& opt);
  // The layers, final norm and head of one cached forward call set up in `step` (decode.cpp).
  at::Tensor run_cached_layers(const at::Tensor& tokens, CachedStep& step, bool all_logits, bool early_exit);
  ModelConfig cfg_;
  KvPlan plan_;
  TpContext tp_;
  ExecOptions exec_;
  bool fused_ = false;
  int64_t local_vocab_;
  std::map<std::string, ShardSpec> specs_;
  at::Tensor rope_cos_, rope_sin_;
};
TORCH_MODULE(Decoder);

}  // namespace yt
