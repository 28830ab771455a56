#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/compare.h"
#include "yocotron/inference_report.h"
#include "yocotron/kv_weights_report.h"
#include "yocotron/metrics_schema.h"
#include "yocotron/str.h"
#include "yocotron/log.h"

namespace yt::cli {

namespace {

// The weights are per layer of the newest checkpoints: the loss-curve options do not apply.
int compare_kv_weights_cli(const ArgParser& p) {
  for (const char* o : {"--x", "--smooth", "--metric", "--baseline", "--log-x"})
    if (p.has(o)) throw UsageError(std::string(o) + " shapes loss curves; it does not apply to --kv-weights");
  CompareOutput out = compare_kv_weights(p.positionals(), p.get("--out", "compare"));
  std::cout << out.report_md << "\n";
  for (const auto& f : out.files) std::cout << "wrote " << f << "\n";
  return 0;
}

}  // namespace

int run_compare(const Args& args) {
  ArgParser p("compare", "Draw several runs' loss curves on one chart and tabulate which is better, at what KV-cache\n"
                         "cost. Reads RUN/metrics.jsonl and RUN/config.yaml (runs still in progress are fine).\n"
                         "Writes DIR/loss.svg, DIR/val_loss.svg (when runs evaluated), DIR/report.md, DIR/report.csv.\n"
                         "With --inference FILE.jsonl (`yocotron bench --part prefill|decode` lines, see\n"
                         "launch/bench_inference.sh): DIR/prefill.svg, decode_throughput.svg, decode_batch.svg, inference.md/.csv.\n"
                         "With --kv-weights: the runs' learned KV mixing weights per layer at their newest valid\n"
                         "checkpoints instead: DIR/kv_weights_<weight>.svg (a line per run), DIR/kv_weights.md, .csv.");
  p.positional("RUN_DIR", "run directories (two or more to compare)", false, true)
      .option("--inference", "FILE.jsonl", "draw inference benchmark results instead of runs (repeatable)", true)
      .option("--out", "DIR", "output directory (default: compare)")
      .option("--x", "tokens|step", "x axis (default tokens)")
      .integer("--smooth", "N", "EMA smoothing of training curves with span N (default 0: none)", 0, 1000000)
      .option("--metric", "loss|val_loss", "the curve loss.svg shows (default loss)")
      .option("--baseline", "NAME", "run the deltas are measured against (default: the first)")
      .flag("--log-x", "logarithmic x axis")
      .flag("--kv-weights", "draw the learned KV mixing weights per layer (YOCO++, FusedKV, ResFormer) instead");
  if (!p.parse(args)) return 0;
  if (p.has("--inference")) {
    if (!p.positionals().empty()) throw UsageError("--inference draws benchmark files; give no run directories with it");
    InferenceReport rep = write_inference_report(p.all("--inference"), p.get("--out", "compare"));
    std::cout << rep.markdown << "\n";
    for (const auto& f : rep.files) std::cout << "wrote " << f << "\n";
    return 0;
  }
  if (p.positionals().empty()) throw UsageError("missing RUN_DIR (run directories to compare)");
  if (p.has("--kv-weights")) return compare_kv_weights_cli(p);
  CompareOptions o;
  o.out_dir = p.get("--out", "compare");
  o.x = p.get("--x", std::string(metric_name::tokens));
  if (o.x != metric_name::tokens && o.x != metric_name::step)
    throw UsageError(cat("--x must be ", metric_name::tokens, " or ", metric_name::step, ", found '", o.x, "'"));
  o.metric = p.get("--metric", std::string(metric_name::loss));
  if (o.metric != metric_name::loss && o.metric != metric_name::val_loss)
    throw UsageError(cat("--metric must be ", metric_name::loss, " or ", metric_name::val_loss, ", found '", o.metric, "'"));
  o.smooth = static_cast<int>(p.get_integer("--smooth", 0));
  o.baseline = p.get("--baseline");
  o.log_x = p.has("--log-x");
  log::init(0);
  CompareOutput out = compare_runs(p.positionals(), o);
  for (const auto& w : out.warnings) log::warn(w);
  std::cout << out.report_md << "\n";
  for (const auto& f : out.files) std::cout << "wrote " << f << "\n";
  return 0;
}

}  // namespace yt::cli
