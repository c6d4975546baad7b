// cli.h — strict parsing of the tools' numeric command-line values.
//
// strtoull and atoi accept too much: "-3" becomes 2^64-3, "12abc" or "" become 12 or 0, a value
// above the target type is cut to its low bits (--vocab-size 99999999999 became 1215752191), "0x10"
// and " 7" pass. Every tool reads its numbers through these functions instead: the whole text must
// be the number, in the range the flag allows, or the tool stops with a message that names the
// flag, the text given and the range expected.
#pragma once
#include <cmath>      // std::isfinite
#include <cstdint>    // uint64_t
#include <cstdio>     // std::snprintf
#include <cstdlib>    // std::strtod
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string

namespace cli {

// A decimal integer in [lo, hi]: digits only (no sign, space, '+', hex or exponent).
inline uint64_t parse_uint(const std::string& flag, const std::string& s, uint64_t lo, uint64_t hi) {
  const std::string range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos)
    throw std::runtime_error(flag + " '" + s + "': expected " + range);
  uint64_t v = 0;
  for (char c : s) {
    const uint64_t d = (uint64_t)(c - '0');
    if (v > (UINT64_MAX - d) / 10) throw std::runtime_error(flag + " '" + s + "': too large, expected " + range);
    v = v * 10 + d;
  }
  if (v < lo || v > hi) throw std::runtime_error(flag + " '" + s + "': out of range, expected " + range);
  return v;
}

// A decimal number in [lo, hi]: [-]digits[.digits][e[+-]digits] or [-].digits..., finite (no inf,
// nan, hex, leading space or trailing text).
inline double parse_number(const std::string& flag, const std::string& s, double lo, double hi) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "a number in [%g, %g]", lo, hi);
  const std::runtime_error bad(flag + " '" + s + "': expected " + buf);
  size_t i = 0, digits = 0;
  if (i < s.size() && s[i] == '-') i++;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) digits++;
  if (i < s.size() && s[i] == '.')
    for (i++; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) digits++;
  if (digits == 0) throw bad;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) i++;
    size_t exp_digits = 0;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; i++) exp_digits++;
    if (exp_digits == 0) throw bad;
  }
  if (i != s.size()) throw bad;
  const double v = std::strtod(s.c_str(), nullptr);  // the C locale: '.' is the decimal point
  if (!std::isfinite(v) || v < lo || v > hi) throw bad;
  return v;
}

}  // namespace cli
