#include "yocotron/phase.h"

#include <atomic>

namespace yt {
namespace {

std::atomic<Phase> g_phase{Phase::Idle};
std::atomic<int64_t> g_step{0};

}  // namespace

void set_phase(Phase phase) { g_phase.store(phase, std::memory_order_relaxed); }
Phase current_phase() { return g_phase.load(std::memory_order_relaxed); }
void set_phase_step(int64_t step) { g_step.store(step, std::memory_order_relaxed); }
int64_t phase_step() { return g_step.load(std::memory_order_relaxed); }

const char* phase_description(Phase phase) {
  switch (phase) {
    case Phase::Idle: return "no training phase";
    case Phase::Build: return "building the model and optimizer state";
    case Phase::Forward: return "the forward pass";
    case Phase::Backward: return "the backward pass";
    case Phase::GradSync: return "the gradient reduction";
    case Phase::Optimizer: return "the optimizer update";
    case Phase::Evaluation: return "the evaluation";
    case Phase::Checkpoint: return "writing a checkpoint";
  }
  return "?";
}

}  // namespace yt
