// The layer harness's examples (layer_harness_test.cpp): for every registered kind, layers
// of odd sizes on rank-2 and rank-4 inputs, every option value at least once, each with the
// finite-difference step its gradient check uses. A registered kind without examples fails the
// harness's coverage test.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dropkit/core/tensor.h"

namespace dropkit::model::test_examples {

using json = nlohmann::json;

struct Example {
  json layer;
  Shape input;      // with the batch axis
  double h = 1e-2;  // finite-difference step (smaller where a kink is near)
};

// Examples per kind: odd sizes, rank-2 and rank-4 inputs, every option value at least once.
inline const std::map<std::string, std::vector<Example>>& examples() {
  static const std::map<std::string, std::vector<Example>> table = {
      {"dense",
       {{{{"kind", "dense"}, {"units", 7}, {"activation", "tanh"}}, Shape{5, 11}},
        {{{"kind", "dense"}, {"units", 130}, {"activation", "relu"}}, Shape{3, 2, 3, 5}, 1e-3},
        {{{"kind", "dense"}, {"units", 9}, {"activation", "selu"}}, Shape{4, 6}, 1e-3},
        {{{"kind", "dense"}, {"units", 3}, {"activation", "sigmoid"}}, Shape{2, 17}},
        {{{"kind", "dense"}, {"units", 65}}, Shape{6, 1, 4, 4}}}},
      {"dropout",
       {{{{"kind", "dropout"}, {"drop_prob", 0.3}}, Shape{6, 37}},
        {{{"kind", "dropout"},
          {"drop_prob", 0.5},
          {"scaling", "inference"},
          {"mask_storage", "recompute"}},
         Shape{3, 2, 5, 7}},
        {{{"kind", "dropout"}, {"drop_prob", 0.0}}, Shape{4, 9}},
        {{{"kind", "dropout"}, {"drop_prob", 1.0}, {"scaling", "inference"}}, Shape{4, 9}},
        {{{"kind", "dropout"}, {"drop_prob", 1.0}}, Shape{2, 70}},
        {{{"kind", "dropout"}, {"drop_prob", 0.4}, {"shared_axes", "2+3"}}, Shape{3, 4, 5, 6}},
        {{{"kind", "dropout"}, {"drop_prob", 0.3}, {"shared_axes", "1"}, {"scaling", "inference"}},
         Shape{4, 7, 9}},
        // Above the mask module's single-thread cutoff (2^15 elements): threads really split.
        {{{"kind", "dropout"}, {"drop_prob", 0.3}, {"mask_storage", "recompute"}}, Shape{3, 30011}},
        // Narrow keep words (dropout/mask.h), split across threads too.
        {{{"kind", "dropout"},
          {"drop_prob", 0.3},
          {"mask_storage", "recompute"},
          {"mask_bits", 16}},
         Shape{3, 30011}},
        {{{"kind", "dropout"}, {"drop_prob", 0.2}, {"mask_bits", 8}}, Shape{5, 77}}}},
      {"gaussian_dropout",
       {{{{"kind", "gaussian_dropout"}, {"drop_prob", 0.3}}, Shape{6, 37}},
        {{{"kind", "gaussian_dropout"}, {"drop_prob", 0.5}, {"shared_axes", "2+3"}},
         Shape{2, 3, 4, 5}},
        {{{"kind", "gaussian_dropout"}, {"drop_prob", 0.0}}, Shape{3, 5}},
        {{{"kind", "gaussian_dropout"}, {"drop_prob", 1.0}}, Shape{3, 5}},
        {{{"kind", "gaussian_dropout"}, {"drop_prob", 0.9}}, Shape{5, 70}},
        {{{"kind", "gaussian_dropout"}, {"drop_prob", 0.4}}, Shape{2, 50021}}}},
      // The logit's gradient by finite differences too: the relaxed mask is smooth in it.
      {"concrete_dropout",
       {{{{"kind", "concrete_dropout"}, {"drop_prob", 0.3}}, Shape{6, 37}, 1e-3},
        {{{"kind", "concrete_dropout"}, {"drop_prob", 0.1}, {"temperature", 0.5}},
         Shape{3, 2, 5, 7},
         1e-3},
        {{{"kind", "concrete_dropout"}, {"drop_prob", 0.7}, {"temperature", 1.0}}, Shape{4, 9}},
        {{{"kind", "concrete_dropout"},
          {"drop_prob", 0.5},
          {"temperature", 0.25},
          {"length_scale", 2.0}},
         Shape{2, 70},
         1e-3},
        // More than one leaf of rows (kernels/leaves.h), and rows wider than a chunk.
        {{{"kind", "concrete_dropout"}, {"drop_prob", 0.2}}, Shape{300, 40}, 1e-3},
        {{{"kind", "concrete_dropout"}, {"drop_prob", 0.4}}, Shape{2, 5021}, 1e-3}}},
      {"dropconnect",
       {{{{"kind", "dropconnect"},
          {"units", 9},
          {"drop_prob", 0.3},
          {"activation", "tanh"},
          {"mask_bits", 8}},
         Shape{5, 11}},
        {{{"kind", "dropconnect"}, {"units", 70}, {"drop_prob", 0.5}, {"scaling", "inference"}},
         Shape{3, 2, 3, 4}},
        {{{"kind", "dropconnect"},
          {"units", 6},
          {"drop_prob", 0.2},
          {"activation", "sigmoid"},
          {"inference", "gaussian"},
          {"samples", 50}},
         Shape{4, 7}},
        {{{"kind", "dropconnect"}, {"units", 5}, {"drop_prob", 0.0}}, Shape{3, 8}},
        {{{"kind", "dropconnect"}, {"units", 5}, {"drop_prob", 1.0}}, Shape{3, 8}},
        // 257 x 301 weights: the weight mask splits across threads.
        {{{"kind", "dropconnect"}, {"units", 257}, {"drop_prob", 0.4}}, Shape{2, 301}},
        {{{"kind", "dropconnect"}, {"units", 257}, {"drop_prob", 0.4}, {"mask_bits", 16}},
         Shape{2, 301}}}},
      {"gaussian_noise",
       {{{{"kind", "gaussian_noise"}, {"sigma", 0.5}}, Shape{4, 33}},
        {{{"kind", "gaussian_noise"}, {"sigma", 0.0}}, Shape{2, 5}},
        {{{"kind", "gaussian_noise"}, {"sigma", 3.0}}, Shape{3, 2, 4, 4}},
        {{{"kind", "gaussian_noise"}, {"sigma", 0.7}}, Shape{2, 40009}}}},
      {"alpha_dropout",
       {{{{"kind", "alpha_dropout"}, {"drop_prob", 0.2}}, Shape{5, 40}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.2}, {"mask_bits", 8}}, Shape{5, 40}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.1}, {"shared_axes", "2+3"}},
         Shape{2, 3, 4, 4}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.0}}, Shape{3, 5}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 1.0}}, Shape{3, 5}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.6}}, Shape{2, 130}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.3}}, Shape{2, 40009}},
        {{{"kind", "alpha_dropout"}, {"drop_prob", 0.3}, {"mask_bits", 16}}, Shape{2, 40009}}}},
      {"activation",
       {{{{"kind", "activation"}, {"function", "relu"}}, Shape{5, 13}},
        {{{"kind", "activation"}, {"function", "sigmoid"}}, Shape{2, 3, 4, 5}},
        {{{"kind", "activation"}, {"function", "tanh"}}, Shape{3, 8}},
        {{{"kind", "activation"}, {"function", "selu"}}, Shape{3, 8}},
        {{{"kind", "activation"}, {"function", "identity"}}, Shape{1, 5}}}},
      {"batchnorm",
       {{{{"kind", "batchnorm"}}, Shape{6, 7}},
        {{{"kind", "batchnorm"}, {"momentum", 0.3}, {"eps", 1e-3}}, Shape{4, 3, 2, 5}},
        {{{"kind", "batchnorm"}, {"momentum", 1.0}}, Shape{3, 2, 3, 3}},
        {{{"kind", "batchnorm"}, {"momentum", 0.0}}, Shape{5, 3}}}},
      // Batches above kernels::kExampleBlock (16) split into grid blocks with a shorter tail.
      {"conv2d",
       {{{{"kind", "conv2d"}, {"filters", 4}, {"padding", 1}, {"activation", "relu"}},
         Shape{3, 2, 7, 6},
         1e-3},
        {{{"kind", "conv2d"}, {"filters", 5}, {"kernel", 2}, {"stride", 2}, {"activation", "tanh"}},
         Shape{37, 3, 5, 9}},
        {{{"kind", "conv2d"}, {"filters", 3}}, Shape{2, 1, 8, 8}},
        {{{"kind", "conv2d"}, {"filters", 2}, {"kernel", 1}, {"activation", "selu"}},
         Shape{4, 3, 3, 3},
         1e-3},
        {{{"kind", "conv2d"},
          {"filters", 3},
          {"kernel", 5},
          {"stride", 3},
          {"padding", 2},
          {"activation", "sigmoid"}},
         Shape{17, 2, 6, 7}}}},
      {"max_pool2d",
       {{{{"kind", "max_pool2d"}}, Shape{3, 2, 6, 6}, 1e-3},
        {{{"kind", "max_pool2d"}, {"size", 3}, {"stride", 2}, {"padding", 1}},
         Shape{33, 3, 7, 5},
         1e-3},
        {{{"kind", "max_pool2d"}, {"stride", 1}}, Shape{2, 1, 5, 5}, 1e-3}}},
      {"flatten",
       {{{{"kind", "flatten"}}, Shape{3, 2, 4, 5}}, {{{"kind", "flatten"}}, Shape{4, 6}}}},
  };
  return table;
}

}  // namespace dropkit::model::test_examples
