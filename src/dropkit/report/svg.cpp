#include "dropkit/report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string_view>

#include <fmt/format.h>

namespace dropkit::report {
namespace {

constexpr double kWidth = 800;
constexpr double kHeight = 500;
// The plot area, inside the margins that hold the title, tick labels and axis labels.
constexpr double kLeft = 80;
constexpr double kRight = kWidth - 30;
constexpr double kTop = 60;
constexpr double kBottom = kHeight - 60;
constexpr char kFont[] = "font-family=\"sans-serif\"";
constexpr double kMaxPercent = 100;
constexpr double kLegendRow = 18;  // the y axis holds a percentage (or a fraction, below 1)

std::string escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// 1, 2 or 5 times a power of ten, the smallest such step >= raw.
double nice_step(double raw) {
  if (!(raw > 0)) return 1;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * magnitude >= raw * (1 - 1e-9)) return m * magnitude;
  }
  return 10 * magnitude;
}

// A linear map from data range [lo, hi] to pixel range [a, b].
struct Axis {
  double lo, hi, a, b;
  double operator()(double v) const { return a + (v - lo) / (hi - lo) * (b - a); }
};

struct Range {
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  bool empty() const { return lo > hi; }
};

Range finite_range(const std::vector<Series>& series) {
  Range r;
  for (const Series& s : series) {
    for (const double v : s.y) {
      if (!std::isfinite(v)) continue;
      r.lo = std::min(r.lo, v);
      r.hi = std::max(r.hi, v);
    }
  }
  return r;
}

// The y step: 1, 2 or 5 times a power of ten, about six ticks over the range.
double y_step(const Range& r) {
  return nice_step((r.hi - r.lo) / 6);
}

// The y axis for data in r, a percentage: padded by 5% of its span (or of its value when flat),
// starting at zero when the data come within half their span of it, ending on ticks, and within
// [0, 100].
Range value_range(Range r) {
  const double span = r.hi - r.lo;
  const double pad = span > 0 ? 0.05 * span : (r.hi != 0 ? 0.05 * std::abs(r.hi) : 1.0);
  Range out{r.lo - pad, r.hi + pad};
  if (r.lo <= 0.5 * std::max(span, pad)) out.lo = 0;
  // Ends on ticks. Snapping widens the range, which may call for the next step (draw_y_ticks
  // takes the step of the final range): snap again, a few times at most.
  const Range padded = out;
  for (int i = 0; i < 4; ++i) {
    const double step = y_step(i == 0 ? padded : out);
    out.lo = std::max(0.0, std::floor(padded.lo / step + 1e-9) * step);
    out.hi = std::min(kMaxPercent, std::ceil(padded.hi / step - 1e-9) * step);
    if (y_step(out) == step) break;
  }
  if (!(out.hi > out.lo))
    out = out.lo >= kMaxPercent ? Range{kMaxPercent - 1, kMaxPercent} : Range{out.lo, out.lo + 1};
  return out;
}

// What the legend must not cover: the plotted lines (as segments) and bars and markers (boxes).
struct Box {
  double x0, y0, x1, y1;
};
struct Segment {
  double x0, y0, x1, y1;
};
struct Obstacles {
  std::vector<Segment> segments;
  std::vector<Box> boxes;
};

