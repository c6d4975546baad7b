// bench_gemm.cpp — GFLOP/s of ref::gemm on the shapes of a training step of the cpu preset
// (docs/SPEED.md), each the best of several repeats (the minimum is the figure least disturbed by
// other work on the machine). Run with OMP_NUM_THREADS=1 or 2:
//   build/bench_gemm [--reps R] [--only WORD] [--kernel avx512|avx2+fma|portable]
// (--kernel caps the micro-kernel, ref/gemm.h set_gemm_kernel_cap; the bits never depend on it.)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include <time.h>  // clock_gettime
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ref/gemm.h"

namespace {

// With one thread, the calling thread's CPU time: on a machine that other work shares it leaves out
// the time the thread waited for a core (not the cache misses others cause). With more threads,
// wall time.
bool g_cpu_clock = false;
double now_s() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Shape {
  const char* name;
  int M, N, K;
  bool ta, tb, acc;  // A stored transposed, B stored transposed, accumulate
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 20;
  const char* only = nullptr;  // --only WORD: the shapes whose name contains WORD
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!std::strcmp(argv[i], "--kernel") && i + 1 < argc) {
      if (!ref::set_gemm_kernel_cap(argv[++i])) {
        std::fprintf(stderr, "bench_gemm: --kernel must be avx512, avx2+fma or portable, got '%s'\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: bench_gemm [--reps R] [--only WORD] [--kernel avx512|avx2+fma|portable]\n");
      return 2;
    }
  }
  const int N = 1024, C = 128, V = 4096, F = 64, Fd = 352, ne = 128;
  const Shape shapes[] = {
      {"proj fwd  x w^T", N, C, C, false, true, false},
      {"proj dX   dy w", N, C, C, false, false, true},
      {"proj dW   dy^T x", C, C, N, true, false, true},
      {"ffn1 fwd", N, Fd, C, false, true, false},
      {"ffn2 fwd", N, C, Fd, false, true, false},
      {"ffn1 dW", Fd, C, N, true, false, true},
      {"head fwd", N, V, C, false, true, false},
      {"head dX", N, C, V, false, false, true},
      {"head dW", V, C, N, true, false, true},
      {"expert w1 fwd", ne, F, C, false, true, false},
      {"expert w2 fwd", ne, C, F, false, true, false},
      {"expert w1 dX", ne, C, F, false, false, true},
      {"expert w1 dW", F, C, ne, true, false, true},
      {"expert w2 dW", C, F, ne, true, false, true},
  };
#ifdef _OPENMP
  g_cpu_clock = omp_get_max_threads() == 1;
#else
  g_cpu_clock = true;
#endif
  std::mt19937 g(1);
  std::normal_distribution<float> d(0.f, 1.f);
  std::printf("# gemm kernel %s, best of %d, %s time\n", ref::gemm_kernel_name(), reps, g_cpu_clock ? "thread CPU" : "wall");
  for (const Shape& s : shapes) {
    if (only && !std::strstr(s.name, only)) continue;
    std::vector<float> a((size_t)s.M * s.K), b((size_t)s.K * s.N), c((size_t)s.M * s.N, 0.f);
    for (auto& x : a) x = d(g);
    for (auto& x : b) x = d(g);
    const ref::MatView<float> A = s.ta ? ref::transposed(a.data(), s.M) : ref::row_major(a.data(), s.K);
    const ref::MatView<float> B = s.tb ? ref::transposed(b.data(), s.K) : ref::row_major(b.data(), s.N);
    // enough calls per repeat for ~2 ms
    const double flop = 2.0 * s.M * s.N * s.K;
    const int calls = flop > 4e6 ? 1 : (int)(4e6 / flop) + 1;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
      const double t0 = now_s();
      for (int i = 0; i < calls; i++) ref::gemm(c.data(), s.N, A, B, s.M, s.N, s.K, s.acc);
      best = std::min(best, (now_s() - t0) / calls);
    }
    std::printf("%-18s M %5d N %5d K %5d  %8.1f us  %6.1f GFLOP/s\n", s.name, s.M, s.N, s.K, best * 1e6,
                flop / best * 1e-9);
  }
}
