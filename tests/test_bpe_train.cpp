// test_bpe_train.cpp — the BPE trainer against hand-computed cases, HF's own unit-test
// expectations, and a naive re-counting BPE on random corpora.
// (The exact comparison with HF tokenizers on real text is tests/check_bpe_vs_hf.sh.)
#include <doctest/doctest.h>

#include <cstdio>     // remove
#include <map>        // std::map
#include <random>     // mt19937
#include <stdexcept>  // runtime_error
#include <string>
#include <vector>

#include "ref/text/bpe_train.h"
#include "ref/io/json.h"
#include "ref/text/tokenizer.h"

namespace {

ref::BpeTrainOptions plain_options(uint32_t vocab, uint64_t min_freq) {
  ref::BpeTrainOptions o;
  o.vocab_size = vocab;
  o.min_frequency = min_freq;
  o.special_tokens.clear();
  o.full_byte_alphabet = false;
  return o;
}

// Naive BPE: recount every pair from scratch at every step, take the highest count (ties: the
// smallest pair of ids), merge it in every word. Returns the merges as (left, right, merged id)
// and sets *first_reuse to the index of the first merge whose string was already a token (after
// which HF's lazy bookkeeping may legitimately order things differently).
struct NaiveMerge { std::string a, b; };
std::vector<NaiveMerge> naive_bpe(const ref::WordCounts& counts, uint32_t vocab_size, uint64_t min_freq,
                                  size_t* first_reuse) {
  std::map<unsigned char, int> seen;
  for (auto& kv : counts) for (unsigned char c : kv.first) seen[c] = 0;
  const auto& alpha = ref::bytelevel_alphabet();
  std::vector<std::pair<std::string, int>> chars;  // sorted by the ByteLevel character's code point
  for (auto& kv : seen) chars.push_back({alpha[kv.first], kv.first});
  // code point order == byte order for these printable ASCII tests (checked below)
  std::vector<std::string> vocab;
  std::map<std::string, uint32_t> ids;
  for (auto& c : chars) { ids[c.first] = (uint32_t)vocab.size(); vocab.push_back(c.first); }
  std::vector<std::vector<uint32_t>> words;
  std::vector<uint64_t> wc;
  for (auto& kv : counts) {
    std::vector<uint32_t> w;
    for (unsigned char c : kv.first) w.push_back(ids[alpha[c]]);
    words.push_back(w);
    wc.push_back(kv.second);
  }
  std::vector<NaiveMerge> merges;
  *first_reuse = SIZE_MAX;
  while (vocab.size() < vocab_size) {
    std::map<std::pair<uint32_t, uint32_t>, uint64_t> pc;
    for (size_t i = 0; i < words.size(); i++)
      for (size_t j = 0; j + 1 < words[i].size(); j++) pc[{words[i][j], words[i][j + 1]}] += wc[i];
    std::pair<uint32_t, uint32_t> best{0, 0};
    uint64_t best_count = 0;
    for (auto& kv : pc)  // map order is ascending pairs: the first maximum is the smallest pair
      if (kv.second > best_count) { best_count = kv.second; best = kv.first; }
    if (best_count < 1 || best_count < min_freq) break;
    std::string s = vocab[best.first] + vocab[best.second];
    if (ids.count(s) && *first_reuse == SIZE_MAX) *first_reuse = merges.size();
    if (!ids.count(s)) { ids[s] = (uint32_t)vocab.size(); vocab.push_back(s); }
    uint32_t z = ids[s];
    merges.push_back({vocab[best.first], vocab[best.second]});
    for (auto& w : words) {
      std::vector<uint32_t> out;
      for (size_t j = 0; j < w.size();) {
        if (j + 1 < w.size() && w[j] == best.first && w[j + 1] == best.second) { out.push_back(z); j += 2; }
        else out.push_back(w[j++]);
      }
      w = out;
    }
  }
  return merges;
}

}  // namespace