bool overlaps(const Box& a, const Box& b) {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

// Whether the segment passes through the box (Liang-Barsky clipping).
bool crosses(const Segment& s, const Box& b) {
  double t0 = 0, t1 = 1;
  const double dx = s.x1 - s.x0, dy = s.y1 - s.y0;
  const double p[4] = {-dx, dx, -dy, dy};
  const double q[4] = {s.x0 - b.x0, b.x1 - s.x0, s.y0 - b.y0, b.y1 - s.y0};
  for (int i = 0; i < 4; ++i) {
    if (p[i] == 0) {
      if (q[i] < 0) return false;  // parallel to this edge and outside it
      continue;
    }
    const double t = q[i] / p[i];
    if (p[i] < 0) {
      t0 = std::max(t0, t);
    } else {
      t1 = std::min(t1, t);
    }
    if (t0 > t1) return false;
  }
  return true;
}

bool is_free(const Box& legend, const Obstacles& obstacles) {
  constexpr double kGap = 4;  // keep the box this far from what is drawn
  const Box grown{legend.x0 - kGap, legend.y0 - kGap, legend.x1 + kGap, legend.y1 + kGap};
  for (const Segment& s : obstacles.segments) {
    if (crosses(s, grown)) return false;
  }
  for (const Box& b : obstacles.boxes) {
    if (overlaps(b, grown)) return false;
  }
  return true;
}

// A <text> element; `extra` holds further attributes, e.g. `fill="red"`.
std::string text(double x, double y, std::string_view anchor, int size, std::string_view content,
                 std::string_view extra = "") {
  return fmt::format(
      "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"{}\" font-size=\"{}\" {}{}{}>{}</text>\n", x,
      y, anchor, size, kFont, extra.empty() ? "" : " ", extra, escape(content));
}

std::string line(double x1, double y1, double x2, double y2, std::string_view style) {
  return fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" {}/>\n", x1, y1,
                     x2, y2, style);
}

std::string dash_attribute(bool dashed) {
  return dashed ? " stroke-dasharray=\"6 4\"" : "";
}

void draw_y_ticks(std::string& out, const Axis& y) {
  const double step = y_step({y.lo, y.hi});
  const int decimals = std::max(0, -static_cast<int>(std::floor(std::log10(step) + 1e-9)));
  const auto first = static_cast<long long>(std::ceil(y.lo / step - 1e-9));
  const auto last = static_cast<long long>(std::floor(y.hi / step + 1e-9));
  for (long long k = first; k <= last; ++k) {
    const double v = static_cast<double>(k) * step;
    const double py = y(v);
    out += line(kLeft, py, kRight, py, "stroke=\"#e0e0e0\" stroke-width=\"1\"");
    out += line(kLeft - 5, py, kLeft, py, "stroke=\"black\" stroke-width=\"1\"");
    out += text(kLeft - 8, py + 4, "end", 12, fmt::format("{:.{}f}", v, decimals));
  }
}

void draw_x_tick(std::string& out, const Axis& x, double v) {
  const double px = x(v);
  out += line(px, kBottom, px, kBottom + 5, "stroke=\"black\" stroke-width=\"1\"");
  out += text(px, kBottom + 20, "middle", 12, fmt::format("{:g}", v));
}

void draw_x_ticks(std::string& out, const Axis& x, std::size_t epochs) {
  // Whole epochs only: a fractional step (few epochs) becomes 1.
  const auto step = std::max<std::size_t>(
      1, static_cast<std::size_t>(std::llround(nice_step(static_cast<double>(epochs - 1) / 10))));
  draw_x_tick(out, x, 1);
  for (std::size_t e = step; e <= epochs; e += step) {
    // Epoch 1 always gets a tick; a multiple of the step too close to it would collide.
    if (2 * (e - 1) >= step && e != 1) draw_x_tick(out, x, static_cast<double>(e));
  }
}

// A logarithmic axis (x holds log10 of the values): ticks at 1, 2 and 5 times powers of ten.
void draw_log_x_ticks(std::string& out, const Axis& x) {
  for (int e = static_cast<int>(std::floor(x.lo)); e <= static_cast<int>(std::ceil(x.hi)); ++e) {
    for (const double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, e);
      if (std::log10(v) >= x.lo - 1e-9 && std::log10(v) <= x.hi + 1e-9) {
        const double px = x(std::log10(v));
        out += line(px, kBottom, px, kBottom + 5, "stroke=\"black\" stroke-width=\"1\"");
        out += text(px, kBottom + 20, "middle", 12, fmt::format("{:g}", v));
      }
    }
  }
}

