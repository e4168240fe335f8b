// Checkpoints: the model inside, the format version checked, missing optional fields defaulted,
// version 1 read (a file written by the dropkit before models were values), identical runs
// writing identical bytes, and every kind of damage refused with a message.
#include "dropkit/train/checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <numeric>

#include "dropkit/core/atomic_file.h"
#include "dropkit/kernels/table.h"
#include "dropkit/model/safetensors.h"
#include "dropkit/train/trainer.h"
#include "support/idx_files.h"
#include "support/temp_dir.h"

namespace dropkit::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

// The data the v1 fixture was trained on (tests/fixtures/checkpoint-v1/README.md).
data::TrainTest fixture_data() {
  return {test::synthetic_dataset(300, 8, 4, 1), test::synthetic_dataset(80, 8, 4, 2)};
}

const fs::path kV1 =
    fs::path(DROPKIT_SOURCE_DIR) / "tests/fixtures/checkpoint-v1/checkpoint.safetensors";

TrainConfig small_config() {
  TrainConfig c;
  c.net = "dropout:0.2,dense:24:relu,dropout:0.5,dense:4";
  c.optimizer.lr = 0.3;
  c.optimizer.momentum = 0.9;
  c.batch = 25;
  c.val = 40;
  c.epochs = 3;
  c.seed = 5;
  return c;
}

// Rewrites a checkpoint file with its metadata and tensors changed by `edit`.
void rewrite(const fs::path& file,
             const std::function<void(std::map<std::string, std::string>&,
                                      std::map<std::string, Tensor>&)>& edit) {
  auto st = model::decode_safetensors(read_file(file), file.string());
  edit(st.metadata, st.tensors);
  std::vector<model::TensorView> views;
  for (const auto& [name, t] : st.tensors) views.push_back({name, t.shape().dims(), t.span()});
  write_file_atomic(file, model::encode_safetensors(views, st.metadata));
}

