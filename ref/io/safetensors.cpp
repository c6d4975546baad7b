// safetensors.cpp — see safetensors.h.
#include "ref/io/safetensors.h"

#include <algorithm>  // std::sort
#include <cerrno>     // errno
#include <csignal>    // kill (is a temp file's writer alive?)
#include <cstdint>    // SIZE_MAX
#include <cstdio>     // std::FILE, std::fdopen, std::fwrite
#include <cstring>    // std::strerror, std::memcpy
#include <dirent.h>   // opendir (stale temp files)
#include <fcntl.h>    // open, O_EXCL
#include <fstream>    // std::ifstream
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <sys/stat.h> // lstat, stat
#include <unistd.h>   // fsync, fileno, getpid

#include "ref/io/json.h"  // json::parse, json::quote

namespace ref {

namespace {
size_t dtype_size(const std::string& d) {
  if (d == "F32" || d == "I32") return 4;
  if (d == "F64" || d == "I64") return 8;
  return 0;
}
[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

// What a file system object is, in words, for the messages.
std::string kind_of(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

std::string hex8(uint32_t x) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", x);
  return b;
}

// The text the header checksum covers (safetensors.h, docs/FORMAT.md): metadata but the header
// checksum itself, then the tensor table, each in ascending byte order, fields NUL-terminated.
struct Entry {
  const std::string* name;
  const StTensor* t;
};
std::string canonical_text(const std::map<std::string, std::string>& meta, std::vector<Entry> entries) {
  std::string out;
  for (auto& [k, v] : meta) {  // std::map: ascending byte order of the key
    if (k == kCrcHeaderKey) continue;
    out += k;
    out += '\0';
    out += v;
    out += '\0';
  }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return *a.name < *b.name; });
  for (const Entry& e : entries) {
    out += *e.name + '\0' + e.t->dtype + '\0';
    for (size_t i = 0; i < e.t->shape.size(); ++i) out += (i ? "," : "") + std::to_string(e.t->shape[i]);
    out += '\0' + std::to_string(e.t->begin) + '\0' + std::to_string(e.t->end) + '\0';
  }
  return out;
}
}  // namespace

const char* const kCrcPrefix = "crc32:";
const char* const kCrcHeaderKey = "crc32:__header__";

// Slicing-by-8 (8 table lookups per 8 bytes): about 1-2 GB/s, so that verifying a checkpoint costs
// far less than reading it. Table 0 is the classic byte-at-a-time table.
uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  static const auto tables = [] {
    std::vector<uint32_t> t(8 * 256);
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
      t[i] = c;
    }
    for (int s = 1; s < 8; ++s)
      for (uint32_t i = 0; i < 256; ++i) t[s * 256 + i] = (t[(s - 1) * 256 + i] >> 8) ^ t[t[(s - 1) * 256 + i] & 0xFF];
    return t;
  }();
  const uint32_t* T = tables.data();
  const uint8_t* p = static_cast<const uint8_t*>(data);
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    const uint32_t lo = crc ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    crc = T[7 * 256 + (lo & 0xFF)] ^ T[6 * 256 + ((lo >> 8) & 0xFF)] ^ T[5 * 256 + ((lo >> 16) & 0xFF)] ^
          T[4 * 256 + (lo >> 24)] ^ T[3 * 256 + p[4]] ^ T[2 * 256 + p[5]] ^ T[1 * 256 + p[6]] ^ T[p[7]];
  }
  for (; n > 0; --n, ++p) crc = (crc >> 8) ^ T[(crc ^ *p) & 0xFF];
  return ~crc;
}

void check_regular_target(const std::string& path, const std::string& flag) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return;  // nothing there yet (a missing directory fails at create)
  if (S_ISREG(st.st_mode)) return;
  std::string what = kind_of(st.st_mode);
  if (S_ISLNK(st.st_mode)) {
    char target[4096];
    const ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    if (n > 0) what += " to " + std::string(target, (size_t)n);
    throw std::runtime_error(flag + " " + path + ": is " + what +
                             "; lfmoe does not replace a link by a file nor write through it: give the target path "
                             "or a new file name");
  }
  throw std::runtime_error(flag + " " + path + ": is " + what +
                           ", not a regular file; lfmoe writes only regular files: give a file name");
}

