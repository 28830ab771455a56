// Which compute device this process uses, and what it has used, without exposing torch here.
#pragma once
#include <cstdint>
#include <string>

namespace yt {

bool torch_has_cuda();   // LibTorch was built with CUDA
int cuda_device_count();  // 0 when no GPU is visible or LibTorch is CPU-only
// The GPU this process uses for a device setting `want` (cpu|cuda|auto, read from `key`): -1 for the
// CPU, else the local rank's GPU. "cpu" never touches CUDA (a CPU run under `ulimit -v` must not
// initialise it, nor print LibTorch's warning when that fails). Throws when cuda is asked for and
// the local rank has no GPU.
int choose_cuda_device(const std::string& want, const std::string& key, int local_rank);
// Peak memory since the last reset: GPU memory allocated by torch on `cuda_device` (>= 0), or the
// process's peak resident set size on the CPU (cuda_device < 0). In GiB.
double peak_memory_gb(int cuda_device);
void reset_peak_memory(int cuda_device);
void synchronize(int cuda_device);  // waits for the GPU; no-op for the CPU
const char* device_name(int cuda_device);  // "NVIDIA H100 80GB HBM3", or "cpu"
void set_current_cuda_device(int cuda_device);  // the device this process's streams and kernels use
// Bytes free on a GPU (cudaMemGetInfo, plus what LibTorch's caching allocator holds unused); -1 for
// the CPU (cuda_device < 0), in a build without CUDA, or when the driver does not say.
int64_t cuda_free_bytes(int cuda_device);

}  // namespace yt
