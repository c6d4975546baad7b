// test_checkpoint.cpp — checkpoints (ref/trainer.h, ref/io/safetensors.h) in-process:
//   save then load restores every piece of training state bit for bit, and the next step after a
//   load equals the next step without one; a file cut at any length, or with any header byte
//   changed, is refused with a runtime_error naming the file (never a crash, never a silent load
//   of garbage); each kind of mismatch is refused with a message naming it. Integrity: CRC-32 against
//   the standard check values, every flipped data bit refused naming its tensor, overlapping ranges,
//   NaN/inf never saved nor loaded, version-1 files (no checksums) load, stripped version-2 files do
//   not, writes only to regular files, stale temp files of dead processes removed.
// tests/check_resume.sh does the same through the trainer's command line, for every balance mode.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <algorithm>  // std::equal
#include <cstdio>     // std::remove
#include <cstdlib>    // mkdtemp
#include <cstring>    // std::memcpy, std::memcmp
#include <fstream>    // std::ifstream, std::ofstream
#include <iterator>   // std::istreambuf_iterator
#include <limits>     // std::numeric_limits
#include <sys/stat.h> // lstat
#include <unistd.h>   // symlink, getpid
#include <memory>     // std::unique_ptr
#include <string>     // std::string
#include <utility>    // std::pair
#include <vector>     // std::vector

#include "ref/config.h"       // Config
#include "ref/data.h"         // Loader
#include "ref/model.h"        // Model, make_model, Arena
#include "ref/rng.h"          // Rng
#include "ref/io/safetensors.h"  // SafeTensorsFile, SafeTensorsWriter
#include "ref/tensors.h"      // bias_name
#include "ref/trainer.h"      // train_step, save_checkpoint, load_checkpoint
#include "tests/test_util.h"  // error_of (a damaged file must give a runtime_error), contains

using ref::Arena;

namespace {

ref::Config ckpt_config(ref::Balance balance, ref::BiasKind kind) {
  ref::Config c;
  c.V = 32; c.C = 16; c.H = 2; c.L = 3; c.n_dense = 1; c.Fd = 24; c.E = 8; c.K = 2; c.S = 1; c.F = 8; c.T = 8;
  c.B = 2; c.grad_accum = 2; c.init_std = 0.1f; c.seed = 21; c.warmup = 1; c.lr = 1e-2f; c.steps = 10;
  c.balance = balance; c.bias_kind = kind; c.bias_rate = 1e-2f;
  return c;
}

std::vector<uint32_t> stream(int V, size_t n) {
  ref::Rng rng(5);
  std::vector<uint32_t> v(n);
  for (auto& x : v) x = (uint32_t)rng.below(V);
  return v;
}

std::string dir() {  // one private directory for the files of this suite
  static std::string d = [] {
    char tmpl[] = "/tmp/lfmoe_test_checkpoint_XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    return std::string(tmpl);
  }();
  return d;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}
void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }


// A trained model (3 steps) saved to `path`; returns the model.
std::unique_ptr<ref::Model> trained_and_saved(const ref::Config& c, const std::string& path, uint64_t* data_pos) {
  static const std::vector<uint32_t> data = stream(32, 400);
  std::unique_ptr<ref::Model> m = ref::make_model(c);
  ref::Loader loader(&data, c.B, c.T, c.seed, true);
  for (int s = 0; s < 3; ++s) ref::train_step(*m, loader, s);
  *data_pos = loader.position();
  ref::save_checkpoint(path, *m, ref::TrainState{3, *data_pos});
  return m;
}

// Rewrites a checkpoint with `edit` applied to its tensors and metadata.
template <class F> void rewrite(const std::string& from, const std::string& to, F edit) {
  ref::SafeTensorsFile f = ref::SafeTensorsFile::read(from);
  edit(f);
  ref::SafeTensorsWriter w;
  for (const auto& [name, t] : f.tensors) {
    if (t.dtype == "F32") w.add(name, t.shape, reinterpret_cast<const float*>(t.bytes.data()));
    else if (t.dtype == "I64") w.add(name, t.shape, reinterpret_cast<const int64_t*>(t.bytes.data()));
    else w.add(name, t.shape, reinterpret_cast<const int32_t*>(t.bytes.data()));
  }
  for (const auto& [k, v] : f.meta) w.meta(k, v);
  w.write(to);
}

}  // namespace

