#include "dropkit/report/svg.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace dropkit::report {
namespace {

using testing::EndsWith;
using testing::HasSubstr;
using testing::Not;
using testing::StartsWith;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// A small well-formedness check: every tag is `<name attr="value" ...>` or `.../>` (attributes
// separated by whitespace, values double-quoted and free of '<'), every closing tag matches the
// innermost open element, nothing but tags starts with '<' (text is escaped), and there is one
// root <svg> element.
void expect_well_formed(const std::string& svg) {
  std::vector<std::string> open;
  std::size_t opening = 0, closing = 0, self_closing = 0;
  const auto is_name = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  };
  for (std::size_t i = svg.find('<'); i != std::string::npos; i = svg.find('<', i)) {
    const std::string context = svg.substr(i, 40);
    if (svg.compare(i, 2, "</") == 0) {
      std::size_t end = i + 2;
      while (end < svg.size() && is_name(svg[end])) ++end;
      const std::string name = svg.substr(i + 2, end - i - 2);
      ASSERT_LT(end, svg.size());
      ASSERT_EQ(svg[end], '>') << context;
      ASSERT_FALSE(open.empty()) << context;
      EXPECT_EQ(open.back(), name) << context;
      open.pop_back();
      ++closing;
      i = end + 1;
      continue;
    }
    std::size_t pos = i + 1;
    while (pos < svg.size() && is_name(svg[pos])) ++pos;
    const std::string name = svg.substr(i + 1, pos - i - 1);
    ASSERT_FALSE(name.empty()) << "stray '<': " << context;
    if (open.empty()) {
      EXPECT_EQ(opening, 0u) << "a second root element: " << context;
    }
    ++opening;
    for (;;) {  // attributes
      ASSERT_LT(pos, svg.size()) << context;
      if (svg[pos] == '>' || svg.compare(pos, 2, "/>") == 0) break;
      ASSERT_TRUE(std::isspace(static_cast<unsigned char>(svg[pos])))
          << "attributes not separated by whitespace at " << svg.substr(pos, 30);
      while (std::isspace(static_cast<unsigned char>(svg[pos]))) ++pos;
      if (svg[pos] == '>' || svg.compare(pos, 2, "/>") == 0) break;
      const std::size_t attr = pos;
      while (pos < svg.size() && (is_name(svg[pos]) || svg[pos] == ':')) ++pos;
      ASSERT_GT(pos, attr) << "bad attribute at " << svg.substr(attr, 30);
      ASSERT_EQ(svg.compare(pos, 2, "=\""), 0) << "bad attribute at " << svg.substr(attr, 30);
      const std::size_t value_end = svg.find('"', pos + 2);
      ASSERT_NE(value_end, std::string::npos);
      EXPECT_EQ(svg.substr(pos + 2, value_end - pos - 2).find('<'), std::string::npos);
      pos = value_end + 1;
    }
    if (svg[pos] == '/') {
      ++self_closing;
      i = pos + 2;
    } else {
      open.push_back(name);
      i = pos + 1;
    }
  }
  EXPECT_TRUE(open.empty()) << "unclosed <" << (open.empty() ? "" : open.back()) << ">";
  EXPECT_EQ(opening, closing + self_closing);
  EXPECT_EQ(count(svg, "<svg"), 1u);
  EXPECT_EQ(count(svg, "</svg>"), 1u);
}

std::vector<Series> two_series() {
  return {
      {"train", "#1f77b4", false, {12.5, 8.0, 5.25, 4.0, 3.5}},
      {"test", "#d62728", true, {13.0, 9.5, 7.0}},
  };
}

TEST(SvgTest, IsAStandaloneSvgDocument) {
  const std::string svg = line_chart_svg("Error", "error (%)", two_series());
  EXPECT_THAT(svg, StartsWith("<svg"));
  EXPECT_THAT(svg, EndsWith("</svg>\n"));
  EXPECT_THAT(svg, HasSubstr("xmlns=\"http://www.w3.org/2000/svg\""));
  EXPECT_THAT(svg, HasSubstr("width=\"800\""));
  EXPECT_THAT(svg, HasSubstr("height=\"500\""));
  expect_well_formed(svg);
}

TEST(SvgTest, ContainsTitleLabelsAndAxisNames) {
  const std::string svg = line_chart_svg("MNIST 784-1024-10", "error (%)", two_series());
  EXPECT_THAT(svg, HasSubstr(">MNIST 784-1024-10</text>"));
  EXPECT_THAT(svg, HasSubstr(">error (%)</text>"));
  EXPECT_THAT(svg, HasSubstr(">epoch</text>"));
  EXPECT_THAT(svg, HasSubstr(">train</text>"));
  EXPECT_THAT(svg, HasSubstr(">test</text>"));
  EXPECT_THAT(svg, HasSubstr("stroke-dasharray")) << "the test series is dashed";
}

