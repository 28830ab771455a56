// `yocotron bench`: prints measured figures as one JSON line.
//   --part train (default): real training steps (forward, backward, clipping, AdamW) of the recipe's
//     model on random tokens, at its micro/global batch and precision, on the GPU when there is one.
//     Under mpirun it runs on the DP x TP mesh (parallel.tp), exactly as `yocotron train` steps.
//   --part loader: how fast the training loader produces the recipe's micro-batches.
//   --part prefill|decode: inference latency and throughput with the KV cache (bench_inference.h).
//   --profile DIR: after the timed steps, --profile-steps more under LibTorch's profiler; each rank
//     writes DIR/bench.rank<R>.json (Chrome/Perfetto trace) and DIR/bench.rank<R>.summary.txt.
#include <torch/version.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "bench_inference.h"
#include "commands.h"
#include "yocotron/agreement.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/device.h"
#include "yocotron/errors.h"
#include "yocotron/flops.h"
#include "yocotron/loader.h"
#include "yocotron/mesh.h"
#include "yocotron/model_factory.h"
#include "yocotron/mpi_env.h"
#include "yocotron/ops.h"
#include "yocotron/phase.h"
#include "yocotron/profiler.h"
#include "yocotron/schedule.h"
#include "yocotron/str.h"
#include "yocotron/train_step.h"
#include "yocotron/training_setup.h"

