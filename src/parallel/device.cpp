#include "yocotron/device.h"

#include <torch/cuda.h>

namespace yt {

bool torch_has_cuda() {
#ifdef YOCOTRON_WITH_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() { return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0; }

}  // namespace yt
