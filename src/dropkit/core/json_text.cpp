#include "dropkit/core/json_text.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <vector>

#include <fmt/format.h>

#include "dropkit/core/options.h"

namespace dropkit {
namespace {

using json = nlohmann::json;

// A key or string shown in a message: at most 40 characters, printable ASCII only (the parser
// has checked it is UTF-8, but a message is one short line).
std::string shown(std::string_view s) {
  std::string out;
  for (const char c : s.substr(0, 40)) {
    out += (c >= 0x20 && c <= 0x7E) ? c : '?';
  }
  if (s.size() > 40) out += "...";
  return out;
}

// Where the parser is: one frame per open object or array.
struct Frame {
  bool array = false;
  std::size_t index = 0;  // arrays: the element being read
  std::string key;        // objects: the key being read
  std::set<std::string> keys;
};

std::string path_of(const std::vector<Frame>& frames) {
  std::string path;
  for (std::size_t i = 0; i + 1 < frames.size(); ++i) {
    const Frame& f = frames[i];
    if (f.array) {
      path += fmt::format("[{}]", f.index);
    } else {
      if (!path.empty()) path += '.';
      path += shown(f.key);
    }
  }
  return path.empty() ? "the top-level object" : path;
}

// The parser's description of a syntax error without its "[json.exception...] parse error at
// line L, column C: " prefix, and with what it last read cut short.
std::string syntax_problem(const json::parse_error& e) {
  std::string what = e.what();
  const auto colon = what.find(": ", what.find("column"));
  if (colon != std::string::npos) what = what.substr(colon + 2);
  const auto read = what.find("last read: '");
  if (read != std::string::npos) {
    const auto begin = read + 12;
    const auto end = what.find("'", begin);
    if (end != std::string::npos && end - begin > 40) {
      what = what.substr(0, begin) + shown(what.substr(begin, end - begin)) + what.substr(end);
    }
  }
  for (const char* prefix :
       {"syntax error while parsing value - ", "syntax error while parsing "}) {
    if (what.starts_with(prefix)) return what.substr(std::string_view(prefix).size());
  }
  return what;
}

}  // namespace

json parse_json(std::string_view text, const std::string& source) {
  std::vector<Frame> frames;
  const auto after_value = [&] {
    if (!frames.empty() && frames.back().array) ++frames.back().index;
  };
  const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (frames.size() >= static_cast<std::size_t>(kMaxJsonDepth)) {
          throw std::invalid_argument(
              fmt::format("{}: JSON nested more than {} levels deep (dropkit's files need a few)",
                          source, kMaxJsonDepth));
        }
        frames.emplace_back().array = event == json::parse_event_t::array_start;
        break;
      case json::parse_event_t::key: {
        std::string key = parsed.get<std::string>();
        if (!frames.back().keys.insert(key).second) {
          // (path_of leaves out the innermost frame: the path is the object's own.)
          throw std::invalid_argument(
              fmt::format("{}: key '{}' given twice in {}", source, shown(key), path_of(frames)));
        }
        frames.back().key = std::move(key);
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames.pop_back();
        after_value();
        break;
      case json::parse_event_t::value:
        after_value();
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), check);
  } catch (const json::parse_error& e) {
    // e.byte is 1-based: the byte after the last one read.
    const std::size_t at = std::min<std::size_t>(e.byte == 0 ? 0 : e.byte - 1, text.size());
    const std::string_view before = text.substr(0, at);
    const std::size_t line =
        1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
    const std::size_t nl = before.rfind('\n');
    const std::size_t column = at - (nl == std::string_view::npos ? 0 : nl + 1) + 1;
    throw std::invalid_argument(fmt::format("{}: not valid JSON at line {}, column {}: {}", source,
                                            line, column, syntax_problem(e)));
  } catch (const json::exception& e) {
    // Valid syntax the parser still refuses: a number beyond a double's range ("492e812").
    std::string what = e.what();
    if (what.starts_with("[json.exception.")) what = what.substr(what.find("] ") + 2);
    throw std::invalid_argument(fmt::format("{}: not usable JSON: {}", source, shown(what)));
  }
}

const char* json_type_name(const json& value) {
  switch (value.type()) {
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::string:
      return "a string";
    case json::value_t::boolean:
      return "true or false";
    case json::value_t::null:
      return "null";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return "a number";
    default:
      return "a value";
  }
}

std::string json_excerpt(const json& value) {
  std::string text;
  try {
    text = value.dump(-1, ' ', /*ensure_ascii=*/true);
  } catch (const json::exception&) {
    return json_type_name(value);  // (a string that is not UTF-8)
  }
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

void check_known_keys(const json& object, std::span<const std::string> known,
                      const std::string& owner) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      throw std::invalid_argument(
          fmt::format("{}unknown key '{}' (valid: {})", owner, shown(key), join(known)));
    }
  }
}

}  // namespace dropkit
