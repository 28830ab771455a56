#include <torch/version.h>

#include <iostream>

#include "commands.h"
#include "yocotron/cli_args.h"
#include "yocotron/device.h"
#include "yocotron/mpi_env.h"
#include "yocotron/version.h"

#ifdef YOCOTRON_WITH_NCCL
#include <nccl.h>
#endif

namespace yt::cli {

int run_version(const Args& args) {
  ArgParser p("version", "Print the versions of yocotron and of the libraries it was built with.");
  if (!p.parse(args)) return 0;
  std::cout << "yocotron " << YOCOTRON_VERSION;
  if (std::string(YOCOTRON_GIT_REVISION).size()) std::cout << " (" << YOCOTRON_GIT_REVISION << ")";
  std::cout << "\nLibTorch " << TORCH_VERSION << "\n";
  int gpus = cuda_device_count();
  if (gpus > 0) {
    std::cout << "CUDA available: yes (" << gpus << " device" << (gpus == 1 ? "" : "s") << ")\n";
  } else {
    std::cout << "CUDA available: no" << (torch_has_cuda() ? " (built with CUDA, no device visible)" : " (CPU-only LibTorch)")
              << "\n";
  }
#ifdef YOCOTRON_WITH_NCCL
  int v = 0;
  ncclGetVersion(&v);
  std::cout << "NCCL " << v / 10000 << "." << (v % 10000) / 100 << "." << v % 100 << "\n";
#else
  std::cout << "NCCL: not built in (LibTorch without CUDA)\n";
#endif
  std::cout << "MPI " << MpiEnv::library_version() << "\n";
  return 0;
}

}  // namespace yt::cli
