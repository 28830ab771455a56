// Profiling training steps with LibTorch's profiler (Kineto): `yocotron bench --profile DIR` and
// `log.profile_steps: [a, b]` in `yocotron train`. A session records the CPU ops this thread (and the
// autograd threads it drives) runs, with their input shapes, the yocotron::* phase ranges of
// phase.h, and on CUDA the GPU kernels; it writes a Chrome/Perfetto trace (open it in
// https://ui.perfetto.dev or chrome://tracing) and a plain-text summary: the top ops or kernels
// aggregated by name, with count, total and share of the device's time.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace yt {

struct ProfileRow {
  std::string name;
  int64_t count = 0;
  double total_us = 0;  // CUDA time (kernels) or CPU self time (ops); wall time for phases
  double share = 0;     // of ProfileSummary::total_us (phases: of wall_us), in [0, 1]
};

struct ProfileSummary {
  std::string title;
  bool cuda = false;            // rows are CUDA kernels (else CPU ops by self time)
  double wall_us = 0;           // first event's start to last event's end
  double total_us = 0;          // sum over every row: device busy time, or CPU self time
  std::vector<ProfileRow> rows;    // every op or kernel, by total descending
  std::vector<ProfileRow> phases;      // yocotron::* ranges (host wall time, inclusive)
  std::vector<ProfileRow> gpu_phases;  // the same ranges on the GPU (Kineto: the span of their kernels)
  std::string trace_path;
  bool kineto_trace = false;    // the trace is Kineto's own (else written from the events: LibTorch without Kineto)
  // The summary file's text: the phases and the top `top` rows, then one row for the rest.
  std::string text(size_t top = 40) const;
};

class Profiler {
 public:
  // Starts recording on this thread: CPU ops (with shapes), and CUDA kernels when cuda_device >= 0.
  // Only one profiler may record at a time.
  explicit Profiler(int cuda_device);
  // Stops without writing anything if finish() was not called.
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Waits for the GPU, stops recording, writes the trace (Chrome trace JSON) to `trace_path` and the
  // summary to `summary_path` (directories are created), and returns the summary.
  ProfileSummary finish(const std::string& trace_path, const std::string& summary_path, const std::string& title);

 private:
  int cuda_device_;
  bool running_ = false;
};

}  // namespace yt
