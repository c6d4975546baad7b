// regex.h — a small backtracking regex engine for tokenizer pre-tokenizer patterns.
//
// HuggingFace tokenizers compiles Split / ByteLevel patterns with Oniguruma (Ruby-like syntax,
// leftmost-first "Perl" semantics: alternatives are tried in order, quantifiers are greedy unless
// marked lazy, the first successful path wins). This engine implements the subset that real
// tokenizer.json files use, with the same semantics, and refuses everything else by name:
//
//   literals and escapes (\n \r \t \f \v \a \e \xHH \x{H..} \uHHHH, escaped punctuation)
//   .  (any code point but \n)       ^ $ (line anchors, as in Ruby)
//   [...] [^...] with ranges, escapes, \s \S \d \D \w \W \p{..} \P{..} \p{^..} inside
//   \s \S \d \D \w \W   \p{X} \P{X} for General Categories (L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No
//                       P Pc Pd Ps Pe Pi Pf Po S Sm Sc Sk So Z Zs Zl Zp C Cc Cf Cs Co Cn)
//   | (alternation)   (...) (?:...) (?i:...) (?-i:...) (?>...) (?=...) (?!...)
//   ? * + {m} {m,} {m,n} {,n}, lazy (??, *?, +?, {m,n}?), possessive (?+ *+ ++)
//
// Refused with a message naming the construct: lookbehind, backreferences, named/unicode-script
// properties (\p{Han}), nested classes and class intersection (&&), POSIX brackets, inline flag
// groups without ':' ((?i) to end of group), \b \B \A \z \Z \G \h \R \X \K, {m,n}+ (its meaning
// differs between Oniguruma syntaxes), and unbounded repeats of a sub-pattern that can match empty.
//
// Text is matched as a sequence of code points. Callers decode UTF-8 with decode_utf8() below,
// which turns each byte of an invalid sequence into its own code point 0xDC00+byte (a lone
// surrogate, category Cs, never produced by valid UTF-8), so any byte string can be split.
#pragma once
#include <cstdint>  // uint32_t
#include <string>   // std::string
#include <utility>  // std::pair
#include <vector>   // std::vector

namespace ref {

// Decodes UTF-8 into code points; offsets gets the byte offset of each code point plus a final
// entry equal to s.size(), so code points [i, j) are bytes [offsets[i], offsets[j]).
void decode_utf8(const std::string& s, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets);

// Appends the UTF-8 encoding of a code point (or the raw byte of an invalid-byte code point).
void append_utf8(std::string& out, uint32_t cp);

class Regex {
 public:
  Regex() = default;
  // Throws std::runtime_error("regex /pattern/: <what> at offset K") for syntax errors and
  // unsupported constructs.
  explicit Regex(const std::string& pattern);

  // Backtracking budget (see docs/TOKENIZER.md, "The regex subset"). A pattern such as (a|aa)+b
  // backtracks exponentially, so a search that runs past either limit throws
  // std::runtime_error naming the pattern and the text offset instead of running for hours:
  //   * kRetryLimitInMatch backtracks in one match attempt (one start position, look-aheads
  //     included): Oniguruma's default retry-limit-in-match, which HF uses (HF aborts there);
  //   * kSearchStepBase + kSearchStepsPerCodePoint * text.size() VM steps in one find_all, so
  //     that the time of a search is linear in the text whatever the pattern (Oniguruma has no
  //     such limit by default; real tokenizer patterns take a few dozen steps per code point).
  static constexpr uint64_t kRetryLimitInMatch = 10000000;
  static constexpr uint64_t kSearchStepBase = 100000000;
  static constexpr uint64_t kSearchStepsPerCodePoint = 1000;

  // All non-overlapping matches in text, as [start, end) code point index pairs, with the same
  // rules as Oniguruma's find_iter in the Rust onig crate (an empty match right after the
  // previous match is skipped by advancing one code point). Thread-safe (const, no shared state).
  // Returns the VM steps the search took (to compare with the budget above).
  uint64_t find_all(const std::vector<uint32_t>& text, std::vector<std::pair<uint32_t, uint32_t>>& out) const;

  // Whether the pattern matches starting exactly at pos; sets *end to the match end. Same
  // budget as find_all (the step budget counts text.size() code points).
  bool match_at(const std::vector<uint32_t>& text, uint32_t pos, uint32_t* end) const;

  const std::string& pattern() const { return pattern_; }

  // Implementation types, public so the compiler helpers in regex.cpp can build them.
  struct CharClass {
    bool negated = false;
    bool icase = false;
    std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive, as written
    uint32_t cat_mask = 0;                  // union of \p{..} categories (bit per Category)
    std::vector<uint32_t> not_cat_masks;    // each \P{..}: matches code points outside the mask
    bool space = false, not_space = false;  // \s, \S (White_Space)
    bool word = false, not_word = false;    // \w, \W
    uint64_t ascii[2] = {0, 0};             // precomputed answer for code points < 128
    bool matches(uint32_t cp) const;
    bool matches_raw(uint32_t cp) const;    // without the ASCII cache and case folding
  };
  enum Op : uint8_t { kChar, kCharFold, kClass, kAny, kSplit, kJmp, kLook, kAtomic, kBol, kEol, kMatch };
  struct Inst {
    Op op;
    bool flag = false;  // kLook: negative look-ahead
    uint32_t a = 0;     // kChar*: code point; kClass: class index; kSplit/kJmp: target; kLook/kAtomic: sub-program pc
    uint32_t b = 0;     // kSplit: second (lower priority) target
  };

 private:
  struct Budget {
    uint64_t retries = 0;     // backtracks in the current match attempt
    uint64_t steps_left = 0;  // VM steps left for the whole search
    uint32_t start = 0;       // start position of the current attempt (for the message)
  };
  bool run(uint32_t pc, const std::vector<uint32_t>& text, uint32_t sp, uint32_t* end,
           std::vector<std::pair<uint32_t, uint32_t>>& stack, Budget& budget) const;
  [[noreturn]] void over_budget(const std::vector<uint32_t>& text, const Budget& budget, bool steps) const;
  static Budget search_budget(size_t text_size);

  std::string pattern_;
  std::vector<Inst> prog_;  // main program starts at 0; sub-programs follow, each ending in kMatch
  std::vector<CharClass> classes_;
};

}  // namespace ref
