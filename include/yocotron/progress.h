// The console progress line of rank 0: redrawn in place on a terminal, one plain line per update
// when stdout is piped; other messages printed through it start on a fresh line.
#pragma once
#include <string>

namespace yt {

class ProgressLine {
 public:
  ProgressLine();
  void update(const std::string& line);
  void message(const std::string& line);  // a line of its own, kept above the progress line
  void finish();

 private:
  bool tty_;
  bool open_ = false;
};

std::string format_duration(double seconds);  // 3m12s, 1h05m, 45s
std::string format_count(double v);           // 12.3K, 4.56M

}  // namespace yt