TEST(SvgTest, EscapesXmlSpecialCharacters) {
  std::vector<Series> series = {{"a<b & \"c\"", "red", false, {1, 2}}};
  const std::string svg = line_chart_svg("p > 0.5 & 'q'", "y<x", series);
  EXPECT_THAT(svg, HasSubstr("a&lt;b &amp; &quot;c&quot;"));
  EXPECT_THAT(svg, HasSubstr("p &gt; 0.5 &amp; &apos;q&apos;"));
  EXPECT_THAT(svg, HasSubstr("y&lt;x"));
  EXPECT_THAT(svg, Not(HasSubstr("a<b")));
  expect_well_formed(svg);
}

TEST(SvgTest, DrawsOneLinePerNonEmptySeries) {
  std::vector<Series> series = two_series();
  series.push_back({"empty", "green", false, {}});
  series.push_back({"all nan", "blue", false, {kNaN, kNaN}});
  series.push_back({"single", "black", false, {6.0}});
  const std::string svg = line_chart_svg("t", "y", series);
  EXPECT_EQ(count(svg, "<polyline"), 3u);
  EXPECT_EQ(count(svg, "<circle"), 1u) << "a single point gets a marker";
  for (const Series& s : series) EXPECT_THAT(svg, HasSubstr(">" + s.label + "</text>"));
  expect_well_formed(svg);
}

TEST(SvgTest, SkipsNaNValues) {
  const std::vector<Series> with_nan = {{"s", "red", false, {10, kNaN, 6, 4}}};
  const std::string svg = line_chart_svg("t", "y", with_nan);
  ASSERT_EQ(count(svg, "<polyline"), 1u);
  const std::size_t start = svg.find("points=\"", svg.find("<polyline")) + 8;
  const std::string points = svg.substr(start, svg.find('"', start) - start);
  EXPECT_EQ(count(points, ","), 3u) << points;
  EXPECT_THAT(svg, Not(HasSubstr("nan")));
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
  expect_well_formed(svg);
}

TEST(SvgTest, SkipsInfiniteValuesToo) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::string svg = line_chart_svg("t", "y", {{"s", "red", false, {inf, 3, -inf, 2}}});
  EXPECT_THAT(svg, Not(HasSubstr("inf")));
  EXPECT_EQ(count(svg, "<polyline"), 1u);
}

TEST(SvgTest, EmptyInputSaysNoData) {
  const std::string svg = line_chart_svg("nothing yet", "error (%)", {});
  EXPECT_THAT(svg, StartsWith("<svg"));
  EXPECT_THAT(svg, EndsWith("</svg>\n"));
  EXPECT_THAT(svg, HasSubstr(">no data</text>"));
  EXPECT_THAT(svg, HasSubstr(">nothing yet</text>"));
  EXPECT_EQ(count(svg, "<polyline"), 0u);
  EXPECT_EQ(count(svg, "<line"), 2u) << "the two axes";
  expect_well_formed(svg);
}

TEST(SvgTest, SeriesWithoutValuesSayNoDataButKeepLegend) {
  const std::string svg =
      line_chart_svg("t", "y", {{"a", "red", false, {}}, {"b", "blue", true, {kNaN}}});
  EXPECT_THAT(svg, HasSubstr(">no data</text>"));
  EXPECT_THAT(svg, HasSubstr(">a</text>"));
  EXPECT_THAT(svg, HasSubstr(">b</text>"));
  EXPECT_EQ(count(svg, "<polyline"), 0u);
  expect_well_formed(svg);
}

// The y tick labels, in order of appearance.
std::vector<double> y_ticks(const std::string& svg) {
  std::vector<double> ticks;
  const std::string marker = "text-anchor=\"end\"";
  for (auto pos = svg.find(marker); pos != std::string::npos; pos = svg.find(marker, pos + 1)) {
    const std::size_t start = svg.find('>', pos) + 1;
    ticks.push_back(std::stod(svg.substr(start, svg.find('<', start) - start)));
  }
  return ticks;
}

