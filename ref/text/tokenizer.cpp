// tokenizer.cpp — HF tokenizer.json loader and byte-level BPE encode/decode; see tokenizer.h.
//
// Each step below mirrors one component of HuggingFace `tokenizers` (AddedVocabulary,
// pre_tokenizers::{ByteLevel, Split, Digits, Sequence}, models::bpe, decoders::ByteLevel); the
// comments say which behaviour of the original each piece reproduces and why it matters for ids.
#include "ref/text/tokenizer.h"

#include <algorithm>   // std::max, std::sort, std::push_heap, std::pop_heap
#include <atomic>      // serial numbers for the per-thread caches
#include <cstring>     // std::memcpy, std::memcmp
#include <deque>       // per-step scratch buffers
#include <cstdio>      // snprintf
#include <fstream>     // std::ifstream
#include <sstream>     // std::ostringstream
#include <stdexcept>   // std::runtime_error

#include "ref/io/json.h"
#include "ref/text/normalize.h"
#include "ref/text/unicode_tables.h"

namespace ref {

const char* const kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ---------------------------------------------------------------------------------------------
// The byte-level alphabet (GPT-2's bytes_to_unicode)
// ---------------------------------------------------------------------------------------------
namespace {

// Code point standing for each byte: printable Latin-1 bytes stand for themselves, the other 68
// get U+0100, U+0101, ... in byte order.
const std::vector<uint32_t>& byte_to_cp() {
  static const std::vector<uint32_t> table = [] {
    std::vector<uint32_t> t(256);
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; b++) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? b : next++;
    }
    return t;
  }();
  return table;
}

// Inverse: code point (< 0x144) -> byte, -1 if not in the alphabet.
const std::vector<int>& cp_to_byte() {
  static const std::vector<int> table = [] {
    std::vector<int> t(0x144, -1);
    for (int b = 0; b < 256; b++) t[byte_to_cp()[b]] = b;
    return t;
  }();
  return table;
}

const Regex& gpt2_regex() {
  static const Regex re(kGpt2Pattern);
  return re;
}

}  // namespace

const std::vector<std::string>& bytelevel_alphabet() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    for (int b = 0; b < 256; b++) append_utf8(t[b], byte_to_cp()[b]);
    return t;
  }();
  return table;
}

std::string bytes_to_bytelevel(const std::string& raw) {
  const std::vector<std::string>& alpha = bytelevel_alphabet();
  std::string out;
  out.reserve(raw.size() * 2);
  for (unsigned char c : raw) out += alpha[c];
  return out;
}

bool bytelevel_to_bytes(const std::string& s, std::string* raw) {
  std::vector<uint32_t> cps, offsets;
  decode_utf8(s, cps, offsets);
  std::string out;
  out.reserve(cps.size());
  for (uint32_t cp : cps) {
    if (cp >= cp_to_byte().size() || cp_to_byte()[cp] < 0) return false;
    out += (char)cp_to_byte()[cp];
  }
  *raw = std::move(out);
  return true;
}

namespace {

// A regex split with the Isolated behaviour: the matches and the gaps between them, in order, as
// code point ranges of text[0, n) offset by `base`, empty ones dropped (matches/stack: scratch).
void isolated_ranges(const Regex& re, const uint32_t* text, uint32_t n, uint32_t base,
                     std::vector<std::pair<uint32_t, uint32_t>>& matches, std::vector<std::pair<uint32_t, uint32_t>>& stack,
                     std::vector<std::pair<uint32_t, uint32_t>>& out) {
  re.find_all(text, n, matches, stack);
  uint32_t prev = 0;
  for (const auto& m : matches) {
    if (m.first > prev) out.emplace_back(base + prev, base + m.first);
    if (m.second > m.first) out.emplace_back(base + m.first, base + m.second);
    prev = m.second;
  }
  if (prev < n) out.emplace_back(base + prev, base + n);
}

// The same split as strings. Used by ByteLevel(use_regex=true) through gpt2_pretokenize.
void split_isolated(const Regex& re, const std::string& text, std::vector<std::string>& out) {
  std::vector<uint32_t> cps, offsets;
  std::vector<std::pair<uint32_t, uint32_t>> matches, stack, ranges;
  decode_utf8(text, cps, offsets);
  isolated_ranges(re, cps.data(), (uint32_t)cps.size(), 0, matches, stack, ranges);
  for (const auto& r : ranges) out.emplace_back(text, offsets[r.first], offsets[r.second] - offsets[r.first]);
}

}  // namespace

