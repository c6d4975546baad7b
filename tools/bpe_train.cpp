// bpe_train — trains a byte-level BPE tokenizer on text files and writes a HF tokenizer.json.
//
//   build/bpe_train --vocab-size 32064 --out data/tok32k/tokenizer.json data/corpus/*.txt
//
// Files are read line by line (as HF's tokenizer.train(files) does); lines holding only the
// corpus' document separator (0x1E) are skipped. See ref/text/bpe_train.h for the algorithm.
#include <algorithm>  // max
#include <chrono>     // steady_clock
#include <cstdio>     // printf, fprintf
#include <stdexcept>  // runtime_error
#include <string>
#include <vector>

#include "ref/text/bpe_train.h"  // count_words_in_files, train_bpe, write_tokenizer_json
#include "ref/text/tokenizer.h"  // Tokenizer (for --verify)
#include "tools/cli.h"            // parse_uint: strict numbers

namespace {

// The largest --vocab-size: the trainer's vocabulary V is an int (train --vocab), ids are uint32.
constexpr uint64_t kMaxVocab = 2147483647;

void usage() {
  fprintf(stderr,
          "usage: bpe_train --vocab-size N --out tokenizer.json [options] FILES...\n"
          "  --vocab-size N       target vocabulary size, special tokens included (required)\n"
          "  --out PATH           where to write tokenizer.json (required)\n"
          "  --special TOKEN      a special token (repeatable; default: <|endoftext|>)\n"
          "  --no-special         no special tokens at all\n"
          "  --min-frequency N    smallest pair count that still merges (default 2)\n"
          "  --seen-alphabet      alphabet = bytes seen in the data (HF's default trainer), instead\n"
          "                       of all 256 ByteLevel characters\n"
          "  --threads N          threads for word counting (default: OpenMP's default)\n"
          "  --quiet              no progress lines\n"
          "       bpe_train --verify tokenizer.json --vocab-size N [--special TOKEN]\n"
          "  checks that the file loads, has N tokens and the special tokens, and round-trips text\n");
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// --verify: exit 0 iff the file is a usable tokenizer of the expected size (data/build_all.sh
// uses it to skip a step whose output is already there).
int verify(const std::string& path, uint32_t vocab_size, const std::vector<std::string>& specials) {
  ref::Tokenizer tok = ref::Tokenizer::load(path);
  if (tok.vocab_size() != vocab_size)
    throw std::runtime_error(path + ": has " + std::to_string(tok.vocab_size()) + " tokens, expected " +
                             std::to_string(vocab_size) + "; retrain it");
  for (const std::string& s : specials)
    if (tok.token_id(s) < 0) throw std::runtime_error(path + ": lacks the special token " + s + "; retrain it");
  const std::string probe = "Verify: naïve café, 数学 x^2 + 1 = 0;\n\tint main() { return 0; }\n";
  if (tok.decode(tok.encode(probe)) != probe) throw std::runtime_error(path + ": encode/decode does not round-trip");
  printf("%s: ok (%u tokens)\n", path.c_str(), tok.vocab_size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    ref::BpeTrainOptions opt;
    opt.verbose = true;
    std::string out, verify_path;
    std::vector<std::string> files, specials;
    bool no_special = false, have_vocab = false;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
      std::string a = argv[i];
      auto value = [&]() -> const char* {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--vocab-size") { opt.vocab_size = (uint32_t)cli::parse_uint(a, value(), 1, kMaxVocab); have_vocab = true; }
      else if (a == "--out") out = value();
      else if (a == "--special") specials.push_back(value());
      else if (a == "--no-special") no_special = true;
      else if (a == "--min-frequency") opt.min_frequency = cli::parse_uint(a, value(), 0, UINT64_MAX);
      else if (a == "--seen-alphabet") opt.full_byte_alphabet = false;
      else if (a == "--threads") threads = (int)cli::parse_uint(a, value(), 0, 4096);
      else if (a == "--quiet") opt.verbose = false;
      else if (a == "--verify") verify_path = value();
      else if (a == "-h" || a == "--help") { usage(); return 0; }
      else if (a.size() > 1 && a[0] == '-') throw std::runtime_error("unknown option " + a + " (see --help)");
      else files.push_back(a);
    }
    if (!verify_path.empty()) {
      if (!have_vocab) throw std::runtime_error("--verify needs --vocab-size");
      return verify(verify_path, opt.vocab_size, specials.empty() && !no_special ? opt.special_tokens : specials);
    }
    if (!have_vocab || out.empty() || files.empty()) {
      usage();
      throw std::runtime_error("--vocab-size, --out and at least one input file are required");
    }
    if (no_special && !specials.empty()) throw std::runtime_error("--no-special and --special exclude each other");
    if (no_special) opt.special_tokens.clear();
    else if (!specials.empty()) opt.special_tokens = specials;

    auto t0 = std::chrono::steady_clock::now();
    ref::WordCounts counts = ref::count_words_in_files(files, threads);
    uint64_t total = 0;
    for (auto& kv : counts) total += kv.second;
    if (opt.verbose)
      fprintf(stderr, "bpe_train: counted %llu words (%zu distinct) in %zu file(s) in %.1f s\n",
              (unsigned long long)total, counts.size(), files.size(), seconds_since(t0));
    auto t1 = std::chrono::steady_clock::now();
    ref::BpeModel model = ref::train_bpe(counts, opt);
    if (opt.verbose)
      fprintf(stderr, "bpe_train: %zu merges, vocab %zu in %.1f s\n", model.merges.size(), model.vocab.size(),
              seconds_since(t1));
    if (model.vocab.size() < opt.vocab_size)
      fprintf(stderr, "bpe_train: warning: vocabulary stopped at %zu < %u (no pair left with count >= %llu)\n",
              model.vocab.size(), opt.vocab_size, (unsigned long long)std::max<uint64_t>(1, opt.min_frequency));
    ref::write_tokenizer_json(out, model);
    printf("wrote %s: %zu tokens, %zu merges, %.1f s total\n", out.c_str(), model.vocab.size(), model.merges.size(),
           seconds_since(t0));
    return 0;
  } catch (const std::exception& e) {
    fprintf(stderr, "bpe_train: error: %s\n", e.what());
    return 1;
  }
}
