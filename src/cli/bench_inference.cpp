#include "bench_inference.h"

#include <algorithm>
#include <functional>

#include "yocotron/checked_int.h"
#include "yocotron/cli_args.h"
#include "yocotron/device.h"
#include "yocotron/device_timer.h"
#include "yocotron/errors.h"
#include "yocotron/kv_cache.h"
#include "yocotron/kv_plan.h"
#include "yocotron/memory_plan.h"
#include "yocotron/mesh.h"
#include "yocotron/model_factory.h"
#include "yocotron/mpi_env.h"
#include "yocotron/ops.h"
#include "yocotron/str.h"

namespace yt::cli {
namespace {

// Before building anything: one sequence of `positions` tokens must fit the GPU's free memory or the
// host's available memory — its KV cache, and where attention may hold the scores (the CPU, fp32) one
// layer's H x T x T fp32 scores. A line naming the option, exit 2, instead of an allocation of
// terabytes failing later (GPU) or a process that grows until the machine swaps (CPU).
void refuse_if_batch_one_cannot_fit(const Config& cfg, int64_t positions, int cuda) {
  const bool gpu = cuda >= 0;
  const ModelConfig& m = cfg.model;
  const bool half = gpu && cfg.train.precision == "bf16";
  const int64_t elem = half ? 2 : 4;
  CheckedInt need = CheckedInt(make_kv_plan(m).kv_cache_bytes_per_token(m.head_dim(), elem)) * positions;
  // Only the fused half-precision kernels (cuDNN, flash) never hold the T x T scores; the CPU, the
  // math kernel and fp32 on a GPU (where SDPA may fall back to math) can.
  const bool scores = !half || m.attention == "math" || m.attention == "sdpa";
  if (scores) need += CheckedInt(m.n_heads) * positions * positions * 4;
  const int64_t available = gpu ? cuda_free_bytes(cuda) : host_available_bytes();
  if (need.overflowed() || (available > 0 && need.value() > available))
    throw ConfigError({cat("bench: ", positions, " positions (--lengths, plus --prompt-tokens for decode) need ",
                           need.overflowed() ? std::string("more than 2^63 bytes") : format_bytes(static_cast<double>(need.value())),
                           " for one sequence on the ", gpu ? "GPU" : "CPU", " (KV cache", scores ? " and attention scores" : "",
                           "), more than the ", format_bytes(static_cast<double>(available)), " available; use shorter --lengths")});
}

// The model of `cfg` on this process's device, in the recipe's precision, for inference.
struct InferenceSetup {
  int cuda = -1;
  at::Device device{at::kCPU};
  at::ScalarType dtype = at::kFloat;
  std::unique_ptr<Mesh> mesh;
  Decoder model{nullptr};

  InferenceSetup(Config& cfg, int64_t positions) {
    cuda = choose_cuda_device(cfg.train.device, "train.device", MpiEnv::get().local_rank());
    const bool gpu = cuda >= 0;
    device = gpu ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda)) : at::Device(at::kCPU);
    set_current_cuda_device(cuda);
    dtype = gpu && cfg.train.precision == "bf16" ? at::kBFloat16 : at::kFloat;
    // RoPE has no learned positions: timing longer sequences than the model trained on only needs
    // longer tables.
    cfg.model.max_seq_len = std::max(cfg.model.max_seq_len, positions);
    cfg.model.init_from.clear();
    refuse_if_batch_one_cannot_fit(cfg, positions, cuda);
    mesh = make_mesh(cfg.parallel.tp, gpu, cuda);
    model = build_decoder(cfg, mesh->tp_context(/*sequence_parallel=*/false));
    model->to_inference(device, dtype);
    model->eval();
  }

