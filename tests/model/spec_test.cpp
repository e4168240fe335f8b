// Network specs (text and JSON), the --arch shorthand, the option checks every layer and flag
// goes through, and Model: shapes inferred layer by layer, errors that name the layer, names
// of parameters, and a model that round-trips as a value.
#include "dropkit/model/spec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <random>

#include "dropkit/core/options.h"
#include "dropkit/model/model.h"
#include "dropkit/model/registry.h"
#include "support/temp_dir.h"

namespace dropkit::model {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Options, CheckNamesTheValueAndTheRange) {
  const Option p{
      .name = "drop_prob", .type = Option::Type::kReal, .default_value = 0.5, .min = 0, .max = 1};
  EXPECT_NO_THROW(p.check(0.0));
  EXPECT_NO_THROW(p.check(1.0));
  EXPECT_THAT(error_of([&] { p.check(1.5); }), HasSubstr("drop_prob = 1.5 is outside [0, 1]"));
  EXPECT_THAT(error_of([&] { p.check(std::nan("")); }), HasSubstr("nan is outside [0, 1]"));
  EXPECT_THAT(error_of([&] { p.check("x"); }), HasSubstr("is not a number"));
  const Option lr{.name = "lr",
                  .type = Option::Type::kReal,
                  .default_value = 0.1,
                  .min = 0,
                  .max = std::numeric_limits<double>::infinity(),
                  .min_open = true,
                  .max_open = true};
  EXPECT_THAT(error_of([&] { lr.check(0.0); }), HasSubstr("outside (0, inf)"));
  const Option n{
      .name = "units", .type = Option::Type::kInt, .default_value = 1, .min = 1, .max = 8};
  EXPECT_THAT(error_of([&] { n.check(2.5); }), HasSubstr("not a whole number"));
  EXPECT_THAT(error_of([&] { n.check(9); }), HasSubstr("units = 9 is outside [1, 8]"));
  const Option s{.name = "scaling",
                 .type = Option::Type::kString,
                 .default_value = "a",
                 .choices = {"a", "b"}};
  EXPECT_THAT(error_of([&] { s.check("c"); }), HasSubstr("one of a, b"));
  EXPECT_EQ(Option{.name = "lr_decay"}.flag(), "--lr-decay");
}

TEST(Options, TextParsesByTypeAndNeverTakesEmptyAsZero) {
  const Option r{.name = "x", .type = Option::Type::kReal};
  const Option i{.name = "n", .type = Option::Type::kInt};
  const Option b{.name = "f", .type = Option::Type::kBool};
  EXPECT_EQ(parse_option_text(r, "0.25"), 0.25);
  EXPECT_TRUE(std::isnan(parse_option_text(r, "nan").get<double>()));
  EXPECT_EQ(parse_option_text(i, "-3"), -3);
  EXPECT_EQ(parse_option_text(i, "18446744073709551615").get<std::uint64_t>(),
            18446744073709551615ull);
  EXPECT_EQ(parse_option_text(b, "true"), true);
  for (const char* bad : {"", " ", "1x", "0.5.1"}) {
    EXPECT_THROW(parse_option_text(r, bad), std::invalid_argument) << "'" << bad << "'";
  }
  for (const char* bad : {"", "1.5", "18446744073709551616", "x"}) {
    EXPECT_THROW(parse_option_text(i, bad), std::invalid_argument) << "'" << bad << "'";
  }
  EXPECT_THROW(parse_option_text(b, "yes"), std::invalid_argument);
}

TEST(Options, CompleteFillsDefaultsAndRejectsUnknownKeys) {
  const OptionList opts = {{.name = "a", .type = Option::Type::kInt, .default_value = 3},
                           {.name = "b", .type = Option::Type::kReal, .default_value = 0.5}};
  EXPECT_EQ(complete_options(opts, json::object(), ""), (json{{"a", 3}, {"b", 0.5}}));
  EXPECT_EQ(complete_options(opts, {{"b", 1}}, ""), (json{{"a", 3}, {"b", 1.0}}));
  EXPECT_THAT(error_of([&] {
                complete_options(opts, {{"c", 1}}, "layer 2: ");
              }),
              HasSubstr("layer 2: unknown option 'c' (valid: a, b)"));
}

