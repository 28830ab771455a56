#include "yocotron/metrics.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

const char* kCsvHeader = "step,tokens,loss,lr,grad_norm,tokens_per_s,mfu,mem_gb,skipped,val_loss,val_ppl,elapsed_s";

std::string num(double v) { return std::isfinite(v) ? format_double(v) : (std::isnan(v) ? "NaN" : (v > 0 ? "Infinity" : "-Infinity")); }

// JSON has no NaN: non-finite values are written as null.
std::string json_num(double v) { return std::isfinite(v) ? format_double(v) : "null"; }

}  // namespace

void truncate_metrics(const std::string& run_dir, int64_t keep_up_to) {
  for (const char* name : {"metrics.jsonl", "metrics.csv"}) {
    fs::path p = fs::path(run_dir) / name;
    if (!fs::exists(p)) continue;
    std::istringstream in(read_text_file(p.string()));
    std::string line, kept;
    bool csv = ends_with(name, ".csv");
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      int64_t step = -1;
      if (csv) {
        if (starts_with(line, "step,")) {
          kept += line + "\n";
          continue;
        }
        step = std::stoll(line.substr(0, line.find(',')));
      } else {
        try {
          step = nlohmann::json::parse(line).at("step").get<int64_t>();
        } catch (const std::exception&) {
          continue;  // a torn last line of a crashed run
        }
      }
      if (step <= keep_up_to) kept += line + "\n";
    }
    write_text_file_atomic(p.string(), kept);
  }
}

MetricsFiles::MetricsFiles(const std::string& run_dir, int64_t keep_up_to) {
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

}  // namespace yt