TEST_CASE("checkpoint: save then load restores all training state bit for bit; the next step is the same") {
  for (auto [balance, kind] : {std::pair{ref::Balance::lossfree, ref::BiasKind::add},
                               std::pair{ref::Balance::lossfree, ref::BiasKind::mul},
                               std::pair{ref::Balance::aux, ref::BiasKind::add}}) {
    const ref::Config c = ckpt_config(balance, kind);
    CAPTURE(ref::name(balance));
    CAPTURE(ref::name(kind));
    const std::string path = dir() + "/roundtrip.st";
    uint64_t pos = 0;
    std::unique_ptr<ref::Model> a = trained_and_saved(c, path, &pos);
    ref::Config other = c;
    other.seed = 99;  // different initial parameters: everything must come from the file
    std::unique_ptr<ref::Model> b = ref::make_model(other);
    const ref::TrainState st = ref::load_checkpoint(path, *b);
    CHECK(st.step == 3);
    CHECK(st.data_pos == pos);
    for (Arena ar : {Arena::params, Arena::adam_m, Arena::adam_v}) CHECK(same(a->get(ar), b->get(ar)));
    CHECK(same(a->biases(), b->biases()));
    if (balance == ref::Balance::lossfree) CHECK(!same(a->biases(), ref::initial_biases(c)));  // the bias did move

    // One more step on each, from the same data position: identical loss, parameters and biases.
    static const std::vector<uint32_t> data = stream(32, 400);
    ref::Loader la(&data, c.B, c.T, c.seed, true), lb(&data, c.B, c.T, c.seed, true);
    la.seek(pos);
    lb.seek(st.data_pos);
    const ref::StepResult ra = ref::train_step(*a, la, 3), rb = ref::train_step(*b, lb, st.step);
    CHECK(ra.loss == rb.loss);
    CHECK(ra.counts == rb.counts);
    CHECK(same(a->get(Arena::params), b->get(Arena::params)));
    CHECK(same(a->biases(), b->biases()));
    std::remove(path.c_str());
  }
}