std::vector<std::string> gpt2_pretokenize(const std::string& text) {
  std::vector<std::string> out;
  if (!text.empty()) split_isolated(gpt2_regex(), text, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Loading tokenizer.json
// ---------------------------------------------------------------------------------------------
namespace {

[[noreturn]] void refuse(const std::string& where, const std::string& what) {
  throw std::runtime_error(where + ": " + what);
}

const json::Value* get(const json::Value& obj, const std::string& key, const std::string& where) {
  if (!obj.is(json::Value::Object)) refuse(where, std::string("expected an object, got ") + json::type_name(obj.type));
  return obj.find(key);
}

// Optional bool field: absent or null gives the default.
bool get_bool(const json::Value& obj, const std::string& key, bool dflt, const std::string& where) {
  const json::Value* v = get(obj, key, where);
  if (!v || v->is(json::Value::Null)) return dflt;
  if (!v->is(json::Value::Bool)) refuse(where + "." + key, std::string("expected true/false, got ") + json::type_name(v->type));
  return v->b;
}

const std::string& get_str(const json::Value& obj, const std::string& key, const std::string& where) {
  const json::Value* v = get(obj, key, where);
  if (!v) refuse(where, "missing key '" + key + "'");
  if (!v->is(json::Value::String)) refuse(where + "." + key, std::string("expected a string, got ") + json::type_name(v->type));
  return v->str;
}

// Refuses keys this loader does not know: an unknown option might change the ids.
void check_keys(const json::Value& obj, std::initializer_list<const char*> known, const std::string& where) {
  for (const auto& kv : obj.obj) {
    bool ok = false;
    for (const char* k : known) ok = ok || kv.first == k;
    if (!ok) refuse(where, "unknown key '" + kv.first + "' (not supported by this loader; it could change the ids)");
  }
}

std::string regex_escape(const std::string& literal) {
  std::vector<uint32_t> cps, offsets;
  decode_utf8(literal, cps, offsets);
  std::string out;
  for (uint32_t cp : cps) {
    bool plain = cp >= 128 || (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (!plain) out += '\\';
    append_utf8(out, cp);
  }
  return out;
}

}  // namespace

struct TokenizerLoader {
  Tokenizer& t;

  void load(const json::Value& root) {
    if (!root.is(json::Value::Object)) refuse("tokenizer.json", "top level must be an object");
    check_keys(root, {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer",
                      "model", "post_processor", "decoder"}, "tokenizer.json");
    for (const char* k : {"truncation", "padding"}) {
      const json::Value* v = root.find(k);
      if (v && !v->is(json::Value::Null))
        refuse(k, "is set; HF would truncate/pad the ids. Set it to null in the file (this loader encodes plain text)");
    }
    // HF refuses any other serialization version ("Unknown tokenizer version '2.0'"); a file
    // without the key loads.
    if (const json::Value* v = root.find("version")) {
      if (!v->is(json::Value::String)) refuse("version", "expected the string \"1.0\"");
      if (v->str != "1.0")
        refuse("version", "unknown tokenizer version '" + v->str + "' (HF tokenizers reads only \"1.0\" and refuses this file too)");
    }
    const json::Value* model = root.find("model");
    if (!model) refuse("tokenizer.json", "missing key 'model'");
    load_model(*model);
    // The normalizer first: normalized=true added tokens are matched by their normalized content.
    const json::Value* norm = root.find("normalizer");
    if (norm && !norm->is(json::Value::Null)) load_normalizer(*norm, "normalizer");
    load_added_tokens(root.find("added_tokens"));
    const json::Value* pre = root.find("pre_tokenizer");
    if (pre && !pre->is(json::Value::Null)) load_pre_tokenizer(*pre, "pre_tokenizer");
    check_pipeline();
    load_post_processor(root.find("post_processor"), "post_processor");
    const json::Value* dec = root.find("decoder");
    if (dec && !dec->is(json::Value::Null)) {
      load_decoder(*dec, "decoder");
      t.has_decoder_ = true;
      t.decoder_bytes_only_ = t.dec_.size() == 1 && t.dec_[0].kind == Tokenizer::DecStep::ByteLevel;
    }
    build_id_tables();
  }

  // --- model ---------------------------------------------------------------------------------
  void load_model(const json::Value& m) {
    const std::string w = "model";
    if (!m.is(json::Value::Object)) refuse(w, "expected an object");
    const json::Value* type = m.find("type");
    if (!type) refuse(w, "missing 'type' (expected \"BPE\")");
    if (!type->is(json::Value::String) || type->str != "BPE")
      refuse(w + ".type", "'" + (type->is(json::Value::String) ? type->str : std::string("?")) +
                              "' is not supported: this loader implements byte-level BPE only (not WordPiece, Unigram, WordLevel)");
    check_keys(m, {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                   "byte_fallback", "ignore_merges", "vocab", "merges"}, w);
    const json::Value* dropout = m.find("dropout");
    if (dropout && !dropout->is(json::Value::Null) && !(dropout->is(json::Value::Number) && dropout->num == 0.0))
      refuse(w + ".dropout", "BPE dropout is random at encode time; set it to null");
    t.byte_fallback_ = get_bool(m, "byte_fallback", false, w);
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const json::Value* v = m.find(k);
      if (v && !v->is(json::Value::Null) && !(v->is(json::Value::String) && v->str.empty()))
        refuse(w + "." + k, "is set; subword prefixes/suffixes are not supported by this byte-level loader");
    }
    t.fuse_unk_ = get_bool(m, "fuse_unk", false, w);
    t.ignore_merges_ = get_bool(m, "ignore_merges", false, w);
    load_vocab(m);
    load_merges(m);
    const json::Value* unk = m.find("unk_token");
    if (unk && !unk->is(json::Value::Null)) {
      if (!unk->is(json::Value::String)) refuse(w + ".unk_token", "expected a string or null");
      auto it = t.vocab_.find(unk->str);
      if (it == t.vocab_.end()) refuse(w + ".unk_token", "'" + unk->str + "' is not in model.vocab");
      t.unk_id_ = it->second;
    }
    // byte_fallback: an unknown character becomes the tokens "<0xHH>" of its UTF-8 bytes (HF
    // formats them with {:#04X}: "<0x0A>"), when all of them are in the vocabulary.
    for (int b = 0; b < 256; b++) {
      char name[8];
      snprintf(name, sizeof name, "<0x%02X>", b);
      auto it = t.vocab_.find(name);
      t.byte_token_[b] = it == t.vocab_.end() ? -1 : (int32_t)it->second;
    }
  }

  void load_vocab(const json::Value& m) {
    const json::Value* vocab = m.find("vocab");
    if (!vocab || !vocab->is(json::Value::Object)) refuse("model.vocab", "missing or not an object {token: id}");
    t.vocab_.reserve(vocab->obj.size() * 2);
    for (const auto& kv : vocab->obj) {
      const std::string w = "model.vocab[" + json::quote(kv.first) + "]";
      if (!kv.second.is(json::Value::Number)) refuse(w, "id must be a number");
      int64_t id = kv.second.as_int();
      if (id < 0 || id >= (int64_t)1 << 31) refuse(w, "id " + std::to_string(id) + " out of range [0, 2^31)");
      if (!t.vocab_.emplace(kv.first, (uint32_t)id).second) refuse(w, "duplicate token");
    }
  }

  uint32_t vocab_id(const std::string& tok, const std::string& where) const {
    auto it = t.vocab_.find(tok);
    if (it == t.vocab_.end()) refuse(where, "token " + json::quote(tok) + " is not in model.vocab");
    return it->second;
  }

  void load_merges(const json::Value& m) {
    const json::Value* merges = m.find("merges");
    if (!merges) refuse("model", "missing key 'merges'");
    if (!merges->is(json::Value::Array)) refuse("model.merges", "expected an array");
    std::vector<std::pair<uint64_t, Tokenizer::Merge>> entries;
    entries.reserve(merges->arr.size());
    for (size_t i = 0; i < merges->arr.size(); i++) {
      const json::Value& e = merges->arr[i];
      const std::string w = "model.merges[" + std::to_string(i) + "]";
      std::string a, b;
      if (e.is(json::Value::String)) {  // "a b"
        size_t sp = e.str.find(' ');
        if (sp == std::string::npos || e.str.find(' ', sp + 1) != std::string::npos)
          refuse(w, "expected \"left right\" with exactly one space, got " + json::quote(e.str));
        a = e.str.substr(0, sp);
        b = e.str.substr(sp + 1);
      } else if (e.is(json::Value::Array) && e.arr.size() == 2 && e.arr[0].is(json::Value::String) &&
                 e.arr[1].is(json::Value::String)) {  // ["a", "b"]
        a = e.arr[0].str;
        b = e.arr[1].str;
      } else {
        refuse(w, "expected \"left right\" or [\"left\", \"right\"]");
      }
      uint32_t ia = vocab_id(a, w), ib = vocab_id(b, w), inew = vocab_id(a + b, w + " (merged result)");
      entries.push_back({(uint64_t)ia << 32 | ib, Tokenizer::Merge{(uint32_t)i, inew}});
    }
    // Like HF's HashMap collect: a repeated pair keeps the rank of its last occurrence.
    t.merges_.build(entries);
  }

  // --- added tokens ----------------------------------------------------------------------------
  // HF ignores the "id" written in the file and assigns ids itself (the model's id if the content
  // is in the vocabulary, else the next free id after the vocabulary); it only warns when they
  // differ. We compute the same ids and refuse a file whose ids disagree, since such a file would
  // not mean what it says.
  void load_added_tokens(const json::Value* list) {
    if (!list || list->is(json::Value::Null)) return;
    if (!list->is(json::Value::Array)) refuse("added_tokens", "expected an array");
    int64_t max_added = -1;
    const uint32_t model_size = (uint32_t)t.vocab_.size();
    for (size_t i = 0; i < list->arr.size(); i++) {
      const json::Value& e = list->arr[i];
      const std::string w = "added_tokens[" + std::to_string(i) + "]";
      check_keys(e, {"id", "content", "single_word", "lstrip", "rstrip", "normalized", "special"}, w);
      Tokenizer::AddedToken tok;
      tok.content = get_str(e, "content", w);
      const json::Value* idv = e.find("id");
      if (!idv || !idv->is(json::Value::Number)) refuse(w, "missing numeric 'id'");
      int64_t file_id = idv->as_int();
      tok.special = get_bool(e, "special", false, w);
      tok.single_word = get_bool(e, "single_word", false, w);
      tok.lstrip = get_bool(e, "lstrip", false, w);
      tok.rstrip = get_bool(e, "rstrip", false, w);
      tok.normalized = get_bool(e, "normalized", true, w);
      if (tok.content.empty()) continue;  // HF skips empty added tokens
      if (t.added_ids_.count(tok.content)) refuse(w, "duplicate added token " + json::quote(tok.content));
      int64_t id;
      auto in_vocab = t.vocab_.find(tok.content);
      if (in_vocab != t.vocab_.end()) id = in_vocab->second;
      else if (max_added < 0) id = model_size;
      else id = (max_added >= (int64_t)model_size || model_size == 0) ? max_added + 1 : model_size;
      if (id != file_id)
        refuse(w, "token " + json::quote(tok.content) + " has id " + std::to_string(file_id) +
                      " in the file, but HF tokenizers would give it id " + std::to_string(id) +
                      " (model vocab id if present, else the next id after the vocabulary); fix the file");
      max_added = std::max(max_added, id);
      tok.id = (uint32_t)id;
      t.added_ids_[tok.content] = tok.id;
      t.added_.push_back(tok);
    }
    // HF (AddedVocabulary::add_tokens) matches a normalized=true token by its content passed
    // through the normalizer ("<x>" is looked for as "▁<x>" after a Prepend("▁")).
    std::unordered_map<std::string, size_t> normalized_seen;
    for (size_t k = 0; k < t.added_.size(); k++) {
      Tokenizer::AddedToken& a = t.added_[k];
      a.form = a.content;
      if (!a.normalized) { add_to_trie(t.trie_raw_, a.content, (int32_t)k); continue; }
      std::string pattern = t.normalize_piece(a.content);
      a.form = pattern;
      const std::string w = "added_tokens[" + json::quote(a.content) + "]";
      if (pattern.empty()) refuse(w, "normalized=true, and the normalizer makes its content empty; set normalized to false");
      if (!normalized_seen.emplace(pattern, k).second)
        refuse(w, "normalized=true, and its normalized content " + json::quote(pattern) + " equals that of another added token");
      add_to_trie(t.trie_normalized_, pattern, (int32_t)k);
    }
  }

  static void add_to_trie(Tokenizer::Trie& trie, const std::string& s, int32_t token) {
    if (trie.token.empty()) trie.token.push_back(-1);
    uint32_t node = 0;
    for (unsigned char c : s) {
      auto it = trie.next[node].find(c);
      if (it == trie.next[node].end()) {
        trie.next.emplace_back();
        trie.token.push_back(-1);
        it = trie.next[node].emplace(c, (uint32_t)(trie.next.size() - 1)).first;
      }
      node = it->second;
    }
    trie.token[node] = token;
    trie.first_byte[(unsigned char)s[0]] = true;
  }

  // --- normalizer, pre-tokenizer, post-processor, decoder --------------------------------------
  // A Sequence is flattened: applying its normalizers one after the other is what HF does.
  void load_normalizer(const json::Value& n, const std::string& w) {
    const std::string& type = get_str(n, "type", w);
    Tokenizer::NormStep step;
    using N = Tokenizer::NormStep;
    if (type == "Sequence") {
      check_keys(n, {"type", "normalizers"}, w);
      const json::Value* list = n.find("normalizers");
      if (!list || !list->is(json::Value::Array)) refuse(w, "Sequence needs an array 'normalizers'");
      for (size_t i = 0; i < list->arr.size(); i++) load_normalizer(list->arr[i], w + ".normalizers[" + std::to_string(i) + "]");
      return;
    }
    if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD" || type == "Lowercase") {
      check_keys(n, {"type"}, w);
      step.kind = type == "NFC" ? N::NFC : type == "NFD" ? N::NFD : type == "NFKC" ? N::NFKC : type == "NFKD" ? N::NFKD : N::Lowercase;
    } else if (type == "Strip") {
      check_keys(n, {"type", "strip_left", "strip_right"}, w);
      step.kind = N::Strip;
      for (const char* k : {"strip_left", "strip_right"})
        if (!n.find(k)) refuse(w, std::string("Strip needs '") + k + "' (true/false); HF refuses the file without it");
      step.strip_left = get_bool(n, "strip_left", false, w);
      step.strip_right = get_bool(n, "strip_right", false, w);
    } else if (type == "Replace") {
      check_keys(n, {"type", "pattern", "content"}, w);
      step.kind = N::Replace;
      load_replace_pattern(n, w, &step.literal, &step.regex);
      step.content = get_str(n, "content", w);
    } else if (type == "Prepend") {
      check_keys(n, {"type", "prepend"}, w);
      step.kind = N::Prepend;
      step.content = get_str(n, "prepend", w);
    } else {
      refuse(w, "normalizer type '" + type + "' is not supported (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, "
                "Replace, Prepend, Sequence; not BertNormalizer, StripAccents, Nmt, Precompiled, ByteLevel)");
    }
    t.norm_.push_back(std::move(step));
  }

  // Replace's pattern (normalizer and decoder): {"String": s} is the literal s, {"Regex": r} an
  // Oniguruma regex (same subset as Split).
  void load_replace_pattern(const json::Value& p, const std::string& w, std::string* literal,
                            std::shared_ptr<const Regex>* regex) {
    const json::Value* pat = p.find("pattern");
    if (!pat || !pat->is(json::Value::Object) || pat->obj.size() != 1 || !pat->obj[0].second.is(json::Value::String))
      refuse(w + ".pattern", "expected {\"String\": \"...\"} or {\"Regex\": \"...\"}");
    const std::string& kind = pat->obj[0].first;
    const std::string& text = pat->obj[0].second.str;
    if (text.empty()) refuse(w + ".pattern", "empty pattern (HF would insert the content between every character); not supported");
    if (kind == "String") { *literal = text; return; }
    if (kind != "Regex") refuse(w + ".pattern", "unknown pattern kind '" + kind + "' (expected String or Regex)");
    try {
      *regex = std::make_shared<Regex>(text);
    } catch (const std::exception& e) {
      refuse(w + ".pattern", e.what());
    }
  }

  void load_pre_tokenizer(const json::Value& p, const std::string& w) {
    const std::string& type = get_str(p, "type", w);
    Tokenizer::PreStep step;
    if (type == "Sequence") {
      check_keys(p, {"type", "pretokenizers"}, w);
      const json::Value* list = p.find("pretokenizers");
      if (!list || !list->is(json::Value::Array)) refuse(w, "Sequence needs an array 'pretokenizers'");
      for (size_t i = 0; i < list->arr.size(); i++)
        load_pre_tokenizer(list->arr[i], w + ".pretokenizers[" + std::to_string(i) + "]");
      return;
    }
    if (type == "ByteLevel") {
      check_keys(p, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, w);
      step.kind = Tokenizer::PreStep::ByteLevel;
      step.add_prefix_space = get_bool(p, "add_prefix_space", true, w);
      step.use_regex = get_bool(p, "use_regex", true, w);
    } else if (type == "Split") {
      check_keys(p, {"type", "pattern", "behavior", "invert"}, w);
      step.kind = Tokenizer::PreStep::Split;
      step.regex = std::make_shared<Regex>(load_split_pattern(p, w));
      step.behavior = load_behavior(get_str(p, "behavior", w), w + ".behavior");
      step.invert = get_bool(p, "invert", false, w);
    } else if (type == "Metaspace") {
      // HF's deserializer: prepend_scheme defaults to "always", split to true; the legacy
      // add_prefix_space=false means "never" and contradicts any other prepend_scheme.
      check_keys(p, {"type", "replacement", "add_prefix_space", "prepend_scheme", "split", "str_rep"}, w);
      step.kind = Tokenizer::PreStep::Metaspace;
      step.replacement = load_char(p, "replacement", w);
      const json::Value* ps = p.find("prepend_scheme");
      if (ps && !ps->is(json::Value::Null)) {
        if (!ps->is(json::Value::String)) refuse(w + ".prepend_scheme", "expected \"first\", \"always\" or \"never\"");
        if (ps->str == "first") step.prepend_scheme = Tokenizer::Prepend::First;
        else if (ps->str == "always") step.prepend_scheme = Tokenizer::Prepend::Always;
        else if (ps->str == "never") step.prepend_scheme = Tokenizer::Prepend::Never;
        else refuse(w + ".prepend_scheme", "unknown value '" + ps->str + "' (expected first, always or never)");
      }
      const json::Value* aps = p.find("add_prefix_space");
      if (aps && aps->is(json::Value::Bool) && !aps->b) {
        if (step.prepend_scheme != Tokenizer::Prepend::Never)
          refuse(w + ".add_prefix_space", "false contradicts prepend_scheme (HF refuses this file: \"add_prefix_space does not match declared prepend_scheme\")");
      }
      step.split = get_bool(p, "split", true, w);
      if (step.prepend_scheme == Tokenizer::Prepend::First) t.needs_first_ = true;
    } else if (type == "Digits") {
      check_keys(p, {"type", "individual_digits"}, w);
      step.kind = Tokenizer::PreStep::Digits;
      step.individual_digits = get_bool(p, "individual_digits", false, w);
    } else {
      refuse(w, "pre-tokenizer type '" + type + "' is not supported (supported: ByteLevel, Metaspace, Split, Digits, Sequence)");
    }
    t.steps_.push_back(std::move(step));
  }

  Regex load_split_pattern(const json::Value& p, const std::string& w) {
    const json::Value* pat = p.find("pattern");
    if (!pat || !pat->is(json::Value::Object) || pat->obj.size() != 1 || !pat->obj[0].second.is(json::Value::String))
      refuse(w + ".pattern", "expected {\"Regex\": \"...\"} or {\"String\": \"...\"}");
    const std::string& kind = pat->obj[0].first;
    const std::string& text = pat->obj[0].second.str;
    if (text.empty()) refuse(w + ".pattern", "empty pattern");
    try {
      if (kind == "Regex") return Regex(text);
      if (kind == "String") return Regex(regex_escape(text));
    } catch (const std::exception& e) {
      refuse(w + ".pattern", e.what());
    }
    refuse(w + ".pattern", "unknown pattern kind '" + kind + "' (expected Regex or String)");
  }

  static Tokenizer::PreStep::Behavior load_behavior(const std::string& b, const std::string& w) {
    if (b == "Removed") return Tokenizer::PreStep::Removed;
    if (b == "Isolated") return Tokenizer::PreStep::Isolated;
    if (b == "MergedWithPrevious") return Tokenizer::PreStep::MergedWithPrevious;
    if (b == "MergedWithNext") return Tokenizer::PreStep::MergedWithNext;
    if (b == "Contiguous") return Tokenizer::PreStep::Contiguous;
    refuse(w, "unknown split behavior '" + b + "'");
  }

  // ByteLevel maps bytes to its alphabet, so it may run at most once. Without it BPE works on
  // the characters themselves (SentencePiece-style files: Metaspace, or no pre-tokenizer), as HF.
  void check_pipeline() {
    int n = 0, meta = 0;
    for (const auto& s : t.steps_) {
      n += s.kind == Tokenizer::PreStep::ByteLevel;
      meta += s.kind == Tokenizer::PreStep::Metaspace;
    }
    if (n > 1) refuse("pre_tokenizer", "has more than one ByteLevel step (bytes would be mapped twice)");
    if (n && meta) refuse("pre_tokenizer", "has both ByteLevel and Metaspace steps; not supported");
    // Metaspace(prepend_scheme first) prepends only to the piece that starts at offset 0 of the
    // original text (HF: offsets_original().0 == 0). We track that exactly through the raw
    // added-token split; through a normalizer we only know it when the normalizer keeps the first
    // character's offset (NFC..NFKD, Lowercase) and no normalized=true added token cuts a piece.
    if (t.needs_first_ && !t.norm_.empty()) {
      bool normalized_tokens = !t.trie_normalized_.empty();
      for (const auto& s : t.norm_) {
        bool keeps = s.kind == Tokenizer::NormStep::NFC || s.kind == Tokenizer::NormStep::NFD ||
                     s.kind == Tokenizer::NormStep::NFKC || s.kind == Tokenizer::NormStep::NFKD ||
                     s.kind == Tokenizer::NormStep::Lowercase;
        if (!keeps || normalized_tokens)
          refuse("pre_tokenizer", "Metaspace with prepend_scheme \"first\" after a Strip/Replace/Prepend normalizer, or with "
                                  "normalized=true added tokens, is not supported (which piece is first then depends on HF's offset alignments)");
      }
    }
  }

  // A single character, as HF's serde `char` (Metaspace replacement, Strip content).
  std::string load_char(const json::Value& p, const char* key, const std::string& w) {
    const std::string& s = get_str(p, key, w);
    std::vector<uint32_t> cps, offsets;
    decode_utf8(s, cps, offsets);
    if (cps.size() != 1 || (cps[0] >= 0xD800 && cps[0] <= 0xDFFF))
      refuse(w + "." + key, "expected exactly one character, got " + json::quote(s));
    return s;
  }

  // Post-processors only add tokens when add_special_tokens=true; our encode is the
  // add_special_tokens=false one, so the known kinds are accepted and have no effect.
  void load_post_processor(const json::Value* p, const std::string& w) {
    if (!p || p->is(json::Value::Null)) return;
    const std::string& type = get_str(*p, "type", w);
    if (type == "Sequence") {
      const json::Value* list = p->find("processors");
      if (list && list->is(json::Value::Array))
        for (size_t i = 0; i < list->arr.size(); i++) load_post_processor(&list->arr[i], w + ".processors[" + std::to_string(i) + "]");
      return;
    }
    if (type == "ByteLevel" || type == "TemplateProcessing" || type == "RobertaProcessing" || type == "BertProcessing") return;
    refuse(w, "type '" + type + "' is not supported");
  }

  // A Sequence is flattened (HF applies its decoders' decode_chain one after the other).
  void load_decoder(const json::Value& d, const std::string& w) {
    const std::string& type = get_str(d, "type", w);
    using D = Tokenizer::DecStep;
    D step;
    if (type == "Sequence") {
      check_keys(d, {"type", "decoders"}, w);
      const json::Value* list = d.find("decoders");
      if (!list || !list->is(json::Value::Array)) refuse(w, "Sequence needs an array 'decoders'");
      for (size_t i = 0; i < list->arr.size(); i++) load_decoder(list->arr[i], w + ".decoders[" + std::to_string(i) + "]");
      return;
    }
    if (type == "ByteLevel") {
      check_keys(d, {"type", "add_prefix_space", "trim_offsets", "use_regex"}, w);  // none acts on decode
      step.kind = D::ByteLevel;
    } else if (type == "Replace") {
      check_keys(d, {"type", "pattern", "content"}, w);
      step.kind = D::Replace;
      load_replace_pattern(d, w, &step.literal, &step.regex);
      step.content = get_str(d, "content", w);
    } else if (type == "ByteFallback" || type == "Fuse") {
      check_keys(d, {"type"}, w);
      step.kind = type == "Fuse" ? D::Fuse : D::ByteFallback;
    } else if (type == "Strip") {
      check_keys(d, {"type", "content", "start", "stop"}, w);
      step.kind = D::Strip;
      step.ch = first_cp(load_char(d, "content", w));
      for (const char* k : {"start", "stop"}) {
        const json::Value* v = d.find(k);
        if (!v || !v->is(json::Value::Number) || v->num < 0 || v->num != (double)(int64_t)v->num)
          refuse(w + "." + k, "expected a non-negative integer");
        (std::string(k) == "start" ? step.start : step.stop) = (uint64_t)v->as_int();
      }
      // HF's Strip::decode_chain indexes from the end without a bound check: with stop > 0 it
      // panics on a token made only of `content` characters (an empty one included), so no
      // implementation can match it there.
      if (step.stop > 0) refuse(w + ".stop", "Strip with stop > 0 is not supported (HF tokenizers 0.23 panics on short tokens with it)");
    } else if (type == "Metaspace") {
      check_keys(d, {"type", "replacement", "add_prefix_space", "prepend_scheme", "split", "str_rep"}, w);
      step.kind = D::Metaspace;
      step.ch = first_cp(load_char(d, "replacement", w));
      const json::Value* ps = d.find("prepend_scheme");
      const json::Value* aps = d.find("add_prefix_space");
      std::string scheme = ps && ps->is(json::Value::String) ? ps->str : "always";
      if (ps && !ps->is(json::Value::Null) && !ps->is(json::Value::String)) refuse(w + ".prepend_scheme", "expected a string");
      if (scheme != "first" && scheme != "always" && scheme != "never")
        refuse(w + ".prepend_scheme", "unknown value '" + scheme + "' (expected first, always or never)");
      if (aps && aps->is(json::Value::Bool) && !aps->b && scheme != "never")
        refuse(w + ".add_prefix_space", "false contradicts prepend_scheme (HF refuses this file)");
      step.prepend_never = scheme == "never" || (aps && aps->is(json::Value::Bool) && !aps->b);
    } else {
      refuse(w, "decoder type '" + type + "' is not supported (supported: ByteLevel, Metaspace, Replace, ByteFallback, "
                "Fuse, Strip, Sequence; not WordPiece, BPEDecoder, CTC)");
    }
    t.dec_.push_back(std::move(step));
  }

  static uint32_t first_cp(const std::string& s) {
    std::vector<uint32_t> cps, offsets;
    decode_utf8(s, cps, offsets);
    return cps[0];
  }

  // --- id tables -------------------------------------------------------------------------------
  void build_id_tables() {
    uint32_t size = 0;
    for (const auto& kv : t.vocab_) size = std::max(size, kv.second + 1);
    for (const auto& a : t.added_) size = std::max(size, a.id + 1);
    // The id tables are indexed by id, so their size is the largest id + 1. Real files number their
    // tokens densely (0..N-1); a file whose largest id is far beyond its token count would make
    // these tables huge (an id of 2^31-1 asks for tens of GB), so it is refused, naming the id.
    const uint64_t n_tokens = t.vocab_.size() + t.added_.size();
    if (size > 2 * n_tokens + 65536)
      refuse("model.vocab", "the largest token id " + std::to_string(size - 1) + " is far beyond the file's " +
                                std::to_string(n_tokens) + " tokens (ids must be nearly dense: at most 2 * tokens + " +
                                "65536); renumber the vocabulary and added_tokens from 0");
    t.id_to_token_.assign(size, std::string());
    t.id_bytes_.assign(size, std::string());
    t.id_special_.assign(size, false);
    std::vector<bool> used(size, false);
    for (const auto& kv : t.vocab_) {
      if (used[kv.second]) refuse("model.vocab", "id " + std::to_string(kv.second) + " is used by two tokens");
      used[kv.second] = true;
      t.id_to_token_[kv.second] = kv.first;
      // HF's ByteLevel decoder: a token made only of alphabet characters becomes those bytes;
      // any other token is emitted as its own UTF-8 text.
      if (!bytelevel_to_bytes(kv.first, &t.id_bytes_[kv.second])) t.id_bytes_[kv.second] = kv.first;
    }
    // Added tokens go through the same decoder (checked against HF tokenizers 0.23: an added
    // token "ĠĠx" decodes to "  x"), so decode(encode(s)) can differ from s for such tokens.
    // A normalized=true token is decoded (and named by id_to_token) in its normalized form, as
    // HF: "<Extra>" with a Lowercase normalizer decodes to "<extra>".
    for (const auto& a : t.added_) {
      t.id_to_token_[a.id] = a.form;
      if (!bytelevel_to_bytes(a.form, &t.id_bytes_[a.id])) t.id_bytes_[a.id] = a.form;
      t.id_special_[a.id] = a.special;
    }
    // Single characters of the Basic Multilingual Plane: covers the byte-level alphabet and
    // SentencePiece vocabularies ("▁" is U+2581, CJK is below U+10000).
    // The "▁" cut of long pre-tokens (encode_word_cached) is exact when "▁" is a token and no
    // token has a "▁" preceded by another character; ignore_merges is excluded there.
    const std::string mark = "\xE2\x96\x81";
    bool mark_ok = !t.ignore_merges_ && t.vocab_.count(mark);
    for (const auto& kv : t.vocab_) {
      if (!mark_ok) break;
      for (size_t p = kv.first.find(mark, 1); p != std::string::npos && mark_ok; p = kv.first.find(mark, p + 3))
        if (p < 3 || kv.first.compare(p - 3, 3, mark) != 0) mark_ok = false;
    }
    t.split_mark_ = mark_ok ? mark : "";
    t.char_id_.assign(0x10000, -1);
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
      if (cp >= 0xD800 && cp <= 0xDFFF) continue;
      std::string s;
      append_utf8(s, cp);
      auto it = t.vocab_.find(s);
      if (it != t.vocab_.end()) t.char_id_[cp] = (int32_t)it->second;
    }
    // A pre-tokenizer ending in ByteLevel hands BPE one alphabet character per byte.
    t.final_bytelevel_ = !t.steps_.empty() && t.steps_.back().kind == Tokenizer::PreStep::ByteLevel;
    t.byte_ids_complete_ = true;
    for (int b = 0; b < 256; b++) {
      t.byte_char_id_[b] = t.char_id_[byte_to_cp()[b]];
      if (t.byte_char_id_[b] < 0) t.byte_ids_complete_ = false;
    }
    static std::atomic<uint64_t> next_serial{1};
    t.serial_ = next_serial++;
    std::ostringstream os;
    os << "BPE vocab_size=" << size << " (model " << t.vocab_.size() << ", added " << t.added_.size()
       << ") merges=" << t.merges_.size() << " ignore_merges=" << (t.ignore_merges_ ? "true" : "false");
    if (t.byte_fallback_) os << " byte_fallback=true";
    static const char* const norm_names[] = {"NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "Replace", "Prepend"};
    os << " normalizer=[";
    for (size_t i = 0; i < t.norm_.size(); i++) os << (i ? ", " : "") << norm_names[t.norm_[i].kind];
    os << "] pre_tokenizer=[";
    for (size_t i = 0; i < t.steps_.size(); i++) {
      const auto& s = t.steps_[i];
      if (i) os << ", ";
      if (s.kind == Tokenizer::PreStep::ByteLevel)
        os << "ByteLevel(add_prefix_space=" << s.add_prefix_space << ", use_regex=" << s.use_regex << ")";
      else if (s.kind == Tokenizer::PreStep::Digits)
        os << "Digits(individual_digits=" << s.individual_digits << ")";
      else if (s.kind == Tokenizer::PreStep::Metaspace)
        os << "Metaspace(" << json::quote(s.replacement) << ", prepend_scheme="
           << (s.prepend_scheme == Tokenizer::Prepend::First ? "first" : s.prepend_scheme == Tokenizer::Prepend::Always ? "always" : "never")
           << ", split=" << s.split << ")";
      else
        os << "Split(" << json::quote(s.regex->pattern()) << ")";
    }
    static const char* const dec_names[] = {"ByteLevel", "Replace", "ByteFallback", "Fuse", "Strip", "Metaspace"};
    os << "] decoder=[";
    for (size_t i = 0; i < t.dec_.size(); i++) os << (i ? ", " : "") << dec_names[t.dec_[i].kind];
    os << "]";
    t.summary_ = os.str();
    if (t.has_decoder_ && !t.decoder_bytes_only_) t.prepare_decoder();
  }
};

Tokenizer Tokenizer::from_json(const std::string& json_text) {
  json::Value root = json::parse(json_text);
  Tokenizer t;
  TokenizerLoader{t}.load(root);
  return t;
}

Tokenizer Tokenizer::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("tokenizer file '" + path + "': cannot open (check the path)");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  try {
    return from_json(text);
  } catch (const std::exception& e) {
    throw std::runtime_error("tokenizer file '" + path + "': " + e.what());
  }
}