// The legend's box: in the first corner of the plot area where it covers nothing drawn (top
// right, top left, bottom right, bottom left), else below the x-axis label, outside the plot.
Box place_legend(const std::vector<Series>& series, const Obstacles& obstacles) {
  std::size_t longest = 0;
  for (const Series& s : series) longest = std::max(longest, s.label.size());
  constexpr double kInset = 10;
  const double width = 44 + 7.0 * static_cast<double>(longest);
  const double height = 10 + kLegendRow * static_cast<double>(series.size());
  for (const auto& [left, top] :
       {std::pair{false, true}, {true, true}, {false, false}, {true, false}}) {
    const double x0 = left ? kLeft + kInset : kRight - kInset - width;
    const double y0 = top ? kTop + kInset : kBottom - kInset - height;
    const Box box{x0, y0, x0 + width, y0 + height};
    if (box.x0 >= kLeft && box.y1 <= kBottom && is_free(box, obstacles)) return box;
  }
  return {kLeft, kHeight, kLeft + width, kHeight + height};
}

void draw_legend(std::string& out, const std::vector<Series>& series, const Box& box) {
  out += fmt::format(
      "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"white\" "
      "fill-opacity=\"0.85\" stroke=\"#999999\" stroke-width=\"1\"/>\n",
      box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0);
  for (std::size_t i = 0; i < series.size(); ++i) {
    const Series& s = series[i];
    const double cy = box.y0 + 5 + kLegendRow * (static_cast<double>(i) + 0.5);
    out += line(box.x0 + 8, cy, box.x0 + 32, cy,
                fmt::format("stroke=\"{}\" stroke-width=\"2\"{}", escape(s.color),
                            dash_attribute(s.dashed)));
    out += text(box.x0 + 38, cy + 4, "start", 12, s.label);
  }
}

// The whole document: the frame (title, axis labels, axes) around `body`, which holds the grid,
// ticks and data, and the legend where it covers none of `obstacles` (the SVG grows downwards
// when the legend must go below the plot).
std::string svg_document(const std::string& title, const std::string& x_label,
                         const std::string& y_label, const std::string& body,
                         const std::vector<Series>& legend, const Obstacles& obstacles) {
  const Box box = legend.empty() ? Box{0, 0, 0, 0} : place_legend(legend, obstacles);
  const double height = std::max(kHeight, box.y1 + 10);
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "viewBox=\"0 0 {0} {1}\">\n",
      kWidth, height);
  out += fmt::format("<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"white\"/>\n", kWidth,
                     height);
  out += text(kWidth / 2, 30, "middle", 18, title, "font-weight=\"bold\"");
  out += text(kLeft + (kRight - kLeft) / 2, kHeight - 15, "middle", 14, x_label);
  const double mid_y = kTop + (kBottom - kTop) / 2;
  out += text(22, mid_y, "middle", 14, y_label,
              fmt::format("transform=\"rotate(-90 22 {:.1f})\"", mid_y));
  out += body;
  // Axes after the grid and data, so that nothing paints over them; then the legend.
  out += line(kLeft, kBottom, kRight, kBottom, "stroke=\"black\" stroke-width=\"1\"");
  out += line(kLeft, kTop, kLeft, kBottom, "stroke=\"black\" stroke-width=\"1\"");
  if (!legend.empty()) draw_legend(out, legend, box);
  out += "</svg>\n";
  return out;
}

}  // namespace

std::string line_chart_svg(const std::string& title, const std::string& y_label,
                           const std::vector<Series>& series) {
  return xy_chart_svg(title, "epoch", y_label, series, false);
}

