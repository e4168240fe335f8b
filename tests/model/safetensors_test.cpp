#include "dropkit/model/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace dropkit::model {
namespace {

using testing::HasSubstr;
using testing::StartsWith;

constexpr char kSource[] = "/ckpt/model.safetensors";

std::string u64_le(std::uint64_t value) {
  std::string out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xFF));
  return out;
}

// A file with the given header text (unpadded, taken as is) followed by `data_bytes` bytes.
std::string raw_file(const std::string& header, std::size_t data_bytes) {
  return u64_le(header.size()) + header + std::string(data_bytes, '\x01');
}

std::uint64_t header_length(const std::string& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[i]);
  return n;
}

nlohmann::ordered_json header_of(const std::string& file) {
  return nlohmann::ordered_json::parse(file.substr(8, header_length(file)));
}

// The FormatError message for decoding `bytes`, recording a failure if nothing (or something
// else) is thrown.
std::string error_of(const std::string& bytes) {
  try {
    decode_safetensors(bytes, kSource);
  } catch (const FormatError& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a FormatError";
  return "";
}

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size_bytes()) == 0);
}

TEST(SafetensorsTest, RoundTripsTensorsAndMetadata) {
  const std::vector<float> w = {1.5f, -2.0f, 0.0f, -0.0f, 3.25e-20f, 7e30f};
  const std::vector<float> b = {std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(),
                                std::numeric_limits<float>::denorm_min()};
  const std::vector<float> scalar = {42.0f};
  const std::vector<TensorView> tensors = {
      {"layers.0.weight", {2, 3}, w},
      {"layers.0.bias", {3}, b},
      {"empty", {0, 4}, {}},
      {"scalar", {}, scalar},
  };
  const std::map<std::string, std::string> metadata = {{"epoch", "12"}, {"format", "dropkit"}};

  const std::string file = encode_safetensors(tensors, metadata);
  const Safetensors decoded = decode_safetensors(file, kSource);

  EXPECT_EQ(decoded.metadata, metadata);
  ASSERT_EQ(decoded.tensors.size(), tensors.size());
  for (const TensorView& t : tensors) {
    SCOPED_TRACE(t.name);
    ASSERT_EQ(decoded.tensors.count(t.name), 1u);
    const Tensor& got = decoded.tensors.at(t.name);
    EXPECT_EQ(got.shape(), Shape(t.shape));
    EXPECT_TRUE(same_bits(got.span(), t.data));
  }
  EXPECT_EQ(decoded.tensors.at("scalar").shape().rank(), 0u);
  EXPECT_EQ(decoded.tensors.at("empty").numel(), 0u);
}

TEST(SafetensorsTest, WritesTensorsContiguouslyInGivenOrder) {
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6};
  const std::string file =
      encode_safetensors({{"z", {2, 2}, a}, {"e", {0}, {}}, {"a", {2}, b}}, {{"k", "v"}});
  const auto header = header_of(file);
  std::vector<std::string> keys;
  for (const auto& [key, value] : header.items()) keys.push_back(key);
  EXPECT_THAT(keys, testing::ElementsAre("__metadata__", "z", "e", "a"));
  EXPECT_EQ(header["z"]["dtype"], "F32");
  EXPECT_EQ(header["z"]["shape"], nlohmann::ordered_json({2, 2}));
  EXPECT_EQ(header["z"]["data_offsets"], nlohmann::ordered_json({0, 16}));
  EXPECT_EQ(header["e"]["data_offsets"], nlohmann::ordered_json({16, 16}));
  EXPECT_EQ(header["a"]["data_offsets"], nlohmann::ordered_json({16, 24}));
  EXPECT_EQ(file.size(), 8 + header_length(file) + 24);
  float tail[2];
  std::memcpy(tail, file.data() + file.size() - 8, 8);
  EXPECT_EQ(tail[0], 5.0f);
  EXPECT_EQ(tail[1], 6.0f);
}

TEST(SafetensorsTest, OmitsEmptyMetadata) {
  const std::string file = encode_safetensors({}, {});
  EXPECT_FALSE(header_of(file).contains("__metadata__"));
  const Safetensors decoded = decode_safetensors(file, kSource);
  EXPECT_TRUE(decoded.tensors.empty());
  EXPECT_TRUE(decoded.metadata.empty());
}

TEST(SafetensorsTest, HeaderLengthIsAMultipleOfEightPaddedWithSpaces) {
  const std::vector<float> one = {1.0f};
  for (std::size_t name_length = 1; name_length <= 16; ++name_length) {
    SCOPED_TRACE(name_length);
    const std::string file = encode_safetensors({{std::string(name_length, 'n'), {1}, one}}, {});
    const std::uint64_t n = header_length(file);
    EXPECT_EQ(n % 8, 0u);
    const std::string header = file.substr(8, n);
    const std::size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
    EXPECT_LT(n - 1 - last, 8u) << "at most 7 bytes of padding";
    EXPECT_NO_THROW(decode_safetensors(file, kSource));
  }
}

