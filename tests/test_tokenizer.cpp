// test_tokenizer.cpp — doctest suite for ref/io/json and ref/text/tokenizer.
// Hand-computed cases only; the comparison with HuggingFace tokenizers is tests/check_tokenizer_hf.sh.
#include <doctest/doctest.h>  // TEST_CASE, CHECK, REQUIRE

#include <cstdint>    // INT64_MAX, INT64_MIN
#include <string>     // std::string

#include "ref/io/json.h"
#include "tests/test_util.h"  // error_of

TEST_CASE("json: parses scalars, arrays and objects in file order") {
  json::Value v = json::parse(" {\"b\": [1, -2.5e1, true, false, null], \"a\": \"x\\u00e9\\ud83d\\ude00\\n\"} ");
  REQUIRE(v.is(json::Value::Object));
  REQUIRE(v.obj.size() == 2);
  CHECK(v.obj[0].first == "b");
  CHECK(v.obj[1].first == "a");
  const json::Value& b = v.at("b");
  REQUIRE(b.arr.size() == 5);
  CHECK(b.arr[0].as_int() == 1);
  CHECK(b.arr[1].as_num() == -25.0);
  CHECK(b.arr[2].as_bool() == true);
  CHECK(b.arr[3].as_bool() == false);
  CHECK(b.arr[4].is(json::Value::Null));
  CHECK(v.at("a").as_str() == "x\xC3\xA9\xF0\x9F\x98\x80\n");
  CHECK(v.find("zzz") == nullptr);
  CHECK(error_of([&] { v.at("zzz"); }) == "JSON: missing key 'zzz'");
  CHECK(error_of([&] { v.at("a").as_int(); }) == "JSON: expected integer, got string");
}

TEST_CASE("json: exact int64 parsing") {
  CHECK(json::parse("9223372036854775807").as_int() == INT64_MAX);
  CHECK(json::parse("-9223372036854775808").as_int() == INT64_MIN);
  CHECK(json::parse("3.0").as_int() == 3);
  CHECK(error_of([] { json::parse("9223372036854775808").as_int(); }).find("out of int64 range") != std::string::npos);
  CHECK(error_of([] { json::parse("2.5").as_int(); }).find("expected an integer") != std::string::npos);
}

TEST_CASE("json: malformed input names line and column") {
  CHECK(error_of([] { json::parse("{\"a\": 1,}"); }) == "JSON error at line 1 col 9: expected a string key in object, got '}'");
  CHECK(error_of([] { json::parse("[1,\n  2 3]"); }) == "JSON error at line 2 col 5: expected ']' or ',' in array, got '3'");
  CHECK(error_of([] { json::parse("[1, 2"); }).find("unexpected end of input") != std::string::npos);
  CHECK(error_of([] { json::parse("\"abc"); }).find("unterminated string") != std::string::npos);
  CHECK(error_of([] { json::parse("01"); }).find("leading zeros") != std::string::npos);
  CHECK(error_of([] { json::parse("[1] x"); }).find("after the top-level value") != std::string::npos);
  CHECK(error_of([] { json::parse("\"\\x\""); }).find("invalid escape") != std::string::npos);
  CHECK(error_of([] { json::parse("\"\\ud800\""); }).find("surrogate") != std::string::npos);
  CHECK(error_of([] { json::parse("\"a\x01\""); }).find("control character") != std::string::npos);
  CHECK(error_of([] { json::parse("\"\xC3\""); }).find("invalid UTF-8") != std::string::npos);
  CHECK(error_of([] { json::parse("tru"); }).find("invalid literal") != std::string::npos);
  CHECK(error_of([] { json::parse(""); }).find("line 1 col 1") != std::string::npos);
  CHECK(error_of([] { json::parse(std::string(1000, '[')); }).find("nesting") != std::string::npos);
  CHECK(error_of([] { json::parse("1e999"); }).find("out of double range") != std::string::npos);
}