size_t StTensor::numel() const {
  size_t n = 1;
  for (int64_t d : shape) n *= (size_t)d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// ---------------------------------------------------------------- writing
void SafeTensorsWriter::add_raw(const std::string& name, const char* dtype, const std::vector<int64_t>& shape,
                                const void* p, size_t elem) {
  StTensor t;
  t.dtype = dtype;
  t.shape = shape;
  t.bytes.resize(t.numel() * elem);
  if (!t.bytes.empty()) std::memcpy(t.bytes.data(), p, t.bytes.size());  // x86/ARM hosts are little-endian
  tensors_.push_back(Item{name, std::move(t)});
}
void SafeTensorsWriter::add_view(const std::string& name, const std::vector<int64_t>& shape, const float* data) {
  Item it{name, StTensor{}};
  it.t.dtype = "F32";
  it.t.shape = shape;
  it.view = data;
  it.view_bytes = it.t.numel() * 4;
  tensors_.push_back(std::move(it));
}
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const float* d) { add_raw(n, "F32", s, d, 4); }
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const int32_t* d) { add_raw(n, "I32", s, d, 4); }
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const int64_t* d) { add_raw(n, "I64", s, d, 8); }

// Removes PATH.tmp.<pid> files whose process is gone (killed mid-write); a live writer's is kept.
static void remove_stale_temps(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  const pid_t self = getpid();
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() <= prefix.size() || n.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = n.substr(prefix.size());
    if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    const pid_t pid = (pid_t)std::stol(digits);
    if (pid == self || (kill(pid, 0) == 0 || errno == EPERM)) continue;  // alive (or not ours to judge)
    std::remove((dir + "/" + n).c_str());
  }
  closedir(d);
}

void SafeTensorsWriter::write(const std::string& path) const {
  check_regular_target(path, "cannot write");
  // Offsets first: the header checksum covers them.
  std::map<std::string, std::string> meta;
  for (auto& [k, v] : meta_)
    if (k.rfind(kCrcPrefix, 0) != 0) meta[k] = v;  // the crc32: keys are this writer's own
  std::vector<StTensor> table;  // dtype, shape and offsets, without the bytes
  std::vector<Entry> entries;
  table.reserve(tensors_.size());
  uint64_t offset = 0;
  for (const Item& it : tensors_) {
    StTensor e;
    e.dtype = it.t.dtype;
    e.shape = it.t.shape;
    e.begin = offset;
    e.end = offset += it.size();
    table.push_back(std::move(e));
    meta[kCrcPrefix + it.name] = hex8(crc32(it.data(), it.size()));
  }
  for (size_t i = 0; i < tensors_.size(); ++i) entries.push_back({&tensors_[i].name, &table[i]});
  const std::string text = canonical_text(meta, entries);
  meta[kCrcHeaderKey] = hex8(crc32(text.data(), text.size()));

  std::ostringstream h;
  h << "{\"__metadata__\": {";
  bool first = true;
  for (auto& [k, v] : meta) {
    h << (first ? "" : ", ") << json::quote(k) << ": " << json::quote(v);
    first = false;
  }
  h << "}";
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const StTensor& t = table[i];
    h << ", " << json::quote(tensors_[i].name) << ": {\"dtype\": \"" << t.dtype << "\", \"shape\": [";
    for (size_t d = 0; d < t.shape.size(); ++d) h << (d ? ", " : "") << t.shape[d];
    h << "], \"data_offsets\": [" << t.begin << ", " << t.end << "]}";
  }
  h << "}";
  std::string header = h.str();
  header.append((8 - header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned, as the spec suggests

  // A name of this process alone, created exclusively: never another run's file, never through a
  // link planted under that name. (A stale file of a dead process with a recycled pid is replaced.)
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0 && errno == EEXIST) {
    std::remove(tmp.c_str());
    fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
  }
  if (fd < 0) fail(tmp, std::string("cannot create: ") + std::strerror(errno) + " (check the directory exists and is writable)");
  std::FILE* f = fdopen(fd, "wb");
  if (!f) {
    close(fd);
    std::remove(tmp.c_str());
    fail(tmp, std::string("cannot open: ") + std::strerror(errno));
  }
  const uint64_t n = header.size();
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(header.data(), 1, n, f) == n;
  for (const Item& it : tensors_)  // an empty tensor's data() may be null: fwrite(nullptr) is UB
    ok = ok && (it.size() == 0 || std::fwrite(it.data(), 1, it.size(), f) == it.size());
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(tmp, std::string("write failed: ") + std::strerror(err) + " (disk full?); the previous " + path +
                  " is untouched");
  }
  // Checked again just before the rename: the path may have become a link or a device meanwhile.
  try {
    check_regular_target(path, "cannot write");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    fail(path, std::string("rename failed: ") + std::strerror(e));
  }
  remove_stale_temps(path);
}

