// bpe_train.h — training a byte-level BPE tokenizer, written as a HuggingFace tokenizer.json.
//
// The algorithm follows HF tokenizers' BpeTrainer (tokenizers/src/models/bpe/trainer.rs) closely
// enough that, on the same word counts and settings, the merges come out identical:
//   1. vocabulary = special tokens (in the given order), then the alphabet sorted by code point of
//      its ByteLevel character (all 256 with initial_alphabet = ByteLevel.alphabet(), else only the
//      characters seen);
//   2. every word (a GPT-2 ByteLevel pre-token, counted over the corpus) starts as its characters;
//   3. pair counts are weighted by word counts; a max-heap orders candidate merges by
//      (count descending, then the pair of ids (a, b) ascending); entries are refreshed lazily
//      (a popped entry whose count is stale is pushed back with the current count);
//   4. the best pair is merged in the words listed in its heap entry; the pairs this creates or
//      destroys update the counts, and every pair that gained occurrences gets a new heap entry
//      listing the words where it gained them;
//   5. stop when the vocabulary reaches vocab_size, the heap is empty, or the best count is below
//      max(1, min_frequency).
// Quirks kept on purpose because HF has them: the merged pair's own count is not decremented; a
// merge whose string already exists reuses that id (so the vocabulary can grow by less than one
// per merge); a pair merged twice keeps only its last rank in the written merges.
// The one choice HF leaves open: two heap entries with equal (count, pair) pop oldest first (HF's
// BinaryHeap order among equal elements is unspecified).
#pragma once
#include <cstdint>        // uint32_t, uint64_t
#include <string>         // std::string
#include <unordered_map>  // std::unordered_map
#include <utility>        // std::pair
#include <vector>         // std::vector

namespace ref {

struct BpeTrainOptions {
  uint32_t vocab_size = 32064;                                // target size, specials included
  uint64_t min_frequency = 2;                                 // smallest pair count that still merges
  std::vector<std::string> special_tokens = {"<|endoftext|>"};  // ids 0, 1, ... in this order
  bool full_byte_alphabet = true;  // all 256 ByteLevel chars (HF: initial_alphabet=ByteLevel.alphabet())
  bool verbose = false;            // progress lines on stderr
};

// Counts of words (GPT-2 pre-tokens), keyed by the word's raw bytes (not ByteLevel-mapped).
using WordCounts = std::unordered_map<std::string, uint64_t>;

struct BpeModel {
  std::vector<std::string> vocab;  // id -> token in ByteLevel characters (specials verbatim)
  std::vector<std::pair<std::string, std::string>> merges;  // rank order, ByteLevel characters
  std::vector<std::string> special_tokens;                  // their ids are 0 .. n-1
};

// Adds the pre-tokens of every line of `text` to `counts`. Lines keep their '\n' (as HF's
// train(files) reads them); a line that is exactly the document separator "\x1e\n" is skipped.
void count_words(const std::string& text, WordCounts& counts);

// Reads the files and counts their words, splitting the work over `threads` OpenMP threads
// (0 = OpenMP's default). Throws std::runtime_error naming a file that cannot be read.
WordCounts count_words_in_files(const std::vector<std::string>& paths, int threads = 0);

// Runs the merge loop described above. Throws if vocab_size cannot even hold the specials and the
// alphabet, or a special token is empty.
BpeModel train_bpe(const WordCounts& counts, const BpeTrainOptions& opt);

// The tokenizer.json text HF tokenizers loads: BPE model (vocab + merges as ["a","b"] pairs),
// added_tokens for the specials, ByteLevel pre-tokenizer (add_prefix_space=false, trim_offsets,
// use_regex) and decoder, no normalizer, no post-processor.
std::string tokenizer_json(const BpeModel& model);

// Writes tokenizer_json(model) atomically (path.tmp, fsync, rename).
void write_tokenizer_json(const std::string& path, const BpeModel& model);

}  // namespace ref
