// footprint.cpp — see footprint.h.
#include "ref/footprint.h"

#include <algorithm>  // std::max
#include <cstdio>     // std::snprintf, std::fopen
#include <cstring>    // std::strncmp

#include "ref/tensors.h"  // make_param_table

namespace ref {

Footprint estimate_footprint(const Config& c, bool saving, bool resuming, uint64_t resident) {
  const uint64_t f4 = 4;  // bytes of a float, an int, the element of every arena
  const uint64_t P = make_param_table(c).total;
  const uint64_t N = uint64_t(c.B) * c.T, C = c.C, V = c.V, E = c.E, F = c.F, K = c.K;
  const uint64_t A = N * K, moe = c.n_moe(), dense = c.L - moe;
  Footprint fp;
  fp.params = P * f4;
  fp.optimizer = 3 * P * f4;
  // Per layer (model_impl.h allocate): 8 (N,C) buffers, 2 (N) norms, the attention probabilities.
  uint64_t act = c.L * (8 * N * C + 2 * N + uint64_t(c.B) * c.H * c.T * c.T);
  act += dense * 3 * N * c.Fd;                               // dense h1, h3, act
  uint64_t hidden = dense ? N * c.Fd : 0;
  if (moe) {
    uint64_t per = 3 * uint64_t(c.S) * N * F                 // shared experts h1, h3, act
                   + 2 * N * E                               // router logits, scores
                   + 3 * A * F + A * C + A                   // expert h1, h3, act; y; gates
                   + (N / c.T) * E                           // aux f
                   + (N + 1) + 3 * A + (E + 1);              // ints: tok_off, a_tok, a_exp, perm, exp_off
    act += moe * per;
    hidden = std::max(hidden, N * F);
    act += 2 * N * E + A * C + A + A * (2 * F + C);          // backward scratch of the MoE layers
    act += moe * E * (1 + 2);                                // bias (float) and counts (int64)
  }
  act += 2 * N * C + N + N * V + N + N * C + 3 * N;          // final norm, logits, losses, tmp, token ints
  act += 6 * N * C + 3 * std::max<uint64_t>(1, hidden) + N * V;  // backward scratch
  fp.activations = act * f4;
  // Host copies (ref/trainer.cpp, model_impl.h get/set): init holds the initial values and a copy
  // for the device (2P); a save holds params and m while get() makes v (its T copy and the float
  // result: 4P; the writer only points at them); a load holds the file's bytes and the tensors read
  // from them, then the three arenas and a copy (7P).
  uint64_t copies = 2 * P;
  if (saving) copies = std::max<uint64_t>(copies, 4 * P);
  if (resuming) copies = std::max<uint64_t>(copies, 7 * P);
  fp.transient = copies * f4;
  fp.resident = resident ? resident : 64ull << 20;  // unknown: an allowance for code and libraries
  fp.runtime = 48ull << 20;  // measured: a tiny run peaks ~45 MiB above its VmRSS before allocating
  return fp;
}

std::string human_bytes(uint64_t n) {
  char b[32];
  const double x = (double)n;
  if (n >= (1ull << 30)) std::snprintf(b, sizeof b, "%.2f GiB", x / (1ull << 30));
  else if (n >= (1ull << 20)) std::snprintf(b, sizeof b, "%.1f MiB", x / (1ull << 20));
  else if (n >= (1ull << 10)) std::snprintf(b, sizeof b, "%.1f KiB", x / (1ull << 10));
  else std::snprintf(b, sizeof b, "%llu B", (unsigned long long)n);
  return b;
}

std::string describe(const Footprint& f) {
  return "about " + human_bytes(f.total()) + " (parameters " + human_bytes(f.params) + ", gradients+AdamW " +
         human_bytes(f.optimizer) + ", activations " + human_bytes(f.activations) + ", copies for init/checkpoints " +
         human_bytes(f.transient) + ", process now " + human_bytes(f.resident) + ", runtime " + human_bytes(f.runtime) + ")";
}

// The "Key:   1234 kB" line of a /proc file, in bytes; 0 when absent.
static uint64_t proc_kb(const char* file, const char* key) {
  std::FILE* f = std::fopen(file, "r");
  if (!f) return 0;
  char line[256];
  unsigned long long kb = 0;
  const size_t n = std::strlen(key);
  while (std::fgets(line, sizeof line, f))
    if (std::strncmp(line, key, n) == 0 && std::sscanf(line + n, "%llu", &kb) == 1) break;
  std::fclose(f);
  return (uint64_t)kb * 1024;
}
uint64_t mem_available_bytes() { return proc_kb("/proc/meminfo", "MemAvailable:"); }
uint64_t resident_bytes() { return proc_kb("/proc/self/status", "VmRSS:"); }

}  // namespace ref
