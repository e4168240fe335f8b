// What the module's files share: array conversion, thread pools, JSON across the boundary.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "dropkit/parallel/thread_pool.h"
#include "dropkit/predict/uncertainty.h"

namespace dropkit::python {

namespace py = pybind11;
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

// `x` as a C-contiguous float32 array: the array itself when it is one already (no copy), any
// other real dtype (floating, integer, bool) or layout converted once. A complex, object,
// string or other non-real dtype is a TypeError naming `what` and the dtype.
FloatArray as_float32(const py::handle& x, const char* what);

// The pool for `threads` (0: dropkit's default, every core or DROPKIT_THREADS), kept for the
// next call, and held exclusively while the caller's Lease lives: a pool is not reentrant, so
// calls from several Python threads (the GIL released) take turns. Take it with the GIL released.
class PoolLease {
 public:
  explicit PoolLease(int threads);
  ~PoolLease();
  PoolLease(const PoolLease&) = delete;
  PoolLease& operator=(const PoolLease&) = delete;
  parallel::ThreadPool& pool() { return *pool_; }

 private:
  parallel::ThreadPool* pool_;
};
// ValueError unless threads is in [0, 256].
int checked_threads(int threads);

// JSON <-> Python values (through the json module: numbers, strings, lists, dicts).
py::object to_python(const nlohmann::json& j);
// A keyword argument's value as JSON: bool, int, float or str; TypeError naming `name` otherwise.
nlohmann::json option_value(const std::string& name, const py::handle& value);

// predict's set-level numbers as a dict: examples, accuracy, nll, brier, ece.
py::dict aggregate_to_python(const predict::Aggregate& a);

void bind_dropout(py::module_& m);
void bind_metrics(py::module_& m);
void bind_train(py::module_& m);

}  // namespace dropkit::python
