#include "dropkit/train/history.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "dropkit/core/atomic_file.h"
#include "dropkit/core/json_text.h"
#include "dropkit/core/options.h"

namespace dropkit::train {
namespace {

using json = nlohmann::json;

// The fields of a history entry (a line of metrics.jsonl, an entry of a checkpoint's history),
// each with its range: the one definition every entry is checked against. A field added after
// the first release (step_loss_std) or kept only in metrics.jsonl (epoch_seconds) may be
// missing; every other one must be there.
const OptionList& epoch_record_fields() {
  static const OptionList fields = [] {
    using T = Option::Type;
    constexpr double kInf = std::numeric_limits<double>::infinity();
    const auto real = [&](const char* name, double max, const char* help, json fallback = {}) {
      return Option{.name = name,
                    .type = T::kReal,
                    .default_value = std::move(fallback),
                    .help = help,
                    .min = 0,
                    .max = max,
                    .max_open = std::isinf(max)};
    };
    return OptionList{
        {.name = "epoch", .type = T::kInt, .help = "1-based", .min = 1, .max = 100000},
        {.name = "step",
         .type = T::kInt,
         .help = "optimizer steps so far",
         .min = 1,
         .max = 18446744073709551615.0},
        real("train_loss", kInf, "training loss"),
        real("step_loss_std", kInf, "spread of the step losses", 0.0),
        real("train_accuracy", 1, "train accuracy"),
        real("train_eval_loss", kInf, "train loss in eval mode"),
        real("val_loss", kInf, "validation loss"),
        real("val_accuracy", 1, "validation accuracy"),
        real("test_loss", kInf, "test loss"),
        real("test_accuracy", 1, "test accuracy"),
        real("lr", kInf, "learning rate"),
        real("momentum", 1, "momentum"),
        real("epoch_seconds", kInf, "training time", 0.0),
    };
  }();
  return fields;
}

}  // namespace

json EpochRecord::to_json(bool with_seconds) const {
  json j{{"epoch", epoch},
         {"step", step},
         {"train_loss", train_loss},
         {"step_loss_std", step_loss_std},
         {"train_accuracy", train_accuracy},
         {"train_eval_loss", train_eval_loss},
         {"val_loss", val_loss},
         {"val_accuracy", val_accuracy},
         {"test_loss", test_loss},
         {"test_accuracy", test_accuracy},
         {"lr", lr},
         {"momentum", momentum}};
  if (!drop_rates.empty()) j["drop_rates"] = drop_rates;
  if (with_seconds) j["epoch_seconds"] = seconds;
  return j;
}

EpochRecord EpochRecord::from_json(const json& j, const std::string& owner) {
  if (!j.is_object()) {
    throw std::invalid_argument(
        fmt::format("{}expected an object of epoch metrics, found {}", owner, json_type_name(j)));
  }
  for (const auto& o : epoch_record_fields()) {
    if (o.default_value.is_null() && !j.contains(o.name)) {
      throw std::invalid_argument(fmt::format("{}{} is missing", owner, o.name));
    }
  }
  EpochRecord r;
  json fields = j;
  if (const auto it = fields.find("drop_rates"); it != fields.end()) {
    if (!it->is_array() || it->size() > 100000) {
      throw std::invalid_argument(fmt::format("{}drop_rates is not a list of rates", owner));
    }
    for (const json& p : *it) {
      if (!p.is_number() || !(p.get<double>() >= 0.0 && p.get<double>() <= 1.0)) {
        throw std::invalid_argument(
            fmt::format("{}drop_rates holds {}, not a rate in [0, 1]", owner, p.dump()));
      }
      r.drop_rates.push_back(p.get<double>());
    }
    fields.erase(it);
  }
  const json c = complete_options(epoch_record_fields(), fields, owner);
  r.epoch = c["epoch"].get<int>();
  r.step = c["step"].get<std::uint64_t>();
  r.train_loss = c["train_loss"].get<double>();
  r.step_loss_std = c["step_loss_std"].get<double>();
  r.train_accuracy = c["train_accuracy"].get<double>();
  r.train_eval_loss = c["train_eval_loss"].get<double>();
  r.val_loss = c["val_loss"].get<double>();
  r.val_accuracy = c["val_accuracy"].get<double>();
  r.test_loss = c["test_loss"].get<double>();
  r.test_accuracy = c["test_accuracy"].get<double>();
  r.seconds = c["epoch_seconds"].get<double>();
  r.lr = c["lr"].get<double>();
  r.momentum = c["momentum"].get<double>();
  return r;
}

std::vector<EpochRecord> read_metrics(const std::filesystem::path& file, bool skip_damaged) {
  std::vector<EpochRecord> records;
  const std::string text = read_file(file);
  std::size_t line = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t end = std::min(text.find('\n', pos), text.size());
    ++line;
    const std::string where = fmt::format("{}:{}", file.string(), line);
    try {
      EpochRecord r = EpochRecord::from_json(
          parse_json(std::string_view(text).substr(pos, end - pos), where), where + ": ");
      if (!skip_damaged && r.epoch != static_cast<int>(records.size()) + 1) {
        throw std::invalid_argument(fmt::format("{}: epoch {} where epoch {} was expected", where,
                                                r.epoch, records.size() + 1));
      }
      records.push_back(r);
    } catch (const std::invalid_argument&) {
      if (!skip_damaged) throw;
    }
    pos = end + 1;
  }
  return records;
}

}  // namespace dropkit::train
