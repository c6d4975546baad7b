// vmath.h — a float exp that vectorises: one scalar function and one 8-wide AVX2+FMA function that
// return BIT-IDENTICAL results, because they run the same sequence of IEEE operations (every fused
// multiply-add of the vector code is a std::fma in the scalar code, which is exact-then-rounded on
// any machine, with or without an FMA unit).
//
//   float  ref::vexp(float x)              scalar, inline, everywhere
//   __m256 ref::vexp8(__m256 x)            8 lanes, inline, x86 with GCC/Clang (LFMOE_X86_SIMD);
//                                          callable from functions compiled for AVX2+FMA (with
//                                          -march=native, or marked LFMOE_TARGET_AVX2)
//   void   ref::vexp_n(y, x, n)            y[i] = vexp(x[i]), vectorised when simd_enabled()
//
// Selection is at RUN time (simd_enabled()): the AVX2 code is compiled into every x86 build, also
// the portable one (NATIVE=0), and used when the CPU has AVX2 and FMA; otherwise the scalar code
// runs. Both give the same bits, so the choice only changes speed. The environment variable
// LFMOE_SIMD=0 (read once at start-up) or set_simd_enabled(false) forces the scalar code, e.g. to
// compare whole runs or in tests (tests/test_vmath.cpp, tests/test_ops.cpp).
//
// Method: clamp x to [-104, 89]; n = nearest integer to x*log2(e) (ties to even; rounding by adding
// 1.5*2^23 in one FMA); r = x - n*ln2 in two FMA steps (ln2 = LN2_HI + LN2_LO; the first step is
// exact since n*LN2_HI and x share the bits that cancel), |r| <= 0.3466; exp(r) = the degree-7
// Taylor polynomial (truncation error < 4e-9 relative, i.e. < 0.05 ulp) by Horner's rule in FMAs;
// the result is p * 2^n1 * 2^n2 with n1 = floor(n/2), n2 = n - n1, so that both factors are
// normal floats: p * 2^n1 is exact and the last product rounds once, into the subnormals or to
// inf/0 when the true result is there. NaN in -> x + x (the same quiet NaN); +inf -> inf; -inf -> 0.
//
// Error bound, against double std::exp: < 1 ulp for every float x whose exp(x) is a normal float
// (max 0.939 ulp, 99.5% of results correctly rounded; measured exhaustively over all 2.24e9 floats
// of [-104, 89], LFMOE_VMATH_STRIDE=1 in tests/test_vmath.cpp), so every result is one of the two
// floats around the exact value; subnormal results are within 0.85 of a subnormal step (2^-149);
// beyond FLT_MAX the result is inf (FLT_MAX or inf within 1 ulp of it); below ~-103.97 it is 0.
// The unit test checks the same bound on a 1-in-97 sweep plus exhaustive windows (~2 s).
// (glibc's std::exp(float) is correctly rounded, ~0.5 ulp, but a function call per element.)
#pragma once
#include <cmath>    // std::fma
#include <cstddef>  // size_t
#include <cstdint>  // uint32_t, int32_t
#include <cstring>  // std::memcpy

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LFMOE_X86_SIMD 1
#include <immintrin.h>
// Compiles one function for AVX2 + FMA whatever the build's -march (run it only when simd_enabled()).
#define LFMOE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define LFMOE_X86_SIMD 0
#endif

namespace ref {

// True when this build has the AVX2 code (x86, GCC/Clang) and this CPU runs it (AVX2 and FMA).
bool simd_available();
// True when the vector code is used: available, not switched off by LFMOE_SIMD=0 or set_simd_enabled.
bool simd_enabled();
// Switches the vector code off (false) or back on (true: only where simd_available()). For tests
// and comparisons; not thread-safe against running ops, call it between them.
void set_simd_enabled(bool on);

namespace vmath {
// Constants as exact float literals (hex), so both paths use the same values.
constexpr float EXP_LO = -104.0f;                // exp(-104) < 2^-150: rounds to 0
constexpr float EXP_HI = 89.0f;                  // exp(89) > FLT_MAX: rounds to inf
constexpr float LOG2E = 0x1.715476p+0f;          // log2(e) rounded to float
constexpr float ROUND = 0x1.8p+23f;              // 1.5*2^23: adding it rounds to an integer
constexpr float LN2_HI = 0x1.62e43p-1f;          // ln 2 rounded to float
constexpr float LN2_LO = -0x1.05c61p-29f;        // ln 2 - LN2_HI rounded to float
constexpr float C2 = 0x1p-1f, C3 = 0x1.555556p-3f, C4 = 0x1.555556p-5f, C5 = 0x1.111112p-7f,
                C6 = 0x1.6c16c2p-10f, C7 = 0x1.a01a02p-13f;  // 1/k! rounded to float

inline uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}
inline float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}
}  // namespace vmath

// exp(x) in float, < 1 ulp (see the top of this file); bit-identical to each lane of vexp8.
inline float vexp(float x) {
  using namespace vmath;
  float xc = x < EXP_LO ? EXP_LO : x;  // a NaN stays NaN (as _mm256_max_ps(lo, x) keeps it)
  xc = xc > EXP_HI ? EXP_HI : xc;
  const float t = std::fma(xc, LOG2E, ROUND);  // ROUND + n
  const float n = t - ROUND;                   // exact
  float r = std::fma(-n, LN2_HI, xc);          // exact
  r = std::fma(-n, LN2_LO, r);
  float p = C7;
  p = std::fma(p, r, C6);
  p = std::fma(p, r, C5);
  p = std::fma(p, r, C4);
  p = std::fma(p, r, C3);
  p = std::fma(p, r, C2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  // n as an integer: the low bits of t (unsigned arithmetic: defined even for a NaN's bits)
  const int32_t ni = (int32_t)(bits_of(t) - bits_of(ROUND));
  const int32_t n1 = ni >> 1, n2 = ni - n1;  // n1 = floor(n/2): both in [-75, 64]
  const float s1 = float_of((uint32_t)(n1 + 127) << 23), s2 = float_of((uint32_t)(n2 + 127) << 23);
  const float y = (p * s1) * s2;
  return x != x ? x + x : y;
}

#if LFMOE_X86_SIMD
// 8 lanes of vexp, the same operations in the same order.
LFMOE_TARGET_AVX2 inline __m256 vexp8(__m256 x) {
  using namespace vmath;
  // max/min return their SECOND operand when one is NaN: a NaN x passes through like in vexp
  const __m256 xc = _mm256_min_ps(_mm256_set1_ps(EXP_HI), _mm256_max_ps(_mm256_set1_ps(EXP_LO), x));
  const __m256 round = _mm256_set1_ps(ROUND);
  const __m256 t = _mm256_fmadd_ps(xc, _mm256_set1_ps(LOG2E), round);
  const __m256 n = _mm256_sub_ps(t, round);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HI), xc);  // -(n*hi) + xc = fma(-n, hi, xc)
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LO), r);
  __m256 p = _mm256_set1_ps(C7);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(C2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  const __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(round));
  const __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_blendv_ps(y, _mm256_add_ps(x, x), _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}
#endif

// y[i] = vexp(x[i]) for i < n (y may equal x); 8 at a time when simd_enabled(), same bits.
void vexp_n(float* y, const float* x, size_t n);

}  // namespace ref