TEST(Spec, TheReadmesExampleIsTheDefaultNetOfArch) {
  const json from_text = parse_net_text(
      "dropout:0.2,dense:1024,relu,dropout:0.5,dense:1024,relu,dropout:0.5,dense:10");
  const json from_arch = mlp_layers({784, 1024, 1024, 10}, "relu", 0.2, 0.5, "inverted");
  EXPECT_EQ(from_text, from_arch);
  EXPECT_EQ(net_to_text(from_arch),
            "dropout:0.2,dense:1024:relu,dropout:0.5,dense:1024:relu,dropout:0.5,dense:10");
  EXPECT_EQ(from_arch.size(), 6u);
  // Drop rates of 0 add no layer.
  EXPECT_EQ(net_to_text(mlp_layers({20, 30, 5}, "tanh", 0, 0, "inverted")),
            "dense:30:tanh,dense:5");
}

TEST(Spec, NamedArgumentsActivationsAndSpaces) {
  const json l = parse_net_text(
      " dropout:drop_prob=0.3:mask_storage=recompute , dense:units=64:activation=selu,"
      "dropout:0.5:inference,sigmoid,flatten,dense:10:identity,tanh");
  ASSERT_EQ(l.size(), 7u);
  EXPECT_EQ(l[0], (json{{"kind", "dropout"},
                        {"drop_prob", 0.3},
                        {"scaling", "inverted"},
                        {"mask_storage", "recompute"},
                        {"shared_axes", ""},
                        {"mask_bits", 32}}));
  EXPECT_EQ(l[1]["activation"], "selu");
  EXPECT_EQ(l[2]["scaling"], "inference");
  EXPECT_EQ(l[3], (json{{"kind", "activation"}, {"function", "sigmoid"}}));
  // An activation after a dense layer that names its own activation stays a layer.
  EXPECT_EQ(l[6], (json{{"kind", "activation"}, {"function", "tanh"}}));
  EXPECT_EQ(parse_net_text(net_to_text(l)), l);
}

TEST(Spec, ErrorsNameTheItemItsPositionAndTheProblem) {
  auto err = [](const std::string& text) { return error_of([&] { parse_net_text(text); }); };
  EXPECT_THAT(err("dense:10,conv:3"), HasSubstr("item 2 'conv:3': unknown layer kind 'conv'"));
  EXPECT_THAT(err("dense:10,conv:3"), HasSubstr("valid: dense, dropout"));
  EXPECT_THAT(err("dense"), HasSubstr("units is required"));
  EXPECT_THAT(err("dense:0"), HasSubstr("units = 0 is outside [1, 1048576]"));
  // Bytes outside printable ASCII (the fuzzer found invalid UTF-8 escaping as a JSON type_error)
  // are named with their position.
  EXPECT_THAT(err("conv2d:2:5:padding\xff\xff,dense:4"), HasSubstr("byte 0xFF at position 18"));
  EXPECT_THAT(err("dense:4\n"), HasSubstr("byte 0x0A at position 7"));
  EXPECT_THAT(err("dense:ten"), HasSubstr("units = 'ten' is not a whole number"));
  EXPECT_THAT(err("dropout:1.5"), HasSubstr("item 1 'dropout:1.5': drop_prob = 1.5 is outside"));
  EXPECT_THAT(err("dropout:-0.1"), HasSubstr("[0, 1]"));
  EXPECT_THAT(err("dropout:nan"), HasSubstr("nan is outside [0, 1]"));
  EXPECT_THAT(err("dropout:0.5:sideways"), HasSubstr("one of inverted, inference"));
  EXPECT_THAT(err("dense:10:relu:3"), HasSubstr("too many arguments"));
  EXPECT_THAT(err("dense:10:colour=red"), HasSubstr("unknown option 'colour'"));
  EXPECT_THAT(err("dense:10:units=3"), HasSubstr("units given twice"));
  EXPECT_THAT(err("dense:10,,dense:3"), HasSubstr("item 2"));
  EXPECT_THAT(err("relu:3"), HasSubstr("takes no arguments"));
  EXPECT_THAT(err("gaussian_noise:-1"), HasSubstr("sigma = -1 is outside [0, 1e+30]"));
  EXPECT_THAT(err("gaussian_noise:1e39"), HasSubstr("outside [0, 1e+30]"));
  EXPECT_THAT(err("alpha_dropout:1.01"), HasSubstr("drop_prob = 1.01 is outside [0, 1]"));
  EXPECT_THAT(err("gaussian_dropout:inf"), HasSubstr("drop_prob = inf is outside [0, 1]"));
  EXPECT_THAT(err(""), HasSubstr("empty"));
}

