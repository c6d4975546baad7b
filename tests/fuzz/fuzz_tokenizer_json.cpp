// fuzz_tokenizer_json.cpp — ref/text/tokenizer.cpp's loader: Tokenizer::from_json on any bytes
// (the seeds are small but complete tokenizer.json files: tests/fuzz/corpus/tokenizer_json/).
// Properties: the loader returns or throws std::runtime_error; a tokenizer that loads encodes a
// fixed probe text (ASCII, UTF-8, digits, an added token, invalid bytes) to ids below its
// vocab_size, and decode of those ids returns or throws std::runtime_error (a file may have no
// decoder, or tokens that are not byte-level: both are refused by name).
#include <vector>  // std::vector

#include "tests/fuzz/fuzz.h"

#include "ref/text/tokenizer.h"

FUZZ_ENTRY {
  const std::string text(reinterpret_cast<const char*>(data), size);
  ref::Tokenizer tok;
  if (!fuzz_try([&] { tok = ref::Tokenizer::from_json(text); })) return 0;
  static const std::string probe =
      "Hello wörld, it's 12345 <|endoftext|> <|fim|>  \t\n\n中文テキスト \xff\xc3( end\r\n'S  ";
  std::vector<uint32_t> ids;
  if (!fuzz_try([&] { ids = tok.encode(probe); })) return 0;
  for (uint32_t id : ids) FUZZ_CHECK(id < tok.vocab_size(), "encode gave an id >= vocab_size");
  fuzz_try([&] { (void)tok.decode(ids); });
  fuzz_try([&] { (void)tok.pretokenize(probe); });
  (void)tok.summary();
  return 0;
}
