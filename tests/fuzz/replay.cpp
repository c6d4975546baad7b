// replay.cpp — main() for a fuzz harness built without libFuzzer (see fuzz.h): runs
// LLVMFuzzerTestOneInput once on each file given, or on every file of each directory given (in
// name order, so a run is reproducible). Prints the count; a violated property aborts (exit != 0)
// and names the file first, so the failing input is known.
#include <algorithm>   // std::sort
#include <cstdint>     // uint8_t
#include <cstdio>      // std::printf
#include <dirent.h>    // opendir, readdir
#include <fstream>     // std::ifstream
#include <iterator>    // std::istreambuf_iterator
#include <string>      // std::string
#include <sys/stat.h>  // stat
#include <vector>      // std::vector

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

static bool is_dir(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

int main(int argc, char** argv) {
  std::vector<std::string> files;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    if (!is_dir(a)) { files.push_back(a); continue; }
    DIR* d = opendir(a.c_str());
    if (!d) { std::fprintf(stderr, "replay: cannot open directory %s\n", a.c_str()); return 2; }
    std::vector<std::string> names;
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n != "." && n != ".." && !is_dir(a + "/" + n)) names.push_back(a + "/" + n);
    }
    closedir(d);
    std::sort(names.begin(), names.end());
    files.insert(files.end(), names.begin(), names.end());
  }
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) { std::fprintf(stderr, "replay: cannot open %s\n", f.c_str()); return 2; }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::fprintf(stderr, "replay: %s\n", f.c_str());  // the last line names the culprit of a crash
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  std::printf("replayed %zu inputs\n", files.size());
  return 0;
}