TEST_CASE("json: quote escapes and round-trips") {
  std::string s = "a\"b\\c\n\t\x01 \xC3\xA9 \xF0\x9F\x98\x80";
  std::string q = json::quote(s);
  CHECK(q == "\"a\\\"b\\\\c\\n\\t\\u0001 \xC3\xA9 \xF0\x9F\x98\x80\"");
  CHECK(json::parse(q).as_str() == s);
  CHECK(json::quote("\xFF") == "\"\\u00ff\"");  // stray byte: escaped, document stays valid
}

// ===============================================================================================
// Tokenizer
// ===============================================================================================
#include <random>  // std::mt19937
#include <thread>  // std::thread

#include "ref/text/regex.h"
#include "ref/text/tokenizer.h"

namespace {

// Splits text with a regex and returns the matched substrings.
std::vector<std::string> regex_matches(const std::string& pattern, const std::string& text) {
  ref::Regex re(pattern);
  std::vector<uint32_t> cps, offsets;
  ref::decode_utf8(text, cps, offsets);
  std::vector<std::pair<uint32_t, uint32_t>> m;
  re.find_all(cps, m);
  std::vector<std::string> out;
  for (auto& p : m) out.push_back(text.substr(offsets[p.first], offsets[p.second] - offsets[p.first]));
  return out;
}

// A hand-made byte-level tokenizer: the 256 byte tokens with id = byte value, then
//   rank 0: "h e" -> 256 "he"     rank 1: "l l" -> 257 "ll"     rank 2: "he ll" -> 258 "hell"
//   rank 3: "hell o" -> 259       rank 4: "Ġ w" -> 260 "Ġw"      rank 5: "e l" -> 261 "el"
// plus token 262 "xyz" reachable by no merge, and added token 263 "<|eot|>" (special).
std::string tiny_json(const std::string& pre_tokenizer, bool ignore_merges = false, const std::string& extra_added = "") {
  std::string vocab;
  for (int b = 0; b < 256; b++) vocab += json::quote(ref::bytelevel_alphabet()[b]) + ":" + std::to_string(b) + ",";
  vocab += "\"he\":256,\"ll\":257,\"hell\":258,\"hello\":259,\"\xC4\xA0w\":260,\"el\":261,\"xyz\":262";
  return std::string("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,") +
         "\"added_tokens\":[{\"id\":263,\"content\":\"<|eot|>\",\"single_word\":false,\"lstrip\":false,"
         "\"rstrip\":false,\"normalized\":false,\"special\":true}" + extra_added + "]," +
         "\"normalizer\":null,\"pre_tokenizer\":" + pre_tokenizer + ",\"post_processor\":null," +
         "\"decoder\":{\"type\":\"ByteLevel\"},\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null," +
         "\"ignore_merges\":" + (ignore_merges ? "true" : "false") + ",\"vocab\":{" + vocab + "}," +
         "\"merges\":[\"h e\",\"l l\",[\"he\",\"ll\"],\"hell o\",\"\xC4\xA0 w\",\"e l\"]}}";
}

const char* kByteLevel = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}";

using Ids = std::vector<uint32_t>;

std::string fixture(const std::string& name) { return "tests/fixtures/tokenizers/" + name; }

}  // namespace

TEST_CASE("tokenizer: byte-level alphabet is GPT-2's bytes_to_unicode") {
  const auto& a = ref::bytelevel_alphabet();
  REQUIRE(a.size() == 256);
  CHECK(a['A'] == "A");
  CHECK(a[' '] == "\xC4\xA0");     // U+0120 'Ġ': the 33rd non-printable byte
  CHECK(a[0] == "\xC4\x80");       // U+0100
  CHECK(a['\n'] == "\xC4\x8A");    // U+010A 'Ċ'
  CHECK(a[0xAD] == "\xC5\x83");    // U+0143: the last remapped byte
  CHECK(a[0xFF] == "\xC3\xBF");    // printable Latin-1 maps to itself
  std::string raw;
  CHECK(ref::bytelevel_to_bytes(ref::bytes_to_bytelevel(std::string("a b\xFF\x00", 5)), &raw));
  CHECK(raw == std::string("a b\xFF\x00", 5));
  CHECK_FALSE(ref::bytelevel_to_bytes(" ", &raw));  // a real space is not in the alphabet
}

