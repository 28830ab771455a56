#include "yocotron/compare.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "yocotron/reader_checks.h"
#include "yocotron/fileio.h"
#include "yocotron/kv_plan.h"
#include "yocotron/metrics_schema.h"
#include "yocotron/str.h"
#include "yocotron/svg_chart.h"

namespace yt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string dataset_fingerprint(const std::string& split_dir) {
  fs::path manifest = fs::path(split_dir).parent_path() / "manifest.json";
  try {
    return json::parse(read_text_file(manifest.string())).at("tokenizer").at("fingerprint").get<std::string>();
  } catch (const std::exception&) {
    return "";
  }
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "–";
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << v;
  return s.str();
}

std::string signed_fixed(double v, int digits) {
  if (!std::isfinite(v)) return "–";
  return (v >= 0 ? "+" : "") + fixed(v, digits);
}

}  // namespace

std::vector<std::string> run_names(const std::vector<std::string>& run_dirs) {
  std::vector<fs::path> paths;
  std::map<std::string, int> seen;
  for (const auto& d : run_dirs) {
    paths.push_back(fs::path(d).filename().empty() ? fs::path(d).parent_path() : fs::path(d));  // "runs/a/" is a
    seen[paths.back().filename().string()]++;
  }
  std::vector<std::string> names;
  for (const auto& p : paths) {
    std::string name = p.filename().string();
    names.push_back(seen[name] > 1 ? p.parent_path().filename().string() + "/" + name : name);
  }
  return names;
}

RunRecord read_run(const std::string& dir) {
  RunRecord r;
  r.dir = dir;
  r.name = run_names({dir})[0];
  if (!fs::is_directory(dir)) throw std::runtime_error(cat(dir, ": no such run directory"));
  fs::path metrics = fs::path(dir) / "metrics.jsonl", config = fs::path(dir) / "config.yaml";
  if (!fs::exists(metrics))
    throw std::runtime_error(cat(metrics.string(), ": missing (not a yocotron run directory, or it has not logged yet)"));
  if (!fs::exists(config)) throw std::runtime_error(cat(config.string(), ": missing (not a yocotron run directory)"));
  r.cfg = config_from_yaml(read_text_file(config.string()), {}, config.string());
  const std::string text = read_text_file(metrics.string());
  std::vector<double> speeds;
  size_t pos = 0, line_no = 0;
  while (pos < text.size()) {
    const size_t nl = text.find('\n', pos);
    const bool last_unfinished = nl == std::string::npos;  // every row is written with its end of line
    const std::string line = text.substr(pos, last_unfinished ? std::string::npos : nl - pos);
    pos = last_unfinished ? text.size() : nl + 1;
    ++line_no;
    if (line.empty()) continue;
    auto bad = [&](const std::string& what) {
      throw std::runtime_error(cat(metrics.string(), ":", line_no, ": malformed metrics line (", what, "): ", printable(line, 60)));
    };
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception&) {
      if (last_unfinished) continue;  // the torn last line of a run being written
      bad("not JSON");
    }
    if (!j.is_object()) bad("not a JSON object");
    namespace m = metric_name;
    const std::string step(m::step), tokens(m::tokens), loss(m::loss), val_loss(m::val_loss), tokens_per_s(m::tokens_per_s);
    if (!j.contains(step) || !j[step].is_number_integer()) bad(cat("no integer \"", step, "\""));
    if (j.contains(tokens) && !j[tokens].is_number_integer()) bad(cat("\"", tokens, "\" is not an integer"));
    for (const auto& key : {loss, val_loss, tokens_per_s})
      if (j.contains(key) && !j[key].is_number() && !j[key].is_null()) bad(cat("\"", key, "\" is not a number"));
    auto real = [&](const std::string& key) { return j[key].is_number() ? j[key].get<double>() : NAN; };
    CurvePoint p{j[step].get<int64_t>(), j.value(tokens, int64_t{0}), NAN};
    for (const auto& [key, value] : j.items())
      if (auto score = task_score_of(key)) {  // "<task>/acc", "<task>/acc_norm"
        if (!value.is_number() && !value.is_null()) bad(cat("\"", key, "\" is not a number"));
        r.tasks[*score].push_back({p.step, p.tokens, real(key)});
      }
    if (j.contains(val_loss)) {
      p.value = real(val_loss);
      r.eval.push_back(p);
    } else if (j.contains(loss)) {
      p.value = real(loss);
      r.train.push_back(p);
      if (j.contains(tokens_per_s) && j[tokens_per_s].is_number()) speeds.push_back(j[tokens_per_s].get<double>());
    }
  }
  if (r.train.empty() && r.eval.empty() && r.tasks.empty()) throw std::runtime_error(cat(metrics.string(), ": no metrics yet"));
  r.tokens_per_s = median(speeds);
  std::string fp = dataset_fingerprint(r.cfg.data.train);
  r.data_id = r.cfg.data.train + (fp.empty() ? "" : " (tokenizer " + fp + ")");
  return r;
}

