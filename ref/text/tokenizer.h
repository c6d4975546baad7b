// tokenizer.h — BPE tokenizer (byte-level or SentencePiece-style) that loads HuggingFace tokenizer.json files.
//
// encode(text) returns exactly the ids of HF `tokenizer.encode(text, add_special_tokens=False)`
// for the tokenizer.json features listed in docs/TOKENIZER.md; every other feature is refused at
// load time with a message naming it, so a file either loads and matches HF id for id, or fails.
//
// The pipeline, as in HF (TokenizerImpl::encode_single_sequence):
//   text --split on the normalized=false added tokens (raw text)--> pieces
//        --normalizer (NFC/NFD/NFKC/NFKD, Lowercase, Strip, Replace, Prepend, in sequence),
//          on each piece separately--> normalized pieces
//        --split on the normalized=true added tokens (matched by their normalized content)-->
//          segments (added-token ids are emitted as they are)
//        --pre-tokenizer (ByteLevel / Metaspace / Split / Digits, in sequence)--> pre-tokens
//          ("Ġhello" in the byte-level alphabet, "▁hello" with Metaspace)
//        --BPE (merges by rank, leftmost first; byte_fallback: <0xHH> for unknown characters)--> ids
// decode(ids) runs HF's decoder chain (ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)
// on the tokens' strings; with a plain ByteLevel decoder every id maps to a fixed byte string.
//
// Thread safety: a loaded Tokenizer is immutable; encode/decode/pretokenize may be called from
// many threads at once. Each thread keeps its own cache of recently seen pre-tokens (at most
// kCacheEntries, for the tokenizer it used last), so threads never contend.
#pragma once
#include <cstdint>        // uint32_t, int32_t, uint64_t
#include <memory>         // std::shared_ptr
#include <string>         // std::string
#include <string_view>    // pre-tokens handed to BPE
#include <unordered_map>  // vocab and merge maps
#include <vector>         // std::vector

#include "ref/text/regex.h"

namespace ref {

class Tokenizer {
 public:
  static constexpr size_t kCacheEntries = 1 << 16;  // per-thread pre-token cache size cap
  static constexpr size_t kCacheMaxWord = 256;      // longer pre-tokens are not cached
  static constexpr size_t kShortWord = 48;          // BPE of up to this many symbols scans instead of using a heap

  // Reads and parses a tokenizer.json; throws std::runtime_error naming the file and problem.
  static Tokenizer load(const std::string& path);
  // Same from the JSON text; errors name the JSON path ("model.merges[12]: ...").
  static Tokenizer from_json(const std::string& json_text);

  // == HF encode(text, add_special_tokens=false).ids. Any bytes are accepted: an invalid UTF-8
  // byte is treated as one character of category Cs (HF itself only takes valid UTF-8).
  std::vector<uint32_t> encode(const std::string& text) const;
  void encode_append(const std::string& text, std::vector<uint32_t>& out) const;  // no realloc churn

  // HF decode(ids, skip_special_tokens=false): the tokens' strings through the file's decoder
  // chain. ByteLevel: a token made only of byte-level alphabet characters becomes those bytes
  // ("<|endoftext|>" is such a token: ASCII maps to itself), any other token its own UTF-8 text
  // ("<｜end▁of▁sentence｜>"). ByteFallback: a run of <0xHH> tokens becomes those bytes. Unlike
  // HF there is no lossy UTF-8 repair (HF writes U+FFFD for bytes that are not valid UTF-8):
  // the bytes are exact, and equal to HF's output whenever that has no repair. Throws if an id
  // is out of range, or if the file has no decoder.
  std::string decode(const std::vector<uint32_t>& ids) const;

  // Pre-tokens after the added-token split and the pre-tokenizer, in the form BPE sees (byte-level
  // alphabet when the pre-tokenizer has ByteLevel). Added-token matches are not included.
  std::vector<std::string> pretokenize(const std::string& text) const;

