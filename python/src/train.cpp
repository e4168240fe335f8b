// Training and prediction through the library, as `dropkit train` and `dropkit predict` drive
// it (tools/dropkit/cmd_train.cpp, cmd_predict.cpp), with Python in place of the command line:
// TrainConfig checks the options, Trainer trains, RunDir writes the run directory, predict::
// predicts. Python loops over the epochs (python/dropkit/__init__.py), so a callback per epoch is
// plain Python; each epoch runs with the GIL released and comes back to Python after every step
// only to check for Ctrl-C (and call a progress function): an interrupt stops the epoch at a step
// boundary, and the run directory keeps the last epoch's checkpoint.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "common.h"
#include "dropkit/core/atomic_file.h"
#include "dropkit/core/options.h"
#include "dropkit/data/batcher.h"
#include "dropkit/data/idx.h"
#include "dropkit/kernels/gemm.h"
#include "dropkit/kernels/table.h"
#include "dropkit/predict/predictor.h"
#include "dropkit/train/run_dir.h"
#include "dropkit/train/trainer.h"

namespace dropkit::python {
namespace {

namespace fs = std::filesystem;

// Examples from NumPy: uint8 arrays are images (standardized as the IDX files' are), any other
// real dtype float features used as given (converted to float32 once); shape (N, features) or
// (N, rows, cols). Labels: a one-axis integer array, each in [0, 255] (the model's classes are
// checked where it is known).
data::Dataset dataset_of(const py::array& x, const py::object& labels, const char* what = "x") {
  const char kind = x.dtype().kind();
  if (kind != 'u' && kind != 'i' && kind != 'f' && kind != 'b') {
    throw py::type_error(fmt::format("{} has dtype {}: dropkit takes real numbers", what,
                                     py::str(x.dtype()).cast<std::string>()));
  }
  if (x.ndim() != 2 && x.ndim() != 3) {
    throw std::invalid_argument(
        fmt::format("{} has {} axes: dropkit takes (examples, features) or (examples, rows, cols)",
                    what, x.ndim()));
  }
  data::Dataset d;
  d.count = static_cast<std::size_t>(x.shape(0));
  d.rows = x.ndim() == 3 ? static_cast<std::size_t>(x.shape(1)) : 1;
  d.cols = static_cast<std::size_t>(x.shape(x.ndim() - 1));
  if (py::isinstance<py::array_t<std::uint8_t>>(x)) {
    const auto im = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>::ensure(x);
    d.images.assign(im.data(), im.data() + im.size());
  } else {
    const auto v = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x);
    d.floats = true;
    d.values.assign(v.data(), v.data() + v.size());
    for (std::size_t i = 0; i < d.values.size(); ++i) {
      if (!std::isfinite(d.values[i])) {
        throw std::invalid_argument(fmt::format("{}: element {} (example {}) is {} as float32",
                                                what, i, i / std::max<std::size_t>(1, d.features()),
                                                d.values[i]));
      }
    }
  }
  if (!labels.is_none()) {
    const py::array l = py::array::ensure(labels);
    if (!l || (l.dtype().kind() != 'i' && l.dtype().kind() != 'u') || l.ndim() != 1) {
      throw py::type_error("labels must be a one-axis array of integers");
    }
    const auto li = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(l);
    if (static_cast<std::size_t>(li.size()) != d.count) {
      throw std::invalid_argument(fmt::format("{} labels for {} examples", li.size(), d.count));
    }
    for (py::ssize_t i = 0; i < li.size(); ++i) {
      const auto v = li.data()[i];
      if (v < 0 || v > 255) {
        throw std::invalid_argument(
            fmt::format("label {} of example {} is outside [0, 255]", v, i));
      }
      d.labels.push_back(static_cast<std::uint8_t>(v));
    }
  }
  return d;
}

// (x_train, y_train, x_test, y_test) as a data set, checked as the files are.
data::TrainTest train_test_of(const py::tuple& arrays) {
  if (arrays.size() != 4) {
    throw std::invalid_argument("arrays must be (x_train, y_train, x_test, y_test)");
  }
  data::TrainTest d;
  d.train = dataset_of(py::array::ensure(arrays[0]), arrays[1], "x_train");
  d.test = dataset_of(py::array::ensure(arrays[2]), arrays[3], "x_test");
  if (d.train.rows != d.test.rows || d.train.cols != d.test.cols ||
      d.train.floats != d.test.floats) {
    throw std::invalid_argument(
        fmt::format("x_train and x_test differ in shape or kind ({}x{} {}, {}x{} {})", d.train.rows,
                    d.train.cols, d.train.floats ? "float" : "uint8", d.test.rows, d.test.cols,
                    d.test.floats ? "float" : "uint8"));
  }
  return d;
}

// Thrown from the progress callback when Python has an exception to raise (KeyboardInterrupt
// from Ctrl-C, or the progress function's own); the Python error indicator holds it.
struct PythonError {};

class Training {
 public:
  // `arrays`: None, or (x_train, y_train, x_test, y_test) to train on instead of `data`.
  Training(const std::string& out, const std::string& resume, const std::string& data,
           const py::dict& options, int threads, bool overwrite, const py::object& arrays) {
    if (!arrays.is_none()) {
      if (!data.empty()) throw std::invalid_argument("give data or arrays, not both");
      data_ = std::make_unique<data::TrainTest>(train_test_of(arrays.cast<py::tuple>()));
    }
    std::vector<std::pair<std::string, nlohmann::json>> given;
    for (const auto& [key, value] : options) {
      const auto name = key.cast<std::string>();
      nlohmann::json v = option_value(name, value);
      train::TrainConfig::field(name).option.check(v);
      given.emplace_back(name, std::move(v));
    }
    py::gil_scoped_release release;
    // Every check that needs no data is the library's, as `dropkit train` makes them.
    train::PreparedRun run =
        train::prepare_run({.given = std::move(given),
                            .out = out,
                            .resume = resume,
                            .data = data_          ? std::optional<std::string>("")
                                    : data.empty() ? std::nullopt
                                                   : std::optional<std::string>(data),
                            .overwrite = overwrite});
    if (!data_) data_ = std::make_unique<data::TrainTest>(data::load_mnist_dir(run.data));
    threads_ = threads > 0 ? threads : parallel::default_pool().size();
    pool_ = std::make_unique<parallel::ThreadPool>(threads_);
    trainer_ = run.make_trainer(*data_, *pool_);
    run_dir_ = run.open_run_dir(*trainer_);
  }

