// file.cpp — reading a whole file (see file.h).
#include "ref/io/file.h"

#include <cerrno>     // errno
#include <cstdio>     // FILE, fopen, fread, ferror, fclose
#include <cstring>    // strerror
#include <stdexcept>  // runtime_error

namespace ref {

std::string read_file(const std::string& path, const std::string& fix) {
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) throw std::runtime_error(path + ": cannot open: " + strerror(errno) + "; " + fix);
  std::string data;
  char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) data.append(buf, n);
  bool err = ferror(f);
  fclose(f);
  if (err) throw std::runtime_error(path + ": read error; check the file and the disk");
  return data;
}

}  // namespace ref