TEST_CASE("tokenizer: GPT-2 pre-tokenization by hand") {
  using V = std::vector<std::string>;
  CHECK(ref::gpt2_pretokenize("Hello  world\n") == V{"Hello", " ", " world", "\n"});
  CHECK(ref::gpt2_pretokenize("it's 2024!!") == V{"it", "'s", " 2024", "!!"});
  CHECK(ref::gpt2_pretokenize("IT'S") == V{"IT", "'", "S"});  // GPT-2's contractions are case-sensitive
  CHECK(ref::gpt2_pretokenize("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC") == V{"caf\xC3\xA9", " \xE6\x97\xA5\xE6\x9C\xAC"});
  CHECK(ref::gpt2_pretokenize("a\xFF" "b") == V{"a", "\xFF", "b"});  // an invalid byte is a symbol of its own
  CHECK(ref::gpt2_pretokenize("").empty());
}

TEST_CASE("regex: Oniguruma-style leftmost-first semantics") {
  using V = std::vector<std::string>;
  CHECK(regex_matches("(?i:'s|'t)|\\p{L}+", "IT'S it's") == V{"IT", "'S", "it", "'s"});
  CHECK(regex_matches("\\p{N}{1,3}", "1234567x89") == V{"123", "456", "7", "89"});
  CHECK(regex_matches("a|ab", "ab") == V{"a"});           // first alternative wins, not the longest
  CHECK(regex_matches("a+?", "aaa") == V{"a", "a", "a"});  // lazy
  CHECK(regex_matches("\\s+(?!\\S)", "a   b") == V{"  "});  // look-ahead backs off one space
  CHECK(regex_matches("[^\\s]++x", "abcx abc").empty());      // possessive: never gives back the x
  CHECK(regex_matches("(?>a+)b|a", "aab") == V{"aab"});
  CHECK(regex_matches("a*", "baaac") == V{"", "aaa", ""});  // empty matches as onig's find_iter
  CHECK(regex_matches("[\\p{Lu}][\\p{Ll}]+", "HelloWORLD World") == V{"Hello", "World"});
  CHECK(regex_matches("[a-c\\-]+", "xa-cbz") == V{"a-cb"});
  CHECK(regex_matches("^a|b$", "ab\na") == V{"a", "b", "a"});  // line anchors (Ruby syntax)
  CHECK(regex_matches(".", "a\nb") == V{"a", "b"});
  CHECK(regex_matches("\\x{4e00}|\\u00e9", "\xE4\xB8\x80\xC3\xA9") == V{"\xE4\xB8\x80", "\xC3\xA9"});
  CHECK(regex_matches("(?i:[a-z]+)", "AbC\xC5\xBF") == V{"AbC\xC5\xBF"});  // U+017F long s folds to s
  CHECK(regex_matches("\\p{M}+", "e\xCC\x81\xCC\x80x") == V{"\xCC\x81\xCC\x80"});
  CHECK(regex_matches("\\s", "\xC2\xA0\xC2\x85\xE2\x80\x8B").size() == 2);  // NBSP, NEL; not ZWSP
}