TEST(Spec, JsonFilesAsArrayOrObject) {
  const test::TempDir tmp("dropkit_spec_test");
  const auto file = tmp.path() / "net.json";
  std::ofstream(file) << R"({"layers": [{"kind": "dense", "units": 32, "activation": "relu"},
                                       {"kind": "dropout", "drop_prob": 0.25},
                                       {"kind": "dense", "units": 10}]})";
  EXPECT_EQ(resolve_net(file.string()), parse_net_text("dense:32:relu,dropout:0.25,dense:10"));
  std::ofstream(file) << R"([{"kind": "dense", "units": 10, "bogus": 1}])";
  EXPECT_THAT(error_of([&] { resolve_net(file.string()); }),
              HasSubstr("layer 1: unknown option 'bogus'"));
  std::ofstream(file) << "[{\"kind\": \"dense\"";
  EXPECT_THAT(error_of([&] { resolve_net(file.string()); }), HasSubstr("not valid JSON"));
  std::ofstream(file) << "[]";
  EXPECT_THAT(error_of([&] { resolve_net(file.string()); }), HasSubstr("non-empty array"));
}

TEST(Spec, ParseArchAcceptsSizesAndRejectsGarbage) {
  EXPECT_EQ(parse_arch("784-1024-10"), (std::vector<std::int64_t>{784, 1024, 10}));
  for (const char* bad : {"", "784", "784-", "-10", "784-x-10", "784--10", "784-0-10", "7e2-10"}) {
    EXPECT_THROW(parse_arch(bad), std::invalid_argument) << bad;
  }
}

// Many generated layer lists: the text form round-trips, and a Model infers every shape.
TEST(Spec, GeneratedNetsRoundTripThroughTextAndBuild) {
  std::mt19937 gen(12345);
  const std::vector<std::string> acts = {"identity", "relu", "sigmoid", "tanh", "selu"};
  for (int trial = 0; trial < 300; ++trial) {
    json layers = json::array();
    std::int64_t width = 1 + static_cast<std::int64_t>(gen() % 50);
    const int n = 1 + static_cast<int>(gen() % 7);
    for (int i = 0; i < n; ++i) {
      const std::string shared = gen() % 3 == 0 ? "1" : "";
      const double p = static_cast<double>(gen() % 101) / 100.0;
      switch (gen() % 7) {
        case 4:
          layers.push_back(
              {{"kind", "gaussian_dropout"}, {"drop_prob", p}, {"shared_axes", shared}});
          break;
        case 5:
          layers.push_back({{"kind", "alpha_dropout"}, {"drop_prob", p}, {"shared_axes", shared}});
          break;
        case 6:
          layers.push_back({{"kind", "gaussian_noise"}, {"sigma", 3 * p}});
          break;
        case 0:
          width = 1 + static_cast<std::int64_t>(gen() % 300);
          layers.push_back({{"kind", "dense"}, {"units", width}, {"activation", acts[gen() % 5]}});
          break;
        case 1:
          layers.push_back({{"kind", "dropout"},
                            {"drop_prob", p},
                            {"scaling", gen() % 2 ? "inverted" : "inference"},
                            {"mask_storage", gen() % 2 ? "bits" : "recompute"},
                            {"shared_axes", shared}});
          break;
        case 2:
          layers.push_back({{"kind", "activation"}, {"function", acts[gen() % 5]}});
          break;
        default:
          layers.push_back({{"kind", "flatten"}});
      }
    }
    for (auto& l : layers) l = complete_layer_config(l);
    const std::string text = net_to_text(layers);
    ASSERT_EQ(parse_net_text(text), layers) << text;
    const Shape input{1 + static_cast<std::int64_t>(gen() % 3), 5, 7};
    Model m(layers, input);
    EXPECT_EQ(m.layers(), layers) << text;
    EXPECT_EQ(m.spec(), text);
    // The output shape: [last dense units] if any dense, else the input (or its flattening).
    Shape expect = input;
    for (const auto& l : layers) {
      if (l["kind"] == "dense") expect = Shape{l["units"].get<std::int64_t>()};
      if (l["kind"] == "flatten") expect = Shape{static_cast<std::int64_t>(expect.numel())};
    }
    EXPECT_EQ(m.output_shape(), expect) << text;
  }
}

