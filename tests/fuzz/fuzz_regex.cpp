// fuzz_regex.cpp — ref/text/regex.cpp: the pattern compiler and the matcher.
// Input: pattern bytes, then a 0 byte, then the text (no 0 byte: the whole input is the pattern,
// matched against itself). Properties: the compiler returns or throws std::runtime_error; the
// matches of find_all are in order, non-overlapping and inside the text; match_at at every
// position ends inside the text, not before the position.
//
// Bounded sizes: a backtracking engine can take exponential time on patterns like (a|a)+b, so the
// pattern is cut to kMaxPattern bytes and the text to kMaxText bytes, which keeps the (rare)
// exponential cases short enough for libFuzzer's -timeout to name them instead of hanging a run.
#include <cstring>  // std::memchr
#include <vector>   // std::vector

#include "tests/fuzz/fuzz.h"

#include "ref/text/regex.h"

static constexpr size_t kMaxPattern = 96, kMaxText = 256;

FUZZ_ENTRY {
  const char* p = reinterpret_cast<const char*>(data);
  const char* zero = static_cast<const char*>(std::memchr(p, 0, size));
  std::string pattern(p, zero ? (size_t)(zero - p) : size);
  std::string text = zero ? std::string(zero + 1, p + size) : pattern;
  if (pattern.size() > kMaxPattern) pattern.resize(kMaxPattern);
  if (text.size() > kMaxText) text.resize(kMaxText);

  ref::Regex re;
  if (!fuzz_try([&] { re = ref::Regex(pattern); })) return 0;
  std::vector<uint32_t> cps, offsets;
  ref::decode_utf8(text, cps, offsets);
  FUZZ_CHECK(offsets.size() == cps.size() + 1 && offsets.back() == text.size(), "decode_utf8 offsets");
  std::string back;
  for (uint32_t cp : cps) ref::append_utf8(back, cp);
  FUZZ_CHECK(back == text, "append_utf8(decode_utf8(s)) != s");

  std::vector<std::pair<uint32_t, uint32_t>> m;
  if (!fuzz_try([&] { re.find_all(cps, m); })) return 0;  // a step budget may refuse a match
  uint32_t last = 0;
  for (size_t i = 0; i < m.size(); i++) {
    FUZZ_CHECK(m[i].first <= m[i].second && m[i].second <= cps.size(), "match outside the text");
    FUZZ_CHECK(m[i].first >= last, "matches overlap or are out of order");
    if (i > 0) FUZZ_CHECK(m[i].first > m[i - 1].first, "two matches start at the same position");
    last = m[i].second;
  }
  for (uint32_t pos = 0; pos <= cps.size(); pos++) {
    uint32_t end = 0;
    bool hit = false;
    if (!fuzz_try([&] { hit = re.match_at(cps, pos, &end); })) break;
    if (hit) FUZZ_CHECK(end >= pos && end <= cps.size(), "match_at end outside [pos, size]");
  }
  return 0;
}
