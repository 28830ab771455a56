#include "yocotron/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "yocotron/fileio.h"
#include "yocotron/safetensors.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

NamedTensors prefixed(const std::map<std::string, at::Tensor>& m, const std::string& prefix) {
  NamedTensors out;
  for (const auto& [k, v] : m) out.emplace_back(prefix + k, v);
  return out;
}

std::map<std::string, at::Tensor> strip(const std::map<std::string, at::Tensor>& all, const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, v] : all)
    if (starts_with(k, prefix)) out[k.substr(prefix.size())] = v;
  return out;
}

// A test hook, YOCOTRON_TEST_CHECKPOINT_PAUSE=STEP:SECONDS: pause inside the write of that step's
// checkpoint (all files written, before the rename) so a test can kill the process there and check
// that the previous checkpoint survives.
void test_pause(int64_t step) {
  const char* s = std::getenv("YOCOTRON_TEST_CHECKPOINT_PAUSE");
  if (!s) return;
  auto parts = split(s, ':');
  if (parts.size() == 2 && std::stoll(parts[0]) == step)
    std::this_thread::sleep_for(std::chrono::duration<double>(std::stod(parts[1])));
}

}  // namespace

std::string checkpoint_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "step_%08lld", static_cast<long long>(step));
  return buf;
}

std::string write_checkpoint(const std::string& root, const CheckpointState& st, const CheckpointTensors& t,
                             int64_t keep_last) {
  fs::create_directories(root);
  const std::string name = checkpoint_name(st.step);
  const fs::path final_dir = fs::path(root) / name;
  const fs::path tmp = fs::path(root) / (".tmp-" + name + "-" + std::to_string(::getpid()));
  remove_tree(tmp.string());
  fs::create_directories(tmp);

  json files = json::object();
  auto record = [&](const std::string& file, const FileDigest& d) { files[file] = {{"bytes", d.bytes}, {"crc32c", d.crc32c}}; };
  record("model.safetensors", save_safetensors((tmp / "model.safetensors").string(), prefixed(t.model, ""), {{"format", "pt"}}));
  NamedTensors opt = prefixed(t.exp_avg, "exp_avg/");
  for (auto& x : prefixed(t.exp_avg_sq, "exp_avg_sq/")) opt.push_back(x);
  for (auto& x : prefixed(t.rng, "rng/")) opt.push_back(x);
  record("optimizer.safetensors", save_safetensors((tmp / "optimizer.safetensors").string(), opt));
  json state = {{"step", st.step},
                {"tokens", st.tokens},
                {"consumed_samples", st.consumed_samples},
                {"skipped_total", st.skipped_total},
                {"adam_steps", st.adam_steps}};
  record("state.json", write_text_file_atomic((tmp / "state.json").string(), state.dump(2) + "\n"));
  record("config.yaml", write_text_file_atomic((tmp / "config.yaml").string(), st.config_yaml));
  write_text_file_atomic((tmp / "manifest.json").string(),
                         json({{"format", "yocotron-checkpoint"}, {"version", 1}, {"step", st.step}, {"files", files}}).dump(2) + "\n");
  fsync_directory(tmp.string());
  test_pause(st.step);

  // A checkpoint of the same step may exist (a resumed run stopping where it started): move it
  // aside, put the new one in place, then drop the old one.
  fs::path aside;
  if (fs::exists(final_dir)) {
    aside = fs::path(root) / (".old-" + name + "-" + std::to_string(::getpid()));
    remove_tree(aside.string());
    if (::rename(final_dir.c_str(), aside.c_str()) != 0)
      throw std::runtime_error(cat(final_dir.string(), ": cannot move aside: ", std::strerror(errno)));
  }
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0)
    throw std::runtime_error(cat(final_dir.string(), ": cannot rename the new checkpoint into place: ", std::strerror(errno)));
  fsync_directory(root);
  write_text_file_atomic((fs::path(root) / "latest").string(), name + "\n");
  if (!aside.empty()) remove_tree(aside.string());

  // Prune: only now that the new checkpoint is complete. Also clear temporaries of dead writers.
  auto all = list_checkpoints(root);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep_last, 1)); i < all.size(); ++i) remove_tree(all[i]);
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if ((starts_with(n, ".tmp-") || starts_with(n, ".old-")) && e.path() != tmp) remove_tree(e.path().string());
  }
  return final_dir.string();
}

std::vector<std::string> list_checkpoints(const std::string& root) {
  std::vector<std::string> out;
  if (!fs::is_directory(root)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    std::string n = e.path().filename().string();
    if (e.is_directory() && starts_with(n, "step_") && n.size() == 13) out.push_back(e.path().string());
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

void verify_checkpoint(const std::string& dir) {
  fs::path manifest = fs::path(dir) / "manifest.json";
  if (!fs::exists(manifest)) throw std::runtime_error(cat(dir, ": incomplete checkpoint (no manifest.json)"));
  json m;
  try {
    m = json::parse(read_text_file(manifest.string()));
    for (auto it = m.at("files").begin(); it != m.at("files").end(); ++it) {
      fs::path f = fs::path(dir) / it.key();
      if (!fs::exists(f)) throw std::runtime_error(cat(f.string(), ": missing"));
      uint64_t size = 0;
      uint32_t crc = crc32c_file(f.string(), &size);
      if (size != it.value().at("bytes").get<uint64_t>())
        throw std::runtime_error(cat(f.string(), ": size ", size, " differs from the manifest's ", it.value().at("bytes")));
      if (crc != it.value().at("crc32c").get<uint32_t>())
        throw std::runtime_error(cat(f.string(), ": checksum mismatch (the file is corrupt)"));
    }
    for (const char* required : {"model.safetensors", "optimizer.safetensors", "state.json", "config.yaml"})
      if (!m.at("files").contains(required)) throw std::runtime_error(cat(dir, ": manifest lacks ", required));
  } catch (const json::exception& e) {
    throw std::runtime_error(cat(manifest.string(), ": malformed: ", e.what()));
  }
}

std::optional<std::string> newest_valid_checkpoint(const std::string& root, std::vector<std::string>* skipped) {
  for (const auto& dir : list_checkpoints(root)) {
    try {
      verify_checkpoint(dir);
      return dir;
    } catch (const std::exception& e) {
      if (skipped) skipped->push_back(e.what());
    }
  }
  return std::nullopt;
}

LoadedCheckpoint load_checkpoint(const std::string& dir) {
  verify_checkpoint(dir);
  LoadedCheckpoint out;
  out.dir = dir;
  json st = json::parse(read_text_file((fs::path(dir) / "state.json").string()));
  out.state.step = st.at("step").get<int64_t>();
  out.state.tokens = st.at("tokens").get<int64_t>();
  out.state.consumed_samples = st.at("consumed_samples").get<uint64_t>();
  out.state.skipped_total = st.at("skipped_total").get<int64_t>();
  out.state.adam_steps = st.at("adam_steps").get<double>();
  out.state.config_yaml = read_text_file((fs::path(dir) / "config.yaml").string());
  out.tensors.model = load_safetensors((fs::path(dir) / "model.safetensors").string()).tensors;
  auto opt = load_safetensors((fs::path(dir) / "optimizer.safetensors").string()).tensors;
  out.tensors.exp_avg = strip(opt, "exp_avg/");
  out.tensors.exp_avg_sq = strip(opt, "exp_avg_sq/");
  out.tensors.rng = strip(opt, "rng/");
  return out;
}

}  // namespace yt
