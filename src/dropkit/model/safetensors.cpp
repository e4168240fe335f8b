#include "dropkit/model/safetensors.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dropkit/core/json_text.h"

namespace dropkit::model {
namespace {

// Tensor data is copied as raw bytes, which is only the safetensors (little-endian) layout on a
// little-endian machine.
static_assert(std::endian::native == std::endian::little,
              "safetensors stores little-endian floats; dropkit copies them byte for byte");
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559);

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr std::size_t kLengthBytes = 8;
// The reference implementation's limit: large enough for any real header, small enough that a
// corrupt length cannot make the parser chew through a huge file.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;
constexpr char kMetadataKey[] = "__metadata__";

template <typename... Args>
[[noreturn]] void fail(const std::string& source, fmt::format_string<Args...> format,
                       Args&&... args) {
  throw FormatError(
      fmt::format("{}: {}", source, fmt::format(format, std::forward<Args>(args)...)));
}

// A tensor name as it appears in messages: JSON-quoted, so control characters and quotes cannot
// break the one-line message.
std::string quoted(const std::string& name) {
  return json(name).dump();
}

// "[2, 3]". (Not fmt::join: with fmt 9, GCC 12 -O3 warns falsely inside its spec parser.)
std::string shape_str(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::uint64_t read_u64_le(const char* p) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(p[i]);
  return value;
}

// One tensor entry of the header, validated but not yet loaded.
struct Entry {
  std::string name;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// The elements of `shape`, or nothing if the count does not fit in 64 bits (a dimension of zero
// makes the count zero whatever the others are).
std::optional<std::uint64_t> element_count(const std::vector<std::int64_t>& shape) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) {
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

std::vector<std::int64_t> parse_shape(const json& value, const std::string& source,
                                      const std::string& name) {
  if (!value.is_array()) fail(source, "tensor {}: shape is not an array", quoted(name));
  std::vector<std::int64_t> shape;
  shape.reserve(value.size());
  for (const json& dim : value) {
    if (dim.is_number_unsigned()) {
      const auto d = dim.get<std::uint64_t>();
      if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        fail(source, "tensor {}: dimension {} is too large", quoted(name), d);
      }
      shape.push_back(static_cast<std::int64_t>(d));
    } else if (dim.is_number_integer()) {
      fail(source, "tensor {}: negative dimension {} in shape", quoted(name),
           dim.get<std::int64_t>());
    } else {
      fail(source, "tensor {}: shape has a dimension that is not an integer: {}", quoted(name),
           json_excerpt(dim));
    }
  }
  return shape;
}

Entry parse_entry(const std::string& name, const json& value, std::uint64_t data_size,
                  const std::string& source) {
  const std::string q = quoted(name);
  if (!value.is_object()) fail(source, "tensor {}: entry is not an object", q);
  for (const char* key : {"dtype", "shape", "data_offsets"}) {
    if (!value.contains(key)) fail(source, "tensor {}: missing {}", q, key);
  }

  const json& dtype = value["dtype"];
  if (!dtype.is_string()) fail(source, "tensor {}: dtype is not a string", q);
  if (dtype.get_ref<const std::string&>() != "F32") {
    fail(source, "tensor {}: dtype {} is not supported (only F32 is supported)", q,
         json_excerpt(dtype));
  }

  Entry entry;
  entry.name = name;
  entry.shape = parse_shape(value["shape"], source, name);

  const json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_integer() ||
      !offsets[1].is_number_integer()) {
    fail(source, "tensor {}: data_offsets {} is not an array of two integers", q,
         json_excerpt(offsets));
  }
  if (!offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
    fail(source, "tensor {}: data_offsets {} are negative", q, json_excerpt(offsets));
  }
  entry.begin = offsets[0].get<std::uint64_t>();
  entry.end = offsets[1].get<std::uint64_t>();
  if (entry.begin > entry.end) {
    fail(source, "tensor {}: data_offsets [{}, {}] begin after they end", q, entry.begin,
         entry.end);
  }
  if (entry.end > data_size) {
    fail(source, "tensor {}: data_offsets [{}, {}] exceed the {}-byte data section", q, entry.begin,
         entry.end, data_size);
  }

  const auto numel = element_count(entry.shape);
  const std::uint64_t span = entry.end - entry.begin;
  if (!numel || *numel > std::numeric_limits<std::uint64_t>::max() / 4 || span != 4 * *numel) {
    fail(source, "tensor {}: data_offsets [{}, {}] span {} bytes but shape {} needs {}", q,
         entry.begin, entry.end, span, shape_str(entry.shape),
         numel && *numel <= std::numeric_limits<std::uint64_t>::max() / 4
             ? fmt::format("{} bytes", 4 * *numel)
             : std::string("more than 2^64 bytes"));
  }
  return entry;
}