  KvCache cache(int64_t batch, int64_t capacity) const {
    return KvCache(model->plan(), model->config().head_dim(), model->tp().size, batch, capacity,
                   at::TensorOptions().device(device).dtype(dtype));
  }
  at::Tensor random_tokens(int64_t batch, int64_t T) const {
    return at::randint(0, model->config().vocab_size, {batch, T}, at::TensorOptions().dtype(at::kLong).device(device));
  }
  // Runs `probe`; false when it ran out of memory (the memory is handed back either way).
  bool fits(const std::function<void()>& probe) const {
    try {
      probe();
      synchronize(cuda);
      release_cached_memory(cuda);
      return true;
    } catch (const std::exception& e) {
      if (!is_out_of_memory(e)) throw;
      release_cached_memory(cuda);
      return false;
    }
  }
  // The batches a point is measured at: --batch N alone, or 1 and (on a GPU) the largest that fits.
  std::vector<int64_t> batches(const InferenceBenchOptions& o, const std::function<void(int64_t)>& probe) const {
    if (o.batch > 0) return {o.batch};
    std::vector<int64_t> out{1};
    if (cuda >= 0) out.push_back(largest_batch(probe, o.max_batch));
    return out;
  }
  // Runs `timed(batch)` and returns the batch it ran at. At a searched largest batch, a timed run
  // that still runs out of memory (the search probed one step; fragmentation differs) steps down by
  // 1/16 until it fits.
  int64_t at_fitting_batch(int64_t batch, bool searched, const std::function<void(int64_t)>& timed) const {
    for (;;) {
      try {
        timed(batch);
        return batch;
      } catch (const std::exception& e) {
        if (!searched || !is_out_of_memory(e) || batch <= 1) throw;
        release_cached_memory(cuda);
        batch -= std::max<int64_t>(1, batch / 16);
      }
    }
  }
  // Largest batch in [1, ceiling] for which fits(probe(batch)): doubling, then bisecting.
  int64_t largest_batch(const std::function<void(int64_t)>& probe, int64_t ceiling) const {
    if (mesh->size(MeshDim::tp) > 1) throw UsageError("the batch search runs on one GPU per model (parallel.tp=1); give --batch N under TP");
    int64_t ok = 0, bad = ceiling + 1;
    for (int64_t b = 1; b <= ceiling; b *= 2) {
      if (!fits([&] { probe(b); })) {
        bad = b;
        break;
      }
      ok = b;
    }
    while (bad - ok > 1) {
      int64_t mid = ok + (bad - ok) / 2;
      (fits([&] { probe(mid); }) ? ok : bad) = mid;
    }
    if (ok == 0) throw std::runtime_error("out of memory at batch 1: the model and one sequence do not fit this device");
    return ok;
  }

