// `yocotron compare`: several runs' loss curves on one chart (RUN/metrics.jsonl + config.yaml; a run
// still in progress is fine), their train.eval_tasks accuracies beside them (a chart per task
// metric), and a table of which is better at what KV-cache cost.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "yocotron/config.h"
#include "yocotron/metrics_schema.h"

namespace yt {

struct CurvePoint {
  int64_t step = 0;
  int64_t tokens = 0;
  double value = 0;
};

struct RunRecord {
  std::string dir, name;
  Config cfg;
  std::vector<CurvePoint> train;  // training loss per logged step
  std::vector<CurvePoint> eval;   // validation loss
  // train.eval_tasks scores: "TASK/acc", "TASK/acc_norm" -> value per scoring
  std::map<std::string, std::vector<CurvePoint>> tasks;
  double tokens_per_s = 0;        // median of the logged values (per GPU)
  std::string data_id;            // data.train, and the tokenizer fingerprint when the manifest is readable
};

// Each run's name, as charts and tables label it: its directory's name, with the parent directory's
// in front when two runs share one.
std::vector<std::string> run_names(const std::vector<std::string>& run_dirs);

// Reads one run; errors name the directory or file and what is wrong.
RunRecord read_run(const std::string& dir);

// Exponential moving average with span N (alpha = 2 / (N + 1)); N <= 1 returns the input.
std::vector<double> ema(const std::vector<double>& v, int span);

struct CompareOptions {
  std::string out_dir = "compare";
  std::string x = std::string(metric_name::tokens);  // tokens | step
  int smooth = 0;               // EMA span for training curves
  std::string metric = std::string(metric_name::loss);  // loss | val_loss: which curve loss.svg shows
  std::string baseline;         // run name the deltas are against (default: the first run)
  bool log_x = false;
};

struct CompareOutput {
  std::vector<std::string> files;     // written
  std::vector<std::string> warnings;  // e.g. runs on different data
  std::string report_md;
};

CompareOutput compare_runs(const std::vector<std::string>& run_dirs, const CompareOptions& opts);

}  // namespace yt
