#include "dropkit/model/mlp.h"

#include <charconv>
#include <stdexcept>

#include <fmt/format.h>

#include "dropkit/nn/linear.h"
#include "dropkit/rng/streams.h"

namespace dropkit::model {

std::vector<std::int64_t> parse_arch(const std::string& arch) {
  std::vector<std::int64_t> sizes;
  auto fail = [&](const std::string& why) {
    return std::invalid_argument(fmt::format(
        "malformed --arch '{}': {} (expected sizes joined by '-', e.g. 784-1024-1024-10)", arch,
        why));
  };
  std::size_t start = 0;
  while (start <= arch.size()) {
    const std::size_t end = std::min(arch.find('-', start), arch.size());
    const std::string part = arch.substr(start, end - start);
    std::int64_t v = 0;
    const auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || ptr != part.data() + part.size()) {
      throw fail(fmt::format("'{}' is not a number", part));
    }
    if (v < 1 || v > (1 << 20)) throw fail(fmt::format("size {} is outside [1, 1048576]", v));
    sizes.push_back(v);
    start = end + 1;
  }
  if (sizes.size() < 2) throw fail("need at least an input and an output size");
  return sizes;
}

std::unique_ptr<Sequential> make_mlp(const MlpOptions& o) {
  if (o.sizes.size() < 2) throw std::invalid_argument("make_mlp: need at least two sizes");
  dropout::checked_drop_prob(o.input_drop_prob, "input drop_prob");
  dropout::checked_drop_prob(o.hidden_drop_prob, "hidden drop_prob");
  auto net = std::make_unique<Sequential>();
  auto add_dropout = [&](double p, dropout::MaskStorage storage) {
    if (p == 0.0) return;
    const auto stream = rng::kDropoutStreamBase + static_cast<std::uint32_t>(net->size());
    net->add(std::make_unique<dropout::Dropout>(p, o.scaling, storage, stream));
  };
  // The input's dropout never runs backward (nothing needs the gradient of the data), so it
  // keeps no mask bits: kRecompute stores nothing and draws the same mask.
  add_dropout(o.input_drop_prob, dropout::MaskStorage::kRecompute);
  for (std::size_t i = 0; i + 1 < o.sizes.size(); ++i) {
    const bool output = i + 2 == o.sizes.size();
    net->add(std::make_unique<nn::Linear>(o.sizes[i], o.sizes[i + 1],
                                          output ? nn::Activation::kIdentity : o.activation,
                                          /*hidden=*/!output));
    if (!output) add_dropout(o.hidden_drop_prob, o.storage);
  }
  return net;
}

}  // namespace dropkit::model
