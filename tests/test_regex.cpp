// test_regex.cpp — ref::Regex on the points where it must follow Oniguruma (HF tokenizers'
// regex engine) and on its backtracking budget. The expected results were measured with HF
// tokenizers 0.23.2 (tests/tokenizer_oracle/regex_cases.js runs the same cases against it).
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <chrono>     // std::chrono::steady_clock
#include <random>     // std::mt19937
#include <algorithm>  // std::max
#include <fstream>    // std::ifstream
#include <sstream>    // std::stringstream
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <vector>     // std::vector

#include "ref/text/regex.h"

namespace {

using V = std::vector<std::string>;

// The matched substrings of text.
V matches(const std::string& pattern, const std::string& text) {
  ref::Regex re(pattern);
  std::vector<uint32_t> cps, offsets;
  ref::decode_utf8(text, cps, offsets);
  std::vector<std::pair<uint32_t, uint32_t>> m;
  re.find_all(cps, m);
  V out;
  for (auto& p : m) out.push_back(text.substr(offsets[p.first], offsets[p.second] - offsets[p.first]));
  return out;
}

// The message of the exception f throws ("" if none).
template <class F>
std::string thrown(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string compile_error(const std::string& pattern) {
  return thrown([&] { ref::Regex re(pattern); });
}

bool has(const std::string& s, const std::string& needle) { return s.find(needle) != std::string::npos; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_CASE("regex: (?i) folds literals and [...] classes but not a bare \\p{..} \\w \\d \\s") {
  // HF: (?i:\p{Lu}) on "aAbB" matches "A" and "B"; (?i:[\p{Lu}]) would also match "a" and "b".
  CHECK(matches("(?i:\\p{Lu})", "aAbB") == V{"A", "B"});
  CHECK(matches("(?i:\\p{Ll})", "aAbB") == V{"a", "b"});
  CHECK(matches("(?i:\\p{Lt})", "\xC7\x85\xC7\x84\xC7\x86") == V{"\xC7\x85"});  // only U+01C5 itself
  CHECK(matches("(?i:\\P{Lu})", "aA1") == V{"a", "1"});
  CHECK(matches("(?i:\\wx)", "ssx") == V{"sx"});
  CHECK(matches("(?i:[^\\p{Lu}])", "aAbB1") == V{"1"});     // a class is folded, then negated
  CHECK(matches("(?i:[^\\P{Lu}])", "aAbB1").empty());
  CHECK(matches("(?i:[^\xC3\x9F]x)", "ssx") == V{"sx"});    // negated: no multi-character folding
  CHECK(matches("(?i:a)", "aA") == V{"a", "A"});
  // A [...] class under (?i) holding a character with a multi-character folding can match a
  // sequence in Oniguruma ((?i:[\p{Lu}]x) matches "ssx" through U+1E9E): refused.
  CHECK(has(compile_error("(?i:[\\p{Lu}]x)"), "multi-character case folding"));
  CHECK(has(compile_error("(?i:[\\p{Ll}])"), "multi-character case folding"));
  CHECK(has(compile_error("(?i:[\\w])"), "multi-character case folding"));
  CHECK(compile_error("(?i:[a-z]+)").empty());
  CHECK(compile_error("(?i:[^\\p{L}])").empty());
}

TEST_CASE("regex: \\xHH above \\x7F is a UTF-8 byte, as in Oniguruma") {
  CHECK(matches("\\xC3\\xA9+", "\xC3\xA9\xC3\xA9 \xC3\x89") == V{"\xC3\xA9\xC3\xA9"});
  CHECK(matches("[\\xC3\\xA9-\\xC3\\xBF]+", "\xC3\xA9\xC3\xBF" "a") == V{"\xC3\xA9\xC3\xBF"});
  CHECK(matches("\\xF0\\x9F\\x98\\x80", "x\xF0\x9F\x98\x80") == V{"\xF0\x9F\x98\x80"});
  CHECK(matches("(?i:\\xC3\\x89)", "\xC3\xA9\xC3\x89") == V{"\xC3\xA9", "\xC3\x89"});
  CHECK(matches("\\x41\\x9", "A\t") == V{"A\t"});
  CHECK(matches("\\x{E9}", "\xC3\xA9") == V{"\xC3\xA9"});  // braces: a code point
  // HF accepts these but no valid text holds them (overlong, surrogate, above U+10FFFF, F5..FF):
  // they match nothing, not even the invalid bytes our decoder passes through.
  CHECK(matches("\\xFF|\\xC0\\x80|\\xED\\xA0\\x80|\\xF4\\x90\\x80\\x80|b", std::string("\xFF\xC3\xBF\x00" "b", 5)) == V{"b"});
  // HF's refusals, with its reasons.
  CHECK(has(compile_error("\\xE9"), "too short multibyte code string"));
  CHECK(has(compile_error("[\\xC3]"), "too short multibyte code string"));
  CHECK(has(compile_error("\\xC3A"), "too short multibyte code string"));
  CHECK(has(compile_error("\\x80"), "invalid code point value"));
  CHECK(has(compile_error("\\xC3\\x41"), "invalid code point value"));
  CHECK(has(compile_error("\\xC3\\xA9\\xA9"), "invalid code point value"));
  CHECK(has(compile_error("\\xF5\\x80"), "invalid code point value"));
  CHECK(has(compile_error("[a-\\xFF]"), "not a valid UTF-8 character"));
}

TEST_CASE("regex: quantifier targets as Oniguruma allows them") {
  for (const char* p : {"(?=a)+", "(?=a)*", "(?=a)?", "(?=a){2}", "(?!a)+", "(?:(?=a))+", "(?:(?=a)|b)*", "(?:a|^){2}", "^*", "$+"})
    CHECK_MESSAGE(has(compile_error(p), "target of repeat operator is invalid"), p);
  // A sequence or a group around a look-ahead may be repeated.
  CHECK(matches("(?:(?=a)b)+", "ab") == V{});
  CHECK(matches("((?=a)){2}a", "aa ba") == V{"a", "a", "a"});
  CHECK(matches("(?:^a)*b", "ab\nb") == V{"ab", "b"});
  // ^ after a newline, but not at the end of the text (Oniguruma; found by the fuzzer).
  CHECK(matches("\n^", "a\n\nb\n") == V{"\n", "\n"});
  CHECK(matches("^", "") == V{""});
  // Nested repeats are accepted (the budget guards them).
  CHECK(matches("(a+)+", "aaa b aa") == V{"aaa", "aa"});
  CHECK(matches("(?:a|aa)+b", "aaaab") == V{"aaaab"});
  // Stacked quantifiers nest (HF, Ruby syntax): a{2}{3} is a{6}; {n}? is optional, {m,n}? lazy;
  // {m,n}+ is a repeat of the repeat, not possessive.
  CHECK(matches("a{2}{3}", "aaaaaaa") == V{"aaaaaa"});
  CHECK(matches("a{2}*", "aaaaa") == V{"aaaa", ""});
  CHECK(matches("a{2}?b", "ab aab") == V{"b", "aab"});
  CHECK(matches("a{2,2}?b", "ab aab") == V{"aab"});
  CHECK(matches("a{1,2}?", "aaa") == V{"a", "a", "a"});
  CHECK(matches("a{1,2}+", "aaaaa") == V{"aaaaa"});
  CHECK(matches("a**b", "aab") == V{"aab"});
  CHECK(has(compile_error("((a{1000}){1000}){1000}"), "would exceed"));
  // A loop whose body can match empty: an iteration that consumed nothing ends it (Oniguruma).
  CHECK(matches("(?:a|)+b", "aab") == V{"aab"});
  CHECK(matches("(?:|a)+", "aa") == V{"", "", ""});
  CHECK(matches("(a*)*x", "xaax") == V{"x", "aax"});
  CHECK(matches("(?:a?)+?b", "aab") == V{"aab"});
}

TEST_CASE("regex: POSIX brackets with Oniguruma's Unicode definitions") {
  // alpha is the Alphabetic property: letters, marks with it, Nl like U+2160, circled letters.
  CHECK(matches("[[:alpha:]]+", "ab\xC3\xA9 \xE2\x85\xA0 \xE2\x92\xB6 1 _") == V{"ab\xC3\xA9", "\xE2\x85\xA0", "\xE2\x92\xB6"});
  CHECK(matches("[[:alnum:]]+", "a1_b2") == V{"a1", "b2"});
  CHECK(matches("[[:^space:]]+", "a b\tc\xC2\xA0" "d") == V{"a", "b", "c", "d"});
  CHECK(matches("[[:blank:]]", "\t \n\xE3\x80\x80") == V{"\t", " ", "\xE3\x80\x80"});
  CHECK(matches("[^[:alpha:]x]+", "abx1-2 y") == V{"1-2 "});
  CHECK(matches("[[:xdigit:][:cntrl:]]+", "Fe0\x01g") == V{"Fe0\x01"});
  CHECK(matches("[[:ascii:]]+", "ab\xC3\xA9") == V{"ab"});
  CHECK(matches("[[:digit:]]", "1\xD9\xA1\xC2\xB2") == V{"1", "\xD9\xA1"});  // Nd, not No
  CHECK(has(compile_error("[[:upper:]]"), "POSIX bracket '[:upper:]'"));
  CHECK(has(compile_error("[[:alpha]]"), "nested class"));
}

TEST_CASE("regex: backtracking limit stops an exponential pattern fast, naming pattern and offset") {
  ref::Regex re("(?:a|aa)+b");
  std::vector<uint32_t> text(3000, 'a');
  std::vector<std::pair<uint32_t, uint32_t>> m;
  auto t0 = std::chrono::steady_clock::now();
  std::string err = thrown([&] { re.find_all(text, m); });
  double secs = seconds_since(t0);
  CHECK(has(err, "regex /(?:a|aa)+b/: backtracking limit exceeded"));
  CHECK(has(err, "at code point 0 of a text of 3000 code points"));
  CHECK(secs < 1.0);  // ~0.05 s: 10M backtracks (before the budget: minutes)
  MESSAGE("(?:a|aa)+b on 3000 'a': budget error after " << secs << " s");
  // The limit is per match attempt: the same pattern on 20 a's is fine (~20k backtracks).
  std::vector<uint32_t> small(20, 'a');
  small.push_back('b');
  re.find_all(small, m);
  CHECK(m.size() == 1);
  // match_at has the same budget.
  uint32_t end;
  CHECK(has(thrown([&] { re.match_at(text, 5, &end); }), "at code point 5"));
}

TEST_CASE("regex: the step budget bounds a search whose attempts each stay under the retry limit") {
  // 20 a's then 'c', many times: each attempt backtracks only ~10^4 times, but there are
  // 21 attempts per block; the search runs out of its 10^8 + 1000 * n steps.
  ref::Regex re("(?:a|aa)+b");
  std::vector<uint32_t> text;
  for (int block = 0; block < 4000; block++) {
    text.insert(text.end(), 20, 'a');
    text.push_back('c');
  }
  std::vector<std::pair<uint32_t, uint32_t>> m;
  auto t0 = std::chrono::steady_clock::now();
  std::string err = thrown([&] { re.find_all(text, m); });
  double secs = seconds_since(t0);
  CHECK(has(err, "regex /(?:a|aa)+b/: regex search step budget exceeded"));
  CHECK(secs < 5.0);
  MESSAGE("step budget error after " << secs << " s");
}

TEST_CASE("regex: real tokenizer patterns stay far inside the step budget") {
  // Steps per code point on the committed corpus slices and on long runs of one character:
  // the budget's 1000 per code point must never be reached by a real pattern.
  const char* patterns[] = {
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
      "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  };
  std::vector<std::string> texts = {std::string(100000, ' ') + "x", std::string(100000, ' '), std::string(100000, 'a'),
                                    std::string(100000, '!'), std::string(100000, '1'), std::string(50000, '\n') + " "};
  for (const char* path : {"data/fixtures/bible.txt", "data/fixtures/python_doc.txt", "data/fixtures/manpages_zh.txt"}) {
    std::ifstream f(path, std::ios::binary);
    REQUIRE_MESSAGE(f, path);  // committed corpus slices; the tests run from the repository root
    std::stringstream ss;
    ss << f.rdbuf();
    texts.push_back(ss.str().substr(0, 200000));
  }
  double worst = 0;
  for (const char* p : patterns) {
    ref::Regex re(p);
    for (const std::string& t : texts) {
      std::vector<uint32_t> cps, offsets;
      ref::decode_utf8(t, cps, offsets);
      std::vector<std::pair<uint32_t, uint32_t>> m;
      double per_cp = (double)re.find_all(cps, m) / (double)cps.size();
      worst = std::max(worst, per_cp);
    }
  }
  MESSAGE("worst steps per code point of a real pattern: " << worst);
  CHECK(worst < 50);  // 20x below the budget's 1000
}

TEST_CASE("regex: skipping positions where no match can begin never loses a match") {
  // find_all skips a start position when its code point is outside the pattern's first-character
  // set (computed from the program). The oracle is the search done the plain way: match_at at
  // every position, with find_all's rules for empty matches. Patterns are chosen where the set
  // is easy to get wrong: atomic groups that can match empty, look-aheads in front, case folding
  // that reaches non-ASCII (K -> U+212A KELVIN SIGN), anchors, empty alternatives.
  const char* patterns[] = {
      "\\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f]+", "(?>a*)b", "(?>a|)x", "(?=x)\\w+", "(?!a)[a-c]+", "(?i:k)+",
      "(?i:[k-l])", "^b|c$", "a|", "(?:)+x|y", "\\s+(?!\\S)|\\s+", "(?i:'s|'t)|\\p{L}+", "(?:ab)*c", "[^a]", "x*?y",
      "(?>(?:)*)z", "\\P{L}{2}", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"};
  const std::vector<uint32_t> alphabet = {'a', 'b', 'c', 'x', 'y', 'z', 'k', 'K', 0x212A, 'l', '1', '2', 0x2460, ' ',
                                          '\n', '\'', 's', 't', 0x4E2D, 0x3042, 0xE9, '!'};
  std::mt19937 rng(7);
  size_t compared = 0, nonempty = 0;
  for (const char* p : patterns) {
    ref::Regex re(p);
    for (int trial = 0; trial < 60; trial++) {
      std::vector<uint32_t> text(rng() % 24);
      for (uint32_t& c : text) c = alphabet[rng() % alphabet.size()];
      std::vector<std::pair<uint32_t, uint32_t>> got, want;
      re.find_all(text, got);
      const uint32_t n = (uint32_t)text.size();
      uint32_t from = 0;
      bool have_last = false;
      uint32_t last_end = 0;
      while (from <= n) {
        uint32_t s = from, e = 0;
        while (s <= n && !re.match_at(text, s, &e)) s++;
        if (s > n) break;
        if (e == s && have_last && last_end == e) { from++; continue; }
        want.emplace_back(s, e);
        from = e;
        have_last = true;
        last_end = e;
      }
      CHECK_MESSAGE(got == want, "pattern /" << std::string(p) << "/, trial " << trial);
      compared++;
      nonempty += !want.empty();
    }
  }
  MESSAGE(compared << " searches compared, " << nonempty << " with matches");
  CHECK(nonempty > compared / 2);
}
