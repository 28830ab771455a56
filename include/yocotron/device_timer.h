// Timing GPU work as the GPU sees it: CUDA events on the current stream for a CUDA device (no host
// sync until the result is read), the host clock for the CPU. And handing cached GPU memory back,
// so that a benchmark's next configuration starts from an empty allocator.
#pragma once
#include <chrono>
#include <memory>

namespace yt {

class DeviceTimer {
 public:
  explicit DeviceTimer(int cuda_device);  // < 0: the CPU
  ~DeviceTimer();
  void start();
  double stop_ms();  // waits for the device; milliseconds since start()

 private:
  struct Events;
  int cuda_;
  std::unique_ptr<Events> events_;
  std::chrono::steady_clock::time_point t0_;
};

// Frees the caching allocator's unused blocks on `cuda_device` (no-op for the CPU).
void release_cached_memory(int cuda_device);

}  // namespace yt
