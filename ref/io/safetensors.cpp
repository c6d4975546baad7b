// safetensors.cpp — see safetensors.h.
#include "ref/io/safetensors.h"

#include <cerrno>     // errno
#include <cstdint>    // SIZE_MAX
#include <cstdio>     // std::FILE, std::fopen, std::fwrite
#include <cstring>    // std::strerror, std::memcpy
#include <fstream>    // std::ifstream
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <unistd.h>   // fsync, fileno

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
}  // namespace

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
  tensors_.emplace_back(name, std::move(t));
}
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const float* d) { add_raw(n, "F32", s, d, 4); }
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const int32_t* d) { add_raw(n, "I32", s, d, 4); }
void SafeTensorsWriter::add(const std::string& n, const std::vector<int64_t>& s, const int64_t* d) { add_raw(n, "I64", s, d, 8); }

void SafeTensorsWriter::write(const std::string& path) const {
  std::ostringstream h;
  h << "{\"__metadata__\": {";
  bool first = true;
  for (auto& [k, v] : meta_) {
    h << (first ? "" : ", ") << json::quote(k) << ": " << json::quote(v);
    first = false;
  }
  h << "}";
  size_t offset = 0;
  for (auto& [name, t] : tensors_) {
    h << ", " << json::quote(name) << ": {\"dtype\": \"" << t.dtype << "\", \"shape\": [";
    for (size_t i = 0; i < t.shape.size(); ++i) h << (i ? ", " : "") << t.shape[i];
    h << "], \"data_offsets\": [" << offset << ", " << offset + t.bytes.size() << "]}";
    offset += t.bytes.size();
  }
  h << "}";
  std::string header = h.str();
  header.append((8 - header.size() % 8) % 8, ' ');  // keep the data 8-byte aligned, as the spec suggests

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(tmp, std::string("cannot create: ") + std::strerror(errno) + " (check the directory exists and is writable)");
  const uint64_t n = header.size();
  bool ok = std::fwrite(&n, 8, 1, f) == 1 && std::fwrite(header.data(), 1, n, f) == n;
  for (auto& kv : tensors_)
    ok = ok && (kv.second.bytes.empty() ||  // an empty tensor's data() may be null: fwrite(nullptr) is UB
                std::fwrite(kv.second.bytes.data(), 1, kv.second.bytes.size(), f) == kv.second.bytes.size());
  ok = ok && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
  const int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(tmp, std::string("write failed: ") + std::strerror(err) + " (disk full?); the previous " + path +
                  " is untouched");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) fail(path, std::string("rename failed: ") + std::strerror(errno));
}

// ---------------------------------------------------------------- reading
SafeTensorsFile SafeTensorsFile::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot open (does the file exist?)");
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
  uint64_t covered = 0;
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
      covered += (uint64_t)(e - b);
      out.tensors.emplace(name, std::move(t));
    } catch (const std::exception& ex) {
      fail(path, "tensor '" + name + "': " + ex.what());
    }
  }
  if (covered != data_size)
    fail(path, "tensors cover " + std::to_string(covered) + " of " + std::to_string(data_size) +
                   " data bytes (overlapping or stray data: the file is corrupt)");
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
