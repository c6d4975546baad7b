// shard.cpp — reading and writing llm.c-style token shards (see shard.h for the layout).
#include "ref/io/shard.h"

#include "ref/io/file.h"  // write_file_atomic

#include <cerrno>      // errno
#include <cstdio>      // FILE, fopen, fread, fclose
#include <cstring>     // strerror
#include <limits>      // numeric_limits
#include <stdexcept>   // runtime_error

namespace ref {

namespace {

const uint64_t kHeaderBytes = kShardHeaderInts * 4;

[[noreturn]] void fail(const std::string& path, const std::string& what, const std::string& fix) {
  throw std::runtime_error(path + ": " + what + "; " + fix);
}

// Little-endian decoding independent of the host's byte order.
int32_t le32(const unsigned char* p) {
  return (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
}
void put_le32(unsigned char* p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

struct File {  // closes on scope exit so that every throw path releases the handle
  FILE* f = nullptr;
  ~File() { if (f) fclose(f); }
};

struct Header { int32_t version; uint64_t count; uint64_t width; };

// Reads and validates the header; also checks the file size against it.
Header read_header(FILE* f, const std::string& path) {
  const std::string fix_rebuild = "rebuild it with build/make_shards (data/build_all.sh)";
  if (fseek(f, 0, SEEK_END) != 0) fail(path, "cannot seek", "check that it is a regular file");
  long long size = ftell(f);
  if (size < 0) fail(path, "cannot tell the file size", "check that it is a regular file");
  rewind(f);
  if ((uint64_t)size < kHeaderBytes)
    fail(path, "file is " + std::to_string(size) + " bytes, shorter than the 1024-byte header (truncated or not a shard)",
         fix_rebuild);
  unsigned char h[kHeaderBytes];
  if (fread(h, 1, kHeaderBytes, f) != kHeaderBytes) fail(path, "cannot read the header", "check the file's permissions");
  int32_t magic = le32(h), version = le32(h + 4), count = le32(h + 8);
  if (magic != kShardMagic)
    fail(path, "bad magic " + std::to_string(magic) + " (expected " + std::to_string(kShardMagic) +
               "): not a token shard", "pass a .bin shard written by build/make_shards or llm.c");
  if (version != kShardVersionU16 && version != kShardVersionU32)
    fail(path, "unknown shard version " + std::to_string(version) + " (this reader knows 1 = uint16, 2 = uint32)",
         "rebuild the shard with this version of build/make_shards");
  if (count < 0) fail(path, "negative token count " + std::to_string(count) + " in the header", fix_rebuild);
  Header hd{version, (uint64_t)count, version == kShardVersionU16 ? 2u : 4u};
  uint64_t expect = kHeaderBytes + hd.count * hd.width;
  if ((uint64_t)size != expect)
    fail(path, "file size " + std::to_string(size) + " bytes does not match the header's " + std::to_string(count) +
               " tokens of " + std::to_string(hd.width) + " bytes (expected " + std::to_string(expect) +
               " bytes): " + ((uint64_t)size < expect ? "truncated" : "trailing bytes"), fix_rebuild);
  return hd;
}

}  // namespace

uint64_t shard_token_count(const std::string& path) {
  File file;
  file.f = fopen(path.c_str(), "rb");
  if (!file.f) fail(path, std::string("cannot open: ") + strerror(errno), "check the path (build shards with data/build_all.sh)");
  return read_header(file.f, path).count;
}

std::vector<uint32_t> read_shard(const std::string& path) {
  File file;
  file.f = fopen(path.c_str(), "rb");
  if (!file.f) fail(path, std::string("cannot open: ") + strerror(errno), "check the path (build shards with data/build_all.sh)");
  Header hd = read_header(file.f, path);
  std::vector<unsigned char> raw(hd.count * hd.width);
  if (fread(raw.data(), 1, raw.size(), file.f) != raw.size())
    fail(path, "short read of the token payload", "check the disk and the file's permissions");
  std::vector<uint32_t> tokens(hd.count);
  const unsigned char* p = raw.data();
  if (hd.width == 2) {
    for (uint64_t i = 0; i < hd.count; i++) tokens[i] = (uint32_t)p[2 * i] | ((uint32_t)p[2 * i + 1] << 8);
  } else {
    for (uint64_t i = 0; i < hd.count; i++) tokens[i] = (uint32_t)le32(p + 4 * i);
  }
  return tokens;
}

void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, uint32_t vocab_size) {
  if (vocab_size == 0) fail(path, "vocab_size is 0", "pass the tokenizer's vocabulary size");
  if (tokens.size() > (uint64_t)std::numeric_limits<int32_t>::max())
    fail(path, std::to_string(tokens.size()) + " tokens do not fit the int32 header count",
         "split the data into several shards");
  for (size_t i = 0; i < tokens.size(); i++)
    if (tokens[i] >= vocab_size)
      fail(path, "token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                 " is >= vocab_size " + std::to_string(vocab_size), "encode with the tokenizer whose size you pass");
  const int32_t version = vocab_size <= 65536 ? kShardVersionU16 : kShardVersionU32;
  const uint64_t width = version == kShardVersionU16 ? 2 : 4;

  std::vector<unsigned char> buf(kHeaderBytes + tokens.size() * width, 0);
  put_le32(buf.data(), (uint32_t)kShardMagic);
  put_le32(buf.data() + 4, (uint32_t)version);
  put_le32(buf.data() + 8, (uint32_t)tokens.size());
  unsigned char* p = buf.data() + kHeaderBytes;
  for (size_t i = 0; i < tokens.size(); i++) {
    if (width == 2) { p[2 * i] = (unsigned char)tokens[i]; p[2 * i + 1] = (unsigned char)(tokens[i] >> 8); }
    else put_le32(p + 4 * i, tokens[i]);
  }

  // Atomic replace: a reader never sees a half-written shard, even if we are killed mid-write.
  write_file_atomic(path, buf.data(), buf.size());
}

}  // namespace ref
