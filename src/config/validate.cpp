// Semantic checks of a typed Config: each problem is one message naming the keys involved.
#include "yocotron/checked_int.h"
#include "yocotron/config.h"
#include "yocotron/kv_plan.h"
#include "yocotron/str.h"

namespace yt {
namespace {

constexpr int64_t kMaxLayers = 1000000;
constexpr int64_t kMaxHeads = 2147483647;

void positive(std::vector<std::string>& out, const char* key, int64_t v) {
  if (v <= 0) out.push_back(cat(key, "=", v, " must be > 0"));
}

void non_negative(std::vector<std::string>& out, const char* key, int64_t v) {
  if (v < 0) out.push_back(cat(key, "=", v, " must be >= 0"));
}

std::string join_ints(const std::vector<int64_t>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + "]";
}

void check_model(const ModelConfig& m, std::vector<std::string>& out) {
  positive(out, "model.n_layers", m.n_layers);
  positive(out, "model.d_model", m.d_model);
  positive(out, "model.n_heads", m.n_heads);
  positive(out, "model.n_kv_heads", m.n_kv_heads);
  positive(out, "model.d_ffn", m.d_ffn);
  positive(out, "model.vocab_size", m.vocab_size);
  positive(out, "model.max_seq_len", m.max_seq_len);
  if (!out.empty()) return;  // the divisibility checks below need positive sizes
  // Beyond these the per-layer plan (int head counts, a host structure per layer) cannot be built;
  // sizes within them are checked for overflow where parameters and bytes are counted.
  if (m.n_layers > kMaxLayers) out.push_back(cat("model.n_layers=", m.n_layers, " exceeds ", kMaxLayers, ", the most layers yocotron builds"));
  for (auto [key, v] : {std::pair<const char*, int64_t>{"model.n_heads", m.n_heads}, {"model.n_kv_heads", m.n_kv_heads}})
    if (v > kMaxHeads) out.push_back(cat(key, "=", v, " exceeds ", kMaxHeads, ", the most heads yocotron builds"));
  if (!out.empty()) return;
  if (m.d_model % m.n_heads != 0)
    out.push_back(cat("model.d_model=", m.d_model, " is not divisible by model.n_heads=", m.n_heads));
  else if (m.head_dim() % 2 != 0)
    out.push_back(cat("model.d_model/model.n_heads=", m.head_dim(), " (head dim) must be even for RoPE"));
  if (m.n_heads % m.n_kv_heads != 0)
    out.push_back(cat("model.n_heads=", m.n_heads, " is not divisible by model.n_kv_heads=", m.n_kv_heads));
  if (!(m.rope_theta > 0)) out.push_back(cat("model.rope_theta=", m.rope_theta, " must be > 0"));
  if (!(m.norm_eps > 0)) out.push_back(cat("model.norm_eps=", m.norm_eps, " must be > 0"));
  if (!(m.init_std > 0)) out.push_back(cat("model.init_std=", m.init_std, " must be > 0"));
  positive(out, "model.yoco.window", m.yoco.window);
  positive(out, "model.yoco.loops", m.yoco.loops);
  positive(out, "model.yoco.chunk", m.yoco.chunk);
  if (m.yoco.loops > 64) out.push_back(cat("model.yoco.loops=", m.yoco.loops, " exceeds 64, the most loops yocotron builds"));
}

void check_train(const Config& c, std::vector<std::string>& out) {
  const TrainConfig& t = c.train;
  positive(out, "train.steps", t.steps);
  positive(out, "train.micro_batch", t.micro_batch);
  positive(out, "train.global_batch", t.global_batch);
  non_negative(out, "train.warmup_steps", t.warmup_steps);
  non_negative(out, "train.eval_every", t.eval_every);
  positive(out, "train.eval_batches", t.eval_batches);
  non_negative(out, "train.eval_tasks_every", t.eval_tasks_every);
  non_negative(out, "train.eval_tasks_limit", t.eval_tasks_limit);
  if (!t.eval_tasks.empty() && t.eval_tasks_every == 0 && t.eval_every == 0)
    out.push_back("train.eval_tasks needs train.eval_tasks_every (or train.eval_every) > 0: when to score them");
  non_negative(out, "train.exit_after_steps", t.exit_after_steps);
  positive(out, "train.max_skipped_in_a_row", t.max_skipped_in_a_row);
  non_negative(out, "train.loss_chunk_tokens", t.loss_chunk_tokens);
  // Token and sample counters are 64-bit: the whole run's token count must fit.
  if (t.steps > 0 && t.global_batch > 0 && c.data.seq_len > 0 &&
      (CheckedInt(t.steps) * t.global_batch * c.data.seq_len).overflowed())
    out.push_back(cat("train.steps=", t.steps, " x train.global_batch=", t.global_batch, " x data.seq_len=", c.data.seq_len,
                      ": the run's token count overflows a 64-bit integer"));
  if (t.grad_accum_dtype == "bf16" && t.precision != "bf16")
    out.push_back(cat("train.grad_accum_dtype=bf16 needs train.precision=bf16 (fp32 runs accumulate in fp32)"));
  if (!(t.lr > 0)) out.push_back(cat("train.lr=", t.lr, " must be > 0"));
  if (t.min_lr < 0 || t.min_lr > t.lr)
    out.push_back(cat("train.min_lr=", t.min_lr, " must be between 0 and train.lr=", t.lr));
  if (t.warmup_steps > t.steps)
    out.push_back(cat("train.warmup_steps=", t.warmup_steps, " exceeds train.steps=", t.steps));
  if (t.micro_batch > 0 && t.global_batch % t.micro_batch != 0)
    out.push_back(cat("train.global_batch=", t.global_batch, " is not a multiple of train.micro_batch=", t.micro_batch));
  if (!(t.beta1 >= 0 && t.beta1 < 1)) out.push_back(cat("train.beta1=", t.beta1, " must be in [0, 1)"));
  if (!(t.beta2 >= 0 && t.beta2 < 1)) out.push_back(cat("train.beta2=", t.beta2, " must be in [0, 1)"));
  if (!(t.eps > 0)) out.push_back(cat("train.eps=", t.eps, " must be > 0"));
  if (t.weight_decay < 0) out.push_back(cat("train.weight_decay=", t.weight_decay, " must be >= 0"));
  if (t.grad_clip < 0) out.push_back(cat("train.grad_clip=", t.grad_clip, " must be >= 0 (0 = off)"));
}

void check_parallel(const Config& c, std::vector<std::string>& out) {
  const ParallelConfig& p = c.parallel;
  positive(out, "parallel.tp", p.tp);
  if (p.tp > 0 && c.model.n_heads > 0 && c.model.n_kv_heads > 0) {
    if (c.model.n_heads % p.tp != 0)
      out.push_back(cat("parallel.tp=", p.tp, " does not divide model.n_heads=", c.model.n_heads));
    if (c.model.n_kv_heads % p.tp != 0)
      out.push_back(cat("parallel.tp=", p.tp, " does not divide model.n_kv_heads=", c.model.n_kv_heads));
  }
  if (p.sequence_parallel && p.tp > 0 && c.data.seq_len > 0 && c.data.seq_len % p.tp != 0)
    out.push_back(cat("parallel.sequence_parallel splits the sequence over parallel.tp=", p.tp, " ranks, but data.seq_len=",
                      c.data.seq_len, " is not a multiple of it"));
  // The architecture's own rules see how the model is split (skipv1 needs whole head pairs per rank).
  if (const Architecture* a = find_architecture(c.model.arch))
    for (auto& problem : a->check(c.model, p)) out.push_back(problem);
  if (!(p.bucket_mb > 0)) out.push_back(cat("parallel.bucket_mb=", p.bucket_mb, " must be > 0"));
  if (!(p.timeout_s > 0)) out.push_back(cat("parallel.timeout_s=", p.timeout_s, " must be > 0"));
}

}  // namespace

std::vector<std::string> validate(const Config& c) {
  std::vector<std::string> out;
  check_model(c.model, out);
  positive(out, "data.seq_len", c.data.seq_len);
  positive(out, "data.prefetch", c.data.prefetch);
  if (c.data.seq_len > c.model.max_seq_len)
    out.push_back(cat("data.seq_len=", c.data.seq_len, " exceeds model.max_seq_len=", c.model.max_seq_len));
  check_train(c, out);
  check_parallel(c, out);
  non_negative(out, "checkpoint.every", c.checkpoint.every);
  positive(out, "checkpoint.keep_last", c.checkpoint.keep_last);
  positive(out, "log.every", c.log.every);
  const auto& ps = c.log.profile_steps;
  if (!ps.empty()) {
    if (ps.size() != 2 || ps[0] < 1 || ps[1] < ps[0])
      out.push_back(cat("log.profile_steps=", join_ints(ps), " must be [] (off) or [a, b] with 1 <= a <= b "
                        "(optimizer steps a..b, 1-based as logged)"));
    else if (ps[1] > c.train.steps)
      out.push_back(cat("log.profile_steps=", join_ints(ps), " ends after train.steps=", c.train.steps));
  }
  return out;
}

}  // namespace yt
