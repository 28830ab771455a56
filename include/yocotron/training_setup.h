// What every command that trains builds the same way from a recipe, so that `train`, `bench` and any
// later command accept and refuse the same recipes with the same messages: the device, the compute
// precision and the mesh, with the checks a recipe must pass on this machine; then the model, its
// optimizer and the step.
#pragma once
#include <ATen/ATen.h>

#include <memory>

#include "yocotron/config.h"
#include "yocotron/decoder.h"
#include "yocotron/mesh.h"
#include "yocotron/optimizer.h"
#include "yocotron/train_step.h"

namespace yt {

class TrainingSetup {
 public:
  // This process's device (train.device, its local rank's GPU), the precision and the mesh; then the
  // checks: bf16 or a GPU-only attention kernel on the CPU, a global batch the mesh cannot split, and
  // weights + optimizer + activations beyond the device's memory. Starts the collective watchdog
  // under mpirun. Throws ConfigError for a recipe this machine cannot run.
  explicit TrainingSetup(const Config& cfg);

  // The model (weights from model.init_from unless `ignore_init_from`: a resume brings its own),
  // on the device, with its optimizer and the step that trains it.
  void build(const Config& cfg, bool ignore_init_from = false);

  bool gpu() const { return cuda_index >= 0; }
  bool bf16() const { return compute == at::kBFloat16; }
  // Micro-batches per optimizer step on each data-parallel rank.
  int64_t accum_steps(const Config& cfg) const { return cfg.train.global_batch / (cfg.train.micro_batch * mesh->size(MeshDim::dp)); }

  int cuda_index = -1;  // -1: the CPU
  at::Device device{at::kCPU};
  at::ScalarType compute = at::kFloat;
  std::unique_ptr<Mesh> mesh;
  Decoder model{nullptr};
  std::unique_ptr<FlatAdamW> optimizer;
  std::unique_ptr<TrainStep> step;
};

}  // namespace yt
