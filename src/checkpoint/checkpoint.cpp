#include "yocotron/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "yocotron/reader_checks.h"
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
  // Rank 0 makes it and puts it in place; a write that fails (a full disk) takes it away again.
  StagedDirectory staged(final_dir.string(), tmp.string(), rank0);
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
    test_pause(st.step);

    // A checkpoint of the same step may exist (a resumed run stopping where it started): it is replaced.
    staged.commit();
    write_text_file_atomic((fs::path(root) / "latest").string(), name + "\n");

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

namespace {

// manifest.json, validated before anything it names is opened (docs/formats.md).
struct Manifest {
  struct FileEntry {
    uint64_t bytes = 0;
    uint32_t crc32c = 0;
  };
  struct TensorSpec {
    std::vector<int64_t> global_shape;
    int split_dim = -1;
  };
  std::string path;
  int tp = 1;
  std::optional<int64_t> step;
  std::map<std::string, FileEntry> files;
  std::map<std::string, TensorSpec> tensors;
  bool has_tensors = false;  // "tensors" present (version 2)
};


Manifest read_manifest(const std::string& dir) {
  Manifest out;
  fs::path manifest = fs::path(dir) / "manifest.json";
  out.path = manifest.string();
  if (!fs::exists(manifest)) throw std::runtime_error(cat(dir, ": incomplete checkpoint (no manifest.json)"));
  const json m = read_json_file(manifest.string());
  try {
    if (!m.is_object()) throw std::runtime_error("expected a JSON object");
    if (m.contains("format") && m["format"] != "yocotron-checkpoint")
      throw std::runtime_error(cat("format: expected \"yocotron-checkpoint\", found ", json_excerpt(m["format"])));
    if (m.contains("version") && m["version"] != 1 && m["version"] != 2)
      throw std::runtime_error(cat("version ", json_excerpt(m["version"]), " is not supported (this build reads versions 1 and 2)"));
    if (!m.contains("files") || !m["files"].is_object()) throw std::runtime_error("files: missing or not an object");
    for (auto it = m["files"].begin(); it != m["files"].end(); ++it) {
      const std::string name = printable(it.key());
      if (!is_plain_file_name(it.key()))
        throw std::runtime_error(cat("files: '", name, "' is not a plain file name inside the checkpoint directory"));
      const json& f = it.value();
      if (!f.is_object()) throw std::runtime_error(cat("files.", name, ": expected {bytes, crc32c}, found ", json_excerpt(f)));
      if (!f.contains("bytes") || !f["bytes"].is_number_unsigned())
        throw std::runtime_error(cat("files.", name, ".bytes: expected a non-negative integer, found ",
                                     f.contains("bytes") ? json_excerpt(f["bytes"]) : "nothing"));
      if (!f.contains("crc32c") || !f["crc32c"].is_number_unsigned() || f["crc32c"].get<uint64_t>() > 0xFFFFFFFFull)
        throw std::runtime_error(cat("files.", name, ".crc32c: expected a 32-bit unsigned integer, found ",
                                     f.contains("crc32c") ? json_excerpt(f["crc32c"]) : "nothing"));
      out.files[it.key()] = {f["bytes"].get<uint64_t>(), static_cast<uint32_t>(f["crc32c"].get<uint64_t>())};
    }
    if (m.contains("tp")) {
      // Every TP rank has a model and an optimizer file listed, which bounds tp by the manifest's size.
      if (!m["tp"].is_number_unsigned() || m["tp"].get<uint64_t>() < 1 || m["tp"].get<uint64_t>() > out.files.size() / 2 + 1)
        throw std::runtime_error(cat("tp: expected a positive integer up to the number of listed file pairs, found ", json_excerpt(m["tp"])));
      out.tp = static_cast<int>(m["tp"].get<uint64_t>());
    }
    if (m.contains("step")) {
      if (!m["step"].is_number_unsigned() || m["step"].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw std::runtime_error(cat("step: expected a non-negative integer, found ", json_excerpt(m["step"])));
      out.step = m["step"].get<int64_t>();
    }
    if (m.contains("tensors")) {
      if (!m["tensors"].is_object()) throw std::runtime_error("tensors: expected an object");
      out.has_tensors = true;
      for (auto it = m["tensors"].begin(); it != m["tensors"].end(); ++it) {
        const std::string where = cat("tensors.", printable(it.key()));
        const json& t = it.value();
        if (!t.is_object() || !t.contains("global_shape") || !t["global_shape"].is_array() || !t.contains("split_dim") ||
            !t["split_dim"].is_number_integer())
          throw std::runtime_error(cat(where, ": expected {global_shape: [...], split_dim: N}, found ", json_excerpt(t)));
        Manifest::TensorSpec spec;
        for (const auto& d : t["global_shape"]) {
          if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
            throw std::runtime_error(cat(where, ".global_shape: expected non-negative integers, found ", json_excerpt(t["global_shape"])));
          spec.global_shape.push_back(d.get<int64_t>());
        }
        int64_t split = t["split_dim"].get<int64_t>();
        if (split < -1 || split >= static_cast<int64_t>(spec.global_shape.size()))
          throw std::runtime_error(cat(where, ".split_dim: ", split, " is not -1 or a dimension of ", json_excerpt(t["global_shape"])));
        spec.split_dim = static_cast<int>(split);
        out.tensors[it.key()] = spec;
      }
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(cat(manifest.string(), ": malformed: ", e.what()));
  }
  std::vector<std::string> required = {"state.json", "config.yaml"};
  for (int r = 0; r < out.tp; ++r) required.push_back(shard_file("model", r, out.tp)), required.push_back(shard_file("optimizer", r, out.tp));
  for (const auto& f : required)
    if (!out.files.count(f)) throw std::runtime_error(cat(dir, ": manifest lacks ", f));
  return out;
}

}  // namespace

void verify_checkpoint(const std::string& dir) {
  Manifest m = read_manifest(dir);
  for (const auto& [name, want] : m.files) {
    fs::path f = fs::path(dir) / name;
    std::error_code ec;
    auto status = fs::status(f, ec);
    if (!fs::exists(status)) throw std::runtime_error(cat(f.string(), ": missing"));
    if (!fs::is_regular_file(status)) throw std::runtime_error(cat(f.string(), ": not a regular file"));
    uint64_t size = fs::file_size(f, ec);
    if (ec || size != want.bytes)
      throw std::runtime_error(cat(f.string(), ": size ", size, " differs from the manifest's ", want.bytes));
    uint32_t crc = crc32c_file(f.string(), &size);
    if (size != want.bytes)
      throw std::runtime_error(cat(f.string(), ": size ", size, " differs from the manifest's ", want.bytes));
    if (crc != want.crc32c) throw std::runtime_error(cat(f.string(), ": checksum mismatch (the file is corrupt)"));
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

namespace {

CheckpointState read_state(const std::string& path) {
  CheckpointState st;
  const json j = read_json_file(path);
  try {
    if (!j.is_object()) throw std::runtime_error("expected a JSON object");
    auto count = [&](const char* key) -> uint64_t {
      if (!j.contains(key) || !j[key].is_number_unsigned() || j[key].get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw std::runtime_error(cat(key, ": expected a non-negative integer, found ", j.contains(key) ? json_excerpt(j[key]) : "nothing"));
      return j[key].get<uint64_t>();
    };
    st.step = static_cast<int64_t>(count("step"));
    st.tokens = static_cast<int64_t>(count("tokens"));
    st.consumed_samples = count("consumed_samples");
    st.skipped_total = static_cast<int64_t>(count("skipped_total"));
    if (!j.contains("adam_steps") || !j["adam_steps"].is_number() || !std::isfinite(j["adam_steps"].get<double>()) ||
        j["adam_steps"].get<double>() < 0)
      throw std::runtime_error(cat("adam_steps: expected a non-negative number, found ",
                                   j.contains("adam_steps") ? json_excerpt(j["adam_steps"]) : "nothing"));
    st.adam_steps = j["adam_steps"].get<double>();
    // What every step keeps true (a crafted file with a valid checksum must not slip through): a step
    // either takes one AdamW step or is skipped, and consumes at least one sample of at least one token.
    if (st.skipped_total > st.step)
      throw std::runtime_error(cat("skipped_total: ", st.skipped_total, " steps skipped of ", st.step));
    if (st.adam_steps != static_cast<double>(st.step - st.skipped_total))
      throw std::runtime_error(cat("adam_steps: ", json_excerpt(j["adam_steps"]), ", but step ", st.step, " minus skipped_total ",
                                   st.skipped_total, " is ", st.step - st.skipped_total));
    if (st.consumed_samples < static_cast<uint64_t>(st.step) || st.consumed_samples > static_cast<uint64_t>(st.tokens))
      throw std::runtime_error(cat("consumed_samples: ", st.consumed_samples, " is not between step (", st.step,
                                   ", one sample or more per step) and tokens (", st.tokens, ", one token or more per sample)"));
    if (j.contains("eval_pending")) {  // absent from checkpoints written before it existed
      if (!j["eval_pending"].is_boolean())
        throw std::runtime_error(cat("eval_pending: expected true or false, found ", json_excerpt(j["eval_pending"])));
      st.eval_pending = j["eval_pending"].get<bool>();
    }
  } catch (const std::exception& e) {
    throw std::runtime_error(cat(path, ": malformed: ", e.what()));
  }
  return st;
}

std::string shape_text(at::IntArrayRef s) { return cat(s); }

}  // namespace

LoadedCheckpoint load_checkpoint(const std::string& dir, bool verify,
                                 const std::function<bool(const std::string&)>& only_model) {
  if (verify) verify_checkpoint(dir);
  const Manifest manifest = read_manifest(dir);
  LoadedCheckpoint out;
  out.dir = dir;
  const std::string state_path = (fs::path(dir) / "state.json").string();
  out.state = read_state(state_path);
  if (manifest.step && *manifest.step != out.state.step)
    throw std::runtime_error(cat(state_path, ": step ", out.state.step, " differs from the manifest's ", *manifest.step));
  // The directory's name is what --resume auto ordered by: it must be the step inside.
  const std::string name = fs::path(dir).lexically_normal().filename().empty()
                               ? fs::path(dir).lexically_normal().parent_path().filename().string()
                               : fs::path(dir).lexically_normal().filename().string();
  if (starts_with(name, "step_") && name.size() == 13 && name != checkpoint_name(out.state.step))
    throw std::runtime_error(cat(state_path, ": step ", out.state.step, ", but the directory is ", name));
  out.state.config_yaml = read_text_file((fs::path(dir) / "config.yaml").string());
  out.tp = manifest.tp;
  std::vector<std::string> model_files, opt_files;
  std::vector<std::map<std::string, at::Tensor>> model(out.tp), opt(out.tp);
  for (int r = 0; r < out.tp; ++r) {
    model_files.push_back((fs::path(dir) / shard_file("model", r, out.tp)).string());
    opt_files.push_back((fs::path(dir) / shard_file("optimizer", r, out.tp)).string());
    model[r] = load_safetensors(model_files[r], only_model).tensors;
    if (!only_model) opt[r] = load_safetensors(opt_files[r]).tensors;
  }
  // Consistency of the files with each other and with the manifest, before any tensor is combined
  // (a filtered read checks what it read: the tensors' dtypes and that TP ranks agree).
  for (int r = 0; r < out.tp; ++r) {
    for (const auto& [key, t] : model[r]) {
      if (!c10::isFloatingType(t.scalar_type()))
        throw std::runtime_error(cat(model_files[r], ": tensor '", printable(key), "': dtype ", t.scalar_type(), " is not a floating type"));
      if (!model[0].count(key))
        throw std::runtime_error(cat(model_files[r], ": tensor '", printable(key), "' is not in ", model_files[0]));
      for (const char* moment : {"exp_avg/", "exp_avg_sq/"}) {
        if (only_model) break;
        auto it = opt[r].find(moment + key);
        if (it == opt[r].end())
          throw std::runtime_error(cat(opt_files[r], ": lacks '", moment, printable(key), "' for tensor '", printable(key), "' of ",
                                       model_files[r]));
        if (!c10::isFloatingType(it->second.scalar_type()) || it->second.sizes() != t.sizes())
          throw std::runtime_error(cat(opt_files[r], ": tensor '", moment, printable(key), "' is ", it->second.scalar_type(), " ",
                                       shape_text(it->second.sizes()), ", the model's is ", shape_text(t.sizes())));
      }
    }
    for (const auto& [key, t] : model[0])
      if (!model[r].count(key)) throw std::runtime_error(cat(model_files[r], ": lacks tensor '", printable(key), "'"));
    for (const auto& [key, t] : opt[r]) {
      std::string name;
      if (starts_with(key, "exp_avg_sq/")) name = key.substr(11);
      else if (starts_with(key, "exp_avg/")) name = key.substr(8);
      else if (starts_with(key, "rng/")) {
        if (t.scalar_type() != at::kByte || t.dim() != 1)
          throw std::runtime_error(cat(opt_files[r], ": tensor '", printable(key), "' is not a U8 vector (a generator state)"));
        continue;
      } else {
        throw std::runtime_error(cat(opt_files[r], ": unexpected tensor '", printable(key), "'"));
      }
      if (!model[r].count(name))
        throw std::runtime_error(cat(opt_files[r], ": tensor '", printable(key), "' belongs to no tensor of ", model_files[r]));
    }
  }
  // The manifest's tensor list names only tensors of the model file, and, when the tensors come in TP
  // shards, every one of them (an unlisted tensor cannot be reassembled). With one shard an unlisted
  // tensor is simply whole.
  if (manifest.has_tensors) {
    const std::string where = (fs::path(dir) / "manifest.json").string();
    for (const auto& [key, t] : model[0])
      if (out.tp > 1 && !manifest.tensors.count(key))
        throw std::runtime_error(cat(where, ": tensors lacks '", printable(key), "' of ", model_files[0], " (tp=", out.tp, ")"));
    if (!only_model)
      for (const auto& [key, spec] : manifest.tensors)
        if (!model[0].count(key))
          throw std::runtime_error(cat(where, ": tensors.", printable(key), " names no tensor of ", model_files[0]));
  }
  if (opt[0].count("rng/cpu")) {
    const int64_t want = at::detail::getDefaultCPUGenerator().get_state().numel();
    if (opt[0].at("rng/cpu").numel() != want)
      throw std::runtime_error(cat(opt_files[0], ": tensor 'rng/cpu' has ", opt[0].at("rng/cpu").numel(),
                                   " bytes, a CPU generator state has ", want));
  }
  // Reassemble each tensor from its TP shards: concatenate along the split dimension, drop padding.
  auto global = [&](const std::vector<std::map<std::string, at::Tensor>>& parts, const std::string& key,
                    const std::string& name, const std::vector<std::string>& files) {
    auto spec_it = manifest.tensors.find(name);
    const int split = spec_it == manifest.tensors.end() ? -1 : spec_it->second.split_dim;
    if (split < 0) return parts[0].at(key);
    const auto& want = spec_it->second.global_shape;
    int64_t along = 0;
    for (int r = 0; r < out.tp; ++r) {
      const at::Tensor& t = parts[r].at(key);
      bool fits = t.dim() == static_cast<int64_t>(want.size());
      for (int64_t d = 0; fits && d < t.dim(); ++d)
        fits = d == split || t.size(d) == want[static_cast<size_t>(d)];
      if (!fits)
        throw std::runtime_error(cat(files[static_cast<size_t>(r)], ": tensor '", printable(key), "' has shape ",
                                     shape_text(t.sizes()), ", which is no TP shard of the manifest's global_shape ",
                                     shape_text(want), " split along dimension ", split));
      along += t.size(split);
    }
    if (along < want[static_cast<size_t>(split)])
      throw std::runtime_error(cat(files[0], ": tensor '", printable(key), "': its ", out.tp, " TP shard(s) hold ", along,
                                   " rows along dimension ", split, ", the manifest's global_shape ", shape_text(want), " needs ",
                                   want[static_cast<size_t>(split)]));
    std::vector<at::Tensor> shards;
    for (int r = 0; r < out.tp; ++r) shards.push_back(parts[r].at(key));
    at::Tensor whole = out.tp == 1 ? shards[0] : at::cat(shards, split);
    return whole.narrow(split, 0, want[static_cast<size_t>(split)]);
  };
  for (const auto& [key, t] : model[0]) out.tensors.model[key] = global(model, key, key, model_files);
  for (const auto& [key, t] : opt[0]) {
    if (starts_with(key, "exp_avg_sq/")) out.tensors.exp_avg_sq[key.substr(11)] = global(opt, key, key.substr(11), opt_files);
    else if (starts_with(key, "exp_avg/")) out.tensors.exp_avg[key.substr(8)] = global(opt, key, key.substr(8), opt_files);
    else if (starts_with(key, "rng/")) out.tensors.rng[key.substr(4)] = t;
  }
  return out;
}

}  // namespace yt
