// data.cpp — see data.h.
#include "ref/data.h"

#include <algorithm>  // std::max_element
#include <cstring>    // std::memcpy
#include <fstream>    // std::ifstream
#include <stdexcept>  // std::runtime_error

#include "ref/rng.h"    // Rng
#include "ref/io/shard.h"  // read_shard, kShardMagic

namespace ref {

uint32_t TokenData::max_token() const {
  return tokens.empty() ? 0 : *std::max_element(tokens.begin(), tokens.end());
}

TokenData load_tokens(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open (does the file exist? build data with `make data`)");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TokenData d;
  int32_t magic = 0;
  if (bytes.size() >= 4) std::memcpy(&magic, bytes.data(), 4);
  // A file named *.bin is always read as a shard, so that a shard with a damaged header is reported
  // instead of being trained on as raw bytes.
  const bool named_shard = path.size() >= 4 && path.compare(path.size() - 4, 4, ".bin") == 0;
  if (magic == kShardMagic || named_shard) {
    d.tokens = read_shard(path);  // does every header and size check
  } else {
    d.raw_bytes = true;
    d.tokens.assign((const unsigned char*)bytes.data(), (const unsigned char*)bytes.data() + bytes.size());
  }
  if (d.tokens.size() < 2) throw std::runtime_error(path + ": holds fewer than 2 tokens; nothing to train on");
  return d;
}

void split_tail(TokenData& all, TokenData& val, double frac) {
  const size_t n_val = (size_t)(all.tokens.size() * frac);
  val.raw_bytes = all.raw_bytes;
  val.tokens.assign(all.tokens.end() - n_val, all.tokens.end());
  all.tokens.resize(all.tokens.size() - n_val);
}

Loader::Loader(const std::vector<uint32_t>* tokens, int B, int T, uint64_t seed, bool shuffle)
    : tokens_(tokens), B_(B), T_(T), seed_(seed), shuffle_(shuffle) {
  n_windows_ = tokens->size() > 1 ? (tokens->size() - 1) / (uint64_t)T : 0;
  if (n_windows_ < 1)
    throw std::runtime_error("data has " + std::to_string(tokens->size()) + " tokens, fewer than one window of T+1 = " +
                             std::to_string(T + 1) + "; use more data or a shorter --seq");
}

uint64_t Loader::window_at(uint64_t p) {
  const uint64_t epoch = p / n_windows_, i = p % n_windows_;
  if (!shuffle_) return i * T_;
  if (epoch != perm_epoch_) {  // Fisher-Yates with a generator seeded per epoch: resumable from p alone
    perm_.resize(n_windows_);
    for (uint64_t k = 0; k < n_windows_; ++k) perm_[k] = k;
    Rng rng(seed_ * 0x9E3779B97F4A7C15ull + epoch + 1);
    for (uint64_t k = n_windows_ - 1; k > 0; --k) std::swap(perm_[k], perm_[rng.below(k + 1)]);
    perm_epoch_ = epoch;
  }
  return perm_[i] * T_;
}

void Loader::next(std::vector<int>& inputs, std::vector<int>& targets) {
  inputs.resize((size_t)B_ * T_);
  targets.resize((size_t)B_ * T_);
  for (int b = 0; b < B_; ++b) {
    const uint64_t start = window_at(pos_++);
    for (int t = 0; t < T_; ++t) {
      inputs[(size_t)b * T_ + t] = (int)(*tokens_)[start + t];
      targets[(size_t)b * T_ + t] = (int)(*tokens_)[start + t + 1];
    }
  }
}

}  // namespace ref
