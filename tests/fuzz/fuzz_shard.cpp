// fuzz_shard.cpp — ref/io/shard.cpp (read_shard, shard_token_count) and ref/data.cpp's
// load_tokens (shard or raw bytes) on any bytes, written to a temporary file (the readers take a
// path). Properties: each returns or throws std::runtime_error; read_shard and shard_token_count
// agree on the count; a shard that reads is written back by write_shard to the same bytes
// (version 1 or 2 as in the input, so the vocabulary passed is chosen for that version).
#include <algorithm>  // std::max_element
#include <fstream>    // std::ifstream
#include <iterator>   // std::istreambuf_iterator

#include "tests/fuzz/fuzz.h"

#include "ref/data.h"
#include "ref/io/shard.h"

FUZZ_ENTRY {
  static FuzzFile bin(".bin"), txt(".txt"), out(".out.bin");
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

  const bool u16 = data[4] == ref::kShardVersionU16;  // read succeeded: the header is at least 1024 bytes
  const uint32_t max_tok = tokens.empty() ? 0 : *std::max_element(tokens.begin(), tokens.end());
  const uint32_t vocab = u16 ? 65536 : std::max<uint32_t>(max_tok, 65536) + 1;
  if (!u16 && max_tok == UINT32_MAX) return 0;  // no vocabulary can hold it; nothing to write
  ref::write_shard(out.path(), tokens, vocab);
  std::ifstream in(out.path(), std::ios::binary);
  const std::string written((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The header's unused ints (3..255) are not kept: compare the first 12 bytes and the payload.
  FUZZ_CHECK(written.size() == size && written.compare(0, 12, std::string((const char*)data, 12)) == 0 &&
                 written.compare(1024, std::string::npos, std::string((const char*)data + 1024, size - 1024)) == 0,
             "write_shard(read_shard(x)) != x");
  return 0;
}
