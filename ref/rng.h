// rng.h — a small deterministic random generator (xoshiro256**, seeded by splitmix64).
// Its whole state is four integers, so checkpoints can store it and resume bit for bit.
#pragma once
#include <array>    // std::array
#include <cmath>    // std::sqrt, std::log, std::cos
#include <cstdint>  // uint64_t
#include <sstream>  // std::istringstream
#include <stdexcept>  // std::runtime_error
#include <string>   // std::string, std::to_string

namespace ref {

struct Rng {
  std::array<uint64_t, 4> s{};

  explicit Rng(uint64_t seed = 0) {
    for (auto& w : s) {  // splitmix64 expands the seed into a well-mixed state
      seed += 0x9E3779B97F4A7C15ull;
      uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      w = z ^ (z >> 31);
    }
  }
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  uint64_t next() {
    const uint64_t out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
    return out;
  }
  double uniform() { return double(next() >> 11) * (1.0 / 9007199254740992.0); }  // [0, 1)
  uint64_t below(uint64_t n) { return n ? next() % n : 0; }  // modulo bias < n / 2^64: negligible here
  double normal() {  // Box-Muller; one draw per call keeps the state simple to save
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  std::string save() const {
    return std::to_string(s[0]) + " " + std::to_string(s[1]) + " " + std::to_string(s[2]) + " " + std::to_string(s[3]);
  }
  void load(const std::string& text) {
    std::istringstream in(text);
    for (auto& w : s)
      if (!(in >> w)) throw std::runtime_error("malformed RNG state '" + text + "' (expected 4 integers)");
  }
};

}  // namespace ref
