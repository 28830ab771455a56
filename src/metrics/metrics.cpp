#include "yocotron/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "yocotron/fileio.h"
#include "yocotron/log.h"
#include "yocotron/metrics_schema.h"
#include "yocotron/reader_checks.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

std::string num(double v) { return std::isfinite(v) ? format_double(v) : (std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")); }

// A CSV cell: empty for an absent value.
std::string csv_cell(const MetricValue& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&v)) return num(*d);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  return "";
}

// A line of `table`: each column's value from the row, empty where the row has none.
std::string csv_line(MetricsTable table, const MetricRow& row) {
  std::vector<std::string> cells;
  for (auto column : csv_columns(table)) {
    auto it = std::find_if(row.begin(), row.end(), [&](const NamedValue& v) { return v.name == column; });
    cells.push_back(it == row.end() ? "" : csv_cell(it->value));
  }
  return join(cells, ",") + "\n";
}

// In column order (ordered_json); JSON has no NaN, so absent and non-finite values are null. nlohmann
// writes a double's shortest text that reads back to the same double (tested).
std::string json_line(const MetricRow& row) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [name, v] : row) {
    if (const auto* i = std::get_if<int64_t>(&v)) j[name] = *i;
    else if (const auto* d = std::get_if<double>(&v)) j[name] = std::isfinite(*d) ? nlohmann::ordered_json(*d) : nullptr;
    else if (const auto* s = std::get_if<std::string>(&v)) j[name] = *s;
    else j[name] = nullptr;
  }
  return j.dump() + "\n";
}

// Flushed row by row: a crash loses at most the row being written (truncate_metrics drops it on resume).
void write_curve_row(std::ofstream& jsonl, std::ofstream& csv, const MetricRow& row) {
  jsonl << json_line(row) << std::flush;
  csv << csv_line(MetricsTable::Curve, row) << std::flush;
}

size_t field_count(const std::string& line) { return static_cast<size_t>(std::count(line.begin(), line.end(), ',')) + 1; }

bool parse_step(const std::string& text, int64_t* step) {
  const char* end = text.data() + text.size();
  auto [p, ec] = std::from_chars(text.data(), end, *step);
  return ec == std::errc() && p == end && *step >= 0;
}

// Why a complete line of metrics.csv or metrics.jsonl is not a row this program wrote ("" when it is).
std::string row_problem(const std::string& line, bool csv, size_t csv_fields, int64_t* step) {
  if (csv) {
    if (field_count(line) != csv_fields) return cat("malformed row (", field_count(line), " fields, the header has ", csv_fields, ")");
    if (!parse_step(line.substr(0, line.find(',')), step)) return "malformed row (the step is not a non-negative integer)";
    return "";
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception&) {
    return "malformed row (not JSON)";
  }
  const std::string key(metric_name::step);
  if (!j.is_object() || !j.contains(key) || !j[key].is_number_unsigned() || j[key].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    return cat("malformed row (not an object with a non-negative integer \"", key, "\")");
  *step = j[key].get<int64_t>();
  return "";
}

}  // namespace

void truncate_metrics(const std::string& run_dir, int64_t keep_up_to) {
  for (const char* name : {"metrics.jsonl", "metrics.csv", "metrics_tasks.csv"}) {
    fs::path p = fs::path(run_dir) / name;
    if (!fs::exists(p)) continue;
    const std::string text = read_text_file(p.string());
    const bool csv = ends_with(name, ".csv");
    // Rows are written whole with their end of line, so only the last one can be torn (the run
    // stopped while writing it, or the disk filled): that one is dropped with a warning. A bad row
    // before it was not written by this program, and silently dropping it could hide more damage.
    const size_t last = text.find_last_not_of('\n') == std::string::npos ? 0 : text.find_last_not_of('\n');
    std::string header, kept;
    const std::string default_header = csv_header(std::string(name) == "metrics_tasks.csv" ? MetricsTable::Tasks : MetricsTable::Curve);
    size_t csv_fields = field_count(default_header);
    size_t pos = 0, line_no = 0;
    while (pos < text.size()) {
      const size_t nl = text.find('\n', pos);
      const bool torn = nl == std::string::npos;
      const std::string line = text.substr(pos, torn ? std::string::npos : nl - pos);
      const bool is_last = (torn ? text.size() : nl) > last;
      pos = torn ? text.size() : nl + 1;
      ++line_no;
      if (line.empty()) continue;
      if (csv && line_no == 1 && !torn && starts_with(line, cat(metric_name::step, ","))) {
        header = line;
        csv_fields = field_count(line);
        continue;
      }
      int64_t step = -1;
      std::string why = torn ? "torn last row (the run stopped while writing it)" : row_problem(line, csv, csv_fields, &step);
      if (!why.empty()) {
        if (!is_last)
          throw std::runtime_error(cat(p.string(), ":", line_no, ": ", why, ": \"", printable(line, 60),
                                       "\"; only the last row may be damaged (fix or remove this line to resume)"));
        log::warn(p.string(), ":", line_no, ": ", why, ": \"", printable(line, 60), "\" dropped");
        continue;
      }
      if (step <= keep_up_to) kept += line + "\n";
    }
    if (csv && (!header.empty() || !kept.empty())) kept = (header.empty() ? default_header : header) + "\n" + kept;
    write_text_file_atomic(p.string(), kept);
  }
}

MetricsFiles::MetricsFiles(const std::string& run_dir, int64_t keep_up_to) : run_dir_(run_dir) {
  truncate_metrics(run_dir, keep_up_to);
  fs::path csv = fs::path(run_dir) / "metrics.csv";
  bool fresh = !fs::exists(csv) || fs::file_size(csv) == 0;
  jsonl_.open(fs::path(run_dir) / "metrics.jsonl", std::ios::app);
  csv_.open(csv, std::ios::app);
  if (!jsonl_ || !csv_) throw std::runtime_error(cat(run_dir, ": cannot open metrics files for writing"));
  if (fresh) csv_ << csv_header(MetricsTable::Curve) << "\n" << std::flush;
}

void MetricsFiles::train(const TrainRow& r) { write_curve_row(jsonl_, csv_, metric_row(r)); }

void MetricsFiles::eval(const EvalRow& r) { write_curve_row(jsonl_, csv_, metric_row(r)); }

void MetricsFiles::tasks(const TaskEvalRow& r) {
  if (!tasks_csv_.is_open()) {  // only runs that score tasks have this file
    fs::path p = fs::path(run_dir_) / "metrics_tasks.csv";
    const bool fresh = !fs::exists(p) || fs::file_size(p) == 0;
    tasks_csv_.open(p, std::ios::app);
    if (!tasks_csv_) throw std::runtime_error(cat(p.string(), ": cannot open for writing"));
    if (fresh) tasks_csv_ << csv_header(MetricsTable::Tasks) << "\n";
  }
  for (const auto& t : r.tasks) tasks_csv_ << csv_line(MetricsTable::Tasks, task_csv_row(r, t));
  jsonl_ << json_line(metric_row(r)) << std::flush;
  tasks_csv_ << std::flush;
}

}  // namespace yt