  nlohmann::json header(const Config& cfg, const std::string& part) const {
    return {{"part", part},
            {"arch", cfg.model.arch},
            {"device", device_name(cuda)},
            {"precision", dtype == at::kBFloat16 ? "bf16" : "fp32"},
            {"tp", mesh->size(MeshDim::tp)},
            {"attention", cfg.model.attention},
            {"fused_kernels", model->fused_kernels()},
            {"params", count_parameters(cfg.model, model->plan()).total},
            {"kv_bytes_per_token", model->plan().kv_cache_bytes_per_token(model->config().head_dim(),
                                                                          dtype == at::kBFloat16 ? 2 : 4)},
            {"kv_constant_bytes_per_sequence",  // windows and retention states (original YOCO family)
             model->plan().kv_cache_constant_bytes(model->config().head_dim(), model->config().n_heads,
                                                   dtype == at::kBFloat16 ? 2 : 4)},
            {"early_exit_layer", model->early_exit_layer()},
            {"n_layers", model->config().n_layers}};
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int64_t longest(const std::vector<int64_t>& v) { return *std::max_element(v.begin(), v.end()); }

}  // namespace

nlohmann::json bench_prefill(Config cfg, const InferenceBenchOptions& o, OomContext& where) {
  InferenceSetup s(cfg, longest(o.lengths) + 1);
  where.device = s.device.str();
  DeviceTimer timer(s.cuda);
  // Time to first token: the prompt through the model (early exit on) and the first token chosen.
  auto prefill = [&](int64_t batch, int64_t len) {
    KvCache cache = s.cache(batch, len + 1);
    at::Tensor prompt = s.random_tokens(batch, len);
    synchronize(s.cuda);
    timer.start();
    at::Tensor first = s.model->forward_cached(prompt, cache, false, /*early_exit=*/true).argmax(-1);
    return timer.stop_ms();
  };
  auto timed = [&](int64_t batch, int64_t len) {
    prefill(batch, len);  // warm-up: kernel selection, allocator
    std::vector<double> ms;
    for (int64_t r = 0; r < o.repeats; ++r) ms.push_back(prefill(batch, len));
    release_cached_memory(s.cuda);
    return median(ms);
  };
  nlohmann::json j = s.header(cfg, "prefill");
  j["repeats"] = o.repeats;
  j["results"] = nlohmann::json::array();
  for (int64_t len : o.lengths) {
    const std::vector<int64_t> batches = s.batches(o, [&](int64_t b) { prefill(b, len); });
    for (size_t i = 0; i < batches.size(); ++i) {
      const bool searched = o.batch == 0 && i == 1;
      double ms = 0;
      const int64_t batch = s.at_fitting_batch(batches[i], searched, [&](int64_t b) {
        reset_peak_memory(s.cuda);
        ms = timed(b, len);
      });
      nlohmann::json r = {{"prompt_tokens", len},
                          {"batch", batch},
                          {"largest_batch", searched},
                          {"ttft_ms", ms},
                          {"prompt_tokens_per_s", static_cast<double>(batch * len) / (ms / 1000.0)},
                          {"peak_mem_gb", peak_memory_gb(s.cuda)}};
      if (batch != batches[i]) r["searched_batch"] = batches[i];
      j["results"].push_back(r);
    }
  }
  j["rank"] = s.mesh->world_rank;
  return j;
}

nlohmann::json bench_decode(Config cfg, const InferenceBenchOptions& o, OomContext& where) {
  const int64_t P = o.prompt_tokens;
  InferenceSetup s(cfg, P + longest(o.lengths));
  where.device = s.device.str();
  DeviceTimer timer(s.cuda);
  // The largest batch is the one whose cache of P + N tokens and last decode step fit.
  auto probe = [&](int64_t batch, int64_t n) {
    KvCache cache = s.cache(batch, P + n);
    at::Tensor next = s.model->forward_cached(s.random_tokens(batch, P), cache, false, true).argmax(-1);
    cache.set_length_for_timing(P + n - 1);
    s.model->forward_cached(next.view({batch, 1}), cache).argmax(-1);
  };
  nlohmann::json run;  // one measured (batch, N)
  auto measure = [&](int64_t batch, int64_t n) {
    probe(batch, std::min<int64_t>(n, 2));  // warm-up
    release_cached_memory(s.cuda);
    reset_peak_memory(s.cuda);
    KvCache cache = s.cache(batch, P + n);
    at::Tensor prompt = s.random_tokens(batch, P);
    synchronize(s.cuda);
    timer.start();
    at::Tensor next = s.model->forward_cached(prompt, cache, false, true).argmax(-1);
    const double prefill_ms = timer.stop_ms();
    const bool graphs = o.graphs == DecodeGraphs::On || (o.graphs == DecodeGraphs::Auto && decode_graphs_pay(s.model, cache));
    DecodeStepper stepper(s.model, cache, graphs);
    auto decode_step = [&] { next = stepper.step(next.view({batch, 1})).argmax(-1); };
    double decode_ms = 0;
    std::string method = "every step";
    if (o.sample_steps < 2 || n - 1 < o.sample_steps) {
      timer.start();
      for (int64_t i = 1; i < n; ++i) decode_step();
      decode_ms = timer.stop_ms();
    } else {
      // Step time depends on the cache length alone: time 4 steps at K lengths spread over
      // [P, P + n - 2] and integrate linearly over the n - 1 steps of the run.
      const int64_t K = o.sample_steps, reps = 4;
      for (int i = 0; i < 3; ++i) decode_step();  // a CUDA graph is captured at the third step: not timed here
      std::vector<double> at_len, ms_per_step;
      for (int64_t k = 0; k < K; ++k) {
        int64_t len = P + (n - 1 - reps) * k / (K - 1);
        cache.set_length_for_timing(len);
        timer.start();
        for (int64_t r = 0; r < reps; ++r) decode_step();
        at_len.push_back(static_cast<double>(len) + (reps - 1) / 2.0);
        ms_per_step.push_back(timer.stop_ms() / reps);
      }
      double area = 0;
      for (int64_t k = 0; k + 1 < K; ++k) area += (at_len[k + 1] - at_len[k]) * (ms_per_step[k] + ms_per_step[k + 1]) / 2;
      decode_ms = area / (at_len.back() - at_len.front()) * static_cast<double>(n - 1);
      method = cat("estimated from ", K, " cache lengths x ", reps, " steps");
    }
    const double total_ms = prefill_ms + decode_ms;
    run = {{"gen_tokens", n},
           {"prompt_tokens", P},
           {"batch", batch},
           {"prefill_ms", prefill_ms},
           {"decode_ms", decode_ms},
           {"total_ms", total_ms},
           {"tokens_per_s", static_cast<double>(batch * n) / (total_ms / 1000.0)},
           {"kv_cache_bytes", cache.bytes()},
           {"timing", method},
           {"cuda_graphs", stepper.uses_graph()},
           {"peak_mem_gb", peak_memory_gb(s.cuda)}};
  };
  nlohmann::json j = s.header(cfg, "decode");
  j["results"] = nlohmann::json::array();
  for (int64_t n : o.lengths) {
    const std::vector<int64_t> batches = s.batches(o, [&](int64_t b) { probe(b, n); });
    for (size_t i = 0; i < batches.size(); ++i) {
      const bool searched = o.batch == 0 && i == 1;
      const int64_t batch = s.at_fitting_batch(batches[i], searched, [&](int64_t b) { measure(b, n); });
      if (batch != batches[i]) run["searched_batch"] = batches[i];
      run["largest_batch"] = searched;
      j["results"].push_back(run);
      release_cached_memory(s.cuda);
    }
  }
  j["rank"] = s.mesh->world_rank;
  return j;
}

}  // namespace yt::cli
