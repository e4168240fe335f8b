// Line charts as standalone SVG: the error curves of a run directory (train/run_dir.h) and the
// figures of `dropkit compare` and `dropkit predict`.
//
// SVG rather than PNG because it needs no image library, is a few kilobytes, diffs as text and
// opens in any browser; the chart is 800 wide and 500 high (taller when the legend must go below
// the plot) and self-contained (no scripts, no external fonts or stylesheets).
#pragma once

#include <string>
#include <vector>

namespace dropkit::report {

// One curve. y[i] is the value at x[i], or at epoch i+1 when x is empty; NaN (and infinite)
// values are skipped, the line joining the points on either side. `color` is any SVG color
// ("#1f77b4", "red").
struct Series {
  std::string label;
  std::string color;
  bool dashed = false;
  std::vector<double> y;
  std::vector<double> x = {};
};

// An 800x500 SVG line chart: x is the epoch (1 .. the longest series), y the error in percent.
// It has the title on top, both axes with ticks, tick labels and axis labels, light grid lines,
// and a legend with every series. Ticks step by 1, 2 or 5 times a power of ten; the y axis
// covers the data padded by 5% of their span, ends on ticks, starts at zero when the data come
// within half their span of it, and stays within [0, 100]. The legend goes in the first corner
// of the plot (top right, top left, bottom right, bottom left) where it covers no line, marker
// or bar, else below the x-axis label, the chart growing taller to hold it. A series with no
// finite value is drawn only in the legend; if no series has one, the chart shows empty axes
// and "no data". Text is XML-escaped; the result ends in "</svg>\n".
std::string line_chart_svg(const std::string& title, const std::string& y_label,
                           const std::vector<Series>& series);

// The same chart with the series' own x values (all of them must have x), a named x axis, and
// optionally a logarithmic x (ticks at 1, 2, 5 times powers of ten; x must be > 0).
std::string xy_chart_svg(const std::string& title, const std::string& x_label,
                         const std::string& y_label, const std::vector<Series>& series, bool log_x);

// A reliability diagram: per confidence bin (equal width over [0, 1]) a bar at the bin's
// accuracy, the diagrams' bars side by side within each bin (NaN: an empty bin, no bar), and the
// diagonal of perfect calibration; the legend avoids bars and diagonal as above.
struct Reliability {
  std::string label;  // e.g. "MC T=50 (ECE 0.012)"
  std::string color;
  std::vector<double> accuracy;  // per bin
};
std::string reliability_svg(const std::string& title, const std::vector<Reliability>& diagrams);

}  // namespace dropkit::report
