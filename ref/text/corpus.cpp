// corpus.cpp — splitting a corpus part into documents (see corpus.h).
#include "ref/text/corpus.h"

#include <stdexcept>  // runtime_error

namespace ref {

namespace {

// The offset of the first separator line ("\x1e\n" at a line start) at or after `from`, or npos.
// `from` is itself a line start (0, or just past the previous separator line). Only a whole line
// separates: a 0x1E within a line (valid parts hold none) stays text of its document.
size_t next_separator(const std::string& text, size_t from) {
  size_t sep = text.find("\x1e\n", from);
  while (sep != std::string::npos && sep != from && text[sep - 1] != '\n') sep = text.find("\x1e\n", sep + 1);
  return sep;
}

}  // namespace

std::vector<std::string> split_documents(const std::string& text, const std::string& path, TrailingText trailing) {
  std::vector<std::string> docs;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t sep = next_separator(text, begin);
    if (sep == std::string::npos) {
      if (trailing == TrailingText::refuse)
        throw std::runtime_error(path + ": text after the last separator line (byte " + std::to_string(begin) +
                                 "); every document must be followed by a line holding only 0x1E (data/README.md)");
      docs.push_back(text.substr(begin));
      break;
    }
    if (sep > begin) docs.push_back(text.substr(begin, sep - begin));
    begin = sep + 2;
  }
  return docs;
}

}  // namespace ref