namespace yt::cli {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxSteps = 1000000000;

nlohmann::json bench_loader(const Config& cfg, int64_t steps) {
  auto t_open = Clock::now();
  auto ds = TokenDataset::open(cfg.data.train, /*verify=*/true);
  double open_s = std::chrono::duration<double>(Clock::now() - t_open).count();
  LoaderOptions o;
  o.seq_len = cfg.data.seq_len;
  o.layout = {cfg.train.global_batch, cfg.train.micro_batch, 0, 1};
  o.seed = static_cast<uint64_t>(cfg.train.seed);
  o.prefetch = cfg.data.prefetch;
  TrainLoader loader(ds, o, 0);
  loader.next();  // thread started, first batch ready
  auto t0 = Clock::now();
  int64_t micro = 0;
  for (int64_t s = 0; s < steps; ++s)
    for (int64_t m = 0; m < loader.accum_steps(); ++m, ++micro) loader.next();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double samples = static_cast<double>(micro * cfg.train.micro_batch);
  return {{"part", "loader"},
          {"dataset", cfg.data.train},
          {"dataset_tokens", ds->n_tokens()},
          {"open_and_verify_s", open_s},
          {"seq_len", cfg.data.seq_len},
          {"micro_batch", cfg.train.micro_batch},
          {"micro_batches", micro},
          {"samples_per_s", samples / secs},
          {"tokens_per_s", samples * static_cast<double>(cfg.data.seq_len) / secs},
          {"seconds", secs}};
}

std::vector<int64_t> lengths_option(const ArgParser& p, const std::vector<int64_t>& fallback) {
  if (!p.has("--lengths")) return fallback;
  std::vector<int64_t> out;
  for (const auto& item : split(p.get("--lengths"), ',')) {
    try {
      size_t used = 0;
      out.push_back(std::stoll(item, &used));
      if (used != item.size() || out.back() < 1) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw UsageError("--lengths expects positive integers separated by commas, found '" + p.get("--lengths") + "'");
    }
  }
  if (out.empty()) throw UsageError("--lengths is empty");
  return out;
}

InferenceBenchOptions inference_options(const ArgParser& p, const std::string& part) {
  InferenceBenchOptions o;
  o.lengths = lengths_option(p, part == "prefill" ? std::vector<int64_t>{2048, 4096, 8192, 16384, 32768}
                                                  : std::vector<int64_t>{2048, 4096, 8192});
  std::string batch = p.get("--batch", "max");
  if (batch != "max" && (!parse_integer(batch, o.batch) || o.batch < 1))
    throw UsageError("--batch must be a positive integer or max, found '" + batch + "'");
  o.max_batch = p.get_integer("--max-batch", o.max_batch);
  o.prompt_tokens = p.get_integer("--prompt-tokens", o.prompt_tokens);
  o.sample_steps = p.get_integer("--sample-steps", 0);
  o.repeats = p.get_integer("--repeats", o.repeats);
  if (o.sample_steps == 1) throw UsageError("--sample-steps must be 0 (every step) or >= 2");
  try {
    o.graphs = parse_decode_graphs(p.get("--cuda-graphs", "auto"), "--cuda-graphs");
  } catch (const std::invalid_argument& e) {
    throw UsageError(e.what());
  }
  return o;
}

struct ProfileRequest {
  std::string dir;  // "" = no profile
  int64_t steps = 2;
};

nlohmann::json bench_train(const Config& cfg, int64_t steps, int64_t warmup, const ProfileRequest& profile, OomContext& where) {
  set_phase(Phase::Build);
  TrainingSetup setup(cfg);  // the trainer's own: the same device, precision, mesh, checks and model
  where.device = setup.device.str();
  where.dp = setup.mesh->size(MeshDim::dp);
  setup.build(cfg);
  const int cuda = setup.cuda_index;
  const bool gpu = setup.gpu();
  const at::Device device = setup.device;
  const at::ScalarType compute = setup.compute;
  Mesh* mesh = setup.mesh.get();
  Decoder model = setup.model;
  FlatAdamW& opt = *setup.optimizer;
  TrainStep& step = *setup.step;
  const int64_t accum = setup.accum_steps(cfg);
  auto gen = at::detail::createCPUGenerator(static_cast<uint64_t>(cfg.train.seed + mesh->coord(MeshDim::dp)));
  at::Tensor batch = at::randint(0, cfg.model.vocab_size, {cfg.train.micro_batch, cfg.data.seq_len + 1}, gen, at::kLong);
  if (gpu) batch = batch.pin_memory();
  auto next = [&] { return batch; };
  auto run_step = [&](int64_t i) {  // i: 0-based over warmup, timed and profiled steps
    set_phase_step(i + 1);
    step.run(next, accum, lr_at(cfg.train, i));
  };
  for (int64_t i = 0; i < warmup; ++i) run_step(i);
  synchronize(cuda);
  mesh->barrier();
  reset_peak_memory(cuda);
  auto t0 = Clock::now();
  for (int64_t i = 0; i < steps; ++i) run_step(warmup + i);
  double loss = step.loss_sum.item<double>() / static_cast<double>(warmup + steps);  // also waits for the GPU
  mesh->barrier();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  double tokens = static_cast<double>(steps) * static_cast<double>(cfg.train.global_batch) * static_cast<double>(cfg.data.seq_len);
  double tps = tokens / secs / static_cast<double>(mesh->world_size);
  nlohmann::json j = {{"part", "train"},
                      {"arch", cfg.model.arch},
                      {"device", device_name(cuda)},
                      {"processes", mesh->world_size},
                      {"dp", mesh->size(MeshDim::dp)},
                      {"tp", mesh->size(MeshDim::tp)},
                      {"zero1", opt.layout().zero1},
                      {"overlap", cfg.parallel.overlap},
                      {"precision", compute == at::kBFloat16 ? "bf16" : "fp32"},
                      {"attention", cfg.model.attention},
                      {"attention_kernel", attention_kernel_name(resolve_attention_kernel(
                                               parse_attention_kernel(cfg.model.attention),
                                               at::empty({0}, at::TensorOptions().device(device).dtype(compute))))},
                      {"fused_kernels", model->fused_kernels()},
                      {"recompute", cfg.train.recompute},
                      {"loss_chunk_tokens", cfg.train.loss_chunk_tokens},
                      {"grad_accum_dtype", cfg.train.grad_accum_dtype},
                      {"params", count_parameters(cfg.model, model->plan()).total},
                      {"micro_batch", cfg.train.micro_batch},
                      {"global_batch", cfg.train.global_batch},
                      {"seq_len", cfg.data.seq_len},
                      {"steps", steps},
                      {"warmup_steps", warmup},
                      {"tokens_per_s", tokens / secs},
                      {"tokens_per_s_per_gpu", tps},
                      {"step_ms", secs * 1000.0 / static_cast<double>(steps)},
                      {"flops_per_token", flops_per_token(cfg.model, cfg.data.seq_len)},
                      {"mfu_formula", "tokens/s/GPU * (6*N + 12*L*d*T) / peak, N = params without the input embedding"},
                      {"peak_tflops", peak_flops() / 1e12},
                      {"peak_mem_gb", peak_memory_gb(cuda)},
                      {"mean_loss", loss}};
  j["mfu"] = gpu ? nlohmann::json(mfu(cfg.model, cfg.data.seq_len, tps)) : nlohmann::json(nullptr);
  j["rank"] = mesh->world_rank;
  if (!profile.dir.empty()) {
    const std::string base = (std::filesystem::path(profile.dir) / cat("bench.rank", mesh->world_rank)).string();
    Profiler prof(cuda);
    for (int64_t i = 0; i < profile.steps; ++i) run_step(warmup + steps + i);
    ProfileSummary s = prof.finish(base + ".json", base + ".summary.txt",
                                   cat("yocotron bench: ", cfg.model.arch, ", ", profile.steps, " step(s) after ", warmup + steps,
                                       ", rank ", mesh->world_rank, " of ", mesh->world_size, ", ", device.str(), ", ",
                                       compute == at::kBFloat16 ? "bf16" : "fp32", ", micro-batch ", cfg.train.micro_batch, " x ",
                                       cfg.data.seq_len));
    mesh->barrier();
    j["profile_trace"] = s.trace_path;
    j["profile_summary"] = base + ".summary.txt";
    j["profile_steps"] = profile.steps;
  }
  return j;
}

}  // namespace

