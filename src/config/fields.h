// The schema, written once: every recipe key bound to its field of Config. Loading, dumping,
// `schema()` and the documentation check all walk this one list.
#pragma once
#include <string>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/kv_plan.h"

namespace yt::detail {

// An empty choice list means "any value of the field's type".
using Choices = std::vector<std::string>;

template <class C, class V>
void visit_fields(C& c, V&& v) {
  auto& m = c.model;
  v("model.arch", m.arch, architecture_names());
  v("model.n_layers", m.n_layers, Choices{});
  v("model.d_model", m.d_model, Choices{});
  v("model.n_heads", m.n_heads, Choices{});
  v("model.n_kv_heads", m.n_kv_heads, Choices{});
  v("model.d_ffn", m.d_ffn, Choices{});
  v("model.vocab_size", m.vocab_size, Choices{});
  v("model.max_seq_len", m.max_seq_len, Choices{});
  v("model.rope_theta", m.rope_theta, Choices{});
  v("model.norm_eps", m.norm_eps, Choices{});
  v("model.init_std", m.init_std, Choices{});
  v("model.attention", m.attention, Choices{"auto", "sdpa", "cudnn", "flash", "math"});
  v("model.fused_kernels", m.fused_kernels, Choices{});
  v("model.init_from", m.init_from, Choices{});
  v("model.yocopp.scaling_factor", m.yocopp.scaling_factor, Choices{});
  v("model.yocopp.weight_decay", m.yocopp.weight_decay, Choices{});
  v("model.fusedkv.init", m.fusedkv.init, Choices{"normal", "lite"});
  v("model.fusedkv.weight_decay", m.fusedkv.weight_decay, Choices{});
  v("model.resformer.learnable", m.resformer.learnable, Choices{});
  v("model.resformer.lambda1", m.resformer.lambda1, Choices{});
  v("model.resformer.lambda2", m.resformer.lambda2, Choices{});
  v("model.resformer.weight_decay", m.resformer.weight_decay, Choices{});
  v("model.yoco.window", m.yoco.window, Choices{});
  v("model.yoco.loops", m.yoco.loops, Choices{});
  v("model.yoco.cross_rope", m.yoco.cross_rope, Choices{});
  v("model.yoco.chunk", m.yoco.chunk, Choices{});
  v("model.yoco.embed_scale", m.yoco.embed_scale, Choices{});
  v("model.yoco.rope_freqs", m.yoco.rope_freqs, Choices{"llama", "linspace"});

  auto& d = c.data;
  v("data.train", d.train, Choices{});
  v("data.val", d.val, Choices{});
  v("data.seq_len", d.seq_len, Choices{});
  v("data.prefetch", d.prefetch, Choices{});

  auto& t = c.train;
  v("train.steps", t.steps, Choices{});
  v("train.micro_batch", t.micro_batch, Choices{});
  v("train.global_batch", t.global_batch, Choices{});
  v("train.lr", t.lr, Choices{});
  v("train.min_lr", t.min_lr, Choices{});
  v("train.warmup_steps", t.warmup_steps, Choices{});
  v("train.schedule", t.schedule, Choices{"cosine", "linear", "constant"});
  v("train.beta1", t.beta1, Choices{});
  v("train.beta2", t.beta2, Choices{});
  v("train.eps", t.eps, Choices{});
  v("train.weight_decay", t.weight_decay, Choices{});
  v("train.grad_clip", t.grad_clip, Choices{});
  v("train.precision", t.precision, Choices{"fp32", "bf16"});
  v("train.device", t.device, Choices{"auto", "cpu", "cuda"});
  v("train.seed", t.seed, Choices{});
  v("train.eval_every", t.eval_every, Choices{});
  v("train.eval_batches", t.eval_batches, Choices{});
  v("train.eval_tasks", t.eval_tasks, Choices{});
  v("train.eval_tasks_every", t.eval_tasks_every, Choices{});
  v("train.eval_tasks_data", t.eval_tasks_data, Choices{});
  v("train.eval_tasks_limit", t.eval_tasks_limit, Choices{});
  v("train.exit_after_steps", t.exit_after_steps, Choices{});
  v("train.max_skipped_in_a_row", t.max_skipped_in_a_row, Choices{});
  v("train.loss_chunk_tokens", t.loss_chunk_tokens, Choices{});
  v("train.recompute", t.recompute, Choices{"none", "selective", "full"});
  v("train.grad_accum_dtype", t.grad_accum_dtype, Choices{"fp32", "bf16"});

  auto& p = c.parallel;
  v("parallel.tp", p.tp, Choices{});
  v("parallel.sequence_parallel", p.sequence_parallel, Choices{});
  v("parallel.bucket_mb", p.bucket_mb, Choices{});
  v("parallel.overlap", p.overlap, Choices{});
  v("parallel.zero1", p.zero1, Choices{});
  v("parallel.reduce_dtype", p.reduce_dtype, Choices{"fp32", "native"});
  v("parallel.timeout_s", p.timeout_s, Choices{});

  v("checkpoint.every", c.checkpoint.every, Choices{});
  v("checkpoint.keep_last", c.checkpoint.keep_last, Choices{});

  v("log.every", c.log.every, Choices{});
  v("log.level", c.log.level, Choices{"debug", "info", "warn", "error"});
  v("log.run_dir", c.log.run_dir, Choices{});
  v("log.tensorboard", c.log.tensorboard, Choices{});
  v("log.profile_steps", c.log.profile_steps, Choices{});
}

}  // namespace yt::detail
