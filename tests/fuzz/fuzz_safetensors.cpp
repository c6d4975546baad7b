// fuzz_safetensors.cpp — ref/io/safetensors.cpp's reader (checkpoints and dumps are safetensors
// files) on any bytes. SafeTensorsFile::read takes a path, so the input is written to a temporary
// file first. Properties: read returns or throws std::runtime_error; every tensor it returns has
// exactly numel * dtype-size bytes, and copying it out with its own dtype and shape succeeds while
// a wrong shape is refused.
#include "tests/fuzz/fuzz.h"

#include "ref/io/safetensors.h"

FUZZ_ENTRY {
  static FuzzFile file(".safetensors");
  const std::string& path = file.write(data, size);
  ref::SafeTensorsFile f;
  if (!fuzz_try([&] { f = ref::SafeTensorsFile::read(path); })) return 0;
  for (const auto& kv : f.tensors) {
    const std::string& name = kv.first;
    const ref::StTensor& t = kv.second;
    const size_t es = (t.dtype == "F32" || t.dtype == "I32") ? 4 : 8;
    FUZZ_CHECK(t.bytes.size() == t.numel() * es, "tensor '" + name + "' has the wrong byte count");
    if (t.dtype == "F32") FUZZ_CHECK(f.f32(name, t.shape).size() == t.numel(), "f32 copy");
    if (t.dtype == "I32") FUZZ_CHECK(f.i32(name, t.shape).size() == t.numel(), "i32 copy");
    if (t.dtype == "I64") FUZZ_CHECK(f.i64(name, t.shape).size() == t.numel(), "i64 copy");
    std::vector<int64_t> wrong = t.shape;
    wrong.push_back(1);
    FUZZ_CHECK(!fuzz_try([&] { (void)f.f32(name, wrong); }), "a wrong shape was accepted");
  }
  for (const auto& kv : f.meta) FUZZ_CHECK(f.meta_at(kv.first) == kv.second, "meta_at");
  FUZZ_CHECK(!fuzz_try([&] { (void)f.meta_at("no such key \x01"); }), "meta_at of a missing key");
  return 0;
}
