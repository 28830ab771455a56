#include "yocotron/device.h"

#include <sys/resource.h>
#include <torch/cuda.h>

#include <stdexcept>

#include "yocotron/str.h"

#ifdef YOCOTRON_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace yt {

bool torch_has_cuda() {
#ifdef YOCOTRON_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

int choose_cuda_device(const std::string& want, const std::string& key, int local_rank) {
  if (want == "cpu") return -1;
  const int gpus = cuda_device_count();
  if (want == "cuda" && gpus == 0) throw std::runtime_error(key + "=cuda but no GPU is visible (or LibTorch has no CUDA)");
  if (gpus == 0) return -1;  // auto
  if (local_rank >= gpus)
    throw std::runtime_error(cat("local rank ", local_rank, " has no GPU: this node shows ", gpus, " (run one process per GPU)"));
  return local_rank;
}

double peak_memory_gb(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) {
    auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(cuda_device));
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0 * 1024.0);
  }
#endif
  struct rusage u {};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / (1024.0 * 1024.0);  // ru_maxrss is in KiB on Linux
}

void reset_peak_memory(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(cuda_device));
#endif
  (void)cuda_device;
}

void synchronize(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) c10::cuda::device_synchronize();
#endif
  (void)cuda_device;
}

void set_current_cuda_device(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) c10::cuda::set_device(static_cast<c10::DeviceIndex>(cuda_device));
#endif
  (void)cuda_device;
}

int64_t cuda_free_bytes(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) {
    const auto index = static_cast<c10::DeviceIndex>(cuda_device);
    c10::cuda::CUDAGuard guard(index);
    size_t free = 0, total = 0;
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
    // Blocks the caching allocator holds but does not use are free to this process too. Before the
    // first CUDA allocation the allocator has no state for the device (and says so by throwing).
    int64_t cached = 0;
    try {
      auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(index);
      cached = stats.reserved_bytes[0].current - stats.allocated_bytes[0].current;
    } catch (const c10::Error&) {
    }
    return static_cast<int64_t>(free) + (cached > 0 ? cached : 0);
  }
#endif
  (void)cuda_device;
  return -1;
}

const char* device_name(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  static thread_local cudaDeviceProp prop;
  if (cuda_device >= 0 && cudaGetDeviceProperties(&prop, cuda_device) == cudaSuccess) return prop.name;
#endif
  (void)cuda_device;
  return "cpu";
}

}  // namespace yt
