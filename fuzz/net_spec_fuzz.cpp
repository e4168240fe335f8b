// libFuzzer harness: the network-spec parsers and model construction (model/spec.h, model.h) on
// arbitrary text, for one Fashion-MNIST example [1, 28, 28]: the text form, or the JSON form
// (core/json_text.h's strict reading: depth, duplicate keys) when the input starts with '[' or
// '{'. It must build a model or throw
// std::invalid_argument; nothing else (and nothing that needs more memory than the machine has:
// core/memory.h refuses that first).
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "dropkit/model/model.h"
#include "dropkit/model/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const bool json_form = !text.empty() && (text[0] == '[' || text[0] == '{');
    const auto layers = json_form ? dropkit::model::parse_net_json(text, "fuzz")
                                  : dropkit::model::parse_net_text(text);
    // Large layers are legal but slow to allocate (and libFuzzer counts RSS): build only nets
    // whose numbers are all small; the parser sees everything.
    for (const auto& layer : layers) {
      for (const auto& [key, value] : layer.items()) {
        if (value.is_number() && !(value.get<double>() <= 512)) return 0;
      }
    }
    dropkit::model::Model m(layers, dropkit::Shape{1, 28, 28});
    if (m.size() == 0) std::abort();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
