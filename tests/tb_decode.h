// TensorBoard event files read back independently of the writer: a protobuf field reader of its own,
// and the scalars of a run's RUN/tb/ files by tag and step.
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace yt::test {

struct PbField {
  int number, wire;
  uint64_t varint = 0;
  std::string bytes;
};
std::vector<PbField> decode_protobuf(const std::string& bytes);

// tag -> step -> value, over every events file under `tb_dir`; `repeats` counts (tag, step) pairs seen twice.
std::map<std::string, std::map<int64_t, float>> tb_scalars(const std::filesystem::path& tb_dir, int* repeats = nullptr);

}  // namespace yt::test