TEST(SafetensorsTest, EncodeRejectsInconsistentInput) {
  const std::vector<float> three = {1, 2, 3};
  EXPECT_THROW(encode_safetensors({{"a", {2, 2}, three}}, {}), std::invalid_argument);
  EXPECT_THROW(encode_safetensors({{"a", {-3}, three}}, {}), std::invalid_argument);
  EXPECT_THROW(encode_safetensors({{"a", {3}, three}, {"a", {3}, three}}, {}),
               std::invalid_argument);
  EXPECT_THROW(encode_safetensors({{"__metadata__", {3}, three}}, {}), std::invalid_argument);
  EXPECT_THROW(encode_safetensors({{"bad\xff", {3}, three}}, {}), std::invalid_argument);
}

TEST(SafetensorsTest, MessagesNameTheSource) {
  EXPECT_THAT(error_of("abc"), StartsWith(std::string(kSource) + ": "));
}

TEST(SafetensorsTest, RejectsFileShorterThanLength) {
  EXPECT_THAT(error_of(""), HasSubstr("file is 0 bytes, too short"));
  EXPECT_THAT(error_of("1234567"), HasSubstr("file is 7 bytes, too short"));
}

TEST(SafetensorsTest, RejectsHeaderLengthBeyondFile) {
  EXPECT_THAT(error_of(u64_le(100) + "{}"),
              HasSubstr("header length 100 exceeds the 2 bytes that follow it"));
  EXPECT_THAT(error_of(u64_le(~std::uint64_t{0}) + "{}"), HasSubstr("exceeds the limit"));
  // Above the 100 MB cap even when the file is (claimed to be) big enough.
  EXPECT_THAT(error_of(u64_le(100'000'001) + "{}"),
              HasSubstr("header length 100000001 exceeds the limit of 100000000 bytes"));
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotAJsonObject) {
  EXPECT_THAT(error_of(raw_file("{\"a\":", 0)),
              HasSubstr("header: not valid JSON at line 1, column"));
  EXPECT_THAT(error_of(raw_file("", 0)), HasSubstr("header: not valid JSON at line 1, column"));
  EXPECT_THAT(error_of(raw_file("{} x", 0)), HasSubstr("header: not valid JSON at line 1, column"));
  EXPECT_THAT(error_of(raw_file("[1, 2]", 0)), HasSubstr("header is not a JSON object"));
  EXPECT_THAT(error_of(raw_file("\"str\"", 0)), HasSubstr("header is not a JSON object"));
  // Syntax the parser accepts but cannot represent (found by the checkpoint fuzzer: it escaped
  // as nlohmann's out_of_range).
  EXPECT_THAT(error_of(raw_file("{\"a\": 492e812}", 0)), HasSubstr("header: not usable JSON"));
}

TEST(SafetensorsTest, RejectsMalformedTensorEntries) {
  struct Case {
    std::string header;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {R"({"a": 3})", R"(tensor "a": entry is not an object)"},
      {R"({"a": {"shape": [1], "data_offsets": [0, 4]}})", R"(tensor "a": missing dtype)"},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 4]}})", R"(tensor "a": missing shape)"},
      {R"({"a": {"dtype": "F32", "shape": [1]}})", R"(tensor "a": missing data_offsets)"},
      {R"({"a": {"dtype": 32, "shape": [1], "data_offsets": [0, 4]}})", "dtype is not a string"},
      {R"({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}})", "shape is not an array"},
      {R"({"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}})",
       "shape has a dimension that is not an integer"},
      {R"({"a": {"dtype": "F32", "shape": ["1"], "data_offsets": [0, 4]}})",
       "shape has a dimension that is not an integer"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}})",
       "is not an array of two integers"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": ["0", "4"]}})",
       "is not an array of two integers"},
      {R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": {"begin": 0}}})",
       "is not an array of two integers"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header);
    EXPECT_THAT(error_of(raw_file(c.header, 4)), HasSubstr(c.expected));
  }
}

TEST(SafetensorsTest, RejectsDtypesOtherThanF32) {
  for (const std::string dtype : {"F16", "BF16", "F64", "I32", "f32"}) {
    SCOPED_TRACE(dtype);
    const std::string header =
        R"({"a": {"dtype": ")" + dtype + R"(", "shape": [1], "data_offsets": [0, 4]}})";
    EXPECT_THAT(error_of(raw_file(header, 4)), HasSubstr("only F32 is supported"));
  }
}

