// fuzz_config.cpp — ref/config.cpp: config_from_json (the config stored in checkpoints and dumps)
// and validate on any bytes.
// Property: a config that parses and validates is written by to_json as JSON that reads back to
// the same config (to_json(from_json(to_json(c))) == to_json(c)), so a checkpoint written from it
// can be resumed.
#include "tests/fuzz/fuzz.h"

#include "ref/config.h"

FUZZ_ENTRY {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ref::Config c;
  if (!fuzz_try([&] { c = ref::config_from_json(text); })) return 0;
  if (!fuzz_try([&] { ref::validate(c); })) return 0;
  const std::string j = ref::to_json(c);
  ref::Config back;
  FUZZ_CHECK(fuzz_try([&] { back = ref::config_from_json(j); }), "to_json wrote a config that does not read back: " + j);
  FUZZ_CHECK(ref::to_json(back) == j, "config does not round-trip: " + j);
  FUZZ_CHECK(ref::shape_differences(c, back).empty(), "round trip changed the model shape");
  return 0;
}
