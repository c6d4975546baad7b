// test_vmath.cpp — ref::vexp (ref/vmath.h): its error against double std::exp over the whole float
// range where exp is neither 0 nor inf, its special values, and bitwise equality of the scalar
// function and the 8-wide vector code.
//
// The oracle is std::exp in DOUBLE (glibc: < 1 double ulp, i.e. ~2^-29 of a float ulp), so the
// error of a float result is measured against the exact value to far better than the 1-ulp budget.
// Every float of [-104, 89] is visited with a stride of 97 bit patterns (23 million points, both
// signs, all exponents, scattered mantissas), plus every float in windows around 0, the overflow
// threshold and the underflow thresholds. LFMOE_VMATH_STRIDE=1 makes the sweep exhaustive (all
// 2.2e9 floats, a few minutes); the documented bound (ref/vmath.h) was measured that way.
#include <doctest/doctest.h>

#include <cfloat>   // FLT_MAX, FLT_MIN
#include <cmath>    // std::exp, std::ldexp, std::ilogb, std::fabs, std::isnan, std::isinf
#include <cstdint>  // uint32_t
#include <cstdlib>  // std::getenv, std::atoi
#include <cstring>  // std::memcmp
#include <limits>   // std::numeric_limits
#include <vector>   // std::vector

#include "ref/vmath.h"

namespace {

using ref::vmath::bits_of;
using ref::vmath::float_of;

// |y - exp(x)| in units of the float spacing at exp(x): 2^(e-23) for a normal result, 2^-149
// for a subnormal one. inf counts as 2^128 (the next step after FLT_MAX) and an exact value
// beyond 2^128 as 2^128, so a result past FLT_MAX must be inf, and within 1 ulp of it FLT_MAX or inf.
double ulp_error(float y, double exact) {
  const double top = std::ldexp(1.0, 128);
  const double yd = std::isinf(y) ? top : (double)y, e = exact < top ? exact : top;
  const double ulp = e < (double)FLT_MIN ? std::ldexp(1.0, -149) : std::ldexp(1.0, std::ilogb(e) - 23);
  return std::fabs(yd - e) / ulp;
}

struct Sweep {
  double worst_normal = 0, worst_subnormal = 0;
  float worst_normal_x = 0, worst_subnormal_x = 0;
  long normal = 0, correctly_rounded = 0;
  void add(float x) {
    const double exact = std::exp((double)x);
    const double e = ulp_error(ref::vexp(x), exact);
    if (exact >= (double)FLT_MIN) {  // normal, or past FLT_MAX (then inf is exact)
      normal++;
      if (ref::vexp(x) == (float)exact) correctly_rounded++;
      if (e > worst_normal) worst_normal = e, worst_normal_x = x;
    } else if (e > worst_subnormal) {
      worst_subnormal = e, worst_subnormal_x = x;
    }
  }
  // every float of sign s with |x| in [lo, hi], stepping `stride` bit patterns
  void range(float lo, float hi, bool negative, uint32_t stride) {
    const uint32_t sign = negative ? 0x80000000u : 0u;
    for (uint32_t b = bits_of(lo); b <= bits_of(hi); b += stride) add(float_of(b | sign));
  }
};

uint32_t sweep_stride() {
  const char* s = std::getenv("LFMOE_VMATH_STRIDE");
  return s && std::atoi(s) > 0 ? (uint32_t)std::atoi(s) : 97;
}

// Inputs for the bitwise comparison: the strided sweep plus values that exercise every branch.
std::vector<float> comparison_inputs() {
  std::vector<float> x;
  for (uint32_t b = 0; b <= bits_of(110.0f); b += 997) {
    x.push_back(float_of(b));
    x.push_back(float_of(b | 0x80000000u));
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.0f, -0.0f, inf, -inf, FLT_MAX, -FLT_MAX, FLT_MIN, -FLT_MIN, 88.72283f, 88.72284f, -87.33655f,
                  -103.97208f, -103.97209f, -104.0f, 89.0f, 1e-30f, -1e-30f, 0.34657359f, -0.34657359f})
    x.push_back(v);
  x.push_back(std::numeric_limits<float>::quiet_NaN());
  x.push_back(float_of(0x7fc12345u));  // NaNs with payloads, signaling and negative
  x.push_back(float_of(0x7f812345u));
  x.push_back(float_of(0xffc00001u));
  while (x.size() % 8 != 3) x.push_back(0.5f);  // a tail that is not a multiple of 8
  return x;
}

