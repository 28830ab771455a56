#include "yocotron/training_setup.h"

#include <torch/version.h>

#include "yocotron/device.h"
#include "yocotron/memory_plan.h"
#include "yocotron/model_factory.h"
#include "yocotron/mpi_env.h"
#include "yocotron/ops.h"
#include "yocotron/phase.h"
#include "yocotron/str.h"
#include "yocotron/watchdog.h"

namespace yt {

TrainingSetup::TrainingSetup(const Config& cfg) {
  cuda_index = choose_cuda_device(cfg.train.device, "train.device", MpiEnv::get().local_rank());
  if (gpu()) {
    device = at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(cuda_index));
    set_current_cuda_device(cuda_index);
  }
  if (cfg.train.precision == "bf16") {
    if (!gpu()) throw ConfigError({"train.precision=bf16 needs a GPU: CPU runs train in fp32 (set train.precision=fp32)"});
    compute = at::kBFloat16;
  }
  // Found here, not at the first forward pass after the model was built and the run directory written.
  const std::string& attention = cfg.model.attention;
  if (attention == "flash" || attention == "cudnn") {
    if (!gpu())
      throw ConfigError({cat("model.attention=", attention, " needs a GPU (this run is on the CPU); use model.attention=auto or sdpa")});
    if (!sdpa_available())
      throw ConfigError({cat("model.attention=", attention, " needs LibTorch >= 2 (this build has ", TORCH_VERSION,
                             "); use model.attention=auto")});
  }
  mesh = make_mesh(cfg.parallel.tp, gpu(), cuda_index);
  if (mesh->world_size > 1) Watchdog::get().start(cfg.parallel.timeout_s, mesh->world_rank);
  const int64_t per_step = cfg.train.micro_batch * mesh->size(MeshDim::dp);
  if (cfg.train.global_batch % per_step != 0)
    throw ConfigError({cat("train.global_batch=", cfg.train.global_batch, " is not a multiple of train.micro_batch x ",
                           "data-parallel size = ", cfg.train.micro_batch, " x ", mesh->size(MeshDim::dp), " (", mesh->world_size,
                           " processes / parallel.tp=", mesh->size(MeshDim::tp), ")")});
  check_memory_fits(cfg, *mesh, bf16(), cuda_index);  // before anything is built or written
}

void TrainingSetup::build(const Config& cfg, bool ignore_init_from) {
  set_phase(Phase::Build);
  Config build_cfg = cfg;
  if (ignore_init_from) build_cfg.model.init_from.clear();
  model = build_decoder(build_cfg, mesh->tp_context(build_cfg.parallel.sequence_parallel));
  model->to(device);
  optimizer = std::make_unique<FlatAdamW>(model, cfg.train, compute, optimizer_layout(cfg, *mesh));
  step = std::make_unique<TrainStep>(model, *optimizer, cfg.train, device, mesh.get(), cfg.parallel.overlap);
}

}  // namespace yt
