// make_shards — encodes corpus parts into train/val token shards (llm.c layout, ref/io/shard.h).
//
//   build/make_shards --tokenizer data/tok32k/tokenizer.json --out-dir data/shards/tok32k data/corpus/*.txt
//   build/make_shards --check --tokenizer T --out-dir D     (exit 0 iff the shards there are valid)
//
// Input: part files of documents, each followed by a separator line "\x1e" (data/README.md).
// Output: OUT/train.bin, OUT/val.bin and OUT/stats.tsv (bytes, documents, tokens per part).
// Every document becomes <|endoftext|> followed by its tokens (as llm.c's data scripts do: the
// end-of-text token opens each document, so it also separates consecutive ones). Document k
// (0-based, counted within its part) goes to val when k % val_every == val_every - 1, else to train:
// a deterministic ~2% hold-out spread evenly through every part.
#include <algorithm>  // max
#include <chrono>     // steady_clock
#include <cstdio>     // printf, fprintf, fopen
#include <stdexcept>  // runtime_error
#include <string>
#include <vector>

#include "ref/io/file.h"         // read_file
#include "ref/io/shard.h"        // write_shard, read_shard
#include "ref/text/corpus.h"     // split_documents, TrailingText
#include "ref/text/tokenizer.h"  // Tokenizer
#include "tools/cli.h"            // parse_uint: strict numbers