  // 1 + the largest id (model vocabulary and added tokens): the embedding table size.
  uint32_t vocab_size() const { return (uint32_t)id_to_token_.size(); }
  int32_t token_id(const std::string& tok) const;      // -1 if absent (added tokens first, as HF)
  const std::string& token_str(uint32_t id) const;     // "" for an unused id; throws if out of range
  bool is_special(uint32_t id) const { return id < id_special_.size() && id_special_[id]; }
  std::string summary() const;                         // one line: model, sizes, pre-tokenizer steps

  // Implementation types (public so helpers in tokenizer.cpp can use them).
  struct AddedToken {
    std::string content;
    // What is matched in the text and what decode and token_str give: the content, or for a
    // normalized=true token the content through the normalizer (as HF's normalized_cache).
    std::string form;
    uint32_t id = 0;
    bool special = false, single_word = false, lstrip = false, rstrip = false, normalized = true;
  };
  struct NormStep {  // one normalizer of the file's (flattened) Sequence
    enum Kind { NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, Prepend } kind = NFC;
    bool strip_left = false, strip_right = false;  // Strip
    std::string literal;                           // Replace with a {"String": ...} pattern
    std::shared_ptr<const Regex> regex;            // Replace with a {"Regex": ...} pattern
    std::string content;                           // Replace: the replacement; Prepend: the prefix
  };
  struct DecStep {  // one decoder of the file's (flattened) Sequence
    enum Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind = ByteLevel;
    std::string literal;                 // Replace (String pattern)
    std::shared_ptr<const Regex> regex;  // Replace (Regex pattern)
    std::string content;                 // Replace: the replacement
    uint32_t ch = 0;                     // Strip: the character; Metaspace: the replacement
    uint64_t start = 0, stop = 0;        // Strip: at most this many at the start / the end
    bool prepend_never = false;          // Metaspace: prepend_scheme == never
  };
  enum class Prepend { Always, First, Never };
  struct PreStep {
    enum Kind { ByteLevel, Split, Digits, Metaspace } kind = ByteLevel;
    std::string replacement;                          // Metaspace (UTF-8 of one character)
    Prepend prepend_scheme = Prepend::Always;         // Metaspace
    bool split = true;                                // Metaspace
    bool add_prefix_space = false, use_regex = true;  // ByteLevel
    std::shared_ptr<const Regex> regex;               // Split (String patterns are escaped)
    enum Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous } behavior = Isolated;
    bool invert = false;                              // Split
    bool individual_digits = false;                   // Digits
  };
  struct Merge { uint32_t rank, new_id; };
  // (left id << 32 | right id) -> Merge, open addressing with linear probing (BPE looks a pair
  // up for every neighbour it forms, so this is the hottest table of a cold encode).
  struct MergeTable {
    static constexpr uint64_t kEmpty = ~0ull;  // no pair of ids < 2^32 - 1 has this key
    struct Slot { uint64_t key; Merge merge; };  // 16 bytes: a lookup touches one cache line
    std::vector<Slot> slots;
    uint64_t mask = 0;
    int shift = 64;
    size_t count = 0;
    void build(const std::vector<std::pair<uint64_t, Merge>>& entries);  // a repeated key keeps its last value
    size_t slot(uint64_t key) const { return (size_t)((key * 0x9E3779B97F4A7C15ull) >> shift) & mask; }
    const Merge* find(uint64_t key) const {
      if (slots.empty()) return nullptr;
      for (size_t i = slot(key);; i = (i + 1) & mask) {
        if (slots[i].key == key) return &slots[i].merge;
        if (slots[i].key == kEmpty) return nullptr;
      }
    }
    size_t size() const { return count; }
  };
  struct Segment { uint32_t begin, end; int64_t id; };  // text bytes [begin, end); id >= 0: an added token
  struct Trie {  // byte trie of added-token contents, for leftmost-longest matching
    std::vector<std::unordered_map<unsigned char, uint32_t>> next{1};
    std::vector<int32_t> token;  // index into added_ per node, -1 if none
    bool first_byte[256] = {};
    bool empty() const { return next.size() == 1; }
  };

