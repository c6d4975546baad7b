// fuzz_shard.cpp — ref/io/shard.cpp (read_shard, shard_token_count) and ref/data.cpp's
// load_tokens (shard or raw bytes) on any bytes, written to a temporary file (the readers take a
// path). Properties: each returns or throws std::runtime_error; read_shard and shard_token_count
// agree on the count; the tokens of a shard that reads are its payload, decoded by hand.
#include "tests/fuzz/fuzz.h"

#include "ref/data.h"
#include "ref/io/shard.h"

FUZZ_ENTRY {
  static FuzzFile bin(".bin"), txt(".txt");
  const std::string& path = bin.write(data, size);
  uint64_t count = 0;
  const bool counted = fuzz_try([&] { count = ref::shard_token_count(path); });
  std::vector<uint32_t> tokens;
  const bool read = fuzz_try([&] { tokens = ref::read_shard(path); });
  FUZZ_CHECK(counted == read, "shard_token_count and read_shard disagree on whether the shard is valid");
  fuzz_try([&] { (void)ref::load_tokens(path); });
  fuzz_try([&] { (void)ref::load_tokens(txt.write(data, size)); });
  if (!read) return 0;
  FUZZ_CHECK(count == tokens.size(), "shard_token_count != read_shard().size()");

  // The tokens are the payload's little-endian uint16 (version 1) or uint32 (version 2) values,
  // decoded here independently of the reader.
  const size_t width = data[4] == ref::kShardVersionU16 ? 2 : 4;  // read succeeded: the header is there
  FUZZ_CHECK(size == 1024 + tokens.size() * width, "the file size does not match the token count");
  for (size_t i = 0; i < tokens.size(); i++) {
    const uint8_t* p = data + 1024 + i * width;
    const uint32_t want = width == 2 ? (uint32_t)(p[0] | p[1] << 8)
                                     : (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    FUZZ_CHECK(tokens[i] == want, "token " + std::to_string(i) + " decoded wrong");
  }
  return 0;
}
