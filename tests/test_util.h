// test_util.h — small helpers shared by the test files (CPU and CUDA).
#pragma once
#include <exception>  // std::exception
#include <string>     // std::string

// The message of what `f` throws ("" when it does not throw).
template <typename F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
