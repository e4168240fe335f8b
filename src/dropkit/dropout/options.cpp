#include "dropkit/dropout/options.h"

#include <string>

#include "dropkit/dropout/dropout.h"
#include "dropkit/dropout/mask.h"
#include "dropkit/dropout/noise_shape.h"
#include "dropkit/rng/streams.h"

namespace dropkit::dropout {

Option drop_prob_option() {
  return {.name = "drop_prob",
          .type = Option::Type::kReal,
          .default_value = 0.5,
          .help = "probability to drop a unit",
          .min = 0,
          .max = 1};
}
Option shared_axes_option() {
  return {.name = "shared_axes",
          .type = Option::Type::kString,
          .default_value = "",
          .help =
              "axes after the examples that share one noise value, joined by '+' (2+3 on "
              "[N, C, H, W]: per channel; 1 on [N, T, D]: per sequence)"};
}
Option mask_bits_option() {
  return {.name = "mask_bits",
          .type = Option::Type::kInt,
          .default_value = kDefaultMaskBits,
          .help =
              "bits per keep decision: 32, or 16 / 8 (faster; the layer then uses the drop "
              "rate round(p 2^b) / 2^b, e.g. 0.2 -> 51/256 at 8 bits)",
          .min = 8,
          .max = 32};
}
std::uint32_t layer_stream(std::size_t index) {
  return rng::kDropoutStreamBase + static_cast<std::uint32_t>(index);
}
std::vector<int> shared_axes_of(const nlohmann::json& config) {
  return parse_shared_axes(config.at("shared_axes").get<std::string>());
}

Option scaling_option() {
  return {.name = "scaling",
          .type = Option::Type::kString,
          .default_value = scaling_name(Dropout::kDefaultScaling),
          .help = "inverted: kept units * 1/(1-p) in training; inference: eval * (1-p)",
          .choices = {"inverted", "inference"}};
}

}  // namespace dropkit::dropout
