// fuzz_checkpoint.cpp — ref/trainer.cpp's checkpoint reader (checkpoint_config, load_checkpoint:
// safetensors + the config and counters in the metadata + every tensor's shape) on any bytes.
// The model is a fixed micro configuration (kept tiny so that a checkpoint seed is a few KB and
// the fuzzer's mutations reach every part of it); tests/fuzz/make_seeds.cpp writes the seeds from
// the same configuration. Properties: both calls return or throw std::runtime_error; a checkpoint
// that loads gives a step and data position that save_checkpoint writes back and load reads again.
#include <memory>  // std::unique_ptr

#include "tests/fuzz/fuzz.h"

#include "ref/model.h"
#include "ref/trainer.h"
#include "tests/fuzz/micro_config.h"

FUZZ_ENTRY {
  static FuzzFile file(".ckpt");
  static FuzzFile file2(".ckpt2");
  static std::unique_ptr<ref::Model> model = ref::make_model(fuzz_micro_config());
  const std::string& path = file.write(data, size);
  fuzz_try([&] { (void)ref::checkpoint_config(path); });
  ref::TrainState st;
  if (!fuzz_try([&] { st = ref::load_checkpoint(path, *model); })) return 0;
  ref::save_checkpoint(file2.path(), *model, st);
  const ref::TrainState back = ref::load_checkpoint(file2.path(), *model);
  FUZZ_CHECK(back.step == st.step && back.data_pos == st.data_pos, "step/data_pos do not round-trip");
  return 0;
}
