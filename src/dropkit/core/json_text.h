// JSON as dropkit reads it from files a person or another program may have written: --net files,
// checkpoint metadata, metrics.jsonl lines, safetensors headers.
//
// One strict reading for all of them, so that a hostile or damaged file gets the same answer
// everywhere: at most kMaxJsonDepth levels of nesting (a file nested 100,000 deep is refused
// while it is read, before a tree of that depth exists), no key twice in one object (JSON
// leaves duplicates undefined; nlohmann would keep the last silently), and every message names
// the source, where in it (line and column, or the key's path) and what was expected -- never
// the JSON library's own exception text.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace dropkit {

// Deeper than any file dropkit writes or reads (a layer list is 4 levels deep).
inline constexpr int kMaxJsonDepth = 64;

// `text` as one JSON value. std::invalid_argument "<source>: <problem>" for a syntax error
// ("line 3, column 7: ..."), nesting deeper than kMaxJsonDepth, or a key given twice in an
// object (naming the key and the object's path, e.g. "layers[0]").
nlohmann::json parse_json(std::string_view text, const std::string& source);

// "an object", "an array", "a string", "a number", "true or false", "null": for messages.
const char* json_type_name(const nlohmann::json& value);

// A value as a message shows it: its JSON text, cut to at most 60 characters ("..." marks a
// cut), so that a value of any size from a hostile file still makes a one-line message.
std::string json_excerpt(const nlohmann::json& value);

// Throws std::invalid_argument "<owner>unknown key '<key>' (valid: a, b, ...)" for the first
// key of `object` (a JSON object) that is not in `known`.
void check_known_keys(const nlohmann::json& object, std::span<const std::string> known,
                      const std::string& owner);

}  // namespace dropkit
