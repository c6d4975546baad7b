// file.h — reading a whole file into memory (corpus parts, texts to encode), and writing one so
// that no reader ever sees it half written.
#pragma once
#include <cstddef>  // size_t
#include <string>   // std::string

namespace ref {

// The bytes of the file at `path`, as they are (no newline translation). Throws std::runtime_error
// "<path>: cannot open: <reason>; <fix>" when it cannot be opened, and "<path>: read error; ..."
// when reading fails part-way (so that a damaged file is never taken for a shorter one). `fix` says
// how to get the file: where it comes from in the caller's context.
std::string read_file(const std::string& path, const std::string& fix);

// Writes data[0, size) to `path` atomically: into PATH.tmp.<pid> (created exclusively, so never another
// process's file or a link planted under that name), flushed to disk, then renamed over path. A
// reader sees the old file or the new one. Two processes writing the same path each use their own
// temporary, and the last rename wins. On failure the temporary is removed, path is untouched, and
// std::runtime_error says "<file>: <what>: <reason>; check ...".
void write_file_atomic(const std::string& path, const void* data, size_t size);

}  // namespace ref
