// dropkit._core: the C++ library seen from Python (python/dropkit/__init__.py is the package's
// face; docs/python.md the user's guide). This file: the module, the exceptions, the helpers every
// binding shares. The bindings translate arguments and results; every check and message is the
// library's.
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include <fmt/format.h>

#include "common.h"
#include "dropkit/core/machine.h"
#include "dropkit/data/idx.h"
#include "dropkit/kernels/table.h"
#include "dropkit/train/trainer.h"
#include "dropkit/version.h"

namespace dropkit::python {

FloatArray as_float32(const py::handle& x, const char* what) {
  py::array a = py::array::ensure(x);
  if (!a) throw py::type_error(fmt::format("{} is not an array", what));
  const char kind = a.dtype().kind();
  if (kind != 'f' && kind != 'i' && kind != 'u' && kind != 'b') {
    throw py::type_error(
        fmt::format("{} has dtype {}: dropkit takes real numbers (float32; other real dtypes are "
                    "converted to float32)",
                    what, py::str(a.dtype()).cast<std::string>()));
  }
  return FloatArray::ensure(a);
}

namespace {
std::mutex pools_mutex;
std::map<int, std::unique_ptr<parallel::ThreadPool>>& pools() {
  static std::map<int, std::unique_ptr<parallel::ThreadPool>> p;
  return p;
}
}  // namespace

int checked_threads(int threads) {
  if (threads < 0 || threads > 256) {
    throw std::invalid_argument(fmt::format(
        "threads = {} is outside [0, 256] (0: every core, or DROPKIT_THREADS)", threads));
  }
  return threads;
}

PoolLease::PoolLease(int threads) {
  pools_mutex.lock();
  try {
    if (threads == 0) {
      pool_ = &parallel::default_pool();
    } else {
      auto& p = pools()[threads];
      if (!p) p = std::make_unique<parallel::ThreadPool>(threads);
      pool_ = p.get();
    }
  } catch (...) {
    pools_mutex.unlock();
    throw;
  }
}

PoolLease::~PoolLease() {
  pools_mutex.unlock();
}

py::object to_python(const nlohmann::json& j) {
  return py::module_::import("json").attr("loads")(j.dump());
}

nlohmann::json option_value(const std::string& name, const py::handle& value) {
  if (py::isinstance<py::bool_>(value)) return value.cast<bool>();
  if (py::isinstance<py::int_>(value)) return value.cast<std::int64_t>();
  if (py::isinstance<py::float_>(value)) return value.cast<double>();
  if (py::isinstance<py::str>(value)) return value.cast<std::string>();
  throw py::type_error(fmt::format("`{}` = {}: an option takes a bool, int, float or str", name,
                                   py::repr(value).cast<std::string>()));
}

}  // namespace dropkit::python

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  using namespace dropkit;
  using namespace pybind11::literals;
  m.doc() = "dropkit's C++ library (use the dropkit package, not this module)";
  m.attr("__version__") = version();  // the package's __version__ (CMakeLists.txt's project())
  static py::exception<train::TrainingDiverged> diverged(m, "TrainingDiverged",
                                                         PyExc_ArithmeticError);
  // ValueError for bad arguments (pybind11 maps std::invalid_argument itself), OSError for files,
  // the library's message unchanged.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (py::error_already_set& e) {  // both are std::runtime_errors: handled first
      e.restore();
    } catch (const py::builtin_exception& e) {
      e.set_error();
    } catch (const train::TrainingDiverged& e) {
      diverged(e.what());
    } catch (const data::DataError& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const std::filesystem::filesystem_error& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const std::system_error& e) {
      PyErr_SetString(PyExc_OSError, e.what());
    } catch (const std::bad_alloc&) {
      PyErr_SetString(PyExc_MemoryError, "out of memory");
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::logic_error& e) {
      PyErr_SetString(PyExc_RuntimeError, e.what());
    } catch (const std::runtime_error& e) {
      // The library throws std::runtime_error for what it cannot read or write ("cannot read
      // <path>: ...", a damaged checkpoint, a locked directory).
      PyErr_SetString(PyExc_OSError, e.what());
    }
  });
  m.def(
      "kernels", [] { return std::string(kernels::active_kernels().name); },
      "The instruction set of the kernels chosen for this CPU (avx512, avx2, scalar).");
  m.def(
      "machine",
      [] {
        const Machine c = this_machine();
        return py::dict("cpu"_a = c.cpu, "vendor"_a = c.vendor, "family"_a = c.family,
                        "model"_a = c.model, "kind"_a = c.kind(),
                        "isa"_a = std::string(kernels::active_kernels().name));
      },
      "The machine, as `lscpu` names it and `dropkit bench --json` records it: a dict of cpu, "
      "vendor, family, model, kind (\"<vendor> family <family> model <model>\") and isa.");
  python::bind_dropout(m);
  python::bind_metrics(m);
  python::bind_train(m);
}
