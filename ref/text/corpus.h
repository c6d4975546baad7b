// corpus.h — splitting a corpus part into its documents. The format (data/README.md): a sequence
// of documents, each ending with '\n' and followed by a separator line holding the single byte 0x1E.
#pragma once
#include <string>  // std::string
#include <vector>  // std::vector

namespace ref {

// What split_documents does with text after the last separator line.
enum class TrailingText {
  refuse,    // throw: build/make_shards, which reads finished parts only (a cut file is an error)
  document,  // one more document: build/bench_tokenizer, which takes any text (no separator: one document)
};

// The documents of `text`, split at separator lines (lines holding only 0x1E); each keeps its final
// '\n', the separator lines are dropped, and so are empty documents (a separator line first, or two
// in a row). With TrailingText::refuse, text after the last separator line throws
// std::runtime_error naming `path` and the byte where that text starts.
// dev/bench_tokenizer_hf.js copies this in JavaScript (splitDocuments, as TrailingText::document) so
// that HF encodes the very documents build/bench_tokenizer does and the benchmark's id check holds:
// the two must stay equal.
std::vector<std::string> split_documents(const std::string& text, const std::string& path, TrailingText trailing);

}  // namespace ref