 private:
  // Model
  std::unordered_map<std::string, uint32_t> vocab_;  // model vocabulary
  MergeTable merges_;                                 // (left id << 32 | right id) -> rank, result
  std::vector<int32_t> char_id_;                      // code point (< 0x10000) -> id, -1 if absent
  int32_t byte_char_id_[256] = {};                    // byte -> id of its byte-level alphabet character
  bool byte_ids_complete_ = false;                    // every byte_char_id_ >= 0
  bool final_bytelevel_ = false;                      // the pre-tokenizer's last step is ByteLevel
  bool ignore_merges_ = false;
  int64_t unk_id_ = -1;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  int32_t byte_token_[256] = {};  // id of "<0xHH>" per byte, -1 if absent (byte_fallback)
  // Added tokens
  std::vector<AddedToken> added_;
  std::unordered_map<std::string, uint32_t> added_ids_;
  Trie trie_raw_, trie_normalized_;  // normalized=false tokens, normalized=true tokens
  // Normalizer, pre-tokenizer, decoder
  std::vector<NormStep> norm_;
  std::vector<PreStep> steps_;
  bool needs_first_ = false;        // a Metaspace step with prepend_scheme first
  bool has_decoder_ = false;
  bool decoder_bytes_only_ = false;  // the decoder is a single ByteLevel: id_bytes_ concatenated
  std::vector<DecStep> dec_;
  size_t dec_prefix_ = 0;              // leading per-token decoder steps, applied at load:
  std::vector<std::string> id_dec_;    //   each token's string after them
  std::vector<int16_t> id_dec_byte_;   //   and its byte if it then is a <0xHH> token, else -1
  std::string split_mark_;  // "▁" when long pre-tokens may be cut before it (see encode_word_cached)
  // Ids
  std::vector<std::string> id_to_token_;
  std::vector<std::string> id_bytes_;   // what decode emits for each id
  std::vector<bool> id_special_;
  std::string summary_;
  uint64_t serial_ = 0;  // identifies this tokenizer's content for the per-thread caches

  // Calls fn(piece, begin, end, first, id) for every segment of text in order: id >= 0 for an
  // added token, else piece[begin, end) is text for the pre-tokenizer (piece is the raw text or a
  // normalized piece of it); first: it starts at offset 0 of the original text (Metaspace).
  template <class Fn> void for_each_segment(const std::string& text, Fn&& fn) const;
  std::string normalize_piece(const std::string& s) const;
  // The pre-tokenizer on src[b, e): sink(p, n) gets every pre-token (raw bytes when the last step
  // is ByteLevel: final_bytelevel_); run_steps is its step-by-step recursion (tokenizer.cpp).
  template <class Sink> void pretokenize_segment(const std::string& src, uint32_t b, uint32_t e, bool first, Sink& sink) const;
  template <class Sink> void run_steps(size_t k, const char* bytes, const uint32_t* cps, const uint32_t* offs, uint32_t cb,
                                       uint32_t ce, bool first, Sink& sink) const;
  void bpe(std::string_view word, std::vector<uint32_t>& out) const;
  void bpe_raw(std::string_view raw, std::vector<uint32_t>& out) const;  // word = bytes_to_bytelevel(raw)
  void merge_all(std::vector<uint32_t>& out) const;
  void prepare_decoder();
  void encode_word_cached(std::string_view word, std::vector<uint32_t>& out) const;
  void encode_piece_cached(std::string_view word, std::vector<uint32_t>& out) const;

  friend struct TokenizerLoader;
};

// The GPT-2 byte <-> unicode alphabet used by ByteLevel: printable bytes map to themselves, the
// others to U+0100 + n in byte order, so every byte is one visible character ("Ġ" is the space).
const std::vector<std::string>& bytelevel_alphabet();  // 256 UTF-8 strings, index = byte value
std::string bytes_to_bytelevel(const std::string& raw);
// Inverse of bytes_to_bytelevel; returns false if s has a character outside the alphabet.
bool bytelevel_to_bytes(const std::string& s, std::string* raw);
// The ByteLevel(use_regex=true) split with the GPT-2 pattern, as raw byte strings (not mapped).
std::vector<std::string> gpt2_pretokenize(const std::string& text);
// The GPT-2 pattern itself.
extern const char* const kGpt2Pattern;

}  // namespace ref
