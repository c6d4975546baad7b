// regex.cpp — backtracking regex engine with Oniguruma (leftmost-first) semantics; see regex.h.
//
// Pipeline: pattern text --parse--> AST (Node) --compile--> program (Inst) --run--> matches.
// The program is a classic backtracking VM (as in Russ Cox's "Regular Expression Matching: the
// Virtual Machine Approach"): kSplit pushes the lower-priority branch on a stack and follows the
// higher-priority one, so the first kMatch reached is the match Perl/Oniguruma would report.
// Look-aheads and atomic groups run a sub-program to its first match without leaving
// backtrack entries behind, which is exactly what makes them "atomic".
#include "ref/text/regex.h"

#include <algorithm>      // std::search, std::upper_bound
#include <memory>         // std::unique_ptr
#include <stdexcept>      // std::runtime_error
#include <unordered_map>  // fold orbits

#include "ref/text/unicode_tables.h"

namespace ref {

// A backtrack-stack entry whose pc has this bit restores a kSavePos register (see Regex::run).
constexpr uint32_t kRestoreTag = 0x80000000u;

// ---------------------------------------------------------------------------------------------
// Unicode lookups (data generated into unicode_tables.cpp)
// ---------------------------------------------------------------------------------------------
namespace unicode {
namespace {

// Two-stage table: stage1[cp >> 8] picks a 256-entry block of categories in stage2. Blocks are
// deduplicated, so the whole table is ~100 KB and a lookup is two loads.
struct CategoryTable {
  std::vector<uint16_t> stage1;
  std::vector<Category> stage2;
  CategoryTable() {
    std::vector<Category> all(0x110000, Cn);
    for (size_t i = 0; i < kCategoryRangesSize; i++)
      for (uint32_t cp = kCategoryRanges[i].lo; cp <= kCategoryRanges[i].hi; cp++) all[cp] = kCategoryRanges[i].cat;
    std::unordered_map<std::string, uint16_t> seen;
    for (uint32_t block = 0; block < 0x1100; block++) {
      std::string key((const char*)&all[block << 8], 256);
      auto it = seen.find(key);
      if (it == seen.end()) {
        uint16_t idx = (uint16_t)(stage2.size() >> 8);
        it = seen.emplace(key, idx).first;
        stage2.insert(stage2.end(), all.begin() + (block << 8), all.begin() + ((block + 1) << 8));
      }
      stage1.push_back(it->second);
    }
  }
};

const CategoryTable& category_table() {
  static const CategoryTable table;  // built once, thread-safe (C++11 static init)
  return table;
}

bool in_intervals(const Interval* v, size_t n, uint32_t cp) {
  const Interval* end = v + n;
  const Interval* it = std::upper_bound(v, end, cp, [](uint32_t c, const Interval& r) { return c < r.lo; });
  return it != v && cp <= (it - 1)->hi;
}

}  // namespace

Category category(uint32_t cp) {
  if (cp >= 0x110000) return Cn;
  const CategoryTable& t = category_table();
  return t.stage2[((size_t)t.stage1[cp >> 8] << 8) | (cp & 0xFF)];
}

bool is_white_space(uint32_t cp) {
  if (cp < 128) return cp == ' ' || (cp >= 9 && cp <= 13);
  return in_intervals(kWhiteSpace, kWhiteSpaceSize, cp);
}

bool is_alphabetic(uint32_t cp) { return in_intervals(kAlphabetic, kAlphabeticSize, cp); }
bool is_join_control(uint32_t cp) { return in_intervals(kJoinControl, kJoinControlSize, cp); }

uint32_t simple_fold(uint32_t cp) {
  if (cp < 128) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const FoldPair* end = kSimpleFold + kSimpleFoldSize;
  const FoldPair* it = std::lower_bound(kSimpleFold, end, cp, [](const FoldPair& p, uint32_t c) { return p.from < c; });
  return (it != end && it->from == cp) ? it->to : cp;
}

}  // namespace unicode

namespace {

// All code points whose simple folding is f (f itself included when it folds to itself).
const std::vector<uint32_t>& fold_orbit(uint32_t f) {
  static const std::unordered_map<uint32_t, std::vector<uint32_t>> orbits = [] {
    std::unordered_map<uint32_t, std::vector<uint32_t>> m;
    for (size_t i = 0; i < unicode::kSimpleFoldSize; i++) {
      auto& v = m[unicode::kSimpleFold[i].to];
      if (v.empty()) v.push_back(unicode::kSimpleFold[i].to);
      v.push_back(unicode::kSimpleFold[i].from);
    }
    return m;
  }();
  static const std::vector<uint32_t> none;
  auto it = orbits.find(f);
  return it == orbits.end() ? none : it->second;
}

// \w as Oniguruma's Unicode tables define it (checked against HF tokenizers on every code point,
// tests/check_tokenizer_hf.sh): Alphabetic (all letters, plus e.g. the circled letters U+24B6..),
// Mark, Nd, Nl and Connector_Punctuation; of No only the Latin-1 ones ('²' '³' '¹' '¼' '½' '¾'),
// not e.g. U+2460 '①'. Unlike UTS #18 it has no Join_Control (U+200C/D).
bool is_word(uint32_t cp) {
  using namespace unicode;
  if (cp >= 0xB2 && cp <= 0xBE) return cp <= 0xB3 || cp == 0xB9 || cp >= 0xBC || is_alphabetic(cp);
  return is_alphabetic(cp) || (cat_bit(category(cp)) & (kMaskM | cat_bit(Nd) | cat_bit(Nl) | cat_bit(Pc)));
}

}  // namespace

// POSIX brackets as Oniguruma defines them for Unicode, measured with HF on every code point
// (tests/tokenizer_oracle/regex_cases.js): alpha is the Alphabetic property (not L|M), alnum
// Alphabetic|Nd, space White_Space (as \s), blank Zs|TAB, cntrl Cc, digit Nd.
static bool posix_matches(uint8_t kind, uint32_t cp) {
  using namespace unicode;
  switch (kind) {
    case Regex::kPosixAlpha: return is_alphabetic(cp);
    case Regex::kPosixDigit: return category(cp) == Nd;
    case Regex::kPosixAlnum: return is_alphabetic(cp) || category(cp) == Nd;
    case Regex::kPosixSpace: return is_white_space(cp);
    case Regex::kPosixBlank: return cp == '\t' || category(cp) == Zs;
    case Regex::kPosixCntrl: return category(cp) == Cc;
    case Regex::kPosixXdigit: return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'f') || (cp >= 'A' && cp <= 'F');
    case Regex::kPosixAscii: return cp < 0x80;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------
void decode_utf8(const std::string& s, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets) {
  decode_utf8(s.data(), s.size(), cps, offsets);
}

void decode_utf8(const char* s, size_t n, std::vector<uint32_t>& cps, std::vector<uint32_t>& offsets) {
  // Sized for the worst case (one code point per byte) once, then trimmed.
  cps.resize(n);
  offsets.resize(n + 1);
  uint32_t* c_out = cps.data();
  uint32_t* o_out = offsets.data();
  size_t k = 0;
  const unsigned char* u = (const unsigned char*)s;
  size_t i = 0;
  while (i < n) {
    o_out[k] = (uint32_t)i;
    unsigned char c = u[i];
    if (c < 0x80) { c_out[k++] = c; i++; continue; }
    size_t len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    uint32_t cp = len ? (c & (0x7F >> len)) : 0;
    bool ok = len > 0 && i + len <= n;
    for (size_t j = 1; ok && j < len; j++) {
      if ((u[i + j] & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (u[i + j] & 0x3F);
    }
    // Overlong 3/4-byte forms, surrogates and values past U+10FFFF are invalid too.
    if (ok && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
               (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
    if (ok) {
      c_out[k++] = cp;
      i += len;
    } else {
      c_out[k++] = 0xDC00 + c;  // one invalid byte = one code point (see regex.h)
      i++;
    }
  }
  o_out[k] = (uint32_t)n;
  cps.resize(k);
  offsets.resize(k + 1);
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp >= 0xDC80 && cp <= 0xDCFF) {
    out += (char)(cp - 0xDC00);  // an invalid byte carried through decode_utf8
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  }
}

// ---------------------------------------------------------------------------------------------
// Character classes
// ---------------------------------------------------------------------------------------------
bool Regex::CharClass::matches_raw(uint32_t cp) const {
  bool in = false;
  for (const auto& r : ranges)
    if (cp >= r.first && cp <= r.second) { in = true; break; }
  if (!in && (cat_mask || !not_cat_masks.empty())) {
    uint32_t bit = unicode::cat_bit(unicode::category(cp));
    if (cat_mask & bit) in = true;
    for (uint32_t m : not_cat_masks)
      if (!(m & bit)) in = true;
  }
  if (!in && (space || not_space)) {
    bool ws = unicode::is_white_space(cp);
    in = (space && ws) || (not_space && !ws);
  }
  if (!in && (word || not_word)) {
    bool w = is_word(cp);
    in = (word && w) || (not_word && !w);
  }
  for (size_t k = 0; !in && k < posix.size(); k++) in = posix_matches(posix[k].first, cp) != posix[k].second;
  return in;
}

bool Regex::CharClass::matches(uint32_t cp) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  bool in = matches_raw(cp);
  if (!in && icase) {
    // Under (?i) a class matches cp if it contains any code point that folds like cp.
    uint32_t f = unicode::simple_fold(cp);
    if (f != cp && matches_raw(f)) in = true;
    for (uint32_t other : fold_orbit(f))
      if (!in && other != cp && matches_raw(other)) in = true;
  }
  return in != negated;
}

namespace {

// ---------------------------------------------------------------------------------------------
// Parser: pattern code points -> AST
// ---------------------------------------------------------------------------------------------
struct Node {
  // Group: a capturing group or an option group (?i:...) (?-i:...), transparent when matching
  // but kept because Oniguruma lets a quantifier repeat such a group even around a look-ahead
  // (see invalid_repeat_target); (?:...) leaves no node of its own, as in Oniguruma.
  enum Kind { Empty, Char, Class, Any, Bol, Eol, Concat, Alt, Repeat, Look, Atomic, Group } kind = Empty;
  uint32_t cp = 0;      // Char
  bool icase = false;   // Char
  int cls = -1;         // Class: index into the class list
  int min = 0, max = 0; // Repeat: max -1 = unbounded
  bool greedy = true;   // Repeat
  bool negate = false;  // Look
  std::vector<Node> kids;
};

// Whether n can match the empty string.
bool nullable(const Node& n) {
  switch (n.kind) {
    case Node::Empty: case Node::Bol: case Node::Eol: case Node::Look: return true;
    case Node::Char: case Node::Class: case Node::Any: return false;
    case Node::Concat:
      for (const Node& k : n.kids) if (!nullable(k)) return false;
      return true;
    case Node::Alt:
      for (const Node& k : n.kids) if (nullable(k)) return true;
      return false;
    case Node::Repeat: return n.min == 0 || nullable(n.kids[0]);
    case Node::Atomic: case Node::Group: return nullable(n.kids[0]);
  }
  return true;
}

constexpr int kMaxRepeat = 1000;
constexpr size_t kMaxProgram = 1 << 20;  // instructions (12 bytes each), see Compiler::emit
// A "character" no text contains (text code points are at most 0x10FFFF, invalid bytes
// 0xDC80..0xDCFF): what byte escapes that spell no valid UTF-8 character match.
constexpr uint32_t kNever = 0xFFFFFFFF;  // {m,n} bounds beyond this are refused (programs are unrolled)

class Parser {
 public:
  Parser(const std::string& pattern, std::vector<Regex::CharClass>& classes) : pattern_(pattern), classes_(classes) {
    std::vector<uint32_t> offsets;
    decode_utf8(pattern, p_, offsets);
  }

  Node parse() {
    Node n = parse_alt(false);
    if (i_ < p_.size()) fail("unmatched ')'");
    check_multi_fold(n);
    return n;
  }

 private:
  const std::string& pattern_;
  std::vector<Regex::CharClass>& classes_;
  std::vector<uint32_t> p_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("regex /" + pattern_ + "/: " + what + " at offset " + std::to_string(i_));
  }
  [[noreturn]] void unsupported(const std::string& construct, const std::string& hint = "") const {
    fail("unsupported construct " + construct + (hint.empty() ? "" : " (" + hint + ")"));
  }

  bool at_end() const { return i_ >= p_.size(); }
  uint32_t peek(size_t k = 0) const { return i_ + k < p_.size() ? p_[i_ + k] : 0xFFFFFFFF; }

  Node parse_alt(bool icase) {
    std::vector<Node> alts;
    alts.push_back(parse_concat(icase));
    while (peek() == '|') {
      i_++;
      alts.push_back(parse_concat(icase));
    }
    if (alts.size() == 1) return std::move(alts[0]);
    Node n;
    n.kind = Node::Alt;
    n.kids = std::move(alts);
    return n;
  }

  Node parse_concat(bool icase) {
    Node n;
    n.kind = Node::Concat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      Node item = parse_repeat(icase);
      if (item.kind == Node::Concat)  // a group without alternatives: splice, as Oniguruma does
        for (Node& k : item.kids) n.kids.push_back(std::move(k));
      else
        n.kids.push_back(std::move(item));
    }
    return n;
  }

  // --- Multi-character case folding ---------------------------------------------------------
  // Under (?i) Oniguruma also matches full case foldings that span several characters: the
  // literal "ss" matches "ß", "st" matches "ﬆ", and a class listing ß matches "ss". This engine
  // implements simple (one-to-one) folding only, so it refuses patterns where the difference can
  // show. Single characters, \p{..}, \w and classes of ranges without such characters are safe;
  // the contraction alternatives (?i:'s|'t|'re|'ve|'m|'ll|'d) of real tokenizers are safe.
  static std::string show(const std::vector<uint32_t>& cps) {
    std::string s;
    for (uint32_t c : cps) append_utf8(s, c);
    return s;
  }

  void check_literal_run(const std::vector<uint32_t>& run) const {
    for (size_t m = 0; m < unicode::kMultiFoldSize; m++) {
      const unicode::MultiFold& mf = unicode::kMultiFold[m];
      for (uint32_t c : run)
        if (c == mf.from)
          unsupported("case-insensitive '" + show({c}) + "'", "Oniguruma would also match '" +
                      show(std::vector<uint32_t>(mf.to, mf.to + mf.n)) + "' by multi-character case folding");
      std::vector<uint32_t> target;
      for (uint32_t k = 0; k < mf.n; k++) target.push_back(unicode::simple_fold(mf.to[k]));
      if (std::search(run.begin(), run.end(), target.begin(), target.end()) != run.end())
        unsupported("case-insensitive literal '" + show(target) + "'", "Oniguruma would also match '" + show({mf.from}) +
                    "' by multi-character case folding");
    }
  }

  void check_multi_fold(const Node& n) const {
    if (n.kind == Node::Char && n.icase) check_literal_run({unicode::simple_fold(n.cp)});
    if (n.kind != Node::Concat) {
      for (const Node& k : n.kids) check_multi_fold(k);
      return;
    }
    std::vector<uint32_t> run;  // maximal runs of case-insensitive literal characters
    for (const Node& k : n.kids) {
      if (k.kind == Node::Char && k.icase) {
        run.push_back(unicode::simple_fold(k.cp));
        continue;
      }
      if (!run.empty()) check_literal_run(run);
      run.clear();
      check_multi_fold(k);
    }
    if (!run.empty()) check_literal_run(run);
  }

  // A [...] class under (?i) that contains (up to simple folding) a character with a
  // multi-character folding: Oniguruma also lets it match the folded sequence ((?i:[\p{Ll}])
  // matches "ʼn" as one match through U+0149, (?i:[\p{Lu}]x) matches "ssx" through U+1E9E).
  // Negated classes never match such sequences there (HF: (?i:[^ß]x) on "ssx" is "sx"), so
  // they are safe.
  void check_class_multi_fold(const Regex::CharClass& cls) const {
    if (cls.negated) return;
    for (size_t m = 0; m < unicode::kMultiFoldSize; m++) {
      const unicode::MultiFold& mf = unicode::kMultiFold[m];
      uint32_t f = unicode::simple_fold(mf.from);
      bool listed = cls.matches_raw(mf.from) || cls.matches_raw(f);
      for (uint32_t other : fold_orbit(f)) listed = listed || cls.matches_raw(other);
      if (listed)
        unsupported("case-insensitive class matching '" + show({mf.from}) + "'", "Oniguruma would also match '" +
                    show(std::vector<uint32_t>(mf.to, mf.to + mf.n)) + "' by multi-character case folding");
    }
  }

  // Reads "{m}", "{m,}", "{m,n}" or "{,n}" at i_; returns false (consuming nothing) if the text
  // is not an interval, in which case Oniguruma treats '{' as a literal.
  bool parse_interval(int* lo, int* hi, bool* fixed) {
    size_t j = i_ + 1;
    auto number = [&](int* out) {
      size_t start = j;
      long v = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9') {
        v = v * 10 + (p_[j] - '0');
        if (v > 1000000) v = 1000000;
        j++;
      }
      *out = (int)v;
      return j > start;
    };
    bool has_lo = number(lo);
    if (!has_lo) *lo = 0;
    *fixed = false;
    if (j < p_.size() && p_[j] == '}') {
      if (!has_lo) return false;
      *hi = *lo;
      *fixed = true;
    } else if (j < p_.size() && p_[j] == ',') {
      j++;
      bool has_hi = number(hi);
      if (!has_hi) {
        if (!has_lo) return false;
        *hi = -1;
      }
      if (j >= p_.size() || p_[j] != '}') return false;
    } else {
      return false;
    }
    i_ = j + 1;
    if (*lo > kMaxRepeat || *hi > kMaxRepeat) fail("repeat count above " + std::to_string(kMaxRepeat));
    if (*hi >= 0 && *hi < *lo) fail("repeat {m,n} with n < m");
    return true;
  }

  // An atom and its quantifiers. Stacked quantifiers repeat the repeat, as in Oniguruma's Ruby
  // syntax: a** is (?:a*)*, a{2}{3} is (?:a{2}){3}. A '?' after a quantifier makes it lazy and a
  // '+' possessive, except after an interval: "{m,n}+" is (?:a{m,n})+ and, for the "{n}" form
  // only, "{n}?" is (?:a{n})? (HF; "{n,n}?" and "{m,n}?" are lazy).
  Node parse_repeat(bool icase) {
    Node atom = parse_atom(icase);
    for (;;) {
      const size_t quantifier_at = i_;
      int lo, hi;
      bool interval = false, fixed = false;
      uint32_t c = peek();
      if (c == '*') { lo = 0; hi = -1; i_++; }
      else if (c == '+') { lo = 1; hi = -1; i_++; }
      else if (c == '?') { lo = 0; hi = 1; i_++; }
      else if (c == '{' && parse_interval(&lo, &hi, &fixed)) { interval = true; }
      else return atom;
      atom = quantify(std::move(atom), quantifier_at, lo, hi, interval, fixed);
    }
  }

  Node quantify(Node atom, size_t quantifier_at, int lo, int hi, bool interval, bool fixed) {
    if (invalid_repeat_target(atom)) {
      i_ = quantifier_at;
      fail("target of repeat operator is invalid (Oniguruma refuses a quantifier on an anchor ^ $ or a look-ahead, "
           "or on an alternation with one such alternative)");
    }
    bool greedy = true, possessive = false;
    if (peek() == '?' && !fixed) {
      greedy = false;
      i_++;
    } else if (peek() == '+' && !interval) {
      possessive = true;
      i_++;
    }

    Node rep;
    rep.kind = Node::Repeat;
    rep.min = lo;
    rep.max = hi;
    rep.greedy = greedy;
    rep.kids.push_back(std::move(atom));
    if (!possessive) return rep;
    Node atomic;
    atomic.kind = Node::Atomic;
    atomic.kids.push_back(std::move(rep));
    return atomic;
  }

  // Oniguruma's rule (HF refuses these patterns with "target of repeat operator is invalid"):
  // an anchor or look-ahead cannot be repeated, nor an alternation with one such alternative;
  // a sequence or a group around one can ("(?:^a)*", "((?=a))+", "(?i:(?=a))+" are accepted).
  static bool invalid_repeat_target(const Node& n) {
    switch (n.kind) {
      case Node::Concat: return n.kids.size() == 1 && invalid_repeat_target(n.kids[0]);  // one item: the item itself
      case Node::Bol: case Node::Eol: case Node::Look: return true;
      case Node::Alt:
        for (const Node& k : n.kids) if (invalid_repeat_target(k)) return true;
        return false;
      default: return false;
    }
  }


  Node char_node(uint32_t cp, bool icase) {
    Node n;
    n.kind = Node::Char;
    n.cp = cp;
    n.icase = icase;
    return n;
  }

  Node class_node(Regex::CharClass cls, bool icase) {
    cls.icase = icase;
    if (icase) check_class_multi_fold(cls);
    Node n;
    n.kind = Node::Class;
    n.cls = (int)classes_.size();
    classes_.push_back(std::move(cls));
    return n;
  }

  Node parse_atom(bool icase) {
    uint32_t c = peek();
    if (c == '(') return parse_group(icase);
    if (c == '[') return class_node(parse_class(), icase);
    i_++;
    Node n;
    switch (c) {
      case '.': n.kind = Node::Any; return n;
      case '^': n.kind = Node::Bol; return n;
      case '$': n.kind = Node::Eol; return n;
      case '*': case '+': case '?': i_--; fail("quantifier with nothing to repeat");
      case '\\': {
        Regex::CharClass set;
        uint32_t cp;
        // A bare \p{..} \P{..} \w \W \d \D \s \S ignores (?i): Oniguruma folds case only for
        // literals and [...] classes (HF: (?i:\p{Lu}) matches "A" but not "a", while
        // (?i:[\p{Lu}]) matches both).
        if (parse_escape(false, &set, &cp)) return class_node(std::move(set), false);
        return char_node(cp, icase);
      }
      default: return char_node(c, icase);
    }
  }

  Node parse_group(bool icase) {
    size_t open = i_;
    i_++;  // '('
    Node inner;
    if (peek() == '?') {
      i_++;
      uint32_t c = peek();
      if (c == ':') { i_++; inner = parse_alt(icase); }
      else if (c == '=' || c == '!') {
        i_++;
        inner.kind = Node::Look;
        inner.negate = c == '!';
        inner.kids.push_back(parse_alt(icase));
      } else if (c == '>') {
        i_++;
        inner.kind = Node::Atomic;
        inner.kids.push_back(parse_alt(icase));
      } else if (c == '<' && (peek(1) == '=' || peek(1) == '!')) {
        unsupported("look-behind '(?<=' / '(?<!'");
      } else if (c == 'i' || c == '-') {
        inner.kind = Node::Group;
        inner.kids.push_back(parse_flag_group(icase));
      } else {
        unsupported(std::string("group '(?") + (char)(c < 128 ? c : '?') + "'", "only (?: (?i: (?-i: (?= (?! (?> are supported");
      }
    } else {
      inner.kind = Node::Group;  // capturing group: captures are not used, so it is just a group
      inner.kids.push_back(parse_alt(icase));
    }
    if (peek() != ')') { i_ = open; fail("unterminated group '('"); }
    i_++;
    return inner;
  }

  // (?i:...) and (?-i:...). The flag-only form (?i) that changes the rest of the enclosing
  // group is refused: no tokenizer pattern we know uses it.
  Node parse_flag_group(bool icase) {
    bool on = true;
    if (peek() == '-') { on = false; i_++; }
    if (peek() != 'i') unsupported("inline option", "only the i flag is supported");
    i_++;
    if (peek() == ')') unsupported("inline option '(?i)' without ':'", "write (?i:...) around the part it applies to");
    if (peek() != ':') unsupported("inline option group", "only (?i:...) and (?-i:...) are supported");
    i_++;
    (void)icase;
    return parse_alt(on);
  }

  static int hex_value(uint32_t c) {
    if (c >= '0' && c <= '9') return (int)(c - '0');
    if (c >= 'a' && c <= 'f') return (int)(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return (int)(c - 'A' + 10);
    return -1;
  }

  uint32_t parse_hex(size_t min_digits, size_t max_digits) {
    uint32_t v = 0;
    size_t n = 0;
    while (n < max_digits && hex_value(peek()) >= 0) {
      v = v * 16 + (uint32_t)hex_value(peek());
      i_++;
      n++;
    }
    if (n < min_digits) fail("expected hex digits in escape");
    return v;
  }

  // \xHH is a byte, as in Oniguruma with UTF-8 (HF): up to \x7F it is that ASCII character;
  // above, it must start a UTF-8 sequence whose other bytes follow as \xHH escapes
  // ("\xC3\xA9" is U+00E9). Oniguruma's sequence lengths by first byte: C0..DF 2, E0..EF 3,
  // F0..F4 4, F5..FF 1. HF refuses a continuation byte where a character starts (\x80,
  // \xC3\xA9\xA9, \xF5\x80) or a bad continuation (\xC3\x41) ("invalid code point value") and
  // a sequence cut short (\xE9 alone, [\xC3], "too short multibyte code string"). Sequences HF
  // accepts but that no valid UTF-8 text contains (overlong forms, surrogates, values above
  // U+10FFFF, \xF5..\xFF alone) become kNever. Called after "\x"; returns the code point.
  uint32_t parse_byte_escapes() {
    const size_t start = i_ - 2;
    uint32_t b = parse_hex(1, 2);
    if (b < 0x80) return b;
    auto refuse = [&](const char* what) {
      i_ = start;
      fail(std::string("\\xHH escapes are UTF-8 bytes (as in Oniguruma): ") + what +
           "; write \\x{E9} (braces) for a code point");
    };
    size_t len = b < 0xC0 ? 0 : b < 0xE0 ? 2 : b < 0xF0 ? 3 : b < 0xF5 ? 4 : 1;
    if (len == 0) refuse("a continuation byte cannot start a character (invalid code point value)");
    if (len == 1) return kNever;  // \xF5..\xFF: one byte of their own, never in valid UTF-8
    uint32_t v = b & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
      if (!(peek() == '\\' && peek(1) == 'x' && hex_value(peek(2)) >= 0))
        refuse("the sequence ends before its last byte (too short multibyte code string)");
      i_ += 2;
      uint32_t c = parse_hex(1, 2);
      if ((c & 0xC0) != 0x80) refuse("a byte after the first is not a continuation byte \\x80..\\xBF (invalid code point value)");
      v = (v << 6) | (c & 0x3F);
    }
    static const uint32_t kMinOfLen[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < kMinOfLen[len] || (v >= 0xD800 && v <= 0xDFFF) || v > 0x10FFFF) return kNever;
    return v;
  }

  // Parses the escape after '\\'. Returns true and fills *set for class escapes (\s, \p{L}, ...),
  // false and fills *cp for single characters.
  bool parse_escape(bool in_class, Regex::CharClass* set, uint32_t* cp) {
    if (at_end()) fail("pattern ends with '\\'");
    uint32_t c = peek();
    i_++;
    switch (c) {
      case 's': set->space = true; return true;
      case 'S': set->not_space = true; return true;
      case 'w': set->word = true; return true;
      case 'W': set->not_word = true; return true;
      case 'd': set->cat_mask |= unicode::cat_bit(unicode::Nd); return true;
      case 'D': set->not_cat_masks.push_back(unicode::cat_bit(unicode::Nd)); return true;
      case 'p': case 'P': parse_property(c == 'P', set); return true;
      case 'n': *cp = '\n'; return false;
      case 'r': *cp = '\r'; return false;
      case 't': *cp = '\t'; return false;
      case 'f': *cp = '\f'; return false;
      case 'v': *cp = '\v'; return false;
      case 'a': *cp = 0x07; return false;
      case 'e': *cp = 0x1B; return false;
      case 'x':
        if (peek() == '{') {
          i_++;
          *cp = parse_hex(1, 8);
          if (peek() != '}') fail("expected '}' after \\x{...");
          i_++;
          if (*cp > 0x10FFFF) fail("code point above U+10FFFF");
        } else {
          *cp = parse_byte_escapes();
        }
        return false;
      case 'u': *cp = parse_hex(4, 4); return false;
      case 'b':
        if (in_class) { *cp = 0x08; return false; }
        unsupported("word boundary '\\b'");
      default: break;
    }
    if (c >= '0' && c <= '9') unsupported(std::string("'\\") + (char)c + "'", "backreferences and octal escapes");
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) unsupported(std::string("escape '\\") + (char)c + "'");
    *cp = c;  // escaped punctuation, space or non-ASCII: the character itself
    return false;
  }

  void parse_property(bool negate, Regex::CharClass* set) {
    if (peek() != '{') unsupported("property escape without braces", "write \\p{L}");
    i_++;
    if (peek() == '^') { negate = !negate; i_++; }
    std::string name;
    while (!at_end() && peek() != '}') {
      if (peek() >= 128) fail("non-ASCII property name");
      name += (char)peek();
      i_++;
    }
    if (at_end()) fail("unterminated \\p{...}");
    i_++;
    uint32_t mask = category_mask(name);
    if (mask == 0) unsupported("property \\p{" + name + "}", "only General Categories such as L, Lu, N, P, S, M, Z, C are supported");
    if (negate) set->not_cat_masks.push_back(mask);
    else set->cat_mask |= mask;
  }

  static uint32_t category_mask(const std::string& name) {
    using namespace unicode;
    static const char* const names[kNumCategories] = {
        "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
        "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};
    for (int c = 0; c < kNumCategories; c++)
      if (name == names[c]) return cat_bit((Category)c);
    if (name == "L" || name == "Letter") return kMaskL;
    if (name == "M" || name == "Mark") return kMaskM;
    if (name == "N" || name == "Number") return kMaskN;
    if (name == "P" || name == "Punctuation") return kMaskP;
    if (name == "S" || name == "Symbol") return kMaskS;
    if (name == "Z" || name == "Separator") return kMaskZ;
    if (name == "C" || name == "Other") return kMaskC;
    return 0;
  }

  // [:name:] or [:^name:] inside a class, at i_.
  void parse_posix_bracket(Regex::CharClass* set) {
    size_t j = i_ + 2;
    bool negated = false;
    if (j < p_.size() && p_[j] == '^') { negated = true; j++; }
    std::string name;
    while (j < p_.size() && p_[j] >= 'a' && p_[j] <= 'z') name += (char)p_[j++];
    if (!(j + 1 < p_.size() && p_[j] == ':' && p_[j + 1] == ']'))
      unsupported("nested class '[' inside [...]", "escape it as \\[; POSIX brackets are written [:alpha:]");
    static const std::pair<const char*, Regex::Posix> known[] = {
        {"alpha", Regex::kPosixAlpha}, {"digit", Regex::kPosixDigit}, {"alnum", Regex::kPosixAlnum},
        {"space", Regex::kPosixSpace}, {"blank", Regex::kPosixBlank}, {"cntrl", Regex::kPosixCntrl},
        {"xdigit", Regex::kPosixXdigit}, {"ascii", Regex::kPosixAscii}};
    for (const auto& k : known)
      if (name == k.first) {
        set->posix.emplace_back(k.second, negated);
        i_ = j + 2;
        return;
      }
    unsupported("POSIX bracket '[:" + name + ":]'", "supported: alpha digit alnum space blank cntrl xdigit ascii; "
                "Oniguruma's upper, lower, punct, graph, print and word use properties this engine has no tables for");
  }

  // One class element: a set escape (fills *set, returns true) or a single code point.
  bool parse_class_atom(Regex::CharClass* set, uint32_t* cp) {
    uint32_t c = peek();
    if (c == '[' && peek(1) == ':') {
      parse_posix_bracket(set);
      return true;
    }
    if (c == '[') unsupported("nested class '[' inside [...]", "escape it as \\[");
    if (c == '&' && peek(1) == '&') unsupported("class intersection '&&'", "escape it as \\&\\&");
    i_++;
    if (c == '\\') return parse_escape(true, set, cp);
    *cp = c;
    return false;
  }

  Regex::CharClass parse_class() {
    size_t open = i_;
    i_++;  // '['
    Regex::CharClass cls;
    if (peek() == '^') { cls.negated = true; i_++; }
    bool first = true;
    for (;;) {
      if (at_end()) { i_ = open; fail("unterminated class '['"); }
      if (peek() == ']' && !first) { i_++; break; }
      first = false;
      if (peek() == ']') {  // ']' right after '[' or '[^' is a literal
        i_++;
        cls.ranges.emplace_back(']', ']');
        continue;
      }
      uint32_t lo;
      if (parse_class_atom(&cls, &lo)) continue;
      // A range "a-b" unless the '-' is the last thing before ']'.
      if (peek() == '-' && peek(1) != ']' && i_ + 1 < p_.size()) {
        i_++;
        uint32_t hi;
        Regex::CharClass dummy;
        if (parse_class_atom(&dummy, &hi)) fail("class escape used as a range end");
        if (lo == kNever || hi == kNever) fail("class range with an end that is not a valid UTF-8 character");
        if (hi < lo) fail("class range out of order");
        cls.ranges.emplace_back(lo, hi);
      } else {
        cls.ranges.emplace_back(lo, lo);
      }
    }
    return cls;
  }
};

// ---------------------------------------------------------------------------------------------
// Compiler: AST -> program
// ---------------------------------------------------------------------------------------------
class Compiler {
 public:
  Compiler(std::vector<Regex::Inst>& prog, const std::string& pattern) : prog_(prog), pattern_(pattern) {}
  uint32_t num_regs = 0;  // registers of the empty-iteration checks

  void compile_program(const Node& root) {
    emit_node(root);
    emit(Regex::kMatch);
    // Sub-programs (look-aheads, atomic groups) go after the main program; compiling one may
    // queue more, so loop by index.
    for (size_t k = 0; k < pending_.size(); k++) {
      prog_[pending_[k].first].a = (uint32_t)prog_.size();
      emit_node(*pending_[k].second);
      emit(Regex::kMatch);
    }
  }

 private:
  std::vector<Regex::Inst>& prog_;
  const std::string& pattern_;
  std::vector<std::pair<size_t, const Node*>> pending_;  // (instruction index, sub-program body)

  size_t emit(Regex::Op op, uint32_t a = 0, uint32_t b = 0, bool flag = false) {
    // Counted repeats are unrolled, so nested ones multiply: ((a{1000}){1000}){1000} would be
    // 10^9 instructions. Oniguruma loops instead and accepts them; here they are refused.
    if (prog_.size() >= kMaxProgram)
      throw std::runtime_error("regex /" + pattern_ + "/: unsupported construct: the program would exceed " +
                               std::to_string(kMaxProgram) + " instructions (nested counted repeats such as "
                               "(?:a{1000}){1000} are unrolled here); use smaller repeat counts");
    Regex::Inst in;
    in.op = op;
    in.a = a;
    in.b = b;
    in.flag = flag;
    prog_.push_back(in);
    return prog_.size() - 1;
  }
  uint32_t here() const { return (uint32_t)prog_.size(); }

  void emit_node(const Node& n) {
    switch (n.kind) {
      case Node::Empty: break;
      case Node::Char:
        if (n.icase) emit(Regex::kCharFold, unicode::simple_fold(n.cp));
        else emit(Regex::kChar, n.cp);
        break;
      case Node::Class: emit(Regex::kClass, (uint32_t)n.cls); break;
      case Node::Any: emit(Regex::kAny); break;
      case Node::Bol: emit(Regex::kBol); break;
      case Node::Eol: emit(Regex::kEol); break;
      case Node::Concat:
        for (const Node& k : n.kids) emit_node(k);
        break;
      case Node::Alt: emit_alt(n); break;
      case Node::Repeat: emit_repeat(n); break;
      case Node::Look: pending_.emplace_back(emit(Regex::kLook, 0, 0, n.negate), &n.kids[0]); break;
      case Node::Atomic: pending_.emplace_back(emit(Regex::kAtomic), &n.kids[0]); break;
      case Node::Group: emit_node(n.kids[0]); break;
    }
  }

  // a|b|c:  split L1,N1; L1: a; jmp END; N1: split L2,N2; L2: b; jmp END; N2: c; END:
  void emit_alt(const Node& n) {
    std::vector<size_t> jumps;
    for (size_t k = 0; k < n.kids.size(); k++) {
      if (k + 1 < n.kids.size()) {
        size_t split = emit(Regex::kSplit);
        prog_[split].a = here();
        emit_node(n.kids[k]);
        jumps.push_back(emit(Regex::kJmp));
        prog_[split].b = here();
      } else {
        emit_node(n.kids[k]);
      }
    }
    for (size_t j : jumps) prog_[j].a = here();
  }

  // Split whose preferred branch is the body (greedy) or the exit (lazy).
  size_t emit_choice() { return emit(Regex::kSplit); }
  void patch_choice(size_t split, bool greedy, uint32_t body, uint32_t exit) {
    prog_[split].a = greedy ? body : exit;
    prog_[split].b = greedy ? exit : body;
  }

  void emit_repeat(const Node& n) {
    const Node& body = n.kids[0];
    for (int k = 0; k < n.min; k++) emit_node(body);
    if (n.max < 0) {  // L: split BODY, EXIT; BODY: x; jmp L; EXIT:
      // A body that can match empty gets Oniguruma's empty check: BODY: savepos r; x;
      // emptycheck r (to EXIT if the iteration consumed nothing); jmp L. Without it such a loop
      // would spin forever; with it "(?:a|)+" on "aab" matches "aa", as in HF.
      const bool check = nullable(body);
      const uint32_t reg = check ? num_regs++ : 0;
      uint32_t loop = here();
      size_t split = emit_choice();
      uint32_t body_pc = here();
      if (check) emit(Regex::kSavePos, reg);
      emit_node(body);
      size_t empty_check = check ? emit(Regex::kEmptyCheck, reg) : 0;
      emit(Regex::kJmp, loop);
      patch_choice(split, n.greedy, body_pc, here());
      if (check) prog_[empty_check].b = here();
      return;
    }
    // Optional copies nested as (x(x(x)?)?)?: each split exits to the common end.
    std::vector<size_t> splits;
    for (int k = n.min; k < n.max; k++) {
      splits.push_back(emit_choice());
      uint32_t body_pc = here();
      prog_[splits.back()].a = body_pc;  // temporarily remember the body start
      emit_node(body);
    }
    for (size_t s : splits) patch_choice(s, n.greedy, prog_[s].a, here());
  }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Regex
// ---------------------------------------------------------------------------------------------
Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  Parser parser(pattern_, classes_);
  Node root = parser.parse();
  Compiler compiler(prog_, pattern_);
  compiler.compile_program(root);
  num_regs_ = compiler.num_regs;
  for (CharClass& cls : classes_) {
    // Cache the full answer (negation and case folding included) for ASCII.
    CharClass probe = cls;
    probe.ascii[0] = probe.ascii[1] = 0;
    for (uint32_t c = 0; c < 128; c++) {
      bool in = probe.matches_raw(c);
      if (!in && cls.icase) {
        uint32_t f = unicode::simple_fold(c);
        if (f != c && probe.matches_raw(f)) in = true;
        for (uint32_t other : fold_orbit(f))
          if (!in && other != c && probe.matches_raw(other)) in = true;
      }
      if (in != cls.negated) cls.ascii[c >> 6] |= 1ull << (c & 63);
    }
  }
  compute_first_set();
}

namespace {
// The instructions reachable from `start` without consuming a code point: the consuming ones
// go to `consuming`; returns whether the (sub-)program's kMatch is among them (it can match
// empty). Look-aheads are passed over (they consume nothing, and ignoring their condition only
// makes the set larger); an atomic group contributes its sub-program's first set, and what
// follows it when the group can match empty.
bool first_reach(const std::vector<Regex::Inst>& prog, uint32_t start, std::vector<uint32_t>& consuming) {
  std::vector<bool> seen(prog.size(), false);
  std::vector<uint32_t> todo = {start};
  bool match = false;
  while (!todo.empty()) {
    uint32_t pc = todo.back();
    todo.pop_back();
    if (seen[pc]) continue;
    seen[pc] = true;
    const Regex::Inst& in = prog[pc];
    switch (in.op) {
      case Regex::kChar: case Regex::kCharFold: case Regex::kClass: case Regex::kAny: consuming.push_back(pc); break;
      case Regex::kSplit: todo.push_back(in.b); todo.push_back(in.a); break;
      case Regex::kJmp: todo.push_back(in.a); break;
      case Regex::kEmptyCheck: todo.push_back(in.b); todo.push_back(pc + 1); break;
      case Regex::kSavePos: case Regex::kBol: case Regex::kEol: case Regex::kLook: todo.push_back(pc + 1); break;
      case Regex::kAtomic:
        if (first_reach(prog, in.a, consuming)) todo.push_back(pc + 1);
        break;
      case Regex::kMatch: match = true; break;
    }
  }
  return match;
}
}  // namespace

void Regex::compute_first_set() {
  std::vector<uint32_t> consuming;
  first_ = FirstSet();
  if (first_reach(prog_, 0, consuming)) return;  // can match empty: every position is a start
  std::sort(consuming.begin(), consuming.end());
  consuming.erase(std::unique(consuming.begin(), consuming.end()), consuming.end());
  for (uint32_t pc : consuming)
    if (prog_[pc].op == kAny) return;  // '.' starts almost anywhere: no point in filtering
  first_.insts = consuming;
  for (uint32_t c = 0; c < 128; c++)
    if (first_.any_accepts(c, classes_, prog_)) first_.ascii[c >> 6] |= 1ull << (c & 63);
  first_.active = true;
}

bool Regex::FirstSet::any_accepts(uint32_t cp, const std::vector<CharClass>& classes, const std::vector<Inst>& prog) const {
  for (uint32_t pc : insts) {
    const Inst& in = prog[pc];
    if (in.op == kChar ? in.a == cp : in.op == kCharFold ? unicode::simple_fold(cp) == in.a : classes[in.a].matches(cp))
      return true;
  }
  return false;
}

bool Regex::FirstSet::may_start(uint32_t cp, const std::vector<CharClass>& classes, const std::vector<Inst>& prog) const {
  if (cp < 128) return (ascii[cp >> 6] >> (cp & 63)) & 1;
  return any_accepts(cp, classes, prog);
}

// Runs the program from pc at text position sp; returns whether it reaches kMatch, with the
// match end in *end. `stack` holds (pc, sp) backtrack entries; entries above its size at entry
// are ours and are removed before returning, so nested runs (look-aheads) can share it.
bool Regex::run(uint32_t pc, const uint32_t* text, uint32_t n, uint32_t sp, uint32_t* end,
                std::vector<std::pair<uint32_t, uint32_t>>& stack, Budget& budget) const {
  const size_t base = stack.size();
  for (;;) {
    if (budget.steps_left-- == 0) over_budget(text, n, budget, true);
    const Inst& in = prog_[pc];
    bool ok = true;
    switch (in.op) {
      case kChar: ok = sp < n && text[sp] == in.a; if (ok) { sp++; pc++; } break;
      case kCharFold: ok = sp < n && unicode::simple_fold(text[sp]) == in.a; if (ok) { sp++; pc++; } break;
      case kClass: ok = sp < n && classes_[in.a].matches(text[sp]); if (ok) { sp++; pc++; } break;
      case kAny: ok = sp < n && text[sp] != '\n'; if (ok) { sp++; pc++; } break;
      case kSplit: stack.emplace_back(in.b, sp); pc = in.a; break;
      case kSavePos:  // the old value goes on the stack, to be restored when backtracking past here
        stack.emplace_back(kRestoreTag | in.a, budget.regs[in.a]);
        budget.regs[in.a] = sp;
        pc++;
        break;
      case kEmptyCheck: pc = (budget.regs[in.a] == sp) ? in.b : pc + 1; break;
      case kJmp: pc = in.a; break;
      // ^ after a '\n' but not at the very end of the text: Oniguruma's rule (HF: /\n^/ does
      // not match the final newline of "a\n").
      case kBol: ok = sp == 0 || (text[sp - 1] == '\n' && sp < n); pc++; break;
      case kEol: ok = sp == n || text[sp] == '\n'; pc++; break;
      case kLook: {
        uint32_t e;
        ok = run(in.a, text, n, sp, &e, stack, budget) != in.flag;
        pc++;
        break;
      }
      case kAtomic: {
        uint32_t e;
        ok = run(in.a, text, n, sp, &e, stack, budget);
        if (ok) { sp = e; pc++; }
        break;
      }
      case kMatch:
        *end = sp;
        stack.resize(base);
        return true;
    }
    if (!ok) {
      // Undo register saves above the entry we go back to, then resume at that entry.
      while (stack.size() > base && (stack.back().first & kRestoreTag)) {
        budget.regs[stack.back().first & ~kRestoreTag] = stack.back().second;
        stack.pop_back();
      }
      if (stack.size() == base) return false;
      if (++budget.retries > kRetryLimitInMatch) over_budget(text, n, budget, false);
      pc = stack.back().first;
      sp = stack.back().second;
      stack.pop_back();
    }
  }
}

Regex::Budget Regex::search_budget(size_t text_size) const {
  Budget b;
  b.steps_left = kSearchStepBase + kSearchStepsPerCodePoint * (uint64_t)text_size;
  b.regs.assign(num_regs_, 0);
  return b;
}

void Regex::over_budget(const uint32_t* text, uint32_t n, const Budget& budget, bool steps) const {
  // A short excerpt of the text where the attempt started, to find it in the input.
  std::string near;
  for (size_t k = budget.start; k < n && k < budget.start + 24; k++) append_utf8(near, text[k]);
  std::string escaped;
  for (char c : near) escaped += (c == '\n') ? std::string("\\n") : std::string(1, c);
  std::string what = steps ? "regex search step budget exceeded (" + std::to_string(kSearchStepBase) + " + " +
                                 std::to_string(kSearchStepsPerCodePoint) + " per code point of the text)"
                           : "backtracking limit exceeded (over " + std::to_string(kRetryLimitInMatch) +
                                 " backtracks in one match attempt, Oniguruma's retry-limit-in-match: HF tokenizers "
                                 "aborts on this input too)";
  throw std::runtime_error("regex /" + pattern_ + "/: " + what + " in the match attempt at code point " +
                           std::to_string(budget.start) + " of a text of " + std::to_string(n) +
                           " code points, starting \"" + escaped + "\"; the pattern backtracks exponentially or "
                           "quadratically on this text (overlapping repeats such as (a|aa)+ or (a+)+): rewrite it");
}

bool Regex::match_at(const std::vector<uint32_t>& text, uint32_t pos, uint32_t* end) const {
  std::vector<std::pair<uint32_t, uint32_t>> stack;
  Budget budget = search_budget(text.size());
  budget.start = pos;
  return run(0, text.data(), (uint32_t)text.size(), pos, end, stack, budget);
}

uint64_t Regex::find_all(const std::vector<uint32_t>& text, std::vector<std::pair<uint32_t, uint32_t>>& out) const {
  std::vector<std::pair<uint32_t, uint32_t>> stack;
  return find_all(text.data(), (uint32_t)text.size(), out, stack);
}

uint64_t Regex::find_all(const uint32_t* text, uint32_t n, std::vector<std::pair<uint32_t, uint32_t>>& out,
                         std::vector<std::pair<uint32_t, uint32_t>>& stack) const {
  out.clear();
  stack.clear();
  Budget budget = search_budget(n);
  const uint64_t steps_given = budget.steps_left;
  uint32_t search_from = 0;
  bool have_last = false;
  uint32_t last_match_end = 0;
  while (search_from <= n) {
    // Leftmost match at or after search_from. Positions whose code point cannot begin a match
    // (first_) are skipped without running the program: the attempt would fail there anyway.
    uint32_t s = search_from, e = 0;
    bool found = false;
    for (; s <= n; s++) {
      if (first_.active && (s == n || !first_.may_start(text[s], classes_, prog_))) continue;
      budget.start = s;
      budget.retries = 0;  // the retry limit is per match attempt, as in Oniguruma
      if (run(0, text, n, s, &e, stack, budget)) { found = true; break; }
    }
    if (!found) break;
    if (e == s && have_last && last_match_end == e) {
      search_from++;  // an empty match right after the previous match: step one code point
      continue;
    }
    out.emplace_back(s, e);
    search_from = e;
    have_last = true;
    last_match_end = e;
  }
  return steps_given - budget.steps_left;
}

}  // namespace ref