// ---------------------------------------------------------------- reading
SafeTensorsFile SafeTensorsFile::read(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) fail(path, std::string("cannot open: ") + std::strerror(errno) + " (does the file exist?)");
  if (!S_ISREG(st.st_mode)) fail(path, "is " + kind_of(st.st_mode) + ", not a safetensors file: give the file's path");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (check its permissions)");
  in.seekg(0, std::ios::end);
  const uint64_t size = (uint64_t)in.tellg();
  in.seekg(0);
  if (size < 8) fail(path, "too short to be a safetensors file (" + std::to_string(size) + " bytes)");
  uint64_t n = 0;
  in.read(reinterpret_cast<char*>(&n), 8);
  if (n > size - 8)
    fail(path, "header length " + std::to_string(n) + " exceeds the file size " + std::to_string(size) +
                   " (truncated or not a safetensors file)");
  std::string header(n, '\0');
  in.read(&header[0], (std::streamsize)n);
  json::Value doc;
  try {
    doc = json::parse(header);
  } catch (const std::exception& e) {
    fail(path, std::string("header is not valid JSON (") + e.what() + "); the file is corrupt");
  }
  if (!doc.is(json::Value::Object)) fail(path, "header is not a JSON object");
  const uint64_t data_size = size - 8 - n;
  std::vector<uint8_t> data(data_size);
  in.read(reinterpret_cast<char*>(data.data()), (std::streamsize)data_size);
  if (!in) fail(path, "read error");

  SafeTensorsFile out;
  out.path = path;
  for (auto& [name, v] : doc.obj) {
    if (name == "__metadata__") {
      for (auto& [k, mv] : v.obj) {
        if (!mv.is(json::Value::String)) fail(path, "metadata '" + k + "' is not a string; the file is corrupt");
        out.meta[k] = mv.str;
      }
      continue;
    }
    try {
      StTensor t;
      t.dtype = v.at("dtype").as_str();
      const size_t es = dtype_size(t.dtype);
      if (!es) throw std::runtime_error("unsupported dtype " + t.dtype + " (lfmoe reads F32, F64, I32, I64)");
      size_t elems = 1;  // negative or overflowing dimensions would fake a size that matches the offsets
      for (auto& d : v.at("shape").arr) {
        const int64_t dim = d.as_int();
        if (dim < 0 || (dim > 0 && elems > SIZE_MAX / 8 / (size_t)dim))
          throw std::runtime_error("shape has an impossible dimension " + std::to_string(dim));
        elems *= (size_t)dim;
        t.shape.push_back(dim);
      }
      const json::Value& off = v.at("data_offsets");
      if (off.arr.size() != 2) throw std::runtime_error("data_offsets must have 2 entries");
      const int64_t b = off.arr[0].as_int(), e = off.arr[1].as_int();
      if (b < 0 || e < b || (uint64_t)e > data_size)
        throw std::runtime_error("data_offsets [" + std::to_string(b) + ", " + std::to_string(e) +
                                 "] outside the data (" + std::to_string(data_size) + " bytes): file truncated?");
      if ((uint64_t)(e - b) != t.numel() * es)
        throw std::runtime_error("size " + std::to_string(e - b) + " bytes does not match shape " +
                                 shape_str(t.shape) + " of " + t.dtype);
      t.bytes.assign(data.begin() + b, data.begin() + e);
      t.begin = (uint64_t)b;
      t.end = (uint64_t)e;
      out.tensors.emplace(name, std::move(t));
    } catch (const std::exception& ex) {
      fail(path, "tensor '" + name + "': " + ex.what());
    }
  }
  // The byte ranges must tile the data: sorted by start, each begins where the one before ends, the
  // first at 0 and the last at the end. (Equal totals are not enough: two tensors could share bytes.)
  std::vector<std::pair<const std::string*, const StTensor*>> ranges;
  for (auto& [name, t] : out.tensors) ranges.push_back({&name, &t});
  std::sort(ranges.begin(), ranges.end(), [](auto& a, auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  uint64_t at = 0;
  const std::string* prev = nullptr;
  for (auto& [name, t] : ranges) {
    if (t->begin < at)
      fail(path, "tensor '" + *name + "' [" + std::to_string(t->begin) + ", " + std::to_string(t->end) +
                     ") overlaps tensor '" + *prev + "' (which ends at " + std::to_string(at) + "): the file is corrupt");
    if (t->begin > at)
      fail(path, "data bytes [" + std::to_string(at) + ", " + std::to_string(t->begin) +
                     ") belong to no tensor (a gap before tensor '" + *name + "'): the file is corrupt");
    at = t->end;
    prev = name;
  }
  if (at != data_size)
    fail(path, "data bytes [" + std::to_string(at) + ", " + std::to_string(data_size) +
                   ") after the last tensor belong to no tensor (stray data): the file is corrupt");

  // Checksums, when the file has them (docs/FORMAT.md). Each names what it guards.
  auto hdr = out.meta.find(kCrcHeaderKey);
  if (hdr != out.meta.end()) {
    out.checksummed = true;
    std::vector<Entry> entries;
    for (auto& [name, t] : out.tensors) entries.push_back({&name, &t});
    const std::string text = canonical_text(out.meta, entries);
    const std::string got = hex8(crc32(text.data(), text.size()));
    if (got != hdr->second)
      fail(path, "header checksum mismatch (crc32 " + got + ", stored " + hdr->second +
                     "): the metadata or the tensor table was changed or damaged; the file is corrupt");
    for (auto& [name, t] : out.tensors) {
      auto c = out.meta.find(kCrcPrefix + name);
      if (c == out.meta.end()) fail(path, "tensor '" + name + "' has no checksum (crc32:" + name + "): the file is corrupt");
      const std::string g = hex8(crc32(t.bytes.data(), t.bytes.size()));
      if (g != c->second)
        fail(path, "tensor '" + name + "': checksum mismatch (crc32 " + g + ", stored " + c->second +
                       "): its data was changed or damaged; the file is corrupt");
    }
    for (auto& [k, v] : out.meta)
      if (k.rfind(kCrcPrefix, 0) == 0 && k != kCrcHeaderKey && !out.tensors.count(k.substr(6)))
        fail(path, "checksum '" + k + "' names a tensor the file does not have: the file is corrupt");
  } else {
    for (auto& [k, v] : out.meta)
      if (k.rfind(kCrcPrefix, 0) == 0)
        fail(path, "has tensor checksums but no header checksum (" + std::string(kCrcHeaderKey) + "): the file is corrupt");
  }
  return out;
}

const StTensor& SafeTensorsFile::checked(const std::string& name, const char* dtype,
                                         const std::vector<int64_t>& shape) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) fail(path, "missing tensor '" + name + "'");
  if (it->second.dtype != dtype) fail(path, "tensor '" + name + "' is " + it->second.dtype + ", expected " + dtype);
  if (it->second.shape != shape)
    fail(path, "tensor '" + name + "' has shape " + shape_str(it->second.shape) + ", expected " + shape_str(shape));
  return it->second;
}

template <typename T> static std::vector<T> copy_out(const StTensor& t) {
  std::vector<T> v(t.numel());
  if (!v.empty()) std::memcpy(v.data(), t.bytes.data(), t.bytes.size());
  return v;
}
std::vector<float> SafeTensorsFile::f32(const std::string& n, const std::vector<int64_t>& s) const {
  return copy_out<float>(checked(n, "F32", s));
}
std::vector<int32_t> SafeTensorsFile::i32(const std::string& n, const std::vector<int64_t>& s) const {
  return copy_out<int32_t>(checked(n, "I32", s));
}
std::vector<int64_t> SafeTensorsFile::i64(const std::string& n, const std::vector<int64_t>& s) const {
  return copy_out<int64_t>(checked(n, "I64", s));
}
const std::string& SafeTensorsFile::meta_at(const std::string& key) const {
  auto it = meta.find(key);
  if (it == meta.end()) fail(path, "metadata has no '" + key + "' (not an lfmoe file, or written by another tool)");
  return it->second;
}

}  // namespace ref
