// normalize.cpp — command-line front end for ref/text/normalize.h (Unicode normalization forms
// and lowercase), e.g. to compare them with HF tokenizers' normalizers (tests/check_normalize_hf.sh).
//
//   build/normalize --form nfc|nfd|nfkc|nfkd|lower [--data unicode|hf] [--in FILE|-] [--out FILE|-] [--jsonl]
//
// Plain mode: the whole input, as bytes, becomes the normalized bytes. --jsonl: every input line
// is a JSON string and every output line the JSON string of its normalization. --data hf: the
// Unicode 9.0 data of HF tokenizers' normalizers (later code points left alone); default unicode.
#include <cstdio>     // std::fprintf
#include <cstring>    // std::strcmp
#include <fstream>    // std::ofstream
#include <iostream>   // std::cin
#include <sstream>    // std::ostringstream
#include <stdexcept>  // std::runtime_error
#include <string>

#include "ref/io/file.h"
#include "ref/io/json.h"
#include "ref/text/normalize.h"

namespace {

const char* kUsage =
    "usage: normalize --form nfc|nfd|nfkc|nfkd|lower [--data unicode|hf] [--in FILE|-] [--out FILE|-] [--jsonl]\n"
    "  --form F     the normalization form, or lower (full lowercase mapping, as HF's Lowercase)\n"
    "  --data D     unicode: the whole Unicode Character Database of the tables (default);\n"
    "               hf: Unicode 9.0 as HF tokenizers' NFC/NFD/NFKC/NFKD (later code points left alone)\n"
    "  --in FILE    input (default: standard input)      --out FILE  output (default: standard output)\n"
    "  --jsonl      one JSON string per input line -> one JSON string per output line\n";

int run(int argc, char** argv) {
  std::string form, data = "unicode", in = "-", out = "-";
  bool jsonl = false;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "--form") form = value();
    else if (a == "--data") data = value();
    else if (a == "--in") in = value();
    else if (a == "--out") out = value();
    else if (a == "--jsonl") jsonl = true;
    else if (a == "--help" || a == "-h") { std::fputs(kUsage, stdout); return 0; }
    else throw std::runtime_error("unknown option '" + a + "' (see --help)");
  }
  using ref::unicode::NormForm;
  NormForm nf = NormForm::NFC;
  bool lower = false;
  if (form == "nfc") nf = NormForm::NFC;
  else if (form == "nfd") nf = NormForm::NFD;
  else if (form == "nfkc") nf = NormForm::NFKC;
  else if (form == "nfkd") nf = NormForm::NFKD;
  else if (form == "lower") lower = true;
  else throw std::runtime_error(form.empty() ? "--form is required (nfc, nfd, nfkc, nfkd or lower)"
                                             : "unknown --form '" + form + "' (expected nfc, nfd, nfkc, nfkd or lower)");
  if (data != "unicode" && data != "hf") throw std::runtime_error("unknown --data '" + data + "' (expected unicode or hf)");
  const ref::unicode::NormData nd = data == "hf" ? ref::unicode::NormData::kHf : ref::unicode::NormData::kUnicode;
  auto apply = [&](const std::string& s) { return lower ? ref::unicode::to_lower(s) : ref::unicode::normalize(nf, s, nd); };

  std::string input;
  if (in == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    input = ss.str();
  } else {
    input = ref::read_file(in, "give an existing file with --in");
  }
  std::string result;
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
        result += json::quote(apply(json::parse(line).as_str())) + "\n";
      } catch (const std::exception& e) {
        throw std::runtime_error("input line " + std::to_string(lineno) + ": " + e.what());
      }
    }
  } else {
    result = apply(input);
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
    std::fprintf(stderr, "normalize: error: %s\n", e.what());
    return 1;
  }
}
