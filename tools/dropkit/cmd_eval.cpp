// `dropkit eval`: a trained model in eval mode on the test split, with the activation and
// batch-norm statistics of the paper's figures 7-8 and of the variance shift.
#include <filesystem>
#include <numeric>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "dropkit/train/activations.h"
#include "dropkit/train/recalibrate.h"
#include "dropkit/train/run_dir.h"
#include "dropkit/train/trainer.h"
#include "flags.h"
#include "measure.h"
#include "recalibration.h"

namespace dropkit::cli {
namespace fs = std::filesystem;

Run add_eval(CLI::App& app) {
  struct Opts {
    std::string model;
    std::string data = data::default_data_dir().string();
    int threads = 0;
    std::uint64_t recalibrate_bn = 0;
    bool bn_stats = false;
    std::size_t activations = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  app.add_option("--model", o->model, "a directory written by `dropkit train --out`")
      ->required()
      ->check(kNonEmptyPath);
  add_number_flag(app, "activations", o->activations,
                  "statistics of layer K's output (counting from 1 as --net lists the layers) on "
                  "the test split in eval mode: mean activation, and with --json each unit's mean "
                  "and each example's fraction of active (> 0) units (the paper's figures 7-8)",
                  1, 1 << 20);
  add_recalibrate_bn_flag(app, o->recalibrate_bn);
  app.add_flag("--bn-stats", o->bn_stats,
               "per batchnorm layer: the variance of its input in eval mode on the test split "
               "over its running variance (the variance shift; about 1 - p after dropout p)");
  add_data_flag(app, o->data, " (its test split; the training split for --recalibrate-bn)");
  add_threads_flag(app, o->threads);
  add_json_flag(app, o->json, "");
  return [o] {
    // The model comes whole from the checkpoint; only the test split is read.
    const auto ck = train::read_checkpoint(fs::path(o->model) / train::kCheckpointFile);
    train::check_model_fits_shape(*ck.model,
                                  data::peek_mnist_split(o->data, data::MnistSplit::kTest), "test");
    const auto test = data::load_mnist_split(o->data, data::MnistSplit::kTest);
    train::check_model_fits(*ck.model, test, "test");
    parallel::ThreadPool pool(resolve_threads(o->threads));
    const std::string recalibrated =
        recalibrate_from_flag(*ck.model, ck.config, o->data, o->recalibrate_bn, pool);
    std::vector<std::uint32_t> rows(test.count);
    std::iota(rows.begin(), rows.end(), 0u);
    // The classes the model was trained on, as `train` reported its test accuracy.
    rows = data::rows_without(test, rows, data::parse_class_list(ck.config.exclude_classes, 256));
    Tensor x;
    std::vector<std::uint8_t> labels;
    const auto r = train::evaluate(*ck.model, test, rows, pool, x, labels);
    std::optional<train::ActivationStats> acts;
    if (o->activations > 0) {
      acts = train::activation_statistics(*ck.model, test, rows, o->activations,
                                          static_cast<std::size_t>(ck.config.batch), pool);
    }
    std::vector<train::VarianceShift> shifts;
    if (o->bn_stats) {
      shifts = train::measure_variance_shift(*ck.model, test, rows,
                                             static_cast<std::size_t>(ck.config.batch), pool);
    }
    if (o->json) {
      nlohmann::json j{{"test_accuracy", r.accuracy}, {"test_loss", r.loss},
                       {"examples", r.count},         {"epochs", ck.state.epoch},
                       {"net", ck.model->spec()},     {"model", o->model}};
      if (!recalibrated.empty()) j["recalibrated"] = recalibrated;
      if (acts) {
        j["activations"] = {{"layer", acts->layer},
                            {"kind", ck.model->layer(acts->layer - 1).kind()},
                            {"units", acts->units},
                            {"examples", acts->examples},
                            {"mean", acts->mean},
                            {"unit_mean", acts->unit_mean},
                            {"active_fraction", acts->active_fraction}};
      }
      if (o->bn_stats) {
        j["batchnorm"] = nlohmann::json::array();
        for (const auto& v : shifts) {
          j["batchnorm"].push_back({{"layer", v.layer},
                                    {"channels", v.channels},
                                    {"eval_over_running", v.eval_over_running},
                                    {"min_ratio", v.min_ratio},
                                    {"max_ratio", v.max_ratio},
                                    {"running_var", v.running_var},
                                    {"eval_var", v.eval_var}});
        }
      }
      fmt::print("{}\n", j.dump());
    } else {
      if (!recalibrated.empty()) fmt::print("{}\n", recalibrated);
      if (acts) {
        double active = 0;
        for (double f : acts->active_fraction) active += f;
        fmt::print(
            "layer {} ({}, {} units): mean activation {:.4f}, active (> 0) {:.4f} of the "
            "units per example on average\n",
            acts->layer, ck.model->layer(acts->layer - 1).kind(), acts->units, acts->mean,
            active / static_cast<double>(acts->examples));
      }
      if (o->bn_stats && shifts.empty()) fmt::print("no batchnorm layer\n");
      for (const auto& v : shifts) {
        fmt::print(
            "layer {} batchnorm ({} channels): eval variance / running variance {:.4f} "
            "(channels {:.4f} .. {:.4f})\n",
            v.layer, v.channels, v.eval_over_running, v.min_ratio, v.max_ratio);
      }
      fmt::print("{}: {} examples, eval mode: loss {:.4f}, accuracy {:.4f} (after {} epochs)\n",
                 o->model, r.count, r.loss, r.accuracy, ck.state.epoch);
    }
    return 0;
  };
}

}  // namespace dropkit::cli
