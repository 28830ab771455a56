// `yocotron bench`: prints measured figures as one JSON line.
//   --part loader: how fast the training loader produces the recipe's micro-batches.
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/config.h"
#include "yocotron/loader.h"

namespace yt::cli {
namespace {

using Clock = std::chrono::steady_clock;

int64_t integer_option(const ArgParser& p, const std::string& name, int64_t fallback) {
  if (!p.has(name)) return fallback;
  try {
    return std::stoll(p.get(name));
  } catch (const std::exception&) {
    throw UsageError(name + " expects an integer, found '" + p.get(name) + "'");
  }
}

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

}  // namespace

int run_bench(const Args& args) {
  ArgParser p("bench", "Measure throughput and print one JSON line of figures.");
  p.option("--config", "RECIPE", "the recipe to measure")
      .option("--set", "SECTION.KEY=VALUE", "override one recipe key (repeatable)", true)
      .option("--part", "loader", "what to measure: loader = the data loader alone")
      .option("--steps", "N", "optimizer steps' worth of batches to time (default 200)");
  if (!p.parse(args)) return 0;
  if (!p.has("--config")) throw UsageError("missing --config RECIPE");
  Config cfg = load_config(p.get("--config"), p.all("--set"));
  std::string part = p.get("--part", "loader");
  int64_t steps = integer_option(p, "--steps", 200);
  if (part == "loader") {
    std::cout << bench_loader(cfg, steps).dump() << "\n";
    return 0;
  }
  throw UsageError("--part must be loader, found '" + part + "'");
}

}  // namespace yt::cli
