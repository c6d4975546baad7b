// test_util.h — small helpers shared by the test files (CPU and CUDA).
#pragma once
#include <doctest/doctest.h>  // FAIL_CHECK

#include <cstring>    // std::memcmp
#include <exception>  // std::exception
#include <random>     // std::mt19937
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <typeinfo>   // typeid
#include <vector>

// The message of the std::runtime_error that `f` throws ("" when it does not throw). The code under
// test reports every bad input and state as a runtime_error, so any other exception (std::bad_alloc
// or std::out_of_range from a damaged file, say) fails the test by name; its message is still
// returned, so that the caller's own checks run and print it too.
template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    // std::string: doctest would print a const char* as its address
    FAIL_CHECK("unexpected exception type " << std::string(typeid(e).name()) << " (not std::runtime_error): "
                                            << std::string(e.what()));
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// n normal floats of standard deviation `scale`, the same for the same seed.
inline std::vector<float> randn(size_t n, unsigned seed, float scale) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

// Bit-for-bit equality (so -0 differs from +0 and a NaN equals the same NaN).
inline bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