TEST_CASE("regex: unsupported constructs are refused by name") {
  auto err = [](const std::string& p) { return error_of([&] { ref::Regex r(p); }); };
  CHECK(err("(?<=a)b").find("look-behind") != std::string::npos);
  CHECK(err("\\p{Han}").find("\\p{Han}") != std::string::npos);
  CHECK(err("(a)\\1").find("backreferences") != std::string::npos);
  CHECK(err("[[:upper:]]").find("POSIX bracket") != std::string::npos);  // [[:alpha:]] is supported (test_regex.cpp)
  CHECK(err("[a-z&&[^aeiou]]").find("&&") != std::string::npos);
  CHECK(err("(?i)abc").find("(?i)") != std::string::npos);
  CHECK(err("a{1,3}+").empty());  // Ruby syntax: (?:a{1,3})+, as HF reads it (test_regex.cpp)
  CHECK(err("(a?)*").empty());  // accepted: an empty iteration ends the loop, as in Oniguruma (test_regex.cpp)
  CHECK(err("\\bword").find("\\b") != std::string::npos);
  CHECK(err("(ab").find("unterminated group") != std::string::npos);
  CHECK(err("[ab").find("unterminated class") != std::string::npos);
  CHECK(err("ab)").find("unmatched ')'") != std::string::npos);
  CHECK(err("*a").find("nothing to repeat") != std::string::npos);
  CHECK(err("a**").empty());  // stacked quantifiers nest, as in HF (test_regex.cpp)
  CHECK(err("a{3,2}").find("n < m") != std::string::npos);
}

TEST_CASE("tokenizer: hand-computed BPE merges") {
  ref::Tokenizer t = ref::Tokenizer::from_json(tiny_json(kByteLevel));
  CHECK(t.vocab_size() == 264);
  CHECK(t.encode("hello") == Ids{259});
  CHECK(t.encode("hell") == Ids{258});   // "h e"(0), "l l"(1), then "he ll"(2)
  CHECK(t.encode("lll") == Ids{257, 'l'});  // equal ranks: the leftmost pair merges first
  CHECK(t.encode("ell") == Ids{'e', 257});  // "l l" (rank 1) beats "e l" (rank 5)
  CHECK(t.encode("el") == Ids{261});
  CHECK(t.encode("hello world") == Ids{259, 260, 'o', 'r', 'l', 'd'});
  CHECK(t.encode("xyz") == Ids{'x', 'y', 'z'});  // in the vocab but no merge path
  CHECK(t.encode(" \n") == Ids{' ', '\n'});
  CHECK(t.encode("\xC3\xA9") == Ids{0xC3, 0xA9});
  CHECK(t.encode("hi<|eot|>hi") == Ids{'h', 'i', 263, 'h', 'i'});
  CHECK(t.encode("<|eot|><|eot|") == Ids{263, '<', '|', 'e', 'o', 't', '|'});
  CHECK(t.encode("").empty());
  CHECK(t.decode({259, 263, 0xC3}) == "hello<|eot|>\xC3");
  CHECK(t.token_id("hello") == 259);
  CHECK(t.token_id("<|eot|>") == 263);
  CHECK(t.token_id("nope") == -1);
  CHECK(t.token_str(260) == "\xC4\xA0w");
  CHECK(t.is_special(263));
  CHECK(t.pretokenize("hello world's<|eot|>x") == std::vector<std::string>{"hello", "\xC4\xA0world", "'s", "x"});
  CHECK(error_of([&] { t.decode({264}); }).find("not in the vocabulary") != std::string::npos);
  CHECK(error_of([&] { t.token_str(1000); }).find("out of range") != std::string::npos);
}

TEST_CASE("tokenizer: ignore_merges emits whole-vocabulary pre-tokens") {
  ref::Tokenizer t = ref::Tokenizer::from_json(tiny_json(kByteLevel, true));
  CHECK(t.encode("xyz") == Ids{262});
  CHECK(t.encode("hello") == Ids{259});
}

