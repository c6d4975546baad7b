// bpe_train.cpp — byte-level BPE training (see bpe_train.h for the algorithm and its HF quirks).
#include "ref/text/bpe_train.h"

#include <algorithm>   // sort, push_heap, pop_heap
#include <cstdio>      // fprintf
#include <stdexcept>   // runtime_error

#ifdef _OPENMP
#include <omp.h>       // omp_get_max_threads, omp_get_thread_num (the build may also be OPENMP=0)
#endif

#include "ref/io/file.h"         // read_file, write_file_atomic
#include "ref/io/json.h"         // json::quote
#include "ref/text/tokenizer.h"  // gpt2_pretokenize, bytelevel_alphabet

namespace ref {

// ---------------------------------------------------------------------------------------------
// Word counting

void count_words(const std::string& text, WordCounts& counts) {
  size_t begin = 0;
  while (begin < text.size()) {
    size_t nl = text.find('\n', begin);
    size_t end = nl == std::string::npos ? text.size() : nl + 1;
    // The corpus' document separator line carries no text (see data/README.md).
    bool separator = text[begin] == '\x1e' && (end - begin == 1 || (end - begin == 2 && text[begin + 1] == '\n'));
    if (!separator)
      for (std::string& piece : gpt2_pretokenize(text.substr(begin, end - begin))) counts[std::move(piece)]++;
    begin = end;
  }
}

namespace {

struct Chunk { size_t file, begin, end; };  // a line-aligned byte range of one file

// Cuts every file into ~1 MB line-aligned chunks so that threads share the work evenly.
std::vector<Chunk> line_chunks(const std::vector<std::string>& texts) {
  const size_t target = 1 << 20;
  std::vector<Chunk> chunks;
  for (size_t f = 0; f < texts.size(); f++) {
    size_t begin = 0, n = texts[f].size();
    while (begin < n) {
      size_t end = std::min(n, begin + target);
      if (end < n) {
        size_t nl = texts[f].find('\n', end);
        end = nl == std::string::npos ? n : nl + 1;
      }
      chunks.push_back({f, begin, end});
      begin = end;
    }
  }
  return chunks;
}

}  // namespace

WordCounts count_words_in_files(const std::vector<std::string>& paths, int threads) {
  std::vector<std::string> texts;
  for (const std::string& p : paths) texts.push_back(read_file(p, "check the path (corpus files come from data/build_corpus.sh)"));
  std::vector<Chunk> chunks = line_chunks(texts);
#ifdef _OPENMP
  int nt = threads > 0 ? threads : omp_get_max_threads();
#else
  int nt = 1;
  (void)threads;
#endif
  std::vector<WordCounts> local(nt);  // one map per thread, summed at the end
  #pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
  for (long i = 0; i < (long)chunks.size(); i++) {
    const Chunk& c = chunks[i];
#ifdef _OPENMP
    WordCounts& mine = local[omp_get_thread_num()];
#else
    WordCounts& mine = local[0];
#endif
    count_words(texts[c.file].substr(c.begin, c.end - c.begin), mine);
  }
  WordCounts total = std::move(local[0]);
  for (int t = 1; t < nt; t++)
    for (auto& kv : local[t]) total[kv.first] += kv.second;
  return total;
}

// ---------------------------------------------------------------------------------------------
// Training

namespace {

using PairKey = uint64_t;  // (a << 32) | b: comparing keys compares (a, b) lexicographically
PairKey pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a << 32) | b; }
uint32_t pair_first(PairKey p) { return (uint32_t)(p >> 32); }
uint32_t pair_second(PairKey p) { return (uint32_t)p; }

// First code point of a UTF-8 string (the ByteLevel characters are 1 or 2 bytes long).
uint32_t first_code_point(const std::string& s) {
  const unsigned char* p = (const unsigned char*)s.data();
  if (p[0] < 0x80) return p[0];
  if ((p[0] & 0xE0) == 0xC0) return ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
  return ((p[0] & 0x0F) << 12) | ((p[1] & 0x3F) << 6) | (p[2] & 0x3F);
}

// A candidate merge in the heap. `pos` lists the words where the pair was seen when the entry
// was pushed; the merge is applied to those words only (as HF does).
struct Entry {
  uint64_t count;
  PairKey pair;
  uint64_t seq;               // push order of fresh entries; breaks (count, pair) ties oldest first
  std::vector<uint32_t> pos;  // word indices, each once
};

// "less" for a max-heap: higher count first, then the smaller pair, then the older entry.
struct EntryLess {
  bool operator()(const Entry& x, const Entry& y) const {
    if (x.count != y.count) return x.count < y.count;
    if (x.pair != y.pair) return x.pair > y.pair;
    return x.seq > y.seq;
  }
};

// All words' symbols live in one flat array; a word only shrinks when merged, in place.
struct Words {
  std::vector<uint32_t> sym;
  std::vector<uint64_t> start;
  std::vector<uint32_t> len;
  std::vector<uint64_t> count;
};

