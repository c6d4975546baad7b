// json.h — a small, strict JSON parser (RFC 8259) plus a string quoting helper.
//
// Used to read HuggingFace tokenizer.json files (several MB), safetensors headers and configs.
// Strict means: no comments, no trailing commas, no NaN/Infinity, no leading zeros, no control
// characters inside strings, no bytes after the top-level value. Errors name the line and column.
//
// Objects keep their keys in file order (vector of pairs): tokenizer.json vocabularies are
// objects with ~100k keys, and file order is part of what some callers want to check. Lookup by
// key is a linear scan (find/at); callers that look up many keys build their own map.
#pragma once
#include <cstdint>   // int64_t
#include <string>    // std::string
#include <utility>   // std::pair
#include <vector>    // std::vector

namespace json {

struct Value {
  enum Type { Null, Bool, Number, String, Array, Object } type = Null;
  bool b = false;
  double num = 0;
  std::string raw;   // the number's original text, for exact int64 parsing
  std::string str;   // UTF-8 (\uXXXX escapes decoded, surrogate pairs joined)
  std::vector<Value> arr;
  std::vector<std::pair<std::string, Value>> obj;  // keeps file order

  const Value* find(const std::string& key) const;  // nullptr if absent or not an object
  const Value& at(const std::string& key) const;    // throws "missing key 'k'"
  int64_t as_int() const;                            // throws if not an integral number in int64 range
  double as_num() const;                             // throws if not a number
  const std::string& as_str() const;                 // throws if not a string
  bool as_bool() const;                              // throws if not a bool
  bool is(Type t) const { return type == t; }
};

// Name of a type, for error messages ("expected string, got number").
const char* type_name(Value::Type t);

// Parses a whole document. Throws std::runtime_error("JSON error at line L col C: <what>").
Value parse(const std::string& text);

// A JSON string literal (with the quotes) for s. Valid UTF-8 passes through unchanged; control
// characters, '"' and '\\' are escaped; invalid UTF-8 bytes are written as \u00XX of the byte
// (lossy, but never produces an invalid document).
std::string quote(const std::string& s);

}  // namespace json
