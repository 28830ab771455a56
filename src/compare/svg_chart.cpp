#include "yocotron/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace yt {
namespace {

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

std::string esc(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string label(double v, bool as_count) {
  char buf[32];
  double a = std::fabs(v);
  if (as_count && a >= 1e9) std::snprintf(buf, sizeof(buf), "%gG", v / 1e9);
  else if (as_count && a >= 1e6) std::snprintf(buf, sizeof(buf), "%gM", v / 1e6);
  else if (as_count && a >= 1e3) std::snprintf(buf, sizeof(buf), "%gK", v / 1e3);
  else std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const int e = static_cast<int>(std::floor(std::log10(raw)));
  const double mag = std::pow(10.0, std::abs(e));
  double m = 10;
  for (double c : {1.0, 2.0, 5.0, 10.0})
    if ((e >= 0 ? c * mag : c / mag) >= raw) {
      m = c;
      break;
    }
  // Tick k is (k * m) * 10^e, computed so that 0.6 prints as 0.6, not 0.6000000000000001.
  auto value = [&](double k) { return e >= 0 ? k * m * mag : k * m / mag; };
  const double step = value(1);
  std::vector<double> out;
  for (double k = std::ceil(lo / step - 1e-9); value(k) <= hi + step * 1e-9; k += 1) out.push_back(value(k) == 0 ? 0.0 : value(k));
  return out;
}

std::string line_chart_svg(const std::vector<ChartSeries>& series, const ChartOptions& o) {
  size_t longest = 0;
  for (const auto& c : series) longest = std::max(longest, c.label.size());
  // The legend sits right of the plot: make room for its longest label (~7.5 px a character).
  const double right = std::max(200.0, 70.0 + 7.5 * static_cast<double>(longest));
  const double W = 710 + right, H = 560, left = 78, top = 48, bottom = 64;
  const double pw = W - left - right, ph = H - top - bottom;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (o.log_x && s.x[i] <= 0)) continue;
      x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
    }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (!o.log_x && x0 > 0) x0 = 0;  // a linear axis of tokens or steps starts at 0
  if (!std::isnan(o.x_min)) x0 = o.x_min;
  if (!std::isnan(o.x_max)) x1 = o.x_max;
  if (x1 == x0) x1 = x0 + 1;
  const double skip_until = x0 + 0.05 * (x1 - x0);
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      y0 = std::min(y0, s.y[i]);
      if (s.x[i] >= skip_until || s.x.size() < 10) y1 = std::max(y1, s.y[i]);
    }
  if (!std::isfinite(y0)) y0 = 0, y1 = 1;
  if (!std::isfinite(y1) || y1 <= y0) y1 = y0 + 1;
  double pad = (y1 - y0) * 0.05;
  y0 = std::isnan(o.y_min) ? y0 - pad : o.y_min;
  y1 = std::isnan(o.y_max) ? y1 + pad : o.y_max;
  auto fx = [&](double x) {
    if (o.log_x) return left + pw * (std::log10(x) - std::log10(x0)) / (std::log10(x1) - std::log10(x0));
    return left + pw * (x - x0) / (x1 - x0);
  };
  auto fy = [&](double y) { return top + ph * (1.0 - (y - y0) / (y1 - y0)); };

  std::ostringstream s;
  s.precision(6);
  s << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" viewBox=\"0 0 " << W << " "
    << H << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" font-size=\"13\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    << "<defs><clipPath id=\"plot\"><rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\"/></clipPath></defs>\n"
    << "<text x=\"" << left + pw / 2 << "\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\">"
    << esc(o.title) << "</text>\n";
  // Grid and ticks.
  std::vector<double> xt;
  if (o.log_x) {
    for (double d = std::pow(10.0, std::floor(std::log10(x0))); d <= x1 * 1.0001; d *= 10)
      for (double m : {1.0, 2.0, 5.0})
        if (d * m >= x0 * 0.9999 && d * m <= x1 * 1.0001) xt.push_back(d * m);
  } else {
    xt = nice_ticks(x0, x1, 7);
    if (o.x_integers) xt.erase(std::remove_if(xt.begin(), xt.end(), [](double v) { return v != std::floor(v); }), xt.end());
  }
  for (double v : xt) {
    double X = fx(v);
    s << "<line x1=\"" << X << "\" y1=\"" << top << "\" x2=\"" << X << "\" y2=\"" << top + ph << "\" stroke=\"#e5e5e5\"/>\n"
      << "<text x=\"" << X << "\" y=\"" << top + ph + 20 << "\" text-anchor=\"middle\">" << label(v, o.x_as_count) << "</text>\n";
  }
  for (double v : nice_ticks(y0, y1, 7)) {
    double Y = fy(v);
    s << "<line x1=\"" << left << "\" y1=\"" << Y << "\" x2=\"" << left + pw << "\" y2=\"" << Y << "\" stroke=\"#e5e5e5\"/>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << Y + 4 << "\" text-anchor=\"end\">" << label(v, false) << "</text>\n";
  }
  s << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#333\"/>\n"
    << "<text x=\"" << left + pw / 2 << "\" y=\"" << H - 18 << "\" text-anchor=\"middle\">" << esc(o.x_label) << "</text>\n"
    << "<text transform=\"translate(20," << top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">" << esc(o.y_label)
    << "</text>\n";
  // Curves, clipped to the plot area.
  s << "<g clip-path=\"url(#plot)\" fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\">\n";
  for (size_t k = 0; k < series.size(); ++k) {
    const auto& c = series[k];
    const char* color = kColors[k % 10];
    s << "<polyline stroke=\"" << color << "\" points=\"";
    for (size_t i = 0; i < c.x.size(); ++i)
      if (std::isfinite(c.y[i]) && !(o.log_x && c.x[i] <= 0)) s << fx(c.x[i]) << "," << fy(c.y[i]) << " ";
    s << "\"/>\n";
    if (c.markers)
      for (size_t i = 0; i < c.x.size(); ++i)
        if (std::isfinite(c.y[i]) && !(o.log_x && c.x[i] <= 0))
          s << "<circle cx=\"" << fx(c.x[i]) << "\" cy=\"" << fy(c.y[i]) << "\" r=\"3.5\" fill=\"" << color << "\"/>\n";
  }
  s << "</g>\n";
  // Legend.
  for (size_t k = 0; k < series.size(); ++k) {
    double Y = top + 14 + 24 * static_cast<double>(k);
    s << "<line x1=\"" << left + pw + 18 << "\" y1=\"" << Y << "\" x2=\"" << left + pw + 46 << "\" y2=\"" << Y
      << "\" stroke=\"" << kColors[k % 10] << "\" stroke-width=\"3\"/>\n"
      << "<text x=\"" << left + pw + 54 << "\" y=\"" << Y + 4 << "\">" << esc(series[k].label) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace yt
