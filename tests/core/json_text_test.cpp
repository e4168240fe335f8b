// The one strict JSON reading (core/json_text.h): depth, duplicate keys, and messages that name
// the source and the place, never the JSON library's own text.
#include "dropkit/core/json_text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <stdexcept>
#include <string>

#include "dropkit/core/atomic_file.h"
#include "support/temp_dir.h"

namespace dropkit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string error_of(const std::string& text) {
  try {
    parse_json(text, "f.json");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(JsonText, ParsesWhatDropkitWrites) {
  const auto j = parse_json(R"({"layers": [{"kind": "dense", "units": 4, "x": [[1], {}]}]})", "f");
  EXPECT_EQ(j["layers"][0]["units"], 4);
}

TEST(JsonText, NestingBeyondTheLimitIsRefusedWhileReadingAtAnyDepth) {
  EXPECT_NO_THROW(
      parse_json(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']'), "f"));
  for (const std::size_t depth :
       {std::size_t{kMaxJsonDepth} + 1, std::size_t{100000}, std::size_t{1000000}}) {
    for (const char open : {'[', '{'}) {
      std::string text;
      for (std::size_t i = 0; i < depth; ++i) text += open == '[' ? "[" : "{\"a\":";
      text += "1";
      for (std::size_t i = 0; i < depth; ++i) text += open == '[' ? "]" : "}";
      const std::string e = error_of(text);
      EXPECT_THAT(e, HasSubstr("f.json: JSON nested more than 64 levels deep")) << depth;
      EXPECT_LT(e.size(), 200u);
    }
  }
}

TEST(JsonText, AKeyTwiceIsRefusedNamingTheKeyAndItsObject) {
  EXPECT_THAT(error_of(R"({"a": 1, "a": 2})"),
              HasSubstr("f.json: key 'a' given twice in the top-level object"));
  EXPECT_THAT(error_of(R"({"layers": [{"kind": "x"}, {"kind": "dropout", "kind": "dense"}]})"),
              HasSubstr("f.json: key 'kind' given twice in layers[1]"));
  EXPECT_THAT(error_of(R"([[1, 2], {"b": {"c": 1, "c": 1}}])"),
              HasSubstr("key 'c' given twice in [1].b"));
  // The same key in different objects is fine.
  EXPECT_NO_THROW(parse_json(R"([{"a": 1}, {"a": 2, "b": {"a": 3}}])", "f"));
}

TEST(JsonText, SyntaxErrorsNameTheLineAndColumnWithoutTheLibrarysTag) {
  const std::string e = error_of("[\n  1,\n  x\n]");
  EXPECT_THAT(e, HasSubstr("f.json: not valid JSON at line 3, column 3"));
  EXPECT_THAT(e, Not(HasSubstr("json.exception")));
  EXPECT_THAT(error_of(""), HasSubstr("line 1, column 1"));
  EXPECT_THAT(error_of("1e999"), HasSubstr("f.json: not usable JSON"));
  EXPECT_THAT(error_of("1e999"), Not(HasSubstr("json.exception")));
  // What the parser last read is cut short: one line, whatever the file.
  EXPECT_LT(error_of("\"" + std::string(100000, 'a')).size(), 300u);
}

TEST(JsonText, ExcerptsAndKeysStayShort) {
  EXPECT_EQ(json_excerpt(nlohmann::json(std::string(1000, 'x'))).size(), 60u);
  EXPECT_EQ(json_excerpt(nlohmann::json::array({1, 2})), "[1,2]");
  const std::vector<std::string> known = {"a", "b"};
  try {
    check_known_keys(nlohmann::json{{"a", 1}, {"c", 2}}, known, "x: ");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_STREQ(e.what(), "x: unknown key 'c' (valid: a, b)");
  }
}

TEST(ReadFile, NamedPipesAndDirectoriesAreRefusedAtOnce) {
  const test::TempDir tmp("dropkit_json_text_test");
  const auto fifo = tmp.path() / "pipe";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // Without a writer, an open that waited would never return: this returns at once.
  try {
    read_file(fifo);
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("it is not a regular file (a named pipe"));
  }
  EXPECT_THROW(read_file(tmp.path()), std::runtime_error);
  write_file_atomic(tmp.path() / "f", "abc");
  EXPECT_EQ(read_file(tmp.path() / "f"), "abc");
}

TEST(SameFile, LinksAndDotsAreSeenThrough) {
  const test::TempDir tmp("dropkit_same_file_test");
  const auto a = tmp.path() / "a", link = tmp.path() / "l";
  write_file_atomic(a, "x");
  std::filesystem::create_symlink(a, link);
  EXPECT_TRUE(same_file(a, link));
  EXPECT_TRUE(same_file(a, tmp.path() / "." / "a"));
  EXPECT_TRUE(same_file(tmp.path() / "new", tmp.path() / ".." / tmp.path().filename() / "new"));
  EXPECT_FALSE(same_file(a, tmp.path() / "b"));
  const std::vector<NamedPath> in = {{"in", a}}, out = {{"out", link}};
  EXPECT_THROW(check_outputs_distinct(in, out), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit
