// fma_peak.cpp — this machine's fp32 peak, the yardstick of `make bench-cpu` (docs/SPEED.md).
//
//   build/fma_peak [--threads N] [--seconds S]
//
// Runs tiny loops of independent vector operations on registers only (no memory traffic), with
// enough independent accumulators to hide the latency of each operation, on the widest vector ISA
// this CPU has (AVX-512F, else AVX2+FMA, else SSE2), chosen at run time:
//   fma      one fused multiply-add per lane per instruction (2 flops): the hardware peak;
//   mul_add  separate multiplies and adds (1 flop each): the peak of code built without FMA
//            contraction, as lfmoe is (-ffp-contract=off keeps every product rounded as written).
// Each figure is the best of 5 runs of about S/5 seconds (default S = 1), on 1 thread and on N
// threads (default: OpenMP's thread count, i.e. all cores or OMP_NUM_THREADS), each thread running
// the same loop. Output, one line per thread count (machine-readable: name value pairs):
//   fma_peak: isa avx2 threads 1 fma_gflops 70.1 mul_add_gflops 70.0
// The operands are read through volatile variables at run time (1 and 0), so the compiler can fold
// nothing; the values stay fixed, so no denormals or overflow can slow the loop.
#include <immintrin.h>

#include <algorithm>  // std::max
#include <chrono>     // std::chrono::steady_clock
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi, std::atof
#include <cstring>    // std::strcmp
#include <fstream>    // std::ifstream
#include <string>     // std::string
#ifdef _OPENMP
#include <omp.h>
#endif

namespace {

volatile float g_one = 1.0f, g_zero = 0.0f;  // runtime operands: nothing can be constant-folded
volatile float g_sink = 0;                   // keeps the results alive

enum class Kind { fma, mul_add };

// Every kernel returns the flops it did: iters * (independent vector ops per iteration) * lanes * (flops per op).
#define REP12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define REP24(X) REP12(X) X(12) X(13) X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)

__attribute__((target("avx512f"))) double kernel_avx512(Kind k, long iters) {
  const __m512 a = _mm512_set1_ps(g_one), b = _mm512_set1_ps(g_zero);
#define DECL(i) __m512 r##i = _mm512_set1_ps(1.0f + 0.01f * i);
  REP24(DECL)
#undef DECL
  if (k == Kind::fma) {
    for (long it = 0; it < iters; ++it) {
#define OP(i) r##i = _mm512_fmadd_ps(r##i, a, b);
      REP24(OP)
#undef OP
    }
  } else {  // 12 multiply chains and 12 add chains, interleaved
    for (long it = 0; it < iters; ++it) {
#define OP(i) r##i = (i % 2) ? _mm512_add_ps(r##i, b) : _mm512_mul_ps(r##i, a);
      REP24(OP)
#undef OP
    }
  }
  __m512 s = _mm512_setzero_ps();
#define SUM(i) s = _mm512_add_ps(s, r##i);
  REP24(SUM)
#undef SUM
  float lanes[16];
  _mm512_storeu_ps(lanes, s);
  float t = 0;
  for (float x : lanes) t += x;
  g_sink = g_sink + t;
  return (double)iters * 24 * 16 * (k == Kind::fma ? 2 : 1);
}

__attribute__((target("avx2,fma"))) double kernel_avx2(Kind k, long iters) {
  const __m256 a = _mm256_set1_ps(g_one), b = _mm256_set1_ps(g_zero);
#define DECL(i) __m256 r##i = _mm256_set1_ps(1.0f + 0.01f * i);
  REP12(DECL)
#undef DECL
  if (k == Kind::fma) {
    for (long it = 0; it < iters; ++it) {
#define OP(i) r##i = _mm256_fmadd_ps(r##i, a, b);
      REP12(OP)
#undef OP
    }
  } else {
    for (long it = 0; it < iters; ++it) {
#define OP(i) r##i = (i % 2) ? _mm256_add_ps(r##i, b) : _mm256_mul_ps(r##i, a);
      REP12(OP)
#undef OP
    }
  }
  __m256 s = _mm256_setzero_ps();
#define SUM(i) s = _mm256_add_ps(s, r##i);
  REP12(SUM)
#undef SUM
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  float t = 0;
  for (float x : lanes) t += x;
  g_sink = g_sink + t;
  return (double)iters * 12 * 8 * (k == Kind::fma ? 2 : 1);
}

// SSE2 (every x86-64): no FMA instruction, so "fma" is measured as mul_add there too.
double kernel_sse2(Kind, long iters) {
  const __m128 a = _mm_set1_ps(g_one), b = _mm_set1_ps(g_zero);
#define DECL(i) __m128 r##i = _mm_set1_ps(1.0f + 0.01f * i);
  REP12(DECL)
#undef DECL
  for (long it = 0; it < iters; ++it) {
#define OP(i) r##i = (i % 2) ? _mm_add_ps(r##i, b) : _mm_mul_ps(r##i, a);
    REP12(OP)
#undef OP
  }
  __m128 s = _mm_setzero_ps();
#define SUM(i) s = _mm_add_ps(s, r##i);
  REP12(SUM)
#undef SUM
  float lanes[4];
  _mm_storeu_ps(lanes, s);
  g_sink = g_sink + lanes[0] + lanes[1] + lanes[2] + lanes[3];
  return (double)iters * 12 * 4;
}

enum class Isa { avx512, avx2, sse2 };
const char* isa_name(Isa i) { return i == Isa::avx512 ? "avx512" : i == Isa::avx2 ? "avx2" : "sse2"; }

Isa detect() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
  return Isa::sse2;
}

double kernel(Isa isa, Kind k, long iters) {
  switch (isa) {
    case Isa::avx512: return kernel_avx512(k, iters);
    case Isa::avx2: return kernel_avx2(k, iters);
    default: return kernel_sse2(k, iters);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// GFLOP/s of `threads` threads each running the kernel for `iters` iterations (wall time of the slowest).
double run(Isa isa, Kind k, long iters, int threads) {
  double flops = 0, t0 = 0, t1 = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flops)
  {
#pragma omp barrier
#pragma omp master
    t0 = now_s();
    flops += kernel(isa, k, iters);
#pragma omp barrier
#pragma omp master
    t1 = now_s();
  }
#else
  (void)threads;
  t0 = now_s();
  flops = kernel(isa, k, iters);
  t1 = now_s();
#endif
  return flops / (t1 - t0) * 1e-9;
}

double best_of(Isa isa, Kind k, int threads, double seconds) {
  long iters = 1 << 16;  // calibrate: about seconds/5 per run
  for (;;) {
    const double t0 = now_s();
    kernel(isa, k, iters);
    const double dt = now_s() - t0;
    if (dt > 0.02) {
      iters = std::max(1L, (long)(iters * (seconds / 5) / dt));
      break;
    }
    iters *= 4;
  }
  double best = 0;
  for (int r = 0; r < 5; ++r) best = std::max(best, run(isa, k, iters, threads));
  return best;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      return c == std::string::npos ? line : line.substr(c + 2);
    }
  return "unknown";
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
#ifdef _OPENMP
  threads = omp_get_max_threads();
#endif
  double seconds = 1.0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--threads" || a == "--seconds") && i + 1 < argc) {
      if (a == "--threads") threads = std::atoi(argv[++i]);
      else seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: fma_peak [--threads N] [--seconds S]\n"
                           "  measures fp32 peak GFLOP/s (fma and separate mul+add) on 1 and N threads\n");
      return a == "--help" || a == "-h" ? 0 : 2;
    }
  }
  if (threads < 1 || !(seconds > 0)) {
    std::fprintf(stderr, "fma_peak: --threads must be >= 1 and --seconds > 0\n");
    return 2;
  }
  const Isa isa = detect();
  std::printf("# fma_peak: cpu \"%s\", widest fp32 vector ISA: %s\n", cpu_model().c_str(), isa_name(isa));
  for (int t : {1, threads}) {
    const double fma = best_of(isa, Kind::fma, t, seconds), ma = best_of(isa, Kind::mul_add, t, seconds);
    std::printf("fma_peak: isa %s threads %d fma_gflops %.1f mul_add_gflops %.1f\n", isa_name(isa), t, fma, ma);
    if (threads == 1) break;
  }
  return 0;
}
