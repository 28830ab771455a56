// The Python files that let transformers load a non-Llama export with trust_remote_code:
// src/model/hf_modeling/{configuration,modeling}_yocotron.py, embedded into the binary at build
// time (cmake/embed_text_files.cmake) so `export-hf` writes them without the source tree.
#pragma once
#include <string>
#include <vector>

namespace yt {

struct EmbeddedFile {
  std::string name;  // file name, e.g. modeling_yocotron.py
  std::string text;
};

const std::vector<EmbeddedFile>& hf_modeling_files();

}  // namespace yt
