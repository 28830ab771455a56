// TensorBoard event files (RUN/tb/events.out.tfevents.<time>.<host>): a TFRecord stream of `Event`
// protocol buffers, written here field by field (no protobuf library): each record is its length
// (uint64), the masked CRC-32C of the length, the bytes, and their masked CRC-32C. Scalars: every
// field of a logged row but its step (the event's step), tagged with its name in metrics.jsonl
// (metrics_schema.h); absent and non-finite values are left out, and tokens is plotted once a step.
#pragma once
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "yocotron/metrics_schema.h"

namespace yt {

class TensorBoardWriter : public MetricsSink {
 public:
  // Drops events with step > keep_up_to from earlier files (a resumed run), then opens a new file.
  TensorBoardWriter(const std::string& run_dir, int64_t keep_up_to);
  void train(const TrainRow& r) override;
  void eval(const EvalRow& r) override;
  void tasks(const TaskEvalRow& r) override;
  void scalars(int64_t step, const std::vector<std::pair<std::string, double>>& values);

 private:
  void row(const MetricRow& row, bool with_tokens);
  std::ofstream out_;
};

// The pieces, exposed for tests: one Event as protobuf bytes, and a TFRecord framing of it.
std::string tb_scalar_event(double wall_time, int64_t step, const std::vector<std::pair<std::string, float>>& values);
std::string tb_file_version_event(double wall_time);
std::string tfrecord(const std::string& data);
// The records of a TFRecord file (checksums verified) and the step of an Event (-1 when absent).
std::vector<std::string> read_tfrecords(const std::string& path);
// The intact records before the first damaged one; `problem` names the file, the byte and what is wrong
// ("" when the whole file is intact).
std::vector<std::string> read_tfrecords_prefix(const std::string& path, std::string* problem);
int64_t tb_event_step(const std::string& event);

}  // namespace yt
