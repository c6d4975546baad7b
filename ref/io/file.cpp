// file.cpp — reading a whole file (see file.h).
#include "ref/io/file.h"

#include <fcntl.h>    // open, O_EXCL
#include <unistd.h>   // getpid, write, fsync, close

#include <cerrno>     // errno
#include <cstdio>     // FILE, fopen, fread, ferror, fclose, rename, remove
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

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0 && errno == EEXIST) {  // left by a dead process whose pid was ours: ours to replace
    remove(tmp.c_str());
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  }
  if (fd < 0)
    throw std::runtime_error(tmp + ": cannot create: " + strerror(errno) + "; check that the directory exists and is writable");
  const char* p = (const char*)data;
  size_t left = size;
  bool ok = true;
  while (ok && left > 0) {
    const ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) {
      p += n;
      left -= (size_t)n;
    }
  }
  ok = ok && fsync(fd) == 0;
  int err = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    remove(tmp.c_str());
    throw std::runtime_error(tmp + ": write failed: " + strerror(err) + "; check free disk space");
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    remove(tmp.c_str());
    throw std::runtime_error(path + ": cannot rename the temporary file into place: " + strerror(err) +
                             "; check permissions (and that the path is not a directory)");
  }
}

}  // namespace ref
