#include "yocotron/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "yocotron/reader_checks.h"
#include "yocotron/fileio.h"
#include "yocotron/log.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

const std::string kCsvHeader = "step,tokens,loss,lr,grad_norm,tokens_per_s,mfu,mem_gb,skipped,val_loss,val_ppl,elapsed_s";
const std::string kTasksCsvHeader = "step,tokens,task,acc,acc_stderr,acc_norm,acc_norm_stderr,n";

std::string num(double v) { return std::isfinite(v) ? format_double(v) : (std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")); }

// JSON has no NaN: non-finite values are written as null.
std::string json_num(double v) { return std::isfinite(v) ? format_double(v) : "null"; }

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
  if (!j.is_object() || !j.contains("step") || !j["step"].is_number_unsigned() ||
      j["step"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    return "malformed row (not an object with a non-negative integer \"step\")";
  *step = j["step"].get<int64_t>();
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
    const std::string& default_header = std::string(name) == "metrics_tasks.csv" ? kTasksCsvHeader : kCsvHeader;
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
      if (csv && line_no == 1 && !torn && starts_with(line, "step,")) {
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
  if (fresh) csv_ << kCsvHeader << "\n" << std::flush;
}

void MetricsFiles::train(const TrainRow& r) {
  jsonl_ << "{\"step\":" << r.step << ",\"tokens\":" << r.tokens << ",\"loss\":" << json_num(r.loss)
         << ",\"lr\":" << json_num(r.lr) << ",\"grad_norm\":" << json_num(r.grad_norm)
         << ",\"tokens_per_s\":" << json_num(r.tokens_per_s) << ",\"mfu\":" << (r.mfu ? json_num(*r.mfu) : "null")
         << ",\"mem_gb\":" << json_num(r.mem_gb) << ",\"skipped\":" << r.skipped
         << ",\"elapsed_s\":" << json_num(r.elapsed_s) << "}\n"
         << std::flush;
  csv_ << r.step << "," << r.tokens << "," << num(r.loss) << "," << num(r.lr) << "," << num(r.grad_norm) << ","
       << num(r.tokens_per_s) << "," << (r.mfu ? num(*r.mfu) : "") << "," << num(r.mem_gb) << "," << r.skipped << ",,,"
       << num(r.elapsed_s) << "\n"
       << std::flush;
}

void MetricsFiles::eval(const EvalRow& r) {
  jsonl_ << "{\"step\":" << r.step << ",\"tokens\":" << r.tokens << ",\"val_loss\":" << json_num(r.val_loss)
         << ",\"val_ppl\":" << json_num(std::exp(r.val_loss)) << "}\n"
         << std::flush;
  csv_ << r.step << "," << r.tokens << ",,,,,,,," << num(r.val_loss) << "," << num(std::exp(r.val_loss)) << ",\n"
       << std::flush;
}

void MetricsFiles::tasks(const TaskEvalRow& r) {
  if (!tasks_csv_.is_open()) {  // only runs that score tasks have this file
    fs::path p = fs::path(run_dir_) / "metrics_tasks.csv";
    const bool fresh = !fs::exists(p) || fs::file_size(p) == 0;
    tasks_csv_.open(p, std::ios::app);
    if (!tasks_csv_) throw std::runtime_error(cat(p.string(), ": cannot open for writing"));
    if (fresh) tasks_csv_ << kTasksCsvHeader << "\n";
  }
  jsonl_ << "{\"step\":" << r.step << ",\"tokens\":" << r.tokens;
  for (const auto& t : r.tasks) {
    jsonl_ << ",\"eval/" << t.name << "/acc\":" << json_num(t.acc);
    if (t.acc_norm) jsonl_ << ",\"eval/" << t.name << "/acc_norm\":" << json_num(*t.acc_norm);
    tasks_csv_ << r.step << "," << r.tokens << "," << t.name << "," << num(t.acc) << "," << num(t.acc_stderr) << ","
               << (t.acc_norm ? num(*t.acc_norm) : "") << "," << (t.acc_norm ? num(*t.acc_norm_stderr) : "") << "," << t.n << "\n";
  }
  jsonl_ << "}\n" << std::flush;
  tasks_csv_ << std::flush;
}

}  // namespace yt
