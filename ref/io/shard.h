// shard.h — token shards in the llm.c layout.
//
// A shard is a 256 x int32 little-endian header followed by the tokens:
//   header[0] = kShardMagic (20240520), header[1] = version, header[2] = token count, rest 0.
//   version 1: uint16 tokens (llm.c's format; vocabularies of at most 65536 entries)
//   version 2: uint32 tokens (this project's extension for vocabularies above 65536)
// The vocabulary size itself is not stored: a reader checks tokens against the model's vocab.
#pragma once
#include <cstdint>   // int32_t, uint32_t
#include <string>    // std::string
#include <vector>    // std::vector

namespace ref {

constexpr int32_t kShardMagic = 20240520;
constexpr int kShardHeaderInts = 256;
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardVersionU32 = 2;

// Reads a whole shard. Checks the magic, the version, that the header's count is sane and that the
// file size is exactly header + count * token width. Throws std::runtime_error
// ("<path>: <what is wrong>; <how to fix>") otherwise.
std::vector<uint32_t> read_shard(const std::string& path);

// Reads only the header and returns the token count (same checks as read_shard, without loading).
uint64_t shard_token_count(const std::string& path);

// Writes a shard atomically (write_file_atomic: PATH.tmp.<pid>, fsync, rename). Version 1 when vocab_size <= 65536,
// version 2 otherwise. Throws if a token is >= vocab_size or the count does not fit the header.
void write_shard(const std::string& path, const std::vector<uint32_t>& tokens, uint32_t vocab_size);

}  // namespace ref
