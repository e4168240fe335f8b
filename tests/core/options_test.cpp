// Option references in library messages (core/options.h): `name` in backquotes, spelled by each
// front end its own way.
#include "dropkit/core/options.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace dropkit {
namespace {

std::string upper(std::string_view name) {
  std::string s(name);
  for (char& c : s) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return "<" + s + ">";
}

TEST(OptionRef, IsTheNameInBackquotesAndTheCliSpellsItAsAFlag) {
  EXPECT_EQ(option_ref("train_size"), "`train_size`");
  EXPECT_EQ(flag_spelling("train_size"), "--train-size");
  EXPECT_EQ(spell_options("`train_size` 351 is more than ... after `val` and `exclude_classes`",
                          flag_spelling),
            "--train-size 351 is more than ... after --val and --exclude-classes");
  EXPECT_EQ(spell_options("`a` `b2_c`", upper), "<A> <B2_C>");
}

TEST(OptionRef, OnlySnakeCaseNamesAreReferences) {
  // Quoted text that is not an option name, a lone backquote and the empty pair stay as they are.
  for (const char* text : {"run `dropkit predict` first", "a ` alone", "``", "`Net`", "`1a`",
                           "`dense:4`", "no quotes at all", ""}) {
    EXPECT_EQ(spell_options(text, flag_spelling), text) << text;
  }
  EXPECT_EQ(spell_options("`x` then `dropkit eval` then `y", flag_spelling),
            "--x then `dropkit eval` then `y");
}

}  // namespace
}  // namespace dropkit