TEST_CASE("checkpoint: a file cut at any length is refused, naming the file") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/whole.st", cut = dir() + "/cut.st";
  uint64_t pos = 0;
  trained_and_saved(c, path, &pos);
  const std::string bytes = slurp(path);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  // Every length up to 64 bytes and around the end of the header, a stride through the rest.
  std::vector<size_t> lengths;
  for (size_t n = 0; n < 64; ++n) lengths.push_back(n);
  for (size_t n = 64; n < header; n += 37) lengths.push_back(n);
  for (size_t n = header; n < header + 8 + 64; ++n) lengths.push_back(n);
  for (size_t n = header + 8 + 64; n < bytes.size(); n += 997) lengths.push_back(n);
  lengths.push_back(bytes.size() - 1);
  for (size_t n : lengths) {
    spit(cut, bytes.substr(0, n));
    std::unique_ptr<ref::Model> m = ref::make_model(c);
    const std::string e = error_of([&] { ref::load_checkpoint(cut, *m); });
    if (!contains(e, cut + ": ")) FAIL_CHECK("cut at " << n << " of " << bytes.size() << " bytes: '" << e << "'");
  }
  std::remove(cut.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: a changed header byte never crashes and never loads a different state") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/whole.st", bad = dir() + "/flipped.st";
  uint64_t pos = 0;
  std::unique_ptr<ref::Model> a = trained_and_saved(c, path, &pos);
  const std::string bytes = slurp(path);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  ref::Rng rng(3);
  int loaded = 0, refused = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string b = bytes;
    const size_t at = trial < 8 ? (size_t)trial : 8 + rng.below(header);  // the length field, then JSON bytes
    b[at] = (char)(b[at] ^ (1 + rng.below(255)));
    spit(bad, b);
    std::unique_ptr<ref::Model> m = ref::make_model(c);
    ref::TrainState st;
    const std::string e = error_of([&] { st = ref::load_checkpoint(bad, *m); });
    if (!e.empty()) {
      refused++;
      if (!contains(e, bad)) FAIL_CHECK("byte " << at << ": the message does not name the file: " << e);
      continue;
    }
    // Some changes keep the file valid (a digit of a float in the config, a space of the padding):
    // then whatever loaded must be the saved state, or the change must be in the metadata.
    loaded++;
    const bool same_state = same(m->get(Arena::params), a->get(Arena::params)) &&
                            same(m->get(Arena::adam_v), a->get(Arena::adam_v)) && same(m->biases(), a->biases());
    if (!same_state) FAIL_CHECK("byte " << at << " changed: the checkpoint loaded a different state");
  }
  MESSAGE(refused << " of 400 changed headers refused, " << loaded << " still valid (same state)");
  CHECK(refused > 300);
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: each mismatch is refused with a message naming it") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/base.st", bad = dir() + "/bad.st";
  uint64_t pos = 0;
  trained_and_saved(c, path, &pos);
  auto load_error = [&](const ref::Config& cfg, const std::string& file) {
    std::unique_ptr<ref::Model> m = ref::make_model(cfg);
    return error_of([&] { ref::load_checkpoint(file, *m); });
  };
  const std::string wv = "layers.1.attn.wv";

  SUBCASE("another model shape: every difference named") {
    ref::Config other = c;
    other.E = 6;
    other.C = 24;
    const std::string e = load_error(other, path);
    CHECK(contains(e, "different model"));
    CHECK(contains(e, "E: 8 vs 6"));
    CHECK(contains(e, "C: 16 vs 24"));
  }
  SUBCASE("a dump is not a checkpoint") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta["format"] = "lfmoe-dump"; });
    CHECK(contains(load_error(c, bad), "format 'lfmoe-dump' is not an lfmoe checkpoint"));
  }
  SUBCASE("a newer version") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta["version"] = "3"; });
    CHECK(contains(load_error(c, bad), "checkpoint version 3 is not supported"));
  }
  SUBCASE("no metadata") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta.clear(); });
    CHECK(contains(load_error(c, bad), "metadata has no 'format'"));
  }
  SUBCASE("a tensor of the wrong shape") {
    rewrite(path, bad, [&](ref::SafeTensorsFile& f) { f.tensors.at(wv).shape = {8, 32}; });
    CHECK(contains(load_error(c, bad), "tensor '" + wv + "' has shape (8, 32), expected (16, 16)"));
  }
  SUBCASE("a tensor of the wrong dtype") {
    rewrite(path, bad, [&](ref::SafeTensorsFile& f) { f.tensors.at("adam.m/" + wv).dtype = "I32"; });
    CHECK(contains(load_error(c, bad), "tensor 'adam.m/" + wv + "' is I32, expected F32"));
  }
  SUBCASE("a missing AdamW moment") {
    rewrite(path, bad, [&](ref::SafeTensorsFile& f) { f.tensors.erase("adam.v/" + wv); });
    CHECK(contains(load_error(c, bad), "missing tensor 'adam.v/" + wv + "'"));
  }
  SUBCASE("a step that is not a number") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta["step"] = "three"; });
    const std::string e = load_error(c, bad);
    CHECK(contains(e, bad));
    CHECK(contains(e, "step"));
  }
  SUBCASE("a negative data position") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta["data_pos"] = "-4"; });
    const std::string e = load_error(c, bad);
    CHECK(contains(e, bad));
    CHECK(contains(e, "data_pos"));
  }
  SUBCASE("a config that is not JSON") {
    rewrite(path, bad, [](ref::SafeTensorsFile& f) { f.meta["config"] = "{\"V\": 32,"; });
    const std::string e = error_of([&] { ref::checkpoint_config(bad); });
    CHECK(contains(e, bad));
    CHECK(contains(e, "config"));
  }
  SUBCASE("negative or overflowing dimensions in the header") {
    // Header edits by hand: the writer cannot produce these.
    std::string bytes = slurp(path);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    std::string head = bytes.substr(8, n);
    const std::string key = "\"" + wv + "\": {\"dtype\": \"F32\", \"shape\": [16, 16]";
    REQUIRE(contains(head, key));
    for (const char* shape : {"[-16, -16]", "[4294967296, 4294967296]"}) {
      std::string h = head;
      std::string k2 = key;
      k2.replace(k2.find("[16, 16]"), 8, shape);
      h.replace(h.find(key), key.size(), k2);
      h.resize(((h.size() + 7) / 8) * 8, ' ');
      const uint64_t n2 = h.size();
      spit(bad, std::string(reinterpret_cast<const char*>(&n2), 8) + h + bytes.substr(8 + n));
      const std::string e = error_of([&] { ref::SafeTensorsFile::read(bad); });
      CAPTURE(shape);
      CHECK(contains(e, "tensor '" + wv + "'"));
      CHECK(contains(e, "shape"));
    }
  }
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

// ---------------------------------------------------------------- integrity (issue 15)

