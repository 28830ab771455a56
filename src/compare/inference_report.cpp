#include "yocotron/inference_report.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/str.h"
#include "yocotron/svg_chart.h"

namespace yt {
namespace {

struct Point {
  std::string system;  // "yocopp", "transformer", "hf-llama ..."
  std::string part;    // prefill | decode
  int64_t length = 0;  // prompt tokens (prefill) or generated tokens (decode)
  int64_t batch = 0;
  bool largest = false;
  double ms = 0;            // prefill: time to first token; decode: whole run
  double tokens_per_s = 0;  // decode
  int64_t kv_bytes = 0;     // decode: the cache at this batch
  std::string timing;
};

std::vector<Point> read_points(const std::vector<std::string>& files) {
  std::vector<Point> out;
  for (const auto& file : files) {
    std::ifstream in(file);
    if (!in) throw std::runtime_error(file + ": cannot open");
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      try {
        auto j = nlohmann::json::parse(line);
        const std::string part = j.at("part");
        if (part != "prefill" && part != "decode") continue;  // other bench lines may share the file
        const std::string system = j.contains("peer") ? j.at("peer").get<std::string>() : j.at("arch").get<std::string>();
        for (const auto& r : j.at("results")) {
          Point p;
          p.system = system;
          p.part = part;
          p.length = r.at(part == "prefill" ? "prompt_tokens" : "gen_tokens");
          p.batch = r.at("batch");
          p.largest = r.value("largest_batch", false);
          p.ms = r.at(part == "prefill" ? "ttft_ms" : "total_ms");
          p.tokens_per_s = r.value("tokens_per_s", 0.0);
          p.kv_bytes = r.value("kv_cache_bytes", int64_t{0});
          p.timing = r.value("timing", "");
          out.push_back(p);
        }
      } catch (const nlohmann::json::exception& e) {
        throw std::runtime_error(cat(file, ":", n, ": not a bench prefill/decode result (", e.what(), ")"));
      }
    }
  }
  if (out.empty()) throw std::runtime_error(cat(join(files, ", "), ": no prefill or decode results"));
  return out;
}

// One series per system: x = length, y = value(point), over the points `keep` selects.
template <class Keep, class Value>
std::vector<ChartSeries> series(const std::vector<Point>& points, Keep keep, Value value) {
  std::map<std::string, ChartSeries> by;
  for (const auto& p : points) {
    if (!keep(p)) continue;
    auto& s = by[p.system];
    s.label = p.system;
    s.markers = true;
    s.x.push_back(static_cast<double>(p.length));
    s.y.push_back(value(p));
  }
  std::vector<ChartSeries> out;
  for (auto& [name, s] : by) out.push_back(s);
  return out;
}

std::string fmt(double v, int digits = 1) {
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(digits);
  o << v;
  return o.str();
}

}  // namespace

InferenceReport write_inference_report(const std::vector<std::string>& jsonl_files, const std::string& out_dir) {
  const auto points = read_points(jsonl_files);
  std::filesystem::create_directories(out_dir);
  InferenceReport rep;
  auto write = [&](const std::string& name, const std::string& text) {
    auto path = (std::filesystem::path(out_dir) / name).string();
    write_text_file_atomic(path, text);
    rep.files.push_back(path);
  };
  auto chart = [&](const std::string& file, const std::string& title, const std::string& x, const std::string& y,
                   const std::vector<ChartSeries>& s) {
    if (s.empty()) return;
    ChartOptions o;
    o.title = title;
    o.x_label = x;
    o.y_label = y;
    o.log_x = true;
    o.y_min = 0;
    write(file, line_chart_svg(s, o));
  };
  chart("prefill.svg", "Prefill: time to first token (batch 1)", "prompt tokens", "ms",
        series(points, [](const Point& p) { return p.part == "prefill" && p.batch == 1 && !p.largest; },
               [](const Point& p) { return p.ms; }));
  chart("decode_throughput.svg", "Decoding throughput at the largest batch", "generated tokens", "tokens/s",
        series(points, [](const Point& p) { return p.part == "decode" && p.largest; }, [](const Point& p) { return p.tokens_per_s; }));
  chart("decode_batch.svg", "Largest decoding batch", "generated tokens", "sequences",
        series(points, [](const Point& p) { return p.part == "decode" && p.largest; },
               [](const Point& p) { return static_cast<double>(p.batch); }));

  // The table: every point, with the ratio to the transformer's at the same part, length and kind.
  auto same = [](const Point& a, const Point& b) {
    return a.part == b.part && a.length == b.length && a.largest == b.largest && (a.largest || a.batch == b.batch);
  };
  const Point* none = nullptr;
  std::ostringstream md, csv;
  md << "| system | part | length | batch | largest batch | time to first token / run (ms) | tokens/s | KV cache | vs transformer | timing |\n"
     << "|---|---|---|---|---|---|---|---|---|---|\n";
  csv << "system,part,length,batch,largest_batch,ms,tokens_per_s,kv_cache_bytes,ratio_to_transformer,timing\n";
  for (const auto& p : points) {
    const Point* base = none;
    for (const auto& q : points)
      if (q.system == "transformer" && same(p, q)) base = &q;
    // prefill: transformer time / this time (> 1 is faster); decode: this throughput / transformer's,
    // and at the largest batch also the batch ratio.
    std::string ratio;
    double r = 0;
    if (base && p.system != "transformer") {
      if (p.part == "prefill") r = base->ms / p.ms;
      else r = p.tokens_per_s / base->tokens_per_s;
      ratio = fmt(r, 2) + "x" + (p.part == "decode" && p.largest ? " (batch " + fmt(double(p.batch) / base->batch, 2) + "x)" : "");
    }
    md << "| " << p.system << " | " << p.part << " | " << p.length << " | " << p.batch << " | " << (p.largest ? "yes" : "")
       << " | " << fmt(p.ms) << " | " << (p.part == "decode" ? fmt(p.tokens_per_s, 0) : "") << " | "
       << (p.kv_bytes ? fmt(p.kv_bytes / 1073741824.0, 2) + " GiB" : "") << " | " << ratio << " | " << p.timing << " |\n";
    csv << p.system << "," << p.part << "," << p.length << "," << p.batch << "," << (p.largest ? 1 : 0) << "," << p.ms << ","
        << p.tokens_per_s << "," << p.kv_bytes << "," << (ratio.empty() ? "" : std::to_string(r)) << ",\"" << p.timing << "\"\n";
  }
  rep.markdown = "# Inference: prefill latency, decoding throughput, KV memory\n\n";
  for (const char* f : {"prefill.svg", "decode_throughput.svg", "decode_batch.svg"})
    if (std::filesystem::exists(std::filesystem::path(out_dir) / f)) rep.markdown += cat("![", f, "](", f, ")\n\n");
  rep.markdown += md.str();
  write("inference.md", rep.markdown);
  write("inference.csv", csv.str());
  return rep;
}

}  // namespace yt
