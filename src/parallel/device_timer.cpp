#include "yocotron/device_timer.h"

#ifdef YOCOTRON_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace yt {

struct DeviceTimer::Events {
#ifdef YOCOTRON_WITH_CUDA
  at::cuda::CUDAEvent begin{cudaEventDefault}, end{cudaEventDefault};
#endif
};

DeviceTimer::DeviceTimer(int cuda_device) : cuda_(cuda_device), events_(std::make_unique<Events>()) {}
DeviceTimer::~DeviceTimer() = default;

void DeviceTimer::start() {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_ >= 0) {
    events_->begin.record(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(cuda_)));
    return;
  }
#endif
  t0_ = std::chrono::steady_clock::now();
}

double DeviceTimer::stop_ms() {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_ >= 0) {
    events_->end.record(c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(cuda_)));
    events_->end.synchronize();
    return events_->begin.elapsed_time(events_->end);
  }
#endif
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
}

void release_cached_memory(int cuda_device) {
#ifdef YOCOTRON_WITH_CUDA
  if (cuda_device >= 0) c10::cuda::CUDACachingAllocator::emptyCache();
#endif
  (void)cuda_device;
}

}  // namespace yt
