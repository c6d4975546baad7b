// fuzz_json.cpp — ref/io/json.cpp: json::parse on any bytes, json::quote round trips.
// Properties: parse either returns or throws std::runtime_error; every number that parses gives
// as_int() an answer or a runtime_error; every string s of the document reads back from quote(s);
// the input itself, quoted, parses back (exactly when it is ASCII: quote escapes invalid UTF-8
// bytes one by one, so other input comes back lossy by design).
#include "tests/fuzz/fuzz.h"

#include "ref/io/json.h"

static void walk(const json::Value& v) {
  switch (v.type) {
    case json::Value::Number: fuzz_try([&] { (void)v.as_int(); }); break;
    case json::Value::String: {
      const json::Value back = json::parse(json::quote(v.str));
      FUZZ_CHECK(back.is(json::Value::String) && back.str == v.str, "parse(quote(s)) != s");
      break;
    }
    case json::Value::Array: for (const json::Value& x : v.arr) walk(x); break;
    case json::Value::Object:
      for (const auto& kv : v.obj) {
        FUZZ_CHECK(json::parse(json::quote(kv.first)).str == kv.first, "a key does not round-trip");
        walk(kv.second);
      }
      break;
    default: break;
  }
}

FUZZ_ENTRY {
  const std::string text(reinterpret_cast<const char*>(data), size);
  json::Value doc;
  if (fuzz_try([&] { doc = json::parse(text); })) walk(doc);

  bool ascii = true;
  for (unsigned char c : text) ascii = ascii && c < 0x80;
  json::Value q;
  FUZZ_CHECK(fuzz_try([&] { q = json::parse(json::quote(text)); }), "quote() wrote a literal that does not parse");
  FUZZ_CHECK(q.is(json::Value::String), "quote() did not give a string");
  if (ascii) FUZZ_CHECK(q.str == text, "ASCII text does not round-trip through quote()");
  return 0;
}
