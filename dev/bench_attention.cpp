// bench_attention.cpp — times ref::attention_forward and ref::attention_backward (fp32) at a few
// shapes. Build: `make bench_attention` (-> build/bench_attention); run with OMP_NUM_THREADS=1 or 2:
//   OMP_NUM_THREADS=1 build/bench_attention [reps]
// For each shape it prints the median and the best of `reps` timed calls (after one warm-up call)
// and a checksum of the results, so two builds can be compared for speed and for equal output.
// The machine the numbers come from matters: run both builds back to back, several times.
#include <algorithm>  // std::sort
#include <chrono>     // std::chrono::steady_clock
#include <cstdint>    // uint64_t, uint32_t
#include <cstdio>     // std::printf
#include <cstdlib>    // std::atoi
#include <cstring>    // std::memcpy
#include <vector>     // std::vector
#ifdef _OPENMP
#include <omp.h>  // omp_get_max_threads
#endif

#include "ref/ops.h"

namespace {

std::vector<float> random_floats(size_t n, uint64_t seed, float lo, float hi) {
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = lo + (hi - lo) * (float)((s >> 40) * (1.0 / 16777216.0));
  }
  return v;
}

double median_of(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// FNV-1a over the bytes of a float array: equal for bit-identical results.
uint64_t checksum(const std::vector<float>& v, uint64_t h) {
  for (float x : v) {
    uint32_t b;
    std::memcpy(&b, &x, 4);
    for (int i = 0; i < 4; i++) h = (h ^ ((b >> (8 * i)) & 0xff)) * 0x100000001b3ull;
  }
  return h;
}

void bench(int B, int T, int C, int H, int reps) {
  const size_t n = (size_t)B * T * C;
  // q, k of size ~1 as after RMSNorm and a projection; scores then spread over a few units
  const std::vector<float> q = random_floats(n, 1, -1.5f, 1.5f), k = random_floats(n, 2, -1.5f, 1.5f),
                           v = random_floats(n, 3, -1, 1), dout = random_floats(n, 4, -1, 1);
  std::vector<float> out(n), att((size_t)B * H * T * T), dq(n), dk(n), dv(n);
  std::vector<double> tf, tb;
  for (int r = 0; r <= reps; r++) {
    std::fill(dq.begin(), dq.end(), 0.f);
    std::fill(dk.begin(), dk.end(), 0.f);
    std::fill(dv.begin(), dv.end(), 0.f);
    const auto t0 = std::chrono::steady_clock::now();
    ref::attention_forward(out.data(), att.data(), q.data(), k.data(), v.data(), B, T, C, H);
    const auto t1 = std::chrono::steady_clock::now();
    ref::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(), v.data(), att.data(),
                            B, T, C, H);
    const auto t2 = std::chrono::steady_clock::now();
    if (r == 0) continue;  // warm-up
    tf.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    tb.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
  }
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto* t : {&out, &att, &dq, &dk, &dv}) h = checksum(*t, h);
  std::printf("B %d T %3d C %3d H %d | forward median %7.3f ms best %7.3f | backward median %7.3f ms best %7.3f"
              " | checksum %016llx\n",
              B, T, C, H, median_of(tf), *std::min_element(tf.begin(), tf.end()), median_of(tb),
              *std::min_element(tb.begin(), tb.end()), (unsigned long long)h);
}

}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
#ifdef _OPENMP
  std::printf("threads %d, reps %d\n", omp_get_max_threads(), reps);
#else
  std::printf("threads 1 (no OpenMP), reps %d\n", reps);
#endif
  bench(8, 128, 128, 4, reps);  // the cpu preset's attention
  bench(4, 256, 256, 4, reps);
  return 0;
}
