// footprint.h — how much memory a run needs, computed from its config before anything is allocated,
// so that a run too big for the machine is refused at once, naming the size, instead of starting
// and growing until the kernel kills it (calloc is lazy: pages are only taken when first touched).
#pragma once
#include <cstdint>  // uint64_t
#include <string>   // std::string

#include "ref/config.h"  // Config

namespace ref {

struct Footprint {
  uint64_t params = 0;       // the parameter arena
  uint64_t optimizer = 0;    // gradients and the two AdamW moments (3 arenas)
  uint64_t activations = 0;  // saved activations, backward scratch, router buffers, biases, counts
  uint64_t transient = 0;    // host copies of the arenas while initialising, saving or loading (the largest)
  uint64_t resident = 0;     // what the process holds already: code, libraries, the loaded data (VmRSS)
  uint64_t runtime = 0;      // what it adds later besides the above: OpenMP threads and their stacks, the
                             // GEMM packing and expert gather buffers, allocator slack (a fixed allowance)
  uint64_t total() const { return params + optimizer + activations + transient + resident + runtime; }
};

// Mirrors the model's allocations (ref/model_impl.h, allocate) and the copies that init, save_checkpoint
// and load_checkpoint make, with 4-byte elements. `saving` / `resuming`: whether checkpoints are written /
// read (their copies are the transient peak). `resident`: what the process holds now (resident_bytes()),
// taken as it is, since it depends on the build (a CUDA build maps cuBLAS, ~200 MiB) and the data.
// The config must have passed validate(). tests/check_footprint.sh compares the total with the
// measured peak RSS of runs.
Footprint estimate_footprint(const Config& c, bool saving, bool resuming, uint64_t resident);

// "1.23 GiB", "456.0 MiB", "12.0 KiB", "17 B".
std::string human_bytes(uint64_t n);

// One line: "about 1.2 GiB (parameters ..., gradients+AdamW ..., activations ..., ...)".
std::string describe(const Footprint& f);

// MemAvailable of /proc/meminfo in bytes (what can be allocated without swapping out other
// processes), or 0 when it cannot be read (then no limit is applied).
uint64_t mem_available_bytes();

// VmRSS of /proc/self/status in bytes (this process's resident memory now), or 0 when unknown.
uint64_t resident_bytes();

}  // namespace ref
