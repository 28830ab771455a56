#include "yocotron/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/version.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "yocotron/device.h"
#include "yocotron/fileio.h"
#include "yocotron/str.h"

namespace yt {
namespace {

namespace kp = torch::autograd::profiler;  // enableProfiler, disableProfiler, ProfilerResult, KinetoEvent
namespace pi = torch::profiler::impl;      // ProfilerConfig, ProfilerState, ActivityType (1.13 and 2.x)

bool is_phase(const std::string& name) { return starts_with(name, "yocotron::"); }

struct Ev {
  std::string name;
  bool cuda;
  uint64_t thread;
  double start, dur;  // microseconds
  double child = 0;   // time covered by nested events (same thread)
};

// CPU self time: per thread, events nest as intervals; an event's self time is its duration minus
// that of the events directly inside it.
void compute_self_times(std::vector<Ev>& evs) {
  std::map<uint64_t, std::vector<Ev*>> by_thread;
  for (auto& e : evs)
    if (!e.cuda) by_thread[e.thread].push_back(&e);
  for (auto& [tid, list] : by_thread) {
    std::sort(list.begin(), list.end(), [](const Ev* a, const Ev* b) {
      return a->start != b->start ? a->start < b->start : a->dur > b->dur;
    });
    std::vector<Ev*> stack;
    for (Ev* e : list) {
      while (!stack.empty() && stack.back()->start + stack.back()->dur <= e->start) stack.pop_back();
      if (!stack.empty()) stack.back()->child += e->dur;
      stack.push_back(e);
    }
  }
}

std::vector<ProfileRow> aggregate(const std::map<std::string, std::pair<int64_t, double>>& by_name, double total) {
  std::vector<ProfileRow> rows;
  for (const auto& [name, cd] : by_name) rows.push_back({name, cd.first, cd.second, total > 0 ? cd.second / total : 0.0});
  std::sort(rows.begin(), rows.end(), [](const ProfileRow& a, const ProfileRow& b) {
    return a.total_us != b.total_us ? a.total_us > b.total_us : a.name < b.name;
  });
  return rows;
}

// LibTorch built without Kineto (Debian's 1.13) records the ops but cannot save a trace: write the
// same Chrome trace format from the events.
void write_trace_from_events(const std::vector<Ev>& evs, const kp::ProfilerResult& result, const std::string& path) {
  nlohmann::json events = nlohmann::json::array();
  const auto& kevs = result.events();
  const int pid = static_cast<int>(::getpid());
  for (size_t i = 0; i < evs.size(); ++i) {
    const Ev& e = evs[i];
    nlohmann::json j = {{"ph", "X"},
                        {"cat", e.cuda ? "kernel" : is_phase(e.name) ? "user_annotation" : "cpu_op"},
                        {"name", e.name},
                        {"pid", pid},
                        {"tid", e.thread},
                        {"ts", e.start},
                        {"dur", e.dur}};
    nlohmann::json args = nlohmann::json::object();
    if (kevs[i].hasShapes()) {
      nlohmann::json dims = nlohmann::json::array();
      for (const auto& s : kevs[i].shapes()) dims.push_back(s);
      args["Input Dims"] = dims;
    }
    if (kevs[i].sequenceNr() >= 0) args["Sequence number"] = kevs[i].sequenceNr();
    j["args"] = args;
    events.push_back(std::move(j));
  }
  nlohmann::json doc = {{"schemaVersion", 1},
                        {"displayTimeUnit", "ms"},
                        {"traceName", path},
                        {"otherData", {{"writer", "yocotron (LibTorch without Kineto: CPU ops from the profiler's events)"}}},
                        {"traceEvents", events}};
  write_text_file_atomic(path, doc.dump());
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// Shares are truncated (never rounded up) to 0.01 %, so the printed shares never sum above 100 %.
std::string pct(double share) { return fmt("%6.2f%%", std::floor(share * 10000.0) / 100.0); }

std::string shorten(const std::string& name, size_t max = 110) {
  return name.size() <= max ? name : name.substr(0, max - 3) + "...";
}

}  // namespace

std::string ProfileSummary::text(size_t top) const {
  std::string out = title + "\n";
  out += cat("trace: ", trace_path, kineto_trace ? " (Kineto)" : " (written from the profiler's events: this LibTorch has no Kineto)", "\n");
  out += cat("profiled wall time: ", fmt("%.3f", wall_us / 1000.0), " ms; ",
             cuda ? "GPU kernel time: " : "CPU self time in recorded ops: ", fmt("%.3f", total_us / 1000.0), " ms",
             cuda && wall_us > 0 ? cat(" (GPU busy ", fmt("%.1f", 100.0 * total_us / wall_us), "% of the wall time)") : "", "\n");
  out += "\nphases (host wall time, inclusive; share of the profiled wall time";
  out += cuda ? "; the GPU runs behind the host)\n" : ")\n";
  out += "   share    total ms    count  name\n";
  for (const auto& p : phases)
    out += cat(pct(p.share), "  ", fmt("%10.3f", p.total_us / 1000.0), "  ", fmt("%7.0f", static_cast<double>(p.count)), "  ", p.name, "\n");
  if (!gpu_phases.empty()) {
    out += "\nphases on the GPU (from the first to the last kernel of each range; share of the profiled wall time)\n";
    out += "   share    total ms    count  name\n";
    for (const auto& p : gpu_phases)
      out += cat(pct(p.share), "  ", fmt("%10.3f", p.total_us / 1000.0), "  ", fmt("%7.0f", static_cast<double>(p.count)), "  ", p.name, "\n");
  }
  out += cat("\ntop ", std::min(top, rows.size()), " of ", rows.size(), cuda ? " GPU kernels and copies by GPU time" : " ops by CPU self time",
             " (share of the ", cuda ? "GPU time" : "CPU self time", " above)\n");
  out += "   share    total ms    count     avg us  name\n";
  double rest_us = 0, rest_share = 0;
  int64_t rest_count = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    if (i >= top) {
      rest_us += r.total_us, rest_share += r.share, rest_count += r.count;
      continue;
    }
    out += cat(pct(r.share), "  ", fmt("%10.3f", r.total_us / 1000.0), "  ", fmt("%7.0f", static_cast<double>(r.count)), "  ",
               fmt("%9.1f", r.total_us / static_cast<double>(std::max<int64_t>(1, r.count))), "  ", shorten(r.name), "\n");
  }
  if (rows.size() > top)
    out += cat(pct(rest_share), "  ", fmt("%10.3f", rest_us / 1000.0), "  ", fmt("%7.0f", static_cast<double>(rest_count)), "  ",
               fmt("%9.1f", rest_us / static_cast<double>(std::max<int64_t>(1, rest_count))), "  [", rows.size() - top, " others]\n");
  return out;
}

Profiler::Profiler(int cuda_device) : cuda_device_(cuda_device) {
  if (pi::profilerEnabled()) throw std::runtime_error("the profiler is already recording");
  pi::ProfilerConfig config(pi::ProfilerState::KINETO, /*report_input_shapes=*/true);
  std::set<pi::ActivityType> activities{pi::ActivityType::CPU};
  if (cuda_device_ >= 0) activities.insert(pi::ActivityType::CUDA);
  kp::prepareProfiler(config, activities);
  kp::enableProfiler(config, activities);
  running_ = true;
}

Profiler::~Profiler() {
  if (!running_) return;
  try {
    kp::disableProfiler();
  } catch (...) {  // unwinding from another error: that one matters
  }
}

ProfileSummary Profiler::finish(const std::string& trace_path, const std::string& summary_path, const std::string& title) {
  if (!running_) throw std::logic_error("Profiler::finish called twice");
  synchronize(cuda_device_);  // every kernel of the profiled steps has run
  running_ = false;
  std::unique_ptr<kp::ProfilerResult> result = kp::disableProfiler();

  ProfileSummary s;
  s.title = title;
  s.cuda = cuda_device_ >= 0;
  s.trace_path = trace_path;
  std::vector<Ev> evs;
  double first = 0, last = 0;
  for (const auto& k : result->events()) {
#if TORCH_VERSION_MAJOR >= 2  // 2.x reports nanoseconds
    const double start_us = static_cast<double>(k.startNs()) / 1000.0, dur_us = static_cast<double>(k.durationNs()) / 1000.0;
#else
    const double start_us = static_cast<double>(k.startUs()), dur_us = static_cast<double>(k.durationUs());
#endif
    Ev e{k.name(), k.deviceType() == c10::DeviceType::CUDA, k.startThreadId(), start_us, dur_us};
    if (evs.empty() || e.start < first) first = e.start;
    last = std::max(last, e.start + e.dur);
    evs.push_back(std::move(e));
  }
  s.wall_us = evs.empty() ? 0.0 : last - first;
  compute_self_times(evs);
  std::map<std::string, std::pair<int64_t, double>> ops, phases, gpu_phases;
  for (const auto& e : evs) {
    if (is_phase(e.name)) {
      // Kineto mirrors each range on the GPU (gpu_user_annotation: the span of its kernels).
      auto& p = e.cuda ? gpu_phases[e.name] : phases[e.name];
      p.first++, p.second += e.dur;
      if (e.cuda) continue;
    }
    if (e.cuda != s.cuda) continue;
    double t = e.cuda ? e.dur : std::max(0.0, e.dur - e.child);
    ops[e.name].first++, ops[e.name].second += t;
    s.total_us += t;
  }
  s.rows = aggregate(ops, s.total_us);
  s.phases = aggregate(phases, s.wall_us);
  s.gpu_phases = aggregate(gpu_phases, s.wall_us);

  std::filesystem::path tp(trace_path), sp(summary_path);
  if (tp.has_parent_path()) std::filesystem::create_directories(tp.parent_path());
  if (sp.has_parent_path()) std::filesystem::create_directories(sp.parent_path());
  try {
    result->save(trace_path);
    s.kineto_trace = true;
  } catch (const c10::Error&) {  // "Saving a trace requires ... Kineto support (USE_KINETO=1)"
    write_trace_from_events(evs, *result, trace_path);
  }
  write_text_file_atomic(summary_path, s.text());
  return s;
}

}  // namespace yt