TEST_CASE("checkpoint: crc32 is zlib's CRC-32 (standard check values)") {
  // The check value of the CRC catalogue (CRC-32/ISO-HDLC) and values Python's zlib.crc32 gives.
  CHECK(ref::crc32("123456789", 9) == 0xCBF43926u);
  CHECK(ref::crc32("", 0) == 0u);
  CHECK(ref::crc32("a", 1) == 0xE8B7BE43u);
  CHECK(ref::crc32("The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u);
  // Every length 0..40 (the 8-byte and the byte-at-a-time paths) against a running checksum in
  // pieces, which must equal the checksum of the whole, and against a bit-by-bit reference.
  std::string s;
  for (int i = 0; i < 40; ++i) s.push_back((char)(i * 37 + 11));
  for (size_t n = 0; n <= s.size(); ++n) {
    uint32_t ref_crc = 0xFFFFFFFFu;  // the definition, one bit at a time
    for (size_t i = 0; i < n; ++i) {
      ref_crc ^= (uint8_t)s[i];
      for (int k = 0; k < 8; ++k) ref_crc = (ref_crc >> 1) ^ ((ref_crc & 1) ? 0xEDB88320u : 0u);
    }
    ref_crc = ~ref_crc;
    CHECK(ref::crc32(s.data(), n) == ref_crc);
    const size_t half = n / 3;
    CHECK(ref::crc32(s.data() + half, n - half, ref::crc32(s.data(), half)) == ref_crc);
  }
}

TEST_CASE("checkpoint: every changed data byte is refused, naming the tensor") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/crc.st", bad = dir() + "/crc_bad.st";
  uint64_t pos = 0;
  trained_and_saved(c, path, &pos);
  const std::string bytes = slurp(path);
  const ref::SafeTensorsFile f = ref::SafeTensorsFile::read(path);
  CHECK(f.checksummed);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  ref::Rng rng(9);
  for (int trial = 0; trial < 60; ++trial) {
    std::string b = bytes;
    const size_t at = 8 + header + rng.below(bytes.size() - 8 - header);
    const int bit = (int)rng.below(8);
    b[at] = (char)(b[at] ^ (1 << bit));  // one bit: a mantissa, exponent or sign bit of some value
    spit(bad, b);
    std::string owner;  // the tensor whose bytes hold `at`
    for (const auto& [name, t] : f.tensors)
      if (at - 8 - header >= t.begin && at - 8 - header < t.end) owner = name;
    REQUIRE(!owner.empty());
    std::unique_ptr<ref::Model> m = ref::make_model(c);
    const std::string e = error_of([&] { ref::load_checkpoint(bad, *m); });
    if (!contains(e, "tensor '" + owner + "': checksum mismatch"))
      FAIL_CHECK("bit " << bit << " of byte " << at << " (in " << owner << "): '" << e << "'");
  }
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: overlapping or gapped byte ranges are refused even with consistent sizes") {
  // Two tensors of one size swap nothing but share bytes: the totals match only when a gap makes
  // up for the overlap, so the reader must check the ranges themselves.
  ref::SafeTensorsWriter w;
  const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  w.add("a", {4}, a.data());
  w.add("b", {4}, b.data());
  const std::string path = dir() + "/ranges.st", bad = dir() + "/ranges_bad.st";
  w.write(path);
  std::string bytes = slurp(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  std::string head = bytes.substr(8, n);
  REQUIRE(contains(head, "\"data_offsets\": [16, 32]"));
  std::string h = head;
  h.replace(h.find("\"data_offsets\": [16, 32]"), 24, "\"data_offsets\": [0, 16] ");  // b aliases a
  spit(bad, bytes.substr(0, 8) + h + bytes.substr(8 + n, 16));  // and the data holds a's bytes only
  CHECK(contains(error_of([&] { ref::SafeTensorsFile::read(bad); }), "overlaps tensor"));
  spit(bad, bytes.substr(0, 8) + h + bytes.substr(8 + n));     // with b's old bytes unowned
  CHECK(contains(error_of([&] { ref::SafeTensorsFile::read(bad); }), "overlaps tensor"));
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: non-finite state is never saved, and never loaded") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/finite.st", bad = dir() + "/finite_bad.st";
  uint64_t pos = 0;
  std::unique_ptr<ref::Model> m = trained_and_saved(c, path, &pos);
  const std::string before = slurp(path);
  for (Arena ar : {Arena::params, Arena::adam_m, Arena::adam_v}) {
    std::unique_ptr<ref::Model> x = ref::make_model(c);
    ref::load_checkpoint(path, *x);
    std::vector<float> v = x->get(ar);
    v[v.size() / 2] = std::numeric_limits<float>::quiet_NaN();
    x->set(ar, v);
    const std::string e = error_of([&] { ref::save_checkpoint(path, *x, ref::TrainState{3, pos}); });
    CHECK(contains(e, "not saving " + path));
    CHECK(contains(e, "holds a non-finite value (nan at index"));
    CHECK(slurp(path) == before);  // the last good checkpoint stays
  }
  // Loading: a NaN in a moment with consistent checksums (rewrite recomputes them) is refused.
  rewrite(path, bad, [](ref::SafeTensorsFile& f) {
    auto& t = f.tensors.at("adam.v/final_norm");
    const float inf = std::numeric_limits<float>::infinity();
    std::memcpy(t.bytes.data() + 4, &inf, 4);
  });
  std::unique_ptr<ref::Model> y = ref::make_model(c);
  const std::vector<float> p0 = y->get(Arena::params);
  const std::string e = error_of([&] { ref::load_checkpoint(bad, *y); });
  CHECK(contains(e, "tensor 'adam.v/final_norm' holds a non-finite value (inf at index 1"));
  CHECK(same(y->get(Arena::params), p0));  // a refused load leaves the model as it was
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: a version-1 file (no checksums) loads; a version-2 file without them does not") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  const std::string path = dir() + "/v.st", bad = dir() + "/v_bad.st";
  uint64_t pos = 0;
  std::unique_ptr<ref::Model> a = trained_and_saved(c, path, &pos);
  // Strip the checksums by hand: the writer always adds them.
  std::string bytes = slurp(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  const ref::SafeTensorsFile f = ref::SafeTensorsFile::read(path);
  auto strip = [&](const std::string& version) {
    std::string h = bytes.substr(8, n);
    for (const auto& [k, v] : f.meta)
      if (k.rfind("crc32:", 0) == 0) {
        const std::string entry = "\"" + k + "\": \"" + v + "\", ";
        REQUIRE(contains(h, entry));
        h.erase(h.find(entry), entry.size());
      }
    h.replace(h.find("\"version\": \"2\""), 14, "\"version\": \"" + version + "\"");
    h.resize(((h.size() + 7) / 8) * 8, ' ');
    const uint64_t n2 = h.size();
    spit(bad, std::string(reinterpret_cast<const char*>(&n2), 8) + h + bytes.substr(8 + n));
  };
  strip("1");
  std::unique_ptr<ref::Model> b = ref::make_model(c);
  CHECK(error_of([&] { ref::load_checkpoint(bad, *b); }).empty());
  CHECK(same(a->get(Arena::adam_v), b->get(Arena::adam_v)));
  CHECK_FALSE(ref::SafeTensorsFile::read(bad).checksummed);
  strip("2");
  std::unique_ptr<ref::Model> d = ref::make_model(c);
  CHECK(contains(error_of([&] { ref::load_checkpoint(bad, *d); }), "version 2 without its checksums"));
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

TEST_CASE("checkpoint: writes go only to regular files, through a temp file of this process") {
  const ref::Config c = ckpt_config(ref::Balance::lossfree, ref::BiasKind::add);
  uint64_t pos = 0;
  const std::string path = dir() + "/w.st", link = dir() + "/w_link.st";
  std::unique_ptr<ref::Model> m = trained_and_saved(c, path, &pos);
  REQUIRE(symlink(path.c_str(), link.c_str()) == 0);
  const std::string before = slurp(path);
  CHECK(contains(error_of([&] { ref::save_checkpoint(link, *m, ref::TrainState{3, pos}); }), "is a symbolic link"));
  CHECK(slurp(path) == before);
  struct stat st;
  CHECK(lstat(link.c_str(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));  // the link itself is untouched
  CHECK(contains(error_of([&] { ref::save_checkpoint(dir(), *m, ref::TrainState{3, pos}); }), "is a directory"));
  // A temp file of a dead process is removed by the next save; one of a live process is kept.
  const std::string stale = path + ".tmp.999999999", live = path + ".tmp.1";  // no such pid / init
  spit(stale, "half");
  spit(live, "half");
  ref::save_checkpoint(path, *m, ref::TrainState{3, pos});
  CHECK(!std::ifstream(stale).good());
  CHECK(std::ifstream(live).good());
  CHECK(!std::ifstream(path + ".tmp." + std::to_string(getpid())).good());
  std::remove(live.c_str());
  std::remove(link.c_str());
  std::remove(path.c_str());
}
