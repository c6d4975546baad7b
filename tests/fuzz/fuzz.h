// fuzz.h — what the fuzz harnesses in tests/fuzz/ share (docs/RELIABILITY.md, "Fuzzing").
//
// Each fuzz_<name>.cpp defines LLVMFuzzerTestOneInput, the libFuzzer entry point. The same file is
// built two ways:
//   - by clang with -fsanitize=fuzzer,address,undefined (tests/fuzz/run.sh, `make fuzz`): libFuzzer
//     supplies main() and mutates inputs;
//   - by the normal compiler with replay.cpp as main() (tests/check_fuzz_replay.sh, in make test):
//     it runs the function once on every file of tests/fuzz/corpus/<name>/ and
//     tests/fuzz/regressions/<name>/, so a crash found by fuzzing stays a test without clang.
//
// The contract every harness checks: bad input ends in a std::runtime_error (the project's "clear
// message" error, which the tools print and exit 1 on), never in a crash, a sanitizer report, a
// hang, an out-of-memory, or another exception type (std::invalid_argument from a bare std::stoi,
// std::bad_alloc from a size taken from the input, ...). Good input must satisfy the harness's own
// properties (round trips, bounds). A violation calls fuzz_fail(), which aborts: libFuzzer saves the
// input as a crash, and the replay exits non-zero.
#pragma once
#include <cstdint>    // uint8_t
#include <cstdio>     // std::fprintf, std::FILE
#include <cstdlib>    // std::abort, std::getenv
#include <exception>  // std::exception
#include <new>        // std::bad_alloc
#include <stdexcept>  // std::runtime_error
#include <string>     // std::string
#include <typeinfo>   // typeid
#include <sys/mman.h> // memfd_create
#include <unistd.h>   // getpid, symlink, ftruncate, pwrite, close

#define FUZZ_ENTRY extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)

[[noreturn]] inline void fuzz_fail(const std::string& what) {
  std::fprintf(stderr, "fuzz property violated: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}
#define FUZZ_CHECK(cond, what) \
  do { if (!(cond)) fuzz_fail(std::string(what) + " (" #cond ", " __FILE__ ":" + std::to_string(__LINE__) + ")"); } while (0)

// Runs f(); a std::runtime_error is the expected way to refuse input (returns false), any other
// exception is a finding. Returns true when f() returned normally.
template <typename F> bool fuzz_try(F&& f) {
  try {
    f();
    return true;
  } catch (const std::runtime_error&) {
    return false;
  } catch (const std::exception& e) {
    fuzz_fail(std::string("unexpected exception ") + typeid(e).name() + ": " + e.what());
  }
}

// The input as a file, for the readers that only take a path (safetensors, checkpoints, shards).
// The bytes live in a memfd (memory, no disk: creating a file on the test machine's overlay file
// system costs ~130 us, a memfd rewrite ~3 us), reached through a symlink $TMPDIR/lfmoe_fuzz_<pid>
// <suffix> -> /proc/self/fd/<fd>: the suffix matters to load_tokens, which treats *.bin as a shard.
// One per harness process, rewritten on every input; the symlink is removed at exit.
class FuzzFile {
 public:
  explicit FuzzFile(const char* suffix) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/lfmoe_fuzz_" + std::to_string(getpid()) + suffix;
    fd_ = memfd_create("lfmoe_fuzz", 0);
    if (fd_ < 0) fuzz_fail("memfd_create failed");
    std::remove(path_.c_str());  // a stale link of an earlier process with the same pid
    if (symlink(("/proc/self/fd/" + std::to_string(fd_)).c_str(), path_.c_str()) != 0)
      fuzz_fail("cannot create the symlink " + path_ + " (set TMPDIR to a writable directory)");
  }
  ~FuzzFile() { std::remove(path_.c_str()); close(fd_); }
  const std::string& write(const uint8_t* data, size_t size) {
    if (ftruncate(fd_, 0) != 0 || (size && pwrite(fd_, data, size, 0) != (ssize_t)size)) fuzz_fail("memfd write failed");
    return path_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The repository root, where the harnesses find fixtures (tests/fixtures/...): $LFMOE_ROOT, or
// the current directory (run.sh and the replay run from the root).
inline std::string fuzz_root_path(const std::string& rel) {
  const char* r = std::getenv("LFMOE_ROOT");
  return (r && *r ? std::string(r) + "/" : std::string()) + rel;
}