namespace {

struct Args {
  std::string tokenizer, out_dir, eot = "<|endoftext|>";
  std::vector<std::string> parts;
  uint64_t val_every = 50;
  bool check = false;
};

void usage() {
  fprintf(stderr,
          "usage: make_shards --tokenizer tokenizer.json --out-dir DIR [--val-every 50] [--eot TOKEN] PARTS...\n"
          "       make_shards --check --tokenizer tokenizer.json --out-dir DIR\n");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Loads the tokenizer and finds the end-of-text id.
uint32_t eot_id(const ref::Tokenizer& tok, const Args& a) {
  int32_t id = tok.token_id(a.eot);
  if (id < 0) throw std::runtime_error(a.tokenizer + ": has no token " + a.eot + "; train it with --special '" + a.eot + "'");
  return (uint32_t)id;
}

int check(const Args& a) {
  ref::Tokenizer tok = ref::Tokenizer::load(a.tokenizer);
  uint32_t eot = eot_id(tok, a);
  for (const char* name : {"train.bin", "val.bin"}) {
    std::string path = a.out_dir + "/" + name;
    std::vector<uint32_t> t = ref::read_shard(path);
    if (t.empty() || t[0] != eot) throw std::runtime_error(path + ": empty or not starting with the end-of-text token; rebuild it");
    for (uint32_t x : t)
      if (x >= tok.vocab_size())
        throw std::runtime_error(path + ": token " + std::to_string(x) + " >= vocab " + std::to_string(tok.vocab_size()) +
                                 " of " + a.tokenizer + "; the shards were built with another tokenizer, rebuild them");
    printf("%s: %zu tokens, ok\n", path.c_str(), t.size());
  }
  return 0;
}

struct PartStats { std::string name; uint64_t bytes = 0, docs = 0, val_docs = 0, train_tokens = 0, val_tokens = 0; };

int build(const Args& a) {
  auto t0 = std::chrono::steady_clock::now();
  ref::Tokenizer tok = ref::Tokenizer::load(a.tokenizer);
  const uint32_t eot = eot_id(tok, a);
  std::vector<uint32_t> train, val;
  std::vector<PartStats> stats;
  for (const std::string& path : a.parts) {
    auto tp = std::chrono::steady_clock::now();
    std::string text = ref::read_file(path, "build the corpus with data/build_corpus.sh");
    // a part must be complete: text after its last separator line is a cut file, not a document
    std::vector<std::string> docs = ref::split_documents(text, path, ref::TrailingText::refuse);
    std::vector<std::vector<uint32_t>> enc(docs.size());
    // Documents are independent; the tokenizer is immutable and thread-safe. An exception must
    // not leave the OpenMP region (that is std::terminate): the earliest one is kept and rethrown
    // with the document's number (e.g. a regex over its backtracking budget).
    std::string first_error;
    long first_error_doc = -1;
    #pragma omp parallel for schedule(dynamic, 4)
    for (long i = 0; i < (long)docs.size(); i++) {
      try {
        enc[i].push_back(eot);
        tok.encode_append(docs[i], enc[i]);
      } catch (const std::exception& e) {
        #pragma omp critical(make_shards_error)
        if (first_error_doc < 0 || i < first_error_doc) {  // the earliest document, whatever the thread order
          first_error_doc = i;
          first_error = path + ": document " + std::to_string(i + 1) + ": " + e.what();
        }
      }
    }
    if (!first_error.empty()) throw std::runtime_error(first_error);
    PartStats s;
    s.name = path.substr(path.find_last_of('/') + 1);
    s.bytes = text.size();
    s.docs = docs.size();
    for (size_t i = 0; i < docs.size(); i++) {
      bool is_val = a.val_every > 0 && i % a.val_every == a.val_every - 1;
      std::vector<uint32_t>& dst = is_val ? val : train;
      dst.insert(dst.end(), enc[i].begin(), enc[i].end());
      (is_val ? s.val_tokens : s.train_tokens) += enc[i].size();
      s.val_docs += is_val;
    }
    fprintf(stderr, "make_shards: %-16s %6.2f MB %7llu docs -> %9llu train + %8llu val tokens (%.2f bytes/token) %.1f s\n",
            s.name.c_str(), s.bytes / 1e6, (unsigned long long)s.docs, (unsigned long long)s.train_tokens,
            (unsigned long long)s.val_tokens, (double)s.bytes / std::max<uint64_t>(1, s.train_tokens + s.val_tokens),
            seconds_since(tp));
    stats.push_back(s);
  }
  if (val.empty()) throw std::runtime_error("no validation document (fewer than --val-every documents?); lower --val-every");
  ref::write_shard(a.out_dir + "/train.bin", train, tok.vocab_size());
  ref::write_shard(a.out_dir + "/val.bin", val, tok.vocab_size());
  // stats.tsv last: its presence marks a complete build.
  std::string tsv = "part\tbytes\tdocuments\tval_documents\ttrain_tokens\tval_tokens\n";
  PartStats total;
  total.name = "total";
  for (const PartStats& s : stats) {
    tsv += s.name + "\t" + std::to_string(s.bytes) + "\t" + std::to_string(s.docs) + "\t" + std::to_string(s.val_docs) +
           "\t" + std::to_string(s.train_tokens) + "\t" + std::to_string(s.val_tokens) + "\n";
    total.bytes += s.bytes; total.docs += s.docs; total.val_docs += s.val_docs;
    total.train_tokens += s.train_tokens; total.val_tokens += s.val_tokens;
  }
  tsv += "total\t" + std::to_string(total.bytes) + "\t" + std::to_string(total.docs) + "\t" + std::to_string(total.val_docs) +
         "\t" + std::to_string(total.train_tokens) + "\t" + std::to_string(total.val_tokens) + "\n";
  FILE* f = fopen((a.out_dir + "/stats.tsv").c_str(), "wb");
  if (!f) throw std::runtime_error(a.out_dir + "/stats.tsv: cannot write");
  fwrite(tsv.data(), 1, tsv.size(), f);
  fclose(f);
  printf("wrote %s/{train,val}.bin: %llu train + %llu val tokens (vocab %u) in %.1f s\n", a.out_dir.c_str(),
         (unsigned long long)train.size(), (unsigned long long)val.size(), tok.vocab_size(), seconds_since(t0));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Args a;
    for (int i = 1; i < argc; i++) {
      std::string s = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(s + " needs a value");
        return argv[++i];
      };
      if (s == "--tokenizer") a.tokenizer = value();
      else if (s == "--out-dir") a.out_dir = value();
      else if (s == "--eot") a.eot = value();
      else if (s == "--val-every") {
        a.val_every = cli::parse_uint(s, value(), 2, UINT64_MAX);
      }
      else if (s == "--check") a.check = true;
      else if (s == "-h" || s == "--help") { usage(); return 0; }
      else if (s.size() > 1 && s[0] == '-') throw std::runtime_error("unknown option " + s + " (see --help)");
      else a.parts.push_back(s);
    }
    if (a.tokenizer.empty() || a.out_dir.empty() || (!a.check && a.parts.empty())) {
      usage();
      throw std::runtime_error("--tokenizer, --out-dir and (unless --check) at least one part file are required");
    }
    return a.check ? check(a) : build(a);
  } catch (const std::exception& e) {
    fprintf(stderr, "make_shards: error: %s\n", e.what());
    return 1;
  }
}
