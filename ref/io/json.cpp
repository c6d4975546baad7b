// json.cpp — strict recursive-descent JSON parser; see json.h.
#include "ref/io/json.h"

#include <cerrno>     // errno, ERANGE
#include <cmath>      // std::floor, std::isfinite
#include <cstdio>     // std::snprintf
#include <cstdlib>    // std::strtod
#include <stdexcept>  // std::runtime_error

namespace json {

const char* type_name(Value::Type t) {
  switch (t) {
    case Value::Null: return "null";
    case Value::Bool: return "bool";
    case Value::Number: return "number";
    case Value::String: return "string";
    case Value::Array: return "array";
    case Value::Object: return "object";
  }
  return "?";
}

static std::runtime_error wrong_type(const char* want, Value::Type got) {
  return std::runtime_error(std::string("JSON: expected ") + want + ", got " + type_name(got));
}

const Value* Value::find(const std::string& key) const {
  if (type != Object) return nullptr;
  for (const auto& kv : obj)
    if (kv.first == key) return &kv.second;
  return nullptr;
}

const Value& Value::at(const std::string& key) const {
  if (type != Object) throw wrong_type("object", type);
  const Value* v = find(key);
  if (!v) throw std::runtime_error("JSON: missing key '" + key + "'");
  return *v;
}

// Exact integer parse of the number's text, so 64-bit ids and sizes do not go through a double.
int64_t Value::as_int() const {
  if (type != Number) throw wrong_type("integer", type);
  bool plain = raw.find_first_of(".eE") == std::string::npos;
  if (!plain) {
    // "3.0" or "1e3" are integral values written in float form; accept them when exact.
    if (num != std::floor(num) || std::fabs(num) > 9007199254740992.0)
      throw std::runtime_error("JSON: expected an integer, got " + raw);
    return (int64_t)num;
  }
  bool neg = raw[0] == '-';
  uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  uint64_t v = 0;
  for (size_t i = neg ? 1 : 0; i < raw.size(); i++) {
    uint64_t d = (uint64_t)(raw[i] - '0');
    if (v > (limit - d) / 10) throw std::runtime_error("JSON: integer out of int64 range: " + raw);
    v = v * 10 + d;
  }
  return neg ? (int64_t)(0 - v) : (int64_t)v;
}

double Value::as_num() const {
  if (type != Number) throw wrong_type("number", type);
  return num;
}

const std::string& Value::as_str() const {
  if (type != String) throw wrong_type("string", type);
  return str;
}

bool Value::as_bool() const {
  if (type != Bool) throw wrong_type("bool", type);
  return b;
}

namespace {

// Nesting deeper than this is refused rather than risking a stack overflow on hostile input.
constexpr int kMaxDepth = 512;

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text), p_(0) {}

  Value parse_document() {
    skip_ws();
    Value v = parse_value(0);
    skip_ws();
    if (p_ != s_.size()) fail("unexpected data after the top-level value");
    return v;
  }

 private:
  const std::string& s_;
  size_t p_;