int32_t Tokenizer::token_id(const std::string& tok) const {
  auto a = added_ids_.find(tok);
  if (a != added_ids_.end()) return (int32_t)a->second;
  auto v = vocab_.find(tok);
  return v == vocab_.end() ? -1 : (int32_t)v->second;
}

const std::string& Tokenizer::token_str(uint32_t id) const {
  if (id >= id_to_token_.size())
    throw std::runtime_error("token id " + std::to_string(id) + " out of range (vocab_size " + std::to_string(vocab_size()) + ")");
  return id_to_token_[id];
}

std::string Tokenizer::summary() const { return summary_; }

// ---------------------------------------------------------------------------------------------
// Added tokens: HF AddedVocabulary::find_matches
// ---------------------------------------------------------------------------------------------
namespace {

// HF decides single_word with the Rust regex crate's \w (`\w$`, `^\w`), which is the UTS #18
// word class: Alphabetic, Mark, Decimal_Number, Connector_Punctuation, Join_Control. (So '½' is
// not a word character here, but U+200D ZERO WIDTH JOINER is.) Its \s is White_Space.
bool rust_regex_is_word(uint32_t cp) {
  using namespace unicode;
  return is_alphabetic(cp) || (cat_bit(category(cp)) & (kMaskM | cat_bit(Nd) | cat_bit(Pc))) || is_join_control(cp);
}

// Code point ending at byte `end` of s (s[begin, end) non-empty), and its start offset.
uint32_t cp_before(const std::string& s, uint32_t begin, uint32_t end, uint32_t* start) {
  uint32_t b = end - 1;
  while (b > begin && end - b < 4 && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
  std::vector<uint32_t> cps, offsets;
  decode_utf8(s.substr(b, end - b), cps, offsets);
  if (cps.size() != 1) { *start = end - 1; return 0xDC00 + (unsigned char)s[end - 1]; }  // invalid byte
  *start = b;
  return cps[0];
}

// Code point starting at byte `pos` of s (pos < end), and its length in bytes.
uint32_t cp_at(const std::string& s, uint32_t pos, uint32_t end, uint32_t* len) {
  std::vector<uint32_t> cps, offsets;
  decode_utf8(s.substr(pos, std::min<uint32_t>(4, end - pos)), cps, offsets);
  *len = offsets[1];
  return cps[0];
}

}  // namespace

// Splits text[begin, end) on the tokens of one trie, appending segments to out. Matches are found
// leftmost-longest without overlap first (aho-corasick in HF), then filtered by single_word and
// widened by lstrip/rstrip, exactly in HF's order.
static void find_added_in(const std::string& text, uint32_t begin, uint32_t end, const Tokenizer::Trie& trie,
                          const std::vector<Tokenizer::AddedToken>& added, std::vector<Tokenizer::Segment>& out) {
  struct Match { uint32_t start, stop; int32_t token; };
  std::vector<Match> matches;
  if (!trie.empty()) {
    for (uint32_t i = begin; i < end;) {
      if (!trie.first_byte[(unsigned char)text[i]]) { i++; continue; }
      uint32_t node = 0, best_end = 0;
      int32_t best = -1;
      for (uint32_t j = i; j < end; j++) {
        auto it = trie.next[node].find((unsigned char)text[j]);
        if (it == trie.next[node].end()) break;
        node = it->second;
        if (trie.token[node] >= 0) { best = trie.token[node]; best_end = j + 1; }
      }
      if (best < 0) { i++; continue; }
      matches.push_back({i, best_end, best});
      i = best_end;
    }
  }
  uint32_t start_offset = begin;
  for (const Match& m : matches) {
    const Tokenizer::AddedToken& tok = added[m.token];
    uint32_t start = m.start, stop = m.stop, n;
    if (tok.single_word) {
      bool start_space = start == begin || !rust_regex_is_word(cp_before(text, begin, start, &n));
      bool stop_space = stop == end || !rust_regex_is_word(cp_at(text, stop, end, &n));
      if (!start_space || !stop_space) continue;
    }
    if (tok.lstrip) {  // swallow the white space before the token (not past the previous match)
      uint32_t s = start;
      while (s > begin) {
        uint32_t prev_start;
        if (!unicode::is_white_space(cp_before(text, begin, s, &prev_start))) break;
        s = prev_start;
      }
      start = std::max(s, start_offset);
    }
    if (tok.rstrip) {  // and the white space after it
      uint32_t len;
      while (stop < end && unicode::is_white_space(cp_at(text, stop, end, &len))) stop += len;
    }
    if (start_offset < start) out.push_back({start_offset, start, -1});
    out.push_back({start, stop, (int64_t)tok.id});
    start_offset = stop;
  }
  if (start_offset < end) out.push_back({start_offset, end, -1});
}

// Replaces every match of `literal` (a plain string) or `re` in s by content, as HF's Replace
// (normalizer: NormalizedString::replace; decoder: decode_chain), which both walk
// Pattern::find_matches: leftmost non-overlapping matches in order. An empty s stays empty.
static std::string replace_all(const std::string& s, const std::string& literal, const Regex* re, const std::string& content) {
  std::string out;
  if (!re) {
    size_t pos = 0, m;
    if (s.find(literal) == std::string::npos) return s;
    out.reserve(s.size() + s.size() / 4);
    while ((m = s.find(literal, pos)) != std::string::npos) {
      out.append(s, pos, m - pos);
      out += content;
      pos = m + literal.size();
    }
    out.append(s, pos, std::string::npos);
    return out;
  }
  if (s.empty()) return s;
  std::vector<uint32_t> cps, offsets;
  std::vector<std::pair<uint32_t, uint32_t>> matches;
  decode_utf8(s, cps, offsets);
  re->find_all(cps, matches);
  uint32_t prev = 0;
  for (const auto& m : matches) {
    out.append(s, offsets[prev], offsets[m.first] - offsets[prev]);
    out += content;
    prev = m.second;
  }
  out.append(s, offsets[prev], std::string::npos);
  return out;
}

// HF's normalizers in order. NFC..NFKD use the Unicode 9.0 data of HF's normalization crate,
// Lowercase Rust's char::to_lowercase (ref/text/normalize.h); Strip removes White_Space
// characters (Rust char::is_whitespace); Prepend acts only on a non-empty string.
std::string Tokenizer::normalize_piece(const std::string& text) const {
  using unicode::NormForm;
  using unicode::NormData;
  std::string s = text;
  for (const NormStep& n : norm_) {
    switch (n.kind) {
      case NormStep::NFC: s = unicode::normalize(NormForm::NFC, s, NormData::kHf); break;
      case NormStep::NFD: s = unicode::normalize(NormForm::NFD, s, NormData::kHf); break;
      case NormStep::NFKC: s = unicode::normalize(NormForm::NFKC, s, NormData::kHf); break;
      case NormStep::NFKD: s = unicode::normalize(NormForm::NFKD, s, NormData::kHf); break;
      case NormStep::Lowercase: s = unicode::to_lower(s); break;
      case NormStep::Strip: {
        std::vector<uint32_t> cps, offsets;
        decode_utf8(s, cps, offsets);
        size_t b = 0, e = cps.size();
        if (n.strip_left) while (b < e && unicode::is_white_space(cps[b])) b++;
        if (n.strip_right) while (e > b && unicode::is_white_space(cps[e - 1])) e--;
        s = s.substr(offsets[b], offsets[e] - offsets[b]);
        break;
      }
      case NormStep::Replace: s = replace_all(s, n.literal, n.regex.get(), n.content); break;
      case NormStep::Prepend: if (!s.empty()) s = n.content + s; break;
    }
  }
  return s;
}

// HF AddedVocabulary::extract_and_normalize, then the pre-tokenizer's view of each split:
// 1. the normalized=false tokens are found on the raw text;
// 2. each piece between them is normalized on its own (so Prepend("▁") prepends to every piece);
// 3. the normalized=true tokens are found on each normalized piece.
// `first` (for Metaspace prepend_scheme first) is HF's offsets_original().0 == 0: the segment
// starts at byte 0 of the original text. Without a normalizer offsets are the raw ones; with one,
// the loader only allows Metaspace(first) when the first character keeps offset 0 and pieces are
// not cut further, so "starts the first raw piece" is exact.
template <class Fn>
void Tokenizer::for_each_segment(const std::string& text, Fn&& fn) const {
  if (text.empty()) return;
  std::vector<Segment> raw, sub;
  find_added_in(text, 0, (uint32_t)text.size(), trie_raw_, added_, raw);
  std::string piece;
  for (const Segment& r : raw) {
    if (r.id >= 0) { fn(text, r.begin, r.end, false, r.id); continue; }
    const std::string* src = &text;
    uint32_t b = r.begin, e = r.end;
    if (!norm_.empty()) {
      piece = normalize_piece(text.substr(b, e - b));
      src = &piece;
      b = 0;
      e = (uint32_t)piece.size();
    }
    sub.clear();
    find_added_in(*src, b, e, trie_normalized_, added_, sub);
    for (const Segment& s : sub) fn(*src, s.begin, s.end, s.id < 0 && r.begin == 0 && s.begin == b, s.id);
  }
}

// ---------------------------------------------------------------------------------------------
// Pre-tokenizer steps: HF NormalizedString::split with its SplitDelimiterBehavior
// ---------------------------------------------------------------------------------------------
// A segment is decoded once; the Split and Digits steps cut code point ranges of that one
// array, and each range goes through the remaining steps and on to BPE at once (depth first), so
// no step materialises its pieces as strings. Only ByteLevel and Metaspace rewrite text: when
// such a step is not the last one, its output is decoded afresh for the steps after it.
namespace {

struct Span { uint32_t begin, end; bool is_match; };
using Range = std::pair<uint32_t, uint32_t>;

// Applies a split behaviour to the (match / non-match) spans covering a piece and appends the
// resulting non-empty ranges to out (`merged` is scratch).
void apply_behavior(const std::vector<Span>& spans, Tokenizer::PreStep::Behavior behavior, std::vector<Span>& merged,
                    std::vector<Range>& out) {
  using B = Tokenizer::PreStep;
  merged.clear();  // is_match reused as "remove" below
  bool previous_match = false;
  switch (behavior) {
    case B::Isolated:
      for (Span s : spans) merged.push_back({s.begin, s.end, false});
      break;
    case B::Removed:
      merged = spans;
      break;
    case B::Contiguous:  // runs of matches (or of non-matches) fuse
      for (Span s : spans) {
        if (s.is_match == previous_match && !merged.empty()) merged.back().end = s.end;
        else merged.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case B::MergedWithPrevious:  // a match joins the piece before it
      for (Span s : spans) {
        if (s.is_match && !previous_match && !merged.empty()) merged.back().end = s.end;
        else merged.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      break;
    case B::MergedWithNext: {  // a match joins the piece after it (HF folds from the right)
      for (size_t k = spans.size(); k-- > 0;) {
        Span s = spans[k];
        if (s.is_match && !previous_match && !merged.empty()) merged.back().begin = s.begin;
        else merged.push_back({s.begin, s.end, false});
        previous_match = s.is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    }
  }
  for (const Span& s : merged)
    if (!s.is_match && s.end > s.begin) out.emplace_back(s.begin, s.end);
}

// HF Metaspace: every ' ' becomes the replacement; the replacement is prepended (always, or
// only to the piece at offset 0 of the original text: "first", or never) unless the piece
// already starts with it; then, if split, the piece is cut before every replacement
// (MergedWithNext: "▁a▁▁b" -> "▁a", "▁", "▁b"). The pieces go to out as byte ranges of s.
void metaspace_step(const Tokenizer::PreStep& step, const char* piece, size_t len, bool first, std::string& s,
                    std::vector<Span>& spans, std::vector<Span>& merged, std::vector<Range>& out) {
  const std::string& rep = step.replacement;
  s.clear();
  s.reserve(len + len / 4 + rep.size());
  for (size_t i = 0; i < len; i++) {
    if (piece[i] == ' ') s += rep;
    else s += piece[i];
  }
  bool starts = s.compare(0, rep.size(), rep) == 0;
  if (!starts && (step.prepend_scheme == Tokenizer::Prepend::Always || (step.prepend_scheme == Tokenizer::Prepend::First && first)))
    s.insert(0, rep);
  out.clear();
  if (!step.split) {
    if (!s.empty()) out.emplace_back(0, (uint32_t)s.size());
    return;
  }
  spans.clear();
  uint32_t prev = 0;
  for (size_t m = s.find(rep); m != std::string::npos; m = s.find(rep, m + rep.size())) {
    if (m > prev) spans.push_back({prev, (uint32_t)m, false});
    spans.push_back({(uint32_t)m, (uint32_t)(m + rep.size()), true});
    prev = (uint32_t)(m + rep.size());
  }
  if (prev < s.size()) spans.push_back({prev, (uint32_t)s.size(), false});
  apply_behavior(spans, Tokenizer::PreStep::MergedWithNext, merged, out);
}

// Buffers of one pre-tokenizer step, per thread (a deque: growing it keeps the others in place).
struct StepScratch {
  std::vector<Range> matches, stack, pieces;
  std::vector<Span> spans, merged;
  std::string text;                 // the step's rewritten piece (ByteLevel, Metaspace)
  std::vector<std::string> texts;   // ByteLevel not last: each output piece, rewritten
  std::vector<uint32_t> cps, offs;  // a rewritten piece, decoded for the steps after
};
thread_local std::deque<StepScratch> tl_steps;
StepScratch& step_scratch(size_t k) {
  while (tl_steps.size() <= k) tl_steps.emplace_back();
  return tl_steps[k];
}
// The segment's own code points (the whole input text when there are no added tokens).
thread_local std::vector<uint32_t> tl_seg_cps, tl_seg_offs;

}  // namespace

// Runs steps k.. on code points [cb, ce) of a decoded text (cps[i] starts at byte offs[i] of
// bytes) and calls sink(p, n) with each pre-token in order. `first`: the piece starts at offset
// 0 of the original text (only Metaspace "first" asks); a step passes it on to its first output
// piece when that piece starts where its input did (prefixes that ByteLevel or Metaspace add
// count as the first character's). When the last step is ByteLevel, pre-tokens are emitted as
// the raw bytes before its mapping to the byte-level alphabet (final_bytelevel_).
template <class Sink>
void Tokenizer::run_steps(size_t k, const char* bytes, const uint32_t* cps, const uint32_t* offs, uint32_t cb,
                          uint32_t ce, bool first, Sink& sink) const {
  if (k == steps_.size()) {
    sink(bytes + offs[cb], (size_t)(offs[ce] - offs[cb]));
    return;
  }
  const PreStep& step = steps_[k];
  StepScratch& sc = step_scratch(k);
  const bool last = k + 1 == steps_.size();
  const char* p = bytes + offs[cb];
  const size_t len = offs[ce] - offs[cb];
  sc.pieces.clear();
  if (step.kind == PreStep::Split || step.kind == PreStep::Digits) {
    sc.spans.clear();
    const uint32_t n = ce - cb;
    if (step.kind == PreStep::Split) {
      step.regex->find_all(cps + cb, n, sc.matches, sc.stack);
      uint32_t prev = 0;  // HF Pattern::find_matches: gaps and matches
      for (const Range& m : sc.matches) {
        if (m.first != prev) sc.spans.push_back({prev, m.first, false});
        sc.spans.push_back({m.first, m.second, true});
        prev = m.second;
      }
      if (prev != n) sc.spans.push_back({prev, n, false});
      if (step.invert)
        for (Span& s : sc.spans) s.is_match = !s.is_match;
      apply_behavior(sc.spans, step.behavior, sc.merged, sc.pieces);
    } else {  // Digits: every numeric char (Rust char::is_numeric: Nd, Nl, No) is its own match
      uint32_t prev = 0;
      for (uint32_t i = 0; i < n; i++) {
        if (unicode::cat_bit(unicode::category(cps[cb + i])) & unicode::kMaskN) {
          if (prev < i) sc.spans.push_back({prev, i, false});
          sc.spans.push_back({i, i + 1, true});
          prev = i + 1;
        }
      }
      if (prev < n) sc.spans.push_back({prev, n, false});
      apply_behavior(sc.spans, step.individual_digits ? PreStep::Isolated : PreStep::Contiguous, sc.merged, sc.pieces);
    }
    for (size_t i = 0; i < sc.pieces.size(); i++)
      run_steps(k + 1, bytes, cps, offs, cb + sc.pieces[i].first, cb + sc.pieces[i].second,
                first && i == 0 && sc.pieces[i].first == 0, sink);
    return;
  }
  if (step.kind == PreStep::Metaspace) {
    metaspace_step(step, p, len, first, sc.text, sc.spans, sc.merged, sc.pieces);
    for (size_t i = 0; i < sc.pieces.size(); i++) {
      const char* q = sc.text.data() + sc.pieces[i].first;
      const uint32_t m = sc.pieces[i].second - sc.pieces[i].first;
      if (last) { sink(q, (size_t)m); continue; }
      decode_utf8(q, m, sc.cps, sc.offs);
      run_steps(k + 1, q, sc.cps.data(), sc.offs.data(), 0, (uint32_t)sc.cps.size(), first && i == 0, sink);
    }
    return;
  }
  // ByteLevel: optional prefix space, optional GPT-2 split, then every byte to its alphabet char.
  const char* base = bytes;
  const uint32_t* c = cps;
  const uint32_t* o = offs;
  uint32_t b = cb, e = ce;
  if (step.add_prefix_space && p[0] != ' ') {
    sc.text.assign(1, ' ');
    sc.text.append(p, len);
    decode_utf8(sc.text.data(), sc.text.size(), sc.cps, sc.offs);
    base = sc.text.data();
    c = sc.cps.data();
    o = sc.offs.data();
    b = 0;
    e = (uint32_t)sc.cps.size();
  }
  if (!step.use_regex) sc.pieces.emplace_back(b, e);
  else isolated_ranges(gpt2_regex(), c + b, e - b, b, sc.matches, sc.stack, sc.pieces);
  if (last) {  // raw bytes: encode maps them (and caches them unmapped)
    for (const Range& r : sc.pieces) sink(base + o[r.first], (size_t)(o[r.second] - o[r.first]));
    return;
  }
  sc.texts.clear();
  for (const Range& r : sc.pieces) {
    std::string raw(base + o[r.first], o[r.second] - o[r.first]);
    sc.texts.push_back(bytes_to_bytelevel(raw));
  }
  for (size_t i = 0; i < sc.texts.size(); i++) {
    const std::string& t = sc.texts[i];
    decode_utf8(t.data(), t.size(), sc.cps, sc.offs);
    run_steps(k + 1, t.data(), sc.cps.data(), sc.offs.data(), 0, (uint32_t)sc.cps.size(), first && i == 0, sink);
  }
}

template <class Sink>
void Tokenizer::pretokenize_segment(const std::string& src, uint32_t b, uint32_t e, bool first, Sink& sink) const {
  if (e <= b) return;
  std::vector<uint32_t>& cps = tl_seg_cps;
  std::vector<uint32_t>& offs = tl_seg_offs;
  decode_utf8(src.data() + b, e - b, cps, offs);
  run_steps(0, src.data() + b, cps.data(), offs.data(), 0, (uint32_t)cps.size(), first, sink);
  // A one-string encode of a big text leaves big buffers behind: give them back.
  if (cps.capacity() > (1u << 22)) {
    std::vector<uint32_t>().swap(cps);
    std::vector<uint32_t>().swap(offs);
  }
}

// ---------------------------------------------------------------------------------------------
// BPE: HF models::bpe::Word::merge_all
// ---------------------------------------------------------------------------------------------
// Repeatedly merges the adjacent pair with the lowest merge rank (leftmost on ties), using a
// heap of candidate pairs and a linked list of symbols; stale heap entries are skipped.
namespace {
struct BpeSymbol { uint32_t id; int32_t prev, next; bool alive; };
struct BpeCand { uint32_t rank; int32_t pos; uint32_t new_id; };
// Per-thread buffers of bpe(), reused from call to call (a cold cache calls it once per new word).
struct BpeScratch {
  std::vector<BpeSymbol> sym;
  std::vector<BpeCand> heap;
  std::vector<uint32_t> cps, offsets;
};
thread_local BpeScratch tl_bpe;
}  // namespace

void Tokenizer::MergeTable::build(const std::vector<std::pair<uint64_t, Merge>>& entries) {
  size_t cap = 16;
  while (cap < entries.size() * 2) cap *= 2;
  slots.assign(cap, Slot{kEmpty, Merge{0, 0}});
  mask = cap - 1;
  shift = 64;
  for (size_t c = cap; c > 1; c >>= 1) shift--;
  count = 0;
  for (const auto& kv : entries) {  // a repeated pair keeps its last entry (the caller's order)
    size_t i = slot(kv.first);
    while (slots[i].key != kEmpty && slots[i].key != kv.first) i = (i + 1) & mask;
    if (slots[i].key == kEmpty) count++;
    slots[i] = {kv.first, kv.second};
  }
}

void Tokenizer::bpe(std::string_view word, std::vector<uint32_t>& out) const {
  if (ignore_merges_) {  // HF: a pre-token that is itself in the vocabulary is emitted whole
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) { out.push_back(it->second); return; }
  }
  BpeScratch& scratch = tl_bpe;
  std::vector<BpeSymbol>& sym = scratch.sym;
  std::vector<uint32_t>& cps = scratch.cps;
  std::vector<uint32_t>& offsets = scratch.offsets;
  sym.clear();
  decode_utf8(word.data(), word.size(), cps, offsets);
  auto add = [&](uint32_t id) {
    int32_t k = (int32_t)sym.size();
    sym.push_back({id, k - 1, k + 1, true});
  };
  // HF BPE::merge_word: an unknown character becomes its <0xHH> byte tokens (byte_fallback,
  // when all of them exist), else the unk token, which is held back until the next known
  // character (so byte tokens that come in between are emitted before it), fused with the
  // following unknown characters if fuse_unk; without an unk token it is dropped.
  bool pending_unk = false;
  for (size_t i = 0; i < cps.size(); i++) {
    int64_t id = -1;
    if (cps[i] < char_id_.size()) id = char_id_[cps[i]];
    else {
      auto it = vocab_.find(std::string(word.substr(offsets[i], offsets[i + 1] - offsets[i])));
      if (it != vocab_.end()) id = it->second;
    }
    if (id >= 0) {
      if (pending_unk) add((uint32_t)unk_id_);
      pending_unk = false;
      add((uint32_t)id);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (uint32_t b = offsets[i]; b < offsets[i + 1]; b++) all = all && byte_token_[(unsigned char)word[b]] >= 0;
      if (all) {
        for (uint32_t b = offsets[i]; b < offsets[i + 1]; b++) add((uint32_t)byte_token_[(unsigned char)word[b]]);
        continue;
      }
    }
    if (unk_id_ < 0) continue;
    if (pending_unk && !fuse_unk_) add((uint32_t)unk_id_);
    pending_unk = true;
  }
  if (pending_unk) add((uint32_t)unk_id_);
  merge_all(out);
}

// A pre-token given as raw bytes, for a pre-tokenizer that ends with ByteLevel: its BPE word is
// bytes_to_bytelevel(raw), one alphabet character per byte, so the symbols are looked up per byte.
void Tokenizer::bpe_raw(std::string_view raw, std::vector<uint32_t>& out) const {
  if (ignore_merges_ || !byte_ids_complete_) {  // the general path (whole-word lookup, unk)
    bpe(bytes_to_bytelevel(std::string(raw)), out);
    return;
  }
  std::vector<BpeSymbol>& sym = tl_bpe.sym;
  sym.resize(raw.size());
  for (size_t i = 0; i < raw.size(); i++)
    sym[i] = {(uint32_t)byte_char_id_[(unsigned char)raw[i]], (int32_t)i - 1, (int32_t)i + 1, true};
  merge_all(out);
}

// Merges tl_bpe.sym by rank and appends the surviving symbols' ids to out.
void Tokenizer::merge_all(std::vector<uint32_t>& out) const {
  using Symbol = BpeSymbol;
  using Cand = BpeCand;
  BpeScratch& scratch = tl_bpe;
  std::vector<Symbol>& sym = scratch.sym;
  if (sym.empty()) return;
  sym.back().next = -1;
  if (sym.size() == 1) {
    out.push_back(sym[0].id);
    return;
  }
  auto lookup = [&](uint32_t a, uint32_t b) -> const Merge* { return merges_.find((uint64_t)a << 32 | b); };
  if (sym.size() <= kShortWord) {
    // Short words (nearly all): the same choice as the heap below, by a scan. rank[j] is the
    // rank of the pair (ids[j], ids[j + 1]) (UINT32_MAX: no merge); each step merges the lowest,
    // leftmost on ties, and only the two pairs next to it change.
    uint32_t ids[kShortWord], rank[kShortWord], made[kShortWord];
    uint32_t n = (uint32_t)sym.size();
    for (uint32_t j = 0; j < n; j++) ids[j] = sym[j].id;
    auto pair_rank = [&](uint32_t j) {
      const Merge* m = lookup(ids[j], ids[j + 1]);
      rank[j] = m ? m->rank : UINT32_MAX;
      made[j] = m ? m->new_id : 0;
    };
    for (uint32_t j = 0; j + 1 < n; j++) pair_rank(j);
    while (n > 1) {
      uint32_t best = 0;
      for (uint32_t j = 1; j + 1 < n; j++)
        if (rank[j] < rank[best]) best = j;
      if (rank[best] == UINT32_MAX) break;
      ids[best] = made[best];
      for (uint32_t j = best + 1; j + 1 < n; j++) ids[j] = ids[j + 1];
      for (uint32_t j = best + 1; j + 2 < n; j++) {
        rank[j] = rank[j + 1];
        made[j] = made[j + 1];
      }
      n--;
      if (best > 0) pair_rank(best - 1);
      if (best + 1 < n) pair_rank(best);
    }
    out.insert(out.end(), ids, ids + n);
    return;
  }
  // A min-heap on (rank, position) kept in the scratch vector (std::push_heap / pop_heap with
  // "worse" as the less-than: the best candidate is at the front).
  auto worse = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
  std::vector<Cand>& heap = scratch.heap;
  heap.clear();
  auto push = [&](const Cand& c) {
    heap.push_back(c);
    std::push_heap(heap.begin(), heap.end(), worse);
  };
  for (size_t i = 0; i + 1 < sym.size(); i++)
    if (const Merge* m = lookup(sym[i].id, sym[i + 1].id)) heap.push_back({m->rank, (int32_t)i, m->new_id});
  std::make_heap(heap.begin(), heap.end(), worse);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    Cand top = heap.back();
    heap.pop_back();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    const Merge* m = lookup(left.id, right.id);
    if (!m || m->new_id != top.new_id) continue;  // stale entry: a neighbour changed since
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = top.pos;
    if (left.prev >= 0)
      if (const Merge* pm = lookup(sym[left.prev].id, left.id)) push({pm->rank, left.prev, pm->new_id});
    if (left.next >= 0)
      if (const Merge* nm = lookup(left.id, sym[left.next].id)) push({nm->rank, top.pos, nm->new_id});
  }
  for (const Symbol& s : sym)
    if (s.alive) out.push_back(s.id);
}

namespace {
// The per-thread pre-token cache: an open-addressing table (linear probing, twice as many slots
// as entries) whose keys live in one string and whose ids live in one pool, so a lookup takes no
// allocation and an insertion appends to the two. Full (kCacheEntries) -> it starts over. A key
// is looked up at most kMaxProbe slots from its home slot and never inserted farther, so even
// words built to collide cost a bounded time each (they are then encoded without the cache).
struct WordCache {
  static constexpr size_t kSlots = 2 * Tokenizer::kCacheEntries;  // a power of two
  static constexpr size_t kMaxProbe = 64;
  struct Slot { uint64_t hash; uint32_t key, key_len, ids, ids_len; };  // hash 0: empty
  uint64_t owner = 0;
  size_t count = 0;
  std::vector<Slot> slots;
  std::string keys;
  std::vector<uint32_t> pool;
  void reset() {
    slots.assign(kSlots, Slot{0, 0, 0, 0, 0});
    keys.clear();
    pool.clear();
    count = 0;
  }
};
thread_local WordCache tl_cache;

uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xD6E8FEB86659FD93ull);
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w) * 0x94D049BB133111EBull;
  h ^= h >> 32;
  h *= 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return h | 1;
}
}  // namespace

