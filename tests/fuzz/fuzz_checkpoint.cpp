// fuzz_checkpoint.cpp — ref/trainer.cpp's checkpoint reader (checkpoint_config, load_checkpoint:
// safetensors + the config and counters in the metadata + every tensor's shape) on any bytes.
// The model is a fixed micro configuration (kept tiny so that a checkpoint seed is a few KB and
// the fuzzer's mutations reach every part of it); tests/fuzz/make_seeds.cpp writes the seeds from
// the same configuration. Properties: both calls return or throw std::runtime_error; when a
// checkpoint loads, checkpoint_config reads it too, with the model's shape.
#include <memory>  // std::unique_ptr

#include "tests/fuzz/fuzz.h"

#include "ref/model.h"
#include "ref/trainer.h"
#include "tests/fuzz/micro_config.h"

FUZZ_ENTRY {
  static FuzzFile file(".ckpt");
  static std::unique_ptr<ref::Model> model = ref::make_model(fuzz_micro_config());
  const std::string& path = file.write(data, size);
  ref::Config c;
  const bool has_config = fuzz_try([&] { c = ref::checkpoint_config(path); });
  if (!fuzz_try([&] { (void)ref::load_checkpoint(path, *model); })) return 0;
  FUZZ_CHECK(has_config, "load_checkpoint accepted a file whose config checkpoint_config refuses");
  FUZZ_CHECK(ref::shape_differences(c, model->config()).empty(), "loaded a checkpoint of another shape");
  return 0;
}