std::string error_of(const fs::path& file) {
  try {
    read_checkpoint(file);
  } catch (const CheckpointError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Checkpoint, Version1IsReadAndContinuesAsTheOldRunDid) {
  Checkpoint ck = read_checkpoint(kV1);
  EXPECT_EQ(ck.version, 1);
  EXPECT_EQ(ck.model->spec(), "dropout:0.2,dense:12:relu,dropout:0.5,dense:4");
  EXPECT_EQ(ck.state.epoch, 2);
  EXPECT_EQ(ck.state.step, 22u);
  const auto data = fixture_data();
  parallel::ThreadPool pool(2);
  std::vector<std::uint32_t> rows(data.test.count);
  std::iota(rows.begin(), rows.end(), 0u);
  Tensor x;
  std::vector<std::uint8_t> labels;
  // What the binary that wrote it reported, to the last bit, on machines whose oneDNN runs its
  // AVX-512 products; with AVX2 ones (another order of the products' sums) what the same code
  // gives there. The masks are the same bits on both (tests/kernels).
  struct Expected {
    double eval_loss, test_loss, train_loss;
  };
  const Expected e =
      kernels::isa_supported(kernels::Isa::kAvx512)
          ? Expected{0.007757789331868608, 0.0026211536003024616, 0.1954732339748524}
          : Expected{0.007757789202453869, 0.0026211537153675189, 0.19547323317644835};
  const double eval_loss = evaluate(*ck.model, data.test, rows, pool, x, labels).loss;
  EXPECT_EQ(eval_loss, e.eval_loss);

  ck.config.epochs = 3;
  Trainer t(std::move(ck), data, pool);
  const EpochRecord r = t.run_epoch();
  EXPECT_EQ(r.test_loss, e.test_loss);
  EXPECT_EQ(r.train_loss, e.train_loss);
}

TEST(Checkpoint, HoldsTheModelAndResumesToTheSameBytes) {
  const auto data = fixture_data();
  parallel::ThreadPool pool(2);
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path straight = tmp.path() / "straight.safetensors",
                 resumed = tmp.path() / "r.safetensors";
  {
    Trainer t(small_config(), data, pool);
    for (int e = 0; e < 3; ++e) t.run_epoch();
    t.save_checkpoint(straight);
  }
  {
    TrainConfig c = small_config();
    c.epochs = 1;
    Trainer t(c, data, pool);
    t.run_epoch();
    t.save_checkpoint(resumed);
  }
  Checkpoint ck = read_checkpoint(resumed);
  EXPECT_EQ(ck.version, kCheckpointVersion);
  EXPECT_EQ(ck.model->spec(), "dropout:0.2,dense:24:relu,dropout:0.5,dense:4");
  EXPECT_EQ(ck.model->input_shape(), (Shape{1, 8, 8}));
  ck.config.epochs = 3;
  parallel::ThreadPool other(3);  // another thread count, the same bits
  Trainer t(std::move(ck), data, other);
  t.run_epoch();
  t.run_epoch();
  t.save_checkpoint(resumed);
  EXPECT_EQ(read_file(resumed), read_file(straight));
}

TEST(Checkpoint, NewerVersionIsRefusedNamingBoth) {
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path f = tmp.path() / "c.safetensors";
  fs::copy_file(kV1, f);
  {
    Checkpoint ck = read_checkpoint(f);
    parallel::ThreadPool pool(1);
    const auto data = fixture_data();
    Trainer(std::move(ck), data, pool).save_checkpoint(f);  // now version 2
  }
  // std::string, not a literal: GCC 12 warns falsely (-Wrestrict) on map[key] = "literal".
  rewrite(f, [](auto& meta, auto&) { meta["format_version"] = std::string("3"); });
  EXPECT_THAT(error_of(f), HasSubstr("newer dropkit (checkpoint format version 3; this dropkit "
                                     "reads versions 1 to 2)"));
  rewrite(f, [](auto& meta, auto&) { meta["format_version"] = std::string("two"); });
  EXPECT_THAT(error_of(f), HasSubstr("format_version 'two'"));
  rewrite(f, [](auto& meta, auto&) { meta.erase("format"); });
  EXPECT_THAT(error_of(f), HasSubstr("not a dropkit checkpoint"));
}

TEST(Checkpoint, MissingOptionalFieldsTakeTheirDefaults) {
  const auto data = fixture_data();
  parallel::ThreadPool pool(1);
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path f = tmp.path() / "c.safetensors";
  TrainConfig c = small_config();
  c.epochs = 1;
  Trainer t(c, data, pool);
  t.run_epoch();
  t.save_checkpoint(f);
  // As if written before these fields existed.
  rewrite(f, [](auto& meta, auto&) {
    json config = json::parse(meta["config"]);
    config.erase("train_eval");
    config.erase("nesterov");
    config.erase("precision");
    meta["config"] = config.dump();
    json state = json::parse(meta["state"]);
    state.erase("adam_steps");
    meta["state"] = state.dump();
    json model = json::parse(meta["model"]);
    model["layers"][0].erase("mask_storage");
    meta["model"] = model.dump();
  });
  const Checkpoint ck = read_checkpoint(f);
  const TrainConfig defaults;
  EXPECT_EQ(ck.config.train_eval, defaults.train_eval);
  EXPECT_FALSE(ck.config.optimizer.nesterov);
  EXPECT_EQ(ck.config.precision, "f32");
  EXPECT_EQ(ck.state.adam_steps, 0u);
  EXPECT_EQ(ck.model->layers()[0]["mask_storage"], "bits");
  // An unknown field is not silently dropped.
  rewrite(f, [](auto& meta, auto&) {
    json config = json::parse(meta["config"]);
    config["warp_speed"] = 9;
    meta["config"] = config.dump();
  });
  EXPECT_THAT(error_of(f), HasSubstr("unknown training option 'warp_speed'"));
}

// A resume must see the data the run was trained on: other training or test data are refused
// naming both fingerprints; the run's own data resume.
TEST(Checkpoint, ResumeOnOtherDataIsRefused) {
  const auto data = fixture_data();
  parallel::ThreadPool pool(1);
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path file = tmp.path() / "c.safetensors";
  TrainConfig c = small_config();
  Trainer t(c, data, pool);
  t.run_epoch();
  t.save_checkpoint(file);
  EXPECT_NO_THROW(Trainer(read_checkpoint(file), data, pool));
  auto other_train = data;
  other_train.train.images[17] ^= 1;  // one pixel of one image
  auto other_test = data;
  other_test.test.labels[3] = static_cast<std::uint8_t>((other_test.test.labels[3] + 1) % 4);
  for (const auto& [d, which] : {std::pair{&other_train, "training"}, {&other_test, "test"}}) {
    try {
      Trainer resumed(read_checkpoint(file), *d, pool);
      ADD_FAILURE() << which << " data changed, resume accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_THAT(e.what(), HasSubstr(std::string("the ") + which + " data given are not"));
      EXPECT_THAT(e.what(), HasSubstr("crc32"));
    }
  }
}

// Steps edited consistently (history and state agree) still disagree with the epochs' length on
// the data: a resume refuses them rather than continue at a step no run reaches.
TEST(Checkpoint, AResumeChecksTheStepsAgainstTheEpochsLength) {
  const auto data = fixture_data();
  parallel::ThreadPool pool(1);
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path f = tmp.path() / "ck.safetensors";
  TrainConfig c = small_config();
  c.epochs = 1;
  Trainer t(c, data, pool);
  t.run_epoch();
  t.save_checkpoint(f);
  rewrite(f, [](auto& m, auto&) {
    json s = json::parse(m["state"]);
    s["step"] = s["step"].get<std::uint64_t>() + 1;
    s["history"][0]["step"] = s["step"];
    m["state"] = s.dump();
  });
  try {
    Trainer resumed(read_checkpoint(f), data, pool);
    ADD_FAILURE() << "accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_THAT(e.what(), HasSubstr("but an epoch is"));
  }
}

TEST(Checkpoint, DamageIsRefusedWithAMessage) {
  const auto data = fixture_data();
  parallel::ThreadPool pool(1);
  const test::TempDir tmp("dropkit_checkpoint_test");
  const fs::path good = tmp.path() / "good.safetensors", f = tmp.path() / "f.safetensors";
  TrainConfig c = small_config();
  c.epochs = 1;
  Trainer t(c, data, pool);
  t.run_epoch();
  t.save_checkpoint(good);
  struct Case {
    const char* expect;
    std::function<void(std::map<std::string, std::string>&, std::map<std::string, Tensor>&)> edit;
  };
  const std::vector<Case> cases = {
      {"missing tensor layers.1.dense.bias",
       [](auto&, auto& t) { t.erase("layers.1.dense.bias"); }},
      {"unexpected tensor extra", [](auto&, auto& t) { t.emplace("extra", Tensor(Shape{2})); }},
      {"tensor layers.3.dense.weight has shape [2, 24], the model needs [4, 24]",
       [](auto&, auto& t) {
         t["layers.3.dense.weight"] = Tensor(Shape{2, 24});
       }},
      {"holds nan at index 5",
       [](auto&, auto& t) { t["layers.1.dense.weight"][5] = std::nanf(""); }},
      {"missing tensor optimizer.velocity.layers.1.dense.weight",
       [](auto&, auto& t) { t.erase("optimizer.velocity.layers.1.dense.weight"); }},
      {"bad metadata", [](auto& m, auto&) { m["state"] = std::string("{"); }},
      {"state: not valid JSON at line 1, column 2",
       [](auto& m, auto&) { m["state"] = std::string("{"); }},
      {"state: key 'step' given twice in the top-level object",
       [](auto& m, auto&) {
         std::string& st = m["state"];
         st.insert(1, "\"step\":1,");
       }},
      {"epoch = 3 but the history holds 1 epochs",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["epoch"] = 3;
         m["state"] = s.dump();
       }},
      {"epoch = 1.5 is not a whole number",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["epoch"] = 1.5;
         m["state"] = s.dump();
       }},
      {"epoch = -1 is not a whole number",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["epoch"] = -1;
         m["state"] = s.dump();
       }},
      {"step = \"8\" is not a whole number",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["step"] = "8";
         m["state"] = s.dump();
       }},
      {"but the history says",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["step"] = 1;
         m["state"] = s.dump();
       }},
      {"step = 16 but the history says 15 steps",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["step"] = 16;
         s["history"][0]["step"] = 15;
         m["state"] = s.dump();
       }},
      {"step = 4294967296 but the history says",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["step"] = std::uint64_t{1} << 32;
         m["state"] = s.dump();
       }},
      {"step = 18446744073709551615 but the history says",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["step"] = ~std::uint64_t{0};
         m["state"] = s.dump();
       }},
      {"history entry 1: test_loss is missing",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["history"][0].erase("test_loss");
         m["state"] = s.dump();
       }},
      {"history entry 1: test_accuracy = 7 is outside [0, 1]",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["history"][0]["test_accuracy"] = 7.0;
         m["state"] = s.dump();
       }},
      {"history entry 1: unknown option 'test_aCcuracy'",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["history"][0]["test_aCcuracy"] = 0.5;
         m["state"] = s.dump();
       }},
      {"history entry 1: val_loss = -1 is outside [0, inf)",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["history"][0]["val_loss"] = -1;
         m["state"] = s.dump();
       }},
      {"history entry 1: expected an object of epoch metrics, found an array",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["history"][0] = json::array();
         m["state"] = s.dump();
       }},
      {"state: unknown key 'stepp'",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["stepp"] = 1;
         m["state"] = s.dump();
       }},
      {"adam_steps = 1 but a run of",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["adam_steps"] = 1;
         m["state"] = s.dump();
       }},
      {"adam_steps = 9999 is not a whole number in [0, ",
       [](auto& m, auto&) {
         json s = json::parse(m["state"]);
         s["adam_steps"] = 9999;
         m["state"] = s.dump();
       }},
      {"holds inf at index 0", [](auto&, auto& t) { t["layers.3.dense.bias"][0] = INFINITY; }},
      {"std = 0",
       [](auto& m, auto&) {
         json model = json::parse(m["model"]);
         model["normalization"]["std"] = 0;
         m["model"] = model.dump();
       }},
      {"drop_prob = 2 is outside [0, 1]",
       [](auto& m, auto&) {
         json model = json::parse(m["model"]);
         model["layers"][0]["drop_prob"] = 2;
         m["model"] = model.dump();
       }},
  };
  for (const auto& k : cases) {
    fs::copy_file(good, f, fs::copy_options::overwrite_existing);
    rewrite(f, k.edit);
    EXPECT_THAT(error_of(f), HasSubstr(k.expect));
    EXPECT_THAT(error_of(f), HasSubstr(f.string()));
  }
  write_file_atomic(f, "not a checkpoint at all");
  EXPECT_THAT(error_of(f), HasSubstr(f.string()));
}

}  // namespace
}  // namespace dropkit::train
