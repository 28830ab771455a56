#include "yocotron/progress.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>

namespace yt {

ProgressLine::ProgressLine() : tty_(::isatty(STDOUT_FILENO) != 0) {}

void ProgressLine::update(const std::string& line) {
  if (tty_) {
    std::cout << "\r\033[K" << line << std::flush;
    open_ = true;
  } else {
    std::cout << line << std::endl;
  }
}

void ProgressLine::message(const std::string& line) {
  if (open_) std::cout << "\n";
  open_ = false;
  std::cout << line << std::endl;
}

void ProgressLine::finish() {
  if (open_) std::cout << std::endl;
  open_ = false;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  long t = std::lround(s);
  if (t >= 3600) std::snprintf(buf, sizeof(buf), "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  else if (t >= 60) std::snprintf(buf, sizeof(buf), "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof(buf), "%lds", t);
  return buf;
}

std::string format_count(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof(buf), "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
  else if (v >= 1e3) std::snprintf(buf, sizeof(buf), "%.1fK", v / 1e3);
  else std::snprintf(buf, sizeof(buf), "%.0f", v);
  return buf;
}

}  // namespace yt
