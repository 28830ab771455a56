// The one declaration of every metric a run logs. A field's name is its key in RUN/metrics.jsonl, its
// column in RUN/metrics.csv (or metrics_tasks.csv) and its TensorBoard tag; its unit, how it is reduced
// over ranks and steps, whether it may be absent, and how it is read from each kind of row are declared
// with it. The writers (metrics.cpp, tensorboard.cpp) and the reader (compare.cpp) take names from here.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "yocotron/metrics.h"

namespace yt {

// Readers say metric_name::loss, never "loss": a renamed field then cannot leave a reader behind.
namespace metric_name {
inline constexpr std::string_view step = "step", tokens = "tokens", loss = "loss", lr = "lr", grad_norm = "grad_norm",
                                  tokens_per_s = "tokens_per_s", mfu = "mfu", mem_gb = "mem_gb", skipped = "skipped",
                                  val_loss = "val_loss", val_ppl = "val_ppl", elapsed_s = "elapsed_s";
// Columns of metrics_tasks.csv; acc and acc_norm are also eval/<task>/<name> in metrics.jsonl and TensorBoard.
inline constexpr std::string_view task = "task", acc = "acc", acc_stderr = "acc_stderr", acc_norm = "acc_norm",
                                  acc_norm_stderr = "acc_norm_stderr", n = "n";
}  // namespace metric_name

// How a logged value summarises the ranks and the steps since the previous row.
enum class Reduction { Last, Mean, Sum, Max };

// A value as logged: absent (an optional field without one), an integer, a real (perhaps non-finite), or text.
using MetricValue = std::variant<std::monostate, int64_t, double, std::string>;

struct MetricField {
  std::string_view name, unit;
  Reduction reduction;
  bool optional;  // may be absent: JSON null, an empty CSV cell, no TensorBoard scalar
  // How to read it from each kind of row; nullptr where that row does not carry it.
  MetricValue (*of_train)(const TrainRow&);
  MetricValue (*of_eval)(const EvalRow&);
  MetricValue (*of_task)(const TaskEvalRow&, const TaskResult&);
  bool task_score;  // also logged per task as eval/<task>/<name> in metrics.jsonl and TensorBoard
};

// Every field: those of metrics.csv in its column order, then those only metrics_tasks.csv has.
const std::vector<MetricField>& metric_fields();

// The two CSV files: metrics.csv (training and evaluation rows) and metrics_tasks.csv (a row per task).
enum class MetricsTable { Curve, Tasks };
std::vector<std::string_view> csv_columns(MetricsTable t);
std::string csv_header(MetricsTable t);

// One logged row as name/value pairs, in column order: what metrics.jsonl and TensorBoard get.
struct NamedValue {
  std::string name;
  MetricValue value;
};
using MetricRow = std::vector<NamedValue>;
MetricRow metric_row(const TrainRow& r);
MetricRow metric_row(const EvalRow& r);
MetricRow metric_row(const TaskEvalRow& r);  // step, tokens, then eval/<task>/<score> per task
MetricRow task_csv_row(const TaskEvalRow& r, const TaskResult& t);

// eval/<task>/<score>, and back: "<task>/<score>" for such a name, nullopt for any other.
std::string task_score_name(const std::string& task, std::string_view score);
std::optional<std::string> task_score_of(const std::string& name);

}  // namespace yt
