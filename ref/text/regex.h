// regex.h — a small backtracking regex engine for tokenizer pre-tokenizer patterns.
//
// HuggingFace tokenizers compiles Split / ByteLevel patterns with Oniguruma (Ruby-like syntax,
// leftmost-first "Perl" semantics: alternatives are tried in order, quantifiers are greedy unless
// marked lazy, the first successful path wins). This engine implements the subset that real
// tokenizer.json files use, with the same semantics, and refuses everything else by name:
//
//   literals and escapes (\n \r \t \f \v \a \e \x{H..} \uHHHH, escaped punctuation); \xHH is a
//     UTF-8 byte as in Oniguruma (\xC3\xA9 is U+00E9; \xE9 alone is refused, as HF refuses it)
//   .  (any code point but \n)       ^ $ (line anchors, as in Ruby; ^ not at the very end)
//   [...] [^...] with ranges, escapes, \s \S \d \D \w \W \p{..} \P{..} \p{^..} inside, and the
//     POSIX brackets [:alpha: digit alnum space blank cntrl xdigit ascii:] ([:^..:] negated)
//   \s \S \d \D \w \W   \p{X} \P{X} for General Categories (L Lu Ll Lt Lm Lo M Mn Mc Me N Nd Nl No
//                       P Pc Pd Ps Pe Pi Pf Po S Sm Sc Sk So Z Zs Zl Zp C Cc Cf Cs Co Cn)
//   | (alternation)   (...) (?:...) (?i:...) (?-i:...) (?>...) (?=...) (?!...)
//   ? * + {m} {m,} {m,n} {,n}, lazy (??, *?, +?, {m,n}?), possessive (?+ *+ ++), stacked
//     quantifiers as in Ruby syntax (a** = (?:a*)*, {n}? = (?:a{n})?, {m,n}+ = (?:a{m,n})+), loops
//     whose body can match empty (an empty iteration ends the loop, as in Oniguruma)
// (?i) folds literals and [...] classes but not a bare \p{..} \w \d \s (Oniguruma).
//
// Refused with a message naming the construct: what HF refuses (a quantified anchor or
// look-ahead, byte escapes that spell no character), and what this engine does not implement:
// lookbehind, backreferences, named/unicode-script properties (\p{Han}), nested classes and class
// intersection (&&), the POSIX brackets upper lower punct graph print word, inline flag groups
// without ':' ((?i) to end of group), \b \B \A \z \Z \G \h \R \X \K, and (?i) where Oniguruma's
// multi-character case folding could match differently. docs/TOKENIZER.md lists it all.
//
// Searches have a backtracking budget (kRetryLimitInMatch, kSearchStep*: see find_all), so no
// pattern can hang a caller: over budget, find_all throws a message naming pattern and offset.
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
void decode_utf8(const char* s, size_t n, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets);

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
  // The same on text[0, n) (a piece of a longer decoded text, matched as a text of its own: ^ and
  // $ see its ends), with the caller's backtrack stack (scratch, reused between calls).
  uint64_t find_all(const uint32_t* text, uint32_t n, std::vector<std::pair<uint32_t, uint32_t>>& out,
                    std::vector<std::pair<uint32_t, uint32_t>>& stack) const;

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
    std::vector<std::pair<uint8_t, bool>> posix;  // [:name:] / [:^name:] (Posix, negated)
    uint64_t ascii[2] = {0, 0};             // precomputed answer for code points < 128
    bool matches(uint32_t cp) const;
    bool matches_raw(uint32_t cp) const;    // without the ASCII cache and case folding
  };
  // kSavePos / kEmptyCheck: the empty-iteration check of an unbounded repeat whose body can
  // match empty, as Oniguruma does it: an iteration that consumed nothing ends the loop.
  // POSIX brackets with Oniguruma's Unicode definitions (checked against HF on every code point).
  enum Posix : uint8_t { kPosixAlpha, kPosixDigit, kPosixAlnum, kPosixSpace, kPosixBlank, kPosixCntrl, kPosixXdigit, kPosixAscii };
  enum Op : uint8_t { kChar, kCharFold, kClass, kAny, kSplit, kJmp, kLook, kAtomic, kBol, kEol, kSavePos, kEmptyCheck, kMatch };
  struct Inst {
    Op op;
    bool flag = false;  // kLook: negative look-ahead
    uint32_t a = 0;     // kChar*: code point; kClass: class index; kSplit/kJmp: target; kLook/kAtomic: sub-program pc;
                        // kSavePos/kEmptyCheck: register
    uint32_t b = 0;     // kSplit: second (lower priority) target; kEmptyCheck: the loop's exit
  };

 private:
  struct Budget {
    uint64_t retries = 0;     // backtracks in the current match attempt
    uint64_t steps_left = 0;  // VM steps left for the whole search
    uint32_t start = 0;       // start position of the current attempt (for the message)
    std::vector<uint32_t> regs;  // kSavePos registers: where the current loop iteration began
  };
  // The code points a match can begin with, when every match consumes at least one: a superset
  // computed from the program (the instructions reachable from pc 0 without consuming), so that
  // find_all can skip start positions where the attempt is bound to fail at once.
  struct FirstSet {
    bool active = false;            // false: the pattern can match empty (or start anywhere)
    uint64_t ascii[2] = {0, 0};     // for code points < 128
    std::vector<uint32_t> insts;    // the consuming instructions to test for the others
    bool may_start(uint32_t cp, const std::vector<CharClass>& classes, const std::vector<Inst>& prog) const;
    bool any_accepts(uint32_t cp, const std::vector<CharClass>& classes, const std::vector<Inst>& prog) const;  // insts only
  };
  void compute_first_set();
  bool run(uint32_t pc, const uint32_t* text, uint32_t n, uint32_t sp, uint32_t* end,
           std::vector<std::pair<uint32_t, uint32_t>>& stack, Budget& budget) const;
  [[noreturn]] void over_budget(const uint32_t* text, uint32_t n, const Budget& budget, bool steps) const;
  Budget search_budget(size_t text_size) const;

  std::string pattern_;
  std::vector<Inst> prog_;  // main program starts at 0; sub-programs follow, each ending in kMatch
  std::vector<CharClass> classes_;
  uint32_t num_regs_ = 0;   // kSavePos registers the program uses
  FirstSet first_;
};

}  // namespace ref
