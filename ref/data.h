// data.h — token streams and the batch loader.
//
// A token file is either a shard (llm.c layout, see shard.h) or any other file, read as raw bytes
// (vocab 256) so the trainer runs on plain text before a tokenizer exists. The loader cuts the
// stream into non-overlapping windows of T+1 tokens (input = first T, target = last T), visits them
// in a seeded random order that is re-drawn every epoch, and its whole state is one counter, so a
// checkpoint can resume it exactly.
#pragma once
#include <cstdint>  // uint64_t
#include <string>   // std::string
#include <vector>   // std::vector

namespace ref {

struct TokenData {
  std::vector<uint32_t> tokens;
  bool raw_bytes = false;  // true when the file was not a shard
  uint32_t max_token() const;
};

// Reads a shard, or raw bytes when the file does not start with the shard magic and is not named
// *.bin (a .bin file with another magic is a damaged shard). Throws with the path and the problem
// (missing, empty, truncated shard, ...).
TokenData load_tokens(const std::string& path);

// Splits off the last `frac` of the tokens as a validation stream (when no validation file is given).
void split_tail(TokenData& all, TokenData& val, double frac);

class Loader {
 public:
  Loader(const std::vector<uint32_t>* tokens, int B, int T, uint64_t seed, bool shuffle);
  // Fills inputs and targets (B*T each) with the next B windows.
  void next(std::vector<int>& inputs, std::vector<int>& targets);
  uint64_t position() const { return pos_; }  // windows consumed so far (the loader's whole state)
  void seek(uint64_t pos) { pos_ = pos; }
  uint64_t windows() const { return n_windows_; }

 private:
  uint64_t window_at(uint64_t p);  // start token of the p-th window visited
  const std::vector<uint32_t>* tokens_;
  int B_, T_;
  uint64_t seed_, n_windows_, pos_ = 0, perm_epoch_ = ~0ull;
  bool shuffle_;
  std::vector<uint64_t> perm_;
};

}  // namespace ref
