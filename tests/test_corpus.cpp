// test_corpus.cpp — ref/text/corpus.h: splitting a corpus part into documents (data/README.md).
// Hand-written cases. build/make_shards splits with TrailingText::refuse and build/bench_tokenizer
// with TrailingText::document, and dev/bench_tokenizer_hf.js copies the latter in JavaScript: these
// cases are the behaviour that copy must keep.
#include <doctest/doctest.h>  // TEST_CASE, CHECK

#include <string>  // std::string
#include <vector>  // std::vector

#include "ref/text/corpus.h"  // split_documents, TrailingText
#include "tests/test_util.h"  // error_of, contains

using ref::TrailingText;
using Docs = std::vector<std::string>;

namespace {

Docs split(const std::string& text) { return ref::split_documents(text, "part.txt", TrailingText::refuse); }
Docs lenient(const std::string& text) { return ref::split_documents(text, "part.txt", TrailingText::document); }

}  // namespace

TEST_CASE("corpus: documents keep their final newline, separator lines are dropped") {
  CHECK(split("a\nb\n\x1e\nc\n\x1e\n") == Docs{"a\nb\n", "c\n"});
  CHECK(split("\n\x1e\n") == Docs{"\n"});  // a document of one empty line
  CHECK(split("").empty());
  CHECK(lenient("a\n\x1e\nc\n\x1e\n") == split("a\n\x1e\nc\n\x1e\n"));  // the same on a complete part
}

TEST_CASE("corpus: only a whole line of 0x1E separates; empty documents are dropped") {
  CHECK(split("a\x1e\nb\n\x1e\n") == Docs{"a\x1e\nb\n"});  // 0x1E within a line is text
  CHECK(split("\x1e\na\n\x1e\n\x1e\nb\n\x1e\n") == Docs{"a\n", "b\n"});
}

TEST_CASE("corpus: text after the last separator line: refused, or one more document") {
  const std::string e = error_of([] { split("a\n\x1e\nb\n"); });
  CHECK(contains(e, "part.txt: text after the last separator line (byte 4)"));
  CHECK(contains(error_of([] { split("a\n\x1e"); }), "(byte 0)"));  // no '\n' after 0x1E: no separator
  CHECK(lenient("a\n\x1e\nb\n") == Docs{"a\n", "b\n"});
  CHECK(lenient("plain text\n") == Docs{"plain text\n"});
  CHECK(lenient("a\n\x1e") == Docs{"a\n\x1e"});
}