// Pairs that gained occurrences during one merge step, with the words where they did.
using Gains = std::unordered_map<PairKey, std::vector<uint32_t>>;

struct Trainer {
  const BpeTrainOptions& opt;
  std::vector<std::string> id_to_token;
  std::unordered_map<std::string, uint32_t> token_to_id;
  uint32_t byte_id[256];
  Words words;
  std::unordered_map<PairKey, int64_t> pair_counts;
  std::vector<Entry> heap;
  uint64_t next_seq = 0;
  std::vector<std::pair<PairKey, uint32_t>> merges;  // (pair, id of the merged token)

  explicit Trainer(const BpeTrainOptions& o) : opt(o) {}

  uint32_t add_token(const std::string& s) {
    auto it = token_to_id.find(s);
    if (it != token_to_id.end()) return it->second;
    uint32_t id = (uint32_t)id_to_token.size();
    id_to_token.push_back(s);
    token_to_id.emplace(s, id);
    return id;
  }

  // Specials first, then the alphabet in code point order of the ByteLevel characters.
  void build_alphabet(const WordCounts& counts) {
    for (const std::string& s : opt.special_tokens) {
      if (s.empty()) throw std::runtime_error("bpe_train: empty special token; pass non-empty --special strings");
      add_token(s);
    }
    bool seen[256] = {false};
    if (opt.full_byte_alphabet) std::fill(seen, seen + 256, true);
    else
      for (const auto& kv : counts)
        for (unsigned char c : kv.first) seen[c] = true;
    const std::vector<std::string>& alphabet = bytelevel_alphabet();
    std::vector<std::pair<uint32_t, int>> order;  // (code point, byte)
    for (int b = 0; b < 256; b++)
      if (seen[b]) order.push_back({first_code_point(alphabet[b]), b});
    std::sort(order.begin(), order.end());
    for (auto& cb : order) byte_id[cb.second] = add_token(alphabet[cb.second]);
    if (opt.vocab_size < id_to_token.size())
      throw std::runtime_error("bpe_train: vocab_size " + std::to_string(opt.vocab_size) +
                               " is smaller than the special tokens plus the alphabet (" +
                               std::to_string(id_to_token.size()) + "); pass a larger --vocab-size");
  }

  // Words in a fixed order (sorted bytes), so that runs are reproducible whatever the hash order.
  void build_words(const WordCounts& counts) {
    std::vector<const std::pair<const std::string, uint64_t>*> sorted;
    sorted.reserve(counts.size());
    for (const auto& kv : counts)
      if (!kv.first.empty() && kv.second > 0) sorted.push_back(&kv);
    std::sort(sorted.begin(), sorted.end(), [](auto* x, auto* y) { return x->first < y->first; });
    for (auto* kv : sorted) {
      words.start.push_back(words.sym.size());
      words.len.push_back((uint32_t)kv->first.size());
      words.count.push_back(kv->second);
      for (unsigned char c : kv->first) words.sym.push_back(byte_id[c]);
    }
  }

  void push_entry(PairKey p, uint64_t count, std::vector<uint32_t>&& pos, uint64_t seq) {
    heap.push_back(Entry{count, p, seq, std::move(pos)});
    std::push_heap(heap.begin(), heap.end(), EntryLess());
  }

  // Pushes one fresh entry per gained pair whose current count is positive.
  void push_gains(Gains& gains) {
    // Sorted so that seq numbers do not depend on hash order.
    std::vector<PairKey> keys;
    keys.reserve(gains.size());
    for (auto& kv : gains) keys.push_back(kv.first);
    std::sort(keys.begin(), keys.end());
    for (PairKey p : keys) {
      int64_t c = pair_counts[p];
      if (c > 0) push_entry(p, (uint64_t)c, std::move(gains[p]), next_seq++);
    }
    gains.clear();
  }

  void count_pairs() {
    Gains where;
    for (uint32_t w = 0; w < words.len.size(); w++) {
      const uint32_t* s = &words.sym[words.start[w]];
      for (uint32_t i = 0; i + 1 < words.len[w]; i++) {
        PairKey p = pair_key(s[i], s[i + 1]);
        pair_counts[p] += (int64_t)words.count[w];
        std::vector<uint32_t>& v = where[p];
        if (v.empty() || v.back() != w) v.push_back(w);
      }
    }
    push_gains(where);
  }

  void change(PairKey p, int delta, uint32_t w, Gains& gains) {
    pair_counts[p] += delta * (int64_t)words.count[w];
    if (delta > 0) {
      std::vector<uint32_t>& v = gains[p];
      if (v.empty() || v.back() != w) v.push_back(w);
    }
  }

