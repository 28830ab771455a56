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
#include "yocotron/mesh.h"
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

namespace {

std::string shard_file(const char* kind, int tp_rank, int tp) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%s-tp%02d-of-%02d.safetensors", kind, tp_rank, tp);
  return buf;
}

}  // namespace

std::string write_checkpoint(const std::string& root, const CheckpointState& st, const CheckpointTensors& t,
                             int64_t keep_last, const CheckpointLayout& layout, const Mesh* mesh) {
  const bool rank0 = !mesh || mesh->world_rank == 0;
  const std::string name = checkpoint_name(st.step);
  const fs::path final_dir = fs::path(root) / name;
  // Rank 0 picks the temporary directory (its pid names it) and everyone writes into it.
  std::string tmp_name = ".tmp-" + name + "-" + std::to_string(::getpid());
  if (mesh) tmp_name = mesh->broadcast_string(tmp_name);
  const fs::path tmp = fs::path(root) / tmp_name;
  if (rank0) {
    fs::create_directories(root);
    remove_tree(tmp.string());
    fs::create_directories(tmp);
  }
  if (mesh) mesh->barrier();

  json files = json::object();
  if (layout.writer) {
    std::string model_file = shard_file("model", layout.tp_rank, layout.tp);
    std::string opt_file = shard_file("optimizer", layout.tp_rank, layout.tp);
    auto d1 = save_safetensors((tmp / model_file).string(), prefixed(t.model, ""), {{"format", "pt"}});
    NamedTensors opt = prefixed(t.exp_avg, "exp_avg/");
    for (auto& x : prefixed(t.exp_avg_sq, "exp_avg_sq/")) opt.push_back(x);
    for (auto& x : prefixed(t.rng, "rng/")) opt.push_back(x);
    auto d2 = save_safetensors((tmp / opt_file).string(), opt);
    files[model_file] = {{"bytes", d1.bytes}, {"crc32c", d1.crc32c}};
    files[opt_file] = {{"bytes", d2.bytes}, {"crc32c", d2.crc32c}};
  }
  std::vector<std::string> all = mesh ? mesh->gather_strings(files.dump()) : std::vector<std::string>{files.dump()};
  if (rank0) {
    for (const auto& part : all) {
      json j = json::parse(part);
      for (auto it = j.begin(); it != j.end(); ++it) files[it.key()] = it.value();
    }
    json state = {{"step", st.step},
                  {"tokens", st.tokens},
                  {"consumed_samples", st.consumed_samples},
                  {"skipped_total", st.skipped_total},
                  {"adam_steps", st.adam_steps},
                  {"eval_pending", st.eval_pending}};
    auto record = [&](const std::string& file, const FileDigest& d) { files[file] = {{"bytes", d.bytes}, {"crc32c", d.crc32c}}; };
    record("state.json", write_text_file_atomic((tmp / "state.json").string(), state.dump(2) + "\n"));
    record("config.yaml", write_text_file_atomic((tmp / "config.yaml").string(), st.config_yaml));
    json tensors = json::object();
    for (const auto& [n, spec] : layout.specs)
      tensors[n] = {{"global_shape", spec.global_shape}, {"split_dim", spec.split_dim}};
    write_text_file_atomic((tmp / "manifest.json").string(),
                           json({{"format", "yocotron-checkpoint"}, {"version", 2}, {"step", st.step}, {"tp", layout.tp},
                                 {"files", files}, {"tensors", tensors}})
                                   .dump(2) + "\n");
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
    auto existing = list_checkpoints(root);
    for (size_t i = static_cast<size_t>(std::max<int64_t>(keep_last, 1)); i < existing.size(); ++i) remove_tree(existing[i]);
    for (const auto& e : fs::directory_iterator(root)) {
      std::string n = e.path().filename().string();
      if ((starts_with(n, ".tmp-") || starts_with(n, ".old-")) && e.path() != tmp) remove_tree(e.path().string());
    }
  }
  if (mesh) mesh->barrier();
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
    const int tp = m.value("tp", 1);
    std::vector<std::string> required = {"state.json", "config.yaml"};
    for (int r = 0; r < tp; ++r) required.push_back(shard_file("model", r, tp)), required.push_back(shard_file("optimizer", r, tp));
    for (const auto& f : required)
      if (!m.at("files").contains(f)) throw std::runtime_error(cat(dir, ": manifest lacks ", f));
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

LoadedCheckpoint load_checkpoint(const std::string& dir, bool verify) {
  if (verify) verify_checkpoint(dir);
  LoadedCheckpoint out;
  out.dir = dir;
  json st = json::parse(read_text_file((fs::path(dir) / "state.json").string()));
  out.state.step = st.at("step").get<int64_t>();
  out.state.tokens = st.at("tokens").get<int64_t>();
  out.state.consumed_samples = st.at("consumed_samples").get<uint64_t>();
  out.state.skipped_total = st.at("skipped_total").get<int64_t>();
  out.state.adam_steps = st.at("adam_steps").get<double>();
  out.state.eval_pending = st.value("eval_pending", false);  // absent from checkpoints written before it existed
  out.state.config_yaml = read_text_file((fs::path(dir) / "config.yaml").string());
  json manifest = json::parse(read_text_file((fs::path(dir) / "manifest.json").string()));
  out.tp = manifest.value("tp", 1);
  std::vector<std::map<std::string, at::Tensor>> model(out.tp), opt(out.tp);
  for (int r = 0; r < out.tp; ++r) {
    model[r] = load_safetensors((fs::path(dir) / shard_file("model", r, out.tp)).string()).tensors;
    opt[r] = load_safetensors((fs::path(dir) / shard_file("optimizer", r, out.tp)).string()).tensors;
  }
  // Reassemble each tensor from its TP shards: concatenate along the split dimension, drop padding.
  const json tensors = manifest.value("tensors", json::object());
  auto global = [&](const std::vector<std::map<std::string, at::Tensor>>& parts, const std::string& key,
                    const std::string& name) {
    int split = tensors.contains(name) ? tensors[name]["split_dim"].get<int>() : -1;
    if (split < 0 || out.tp == 1) {
      at::Tensor t = parts[0].at(key);
      if (split >= 0) t = t.narrow(split, 0, tensors[name]["global_shape"][split].get<int64_t>());
      return t;
    }
    std::vector<at::Tensor> shards;
    for (int r = 0; r < out.tp; ++r) shards.push_back(parts[r].at(key));
    return at::cat(shards, split).narrow(split, 0, tensors[name]["global_shape"][split].get<int64_t>());
  };
  for (const auto& [key, t] : model[0]) out.tensors.model[key] = global(model, key, key);
  for (const auto& [key, t] : opt[0]) {
    if (starts_with(key, "exp_avg_sq/")) out.tensors.exp_avg_sq[key.substr(11)] = global(opt, key, key.substr(11));
    else if (starts_with(key, "exp_avg/")) out.tensors.exp_avg[key.substr(8)] = global(opt, key, key.substr(8));
    else if (starts_with(key, "rng/")) out.tensors.rng[key.substr(4)] = t;
  }
  return out;
}

}  // namespace yt
