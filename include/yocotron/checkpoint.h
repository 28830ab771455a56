// Checkpoints: one directory per step, RUN/checkpoints/step_<8 digits>/, holding
//   model-tpRR-of-TT.safetensors      fp32 master weights of tensor-parallel rank RR (its shards)
//   optimizer-tpRR-of-TT.safetensors  its Adam moments (exp_avg/<name>, exp_avg_sq/<name>), RNG states
//   state.json                        step, tokens, consumed samples, skipped steps, Adam steps,
//                                     whether the step's evaluation is still to run
//   config.yaml                       the resolved recipe of the run that wrote it
//   manifest.json                     every file with its size and CRC-32C (checked on load), and
//                                     every tensor's global shape and split dimension
// Data-parallel replicas write nothing (ZeRO-1 slices are gathered first), so a checkpoint does not
// depend on the DP size, and its tensors are re-sliced for any TP size on load.
// A checkpoint is written into .tmp-step_...-<pid> beside its final name, each file fsync'ed, then
// renamed into place; RUN/checkpoints/latest (a one-line file naming it) is replaced atomically;
// older checkpoints beyond keep_last are removed only after that. A crash at any point leaves the
// previous checkpoint untouched.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "yocotron/decoder.h"

namespace yt {

struct Mesh;

struct CheckpointState {
  int64_t step = 0;               // optimizer steps completed
  int64_t tokens = 0;             // training tokens consumed
  uint64_t consumed_samples = 0;  // global samples consumed (the data position)
  int64_t skipped_total = 0;      // steps skipped for non-finite loss or gradients
  double adam_steps = 0;          // Adam's bias-correction step count
  bool eval_pending = false;      // a stop signal cut short this step's evaluation: the resumed run runs it first
  std::string config_yaml;        // the resolved recipe
};

struct CheckpointTensors {
  std::map<std::string, at::Tensor> model;       // fp32 master weights
  std::map<std::string, at::Tensor> exp_avg;
  std::map<std::string, at::Tensor> exp_avg_sq;
  std::map<std::string, at::Tensor> rng;         // generator states (uint8)
};

std::string checkpoint_name(int64_t step);  // step_00000100

// Who writes what: this rank's TP coordinates, whether it writes (one DP replica per TP rank), and the
// model's shard specs (global shapes, split dimensions).
struct CheckpointLayout {
  int tp_rank = 0, tp = 1;
  bool writer = true;
  std::map<std::string, ShardSpec> specs;
};

// Writes RUN/checkpoints/step_<step>/ and returns its path; then updates `latest` and prunes. Every
// rank of `mesh` (null: a single process) calls it; `tensors` are this rank's shards.
std::string write_checkpoint(const std::string& root, const CheckpointState& state, const CheckpointTensors& tensors,
                             int64_t keep_last, const CheckpointLayout& layout = {}, const Mesh* mesh = nullptr);

// Throws std::runtime_error naming the checkpoint and the file when anything is missing or corrupt.
void verify_checkpoint(const std::string& dir);

// step_* directories under `root`, newest first.
std::vector<std::string> list_checkpoints(const std::string& root);

// The newest checkpoint under `root` that verifies; each one that does not is reported through
// `skipped` ("<dir>: <why>"). nullopt when there is none at all.
std::optional<std::string> newest_valid_checkpoint(const std::string& root, std::vector<std::string>* skipped);

struct LoadedCheckpoint {
  std::string dir;
  CheckpointState state;
  CheckpointTensors tensors;  // global (unsharded, unpadded) tensors
  int tp = 1;                 // the TP size that wrote it
};
// Reads every TP shard file and reassembles global tensors. `verify` checks sizes and checksums first.
// `only_model`: when set, just the model tensors it accepts are read and the optimizer files are
// skipped (a few small tensors of a large checkpoint, without reading its gigabytes).
LoadedCheckpoint load_checkpoint(const std::string& dir, bool verify = true,
                                 const std::function<bool(const std::string&)>& only_model = {});

}  // namespace yt
