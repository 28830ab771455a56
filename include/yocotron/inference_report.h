// Charts and tables of `yocotron bench --part prefill|decode` results (one JSON object per line,
// yocotron's and the Hugging Face peer's; launch/bench_inference.sh collects them): the YOCO++ paper's
// Figure 3 panels, one line per architecture —
//   prefill.svg             time to first token (ms) vs prompt length, batch 1
//   decode_throughput.svg   tokens/s at the largest batch vs tokens generated
//   decode_batch.svg        the largest batch vs tokens generated
// plus inference.md and inference.csv with every figure and the ratios to the transformer.
#pragma once
#include <string>
#include <vector>

namespace yt {

struct InferenceReport {
  std::vector<std::string> files;  // written
  std::string markdown;
};

// Errors name the file and line of a row that is not a bench result.
InferenceReport write_inference_report(const std::vector<std::string>& jsonl_files, const std::string& out_dir);

}  // namespace yt