  // Replaces every non-overlapping (a, b), left to right, by z in word w and records the pair
  // changes exactly as HF's Word::merge does: the left neighbour is the symbol already written
  // (possibly a z from this same pass), the right neighbour the next symbol not yet scanned.
  void merge_word(uint32_t w, uint32_t a, uint32_t b, uint32_t z, Gains& gains) {
    uint32_t* s = &words.sym[words.start[w]];
    uint32_t n = words.len[w], out = 0, i = 0;
    while (i < n) {
      if (i + 1 < n && s[i] == a && s[i + 1] == b) {
        if (out > 0) {
          change(pair_key(s[out - 1], a), -1, w, gains);
          change(pair_key(s[out - 1], z), +1, w, gains);
        }
        if (i + 2 < n) {
          change(pair_key(b, s[i + 2]), -1, w, gains);
          change(pair_key(z, s[i + 2]), +1, w, gains);
        }
        s[out++] = z;
        i += 2;
      } else {
        s[out++] = s[i++];
      }
    }
    words.len[w] = out;
  }

  void merge_loop() {
    Gains gains;
    while (id_to_token.size() < opt.vocab_size && !heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), EntryLess());
      Entry top = std::move(heap.back());
      heap.pop_back();
      int64_t current = pair_counts[top.pair];
      if ((int64_t)top.count != current) {  // stale: push back with the current count
        top.count = (uint64_t)std::max<int64_t>(current, 0);
        heap.push_back(std::move(top));
        std::push_heap(heap.begin(), heap.end(), EntryLess());
        continue;
      }
      if (top.count < 1 || opt.min_frequency > top.count) break;
      uint32_t a = pair_first(top.pair), b = pair_second(top.pair);
      uint32_t z = add_token(id_to_token[a] + id_to_token[b]);
      merges.push_back({top.pair, z});
      for (uint32_t w : top.pos) merge_word(w, a, b, z, gains);
      push_gains(gains);
      if (opt.verbose && merges.size() % 2000 == 0)
        fprintf(stderr, "bpe_train: %zu merges, vocab %zu, last count %llu, heap %zu\n", merges.size(),
                id_to_token.size(), (unsigned long long)top.count, heap.size());
    }
  }

  // HF keeps merges in a map pair -> (rank, id): a pair merged twice keeps its last rank.
  BpeModel result() const {
    BpeModel m;
    m.vocab = id_to_token;
    m.special_tokens = opt.special_tokens;
    std::unordered_map<PairKey, size_t> last;
    for (size_t r = 0; r < merges.size(); r++) last[merges[r].first] = r;
    for (size_t r = 0; r < merges.size(); r++)
      if (last[merges[r].first] == r)
        m.merges.push_back({id_to_token[pair_first(merges[r].first)], id_to_token[pair_second(merges[r].first)]});
    return m;
  }
};

}  // namespace

BpeModel train_bpe(const WordCounts& counts, const BpeTrainOptions& opt) {
  Trainer t(opt);
  t.build_alphabet(counts);
  t.build_words(counts);
  t.count_pairs();
  if (opt.verbose)
    fprintf(stderr, "bpe_train: %zu distinct words, %zu distinct pairs, alphabet+specials %zu\n", t.words.len.size(),
            t.pair_counts.size(), t.id_to_token.size());
  t.merge_loop();
  return t.result();
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json

std::string tokenizer_json(const BpeModel& m) {
  std::string j;
  j += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": [";
  for (size_t i = 0; i < m.special_tokens.size(); i++) {
    uint32_t id = 0;
    while (id < m.vocab.size() && m.vocab[id] != m.special_tokens[i]) id++;
    j += i ? ",\n" : "\n";
    j += "    {\"id\": " + std::to_string(id) + ", \"content\": " + json::quote(m.special_tokens[i]) +
         ", \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}";
  }
  j += m.special_tokens.empty() ? "],\n" : "\n  ],\n";
  j += "  \"normalizer\": null,\n";
  j += "  \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, \"use_regex\": true},\n";
  j += "  \"post_processor\": null,\n";
  j += "  \"decoder\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"trim_offsets\": true, \"use_regex\": true},\n";
  j += "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
       "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n    \"fuse_unk\": false,\n"
       "    \"byte_fallback\": false,\n    \"ignore_merges\": false,\n    \"vocab\": {";
  for (size_t id = 0; id < m.vocab.size(); id++)
    j += (id ? ",\n      " : "\n      ") + json::quote(m.vocab[id]) + ": " + std::to_string(id);
  j += m.vocab.empty() ? "},\n    \"merges\": [" : "\n    },\n    \"merges\": [";
  for (size_t r = 0; r < m.merges.size(); r++)
    j += (r ? ",\n      [" : "\n      [") + json::quote(m.merges[r].first) + ", " + json::quote(m.merges[r].second) + "]";
  j += m.merges.empty() ? "]\n  }\n}\n" : "\n    ]\n  }\n}\n";
  return j;
}

void write_tokenizer_json(const std::string& path, const BpeModel& model) {
  const std::string text = tokenizer_json(model);
  write_file_atomic(path, text.data(), text.size());
}

}  // namespace ref
