#include "yocotron/memory_plan.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "yocotron/checked_int.h"
#include "yocotron/device.h"
#include "yocotron/kv_plan.h"
#include "yocotron/mesh.h"
#include "yocotron/str.h"

namespace yt {
namespace {

std::string model_keys(const ModelConfig& m) {
  return cat("model.n_layers=", m.n_layers, ", model.d_model=", m.d_model, ", model.d_ffn=", m.d_ffn,
             ", model.vocab_size=", m.vocab_size);
}

}  // namespace

MemoryPlan plan_memory(const Config& cfg, int64_t dp, bool bf16, bool gpu) {
  const ModelConfig& m = cfg.model;
  const int64_t tp = cfg.parallel.tp;
  const KvPlan kv_plan = make_kv_plan(m);
  const ParamCounts pc = count_parameters(m, kv_plan);  // ConfigError when it overflows
  // A looped self-decoder (yocou) keeps one block's activations per application.
  const int64_t applied_layers = m.n_layers + static_cast<int64_t>(kv_plan.loops - 1) * kv_plan.self_layers;
  // Replicated on every tensor-parallel rank: the norms (two per layer and the final one) and the KV
  // mixing weights; every matrix is split over the ranks, the embedding and head by vocabulary rows.
  const CheckedInt norms = CheckedInt(m.n_layers) * 2 * m.d_model + m.d_model;
  const CheckedInt matrices = CheckedInt(pc.non_embedding) - norms - pc.kv_weights;
  const CheckedInt vocab_rows = ceil_div(CheckedInt(m.vocab_size), tp);
  const CheckedInt params = floor_div(matrices, tp) + vocab_rows * 2 * m.d_model + norms + pc.kv_weights;

  // As optimizer.h lays the state out. ZeRO-1 shares are rounded down: buckets are padded up, never down.
  const bool zero1 = cfg.parallel.zero1 && dp > 1;
  auto dp_share = [&](CheckedInt bytes) { return zero1 ? floor_div(bytes, dp) : bytes; };
  CheckedInt weights, grads, grad_accum = 0, master = 0;
  if (bf16) {  // bf16 parameters and gradients; the KV mixing weights stay fp32 (their group aliases its master)
    const CheckedInt half = params - pc.kv_weights, fp32 = pc.kv_weights;
    weights = grads = half * 2 + fp32 * 4;
    if (cfg.train.grad_accum_dtype != "bf16") grad_accum = half * 4;
    master = dp_share(half * 4) + (zero1 ? dp_share(fp32 * 4) : CheckedInt(0));
  } else {  // fp32: the parameters are the master weights, except ZeRO-1's separate slice
    weights = grads = params * 4;
    if (zero1) master = dp_share(params * 4);
  }
  const int64_t compute = bf16 ? 2 : 4;
  CheckedInt moments = dp_share(params * 8);
  CheckedInt buffers = CheckedInt(2) * m.max_seq_len * m.head_dim() * 4;  // RoPE cos and sin, fp32

  // Activations every recompute mode keeps until backward, per layer and token: the block's input
  // (d_model, or d_model / tp with sequence parallelism; full recomputation keeps nothing else), and with none or selective also the matmul
  // outputs backward needs — Q and the attention output (n_heads x head_dim = d_model each) and the
  // SwiGLU gate and up (d_ffn each), split over tensor-parallel ranks. Without loss chunking the
  // logits of the micro-batch are kept too. Attention scores, K/V and norms are left out: kernels
  // and modes differ there, and a lower bound must hold for all of them.
  const CheckedInt tokens = CheckedInt(cfg.train.micro_batch) * cfg.data.seq_len;
  // Sequence parallelism splits the block input (the stream) over the TP group too.
  CheckedInt per_token = cfg.parallel.sequence_parallel ? floor_div(CheckedInt(m.d_model), tp) : CheckedInt(m.d_model);
  if (cfg.train.recompute != "full") per_token += floor_div(CheckedInt(2) * m.d_model + CheckedInt(2) * m.d_ffn, tp);
  CheckedInt activations = tokens * applied_layers * per_token * compute;
  if (cfg.train.loss_chunk_tokens == 0) activations += tokens * vocab_rows * compute;

  MemoryPlan p;
  p.gpu = gpu;
  p.bf16 = bf16;
  CheckedInt host_build = gpu ? params * 4 : CheckedInt(0);
  CheckedInt total = weights + grads + grad_accum + master + moments + buffers + activations + host_build;
  p.overflow = total.overflowed();
  if (p.overflow) return p;
  p.params = params.value();
  p.weights = weights.value();
  p.grads = grads.value();
  p.grad_accum = grad_accum.value();
  p.master = master.value();
  p.moments = moments.value();
  p.buffers = buffers.value();
  p.activations = activations.value();
  p.host_build = host_build.value();
  return p;
}

std::string memory_refusal(const Config& cfg, const MemoryPlan& p, int64_t dp, const std::string& device,
                           int64_t free_bytes, int64_t host_free_bytes) {
  const ModelConfig& m = cfg.model;
  const TrainConfig& t = cfg.train;
  const bool zero1 = cfg.parallel.zero1 && dp > 1;
  // What shrinks the model's state: a smaller model, more tensor-parallel ranks, ZeRO-1, bf16 sums.
  std::vector<std::string> state_keys = {cat("a smaller model (", model_keys(m), ")"),
                                         cat("parallel.tp=", cfg.parallel.tp * 2, " (now ", cfg.parallel.tp, ")")};
  if (!zero1) state_keys.push_back(dp > 1 ? "parallel.zero1=true" : "parallel.zero1=true with several data-parallel processes");
  if (p.bf16 && t.grad_accum_dtype != "bf16") state_keys.push_back("train.grad_accum_dtype=bf16");

  if (p.overflow)
    return cat("this run needs more than 8 EiB per process on ", device, " (its byte count overflows 64 bits); try ",
               join_or(state_keys));
  if (p.gpu && host_free_bytes >= 0 && p.host_build > host_free_bytes)
    return cat("building this model needs at least ", format_bytes(static_cast<double>(p.host_build)),
               " of host memory per process (its ", p.params, " parameters in fp32, made on the CPU before they move to ",
               device, ") but ", format_bytes(static_cast<double>(host_free_bytes)),
               " is available (MemAvailable + SwapFree); try ", join_or(state_keys));
  if (free_bytes < 0 || p.total() <= free_bytes) return "";

  std::string parts = cat("weights ", format_bytes(static_cast<double>(p.weights)), " (", p.params, " parameters in ",
                          p.bf16 ? "bf16" : "fp32", "), gradients ", format_bytes(static_cast<double>(p.grads)));
  if (p.grad_accum) parts += cat(", fp32 gradient accumulator ", format_bytes(static_cast<double>(p.grad_accum)));
  parts += cat(", ", p.master ? "fp32 master weights and " : "", "Adam moments ",
               format_bytes(static_cast<double>(p.master + p.moments)), zero1 ? cat(" (ZeRO-1 over ", dp, " ranks)") : "");
  parts += cat(", activations of one micro-batch at least ", format_bytes(static_cast<double>(p.activations)),
               " (", t.micro_batch, " x ", cfg.data.seq_len, " tokens, train.recompute=", t.recompute, ")");
  std::string line = cat("this run needs at least ", format_bytes(static_cast<double>(p.total())), " per process on ",
                         device, " but ", format_bytes(static_cast<double>(free_bytes)), " is ",
                         p.gpu ? "free" : "available (MemAvailable + SwapFree)", ": ", parts, "; try ");
  if (p.state() > free_bytes) return line + join_or(state_keys);
  // The state fits; one micro-batch's activations do not.
  std::vector<std::string> act_keys;
  if (t.micro_batch > 1) act_keys.push_back(cat("a smaller train.micro_batch (now ", t.micro_batch, "; train.global_batch stays)"));
  else act_keys.push_back(cat("a shorter data.seq_len (now ", cfg.data.seq_len, ")"));
  if (t.recompute != "full") act_keys.push_back("train.recompute=full");
  if (t.loss_chunk_tokens == 0) act_keys.push_back("train.loss_chunk_tokens=4096");
  act_keys.push_back(cat("parallel.tp=", cfg.parallel.tp * 2, " (now ", cfg.parallel.tp, ")"));
  return line + join_or(act_keys);
}

int64_t host_available_bytes() {
  std::ifstream in("/proc/meminfo");
  if (!in) return -1;
  int64_t available = -1, swap = 0;
  for (std::string line; std::getline(in, line);) {
    std::istringstream row(line);
    std::string key;
    int64_t kib = 0;
    if (!(row >> key >> kib)) continue;
    if (key == "MemAvailable:") available = kib * 1024;
    else if (key == "SwapFree:") swap = kib * 1024;
  }
  return available < 0 ? -1 : available + swap;
}

void check_memory_fits(const Config& cfg, const Mesh& mesh, bool bf16, int cuda_device) {
  const bool gpu = cuda_device >= 0;
  std::string reason;
  try {
    MemoryPlan p = plan_memory(cfg, mesh.size(MeshDim::dp), bf16, gpu);
    const int64_t host = host_available_bytes();
    reason = memory_refusal(cfg, p, mesh.size(MeshDim::dp), gpu ? cat("cuda:", cuda_device) : "cpu", gpu ? cuda_free_bytes(cuda_device) : host,
                            host);
  } catch (const ConfigError& e) {
    reason = e.problems().empty() ? e.what() : e.problems().front();
  }
  if (mesh.world_size > 1) {  // every rank refuses, or none: a lone refusal would leave the others waiting
    std::vector<std::string> all = mesh.gather_strings(reason);
    std::string first;
    for (size_t r = 0; r < all.size() && first.empty(); ++r)
      if (!all[r].empty()) first = cat("rank ", r, ": ", all[r]);
    reason = mesh.broadcast_string(first);
  }
  if (!reason.empty()) throw ConfigError({reason});
}

}  // namespace yt
