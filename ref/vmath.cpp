// vmath.cpp — run-time selection of the vector code of ref/vmath.h, and vexp_n.
#include "ref/vmath.h"

#include <atomic>   // std::atomic
#include <cstdio>   // std::fprintf
#include <cstdlib>  // std::getenv, std::exit
#include <cstring>  // std::strcmp

namespace ref {
namespace {

bool detect_simd() {
#if LFMOE_X86_SIMD
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

// LFMOE_SIMD: unset or "1" = use the vector code where the CPU has it, "0" = portable code only.
// Read once, before main (a bad value stops the program here rather than inside a parallel loop).
bool simd_wanted_by_env() {
  const char* e = std::getenv("LFMOE_SIMD");
  if (!e || std::strcmp(e, "1") == 0) return true;
  if (std::strcmp(e, "0") == 0) return false;
  std::fprintf(stderr,
               "lfmoe: LFMOE_SIMD must be 0 (portable scalar code) or 1 (vector code where the CPU has it), got "
               "'%s'; unset it or set it to 0 or 1\n",
               e);
  std::exit(2);
}

const bool g_available = detect_simd();
std::atomic<bool> g_enabled{g_available && simd_wanted_by_env()};

#if LFMOE_X86_SIMD
LFMOE_TARGET_AVX2 void vexp_n_avx2(float* y, const float* x, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, vexp8(_mm256_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = vexp(x[i]);
}
#endif

}  // namespace

bool simd_available() { return g_available; }
bool simd_enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_simd_enabled(bool on) { g_enabled.store(on && g_available, std::memory_order_relaxed); }

void vexp_n(float* y, const float* x, size_t n) {
#if LFMOE_X86_SIMD
  if (simd_enabled()) return vexp_n_avx2(y, x, n);
#endif
  for (size_t i = 0; i < n; i++) y[i] = vexp(x[i]);
}

}  // namespace ref