TEST(ModelTest, ParameterNamesAreStableAndReadable) {
  Model m(parse_net_text("dropout:0.2,dense:16:relu,dropout:0.5,dense:4"), Shape{1, 3, 3});
  std::vector<std::string> names;
  for (const auto& e : m.params().entries()) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"layers.1.dense.weight", "layers.1.dense.bias",
                                             "layers.3.dense.weight", "layers.3.dense.bias"}));
  // Max-norm on the hidden layer only; weight decay on weights only.
  const auto& e = m.params().entries();
  EXPECT_TRUE(e[0].spec.has(nn::kMaxNormRows));
  EXPECT_FALSE(e[2].spec.has(nn::kMaxNormRows));
  EXPECT_TRUE(e[2].spec.has(nn::kWeightDecay));
  EXPECT_FALSE(e[1].spec.has(nn::kWeightDecay));
  EXPECT_EQ(e[0].spec.shape, (Shape{16, 9}));  // in = 1 * 3 * 3, inferred
}

TEST(ModelTest, ShapeErrorsNameTheLayerAndWhatWasExpected) {
  EXPECT_THAT(error_of([] { Model(json::array(), Shape{4}); }), HasSubstr("non-empty"));
  EXPECT_THAT(error_of([] { Model(parse_net_text("dense:4"), Shape{0, 3}); }), HasSubstr("empty"));
  // A model's input must match what forward is given.
  Model m(parse_net_text("dense:4"), Shape{1, 2, 3});
  Tensor wrong(Shape{5, 7});
  EXPECT_THAT(error_of([&] { m.forward(wrong, {}); }), HasSubstr("[1, 2, 3] (6 values each)"));
  EXPECT_THAT(error_of([] {
                Model(json::array({{{"kind", "dense"}, {"units", 3}}, {{"kind", "x"}}}), Shape{4});
              }),
              HasSubstr("layer 2 of 2"));
}

TEST(ModelTest, RoundTripsAsJsonAndRejectsBadNormalization) {
  Model a(parse_net_text("dense:8:tanh,dropout:0.1:inference,dense:3"), Shape{1, 2, 2},
          {0.25f, 2.0f});
  const Model b = Model::from_json(a.to_json());
  EXPECT_EQ(b.to_json(), a.to_json());
  EXPECT_EQ(b.input_shape(), (Shape{1, 2, 2}));
  EXPECT_EQ(b.normalization().std, 2.0f);
  for (float bad_std : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::nanf("")}) {
    EXPECT_THROW(a.set_normalization({0.0f, bad_std}), std::invalid_argument);
  }
  json j = a.to_json();
  j["input_shape"] = {1, -2};
  EXPECT_THROW(Model::from_json(j), std::invalid_argument);
}

}  // namespace
}  // namespace dropkit::model

namespace dropkit::model {
namespace {

// A model sees its own example shape whatever layout the batch comes in: a flat [n, 784] batch
// gives what [n, 1, 28, 28] gives, so a shared noise axis keeps its meaning.
TEST(ModelTest, AFlatBatchIsReshapedToTheModelsExampleShape) {
  Model m(parse_net_text("dropout:0.5:shared_axes=2,dense:8"), Shape{1, 4, 6});
  m.init_params(2);
  Tensor nchw(Shape{5, 1, 4, 6}), flat(Shape{5, 24});
  for (std::size_t i = 0; i < nchw.numel(); ++i) nchw[i] = flat[i] = 0.1f * (i % 13);
  const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 3, .step = 1};
  const Tensor a = m.forward(nchw, ctx).clone();
  const Tensor& b = m.forward(flat, ctx);
  ASSERT_EQ(a.shape(), b.shape());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.numel() * 4), 0);
  EXPECT_THROW(m.forward(Tensor(Shape{5, 25}), ctx), std::invalid_argument);
}

// A forward that throws midway leaves no train forward for backward to use.
TEST(ModelTest, BackwardAfterAFailedForwardIsRefused) {
  Model m(parse_net_text("tanh,dropout:0.5:shared_axes=2,dense:3"), Shape{1, 2, 3});
  m.init_params(1);
  const nn::Context ctx{.mode = nn::Mode::kTrain, .seed = 3, .step = 1};
  m.forward(Tensor(Shape{2, 1, 2, 3}), ctx);
  // The layers themselves on a flat batch: tanh runs, then dropout's shared axis 2 is missing.
  EXPECT_THROW(m.net().forward(Tensor(Shape{2, 6}), ctx), std::invalid_argument);
  EXPECT_THROW(m.backward(Tensor(Shape{2, 3})), std::logic_error);
}

}  // namespace
}  // namespace dropkit::model
