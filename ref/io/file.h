// file.h — reading a whole file into memory (corpus parts, texts to encode).
#pragma once
#include <string>  // std::string

namespace ref {

// The bytes of the file at `path`, as they are (no newline translation). Throws std::runtime_error
// "<path>: cannot open: <reason>; <fix>" when it cannot be opened, and "<path>: read error; ..."
// when reading fails part-way (so that a damaged file is never taken for a shorter one). `fix` says
// how to get the file: where it comes from in the caller's context.
std::string read_file(const std::string& path, const std::string& fix);

}  // namespace ref