TEST_CASE("bpe_train: HF's own trainer test (roses are red) gives the same vocab and merges") {
  // Word counts and expected results from HF tokenizers' trainer.rs unit test `test_train`
  // (min_frequency 2, no special tokens, alphabet from the words).
  ref::WordCounts wc = {{"roses", 1}, {"are", 2}, {"red", 1}, {"voilets", 1}, {"blue", 1}, {"BERT", 1},
                        {"is", 2},    {"big", 1}, {"and", 1}, {"so", 1},      {"GPT-2", 1}};
  ref::BpeModel m = ref::train_bpe(wc, plain_options(30000, 2));
  std::vector<std::string> expect = {"-", "2", "B", "E", "G", "P", "R", "T", "a", "b", "d", "e", "g",
                                     "i", "l", "n", "o", "r", "s", "t", "u", "v", "re", "are", "is"};
  CHECK(m.vocab == expect);
  REQUIRE(m.merges.size() == 3);
  CHECK(m.merges[0] == std::make_pair(std::string("r"), std::string("e")));
  CHECK(m.merges[1] == std::make_pair(std::string("a"), std::string("re")));
  CHECK(m.merges[2] == std::make_pair(std::string("i"), std::string("s")));
}

TEST_CASE("bpe_train: specials first, then all 256 ByteLevel characters in code point order") {
  ref::WordCounts wc = {{"ab", 3}};
  ref::BpeTrainOptions o;
  o.vocab_size = 300;
  o.min_frequency = 2;
  o.special_tokens = {"<|endoftext|>", "<|pad|>"};
  ref::BpeModel m = ref::train_bpe(wc, o);
  REQUIRE(m.vocab.size() == 2 + 256 + 1);
  CHECK(m.vocab[0] == "<|endoftext|>");
  CHECK(m.vocab[1] == "<|pad|>");
  const auto& alpha = ref::bytelevel_alphabet();
  CHECK(m.vocab[2] == alpha['!']);         // U+0021, the smallest code point
  CHECK(m.vocab[2 + 93] == alpha['~']);    // '!'..'~' are 94 characters
  CHECK(m.vocab[2 + 94] == alpha[0xA1]);   // then U+00A1 '¡'
  CHECK(m.vocab[2 + 188 - 1] == alpha[0xFF]);  // 94 + 12 (A1..AC) + 82 (AE..FF) = 188 printable
  CHECK(m.vocab[2 + 188] == alpha[0x00]);  // U+0100 'Ā' is byte 0
  CHECK(m.vocab[2 + 188] == "\xC4\x80");
  CHECK(m.vocab[2 + 255] == alpha[0xAD]);  // U+0143, the largest, is byte 0xAD
  CHECK(m.vocab[258] == "ab");
  REQUIRE(m.merges.size() == 1);
}

TEST_CASE("bpe_train: ties go to the smaller pair of ids; min_frequency and vocab_size stop the loop") {
  // (c,d) and (a,b) both count 4: (a,b) has the smaller ids and comes first; (x,y) counts 1.
  ref::WordCounts wc = {{"cd", 4}, {"ab", 4}, {"xy", 1}};
  ref::BpeModel m = ref::train_bpe(wc, plain_options(100, 2));
  REQUIRE(m.merges.size() == 2);
  CHECK(m.merges[0].first == "a");
  CHECK(m.merges[1].first == "c");
  CHECK(ref::train_bpe(wc, plain_options(100, 0)).merges.size() == 3);  // count 1 still merges
  CHECK(ref::train_bpe(wc, plain_options(7, 0)).merges.size() == 1);   // 6 chars + 1 merge
  CHECK(ref::train_bpe(wc, plain_options(7, 0)).vocab.size() == 7);
}

TEST_CASE("bpe_train: pair counts are weighted by word counts and overlapping pairs count once per merge") {
  // "aaaa" x1 has (a,a) three times -> 3; "ab" x2 -> (a,b) 2. First merge (a,a); "aaaa" becomes
  // [aa, aa], giving (aa,aa) count 1, which loses to (a,b) = 2.
  ref::WordCounts wc = {{"aaaa", 1}, {"ab", 2}};
  ref::BpeModel m = ref::train_bpe(wc, plain_options(100, 0));
  REQUIRE(m.merges.size() == 3);
  CHECK(m.merges[0] == std::make_pair(std::string("a"), std::string("a")));
  CHECK(m.merges[1] == std::make_pair(std::string("a"), std::string("b")));
  CHECK(m.merges[2] == std::make_pair(std::string("aa"), std::string("aa")));
}