void Tokenizer::encode_word_cached(std::string_view word, std::vector<uint32_t>& out) const {
  if (word.size() > kCacheMaxWord && !final_bytelevel_) {
    // A long pre-token (a whole text piece when there is no pre-tokenizer, as Llama-2). When no
    // vocabulary token has a "▁" right after another character (checked at load: split_mark_),
    // no merge can join across such a place, and each side's merges are the same alone: BPE of
    // the word is BPE of its pieces cut before every such "▁", and the pieces can be cached.
    // (Not with ignore_merges: a piece that is a vocabulary token would be emitted whole.)
    const std::string& m = split_mark_;
    if (!m.empty()) {
      size_t start = 0;
      for (size_t p = word.find(m, 1); p != std::string::npos; p = word.find(m, p + m.size())) {
        if (p >= m.size() && word.compare(p - m.size(), m.size(), m) == 0) continue;  // "▁▁": no cut
        encode_piece_cached(word.substr(start, p - start), out);
        start = p;
      }
      encode_piece_cached(word.substr(start), out);
      return;
    }
  }
  encode_piece_cached(word, out);
}

void Tokenizer::encode_piece_cached(std::string_view word, std::vector<uint32_t>& out) const {
  auto encode = [&] {
    if (final_bytelevel_) bpe_raw(word, out);
    else bpe(word, out);
  };
  if (word.size() > kCacheMaxWord) {  // long words are rarely seen twice
    encode();
    return;
  }
  WordCache& c = tl_cache;
  if (c.owner != serial_ || c.count >= kCacheEntries) {  // another tokenizer's, or full: start over
    c.reset();
    c.owner = serial_;
  }
  const uint64_t h = hash_bytes(word.data(), word.size());
  const size_t mask = WordCache::kSlots - 1;
  size_t i = (size_t)(h >> 20) & mask, probe = 0;
  for (; probe < WordCache::kMaxProbe; probe++, i = (i + 1) & mask) {
    const WordCache::Slot& s = c.slots[i];
    if (s.hash == 0) break;
    if (s.hash == h && s.key_len == word.size() && std::memcmp(c.keys.data() + s.key, word.data(), word.size()) == 0) {
      const uint32_t* ids = c.pool.data() + s.ids;
      out.insert(out.end(), ids, ids + s.ids_len);
      return;
    }
  }
  const size_t before = out.size();
  encode();
  if (probe == WordCache::kMaxProbe) return;  // its probe run is full: not cached
  c.slots[i] = {h, (uint32_t)c.keys.size(), (uint32_t)word.size(), (uint32_t)c.pool.size(), (uint32_t)(out.size() - before)};
  c.keys.append(word.data(), word.size());
  c.pool.insert(c.pool.end(), out.begin() + before, out.end());
  c.count++;
}

