// What the process is doing right now, for two readers: LibTorch's profiler (each phase of a training
// step is a named range in the trace: yocotron::forward, yocotron::backward, ...) and the
// out-of-memory message (errors.h), which names the phase and step an allocation failed in.
// Setting a phase is a store of an enum; a range costs nothing while no profiler is recording.
#pragma once
#include <ATen/record_function.h>

#include <cstdint>

namespace yt {

enum class Phase : int { Idle, Build, Forward, Backward, GradSync, Optimizer, Evaluation, Checkpoint };

void set_phase(Phase phase);
Phase current_phase();
// The optimizer step being run (1-based, as logged), or 0 when none.
void set_phase_step(int64_t step);
int64_t phase_step();
// "the forward pass", "the optimizer update", ...
const char* phase_description(Phase phase);

// A named range in the profiler's trace for the lifetime of the scope. The phase stays set when the
// scope ends (an exception leaving it must still be attributed to it).
class PhaseScope {
 public:
  PhaseScope(Phase phase, const char* range) : PhaseScope(range) { set_phase(phase); }
  explicit PhaseScope(const char* range) : rf_(at::RecordScope::USER_SCOPE) {
    if (rf_.isActive()) rf_.before(range, c10::ArrayRef<const c10::IValue>{});
  }
  PhaseScope(const PhaseScope&) = delete;
  PhaseScope& operator=(const PhaseScope&) = delete;

 private:
  at::RecordFunction rf_;
};

}  // namespace yt
