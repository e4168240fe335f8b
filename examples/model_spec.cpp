// A network as a value: built from the text form, described as JSON, run in eval and in
// Monte-Carlo sample mode, and rebuilt from its description.
// Expected output:
//   dense:64:relu,dropout:0.5,dense:10 | [1, 28, 28] -> [10] | 50890 parameters
//   eval: deterministic, sample: 2 draws differ, rebuilt from JSON: same outputs
#include <cstdio>
#include <cstring>

#include "dropkit/model/model.h"
#include "dropkit/model/spec.h"

int main() {
  using namespace dropkit;
  model::Model m(model::parse_net_text("dense:64,relu,dropout:0.5,dense:10"), Shape{1, 28, 28});
  m.init_params(/*seed=*/7);
  std::size_t count = 0;
  for (const auto& e : m.params().entries()) count += e.numel();
  std::printf("%s | %s -> %s | %zu parameters\n", m.spec().c_str(), m.input_shape().str().c_str(),
              m.output_shape().str().c_str(), count);

  Tensor x(Shape{3, 1, 28, 28});
  for (std::size_t i = 0; i < x.numel(); ++i) x[i] = static_cast<float>(i % 17) / 17.0f;
  auto run = [&](model::Model& net, nn::Mode mode, std::uint64_t step) {
    const Tensor& y = net.forward(x, {.mode = mode, .seed = 1, .step = step});
    return std::vector<float>(y.span().begin(), y.span().end());
  };
  const bool deterministic = run(m, nn::Mode::kEval, 0) == run(m, nn::Mode::kEval, 9);
  const bool samples_differ = run(m, nn::Mode::kSample, 0) != run(m, nn::Mode::kSample, 1);

  // The description (what config.json and checkpoints hold) rebuilds the same network; the
  // parameters travel separately.
  model::Model copy = model::Model::from_json(m.to_json());
  std::memcpy(copy.params().values().data(), m.params().values().data(),
              m.params().size() * sizeof(float));
  const bool same = run(copy, nn::Mode::kEval, 0) == run(m, nn::Mode::kEval, 0);
  std::printf("eval: %s, sample: %s, rebuilt from JSON: %s\n",
              deterministic ? "deterministic" : "WRONG",
              samples_differ ? "2 draws differ" : "WRONG", same ? "same outputs" : "WRONG");
  return deterministic && samples_differ && same ? 0 : 1;
}