#if LFMOE_X86_SIMD
// vexp8 called from a function compiled for AVX2 (the test may be built without -march=native)
LFMOE_TARGET_AVX2 void vexp8_of(float* y, const float* x) { _mm256_storeu_ps(y, ref::vexp8(_mm256_loadu_ps(x))); }
#endif

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("vmath: vexp special values") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(ref::vexp(0.0f) == 1.0f);
  CHECK(ref::vexp(-0.0f) == 1.0f);
  CHECK(ref::vexp(1e-30f) == 1.0f);
  CHECK(ref::vexp(inf) == inf);
  CHECK(ref::vexp(-inf) == 0.0f);
  CHECK(std::isnan(ref::vexp(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(ref::vexp(float_of(0xffc00001u))));
  CHECK(bits_of(ref::vexp(float_of(0x7fc12345u))) == 0x7fc12345u);  // the NaN itself comes back
  CHECK(bits_of(ref::vexp(float_of(0x7f812345u))) == 0x7fc12345u);  // a signaling NaN comes back quiet
  // overflow: exp(88.7228394) = 3.40282e38 < FLT_MAX is the last finite one; beyond it inf
  CHECK(ref::vexp(88.72283f) < inf);
  CHECK(ref::vexp(88.7229f) == inf);
  CHECK(ref::vexp(100.0f) == inf);
  CHECK(ref::vexp(FLT_MAX) == inf);
  // underflow: normal down to x = ln(FLT_MIN) = -87.336544, then subnormal, then 0 below ~-103.97
  CHECK(ref::vexp(-87.3f) >= FLT_MIN);
  const float sub = ref::vexp(-100.0f);
  CHECK(sub > 0.0f);
  CHECK(sub < FLT_MIN);
  CHECK(ref::vexp(-103.9f) == std::ldexp(1.0f, -149));  // exp(-103.9) = 0.54 * 2^-149
  CHECK(ref::vexp(-104.0f) == 0.0f);
  CHECK(ref::vexp(-1000.0f) == 0.0f);
  CHECK(ref::vexp(-FLT_MAX) == 0.0f);
  CHECK(ref::vexp(1.0f) == doctest::Approx(2.718281828).epsilon(1e-7));
}

TEST_CASE("vmath: vexp is within 1 ulp of exp(x) for every normal result (inf past FLT_MAX), 1 step for subnormal ones") {
  const uint32_t stride = sweep_stride();
  Sweep s;
  s.range(0.0f, 89.0f, false, stride);
  s.range(0.0f, 104.0f, true, stride);
  // every float near 0 (n = 0, +-1: the reduction's boundary at |x| = ln2/2 = 0.3466) ...
  s.range(0.30f, 0.40f, false, 1);
  s.range(0.30f, 0.40f, true, 1);
  s.range(0.0f, 1e-3f, false, 4099);
  s.range(0.0f, 1e-3f, true, 4099);
  // ... and around the overflow threshold (88.7228) and the underflow ones (-87.3365, -103.972)
  s.range(88.70f, 89.0f, false, 1);
  s.range(87.30f, 87.40f, true, 1);
  s.range(103.90f, 104.0f, true, 1);
  MESSAGE("stride " << stride << ": worst " << s.worst_normal << " ulp at x = " << s.worst_normal_x << " over "
                    << s.normal << " normal results (" << 100.0 * s.correctly_rounded / s.normal
                    << "% correctly rounded); subnormal worst " << s.worst_subnormal << " steps at x = "
                    << s.worst_subnormal_x);
  CHECK(s.worst_normal < 1.0);
  CHECK(s.worst_subnormal <= 1.0);
  CHECK(s.correctly_rounded > 0.95 * s.normal);  // an honest 1-ulp exp, not one that is 1 ulp off everywhere
}

TEST_CASE("vmath: vector and scalar vexp give the same bits, also through vexp_n") {
  const std::vector<float> x = comparison_inputs();
  std::vector<float> scalar(x.size()), simd(x.size()), portable(x.size());
  for (size_t i = 0; i < x.size(); i++) scalar[i] = ref::vexp(x[i]);
  const bool was = ref::simd_enabled();
  ref::set_simd_enabled(true);
  ref::vexp_n(simd.data(), x.data(), x.size());
  ref::set_simd_enabled(false);
  CHECK_FALSE(ref::simd_enabled());
  ref::vexp_n(portable.data(), x.data(), x.size());
  ref::set_simd_enabled(was);
  CHECK(bitwise_equal(scalar, portable));
  CHECK(bitwise_equal(scalar, simd));
#if LFMOE_X86_SIMD
  if (!ref::simd_available()) {
    MESSAGE("this CPU lacks AVX2 or FMA: the vector code was not run");
  } else {
    CHECK(ref::simd_enabled() == was);
    // the intrinsic itself, lane by lane (vexp_n's loop and tail are covered above)
    std::vector<float> lanes(x.size());
    for (size_t i = 0; i + 8 <= x.size(); i += 8) vexp8_of(&lanes[i], &x[i]);
    const size_t full = x.size() / 8 * 8;
    CHECK(std::memcmp(lanes.data(), scalar.data(), full * sizeof(float)) == 0);
  }
#else
  MESSAGE("not an x86 GCC/Clang build: only the scalar code exists");
#endif
}

TEST_CASE("vmath: vexp_n works in place") {
  std::vector<float> x = {0.5f, -1.0f, 2.0f, 3.0f, -4.0f, 5.0f, 6.0f, 7.0f, 8.0f, -9.0f, 10.0f};
  std::vector<float> want(x.size());
  for (size_t i = 0; i < x.size(); i++) want[i] = ref::vexp(x[i]);
  ref::vexp_n(x.data(), x.data(), x.size());
  CHECK(bitwise_equal(x, want));
}
