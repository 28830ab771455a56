#include "yocotron/metrics_schema.h"

#include <cmath>

#include "yocotron/str.h"

namespace yt {

namespace {

MetricValue opt(const std::optional<double>& v) { return v ? MetricValue(*v) : MetricValue(); }

}  // namespace

const std::vector<MetricField>& metric_fields() {
  namespace m = metric_name;
  using R = Reduction;
  // The order of the first twelve is metrics.csv's header, which resumed runs' files already have: append only.
  static const std::vector<MetricField> fields = {
      {m::step, "steps", R::Last, false, [](const TrainRow& r) -> MetricValue { return r.step; },
       [](const EvalRow& r) -> MetricValue { return r.step; },
       [](const TaskEvalRow& r, const TaskResult&) -> MetricValue { return r.step; }, false},
      // Every rank's samples since the start of the run.
      {m::tokens, "tokens", R::Sum, false, [](const TrainRow& r) -> MetricValue { return r.tokens; },
       [](const EvalRow& r) -> MetricValue { return r.tokens; },
       [](const TaskEvalRow& r, const TaskResult&) -> MetricValue { return r.tokens; }, false},
      // Over the steps since the previous row and the data-parallel replicas.
      {m::loss, "nats/token", R::Mean, false, [](const TrainRow& r) -> MetricValue { return r.loss; }, nullptr, nullptr, false},
      {m::lr, "", R::Last, false, [](const TrainRow& r) -> MetricValue { return r.lr; }, nullptr, nullptr, false},
      // The last step's global norm, before clipping.
      {m::grad_norm, "", R::Last, false, [](const TrainRow& r) -> MetricValue { return r.grad_norm; }, nullptr, nullptr, false},
      // Per process: the interval's tokens over its time, divided by the world size.
      {m::tokens_per_s, "tokens/s", R::Mean, false, [](const TrainRow& r) -> MetricValue { return r.tokens_per_s; },
       nullptr, nullptr, false},
      // GPU runs only: there is no peak FLOP rate to divide by on a CPU.
      {m::mfu, "fraction", R::Mean, true, [](const TrainRow& r) { return opt(r.mfu); }, nullptr, nullptr, false},
      {m::mem_gb, "GB", R::Max, false, [](const TrainRow& r) -> MetricValue { return r.mem_gb; }, nullptr, nullptr, false},
      // Steps skipped for non-finite loss or gradients since the start of the run.
      {m::skipped, "steps", R::Sum, false, [](const TrainRow& r) -> MetricValue { return r.skipped; }, nullptr, nullptr, false},
      // Over train.eval_batches micro-batches of the val split.
      {m::val_loss, "nats/token", R::Mean, false, nullptr, [](const EvalRow& r) -> MetricValue { return r.val_loss; },
       nullptr, false},
      {m::val_ppl, "", R::Mean, false, nullptr, [](const EvalRow& r) -> MetricValue { return std::exp(r.val_loss); },
       nullptr, false},
      {m::elapsed_s, "s", R::Last, false, [](const TrainRow& r) -> MetricValue { return r.elapsed_s; }, nullptr, nullptr,
       false},
      // metrics_tasks.csv: acc and acc_norm are means over the task's items, with their standard errors.
      {m::task, "", R::Last, false, nullptr, nullptr,
       [](const TaskEvalRow&, const TaskResult& t) -> MetricValue { return t.name; }, false},
      {m::acc, "fraction", R::Mean, false, nullptr, nullptr,
       [](const TaskEvalRow&, const TaskResult& t) -> MetricValue { return t.acc; }, true},
      {m::acc_stderr, "fraction", R::Mean, false, nullptr, nullptr,
       [](const TaskEvalRow&, const TaskResult& t) -> MetricValue { return t.acc_stderr; }, false},
      // Not for WinoGrande-form tasks.
      {m::acc_norm, "fraction", R::Mean, true, nullptr, nullptr,
       [](const TaskEvalRow&, const TaskResult& t) { return opt(t.acc_norm); }, true},
      {m::acc_norm_stderr, "fraction", R::Mean, true, nullptr, nullptr,
       [](const TaskEvalRow&, const TaskResult& t) { return opt(t.acc_norm_stderr); }, false},
      {m::n, "items", R::Sum, false, nullptr, nullptr, [](const TaskEvalRow&, const TaskResult& t) -> MetricValue { return t.n; },
       false},
  };
  return fields;
}

std::vector<std::string_view> csv_columns(MetricsTable t) {
  std::vector<std::string_view> out;
  for (const auto& f : metric_fields())
    if (t == MetricsTable::Tasks ? f.of_task != nullptr : (f.of_train != nullptr || f.of_eval != nullptr)) out.push_back(f.name);
  return out;
}

std::string csv_header(MetricsTable t) {
  std::vector<std::string> names;
  for (auto c : csv_columns(t)) names.emplace_back(c);
  return join(names, ",");
}

MetricRow metric_row(const TrainRow& r) {
  MetricRow out;
  for (const auto& f : metric_fields())
    if (f.of_train) out.push_back({std::string(f.name), f.of_train(r)});
  return out;
}

MetricRow metric_row(const EvalRow& r) {
  MetricRow out;
  for (const auto& f : metric_fields())
    if (f.of_eval) out.push_back({std::string(f.name), f.of_eval(r)});
  return out;
}

MetricRow metric_row(const TaskEvalRow& r) {
  MetricRow out = {{std::string(metric_name::step), r.step}, {std::string(metric_name::tokens), r.tokens}};
  for (const auto& t : r.tasks)
    for (const auto& f : metric_fields()) {
      if (!f.task_score) continue;
      MetricValue v = f.of_task(r, t);
      if (!std::holds_alternative<std::monostate>(v)) out.push_back({task_score_name(t.name, f.name), std::move(v)});
    }
  return out;
}

MetricRow task_csv_row(const TaskEvalRow& r, const TaskResult& t) {
  MetricRow out;
  for (const auto& f : metric_fields())
    if (f.of_task) out.push_back({std::string(f.name), f.of_task(r, t)});
  return out;
}

std::string task_score_name(const std::string& task, std::string_view score) { return cat("eval/", task, "/", score); }

std::optional<std::string> task_score_of(const std::string& name) {
  if (!starts_with(name, "eval/")) return std::nullopt;
  for (const auto& f : metric_fields())
    if (f.task_score && ends_with(name, cat("/", f.name)) && name.size() > 6 + f.name.size()) return name.substr(5);
  return std::nullopt;
}

}  // namespace yt
