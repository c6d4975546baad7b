// safetensors.h — reading and writing safetensors files (checkpoints and dumps).
// Layout: uint64 little-endian header length n, n bytes of JSON, then the raw tensor bytes.
#pragma once
#include <cstddef>  // size_t
#include <cstdint>  // int64_t, uint8_t, uint32_t
#include <map>      // std::map
#include <string>   // std::string
#include <vector>   // std::vector

namespace ref {

struct StTensor {
  std::string dtype;            // "F32", "F64", "I32", "I64"
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;   // little-endian raw data
  uint64_t begin = 0, end = 0;  // data_offsets in the file read (the writer assigns its own)
  size_t numel() const;
};

// CRC-32 of n bytes, the one of zlib, PNG and Python's zlib.crc32 (ISO-HDLC: reflected polynomial
// 0xEDB88320, initial value and final xor 0xFFFFFFFF; crc32("123456789") = 0xCBF43926). `crc` is the
// value of the bytes before, to continue a running checksum (0 to start).
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);

// Checksums (docs/FORMAT.md, "Checksums"): the writer stores in __metadata__ the CRC-32 of every
// tensor's bytes as "crc32:<name>" and the CRC-32 of the rest of the header as "crc32:__header__",
// 8 lowercase hex digits each. This is the canonical text that the header checksum covers: every
// metadata entry except crc32:__header__, in ascending byte order of the key, as key NUL value NUL;
// then every tensor, in ascending byte order of the name, as name NUL dtype NUL d0,d1,... NUL
// begin NUL end NUL (decimal numbers, shape dims joined by commas, empty for a scalar).
extern const char* const kCrcPrefix;     // "crc32:"
extern const char* const kCrcHeaderKey;  // "crc32:__header__"

// Refuses to replace anything at `path` but a regular file: a symlink (it would be replaced by a
// file, not written through), a device (as root, /dev/full would be destroyed), a directory, a
// FIFO or a socket. `flag` names the option in the message ("--save"); a missing path is fine.
void check_regular_target(const std::string& path, const std::string& flag);

// Collects tensors and metadata, then writes them atomically (FILE.tmp.<pid>, flush, fsync, rename),
// so a crash or a full disk never leaves a half-written FILE and never destroys the previous one,
// and two processes saving to one FILE never take each other's temp file (the last rename wins).
// It writes only over a regular file (check_regular_target), adds the checksums above (replacing
// any crc32: keys given to meta()), and removes temp files of FILE left by processes that died.
class SafeTensorsWriter {
 public:
  void meta(const std::string& key, const std::string& value) { meta_[key] = value; }
  void add(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  void add(const std::string& name, const std::vector<int64_t>& shape, const int32_t* data);
  void add(const std::string& name, const std::vector<int64_t>& shape, const int64_t* data);
  // Like add, without copying: `data` must stay valid and unchanged until write() returns. For the
  // large tensors of a checkpoint, whose copy would double the memory a save needs.
  void add_view(const std::string& name, const std::vector<int64_t>& shape, const float* data);
  void write(const std::string& path) const;  // throws with the path and the OS error

 private:
  struct Item {
    std::string name;
    StTensor t;                     // dtype, shape and (for add) the bytes
    const void* view = nullptr;     // add_view: the caller's bytes
    size_t view_bytes = 0;
    const void* data() const { return view ? view : t.bytes.data(); }
    size_t size() const { return view ? view_bytes : t.bytes.size(); }
  };
  void add_raw(const std::string& name, const char* dtype, const std::vector<int64_t>& shape, const void* p,
               size_t elem);
  std::map<std::string, std::string> meta_;
  std::vector<Item> tensors_;
};

// A whole file in memory, checked: a regular file, header length within the file, valid JSON, known
// dtypes, offsets in bounds and matching shape * dtype size, the tensors' byte ranges tiling the data
// exactly (no overlap, no gap), and the checksums where the file has them: when crc32:__header__ is
// present, every tensor must have its crc32:<name> and every checksum must match (errors name the
// tensor or the header). `checksummed` says whether the file had checksums (older files do not).
struct SafeTensorsFile {
  std::map<std::string, std::string> meta;
  std::map<std::string, StTensor> tensors;
  bool checksummed = false;

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
