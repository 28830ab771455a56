// The loss curve of a run: RUN/metrics.jsonl (one JSON object per logged step, one per
// evaluation, one per scoring of train.eval_tasks) and the same rows in RUN/metrics.csv (task
// scores in RUN/metrics_tasks.csv, one row per task), under the names metrics_schema.h declares.
// Floats read back as the same double. On resume, rows after the checkpoint's step (written by the
// run that was interrupted) are dropped first, so the files hold one curve.
#pragma once
#include <cstdint>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "yocotron/eval_metrics.h"

namespace yt {

struct TrainRow {
  int64_t step = 0;
  int64_t tokens = 0;
  double loss = 0;
  double lr = 0;
  double grad_norm = 0;
  double tokens_per_s = 0;      // per GPU (per process)
  std::optional<double> mfu;    // GPU runs only
  double mem_gb = 0;            // peak GPU memory, or peak RSS on CPU
  int64_t skipped = 0;          // steps skipped so far for non-finite loss or gradients
  double elapsed_s = 0;
};

struct EvalRow {
  int64_t step = 0;
  int64_t tokens = 0;
  double val_loss = 0;
};

// The multiple-choice tasks of train.eval_tasks scored at one step.
struct TaskEvalRow {
  int64_t step = 0;
  int64_t tokens = 0;
  std::vector<TaskResult> tasks;
};

class MetricsSink {
 public:
  virtual ~MetricsSink() = default;
  virtual void train(const TrainRow& r) = 0;
  virtual void eval(const EvalRow& r) = 0;
  virtual void tasks(const TaskEvalRow& r) = 0;
};

class MetricsFiles : public MetricsSink {
 public:
  // Opens RUN/metrics.jsonl and RUN/metrics.csv for appending, after dropping rows with step > keep_up_to.
  MetricsFiles(const std::string& run_dir, int64_t keep_up_to);
  void train(const TrainRow& r) override;
  void eval(const EvalRow& r) override;
  void tasks(const TaskEvalRow& r) override;

 private:
  std::ofstream jsonl_, csv_, tasks_csv_;
  std::string run_dir_;
};

// Drops rows with step > keep_up_to from RUN/metrics.jsonl, RUN/metrics.csv and RUN/metrics_tasks.csv (atomically).
void truncate_metrics(const std::string& run_dir, int64_t keep_up_to);

}  // namespace yt
