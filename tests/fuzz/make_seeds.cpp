// make_seeds.cpp — writes the binary seed inputs of the fuzz harnesses with the project's own
// writers, so the seeds are valid files of the current formats:
//   DIR/safetensors/  safetensors files (every dtype, a scalar, an empty tensor, metadata)
//   DIR/checkpoint/   checkpoints of tests/fuzz/micro_config.h's model
//   DIR/shard/        shards of both versions, an empty one
// tests/fuzz/corpus/ holds a copy (committed); tests/fuzz/run.sh writes fresh ones before fuzzing.
// Usage: make_seeds DIR
#include <cstdio>     // std::fprintf
#include <exception>  // std::exception
#include <string>     // std::string
#include <sys/stat.h> // mkdir
#include <vector>     // std::vector

#include "ref/io/safetensors.h"
#include "ref/io/shard.h"
#include "ref/model.h"
#include "ref/trainer.h"
#include "tests/fuzz/micro_config.h"

int main(int argc, char** argv) {
  if (argc != 2) { std::fprintf(stderr, "usage: make_seeds DIR\n"); return 2; }
  const std::string dir = argv[1];
  try {
    for (const char* sub : {"", "/safetensors", "/checkpoint", "/shard"}) mkdir((dir + sub).c_str(), 0755);

    {  // safetensors: the dtypes the reader knows, a scalar, an empty tensor, metadata
      ref::SafeTensorsWriter w;
      const float f[6] = {1.5f, -2, 0, 3.25f, 1e-3f, 7};
      const int32_t i[3] = {-1, 0, 65536};
      const int64_t l[2] = {-5, 1LL << 40};
      w.add("a.weight", {2, 3}, f);
      w.add("ids", {3}, i);
      w.add("big", {1, 2}, l);
      w.add("scalar", {}, f);
      w.add("empty", {0, 4}, f);
      w.meta("format", "test");
      w.meta("note", "seed \"quoted\" \xc3\xa9");
      w.write(dir + "/safetensors/mixed.safetensors");
      ref::SafeTensorsWriter none;
      none.write(dir + "/safetensors/no_tensors.safetensors");
    }
    {  // checkpoints of the micro model, as the trainer writes them
      const ref::Config c = fuzz_micro_config();
      auto model = ref::make_model(c);
      ref::TrainState st;
      st.step = 3;
      st.data_pos = 12;
      ref::save_checkpoint(dir + "/checkpoint/micro.ckpt", *model, st);
    }
    {  // shards: version 1 (uint16), version 2 (uint32), empty
      ref::write_shard(dir + "/shard/v1.bin", {0, 1, 2, 300, 65535, 7}, 65536);
      ref::write_shard(dir + "/shard/v2.bin", {0, 70000, 5, 1u << 31}, (1u << 31) + 1);
      ref::write_shard(dir + "/shard/empty.bin", {}, 256);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_seeds: %s\n", e.what());
    return 1;
  }
  std::printf("wrote seeds under %s\n", dir.c_str());
  return 0;
}
