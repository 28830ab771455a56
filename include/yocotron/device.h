// Which compute device this process uses, without exposing torch in the header.
#pragma once

namespace yt {

bool torch_has_cuda();   // LibTorch was built with CUDA
int cuda_device_count();  // 0 when no GPU is visible or LibTorch is CPU-only

}  // namespace yt