TEST_CASE("tokenizer: added-token options (lstrip, rstrip, single_word)") {
  std::string extra =
      ",{\"id\":264,\"content\":\"<m>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":true,\"normalized\":false,\"special\":true}"
      ",{\"id\":265,\"content\":\"he\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,\"normalized\":true,\"special\":false}";
  // "he" is in the vocabulary (id 256), so HF keeps its id; declare it with 256.
  std::string bad = extra;
  extra.replace(extra.find("265"), 3, "256");
  ref::Tokenizer t = ref::Tokenizer::from_json(tiny_json(kByteLevel, false, extra));
  CHECK(t.encode("a  <m>  b") == Ids{'a', 264, 'b'});     // spaces on both sides swallowed
  CHECK(t.encode("he hello") == Ids{256, ' ', 259});     // the "he" inside "hello" is not a single word
  CHECK(t.encode("he x") == Ids{256, ' ', 'x'});            // single word: matched
  CHECK(t.encode("hex") == Ids{256, 'x'});                  // inside a word: BPE ("h e" merges anyway)
  CHECK(error_of([&] { ref::Tokenizer::from_json(tiny_json(kByteLevel, false, bad)); })
            .find("HF tokenizers would give it id 256") != std::string::npos);
}

TEST_CASE("tokenizer: decode(encode(x)) == x on random bytes, including invalid UTF-8") {
  for (const char* name : {"cl100k_style.json", "deepseek_v3_style.json", "o200k_style.json"}) {
    ref::Tokenizer t = ref::Tokenizer::load(fixture(name));
    std::mt19937 rng(1234);
    const std::string pool[] = {"a", "Z", " ", "  ", "\n", "\r\n", "\t", "1", "99", "'s", "'S", "\xC3\xA9", "\xE4\xB8\xAD",
                                "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "\xCC\x81", "!", "<", "|", "\xFF", "\xC3", "\x80", "\xED\xA0\x80"};
    for (int trial = 0; trial < 300; trial++) {
      std::string s;
      int len = (int)(rng() % 40);
      for (int k = 0; k < len; k++) {
        if (rng() % 4 == 0) s += (char)(rng() % 256);  // any byte at all
        else s += pool[rng() % (sizeof(pool) / sizeof(pool[0]))];
      }
      Ids ids = t.encode(s);
      INFO(name << " trial " << trial << " input " << json::quote(s));
      REQUIRE(t.decode(ids) == s);
    }
  }
}

TEST_CASE("tokenizer: DeepSeek-V3-style split sequence by hand") {
  ref::Tokenizer t = ref::Tokenizer::load(fixture("deepseek_v3_style.json"));
  std::vector<std::string> pieces = t.pretokenize("1234567 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E!x");
  std::vector<std::string> raw;
  for (const std::string& p : pieces) {
    std::string r;
    REQUIRE(ref::bytelevel_to_bytes(p, &r));
    raw.push_back(r);
  }
  CHECK(raw == std::vector<std::string>{"123", "456", "7", " ", "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E", "!x"});
}

TEST_CASE("tokenizer: encode is thread-safe and equals the single-threaded result") {
  ref::Tokenizer t = ref::Tokenizer::load(fixture("cl100k_style.json"));
  std::string text;
  for (int i = 0; i < 200; i++) text += "The quick brown fox " + std::to_string(i * 7919) + " jumps; ";
  Ids expect = t.encode(text);
  std::vector<Ids> got(2);
  std::vector<std::thread> threads;
  for (int k = 0; k < 2; k++) threads.emplace_back([&, k] { for (int r = 0; r < 3; r++) got[k] = t.encode(text); });
  for (auto& th : threads) th.join();
  CHECK(got[0] == expect);
  CHECK(got[1] == expect);
}

TEST_CASE("tokenizer: bad files are refused with a message naming the problem") {
  auto err = [](const std::string& j) { return error_of([&] { ref::Tokenizer::from_json(j); }); };
  std::string good = tiny_json(kByteLevel);
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    size_t at = s.find(from);
    REQUIRE(at != std::string::npos);
    return s.replace(at, from.size(), to);
  };
  CHECK(err("{\"model\": ").find("JSON error at line 1 col 11") != std::string::npos);
  CHECK(err(with("\"type\":\"BPE\"", "\"type\":\"WordPiece\"")).find("'WordPiece' is not supported") != std::string::npos);
  CHECK(err(with("\"type\":\"BPE\"", "\"type\":\"Unigram\"")).find("'Unigram' is not supported") != std::string::npos);
  CHECK(err(with(kByteLevel, "{\"type\":\"Whitespace\"}")).find("pre-tokenizer type 'Whitespace' is not supported") != std::string::npos);
  CHECK(err(with(kByteLevel, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(?<=a)b\"},"
                             "\"behavior\":\"Isolated\",\"invert\":false}," + std::string(kByteLevel) + "]}"))
            .find("look-behind") != std::string::npos);
  CHECK(err(with(kByteLevel, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Metaspace\",\"replacement\":\"_\"}," + std::string(kByteLevel) + "]}"))
            .find("both ByteLevel and Metaspace") != std::string::npos);
  CHECK(err(with("\"normalizer\":null", "\"normalizer\":{\"type\":\"BertNormalizer\"}")).find("type 'BertNormalizer' is not supported") != std::string::npos);
  CHECK(err(with("\"truncation\":null", "\"truncation\":{\"max_length\":5}")).find("truncation") != std::string::npos);
  CHECK(err(with("\"hell o\"", "\"hell q\"")).find("model.merges[3]") != std::string::npos);
  CHECK(err(with("\"hell o\"", "\"hello\"")).find("exactly one space") != std::string::npos);
  CHECK(err(with("\"dropout\":null", "\"dropout\":0.1")).find("dropout") != std::string::npos);
  CHECK(err(with("\"version\":\"1.0\"", "\"version\":\"2.0\"")).find("unknown tokenizer version '2.0'") != std::string::npos);
  CHECK(err(with("\"dropout\":null", "\"dropout\":null,\"frobnicate\":1")).find("unknown key 'frobnicate'") != std::string::npos);
  CHECK(err(with("\"decoder\":{\"type\":\"ByteLevel\"}", "\"decoder\":{\"type\":\"WordPiece\"}")).find("decoder") != std::string::npos);
  CHECK(error_of([] { ref::Tokenizer::load("/nonexistent/tokenizer.json"); }).find("cannot open") != std::string::npos);
}