// ---------------------------------------------------------------------------------------------
// Public encode / decode / pretokenize
// ---------------------------------------------------------------------------------------------
void Tokenizer::encode_append(const std::string& text, std::vector<uint32_t>& out) const {
  auto sink = [&](const char* p, size_t n) { encode_word_cached(std::string_view(p, n), out); };
  for_each_segment(text, [&](const std::string& src, uint32_t b, uint32_t e, bool first, int64_t id) {
    if (id >= 0) out.push_back((uint32_t)id);
    else pretokenize_segment(src, b, e, first, sink);
  });
}

std::vector<uint32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3 + 16);
  encode_append(text, out);
  return out;
}

std::vector<std::string> Tokenizer::pretokenize(const std::string& text) const {
  std::vector<std::string> words;
  auto sink = [&](const char* p, size_t n) {
    std::string w(p, n);
    words.push_back(final_bytelevel_ ? bytes_to_bytelevel(w) : w);
  };
  for_each_segment(text, [&](const std::string& src, uint32_t b, uint32_t e, bool first, int64_t id) {
    if (id < 0) pretokenize_segment(src, b, e, first, sink);
  });
  return words;
}
// ---------------------------------------------------------------------------------------------
// Decoders: HF Decoder::decode_chain of each step, then the tokens joined
// ---------------------------------------------------------------------------------------------
namespace {

// HF ByteFallback: "<0xHH>" (exactly 6 bytes; the two at 3..5 parsed by u8::from_str_radix, which
// also takes "+H") is a byte; -1 otherwise.
int byte_fallback_value(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (t[3] == '+') return hex(t[4]);
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void decode_step(const Tokenizer::DecStep& d, std::vector<std::string>& toks) {
  using D = Tokenizer::DecStep;
  std::vector<std::string> out;
  switch (d.kind) {
    case D::ByteLevel: {  // all tokens to one string of bytes (HF then repairs invalid UTF-8; we keep the bytes)
      std::string all, raw;
      for (const std::string& t : toks) {
        if (bytelevel_to_bytes(t, &raw)) all += raw;
        else all += t;
      }
      out.push_back(std::move(all));
      break;
    }
    case D::Replace:
      for (const std::string& t : toks) out.push_back(replace_all(t, d.literal, d.regex.get(), d.content));
      break;
    case D::ByteFallback: {  // a run of byte tokens becomes one token of those bytes
      std::string bytes;
      bool in_run = false;
      for (const std::string& t : toks) {
        int v = byte_fallback_value(t);
        if (v >= 0) { bytes += (char)v; in_run = true; continue; }
        if (in_run) { out.push_back(std::move(bytes)); bytes.clear(); in_run = false; }
        out.push_back(t);
      }
      if (in_run) out.push_back(std::move(bytes));
      break;
    }
    case D::Fuse: {
      std::string all;
      for (const std::string& t : toks) all += t;
      out.push_back(std::move(all));
      break;
    }
    case D::Strip:  // per token: up to `start` leading and `stop` trailing copies of the character
      for (const std::string& t : toks) {
        std::vector<uint32_t> cps, offsets;
        decode_utf8(t, cps, offsets);
        size_t b = 0, e = cps.size();
        while (b < e && b < d.start && cps[b] == d.ch) b++;
        while (e > b && cps.size() - e < d.stop && cps[e - 1] == d.ch) e--;
        out.push_back(t.substr(offsets[b], offsets[e] - offsets[b]));
      }
      break;
    case D::Metaspace:  // replacement -> ' ', except in the first token (all of them, as HF) unless "never"
      for (size_t i = 0; i < toks.size(); i++) {
        std::vector<uint32_t> cps, offsets;
        decode_utf8(toks[i], cps, offsets);
        std::string s;
        for (size_t k = 0; k < cps.size(); k++) {
          if (cps[k] != d.ch) s.append(toks[i], offsets[k], offsets[k + 1] - offsets[k]);
          else if (i != 0 || d.prepend_never) s += ' ';
        }
        out.push_back(std::move(s));
      }
      break;
  }
  toks.swap(out);
}

}  // namespace

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  if (!has_decoder_) throw std::runtime_error("decode: this tokenizer.json has no decoder (e.g. \"decoder\": {\"type\": \"ByteLevel\"})");
  for (size_t i = 0; i < ids.size(); i++)
    if (ids[i] >= id_to_token_.size() || id_to_token_[ids[i]].empty())
      throw std::runtime_error("decode: id " + std::to_string(ids[i]) + " at position " + std::to_string(i) +
                               " is not in the vocabulary (vocab_size " + std::to_string(vocab_size()) + ")");
  std::string out;
  if (decoder_bytes_only_) {  // fast path: one ByteLevel decoder maps every id to fixed bytes
    for (uint32_t id : ids) out += id_bytes_[id];
    return out;
  }
  // The leading per-token steps were applied to every token at load (id_dec_); then
  // ByteFallback + Fuse (Llama-2's chain) is one pass: byte tokens give their byte, others
  // their string, all joined.
  size_t k = dec_prefix_;
  std::vector<std::string> toks;
  if (k + 1 < dec_.size() && dec_[k].kind == DecStep::ByteFallback && dec_[k + 1].kind == DecStep::Fuse) {
    for (uint32_t id : ids) {
      if (id_dec_byte_[id] >= 0) out += (char)id_dec_byte_[id];
      else out += id_dec_[id];
    }
    toks.push_back(std::move(out));
    k += 2;
  } else {
    toks.reserve(ids.size());
    for (uint32_t id : ids) toks.push_back(id_dec_[id]);
  }
  for (; k < dec_.size(); k++) decode_step(dec_[k], toks);
  out.clear();
  for (const std::string& t : toks) out += t;
  return out;
}

// Applies the decoder's leading per-token steps (Replace, Strip: each token on its own, whatever
// its position) to every token once, for decode.
void Tokenizer::prepare_decoder() {
  dec_prefix_ = 0;
  while (dec_prefix_ < dec_.size() && (dec_[dec_prefix_].kind == DecStep::Replace || dec_[dec_prefix_].kind == DecStep::Strip))
    dec_prefix_++;
  id_dec_.assign(id_to_token_.size(), std::string());
  id_dec_byte_.assign(id_to_token_.size(), -1);
  for (size_t id = 0; id < id_to_token_.size(); id++) {
    if (id_to_token_[id].empty()) continue;
    std::vector<std::string> one{id_to_token_[id]};
    for (size_t k = 0; k < dec_prefix_; k++) decode_step(dec_[k], one);
    id_dec_[id] = one[0];
    id_dec_byte_[id] = (int16_t)byte_fallback_value(one[0]);
  }
}

}  // namespace ref
