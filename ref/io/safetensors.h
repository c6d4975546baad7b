// safetensors.h — reading and writing safetensors files (checkpoints and dumps).
// Layout: uint64 little-endian header length n, n bytes of JSON, then the raw tensor bytes.
#pragma once
#include <cstdint>  // int64_t, uint8_t
#include <map>      // std::map
#include <string>   // std::string
#include <vector>   // std::vector

namespace ref {

struct StTensor {
  std::string dtype;            // "F32", "F64", "I32", "I64"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // little-endian raw data
  size_t numel() const;
};

// Collects tensors and metadata, then writes them atomically (FILE.tmp, flush, fsync, rename), so a
// crash or a full disk never leaves a half-written FILE and never destroys the previous one.
class SafeTensorsWriter {
 public:
  void meta(const std::string& key, const std::string& value) { meta_[key] = value; }
  void add(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  void add(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data);
  void add(const std::string& name, const std::vector<int64_t>& shape, const int64_t* data);
  void write(const std::string& path) const;  // throws with the path and the OS error

 private:
  void add_raw(const std::string& name, const char* dtype, const std::vector<int64_t>& shape, const void* p,
               size_t elem);
  std::map<std::string, std::string> meta_;
  std::vector<std::pair<std::string, StTensor>> tensors_;
};

// A whole file in memory, checked: header length within the file, valid JSON, known dtypes, offsets
// in bounds, contiguous and matching shape * dtype size.
struct SafeTensorsFile {
  std::map<std::string, std::string> meta;
  std::map<std::string, StTensor> tensors;

  static SafeTensorsFile read(const std::string& path);
  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  // Copies a tensor out, checking dtype and shape; errors name the file, the tensor and the mismatch.
  std::vector<float> f32(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<int32_t> i32(const std::string& name, const std::vector<int64_t>& shape) const;
  std::vector<int64_t> i64(const std::string& name, const std::vector<int64_t>& shape) const;
  const std::string& meta_at(const std::string& key) const;
  std::string path;

 private:
  const StTensor& checked(const std::string& name, const char* dtype, const std::vector<int64_t>& shape) const;
};

std::string shape_str(const std::vector<int64_t>& shape);

}  // namespace ref
