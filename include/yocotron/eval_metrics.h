// What a scored multiple-choice task reports, as lm-eval 0.4.9.1 computes it (api/task.py
// process_results and api/metrics.py): acc = argmax of the summed log-likelihoods, acc_norm = argmax
// of log-likelihood / the choice's length in characters (Unicode code points), each the mean over
// items with the sample standard error of the mean; and the table and JSON `yocotron eval` prints.
// Torch-free.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "yocotron/eval_tasks.h"

namespace yt {

struct TaskResult {
  std::string name, source;
  int64_t n = 0;
  double acc = 0, acc_stderr = 0;
  std::optional<double> acc_norm, acc_norm_stderr;  // not for WinoGrande-form tasks
  double seconds = 0;                               // scoring time (tokenizing included)
};

// `lls`: per item, per choice. The first maximum wins ties (numpy's argmax).
TaskResult summarize_task(const McTask& task, const std::vector<std::vector<double>>& lls);

// The length lm-eval normalises acc_norm by: Python's len() of the choice, in code points.
int64_t utf8_length(const std::string& s);

// Perplexity of a tokenized split (`yocotron eval --ppl`).
struct PplResult {
  std::string split;
  int64_t tokens = 0;        // predicted tokens
  int64_t bytes = 0;         // UTF-8 bytes of the split's text (decoded document by document)
  double nll_sum = 0;        // nats
  double loss() const { return tokens > 0 ? nll_sum / static_cast<double>(tokens) : 0; }
  double bits_per_byte() const;
  double seconds = 0;
};

// The table: one row per task (acc ± stderr, acc_norm ± stderr, n) and the average of each column
// over the tasks that have it; then the perplexity lines.
std::string results_table(const std::vector<TaskResult>& tasks, const std::vector<PplResult>& ppl);

}  // namespace yt