  // Line/column are computed only on error, so the hot path does not track them.
  [[noreturn]] void fail(const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t i = 0; i < p_ && i < s_.size(); i++) {
      if (s_[i] == '\n') { line++; col = 1; }
      else if (((unsigned char)s_[i] & 0xC0) != 0x80) col++;  // count code points, not bytes
    }
    throw std::runtime_error("JSON error at line " + std::to_string(line) + " col " +
                             std::to_string(col) + ": " + what);
  }

  bool at_end() const { return p_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[p_]; }

  void skip_ws() {
    while (!at_end()) {
      char c = s_[p_];
      if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p_++;
      else break;
    }
  }

  void expect(char c, const char* where) {
    if (peek() != c) {
      if (at_end()) fail(std::string("unexpected end of input, expected '") + c + "' " + where);
      fail(std::string("expected '") + c + "' " + where + ", got " + describe_here());
    }
    p_++;
  }

  std::string describe_here() const {
    if (at_end()) return "end of input";
    unsigned char c = (unsigned char)s_[p_];
    char buf[32];
    if (c >= 0x20 && c < 0x7f) std::snprintf(buf, sizeof buf, "'%c'", c);
    else std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
    return buf;
  }

  Value parse_value(int depth) {
    if (depth > kMaxDepth) fail("nesting deeper than 512 levels");
    if (at_end()) fail("unexpected end of input, expected a value");
    char c = s_[p_];
    switch (c) {
      case '{': return parse_object(depth);
      case '[': return parse_array(depth);
      case '"': { Value v; v.type = Value::String; parse_string(v.str); return v; }
      case 't': return parse_literal("true", Value::Bool, true);
      case 'f': return parse_literal("false", Value::Bool, false);
      case 'n': return parse_literal("null", Value::Null, false);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail("expected a value, got " + describe_here());
    }
  }

  Value parse_literal(const char* word, Value::Type t, bool b) {
    size_t n = std::char_traits<char>::length(word);
    if (s_.compare(p_, n, word) != 0) fail("invalid literal (expected '" + std::string(word) + "')");
    p_ += n;
    Value v;
    v.type = t;
    v.b = b;
    return v;
  }

  Value parse_object(int depth) {
    Value v;
    v.type = Value::Object;
    p_++;  // '{'
    skip_ws();
    if (peek() == '}') { p_++; return v; }
    for (;;) {
      skip_ws();
      if (peek() != '"') fail("expected a string key in object, got " + describe_here());
      std::string key;
      parse_string(key);
      skip_ws();
      expect(':', "after object key");
      skip_ws();
      v.obj.emplace_back(std::move(key), parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { p_++; continue; }
      expect('}', "or ',' in object");
      return v;
    }
  }

  Value parse_array(int depth) {
    Value v;
    v.type = Value::Array;
    p_++;  // '['
    skip_ws();
    if (peek() == ']') { p_++; return v; }
    for (;;) {
      skip_ws();
      v.arr.push_back(parse_value(depth + 1));
      skip_ws();
      if (peek() == ',') { p_++; continue; }
      expect(']', "or ',' in array");
      return v;
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  // Grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
  Value parse_number() {
    size_t start = p_;
    if (peek() == '-') p_++;
    if (peek() == '0') {
      p_++;
      if (is_digit(peek())) fail("leading zeros are not allowed in numbers");
    } else if (is_digit(peek())) {
      while (is_digit(peek())) p_++;
    } else {
      fail("expected a digit in number, got " + describe_here());
    }
    if (peek() == '.') {
      p_++;
      if (!is_digit(peek())) fail("expected a digit after '.' in number");
      while (is_digit(peek())) p_++;
    }
    if (peek() == 'e' || peek() == 'E') {
      p_++;
      if (peek() == '+' || peek() == '-') p_++;
      if (!is_digit(peek())) fail("expected a digit in number exponent");
      while (is_digit(peek())) p_++;
    }
    Value v;
    v.type = Value::Number;
    v.raw.assign(s_, start, p_ - start);
    errno = 0;
    v.num = std::strtod(v.raw.c_str(), nullptr);  // C locale: '.' is the decimal point
    if (!std::isfinite(v.num)) { p_ = start; fail("number out of double range: " + v.raw); }
    return v;
  }

  int hex4() {
    int v = 0;
    for (int i = 0; i < 4; i++) {
      char c = peek();
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else fail("expected 4 hex digits after \\u");
      v = v * 16 + d;
      p_++;
    }
    return v;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += (char)cp;
    } else if (cp < 0x800) {
      out += (char)(0xC0 | (cp >> 6));
      out += (char)(0x80 | (cp & 0x3F));
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

  // \uXXXX, joining a high surrogate with the following \uXXXX low surrogate. A lone surrogate
  // cannot be represented in UTF-8, so it is an error (HF's serde_json rejects it too).
  void parse_unicode_escape(std::string& out) {
    uint32_t cp = (uint32_t)hex4();
    if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (peek() != '\\' || p_ + 1 >= s_.size() || s_[p_ + 1] != 'u')
        fail("high surrogate \\u escape not followed by a low surrogate");
      p_ += 2;
      uint32_t lo = (uint32_t)hex4();
      if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate \\u escape not followed by a low surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
  }

  // Length of the valid UTF-8 sequence starting at p_, or 0 if invalid (overlongs, surrogates
  // and code points above U+10FFFF are invalid).
  size_t utf8_len_here() const {
    const unsigned char* u = (const unsigned char*)s_.data() + p_;
    size_t left = s_.size() - p_;
    unsigned char c = u[0];
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) { n = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { n = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { n = 4; cp = c & 0x07; }
    else return 0;
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
      if ((u[i] & 0xC0) != 0x80) return 0;
      cp = (cp << 6) | (u[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return n;
  }

  void parse_string(std::string& out) {
    p_++;  // opening quote
    // Fast path: copy runs of plain bytes at once.
    for (;;) {
      size_t run = p_;
      while (run < s_.size()) {
        unsigned char c = (unsigned char)s_[run];
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        run++;
      }
      out.append(s_, p_, run - p_);
      p_ = run;
      if (at_end()) fail("unterminated string");
      unsigned char c = (unsigned char)s_[p_];
      if (c == '"') { p_++; return; }
      if (c < 0x20) fail("control character in string (must be escaped)");
      if (c >= 0x80) {
        size_t n = utf8_len_here();
        if (n == 0) fail("invalid UTF-8 in string");
        out.append(s_, p_, n);
        p_ += n;
        continue;
      }
      // backslash escape
      p_++;
      if (at_end()) fail("unterminated string");
      char e = s_[p_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': parse_unicode_escape(out); break;
        default: p_--; fail("invalid escape '\\" + std::string(1, e) + "' in string");
      }
    }
  }
};

}  // namespace

Value parse(const std::string& text) {
  Parser p(text);
  return p.parse_document();
}

std::string quote(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  const unsigned char* u = (const unsigned char*)s.data();
  size_t n = s.size();
  char buf[8];
  for (size_t i = 0; i < n;) {
    unsigned char c = u[i];
    if (c == '"') { out += "\\\""; i++; continue; }
    if (c == '\\') { out += "\\\\"; i++; continue; }
    if (c < 0x20) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default: std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf;
      }
      i++;
      continue;
    }
    if (c < 0x80) { out += (char)c; i++; continue; }
    // Copy a valid UTF-8 sequence whole; escape a stray byte as \u00XX.
    size_t len = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool ok = len > 0 && i + len <= n;
    uint32_t cp = ok ? (c & (0x7F >> len)) : 0;
    for (size_t k = 1; ok && k < len; k++) {
      if ((u[i + k] & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (u[i + k] & 0x3F);
    }
    if (ok && ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
               (cp >= 0xD800 && cp <= 0xDFFF)))
      ok = false;
    if (ok) {
      out.append(s, i, len);
      i += len;
    } else {
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      i++;
    }
  }
  out += '"';
  return out;
}

}  // namespace json