TEST(SafetensorsTest, RejectsNegativeAndHugeDimensions) {
  EXPECT_THAT(
      error_of(raw_file(R"({"a": {"dtype": "F32", "shape": [2, -1], "data_offsets": [0, 4]}})", 4)),
      HasSubstr("negative dimension -1"));
  EXPECT_THAT(
      error_of(raw_file(
          R"({"a": {"dtype": "F32", "shape": [18446744073709551615], "data_offsets": [0, 4]}})",
          4)),
      HasSubstr("dimension 18446744073709551615 is too large"));
  EXPECT_THAT(
      error_of(raw_file(
          R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}})",
          4)),
      HasSubstr("more than 2^64 bytes"));
}

TEST(SafetensorsTest, RejectsBadDataOffsets) {
  auto entry = [](const std::string& offsets, const std::string& shape = "[1]") {
    return R"({"a": {"dtype": "F32", "shape": )" + shape + R"(, "data_offsets": )" + offsets + "}}";
  };
  EXPECT_THAT(error_of(raw_file(entry("[-4, 0]"), 4)), HasSubstr("are negative"));
  EXPECT_THAT(error_of(raw_file(entry("[4, 0]"), 4)), HasSubstr("[4, 0] begin after they end"));
  EXPECT_THAT(error_of(raw_file(entry("[0, 8]"), 4)),
              HasSubstr("[0, 8] exceed the 4-byte data section"));
  EXPECT_THAT(error_of(raw_file(entry("[0, 4]", "[2]"), 4)),
              HasSubstr("span 4 bytes but shape [2] needs 8 bytes"));
  EXPECT_THAT(error_of(raw_file(entry("[0, 8]", "[1]"), 8)),
              HasSubstr("span 8 bytes but shape [1] needs 4 bytes"));
  EXPECT_THAT(error_of(raw_file(entry("[0, 4]", "[0, 3]"), 4)),
              HasSubstr("span 4 bytes but shape [0, 3] needs 0 bytes"));
}

TEST(SafetensorsTest, RejectsOverlappingTensors) {
  const std::string header = R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                             R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})";
  EXPECT_THAT(error_of(raw_file(header, 12)), HasSubstr(R"(tensors "a" and "b" overlap)"));
  const std::string same = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                           R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
  EXPECT_THAT(error_of(raw_file(same, 4)), HasSubstr("overlap"));
}

TEST(SafetensorsTest, RejectsBytesCoveredByNoTensor) {
  const std::string one = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})";
  EXPECT_THAT(error_of(raw_file(one, 8)), HasSubstr("4 trailing bytes"));
  EXPECT_THAT(error_of(raw_file("{}", 3)), HasSubstr("3 trailing bytes"));
  const std::string gap = R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                          R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})";
  EXPECT_THAT(error_of(raw_file(gap, 12)),
              HasSubstr(R"(4 bytes before tensor "b" are not covered by any tensor)"));
}

TEST(SafetensorsTest, RejectsBadMetadata) {
  EXPECT_THAT(error_of(raw_file(R"({"__metadata__": {"epoch": 3}})", 0)),
              HasSubstr(R"(__metadata__ value for "epoch" is not a string)"));
  EXPECT_THAT(error_of(raw_file(R"({"__metadata__": ["x"]})", 0)),
              HasSubstr("__metadata__ is not an object"));
  const Safetensors ok =
      decode_safetensors(raw_file(R"({"__metadata__": {"k": "v"}})", 0), kSource);
  EXPECT_EQ(ok.metadata.at("k"), "v");
}

TEST(SafetensorsTest, AcceptsUnpaddedHeaderFromOtherWriters) {
  const float value = 2.5f;
  std::string file = raw_file(R"({"x": {"dtype": "F32", "shape": [], "data_offsets": [0, 4]}})", 0);
  file.append(reinterpret_cast<const char*>(&value), 4);
  const Safetensors decoded = decode_safetensors(file, kSource);
  EXPECT_EQ(decoded.tensors.at("x")[0], 2.5f);
}

TEST(SafetensorsTest, EveryTruncationIsAFormatError) {
  const std::vector<float> w = {1, 2, 3, 4, 5, 6}, b = {7, 8};
  const std::string file =
      encode_safetensors({{"w", {3, 2}, w}, {"e", {0}, {}}, {"b", {2}, b}}, {{"k", "v"}});
  ASSERT_NO_THROW(decode_safetensors(file, kSource));
  for (std::size_t cut = 0; cut < file.size(); ++cut) {
    SCOPED_TRACE(cut);
    // A copy of exactly `cut` bytes, so that reading past it is caught by sanitizers too.
    const std::string truncated = file.substr(0, cut);
    EXPECT_THROW(decode_safetensors(truncated, kSource), FormatError);
  }
}

}  // namespace
}  // namespace dropkit::model
