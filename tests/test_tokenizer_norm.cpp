// test_tokenizer_norm.cpp — doctest suite for the SentencePiece-era parts of ref/text/tokenizer:
// normalizers, the Metaspace pre-tokenizer, BPE byte_fallback and the decoder chain (issue 12).
// Hand-computed cases (the comparison with HuggingFace tokenizers on real files is
// tests/check_real_tokenizers.sh); where HF has a quirk the expected value says so.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <cstdio>  // snprintf
#include <string>  // std::string
#include <vector>  // std::vector

#include "ref/io/json.h"
#include "ref/text/tokenizer.h"
#include "tests/test_util.h"  // error_of

namespace {

using Ids = std::vector<uint32_t>;
using Strs = std::vector<std::string>;
const std::string kMeta = "\xE2\x96\x81";  // U+2581 "▁"

// A small SentencePiece-style BPE: <unk>=0 <s>=1 </s>=2, the byte tokens <0x00>..<0xFF> = 3..258,
// then "▁" a b c é x y ▁a ▁b ab ▁ab ▁▁ and "<0x+A>" (a quirk target) = 259..271.
// Merges by rank: "▁ a", "▁ b", "a b", "▁a b", "▁ ▁".
struct Sp {
  std::string normalizer = "null", pre_tokenizer = "null", decoder = "null", extra_added;
  bool fuse_unk = false;
  std::string json() const {
    std::string vocab = "\"<unk>\":0,\"<s>\":1,\"</s>\":2";
    uint32_t next = 3;
    char name[8];
    for (int b = 0; b < 256; b++, next++) {
      snprintf(name, sizeof name, "<0x%02X>", b);
      vocab += std::string(",\"") + name + "\":" + std::to_string(next);
    }
    for (const char* t : {"\xE2\x96\x81", "a", "b", "c", "\xC3\xA9", "x", "y", "\xE2\x96\x81" "a", "\xE2\x96\x81" "b", "ab",
                          "\xE2\x96\x81" "ab", "\xE2\x96\x81\xE2\x96\x81", "<0x+A>"})
      vocab += "," + json::quote(t) + ":" + std::to_string(next++);
    return "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":["
           "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
           "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}" +
           extra_added + "],\"normalizer\":" + normalizer + ",\"pre_tokenizer\":" + pre_tokenizer +
           ",\"post_processor\":null,\"decoder\":" + decoder +
           ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\",\"continuing_subword_prefix\":null,"
           "\"end_of_word_suffix\":null,\"fuse_unk\":" + (fuse_unk ? "true" : "false") + ",\"byte_fallback\":true,\"vocab\":{" + vocab +
           "},\"merges\":[\"\xE2\x96\x81 a\",\"\xE2\x96\x81 b\",\"a b\",\"\xE2\x96\x81" "a b\",\"\xE2\x96\x81 \xE2\x96\x81\"]}}";
  }
  ref::Tokenizer load() const { return ref::Tokenizer::from_json(json()); }
};

// Without a pre-tokenizer, pretokenize() returns each normalized segment whole: the normalizer's output.
Strs normalized(const std::string& normalizer, const std::string& text) {
  Sp sp;
  sp.normalizer = normalizer;
  return sp.load().pretokenize(text);
}

std::string meta(const std::string& scheme, bool split) {
  return "{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"" + scheme + "\",\"split\":" + (split ? "true" : "false") + "}";
}

std::string replace_json(const std::string& kind, const std::string& pattern, const std::string& content) {
  return "{\"type\":\"Replace\",\"pattern\":{\"" + kind + "\":" + json::quote(pattern) + "},\"content\":" + json::quote(content) + "}";
}

}  // namespace

TEST_CASE("tokenizer normalizers: each one by hand") {
  CHECK(normalized("{\"type\":\"NFC\"}", "cafe\xCC\x81") == Strs{"caf\xC3\xA9"});
  CHECK(normalized("{\"type\":\"NFD\"}", "caf\xC3\xA9") == Strs{"cafe\xCC\x81"});
  CHECK(normalized("{\"type\":\"NFKC\"}", "\xEF\xAC\x81" "ne \xE2\x91\xA0") == Strs{"fine 1"});     // U+FB01 fi ligature, U+2460 ①
  CHECK(normalized("{\"type\":\"NFKD\"}", "\xE1\xBA\x9B") == Strs{"s\xCC\x87"});                   // U+1E9B ẛ -> s + dot above
  CHECK(normalized("{\"type\":\"Lowercase\"}", "AB\xC4\xB0\xCE\xA3") == Strs{"abi\xCC\x87\xCF\x83"}); // İ -> i̇, Σ -> σ (no final sigma)
  CHECK(normalized("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}", " \t a b \n") == Strs{"a b \n"});
  CHECK(normalized("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", "\xE3\x80\x80 a b \xC2\x85") == Strs{"a b"});  // U+3000, U+0085 are White_Space
  CHECK(normalized("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", "a\xE2\x80\x8B") == Strs{"a\xE2\x80\x8B"});  // U+200B is not
  CHECK(normalized(replace_json("String", "  ", " "), "a    b   c") == Strs{"a  b  c"});  // leftmost, non-overlapping
  CHECK(normalized(replace_json("Regex", "\\s+", "_"), "a \t b\nc") == Strs{"a_b_c"});
  CHECK(normalized(replace_json("String", " ", kMeta), " a b") == Strs{kMeta + "a" + kMeta + "b"});
  CHECK(normalized("{\"type\":\"Prepend\",\"prepend\":\"" + kMeta + "\"}", "ab") == Strs{kMeta + "ab"});
  // The order of a Sequence matters: Lowercase then Replace, or the other way round.
  CHECK(normalized("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Lowercase\"}," + replace_json("String", "a", "B") + "]}", "Aa") == Strs{"BB"});
  CHECK(normalized("{\"type\":\"Sequence\",\"normalizers\":[" + replace_json("String", "a", "B") + ",{\"type\":\"Lowercase\"}]}", "Aa") == Strs{"ab"});
  // Nested Sequences flatten; an empty one is the identity.
  CHECK(normalized("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Sequence\",\"normalizers\":[]},{\"type\":\"NFD\"}]}", "\xC3\xA9") == Strs{"e\xCC\x81"});
}

TEST_CASE("tokenizer normalizers: applied per piece between normalized=false added tokens, as HF") {
  // HF normalizes each piece that the normalized=false tokens leave: Prepend acts on every one.
  Sp sp;
  sp.normalizer = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"" + kMeta + "\"}," + replace_json("String", " ", kMeta) + "]}";
  sp.decoder = "{\"type\":\"Sequence\",\"decoders\":[" + replace_json("String", kMeta, " ") +
               ",{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}";
  ref::Tokenizer t = sp.load();
  CHECK(t.pretokenize("ab<s>ab b") == Strs{kMeta + "ab", kMeta + "ab" + kMeta + "b"});
  uint32_t ab = (uint32_t)t.token_id(kMeta + "ab"), b_ = (uint32_t)t.token_id(kMeta + "b");
  CHECK(t.encode("ab<s>ab b") == Ids{ab, 1, ab, b_});
  CHECK(t.encode("") == Ids{});
  // Llama-2's decoder: ▁ -> ' ', then one leading space stripped; the piece after <s> keeps its space.
  CHECK(t.decode(t.encode("ab b")) == "ab b");
  CHECK(t.decode(t.encode("ab<s>ab")) == "ab<s> ab");
}

TEST_CASE("tokenizer normalizers: normalized=true added tokens match by their normalized content") {
  Sp sp;
  sp.normalizer = "{\"type\":\"Lowercase\"}";
  sp.decoder = "{\"type\":\"Fuse\"}";
  sp.extra_added = ",{\"id\":272,\"content\":\"<X>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false}";
  ref::Tokenizer t = sp.load();
  uint32_t a = (uint32_t)t.token_id("a");
  CHECK(t.encode("a<X>a") == Ids{a, 272, a});
  CHECK(t.encode("a<x>a") == Ids{a, 272, a});  // the text is lowercased first, then matched
  CHECK(t.token_str(272) == "<x>");            // HF names and decodes it in its normalized form
  CHECK(t.decode({272}) == "<x>");
  CHECK(t.token_id("<X>") == 272);
  // A token the normalizer empties cannot be matched: refused.
  Sp bad = sp;
  bad.normalizer = "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}";
  bad.extra_added = ",{\"id\":272,\"content\":\"  \",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false}";
  CHECK(error_of([&] { bad.load(); }).find("makes its content empty") != std::string::npos);
}

TEST_CASE("tokenizer Metaspace: replacement, prepend_scheme and split by hand") {
  auto pieces = [](const std::string& scheme, bool split, const std::string& text) {
    Sp sp;
    sp.pre_tokenizer = meta(scheme, split);
    return sp.load().pretokenize(text);
  };
  const std::string m = kMeta;
  CHECK(pieces("always", true, "a b") == Strs{m + "a", m + "b"});
  CHECK(pieces("always", true, "a  b") == Strs{m + "a", m, m + "b"});       // MergedWithNext: "▁a", "▁", "▁b"
  CHECK(pieces("always", true, " a") == Strs{m + "a"});                     // starts with ▁ after the replace: no second one
  CHECK(pieces("always", true, m + "a") == Strs{m + "a"});
  CHECK(pieces("always", false, "a b") == Strs{m + "a" + m + "b"});
  CHECK(pieces("never", true, "a b") == Strs{"a", m + "b"});
  CHECK(pieces("always", true, "a<s>b") == Strs{m + "a", m + "b"});         // every piece
  CHECK(pieces("first", true, "a<s>b") == Strs{m + "a", "b"});              // only the piece at offset 0
  CHECK(pieces("first", true, "<s>a b") == Strs{"a", m + "b"});
  CHECK(pieces("first", true, "") == Strs{});
  // After a Split that removes leading white space, the first piece no longer starts at 0.
  Sp sp;
  sp.pre_tokenizer = "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"behavior\":\"Removed\",\"invert\":false}," + meta("first", true) + "]}";
  ref::Tokenizer t = sp.load();
  CHECK(t.pretokenize("a b") == Strs{m + "a", "b"});
  CHECK(t.pretokenize(" a b") == Strs{"a", "b"});
  // Ids: BPE on the Metaspace pieces.
  Sp sp2;
  sp2.pre_tokenizer = meta("always", true);
  ref::Tokenizer t2 = sp2.load();
  CHECK(t2.encode("ab b") == Ids{(uint32_t)t2.token_id(m + "ab"), (uint32_t)t2.token_id(m + "b")});
}

TEST_CASE("tokenizer byte_fallback: <0xHH> tokens for unknown characters, HF's unk order") {
  Sp sp;
  ref::Tokenizer t = sp.load();
  uint32_t a = (uint32_t)t.token_id("a"), e = (uint32_t)t.token_id("\xC3\xA9");
  auto byte = [](int b) { return (uint32_t)(3 + b); };
  CHECK(t.encode("a\xC3\xA9") == Ids{a, e});                                  // é is in the vocabulary
  CHECK(t.encode("\xC3\xBC" "a") == Ids{byte(0xC3), byte(0xBC), a});          // ü is not: its UTF-8 bytes
  CHECK(t.encode("\xF0\x9F\x98\x80") == Ids{byte(0xF0), byte(0x9F), byte(0x98), byte(0x80)});
  CHECK(t.encode("a\xFF" "a") == Ids{a, byte(0xFF), a});                     // an invalid byte is a character of its own
  // Only some byte tokens: a character whose bytes are not all there is <unk>; HF holds the
  // unk back until the next known character, so byte tokens in between come first.
  std::string j = sp.json();
  for (const char* drop : {"\"<0xE2>\":229,", "\"<0x82>\":133,"}) {
    size_t at = j.find(drop);
    REQUIRE(at != std::string::npos);
    j.erase(at, std::string(drop).size());
  }
  ref::Tokenizer partial = ref::Tokenizer::from_json(j);
  const std::string euro = "\xE2\x82\xAC", u = "\xC3\xBC";
  CHECK(partial.encode(euro + u + "a") == Ids{byte(0xC3), byte(0xBC), 0, a});
  CHECK(partial.encode(euro + euro + u + euro + "a") == Ids{0, byte(0xC3), byte(0xBC), 0, 0, a});
  Sp fused = sp;
  fused.fuse_unk = true;
  std::string jf = fused.json();
  for (const char* drop : {"\"<0xE2>\":229,", "\"<0x82>\":133,"}) jf.erase(jf.find(drop), std::string(drop).size());
  CHECK(ref::Tokenizer::from_json(jf).encode(euro + euro + u + euro + "a") == Ids{byte(0xC3), byte(0xBC), 0, a});
}

TEST_CASE("tokenizer decoders: each one by hand") {
  auto dec = [](const std::string& decoder, const Strs& tokens) {
    Sp sp;
    sp.decoder = decoder;
    ref::Tokenizer t = sp.load();
    Ids ids;
    for (const std::string& s : tokens) {
      int32_t id = t.token_id(s);
      REQUIRE(id >= 0);
      ids.push_back((uint32_t)id);
    }
    return t.decode(ids);
  };
  const std::string m = kMeta;
  // Metaspace: ▁ -> ' ', but in the first token every ▁ is dropped (HF's decode_chain), unless "never".
  CHECK(dec(meta("always", true), {m + "a", m, m + "a", "b"}) == "a  ab");
  CHECK(dec(meta("never", true), {m + "a", m, m + "a", "b"}) == " a  ab");
  CHECK(dec(meta("first", true), {m + m, "a"}) == "a");
  // ByteFallback: a run of byte tokens becomes its bytes; "<0x+A>" is byte 0x0A (Rust's
  // u8::from_str_radix takes a '+'); invalid UTF-8 stays as bytes (HF writes U+FFFD per byte).
  std::string bf = "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}";
  CHECK(dec(bf, {"<0x+A>", "a", "<0xC3>", "<0xBC>", "b"}) == "\na\xC3\xBC" "b");
  CHECK(dec(bf, {"<0xC3>", "<0xBC>", "<0xC3>", "b"}) == "\xC3\xBC\xC3" "b");
  // Replace and Strip act per token; after Fuse there is one token.
  std::string llama = "{\"type\":\"Sequence\",\"decoders\":[" + replace_json("String", m, " ") +
                      ",{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}";
  CHECK(dec(llama, {m + "a", "<0xC3>", "<0xBC>", m + "b"}) == "a\xC3\xBC b");
  CHECK(dec(llama, {m + m, "a"}) == " a");  // one space stripped of two
  std::string per_token = "{\"type\":\"Sequence\",\"decoders\":[" + replace_json("String", m, " ") +
                          ",{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}";
  CHECK(dec(per_token, {m + "a", m + "b", m + m}) == "ab ");
  CHECK(dec(replace_json("Regex", "[ab]+", "-"), {"ab", "x", m + "ab"}) == "-x" + m + "-");
  // ByteLevel in a Sequence: tokens to bytes, one string.
  CHECK(dec("{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteLevel\"},{\"type\":\"Strip\",\"content\":\"a\",\"start\":2,\"stop\":0}]}",
            {"a", "a", "a", "b"}) == "ab");
}

TEST_CASE("tokenizer: refusals of the SentencePiece-era features, by name and JSON path") {
  auto err = [](const Sp& sp) { return error_of([&] { sp.load(); }); };
  Sp sp;
  sp.pre_tokenizer = "{\"type\":\"Metaspace\",\"replacement\":\"" + kMeta + "\",\"add_prefix_space\":false}";
  CHECK(err(sp).find("pre_tokenizer.add_prefix_space: false contradicts prepend_scheme") != std::string::npos);
  sp.pre_tokenizer = "{\"type\":\"Metaspace\",\"replacement\":\"ab\"}";
  CHECK(err(sp).find("pre_tokenizer.replacement: expected exactly one character") != std::string::npos);
  sp.pre_tokenizer = meta("sometimes", true);
  CHECK(err(sp).find("unknown value 'sometimes'") != std::string::npos);
  sp.pre_tokenizer = meta("first", true);
  sp.normalizer = "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}";
  CHECK(err(sp).find("Metaspace with prepend_scheme \"first\" after a Strip/Replace/Prepend normalizer") != std::string::npos);
  sp.pre_tokenizer = "null";
  sp.normalizer = "{\"type\":\"Strip\",\"strip_left\":true}";
  CHECK(err(sp).find("normalizer: Strip needs 'strip_right'") != std::string::npos);
  sp.normalizer = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFC\"},{\"type\":\"StripAccents\"}]}";
  CHECK(err(sp).find("normalizer.normalizers[1]: normalizer type 'StripAccents' is not supported") != std::string::npos);
  sp.normalizer = replace_json("String", "", "x");
  CHECK(err(sp).find("normalizer.pattern: empty pattern") != std::string::npos);
  sp.normalizer = replace_json("Regex", "(?<=a)b", "x");
  CHECK(err(sp).find("look-behind") != std::string::npos);
  sp.normalizer = "null";
  sp.decoder = "{\"type\":\"Strip\",\"content\":\" \",\"start\":0,\"stop\":1}";
  CHECK(err(sp).find("decoder.stop: Strip with stop > 0 is not supported") != std::string::npos);
  sp.decoder = "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Fuse\"},{\"type\":\"CTC\"}]}";
  CHECK(err(sp).find("decoder.decoders[1]: decoder type 'CTC' is not supported") != std::string::npos);
  sp.decoder = "null";
  CHECK(error_of([&] { sp.load().decode({3}); }).find("has no decoder") != std::string::npos);
}

TEST_CASE("tokenizer: long pre-tokens are cut before \"▁\" only where no merge can cross") {
  // Without a pre-tokenizer a whole text is one word; encode cuts it before each "▁" that follows
  // another character (for the cache), which is exact only when no token has such a "▁" inside.
  Sp sp;
  sp.normalizer = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"" + kMeta + "\"}," + replace_json("String", " ", kMeta) + "]}";
  ref::Tokenizer t = sp.load();
  std::string text;
  for (int i = 0; i < 200; i++) text += i % 3 ? "ab " : "ab  ";
  Ids want;
  uint32_t ab = (uint32_t)t.token_id(kMeta + "ab"), meta_id = (uint32_t)t.token_id(kMeta);
  for (int i = 0; i < 200; i++) {
    want.push_back(ab);                       // "▁ab"
    if (i % 3 == 0) want.push_back(meta_id);  // two spaces: "▁▁ab" is "▁" + "▁ab"
  }
  want.push_back(meta_id);  // the trailing space
  CHECK(t.encode(text) == want);
  // A token "b▁a" (merge "b ▁a") crosses such a place: then the word must not be cut.
  std::string j = sp.json();
  size_t at = j.find("\"<0x+A>\":271");
  REQUIRE(at != std::string::npos);
  j.insert(at + std::string("\"<0x+A>\":271").size(), ",\"b\xE2\x96\x81" "a\":272");
  at = j.find("\"merges\":[");
  REQUIRE(at != std::string::npos);
  j.insert(at + 10, "\"b \xE2\x96\x81" "a\",");
  ref::Tokenizer crossing = ref::Tokenizer::from_json(j);
  std::string word;
  for (int i = 0; i < 100; i++) word += "b a";  // normalized: "▁b▁ab▁ab▁a..."
  Ids ids = crossing.encode(word);
  REQUIRE(ids.size() == 101);
  CHECK(ids[0] == (uint32_t)crossing.token_id(kMeta));
  for (size_t i = 1; i < ids.size(); i++) CHECK(ids[i] == 272);  // "b▁a": merged across the "▁"
}