  // One epoch; progress(done, total, loss) after every step when given. Returns the epoch's
  // record. After an exception the training is over (the run directory keeps the last epoch).
  py::object run_epoch(const py::object& progress) {
    check_usable();
    std::optional<train::EpochRecord> r;
    {
      py::gil_scoped_release release;
      try {
        r = trainer_->run_epoch([&](std::size_t done, std::size_t total, double loss) {
          py::gil_scoped_acquire acquire;
          if (PyErr_CheckSignals() != 0) throw PythonError{};
          if (progress.is_none()) return;
          try {
            progress(done, total, loss);
          } catch (py::error_already_set& e) {
            e.restore();
            throw PythonError{};
          }
        });
      } catch (const PythonError&) {
        stopped_ = true;
      } catch (...) {
        stopped_ = true;
        throw;
      }
    }
    if (stopped_) throw py::error_already_set();
    return to_python(r->to_json());
  }

  // Writes the epoch just run into the run directory (nothing without one).
  void write_epoch() {
    check_usable();
    if (!run_dir_) return;
    py::gil_scoped_release release;
    run_dir_->write_epoch();
  }

  // Releases the run directory's lock; the object is then spent.
  void close() {
    stopped_ = true;
    run_dir_.reset();
  }

  int epochs_done() const { return trainer_->epochs_done(); }
  int epochs() const { return trainer_->config().epochs; }
  std::uint64_t steps_done() const { return trainer_->steps_done(); }
  py::object history() const {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& r : trainer_->history()) j.push_back(r.to_json());
    return to_python(j);
  }
  py::object config() const { return to_python(trainer_->config().to_json()); }
  std::string describe() const { return trainer_->model().describe(); }
  std::string spec() const { return trainer_->model().spec(); }
  py::dict sizes() const {
    py::dict d;
    d["train"] = trainer_->train_examples();
    d["val"] = trainer_->val_examples();
    d["test"] = trainer_->test_examples();
    return d;
  }
  int threads() const { return threads_; }
  std::string out() const { return run_dir_ ? run_dir_->dir().string() : std::string(); }

 private:
  void check_usable() const {
    if (stopped_) {
      throw std::logic_error(
          "this training stopped (interrupted, failed or closed); resume it from its run "
          "directory");
    }
  }

  // Declared in the order they depend on each other: the trainer reads data_ and pool_.
  std::unique_ptr<data::TrainTest> data_;
  int threads_ = 1;
  std::unique_ptr<parallel::ThreadPool> pool_;
  std::unique_ptr<train::Trainer> trainer_;
  std::unique_ptr<train::RunDir> run_dir_;
  bool stopped_ = false;
};

