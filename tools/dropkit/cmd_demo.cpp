// `dropkit demo`: dropout on a small tensor, in each mode and both scalings.
#include <fmt/format.h>

#include "commands.h"
#include "dropkit/dropout/dropout.h"
#include "flags.h"

namespace dropkit::cli {

Run add_demo(CLI::App& app) {
  struct Opts {
    double drop_prob = 0.5;
    std::uint64_t seed = 42;
  };
  auto o = std::make_shared<Opts>();
  add_number_flag(app, "drop_prob", o->drop_prob, "probability to DROP an element", 0, 1);
  add_number_flag(app, "seed", o->seed, "seed of the masks", 0, 18446744073709551615.0);
  return [o] {
    Tensor x(Shape{2, 8});
    for (std::size_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i + 1);
    auto show = [](const char* label, const Tensor& t) {
      fmt::print("{:<34}", label);
      for (std::size_t i = 0; i < t.numel(); ++i) fmt::print("{:6.2f}", t[i]);
      fmt::print("\n");
    };
    show("x", x);
    for (auto scaling : {dropout::Scaling::kInverted, dropout::Scaling::kInference}) {
      dropout::Dropout layer(o->drop_prob, scaling, dropout::MaskStorage::kRecompute, 1);
      const char* sname = scaling == dropout::Scaling::kInverted ? "inverted" : "inference";
      Tensor y, dx;
      layer.forward(x, y, {.mode = nn::Mode::kTrain, .seed = o->seed, .step = 0});
      show(fmt::format("train step 0 ({})", sname).c_str(), y);
      Tensor ones(x.shape());
      for (std::size_t i = 0; i < ones.numel(); ++i) ones[i] = 1.0f;
      layer.backward(ones, dx);
      show(fmt::format("  backward of ones ({})", sname).c_str(), dx);
      layer.forward(x, y, {.mode = nn::Mode::kTrain, .seed = o->seed, .step = 1});
      show(fmt::format("train step 1 ({})", sname).c_str(), y);
      layer.forward(x, y, {.mode = nn::Mode::kEval});
      show(fmt::format("eval ({})", sname).c_str(), y);
    }
    return 0;
  };
}

}  // namespace dropkit::cli