TEST_CASE("bpe_train: matches a naive re-counting BPE on random corpora") {
  std::mt19937 rng(1234);
  int compared = 0;
  for (int trial = 0; trial < 30; trial++) {
    ref::WordCounts wc;
    int nwords = 5 + (int)(rng() % 40);
    for (int i = 0; i < nwords; i++) {
      std::string w;
      int len = 1 + (int)(rng() % 9);
      for (int j = 0; j < len; j++) w += (char)('a' + rng() % 4);
      wc[w] += 1 + rng() % 20;
    }
    uint64_t minf = rng() % 3;
    ref::BpeModel m = ref::train_bpe(wc, plain_options(200, minf));
    size_t reuse = 0;
    std::vector<NaiveMerge> want = naive_bpe(wc, 200, minf, &reuse);
    size_t n = std::min(want.size(), reuse == SIZE_MAX ? want.size() : reuse);
    REQUIRE(m.merges.size() >= n);
    for (size_t i = 0; i < n; i++) {
      INFO("trial " << trial << " merge " << i);
      CHECK(m.merges[i].first == want[i].a);
      CHECK(m.merges[i].second == want[i].b);
    }
    if (reuse == SIZE_MAX) CHECK(m.merges.size() == want.size());
    compared += (int)n;
  }
  CHECK(compared > 300);  // the comparison is not vacuous
}

TEST_CASE("bpe_train: count_words splits lines like HF's train(files) and skips separator lines") {
  ref::WordCounts wc;
  ref::count_words("Hello world\n\x1e\nHello  there\n", wc);
  // GPT-2 split per line: "Hello", " world", "\n" | "Hello", " ", " there", "\n"
  CHECK(wc["Hello"] == 2);
  CHECK(wc[" world"] == 1);
  CHECK(wc[" there"] == 1);
  CHECK(wc[" "] == 1);
  CHECK(wc["\n"] == 2);
  CHECK(wc.count("\x1e") == 0);
}

TEST_CASE("bpe_train: bad settings are refused with clear errors") {
  ref::WordCounts wc = {{"ab", 3}};
  ref::BpeTrainOptions o;
  o.vocab_size = 100;  // < 1 special + 256 characters
  CHECK_THROWS_WITH_AS(ref::train_bpe(wc, o), doctest::Contains("pass a larger --vocab-size"), std::runtime_error);
  o.vocab_size = 1000;
  o.special_tokens = {""};
  CHECK_THROWS_WITH_AS(ref::train_bpe(wc, o), doctest::Contains("empty special token"), std::runtime_error);
  CHECK_THROWS_WITH_AS(ref::count_words_in_files({"/nonexistent/corpus.txt"}), doctest::Contains("cannot open"),
                       std::runtime_error);
}

TEST_CASE("bpe_train: the written tokenizer.json parses, and ref::Tokenizer loads it and round-trips text") {
  ref::WordCounts wc;
  ref::count_words("the cat sat on the mat\nthe dog sat on the log\n", wc);
  ref::BpeTrainOptions o;
  o.vocab_size = 270;
  o.min_frequency = 2;
  ref::BpeModel m = ref::train_bpe(wc, o);
  const std::string path = "/tmp/lfmoe_test_bpe_tokenizer.json";
  ref::write_tokenizer_json(path, m);
  json::Value v = json::parse(ref::tokenizer_json(m));
  CHECK(v.at("model").at("type").as_str() == "BPE");
  CHECK(v.at("model").at("merges").arr.size() == m.merges.size());
  CHECK(v.at("model").at("merges").arr[0].arr.size() == 2);  // ["a", "b"] pairs, as HF writes them
  CHECK(v.at("added_tokens").arr[0].at("content").as_str() == "<|endoftext|>");
  CHECK(v.at("added_tokens").arr[0].at("id").as_int() == 0);
  CHECK(v.at("pre_tokenizer").at("add_prefix_space").as_bool() == false);

  ref::Tokenizer tok = ref::Tokenizer::load(path);
  CHECK(tok.vocab_size() == m.vocab.size());
  CHECK(tok.token_id("<|endoftext|>") == 0);
  const std::string text = "the cat sat on the log\n";
  std::vector<uint32_t> ids = tok.encode(text);
  CHECK(tok.decode(ids) == text);
  CHECK(ids.size() < text.size());  // merges were applied
  remove(path.c_str());
}