std::vector<double> ema(const std::vector<double>& v, int span) {
  if (span <= 1) return v;
  const double a = 2.0 / (span + 1.0);
  std::vector<double> out(v.size());
  double acc = NAN;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i])) acc = std::isfinite(acc) ? a * v[i] + (1 - a) * acc : v[i];
    out[i] = acc;
  }
  return out;
}

CompareOutput compare_runs(const std::vector<std::string>& run_dirs, const CompareOptions& o) {
  if (run_dirs.empty()) throw std::runtime_error("compare: give at least one run directory");
  if (o.x != metric_name::tokens && o.x != metric_name::step)
    throw std::invalid_argument(cat("--x must be ", metric_name::tokens, " or ", metric_name::step));
  if (o.metric != metric_name::loss && o.metric != metric_name::val_loss)
    throw std::invalid_argument(cat("--metric must be ", metric_name::loss, " or ", metric_name::val_loss));
  std::vector<RunRecord> runs;
  for (const auto& d : run_dirs) runs.push_back(read_run(d));
  const std::vector<std::string> names = run_names(run_dirs);  // unique: they label curves
  for (size_t i = 0; i < runs.size(); ++i) runs[i].name = names[i];

  CompareOutput out;
  for (size_t i = 1; i < runs.size(); ++i) {
    if (runs[i].data_id != runs[0].data_id)
      out.warnings.push_back(cat("runs ", runs[0].name, " and ", runs[i].name, " were trained on different data (",
                                 runs[0].data_id, " vs ", runs[i].data_id, "): their curves are not comparable"));
    if (runs[i].cfg.data.seq_len != runs[0].cfg.data.seq_len)
      out.warnings.push_back(cat("runs ", runs[0].name, " and ", runs[i].name, " use different sequence lengths (",
                                 runs[0].cfg.data.seq_len, " vs ", runs[i].cfg.data.seq_len, ")"));
  }
  size_t base = 0;
  if (!o.baseline.empty()) {
    auto it = std::find_if(runs.begin(), runs.end(), [&](const RunRecord& r) { return r.name == o.baseline; });
    if (it == runs.end()) throw std::runtime_error(cat("compare: --baseline ", o.baseline, " is not one of the runs"));
    base = static_cast<size_t>(it - runs.begin());
  }

  auto xval = [&](const CurvePoint& p) { return o.x == metric_name::tokens ? static_cast<double>(p.tokens) : static_cast<double>(p.step); };
  auto label = [](const RunRecord& r) { return r.name == r.cfg.model.arch ? r.name : r.name + " (" + r.cfg.model.arch + ")"; };
  fs::create_directories(o.out_dir);
  const std::string x_label = o.x == metric_name::tokens ? "training tokens" : "step";

  std::vector<ChartSeries> train_series, eval_series;
  std::vector<double> final_loss(runs.size(), NAN), best_val(runs.size(), NAN);
  for (size_t i = 0; i < runs.size(); ++i) {
    ChartSeries s{label(runs[i]), {}, {}, false};
    std::vector<double> ys;
    for (const auto& p : runs[i].train) s.x.push_back(xval(p)), ys.push_back(p.value);
    s.y = ema(ys, o.smooth);
    if (!s.y.empty()) final_loss[i] = s.y.back();
    train_series.push_back(s);
    ChartSeries e{label(runs[i]), {}, {}, true};
    for (const auto& p : runs[i].eval) {
      e.x.push_back(xval(p));
      e.y.push_back(p.value);
      if (std::isfinite(p.value) && !(p.value >= best_val[i])) best_val[i] = p.value;
    }
    eval_series.push_back(e);
  }
  const bool have_eval = std::any_of(eval_series.begin(), eval_series.end(), [](const ChartSeries& s) { return !s.x.empty(); });
  if (o.metric == metric_name::val_loss && !have_eval)
    throw std::runtime_error(cat("compare: --metric ", metric_name::val_loss, ", but no run has evaluation lines"));

  ChartOptions train_opts;
  train_opts.title = o.metric == metric_name::loss ? "Training loss" + (o.smooth > 1 ? cat(" (EMA ", o.smooth, ")") : std::string())
                                        : "Validation loss";
  train_opts.x_label = x_label;
  train_opts.y_label = o.metric == metric_name::loss ? "loss (nats/token)" : "validation loss (nats/token)";
  train_opts.log_x = o.log_x;
  auto write = [&](const std::string& name, const std::string& text) {
    std::string p = (fs::path(o.out_dir) / name).string();
    write_text_file_atomic(p, text);
    out.files.push_back(p);
  };
  write("loss.svg", line_chart_svg(o.metric == metric_name::loss ? train_series : eval_series, train_opts));
  if (have_eval) {
    ChartOptions ev = train_opts;
    ev.title = "Validation loss";
    ev.y_label = "validation loss (nats/token)";
    write("val_loss.svg", line_chart_svg(eval_series, ev));
  }

  // Task accuracies: a chart per task metric, a line per run that scored it.
  std::map<std::string, std::vector<ChartSeries>> task_series;
  for (const auto& r : runs)
    for (const auto& [metric, points] : r.tasks) {
      ChartSeries t{label(r), {}, {}, true};
      for (const auto& p : points) t.x.push_back(xval(p)), t.y.push_back(p.value);
      task_series[metric].push_back(t);
    }
  std::string task_charts;
  for (const auto& [metric, series] : task_series) {
    ChartOptions to = train_opts;
    to.title = "Accuracy: " + metric;
    to.y_label = metric;
    std::string file = "task_" + metric + ".svg";
    std::replace(file.begin(), file.end(), '/', '_');
    write(file, line_chart_svg(series, to));
    task_charts += "![" + to.title + "](" + file + ")\n\n";
  }

  // The table.
  std::ostringstream md, csv;
  md << "| run | arch | params | KV cache B/token (bf16) | tokens seen | final train loss" << (o.smooth > 1 ? cat(" (EMA ", o.smooth, ")") : "")
     << " | Δ train vs " << runs[base].name << " | best val loss | Δ val vs " << runs[base].name << " | tokens/s/GPU |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  csv << "run,arch,params,kv_cache_bytes_per_token,tokens,final_train_loss,delta_train,best_val_loss,delta_val,tokens_per_s\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    KvPlan plan = make_kv_plan(r.cfg.model);
    int64_t params = count_parameters(r.cfg.model, plan).total;
    int64_t kv = plan.kv_cache_bytes_per_token(r.cfg.model.head_dim(), 2);
    int64_t tokens = std::max(r.train.empty() ? 0 : r.train.back().tokens, r.eval.empty() ? 0 : r.eval.back().tokens);
    double dt = final_loss[i] - final_loss[base], dv = best_val[i] - best_val[base];
    md << "| " << r.name << " | " << r.cfg.model.arch << " | " << params << " | " << kv << " | " << tokens << " | "
       << fixed(final_loss[i], 4) << " | " << (i == base ? "–" : signed_fixed(dt, 4)) << " | " << fixed(best_val[i], 4)
       << " | " << (i == base ? "–" : signed_fixed(dv, 4)) << " | " << fixed(r.tokens_per_s, 0) << " |\n";
    csv << r.name << "," << r.cfg.model.arch << "," << params << "," << kv << "," << tokens << "," << format_double(final_loss[i])
        << "," << format_double(dt) << "," << format_double(best_val[i]) << "," << format_double(dv) << ","
        << format_double(r.tokens_per_s) << "\n";
  }
  std::ostringstream report;
  report << "# Comparison\n\n![" << train_opts.title << "](loss.svg)\n\n" << (have_eval ? "![Validation loss](val_loss.svg)\n\n" : "") << task_charts
         << md.str() << "\nLower is better. Final train loss: the last logged value" << (o.smooth > 1 ? " after EMA smoothing" : "")
         << "; best val loss: the lowest evaluation. KV cache: bytes per token of a bf16 decode cache.\n";
  for (const auto& w : out.warnings) report << "\n**Warning:** " << w << "\n";
  out.report_md = report.str();
  write("report.md", out.report_md);
  write("report.csv", csv.str());
  return out;
}

}  // namespace yt
