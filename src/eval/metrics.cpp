#include "yocotron/eval_metrics.h"

#include <algorithm>
#include <cmath>
#include <iomanip>
#include <sstream>

namespace yt {
namespace {

size_t argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;
  return best;
}

// lm-eval's mean_stderr: sample standard deviation (n - 1) / sqrt(n); of 0/1 values with mean p
// that is sqrt(p (1 - p) / (n - 1)).
double stderr_of_mean(double p, int64_t n) { return n > 1 ? std::sqrt(p * (1 - p) / static_cast<double>(n - 1)) : NAN; }

std::string pct(double v) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(4) << v;
  return s.str();
}

}  // namespace

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

TaskResult summarize_task(const McTask& task, const std::vector<std::vector<double>>& lls) {
  TaskResult r;
  r.name = task.name;
  r.source = task.source;
  r.n = static_cast<int64_t>(task.items.size());
  int64_t right = 0, right_norm = 0;
  for (size_t i = 0; i < task.items.size(); ++i) {
    const McItem& it = task.items[i];
    right += static_cast<int64_t>(argmax(lls[i])) == it.gold;
    if (!task.has_acc_norm()) continue;
    std::vector<double> norm = lls[i];
    for (size_t c = 0; c < norm.size(); ++c) norm[c] /= static_cast<double>(utf8_length(it.continuations[c]));
    right_norm += static_cast<int64_t>(argmax(norm)) == it.gold;
  }
  const double n = static_cast<double>(std::max<int64_t>(r.n, 1));
  r.acc = static_cast<double>(right) / n;
  r.acc_stderr = stderr_of_mean(r.acc, r.n);
  if (task.has_acc_norm()) {
    r.acc_norm = static_cast<double>(right_norm) / n;
    r.acc_norm_stderr = stderr_of_mean(*r.acc_norm, r.n);
  }
  return r;
}

double PplResult::bits_per_byte() const { return bytes > 0 ? nll_sum / std::log(2.0) / static_cast<double>(bytes) : NAN; }

std::string results_table(const std::vector<TaskResult>& tasks, const std::vector<PplResult>& ppl) {
  std::ostringstream t;
  if (!tasks.empty()) {
    t << "| task | acc | ± | acc_norm | ± | n |\n|---|---|---|---|---|---|\n";
    double acc = 0, norm = 0;
    int64_t n_norm = 0;
    for (const auto& r : tasks) {
      t << "| " << r.name << " | " << pct(r.acc) << " | " << pct(r.acc_stderr) << " | "
        << (r.acc_norm ? pct(*r.acc_norm) : "–") << " | " << (r.acc_norm ? pct(*r.acc_norm_stderr) : "–") << " | " << r.n << " |\n";
      acc += r.acc;
      if (r.acc_norm) norm += *r.acc_norm, ++n_norm;
    }
    if (tasks.size() > 1)
      t << "| average | " << pct(acc / static_cast<double>(tasks.size())) << " |  | "
        << (n_norm ? pct(norm / static_cast<double>(n_norm)) : "–") << " |  |  |\n";
  }
  for (const auto& p : ppl)
    t << (tasks.empty() ? "" : "\n") << p.split << ": loss " << pct(p.loss()) << " nats/token, perplexity " << pct(std::exp(p.loss()))
      << ", " << pct(p.bits_per_byte()) << " bits/byte (" << p.tokens << " tokens, " << p.bytes << " bytes)\n";
  return t.str();
}

}  // namespace yt
