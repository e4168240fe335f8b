// What a hidden layer's units do on data: the sparsity measurements of Srivastava et al. (2014),
// section 7.2, figures 7 and 8 ("dropout makes the hidden activations sparse": the mean
// activation of a 256-unit autoencoder's hidden layer fell from about 2.0 to about 0.7).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "dropkit/data/idx.h"
#include "dropkit/model/model.h"
#include "dropkit/parallel/thread_pool.h"

namespace dropkit::train {

struct ActivationStats {
  std::size_t layer = 0;  // 1-based, as --net lists the layers: this layer's output
  std::size_t units = 0;  // values per example (the output's row size)
  std::size_t examples = 0;
  double mean = 0;  // over examples and units
  // Per unit: its mean over the examples (the paper's "mean activation" histogram).
  std::vector<double> unit_mean;
  // Per example: the fraction of the units whose value is > 0 (how many are active).
  std::vector<double> active_fraction;
};

// Runs the examples `rows` of d through `model` in eval mode, in batches of `batch`, up to layer
// `layer` (1-based), and collects its outputs' statistics. Changes nothing; the same bits for any
// thread count (sums in example order, in double). std::invalid_argument if layer is not in
// [1, model.size()], or rows is empty, or batch is 0.
ActivationStats activation_statistics(model::Model& model, const data::Dataset& d,
                                      std::span<const std::uint32_t> rows, std::size_t layer,
                                      std::size_t batch, parallel::ThreadPool& pool);

}  // namespace dropkit::train