TEST_CASE("tokenizer: the pre-token cache stays exact when it fills up and starts over") {
  // 70,000 distinct words: more than the per-thread cache holds (kCacheEntries), so it starts
  // over during the first pass; the second pass hits whatever is cached. Both must equal the
  // text encoded in chunks of 500 words, each on a freshly loaded tokenizer (its own empty cache).
  // Chunks start before a space, where the pre-tokenizer cuts anyway.
  static_assert(ref::Tokenizer::kCacheEntries < 70000, "the text must overflow the cache");
  std::vector<std::string> words;
  for (uint32_t i = 0; i < 70000; i++) {
    std::string w = " ";
    for (uint32_t v = i * 2654435761u % 1000003u + 1000003u; v; v /= 26) w += (char)('a' + v % 26);
    words.push_back(w + (i % 7 == 0 ? "ll" : "") + (i % 11 == 0 ? "!" : ""));
  }
  std::string text;
  for (const std::string& w : words) text += w;
  ref::Tokenizer t = ref::Tokenizer::load(fixture("cl100k_style.json"));
  Ids cold = t.encode(text), warm = t.encode(text);
  Ids chunked;
  for (size_t k = 0; k < words.size(); k += 500) {
    std::string part;
    for (size_t j = k; j < std::min(words.size(), k + 500); j++) part += words[j];
    ref::Tokenizer fresh = ref::Tokenizer::load(fixture("cl100k_style.json"));
    Ids ids = fresh.encode(part);
    chunked.insert(chunked.end(), ids.begin(), ids.end());
  }
  CHECK(cold.size() > words.size());
  CHECK(cold == chunked);
  CHECK(warm == chunked);
}
