// test_shard.cpp — token shards: round trips of both versions and every kind of bad file.
#include <doctest/doctest.h>

#include <cstdio>     // FILE, fopen, fwrite, remove
#include <unistd.h>   // getpid
#include <stdexcept>  // runtime_error
#include <string>
#include <vector>

#include "ref/io/shard.h"
#include "tests/test_util.h"  // error_of

namespace {

std::string tmp_path(const char* name) { return std::string("/tmp/lfmoe_test_shard_") + name + ".bin"; }

void write_bytes(const std::string& path, const std::vector<unsigned char>& bytes) {
  FILE* f = fopen(path.c_str(), "wb");
  REQUIRE(f != nullptr);
  fwrite(bytes.data(), 1, bytes.size(), f);
  fclose(f);
}

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::vector<unsigned char> out;
  FILE* f = fopen(path.c_str(), "rb");
  REQUIRE(f != nullptr);
  int c;
  while ((c = fgetc(f)) != EOF) out.push_back((unsigned char)c);
  fclose(f);
  return out;
}

void set_le32(std::vector<unsigned char>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; i++) b[at + i] = (unsigned char)(v >> (8 * i));
}

// Runs read_shard and returns the error message ("" if it did not throw).
std::string read_error(const std::string& path) { return error_of([&] { ref::read_shard(path); }); }

}  // namespace

TEST_CASE("shard: version 1 (uint16) round trip and exact byte layout") {
  const std::string p = tmp_path("v1");
  std::vector<uint32_t> toks = {0, 1, 258, 65535, 50256, 7};
  ref::write_shard(p, toks, 65536);
  std::vector<unsigned char> b = read_bytes(p);
  REQUIRE(b.size() == 1024 + 2 * toks.size());
  // Header written by hand-known values: magic 20240520 = 0x0134D888, version 1, count 6.
  CHECK(b[0] == 0x88); CHECK(b[1] == 0xD8); CHECK(b[2] == 0x34); CHECK(b[3] == 0x01);
  CHECK(b[4] == 1); CHECK(b[8] == 6);
  for (size_t i = 12; i < 1024; i++) CHECK(b[i] == 0);
  CHECK(b[1024 + 4] == 0x02); CHECK(b[1024 + 5] == 0x01);  // 258 little-endian
  CHECK(ref::read_shard(p) == toks);
  CHECK(ref::shard_token_count(p) == toks.size());
  remove(p.c_str());
}

TEST_CASE("shard: version 2 (uint32) for vocabularies above 65536") {
  const std::string p = tmp_path("v2");
  std::vector<uint32_t> toks = {0, 65536, 100000, 131071, 3};
  ref::write_shard(p, toks, 131072);
  std::vector<unsigned char> b = read_bytes(p);
  REQUIRE(b.size() == 1024 + 4 * toks.size());
  CHECK(b[4] == 2);
  CHECK(ref::read_shard(p) == toks);
  remove(p.c_str());
}

TEST_CASE("shard: empty shard round trips") {
  const std::string p = tmp_path("empty");
  ref::write_shard(p, {}, 100);
  CHECK(ref::read_shard(p).empty());
  remove(p.c_str());
}

TEST_CASE("shard: write refuses tokens outside the vocabulary and leaves no file") {
  const std::string p = tmp_path("refuse");
  remove(p.c_str());
  try {
    ref::write_shard(p, {1, 2, 100}, 100);
    FAIL("expected an error");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("token 100 at position 2 is >= vocab_size 100") != std::string::npos);
  }
  CHECK(fopen(p.c_str(), "rb") == nullptr);
  CHECK(fopen((p + ".tmp").c_str(), "rb") == nullptr);
}

