// The README's library example: a Dropout layer, forward in Train and Eval, backward.
// Expected output: "train: 4 of 8 kept, eval: identity, grad: mask * 2".
#include <cstdio>
#include <vector>

#include "dropkit/dropout/dropout.h"

int main() {
  using namespace dropkit;
  dropout::Dropout drop(/*drop_prob=*/0.5);  // inverted scaling: kept units are doubled
  Tensor x(Shape{2, 4}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8});
  Tensor y, dx;
  drop.forward(x, y, {.mode = nn::Mode::kTrain, .seed = 42, .step = 0});
  drop.backward(/*dy=*/x, dx);  // dx = dy * mask * 2, from the same (seed, step) mask
  int kept = 0;
  for (std::size_t i = 0; i < 8; ++i) kept += y[i] != 0;
  drop.forward(x, y, {.mode = nn::Mode::kEval});  // eval: y == x
  bool identity = true, grad_ok = true;
  for (std::size_t i = 0; i < 8; ++i) identity &= y[i] == x[i];
  for (std::size_t i = 0; i < 8; ++i) grad_ok &= dx[i] == 0 || dx[i] == 2 * x[i];
  std::printf("train: %d of 8 kept, eval: %s, grad: %s\n", kept, identity ? "identity" : "WRONG",
              grad_ok ? "mask * 2" : "WRONG");
  return identity && grad_ok ? 0 : 1;
}
