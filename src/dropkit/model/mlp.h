// The fully connected networks of the paper: input dropout, then hidden Linear+activation layers
// each followed by dropout, then a linear output layer (no dropout on the output, SPEC 4).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dropkit/dropout/dropout.h"
#include "dropkit/model/sequential.h"
#include "dropkit/nn/activation.h"

namespace dropkit::model {

// "784-1024-1024-10" -> {784, 1024, 1024, 10}. At least input and output, every size in
// [1, 1 << 20]; anything else throws std::invalid_argument quoting the string.
std::vector<std::int64_t> parse_arch(const std::string& arch);

struct MlpOptions {
  std::vector<std::int64_t> sizes;  // input, hidden..., output
  nn::Activation activation = nn::Activation::kReLU;
  double input_drop_prob = 0.0;   // on the input units
  double hidden_drop_prob = 0.0;  // after every hidden layer
  dropout::Scaling scaling = dropout::Scaling::kInverted;
  // Of the hidden layers' dropout. Bits: backward reads 1 bit per element instead of regenerating
  // it (cheaper in training). The input's dropout never runs backward and stores nothing.
  dropout::MaskStorage storage = dropout::MaskStorage::kBits;
};

// Dropout layers with drop_prob 0 are left out (they would be the identity).
std::unique_ptr<Sequential> make_mlp(const MlpOptions& o);

}  // namespace dropkit::model
