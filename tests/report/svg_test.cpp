#include "dropkit/report/svg.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <cmath>
#include <limits>
#include <string>
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
  EXPECT_GE(*std::min_element(high.begin(), high.end()), 89.0) << "not anchored at zero";
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

}  // namespace
}  // namespace dropkit::report
