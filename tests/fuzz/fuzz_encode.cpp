// fuzz_encode.cpp — ref/text/tokenizer.cpp's encode and decode on any bytes, with the four fixture
// tokenizers of tests/fixtures/tokenizers/ (byte-level BPE in the styles of GPT-2, cl100k, o200k
// and DeepSeek-V3; each covers all 256 bytes).
// Input: byte 0 picks the tokenizer, the rest is the text. Properties: encode accepts any bytes;
// its ids are below vocab_size; encode_append appends the same ids; the same text read as token
// ids (little-endian uint32, taken modulo vocab_size + 8) decodes, or throws std::runtime_error
// exactly when an id is out of range or unused (a hole in the id space). And decode(encode(text))
// == text byte for byte (docs/TOKENIZER.md: invalid UTF-8 included), checked on a lossless copy of
// the tokenizer: the fixtures' add_prefix_space (adds a space) and the lstrip/rstrip of added tokens
// (swallow the spaces around them) change the text on purpose, as in HF, so the copy turns them off.
#include <algorithm>  // std::equal
#include <cstring>    // std::memcpy
#include <vector>   // std::vector

#include "tests/fuzz/fuzz.h"

#include "ref/io/file.h"
#include "ref/text/tokenizer.h"

static std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
  return s;
}

// tokenizers()[i]: fixture i as it is; tokenizers()[kFixtures + i]: its lossless copy.
static constexpr size_t kFixtures = 4;
static const std::vector<ref::Tokenizer>& tokenizers() {
  static const std::vector<ref::Tokenizer> toks = [] {
    std::vector<ref::Tokenizer> v, lossless;
    for (const char* name : {"gpt2_prefix_digits", "cl100k_style", "o200k_style", "deepseek_v3_style"}) {
      const std::string path = fuzz_root_path(std::string("tests/fixtures/tokenizers/") + name + ".json");
      try {
        std::string text = ref::read_file(path, "run from the repository root or set LFMOE_ROOT");
        v.push_back(ref::Tokenizer::from_json(text));
        for (const char* key : {"\"lstrip\":", "\"rstrip\":", "\"add_prefix_space\":"})
          text = replace_all(text, std::string(key) + "true", std::string(key) + "false");
        lossless.push_back(ref::Tokenizer::from_json(text));
      } catch (const std::exception& e) {
        fuzz_fail(std::string("cannot load the fixture ") + path + ": " + e.what());
      }
    }
    v.insert(v.end(), lossless.begin(), lossless.end());
    return v;
  }();
  return toks;
}

FUZZ_ENTRY {
  if (size == 0) return 0;
  const ref::Tokenizer& tok = tokenizers()[data[0] % kFixtures];
  const ref::Tokenizer& lossless = tokenizers()[kFixtures + data[0] % kFixtures];
  const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);

  std::vector<uint32_t> ids;
  FUZZ_CHECK(fuzz_try([&] { ids = tok.encode(text); }), "encode refused text (it must accept any bytes)");
  for (uint32_t id : ids) FUZZ_CHECK(id < tok.vocab_size(), "encode gave an id >= vocab_size");
  FUZZ_CHECK(fuzz_try([&] { (void)tok.decode(ids); }), "decode refused encode's ids");
  std::string back;
  FUZZ_CHECK(fuzz_try([&] { back = lossless.decode(lossless.encode(text)); }), "the lossless copy refused");
  FUZZ_CHECK(back == text, "decode(encode(text)) != text");
  std::vector<uint32_t> appended = {7};
  tok.encode_append(text, appended);
  FUZZ_CHECK(appended.size() == ids.size() + 1 && std::equal(ids.begin(), ids.end(), appended.begin() + 1),
             "encode_append differs from encode");

  std::vector<uint32_t> raw_ids(text.size() / 4);
  bool out_of_range = false;
  for (size_t i = 0; i < raw_ids.size(); i++) {
    uint32_t x;
    std::memcpy(&x, text.data() + 4 * i, 4);
    raw_ids[i] = x % (tok.vocab_size() + 8);
    out_of_range = out_of_range || raw_ids[i] >= tok.vocab_size() || tok.token_str(raw_ids[i]).empty();
  }
  const bool ok = fuzz_try([&] { (void)tok.decode(raw_ids); });
  FUZZ_CHECK(ok != out_of_range, "decode must refuse exactly the out-of-range and unused ids");
  return 0;
}
