// tokenize.cpp — command-line front end for ref::Tokenizer (HF tokenizer.json, byte-level or SentencePiece-style BPE).
//
//   build/tokenize encode      --tokenizer T.json [--in FILE|-] [--out FILE|-] [--jsonl]
//   build/tokenize decode      --tokenizer T.json [--in FILE|-] [--out FILE|-] [--jsonl]
//   build/tokenize pretokenize --tokenizer T.json [--in FILE|-] [--out FILE|-] [--jsonl]
//   build/tokenize info        --tokenizer T.json
//
// Plain mode: encode reads the whole input as bytes and prints the ids space-separated on one
// line; decode reads whitespace-separated ids and writes the exact bytes; pretokenize prints one
// JSON string per pre-token. --jsonl mode handles many documents: every input line is a JSON
// string (encode, pretokenize) or a JSON array of ids (decode), and every output line is the
// matching JSON array of ids / array of pre-tokens / string.
#include <cstdio>     // std::fprintf
#include <cstring>    // std::strcmp
#include <fstream>    // std::ifstream, std::ofstream
#include <iostream>   // std::cin, std::cout
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <string>
#include <vector>

#include "ref/io/json.h"
#include "ref/text/tokenizer.h"

namespace {

const char* kUsage =
    "usage: tokenize <encode|decode|pretokenize|info> --tokenizer T.json [--in FILE|-] [--out FILE|-] [--jsonl]\n"
    "  encode       text -> ids (== HF encode(text, add_special_tokens=False)), space-separated\n"
    "  decode       ids -> exact bytes (special tokens included as text)\n"
    "  pretokenize  text -> pre-tokens as BPE sees them (byte-level alphabet), one JSON string per line\n"
    "  info         print a one-line summary of the tokenizer\n"
    "  --in FILE    input (default: standard input)      --out FILE  output (default: standard output)\n"
    "  --jsonl      one document per line: a JSON string (encode/pretokenize) or an array of ids (decode)\n";

std::string read_all(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open input file '" + path + "'");
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<uint32_t> parse_ids(const std::string& text) {
  std::vector<uint32_t> ids;
  size_t i = 0, n = text.size();
  while (i < n) {
    while (i < n && isspace((unsigned char)text[i])) i++;
    if (i >= n) break;
    size_t start = i;
    uint64_t v = 0;
    while (i < n && text[i] >= '0' && text[i] <= '9') {
      v = v * 10 + (uint64_t)(text[i] - '0');
      if (v > 0xFFFFFFFFull) throw std::runtime_error("decode input: the id at byte " + std::to_string(start) + " is larger than 2^32-1; give ids of this tokenizer");
      i++;
    }
    if (i == start || (i < n && !isspace((unsigned char)text[i]))) {
      size_t end = start;
      while (end < n && end - start < 20 && !isspace((unsigned char)text[end])) end++;
      throw std::runtime_error("decode input: '" + text.substr(start, end - start) + "' at byte " + std::to_string(start) +
                               " is not a token id; give non-negative integers separated by white space");
    }
    ids.push_back((uint32_t)v);
  }
  return ids;
}

std::string ids_line(const std::vector<uint32_t>& ids, const char* sep) {
  std::string s;
  for (size_t i = 0; i < ids.size(); i++) {
    if (i) s += sep;
    s += std::to_string(ids[i]);
  }
  return s;
}

// One document in --jsonl mode.
std::string run_jsonl_line(const ref::Tokenizer& tok, const std::string& mode, const std::string& line) {
  json::Value v = json::parse(line);
  if (mode == "decode") {
    if (!v.is(json::Value::Array)) throw std::runtime_error("decode --jsonl: each line must be an array of ids");
    std::vector<uint32_t> ids;
    for (const json::Value& x : v.arr) {
      int64_t id = x.as_int();
      if (id < 0 || id > 0xFFFFFFFFll) throw std::runtime_error("id out of range: " + x.raw);
      ids.push_back((uint32_t)id);
    }
    return json::quote(tok.decode(ids));
  }
  const std::string& text = v.as_str();
  if (mode == "encode") return "[" + ids_line(tok.encode(text), ",") + "]";
  std::string out = "[";
  std::vector<std::string> pieces = tok.pretokenize(text);
  for (size_t i = 0; i < pieces.size(); i++) out += (i ? "," : "") + json::quote(pieces[i]);
  return out + "]";
}

int run(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    std::fputs(kUsage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string mode = argv[1], tok_path, in = "-", out = "-";
  bool jsonl = false;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--tokenizer") tok_path = value();
    else if (a == "--in") in = value();
    else if (a == "--out") out = value();
    else if (a == "--jsonl") jsonl = true;
    else if (a == "--help" || a == "-h") { std::fputs(kUsage, stdout); return 0; }
    else throw std::runtime_error("unknown option '" + a + "' (see --help)");
  }
  if (mode != "encode" && mode != "decode" && mode != "pretokenize" && mode != "info")
    throw std::runtime_error("unknown command '" + mode + "' (expected encode, decode, pretokenize or info)");
  if (tok_path.empty()) throw std::runtime_error("--tokenizer T.json is required");
  ref::Tokenizer tok = ref::Tokenizer::load(tok_path);
  if (mode == "info") {
    std::printf("%s\n", tok.summary().c_str());
    return 0;
  }

  std::string input = read_all(in), result;
  if (jsonl) {
    size_t pos = 0, lineno = 0;
    while (pos < input.size()) {
      size_t nl = input.find('\n', pos);
      if (nl == std::string::npos) nl = input.size();
      std::string line = input.substr(pos, nl - pos);
      pos = nl + 1;
      lineno++;
      if (line.empty()) continue;
      try {
        result += run_jsonl_line(tok, mode, line) + "\n";
      } catch (const std::exception& e) {
        throw std::runtime_error("input line " + std::to_string(lineno) + ": " + e.what());
      }
    }
  } else if (mode == "encode") {
    result = ids_line(tok.encode(input), " ") + "\n";
  } else if (mode == "decode") {
    result = tok.decode(parse_ids(input));
  } else {
    for (const std::string& p : tok.pretokenize(input)) result += json::quote(p) + "\n";
  }

  if (out == "-") {
    std::fwrite(result.data(), 1, result.size(), stdout);
    if (std::fflush(stdout) != 0) throw std::runtime_error("write to standard output failed");
  } else {
    std::ofstream f(out, std::ios::binary);
    f.write(result.data(), (std::streamsize)result.size());
    if (!f) throw std::runtime_error("cannot write output file '" + out + "'");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenize: error: %s\n", e.what());
    return 1;
  }
}
