#include "yocotron/errors.h"

#include <c10/util/Exception.h>

#include <cstdio>
#include <new>
#include <regex>
#include <stdexcept>

#include "yocotron/device.h"
#include "yocotron/phase.h"
#include "yocotron/str.h"

namespace yt {
namespace {

std::string trim(std::string s) {
  const char* ws = " \t\r\n";
  s.erase(0, s.find_first_not_of(ws));
  s.erase(s.find_last_not_of(ws) + 1);
  return s;
}

struct Allocation {
  std::string amount;   // "2.00 GiB", or "" when the error does not say
  std::string details;  // the allocator's own figures
};

// CUDA's caching allocator: "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total
// capacity of 79.19 GiB of which ... is free. ... If reserved but unallocated memory is large try ...".
Allocation parse_cuda(const std::string& msg) {
  Allocation a;
  std::smatch m;
  if (std::regex_search(msg, m, std::regex(R"(Tried to allocate ([0-9.]+ ?[KMGT]?i?B))"))) a.amount = m[1];
  std::string rest = m.empty() ? msg : m.suffix().str();
  if (!rest.empty() && rest[0] == '.') rest.erase(0, 1);
  for (const char* cut : {"If reserved but unallocated", "See documentation"}) {
    auto p = rest.find(cut);
    if (p != std::string::npos) rest.erase(p);
  }
  a.details = trim(rest);
  if (!a.details.empty() && a.details.back() == '.') a.details.pop_back();
  return a;
}

// LibTorch's CPU allocator: 1.13 "DefaultCPUAllocator: can't allocate memory: you tried to allocate
// N bytes. Error code 12 (Cannot allocate memory)"; 2.x "DefaultCPUAllocator: not enough memory: you
// tried to allocate N bytes."
bool is_cpu_allocator_failure(const std::string& msg) {
  return msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos ||
         msg.find("DefaultCPUAllocator: not enough memory") != std::string::npos;
}

Allocation parse_cpu(const std::string& msg) {
  Allocation a;
  std::smatch m;
  if (std::regex_search(msg, m, std::regex(R"(tried to allocate ([0-9]+) bytes)"))) a.amount = format_bytes(std::stod(m[1]));
  std::string why = "the CPU allocator";
  if (std::regex_search(msg, m, std::regex(R"(Error code [0-9]+ \(([^)]*)\))"))) why += ": " + m[1].str();
  char peak[64];
  std::snprintf(peak, sizeof peak, "%.2f GiB", peak_memory_gb(-1));
  a.details = why + "; peak resident memory of this process " + peak;
  return a;
}

std::string where(Phase phase, int64_t step, const Config& cfg) {
  const std::string mb = cat(" (micro-batch ", cfg.train.micro_batch, " x ", cfg.data.seq_len, " tokens)");
  const std::string of_step = step > 0 ? cat(" of step ", step) : "";
  switch (phase) {
    case Phase::Build: return "while building the model and optimizer state";
    case Phase::Forward:
    case Phase::Backward: return cat("in ", phase_description(phase), of_step, mb);
    case Phase::GradSync:
    case Phase::Optimizer: return cat("in ", phase_description(phase), of_step);
    case Phase::Evaluation: return cat("in ", phase_description(phase), step > 0 ? cat(" after step ", step) : "", mb);
    case Phase::Checkpoint: return cat("while writing the checkpoint", step > 0 ? cat(" of step ", step) : "");
    case Phase::Idle: break;
  }
  return "";
}

std::string suggestions(Phase phase, const Config& cfg, const OomContext& ctx) {
  std::vector<std::string> s;
  const std::string tp = cat("parallel.tp=", cfg.parallel.tp * 2);
  const bool bf16 = cfg.train.precision == "bf16";
  switch (phase) {
    case Phase::Forward:
    case Phase::Backward:
    case Phase::Evaluation:
    case Phase::Idle:
      if (cfg.train.micro_batch > 1)
        s.push_back("a smaller train.micro_batch (train.global_batch stays; more accumulation steps)");
      else
        s.push_back(cat("a shorter data.seq_len (now ", cfg.data.seq_len, ")"));
      if (cfg.train.recompute == "none") s.push_back("train.recompute=selective or full");
      else if (cfg.train.recompute == "selective") s.push_back("train.recompute=full");
      s.push_back(tp);
      break;
    case Phase::Build:
    case Phase::GradSync:
    case Phase::Optimizer:
      if (!cfg.parallel.zero1) s.push_back(ctx.dp > 1 ? "parallel.zero1=true" : "parallel.zero1=true with several data-parallel processes");
      if (bf16 && cfg.train.grad_accum_dtype == "fp32") s.push_back("train.grad_accum_dtype=bf16");
      s.push_back(tp);
      break;
    case Phase::Checkpoint:
      s.push_back("more free host memory (a checkpoint gathers fp32 weights and Adam moments on the host)");
      s.push_back(tp);
      break;
  }
  return "try " + join_or(s);
}

}  // namespace

std::string error_text(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return trim(c->what_without_backtrace());
  return e.what();
}

int without_backtraces(const std::function<int()>& body) {
  try {
    return body();
  } catch (const c10::Error& e) {
    throw std::runtime_error(error_text(e));
  }
}

bool is_out_of_memory(const std::exception& e) {
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) || dynamic_cast<const std::bad_alloc*>(&e) ||
         (dynamic_cast<const c10::Error*>(&e) && is_cpu_allocator_failure(error_text(e)));
}

std::string out_of_memory_message(const std::exception& e, const Config& cfg, const OomContext& ctx) {
  Allocation a;
  if (dynamic_cast<const c10::OutOfMemoryError*>(&e)) {
    a = parse_cuda(error_text(e));
  } else if (dynamic_cast<const c10::Error*>(&e) && is_cpu_allocator_failure(error_text(e))) {
    a = parse_cpu(error_text(e));
  } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
    a.details = "std::bad_alloc: host memory";
  } else {
    return "";
  }
  const Phase phase = current_phase();
  std::string line = cat("out of memory on ", ctx.device);
  std::string w = where(phase, phase_step(), cfg);
  if (!w.empty()) line += " " + w;
  line += ": ";
  line += a.amount.empty() ? "an allocation failed" : "tried to allocate " + a.amount;
  if (!a.details.empty()) line += " (" + a.details + ")";
  return line + "; " + (ctx.advice.empty() ? suggestions(phase, cfg, ctx) : ctx.advice);
}

int with_out_of_memory_message(const Config& cfg, const std::function<OomContext()>& ctx,
                               const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::string msg = out_of_memory_message(e, cfg, ctx());
    if (msg.empty()) throw;
    throw std::runtime_error(msg);
  }
}

}  // namespace yt