// Deterministic (mc = 0) or Monte-Carlo prediction of a saved run on `images`: per example the
// mean probabilities and the uncertainty statistics (predict/uncertainty.h), and with labels the
// set's accuracy, NLL, Brier score and ECE.
py::dict predict_fn(const std::string& model_dir, const py::array& images, const py::object& labels,
                    std::uint64_t mc, const py::object& seed, std::size_t max_rows, int threads) {
  checked_threads(threads);
  const data::Dataset d = dataset_of(images, labels);
  if (d.count == 0) throw std::invalid_argument("x holds no examples");
  std::optional<train::Checkpoint> ck;
  {
    py::gil_scoped_release release;
    ck = train::read_checkpoint(fs::path(model_dir) / train::kCheckpointFile);
  }
  model::Model& model = *ck->model;
  train::check_model_fits(model, d, "given");
  const predict::PredictOptions po{
      .samples = mc,
      .seed = seed.is_none() ? ck->config.seed : seed.cast<std::uint64_t>(),
      .max_rows = max_rows};
  predict::check_predict_fits(model, po);
  const auto classes = static_cast<std::size_t>(model.output_shape()[0]);
  py::array_t<double> probs({static_cast<py::ssize_t>(d.count), static_cast<py::ssize_t>(classes)});
  std::vector<predict::ExampleStats> stats(d.count);
  predict::AggregateAccumulator agg;
  {
    py::gil_scoped_release release;
    PoolLease lease(threads);
    double* p = probs.mutable_data();
    std::mutex m;
    predict::predict(model, d, 0, d.count, po, lease.pool(), [&](const predict::ExampleResult& e) {
      std::copy(e.probs.begin(), e.probs.end(), p + e.index * classes);
      stats[e.index] = e.stats;
      if (e.label >= 0) {
        const std::lock_guard lock(m);
        agg.add(e.stats, e.probs, e.label);
      }
    });
  }
  const auto column = [&](auto get) {
    py::array_t<double> a(static_cast<py::ssize_t>(d.count));
    for (std::size_t i = 0; i < d.count; ++i) a.mutable_data()[i] = get(stats[i]);
    return a;
  };
  py::array_t<std::int64_t> predicted(static_cast<py::ssize_t>(d.count));
  for (std::size_t i = 0; i < d.count; ++i) predicted.mutable_data()[i] = stats[i].predicted;
  py::dict r;
  r["probs"] = probs;
  r["predicted"] = predicted;
  r["confidence"] = column([](const auto& s) { return s.confidence; });
  r["entropy"] = column([](const auto& s) { return s.entropy; });
  r["expected_entropy"] = column([](const auto& s) { return s.expected_entropy; });
  r["mutual_information"] = column([](const auto& s) { return s.mutual_information; });
  r["variance"] = column([](const auto& s) { return s.variance; });
  r["samples"] = mc;
  r["seed"] = po.seed;
  if (!d.labels.empty()) {
    r["log_prob_label"] = column([](const auto& s) { return s.log_prob_label; });
    const predict::Aggregate a = agg.result();
    r["metrics"] = aggregate_to_python(a);
  }
  return r;
}

}  // namespace

void bind_train(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<Training>(m, "Training")
      .def(py::init<const std::string&, const std::string&, const std::string&, const py::dict&,
                    int, bool, const py::object&>(),
           "out"_a, "resume"_a, "data"_a, "options"_a, "threads"_a, "overwrite"_a,
           "arrays"_a = py::none())
      .def("run_epoch", &Training::run_epoch, "progress"_a = py::none())
      .def("write_epoch", &Training::write_epoch)
      .def("close", &Training::close)
      .def_property_readonly("epochs_done", &Training::epochs_done)
      .def_property_readonly("epochs", &Training::epochs)
      .def_property_readonly("steps_done", &Training::steps_done)
      .def_property_readonly("history", &Training::history)
      .def_property_readonly("config", &Training::config)
      .def_property_readonly("describe", &Training::describe)
      .def_property_readonly("spec", &Training::spec)
      .def_property_readonly("sizes", &Training::sizes)
      .def_property_readonly("threads", &Training::threads)
      .def_property_readonly("out", &Training::out);
  m.def("predict", &predict_fn, "model_dir"_a, "images"_a, "labels"_a = py::none(), py::kw_only(),
        "mc"_a = 0, "seed"_a = py::none(), "max_rows"_a = 2048, "threads"_a = 0);
  // `dropkit train` flags as train()'s keywords: ["--lr", "0.1", "--augment-flip"] ->
  // {"lr": 0.1, "augment_flip": True}, each value parsed and checked as the CLI does.
  m.def("options_from_flags", [](const std::vector<std::string>& args) {
    py::dict out;
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (!args[i].starts_with("--") || args[i].size() == 2) {
        throw std::invalid_argument(fmt::format("'{}' is not a flag (--name)", args[i]));
      }
      std::string name = args[i].substr(2), text;
      const auto eq = name.find('=');
      const bool inline_value = eq != std::string::npos;
      if (inline_value) {
        text = name.substr(eq + 1);
        name.resize(eq);
      }
      std::replace(name.begin(), name.end(), '-', '_');
      const Option& opt = train::TrainConfig::field(name).option;
      nlohmann::json v;
      if (opt.type == Option::Type::kBool && !inline_value) {
        v = true;
      } else {
        if (!inline_value) {
          if (i + 1 == args.size()) {
            throw std::invalid_argument(fmt::format("{} needs a value", args[i]));
          }
          text = args[++i];
        }
        v = parse_option_text(opt, text);
      }
      opt.check(v);
      out[py::str(name)] = to_python(v);
    }
    return out;
  });
  m.def("option_names", [] {
    std::vector<std::string> names;
    for (const auto& f : train::TrainConfig::fields()) names.push_back(f.option.name);
    return names;
  });
}

}  // namespace dropkit::python