std::map<std::string, std::string> parse_metadata(const json& value, const std::string& source) {
  if (!value.is_object()) fail(source, "{} is not an object", kMetadataKey);
  std::map<std::string, std::string> metadata;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) {
      fail(source, "{} value for {} is not a string: {}", kMetadataKey, quoted(key),
           json_excerpt(item));
    }
    metadata.emplace(key, item.get<std::string>());
  }
  return metadata;
}

// Every byte of the data section must belong to exactly one tensor.
void check_layout(std::vector<Entry>& entries, std::uint64_t data_size, const std::string& source) {
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::uint64_t covered = 0;    // end of the data covered so far
  const Entry* last = nullptr;  // the entry that reaches `covered`
  for (const Entry& entry : entries) {
    if (entry.begin < covered) {
      fail(source, "tensors {} and {} overlap", quoted(last->name), quoted(entry.name));
    }
    if (entry.begin > covered) {
      fail(source, "{} bytes before tensor {} are not covered by any tensor", entry.begin - covered,
           quoted(entry.name));
    }
    if (entry.end > covered || last == nullptr) {
      covered = entry.end;
      last = &entry;
    }
  }
  if (covered < data_size) {
    fail(source, "{} trailing bytes after the last tensor", data_size - covered);
  }
}

}  // namespace

std::string encode_safetensors(const std::vector<TensorView>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  ordered_json header = ordered_json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  std::set<std::string_view> names;
  std::uint64_t offset = 0;
  for (const TensorView& t : tensors) {
    if (t.name == kMetadataKey) {
      throw std::invalid_argument(
          fmt::format("encode_safetensors: {} is a reserved name", kMetadataKey));
    }
    if (!names.insert(t.name).second) {
      throw std::invalid_argument(
          fmt::format("encode_safetensors: duplicate tensor name {}", quoted(t.name)));
    }
    if (std::any_of(t.shape.begin(), t.shape.end(), [](std::int64_t d) { return d < 0; })) {
      throw std::invalid_argument(fmt::format("encode_safetensors: tensor {} has shape {}",
                                              quoted(t.name), shape_str(t.shape)));
    }
    const auto numel = element_count(t.shape);
    if (!numel || *numel != t.data.size()) {
      throw std::invalid_argument(
          fmt::format("encode_safetensors: tensor {} has {} values for shape {}", quoted(t.name),
                      t.data.size(), shape_str(t.shape)));
    }
    const std::uint64_t bytes = 4 * *numel;
    header[t.name] = {
        {"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }

  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::type_error&) {
    throw std::invalid_argument(
        "encode_safetensors: a tensor name or metadata string is not valid UTF-8");
  }
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(kLengthBytes + text.size() + offset);
  const std::uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((length >> (8 * i)) & 0xFF));
  out += text;
  for (const TensorView& t : tensors) {
    out.append(reinterpret_cast<const char*>(t.data.data()), t.data.size_bytes());
  }
  return out;
}

Safetensors decode_safetensors(std::string_view bytes, const std::string& source) {
  if (bytes.size() < kLengthBytes) {
    fail(source, "file is {} bytes, too short for the 8-byte header length", bytes.size());
  }
  const std::uint64_t header_size = read_u64_le(bytes.data());
  const std::uint64_t remaining = bytes.size() - kLengthBytes;
  if (header_size > kMaxHeaderBytes) {
    fail(source, "header length {} exceeds the limit of {} bytes", header_size, kMaxHeaderBytes);
  }
  if (header_size > remaining) {
    fail(source, "header length {} exceeds the {} bytes that follow it (truncated file?)",
         header_size, remaining);
  }

  json header;
  try {
    // Strict (core/json_text.h): nesting depth, no tensor or metadata key twice.
    header = parse_json(bytes.substr(kLengthBytes, header_size), "header");
  } catch (const std::invalid_argument& e) {
    fail(source, "{}", e.what());
  }
  if (!header.is_object()) fail(source, "header is not a JSON object");

  const std::string_view data = bytes.substr(kLengthBytes + header_size);
  Safetensors out;
  std::vector<Entry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == kMetadataKey) {
      out.metadata = parse_metadata(value, source);
    } else {
      entries.push_back(parse_entry(key, value, data.size(), source));
    }
  }
  check_layout(entries, data.size(), source);

  for (const Entry& entry : entries) {
    Tensor tensor{Shape(entry.shape)};
    if (tensor.numel() != 0) {
      std::memcpy(tensor.data(), data.data() + entry.begin, entry.end - entry.begin);
    }
    out.tensors.emplace(entry.name, std::move(tensor));
  }
  return out;
}

}  // namespace dropkit::model
