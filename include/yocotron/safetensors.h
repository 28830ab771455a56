// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then raw
// little-endian tensor bytes. Written here without a library; every malformed file is an error
// naming the file and what is wrong.
#pragma once
#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "yocotron/fileio.h"

namespace yt {

using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;

// Tensors are written in the given order (any device; copied to CPU). Atomic: the file appears whole or not at all.
// Returns the file's size and CRC-32C, computed while writing. `before_each` runs before each
// tensor's bytes are written; what it throws abandons the file (export-hf stops there on a signal).
FileDigest save_safetensors(const std::string& path, const NamedTensors& tensors,
                            const std::map<std::string, std::string>& metadata = {},
                            const std::function<void()>& before_each = {});

struct SafetensorsFile {
  std::map<std::string, at::Tensor> tensors;  // CPU tensors
  std::map<std::string, std::string> metadata;
};
// `only`: when set, just the tensors whose names it accepts are read (a few small tensors of a large file).
SafetensorsFile load_safetensors(const std::string& path, const std::function<bool(const std::string&)>& only = {});

}  // namespace yt
