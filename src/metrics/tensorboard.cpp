#include "yocotron/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "yocotron/fileio.h"
#include "yocotron/log.h"
#include "yocotron/metrics_schema.h"
#include "yocotron/str.h"

namespace yt {
namespace fs = std::filesystem;

namespace {

uint32_t masked_crc(const std::string& s) {
  uint32_t c = crc32c(s.data(), s.size());
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

void length_delimited(std::string& out, int field, const std::string& bytes) {
  varint(out, static_cast<uint64_t>(field) << 3 | 2);
  varint(out, bytes.size());
  out += bytes;
}

template <class T>
void fixed(std::string& out, int field, int wire, T v) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
  char buf[sizeof(T)];
  std::memcpy(buf, &v, sizeof(T));
  out.append(buf, sizeof(T));
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string tb_file_version_event(double wall_time) {
  std::string e;
  fixed(e, 1, 1, wall_time);                     // Event.wall_time (double)
  length_delimited(e, 3, "brain.Event:2");       // Event.file_version
  return e;
}

std::string tb_scalar_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    length_delimited(value, 1, tag);  // Summary.Value.tag
    fixed(value, 2, 5, v);            // Summary.Value.simple_value (float)
    length_delimited(summary, 1, value);
  }
  std::string e;
  fixed(e, 1, 1, wall_time);
  varint(e, 2 << 3 | 0);  // Event.step
  varint(e, static_cast<uint64_t>(step));
  length_delimited(e, 5, summary);  // Event.summary
  return e;
}

std::string tfrecord(const std::string& data) {
  std::string out;
  uint64_t len = data.size();
  std::string len_bytes(reinterpret_cast<const char*>(&len), 8);
  uint32_t c1 = masked_crc(len_bytes), c2 = masked_crc(data);
  out += len_bytes;
  out.append(reinterpret_cast<const char*>(&c1), 4);
  out += data;
  out.append(reinterpret_cast<const char*>(&c2), 4);
  return out;
}

std::vector<std::string> read_tfrecords_prefix(const std::string& path, std::string* problem) {
  std::string all = read_text_file(path);
  std::vector<std::string> out;
  problem->clear();
  size_t p = 0;
  while (p < all.size()) {
    const size_t left = all.size() - p;
    if (left < 12) {
      *problem = cat(path, ": truncated record header at byte ", p);
      break;
    }
    uint64_t len;
    std::memcpy(&len, all.data() + p, 8);
    uint32_t c1;
    std::memcpy(&c1, all.data() + p + 8, 4);
    if (c1 != masked_crc(all.substr(p, 8))) {
      *problem = cat(path, ": bad length checksum at byte ", p);
      break;
    }
    if (len > left - 12 || left - 12 - len < 4) {  // no overflow for any len
      *problem = cat(path, ": truncated record at byte ", p);
      break;
    }
    std::string data = all.substr(p + 12, len);
    uint32_t c2;
    std::memcpy(&c2, all.data() + p + 12 + len, 4);
    if (c2 != masked_crc(data)) {
      *problem = cat(path, ": bad data checksum at byte ", p);
      break;
    }
    out.push_back(std::move(data));
    p += 12 + len + 4;
  }
  return out;
}

std::vector<std::string> read_tfrecords(const std::string& path) {
  std::string problem;
  auto out = read_tfrecords_prefix(path, &problem);
  if (!problem.empty()) throw std::runtime_error(problem);
  return out;
}

int64_t tb_event_step(const std::string& e) {
  size_t p = 0;
  auto read_varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; p < e.size(); shift += 7) {
      auto b = static_cast<unsigned char>(e[p++]);
      if (shift < 64) v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  };
  while (p < e.size()) {
    uint64_t key = read_varint();
    int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 2 && wire == 0) return static_cast<int64_t>(read_varint());
    if (wire == 0) read_varint();
    else if (wire == 1) p += 8;
    else if (wire == 5) p += 4;
    else if (wire == 2) {
      uint64_t len = read_varint();
      if (len > e.size() - std::min(p, e.size())) break;
      p += len;
    }
    else break;
  }
  return -1;
}

TensorBoardWriter::TensorBoardWriter(const std::string& run_dir, int64_t keep_up_to) {
  fs::path dir = fs::path(run_dir) / "tb";
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(dir)) {  // a resumed run: forget what came after the checkpoint
    if (f.path().filename().string().rfind("events.out.tfevents.", 0) != 0) continue;
    std::string kept, problem;
    bool dropped = false;
    auto records = read_tfrecords_prefix(f.path().string(), &problem);
    if (!problem.empty()) {  // the torn end of a run that stopped while writing: keep what precedes it
      log::warn(problem, ": dropping it and what follows (", records.size(), " intact records kept)");
      dropped = true;
    }
    for (const auto& rec : records) {
      if (tb_event_step(rec) > keep_up_to) dropped = true;
      else kept += tfrecord(rec);
    }
    if (dropped) write_text_file_atomic(f.path().string(), kept);
  }
  char host[256] = "host";
  ::gethostname(host, sizeof(host) - 1);
  std::string name = cat("events.out.tfevents.", static_cast<int64_t>(now_s()), ".", host, ".", ::getpid());
  out_.open(dir / name, std::ios::binary | std::ios::app);
  if (!out_) throw std::runtime_error(cat((dir / name).string(), ": cannot create"));
  out_ << tfrecord(tb_file_version_event(now_s())) << std::flush;
}

void TensorBoardWriter::scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values) {
  std::vector<std::pair<std::string, float>> v;
  for (const auto& [k, x] : values)
    if (std::isfinite(x)) v.emplace_back(k, static_cast<float>(x));
  if (!v.empty()) out_ << tfrecord(tb_scalar_event(now_s(), step, v)) << std::flush;
}

void TensorBoardWriter::row(const MetricRow& row, bool with_tokens) {
  std::vector<std::pair<std::string, double>> values;
  int64_t step = 0;
  for (const auto& [name, v] : row) {
    const auto* i = std::get_if<int64_t>(&v);
    if (name == metric_name::step) step = *i;  // the event's own step, not a scalar
    else if (name == metric_name::tokens && !with_tokens) continue;
    else if (i) values.emplace_back(name, static_cast<double>(*i));
    else if (const auto* d = std::get_if<double>(&v)) values.emplace_back(name, *d);
  }
  scalars(step, values);
}

// Evaluation and task rows leave tokens out: the training row of their step has already plotted it.
void TensorBoardWriter::train(const TrainRow& r) { row(metric_row(r), true); }

void TensorBoardWriter::eval(const EvalRow& r) { row(metric_row(r), false); }

void TensorBoardWriter::tasks(const TaskEvalRow& r) { row(metric_row(r), false); }

}  // namespace yt