TEST_CASE("shard: bad files give errors that say what is wrong") {
  const std::string p = tmp_path("bad");
  ref::write_shard(p, {5, 6, 7, 8}, 1000);
  const std::vector<unsigned char> good = read_bytes(p);

  SUBCASE("missing file") {
    std::string e = read_error(tmp_path("does_not_exist"));
    CHECK(e.find("cannot open") != std::string::npos);
  }
  SUBCASE("shorter than the header") {
    write_bytes(p, std::vector<unsigned char>(good.begin(), good.begin() + 100));
    std::string e = read_error(p);
    CHECK(e.find(p + ": file is 100 bytes, shorter than the 1024-byte header") == 0);
    CHECK(e.find("make_shards") != std::string::npos);  // says how to fix
  }
  SUBCASE("truncated payload") {
    write_bytes(p, std::vector<unsigned char>(good.begin(), good.end() - 1));
    std::string e = read_error(p);
    CHECK(e.find("does not match the header's 4 tokens") != std::string::npos);
    CHECK(e.find("truncated") != std::string::npos);
  }
  SUBCASE("trailing bytes") {
    std::vector<unsigned char> b = good;
    b.push_back(0); b.push_back(0);
    write_bytes(p, b);
    CHECK(read_error(p).find("trailing bytes") != std::string::npos);
  }
  SUBCASE("wrong magic") {
    std::vector<unsigned char> b = good;
    set_le32(b, 0, 12345);
    write_bytes(p, b);
    CHECK(read_error(p).find("bad magic 12345 (expected 20240520)") != std::string::npos);
  }
  SUBCASE("unknown version") {
    std::vector<unsigned char> b = good;
    set_le32(b, 4, 3);
    write_bytes(p, b);
    CHECK(read_error(p).find("unknown shard version 3") != std::string::npos);
  }
  SUBCASE("count mismatch") {
    std::vector<unsigned char> b = good;
    set_le32(b, 8, 5);  // header claims 5 tokens, file holds 4
    write_bytes(p, b);
    CHECK(read_error(p).find("does not match the header's 5 tokens") != std::string::npos);
  }
  SUBCASE("negative count") {
    std::vector<unsigned char> b = good;
    set_le32(b, 8, 0xFFFFFFFFu);
    write_bytes(p, b);
    CHECK(read_error(p).find("negative token count -1") != std::string::npos);
  }
  remove(p.c_str());
}

TEST_CASE("file: write_file_atomic uses a temporary of its own and leaves nothing behind") {
  const std::string path = tmp_path("atomic");
  std::remove(path.c_str());
  // Another writer's temporary under the old fixed name (PATH.tmp): it must not be touched.
  write_bytes(path + ".tmp", {1, 2, 3});
  ref::write_shard(path, {5, 6, 7}, 16);
  CHECK(ref::read_shard(path) == std::vector<uint32_t>{5, 6, 7});
  FILE* other = fopen((path + ".tmp").c_str(), "rb");
  REQUIRE(other != nullptr);
  unsigned char b[4] = {0, 0, 0, 0};
  CHECK(fread(b, 1, 4, other) == 3);
  fclose(other);
  CHECK(b[0] == 1);
  // No temporary of this process is left, and a stale one with this pid (a dead process whose pid
  // was recycled) is replaced, not written through.
  const std::string mine = path + ".tmp." + std::to_string(getpid());
  CHECK(fopen(mine.c_str(), "rb") == nullptr);
  write_bytes(mine, {9, 9, 9, 9, 9, 9, 9, 9, 9});
  ref::write_shard(path, {8}, 16);
  CHECK(ref::read_shard(path) == std::vector<uint32_t>{8});
  CHECK(fopen(mine.c_str(), "rb") == nullptr);
  // A directory that does not exist: the error names the temporary and the fix; path is kept.
  std::string err = error_of([&] { ref::write_shard("/tmp/lfmoe_no_such_dir/x.bin", {1}, 16); });
  CHECK(err.find("/tmp/lfmoe_no_such_dir/x.bin.tmp.") != std::string::npos);
  CHECK(err.find("check that the directory exists") != std::string::npos);
  std::remove((path + ".tmp").c_str());
  std::remove(path.c_str());
}
