// bench_tokenizer — encode and decode throughput of ref::Tokenizer on one text, one thread.
//
//   build/bench_tokenizer --tokenizer data/tok32k/tokenizer.json --in TEXT [--repeat 3]
//
// Two ways of encoding the same bytes:
//   text  the whole file as one string (one encode call);
//   docs  the file split into documents at the corpus' separator lines ("\x1e\n", data/README.md),
//         one encode call per document, as build/make_shards does (ref::split_documents; but more
//         leniently: text after the last separator is one more document, where make_shards refuses it).
// Each is timed on a freshly loaded tokenizer (empty pre-token cache: "first") and then
// --repeat more times ("best" = the fastest). Load time is not included. Prints one TSV row per
// measurement (impl, what, MB, tokens, seconds, MB/s) and an FNV-1a hash of the ids, so that
// dev/bench_tokenizer.sh can check that HF produced exactly the same ids.
// Not a test: speed is measured here, correctness in tests/check_tokenizer_hf.sh.
#include <algorithm>  // min
#include <chrono>     // steady_clock
#include <cstdio>     // printf, fprintf
#include <stdexcept>  // runtime_error
#include <string>
#include <vector>

#include "ref/io/file.h"         // read_file
#include "ref/text/corpus.h"     // split_documents, TrailingText
#include "ref/text/tokenizer.h"  // Tokenizer
#include "tools/cli.h"            // parse_uint: strict numbers

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

uint64_t fnv1a(const std::vector<uint32_t>& ids) {
  uint64_t h = 1469598103934665603ull;
  for (uint32_t id : ids) { h ^= id; h *= 1099511628211ull; }
  return h;
}

struct Run { double seconds; std::vector<uint32_t> ids; };

Run encode_all(const ref::Tokenizer& tok, const std::vector<std::string>& docs) {
  Run r;
  double t0 = now();
  for (const std::string& d : docs) tok.encode_append(d, r.ids);
  r.seconds = now() - t0;
  return r;
}

void row(const char* what, const char* pass, double bytes, size_t tokens, double seconds) {
  printf("ours\t%s\t%s\t%.2f\t%zu\t%.3f\t%.2f\n", what, pass, bytes / 1e6, tokens, seconds, bytes / 1e6 / seconds);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string tok_path, in;
    int repeat = 3;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--tokenizer") tok_path = value();
      else if (a == "--in") in = value();
      else if (a == "--repeat") repeat = (int)cli::parse_uint(a, value(), 1, 1000000);
      else throw std::runtime_error("unknown option " + a +
                                    " (usage: bench_tokenizer --tokenizer T.json --in TEXT [--repeat 3])");
    }
    if (tok_path.empty() || in.empty()) throw std::runtime_error("--tokenizer and --in are required");
    const std::string text = ref::read_file(in, "check the path");
    // any text, not only corpus parts: what follows the last separator line is one more document
    // (dev/bench_tokenizer_hf.js splits the same way; see corpus.h)
    const std::vector<std::string> whole = {text}, docs = ref::split_documents(text, in, ref::TrailingText::document);
    printf("impl\twhat\tpass\tMB\ttokens\tseconds\tMB/s\n");
    for (int mode = 0; mode < 2; mode++) {
      const char* what = mode == 0 ? "text" : "docs";
      const std::vector<std::string>& input = mode == 0 ? whole : docs;
      // A fresh load gets a new cache identity: the first pass starts with an empty cache.
      ref::Tokenizer tok = ref::Tokenizer::load(tok_path);
      double bytes = 0;
      for (const std::string& d : input) bytes += (double)d.size();
      Run first = encode_all(tok, input);
      row(what, "first", bytes, first.ids.size(), first.seconds);
      double best = 1e30;
      for (int r = 0; r < repeat; r++) best = std::min(best, encode_all(tok, input).seconds);
      row(what, "best", bytes, first.ids.size(), best);
      printf("# ours %s ids fnv1a %016llx\n", what, (unsigned long long)fnv1a(first.ids));
      if (mode == 1) {
        double t0 = now();
        std::string back = tok.decode(first.ids);
        double dt = now() - t0;
        printf("ours\tdecode\tfirst\t%.2f\t%zu\t%.3f\t%.2f\n", back.size() / 1e6, first.ids.size(), dt, back.size() / 1e6 / dt);
      }
    }
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
}
