// A line chart as a standalone SVG file: axes with round tick values (linear or log x), a title,
// axis labels, one coloured polyline (optionally with point markers) per series and a legend.
#pragma once
#include <limits>
#include <string>
#include <vector>

namespace yt {

struct ChartSeries {
  std::string label;
  std::vector<double> x, y;
  bool markers = false;
};

struct ChartOptions {
  std::string title, x_label, y_label;
  bool log_x = false;
  // y range; NaN = from the data. By default the top ignores the first 5% of x so that the early,
  // steep part of a loss curve does not flatten the differences at the end (it is clipped).
  double y_min = std::numeric_limits<double>::quiet_NaN(), y_max = std::numeric_limits<double>::quiet_NaN();
  // x range; NaN = from the data (a linear axis starts at 0).
  double x_min = std::numeric_limits<double>::quiet_NaN(), x_max = std::numeric_limits<double>::quiet_NaN();
  bool x_as_count = true;  // tick labels like 1.5M instead of 1500000
  bool x_integers = false; // ticks only at whole x values (an axis of layers)
};

std::string line_chart_svg(const std::vector<ChartSeries>& series, const ChartOptions& opts);

// Round tick values covering [lo, hi], about `target` of them (1, 2 or 5 times a power of ten).
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace yt