std::string xy_chart_svg(const std::string& title, const std::string& x_label,
                         const std::string& y_label, const std::vector<Series>& series,
                         bool log_x) {
  std::string out;
  Obstacles drawn;
  const double mid_y = kTop + (kBottom - kTop) / 2;
  // The x of point i of a series: its x[i], or i + 1 (an epoch) when it has none.
  const auto x_of = [&](const Series& s, std::size_t i) {
    const double v = s.x.empty() ? static_cast<double>(i + 1) : s.x.at(i);
    return log_x ? std::log10(v) : v;
  };
  const Range data = finite_range(series);
  if (data.empty()) {
    const double cx = kLeft + (kRight - kLeft) / 2;
    out += text(cx, mid_y, "middle", 16, "no data", "fill=\"#777777\"");
    drawn.boxes.push_back({cx - 40, mid_y - 16, cx + 40, mid_y + 6});
  } else {
    bool epochs_only = true;
    Range xr;
    for (const Series& s : series) {
      epochs_only = epochs_only && s.x.empty();
      for (std::size_t i = 0; i < s.y.size(); ++i) {
        const double v = x_of(s, i);
        if (!std::isfinite(v)) continue;
        xr.lo = std::min(xr.lo, v);
        xr.hi = std::max(xr.hi, v);
      }
    }
    if (epochs_only) xr.lo = 1;
    // A single x is drawn in the middle rather than on the y axis.
    const Axis x = xr.hi > xr.lo ? Axis{xr.lo, xr.hi, kLeft, kRight}
                                 : Axis{xr.lo - 1, xr.lo + 1, kLeft, kRight};
    const Range yr = value_range(data);
    const Axis y{yr.lo, yr.hi, kBottom, kTop};
    draw_y_ticks(out, y);
    if (log_x) {
      draw_log_x_ticks(out, x);
    } else if (epochs_only) {
      draw_x_ticks(out, x, static_cast<std::size_t>(xr.hi));
    } else {
      const double step = nice_step((x.hi - x.lo) / 8);
      for (double v = std::ceil(x.lo / step) * step; v <= x.hi + 1e-9 * step; v += step)
        draw_x_tick(out, x, v);
    }

    for (const Series& s : series) {
      std::string points;
      std::size_t count = 0;
      double last_x = 0, last_y = 0;
      for (std::size_t i = 0; i < s.y.size(); ++i) {
        if (!std::isfinite(s.y[i]) || !std::isfinite(x_of(s, i))) continue;
        const double px = x(x_of(s, i));
        // Clamped, so a (meaningless) error outside [0, 100] cannot draw outside the plot.
        const double py = std::clamp(y(s.y[i]), kTop, kBottom);
        drawn.segments.push_back({count ? last_x : px, count ? last_y : py, px, py});
        last_x = px;
        last_y = py;
        if (count++ > 0) points += ' ';
        points += fmt::format("{:.1f},{:.1f}", last_x, last_y);
      }
      if (count == 0) continue;
      out += fmt::format(
          "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" stroke-linejoin=\"round\"{} "
          "points=\"{}\"/>\n",
          escape(s.color), dash_attribute(s.dashed), points);
      // A one-point polyline is invisible; mark the point.
      if (count == 1) {
        out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", last_x,
                           last_y, escape(s.color));
      }
    }
  }
  return svg_document(title, x_label, y_label, out, series, drawn);
}

std::string reliability_svg(const std::string& title, const std::vector<Reliability>& diagrams) {
  std::string out;
  Obstacles drawn;
  const Axis x{0, 1, kLeft, kRight};
  const Axis y{0, 1, kBottom, kTop};
  draw_y_ticks(out, y);
  for (int k = 0; k <= 10; k += 2) draw_x_tick(out, x, k / 10.0);
  // The diagonal: perfect calibration.
  out += line(x(0), y(0), x(1), y(1),
              "stroke=\"#777777\" stroke-width=\"1\" stroke-dasharray=\"4 4\"");
  drawn.segments.push_back({x(0), y(0), x(1), y(1)});
  std::vector<Series> legend;
  const double n = static_cast<double>(std::max<std::size_t>(diagrams.size(), 1));
  for (std::size_t d = 0; d < diagrams.size(); ++d) {
    const Reliability& r = diagrams[d];
    legend.push_back({r.label, r.color, false, {}, {}});
    const double bins = static_cast<double>(r.accuracy.size());
    for (std::size_t b = 0; b < r.accuracy.size(); ++b) {
      if (!std::isfinite(r.accuracy[b])) continue;  // an empty bin
      const double left = static_cast<double>(b) / bins + static_cast<double>(d) / (n * bins);
      const double w = 1.0 / (n * bins);
      drawn.boxes.push_back({x(left), y(r.accuracy[b]), x(left + w), y(0)});
      out += fmt::format(
          "<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"{}\" "
          "fill-opacity=\"0.75\"/>\n",
          x(left), y(r.accuracy[b]), x(left + w) - x(left), y(0) - y(r.accuracy[b]),
          escape(r.color));
    }
  }
  return svg_document(title, "confidence (mean probability of the predicted class)", "accuracy",
                      out, legend, drawn);
}

}  // namespace dropkit::report