TEST(SvgTest, YRangeFollowsTheDataAndIsNeverNegative) {
  const std::vector<double> near_zero =
      y_ticks(line_chart_svg("t", "y", {{"s", "red", false, {0.5, 0.2, 0.1}}}));
  ASSERT_FALSE(near_zero.empty());
  EXPECT_GE(*std::min_element(near_zero.begin(), near_zero.end()), 0.0);
  EXPECT_LE(*std::max_element(near_zero.begin(), near_zero.end()), 0.6);

  const std::vector<double> high =
      y_ticks(line_chart_svg("t", "y", {{"s", "red", false, {90, 95, 92}}}));
  ASSERT_GE(high.size(), 3u);
  EXPECT_GE(*std::min_element(high.begin(), high.end()), 85.0) << "not anchored at zero";
  EXPECT_LE(*std::max_element(high.begin(), high.end()), 96.0);

  const std::vector<double> flat =
      y_ticks(line_chart_svg("t", "y", {{"s", "red", false, {1.25, 1.25}}}));
  EXPECT_GE(flat.size(), 2u) << "a flat series still gets a range";
}

TEST(SvgTest, XAxisRunsToTheLongestSeries) {
  std::vector<double> long_y(37, 5.0);
  const std::string svg =
      line_chart_svg("t", "y", {{"long", "red", false, long_y}, {"short", "blue", false, {1}}});
  EXPECT_THAT(svg, HasSubstr(">1</text>"));
  EXPECT_THAT(svg, HasSubstr(">35</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">40</text>")));
  expect_well_formed(svg);
}

// The value of attribute `name` in the element starting at `at`.
double attribute(const std::string& svg, std::size_t at, const std::string& name) {
  const std::size_t start = svg.find(" " + name + "=\"", at) + name.size() + 3;
  return std::stod(svg.substr(start, svg.find('"', start) - start));
}

// The y tick labels with their text's y position, bottom to top.
std::vector<std::pair<double, double>> y_ticks_at(const std::string& svg) {
  std::vector<std::pair<double, double>> ticks;
  const std::string marker = "text-anchor=\"end\"";
  for (auto pos = svg.find(marker); pos != std::string::npos; pos = svg.find(marker, pos + 1)) {
    const std::size_t element = svg.rfind("<text", pos);
    const std::size_t start = svg.find('>', pos) + 1;
    ticks.emplace_back(std::stod(svg.substr(start, svg.find('<', start) - start)),
                       attribute(svg, element, "y"));
  }
  return ticks;
}

// Whether step is 1, 2 or 5 times a power of ten.
bool one_two_five(double step) {
  const double magnitude = std::pow(10.0, std::floor(std::log10(step) + 1e-9));
  const double m = step / magnitude;
  return std::abs(m - 1) < 1e-6 || std::abs(m - 2) < 1e-6 || std::abs(m - 5) < 1e-6;
}

TEST(SvgTest, YTicksStepByOneTwoOrFiveAndTheAxisEndsOnTicksWithinZeroToHundred) {
  const std::vector<std::vector<double>> data = {
      {40.91, 14.63, 12.59, 11.63, 10.94, 10.51, 10.23, 10.16, 10.27, 10.19},  // error, one big
      {12.37, 11.36, 10.41, 10.05, 10.04, 9.87, 9.88},  // far from zero: not anchored there
      {0.5, 0.2, 0.1},
      {90, 95, 92},
      {99.2, 99.9, 97.3},
      {1.25, 1.25},
      {0.0012, 0.0031},
      {3.0, 7.0, 4.5, 6.25, 5.5}};
  for (const std::vector<double>& y : data) {
    const std::string svg = line_chart_svg("t", "error (%)", {{"s", "red", false, y}});
    const auto ticks = y_ticks_at(svg);
    ASSERT_GE(ticks.size(), 3u) << svg;
    const double step = ticks[1].first - ticks[0].first;
    EXPECT_TRUE(one_two_five(step)) << "step " << step << " for data from " << y[0];
    for (std::size_t i = 1; i < ticks.size(); ++i) {
      EXPECT_NEAR(ticks[i].first - ticks[i - 1].first, step, 1e-9 * std::abs(step) + 1e-12);
    }
    const auto [lo, hi] = std::minmax_element(y.begin(), y.end());
    EXPECT_GE(ticks.front().first, 0.0) << "an error below zero";
    EXPECT_LE(ticks.back().first, 100.0) << "an error above 100 %";
    EXPECT_LE(ticks.front().first, *lo);
    EXPECT_GE(ticks.back().first, *hi);
    // The axis ends on ticks: the lowest at the bottom of the plot, the highest at its top (the
    // labels sit 4 px below their tick).
    EXPECT_NEAR(ticks.front().second, 444, 0.05);
    EXPECT_NEAR(ticks.back().second, 64, 0.05);
  }
}

struct Rect {
  double x0, y0, x1, y1;
};

// The legend's box (the only element with a #999999 stroke).
Rect legend_box(const std::string& svg) {
  const std::size_t at = svg.rfind("<rect", svg.find("stroke=\"#999999\""));
  const double x = attribute(svg, at, "x"), y = attribute(svg, at, "y");
  return {x, y, x + attribute(svg, at, "width"), y + attribute(svg, at, "height")};
}

bool inside(const Rect& r, double x, double y) {
  return x >= r.x0 && x <= r.x1 && y >= r.y0 && y <= r.y1;
}

// Every point of every polyline, and ten points along each of its segments.
std::vector<std::pair<double, double>> plotted_points(const std::string& svg) {
  std::vector<std::pair<double, double>> out;
  for (auto at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    const std::size_t start = svg.find("points=\"", at) + 8;
    std::vector<std::pair<double, double>> line;
    for (std::size_t pos = start; svg[pos] != '"';) {
      const std::size_t comma = svg.find(',', pos);
      std::size_t end = comma + 1;
      while (svg[end] != ' ' && svg[end] != '"') ++end;
      line.emplace_back(std::stod(svg.substr(pos, comma - pos)),
                        std::stod(svg.substr(comma + 1, end - comma - 1)));
      pos = svg[end] == ' ' ? end + 1 : end;
    }
    for (std::size_t i = 0; i < line.size(); ++i) {
      out.push_back(line[i]);
      if (i == 0) continue;
      for (int k = 1; k < 10; ++k) {
        const double t = k / 10.0;
        out.emplace_back(line[i - 1].first + t * (line[i].first - line[i - 1].first),
                         line[i - 1].second + t * (line[i].second - line[i - 1].second));
      }
    }
  }
  return out;
}

TEST(SvgTest, LegendCoversNoPlottedPoint) {
  // Rising curves fill the top right, where the legend used to go; falling ones the top left; a
  // flat high line both top corners.
  const std::vector<std::vector<Series>> cases = {
      {{"train error of a long-named run", "red", false, {1, 2, 4, 8, 16, 32, 64}},
       {"test", "blue", true, {2, 3, 5, 9, 17, 33, 60}}},
      {{"falling", "red", false, {60, 30, 15, 8, 4, 2, 1}}},
      {{"high", "red", false, {50, 50, 49, 50, 50}}, {"low", "blue", false, {0, 1, 0, 1, 0}}},
  };
  for (const std::vector<Series>& series : cases) {
    const std::string svg = line_chart_svg("t", "error (%)", series);
    const Rect box = legend_box(svg);
    for (const auto& [x, y] : plotted_points(svg)) {
      EXPECT_FALSE(inside(box, x, y)) << "legend at " << box.x0 << "," << box.y0 << " covers " << x
                                      << "," << y << " of " << series[0].label;
    }
    expect_well_formed(svg);
  }
}

TEST(SvgTest, LegendGoesBelowThePlotWhenNoCornerIsFree) {
  // A zigzag over the whole range crosses every corner.
  std::vector<double> zigzag;
  for (int i = 0; i < 40; ++i) zigzag.push_back(i % 2 ? 100 : 0);
  const std::string svg = line_chart_svg("t", "error (%)", {{"zigzag", "red", false, zigzag}});
  const Rect box = legend_box(svg);
  EXPECT_GE(box.y0, 500) << "below the x-axis label";
  for (const auto& [x, y] : plotted_points(svg)) EXPECT_FALSE(inside(box, x, y));
  const std::size_t root = svg.find("<svg");
  EXPECT_GE(attribute(svg, root, "height"), box.y1) << "the document grows to hold it";
  expect_well_formed(svg);
}

TEST(SvgTest, ReliabilityLegendCoversNoBar) {
  // Well calibrated: bars rise to the right, as real diagrams do.
  std::vector<double> acc;
  for (int b = 0; b < 15; ++b) acc.push_back((b + 0.5) / 15);
  const std::string svg =
      reliability_svg("r", {{"weight scaling (ECE 0.0154)", "#1f77b4", acc},
                            {"MC dropout, T = 100 (ECE 0.0203)", "#d62728", acc}});
  const Rect box = legend_box(svg);
  std::size_t bars = 0;
  for (auto at = svg.find("fill-opacity=\"0.75\""); at != std::string::npos;
       at = svg.find("fill-opacity=\"0.75\"", at + 1)) {
    const std::size_t r = svg.rfind("<rect", at);
    const Rect bar{attribute(svg, r, "x"), attribute(svg, r, "y"),
                   attribute(svg, r, "x") + attribute(svg, r, "width"),
                   attribute(svg, r, "y") + attribute(svg, r, "height")};
    ++bars;
    EXPECT_FALSE(bar.x0 < box.x1 && box.x0 < bar.x1 && bar.y0 < box.y1 && box.y0 < bar.y1)
        << "legend overlaps the bar at x = " << bar.x0;
  }
  EXPECT_EQ(bars, 30u);
  expect_well_formed(svg);
}

}  // namespace
}  // namespace dropkit::report
