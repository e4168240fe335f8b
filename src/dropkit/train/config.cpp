#include "dropkit/train/config.h"

#include <limits>
#include <stdexcept>
#include <type_traits>

#include <fmt/format.h>

#include "dropkit/data/batcher.h"
#include "dropkit/model/spec.h"
#include "dropkit/nn/activation.h"

namespace dropkit::train {
namespace {

using json = nlohmann::json;
using Type = Option::Type;
using Field = TrainConfig::Field;
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kMaxU64 = 18446744073709551615.0;

std::vector<Field> make_fields() {
  std::vector<Field> f;
  auto add = [&](Option o, TrainConfig::Ref ref, bool fixed = true, bool optimizer = false) {
    f.push_back({std::move(o), ref, fixed, optimizer});
  };
  // An option of the `arch` net, which a `net` replaces.
  auto add_arch = [&](Option o, TrainConfig::Ref ref) {
    add(std::move(o), ref);
    f.back().arch_only = true;
  };
  const TrainConfig d;  // the defaults, written once: in the struct
  const OptimizerConfig& od = d.optimizer;
  add({.name = "net",
       .type = Type::kString,
       .default_value = d.net,
       .help = "layer list, as text (e.g. dropout:0.2,dense:1024,relu,dropout:0.5,dense:10) or a "
               "JSON file; replaces `arch`, `activation`, `dropout`, `input_dropout`, `scaling`"},
      [](TrainConfig& c) -> std::string& { return c.net; });
  add_arch({.name = "arch",
            .type = Type::kString,
            .default_value = d.arch,
            .help = "fully connected net: layer sizes, input to output (without `net`)"},
           [](TrainConfig& c) -> std::string& { return c.arch; });
  add_arch({.name = "activation",
            .type = Type::kString,
            .default_value = d.activation,
            .help = "hidden activation of the `arch` net",
            .choices = nn::activation_names()},
           [](TrainConfig& c) -> std::string& { return c.activation; });
  add_arch({.name = "dropout",
            .type = Type::kReal,
            .default_value = d.dropout,
            .help = "hidden drop rate (probability to DROP) of the `arch` net",
            .min = 0,
            .max = 1},
           [](TrainConfig& c) -> double& { return c.dropout; });
  add_arch({.name = "input_dropout",
            .type = Type::kReal,
            .default_value = d.input_dropout,
            .help = "input drop rate of the `arch` net",
            .min = 0,
            .max = 1},
           [](TrainConfig& c) -> double& { return c.input_dropout; });
  add_arch(
      {.name = "scaling",
       .type = Type::kString,
       .default_value = d.scaling,
       .help = "dropout scaling of the `arch` net: inverted (kept units * 1/(1-p) in training) "
               "or inference (eval * (1-p), as in the paper)",
       .choices = {"inverted", "inference"}},
      [](TrainConfig& c) -> std::string& { return c.scaling; });
  add(
      {.name = "max_norm",
       .type = Type::kReal,
       .default_value = od.max_norm,
       .help = "max-norm c for hidden units' incoming weights (0 = off)",
       .min = 0,
       .max = kInf,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.max_norm; }, true, true);
  add(
      {.name = "weight_decay",
       .type = Type::kReal,
       .default_value = od.weight_decay,
       .help = "L2 weight decay on weights (not biases)",
       .min = 0,
       .max = kInf,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.weight_decay; }, true, true);
  add(
      {.name = "optimizer",
       .type = Type::kString,
       .default_value = od.kind,
       .help = "sgd (momentum, the paper's form) or adam",
       .choices = {"sgd", "adam"}},
      [](TrainConfig& c) -> std::string& { return c.optimizer.kind; }, true, true);
  add(
      {.name = "lr",
       .type = Type::kReal,
       .default_value = od.lr,
       .help = "learning rate",
       .min = 0,
       .max = kInf,
       .min_open = true,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.lr; }, true, true);
  add(
      {.name = "lr_decay",
       .type = Type::kReal,
       .default_value = od.lr_decay,
       .help = "learning-rate factor per epoch",
       .min = 0,
       .max = 1,
       .min_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.lr_decay; }, true, true);
  add(
      {.name = "momentum",
       .type = Type::kReal,
       .default_value = od.momentum,
       .help = "final momentum",
       .min = 0,
       .max = 1,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.momentum; }, true, true);
  add(
      {.name = "momentum_start",
       .type = Type::kReal,
       .default_value = od.momentum_start,
       .help = "momentum at epoch 1",
       .min = 0,
       .max = 1,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.momentum_start; }, true, true);
  add(
      {.name = "momentum_ramp_epochs",
       .type = Type::kInt,
       .default_value = od.momentum_ramp_epochs,
       .help = "epochs to ramp momentum linearly from `momentum_start` to `momentum` (0 = none)",
       .min = 0,
       .max = 100000},
      [](TrainConfig& c) -> int& { return c.optimizer.momentum_ramp_epochs; }, true, true);
  add(
      {.name = "nesterov",
       .type = Type::kBool,
       .default_value = od.nesterov,
       .help = "Nesterov momentum"},
      [](TrainConfig& c) -> bool& { return c.optimizer.nesterov; }, true, true);
  add(
      {.name = "adam_beta1",
       .type = Type::kReal,
       .default_value = od.adam_beta1,
       .help = "Adam's first-moment decay",
       .min = 0,
       .max = 1,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.adam_beta1; }, true, true);
  add(
      {.name = "adam_beta2",
       .type = Type::kReal,
       .default_value = od.adam_beta2,
       .help = "Adam's second-moment decay",
       .min = 0,
       .max = 1,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.adam_beta2; }, true, true);
  add(
      {.name = "adam_eps",
       .type = Type::kReal,
       .default_value = od.adam_eps,
       .help = "Adam's epsilon",
       .min = 0,
       .max = kInf,
       .min_open = true,
       .max_open = true},
      [](TrainConfig& c) -> double& { return c.optimizer.adam_eps; }, true, true);
  add({.name = "batch",
       .type = Type::kInt,
       .default_value = d.batch,
       .help = "examples per step",
       .min = 1,
       .max = 65536},
      [](TrainConfig& c) -> int& { return c.batch; });
  add(
      {.name = "epochs",
       .type = Type::kInt,
       .default_value = d.epochs,
       .help = "epochs to train (with `resume`: the new total)",
       .min = 1,
       .max = 100000},
      [](TrainConfig& c) -> int& { return c.epochs; }, false);
  add({.name = "val",
       .type = Type::kInt,
       .default_value = d.val,
       .help = "training examples held out for validation (the last ones)",
       .min = 0,
       .max = kMaxU64},
      [](TrainConfig& c) -> std::uint64_t& { return c.val; });
  add({.name = "train_size",
       .type = Type::kInt,
       .default_value = d.train_size,
       .help = "training examples used: the first ones of the training split, after `val` and "
               "`exclude_classes` (0 = all)",
       .min = 0,
       .max = kMaxU64},
      [](TrainConfig& c) -> std::uint64_t& { return c.train_size; });
  add({.name = "train_eval",
       .type = Type::kInt,
       .default_value = d.train_eval,
       .help = "training examples evaluated in eval mode per epoch for train_accuracy",
       .min = 0,
       .max = kMaxU64},
      [](TrainConfig& c) -> std::uint64_t& { return c.train_eval; });
  add({.name = "exclude_classes",
       .type = Type::kString,
       .default_value = d.exclude_classes,
       .help = "classes left out of training, validation and test, e.g. 8,9 (for "
               "out-of-distribution tests with `dropkit predict`)"},
      [](TrainConfig& c) -> std::string& { return c.exclude_classes; });
  add({.name = "augment_flip",
       .type = Type::kBool,
       .default_value = d.augment_flip,
       .help = "augment training images: flip left-right with probability 1/2"},
      [](TrainConfig& c) -> bool& { return c.augment_flip; });
  add({.name = "augment_shift",
       .type = Type::kInt,
       .default_value = d.augment_shift,
       .help = "augment training images: shift by up to this many pixels along each axis "
               "(uniform, zeros fill in; 0 = none)",
       .min = 0,
       .max = 8},
      [](TrainConfig& c) -> int& { return c.augment_shift; });
  add({.name = "precision",
       .type = Type::kString,
       .default_value = d.precision,
       .help = "format of the inputs of dense and convolution products in training: f32, or bf16 "
               "(rounded operands, fp32 accumulation, fp32 weights and optimizer state; fast "
               "only on CPUs with AVX512-BF16 or AMX); evaluation runs in f32",
       .choices = {"f32", "bf16"}},
      [](TrainConfig& c) -> std::string& { return c.precision; });
  add({.name = "seed",
       .type = Type::kInt,
       .default_value = d.seed,
       .help = "seed of initialisation, shuffling and masks",
       .min = 0,
       .max = kMaxU64},
      [](TrainConfig& c) -> std::uint64_t& { return c.seed; });
  return f;
}

}  // namespace

const std::vector<Field>& TrainConfig::fields() {
  static const std::vector<Field> f = make_fields();
  return f;
}

const Field& TrainConfig::field(const std::string& name) {
  for (const auto& f : fields())
    if (f.option.name == name) return f;
  throw std::invalid_argument(fmt::format("unknown training option '{}'", name));
}

json TrainConfig::get(const std::string& name) const {
  auto& self = const_cast<TrainConfig&>(*this);  // the refs are only read through here
  return std::visit([&](auto ref) { return json(ref(self)); }, field(name).ref);
}

void TrainConfig::set(const std::string& name, const json& value) {
  const Field& f = field(name);
  json v = value;
  if (f.option.type == Type::kReal && v.is_number()) v = v.get<double>();
  f.option.check(v);
  std::visit(
      [&](auto ref) {
        auto& member = ref(*this);
        member = v.get<std::remove_reference_t<decltype(member)>>();
      },
      f.ref);
}

const TrainConfig& TrainConfig::defaults() {
  static const TrainConfig d;
  return d;
}

void TrainConfig::check_given(const std::vector<std::string>& names, const std::string& net) {
  bool net_given = false;
  std::vector<std::string> arch_options;
  for (const auto& name : names) {
    net_given |= name == "net";
    if (field(name).arch_only) arch_options.push_back(option_ref(name));
  }
  if (net_given && net.empty()) {
    throw std::invalid_argument("`net` is empty (leave it out to train the `arch` net)");
  }
  if (net_given && !arch_options.empty()) {
    throw std::invalid_argument(
        fmt::format("`net` gives the whole layer list; {} apply only to the `arch` net (give one "
                    "or the other)",
                    join(arch_options)));
  }
}

void TrainConfig::validate(bool resolve_net) const {
  for (const auto& f : fields()) f.option.check(get(f.option.name));
  // The syntax here; the classes against the model's outputs when the trainer builds it.
  data::parse_class_list(exclude_classes, 256);
  if (resolve_net || net.empty()) layers();
}

json TrainConfig::to_json() const {
  json j = json::object();
  for (const auto& f : fields()) j[f.option.name] = get(f.option.name);
  return j;
}

TrainConfig TrainConfig::from_json(const json& j, bool resolve_net) {
  if (!j.is_object()) throw std::invalid_argument("config: expected a JSON object");
  TrainConfig c;
  for (const auto& [key, value] : j.items()) c.set(key, value);
  c.validate(resolve_net);
  return c;
}

json TrainConfig::layers() const {
  if (!net.empty()) return model::resolve_net(net);
  return model::mlp_layers(model::parse_arch(arch), activation, input_dropout, dropout, scaling);
}

}  // namespace dropkit::train

namespace dropkit::train {

// The optimizer's ranges are the ones above: defined once, checked here for a library user who
// builds an Optimizer without a TrainConfig.
void OptimizerConfig::validate() const {
  TrainConfig c;
  c.optimizer = *this;
  for (const auto& f : TrainConfig::fields())
    if (f.optimizer) f.option.check(c.get(f.option.name));
}

}  // namespace dropkit::train