int run_bench(const Args& args) {
  ArgParser p("bench", "Measure throughput and print one JSON line of figures.");
  p.option("--config", "RECIPE", "the recipe to measure")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--part", "train|loader|prefill|decode",
              "train (default): training steps on random tokens; loader: the data loader alone; prefill: time to "
              "first token per prompt length; decode: generation throughput with the KV cache")
      .integer("--steps", "N", "timed optimizer steps (default 20 for train, 200 for loader)", 1, kMaxSteps)
      .integer("--warmup", "N", "untimed steps first (train; default 3)", 0, kMaxSteps)
      .option("--profile", "DIR",
              "after the timed steps, record --profile-steps more with LibTorch's profiler: DIR/bench.rank<R>.json "
              "(Chrome/Perfetto trace) and DIR/bench.rank<R>.summary.txt (top ops or kernels) per rank")
      .integer("--profile-steps", "N", "steps recorded by --profile (default 2)", 1, kMaxSteps)
      .option("--lengths", "N,N,...",
              "prefill: prompt lengths (default 2048,4096,8192,16384,32768); decode: tokens generated per sequence "
              "(default 2048,4096,8192)")
      .option("--batch", "N|max", "prefill/decode: this batch only, or max (default): batch 1 and the largest that fits")
      .integer("--max-batch", "N", "prefill/decode: ceiling of the batch search (default 4096)", 1, 1 << 20)
      .integer("--prompt-tokens", "N", "decode: prompt length (default 5)", 1, 1 << 24)
      .integer("--sample-steps", "K",
               "decode: time steps at K >= 2 cache lengths and integrate, instead of timing every step (default 0: every step)",
               0, 1 << 20)
      .integer("--repeats", "N", "prefill: timed runs per point, the median reported (default 3)", 1, 1000)
      .option("--cuda-graphs", "auto|on|off",
              "decode: replay steps from a CUDA graph (default auto: while the cache is smaller than the weights)");
  if (!p.parse(args)) return 0;
  if (!p.has("--config")) throw UsageError("missing --config RECIPE");
  Config cfg = load_config(p.get("--config"), p.all("--set"));
  std::string part = p.get("--part", "train");
  if (part == "train") {
    ProfileRequest profile{p.get("--profile"), p.get_integer("--profile-steps", 2)};
    if (p.has("--profile") && profile.dir.empty()) throw UsageError("--profile expects a directory");
    if (!p.has("--profile") && p.has("--profile-steps")) throw UsageError("--profile-steps needs --profile DIR");
    const int64_t steps = p.get_integer("--steps", 20), warmup = p.get_integer("--warmup", 3);
    // Under mpirun every rank must run the same steps of the same model (docs/distributed.md).
    AgreementItems same = config_agreement_items(cfg, cat("LibTorch ", TORCH_VERSION));
    same.emplace_back("bench --steps", std::to_string(steps));
    same.emplace_back("bench --warmup", std::to_string(warmup));
    same.emplace_back("bench --profile-steps", profile.dir.empty() ? "none" : std::to_string(profile.steps));
    if (std::string differ = rank_disagreement(same); !differ.empty()) return fail_together(differ, true, 2);
    OomContext where{cfg.train.device == "cuda" ? "cuda" : "cpu", 1, ""};
    return with_out_of_memory_message(cfg, [&] { return where; }, [&] {
      auto j = bench_train(cfg, steps, warmup, profile, where);
      if (j["rank"] == 0) std::cout << j.dump() << "\n";
      return 0;
    });
  }
  if (part == "loader") {
    std::cout << bench_loader(cfg, p.get_integer("--steps", 200)).dump() << "\n";
    return 0;
  }
  if (part == "prefill" || part == "decode") {
    InferenceBenchOptions o = inference_options(p, part);
    OomContext where{cfg.train.device == "cuda" ? "cuda" : "cpu", 1,
                     "a smaller --batch or --max-batch, shorter --lengths, or parallel.tp=2"};
    return with_out_of_memory_message(cfg, [&] { return where; }, [&] {
      auto j = part == "prefill" ? bench_prefill(cfg, o, where) : bench_decode(cfg, o, where);
      if (j["rank"] == 0) std::cout << j.dump() << "\n";
      return 0;
    });
  }
  throw UsageError("--part must be train, loader, prefill or decode, found '" + part + "'");
}

}  // namespace yt::cli
