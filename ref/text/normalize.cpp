// normalize.cpp — UAX #15 normalization forms and the full lowercase mapping; see normalize.h.
//
// Per code point one 32-bit word (a two-stage table built once from unicode_norm_tables.cpp):
// the canonical combining class, the quick-check values of the four forms, whether it was
// assigned after Unicode 9.0 (NormData::kHf leaves those alone), and its decomposition entry.
//
// The text is scanned once. A code point with class 0 whose quick check for the form is Yes is a
// boundary: nothing before it interacts with anything after it (the generator checks the property
// this relies on). Between two boundaries, a segment in which every code point is Yes and the
// classes are in canonical order is already normalized and is copied in bulk; any other segment
// is decomposed, reordered and (NFC/NFKC) recomposed on its own.
#include "ref/text/normalize.h"

#include <algorithm>      // std::lower_bound
#include <cstdint>        // uint32_t
#include <unordered_map>  // block deduplication
#include <vector>

#include "ref/text/unicode_norm_tables.h"

namespace ref {
namespace unicode {
namespace {

// Hangul syllables (The Unicode Standard, section 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// Bits of the per-code-point word (bits 0-7: the combining class; 16-31: decomposition index + 1).
constexpr uint32_t kNfcNo = 1u << 8, kNfcMaybe = 1u << 9, kNfkcNo = 1u << 10, kNfkcMaybe = 1u << 11;
constexpr uint32_t kNfdNo = 1u << 12, kNfkdNo = 1u << 13, kNewer = 1u << 14;

// An invalid UTF-8 byte b travels through the slow path as kRawByte + b: class 0, no mappings.
constexpr uint32_t kRawByte = 0x110000;

// Two-stage table over 0..0x10FFFF: stage1[cp >> 8] picks a deduplicated 256-entry block.
template <typename T>
struct TwoStage {
  std::vector<uint16_t> stage1;
  std::vector<T> stage2;
  explicit TwoStage(const std::vector<T>& all) {
    std::unordered_map<std::string, uint16_t> seen;
    for (uint32_t block = 0; block < 0x1100; block++) {
      std::string key((const char*)&all[block << 8], 256 * sizeof(T));
      auto it = seen.find(key);
      if (it == seen.end()) {
        it = seen.emplace(key, (uint16_t)(stage2.size() >> 8)).first;
        stage2.insert(stage2.end(), all.begin() + (block << 8), all.begin() + ((block + 1) << 8));
      }
      stage1.push_back(it->second);
    }
  }
  T operator[](uint32_t cp) const { return stage2[((size_t)stage1[cp >> 8] << 8) | (cp & 0xFF)]; }
};

std::vector<uint32_t> build_info() {
  std::vector<uint32_t> all(0x110000, 0);
  for (size_t i = 0; i < kCccRangesSize; i++)
    for (uint32_t cp = kCccRanges[i].lo; cp <= kCccRanges[i].hi; cp++) all[cp] |= kCccRanges[i].ccc;
  auto mark = [&](const QcRange* r, size_t n, uint32_t no, uint32_t maybe) {
    for (size_t i = 0; i < n; i++)
      for (uint32_t cp = r[i].lo; cp <= r[i].hi; cp++) all[cp] |= r[i].value == 'N' ? no : maybe;
  };
  mark(kNfcQc, kNfcQcSize, kNfcNo, kNfcMaybe);
  mark(kNfkcQc, kNfkcQcSize, kNfkcNo, kNfkcMaybe);
  mark(kNfdQc, kNfdQcSize, kNfdNo, kNfdNo);
  mark(kNfkdQc, kNfkdQcSize, kNfkdNo, kNfkdNo);
  for (size_t i = 0; i < kNewerThanHfNormSize; i++)
    for (uint32_t cp = kNewerThanHfNorm[i].lo; cp <= kNewerThanHfNorm[i].hi; cp++) all[cp] |= kNewer;
  for (size_t i = 0; i < kDecompositionsSize; i++) all[kDecompositions[i].cp] |= (uint32_t)(i + 1) << 16;
  return all;
}

std::vector<uint16_t> build_lower() {
  std::vector<uint16_t> all(0x110000, 0);
  for (size_t i = 0; i < kLowerMappingsSize; i++) all[kLowerMappings[i].from] = (uint16_t)(i + 1);
  return all;
}

const TwoStage<uint32_t>& info_table() {
  static const TwoStage<uint32_t> t(build_info());  // built once, thread-safe (C++11 static init)
  return t;
}

const TwoStage<uint16_t>& lower_table() {
  static const TwoStage<uint16_t> t(build_lower());
  return t;
}

// Decodes one code point at s[i] (i < n, s[i] >= 0x80) with the validity rules of
// ref/text/regex.cpp's decode_utf8: on an invalid sequence returns kRawByte + s[i] and *len = 1.
inline uint32_t decode_at(const unsigned char* u, size_t i, size_t n, size_t* len) {
  unsigned char c = u[i];
  size_t l = (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3 : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
  uint32_t cp = l ? (c & (0x7F >> l)) : 0;
  bool ok = l > 0 && i + l <= n;
  for (size_t k = 1; ok && k < l; k++) {
    if ((u[i + k] & 0xC0) != 0x80) ok = false;
    else cp = (cp << 6) | (u[i + k] & 0x3F);
  }
  if (ok && ((l == 3 && cp < 0x800) || (l == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)))
    ok = false;
  *len = ok ? l : 1;
  return ok ? cp : kRawByte + c;
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += (char)cp;
  } else if (cp < 0x800) {
    out += (char)(0xC0 | (cp >> 6));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += (char)(0xE0 | (cp >> 12));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else if (cp < kRawByte) {
    out += (char)(0xF0 | (cp >> 18));
    out += (char)(0x80 | ((cp >> 12) & 0x3F));
    out += (char)(0x80 | ((cp >> 6) & 0x3F));
    out += (char)(0x80 | (cp & 0x3F));
  } else {
    out += (char)(cp - kRawByte);  // an invalid input byte, passed through
  }
}

// The normalization of one form with one kind of data.
class Normalizer {
 public:
  Normalizer(NormForm form, NormData data)
      : t_(info_table()), hf_(data == NormData::kHf),
        compat_(form == NormForm::NFKC || form == NormForm::NFKD),
        compose_(form == NormForm::NFC || form == NormForm::NFKC) {
    switch (form) {
      case NormForm::NFC: not_yes_ = kNfcNo | kNfcMaybe; break;
      case NormForm::NFKC: not_yes_ = kNfkcNo | kNfkcMaybe; break;
      case NormForm::NFD: not_yes_ = kNfdNo; break;
      case NormForm::NFKD: not_yes_ = kNfkdNo; break;
    }
  }

  // The per-code-point word as this data sees it: with kHf, code points newer than Unicode 9.0
  // are class 0, quick check Yes, no decomposition.
  uint32_t info(uint32_t cp) const {
    if (cp >= kRawByte) return 0;
    uint32_t w = t_[cp];
    return (hf_ && (w & kNewer)) ? 0 : w;
  }

  std::string run(const std::string& s) {
    const unsigned char* u = (const unsigned char*)s.data();
    const size_t n = s.size();
    std::string out;
    size_t copied = 0;   // s[0, copied) is in out
    size_t seg = 0;      // the start of the current segment (the last boundary)
    bool dirty = false;  // the current segment needs the slow path
    uint32_t last_ccc = 0;
    size_t i = 0;
    while (i < n) {
      if (u[i] < 0x80) {  // ASCII: a boundary, already normalized; runs are skipped at once
        if (dirty) flush(s, seg, i, copied, out), dirty = false;
        while (i + 1 < n && u[i + 1] < 0x80) i++;
        seg = i++;
        last_ccc = 0;
        continue;
      }
      size_t len;
      uint32_t cp = decode_at(u, i, n, &len);
      uint32_t w = info(cp), ccc = w & 0xFF;
      bool yes = !(w & not_yes_);
      if (ccc == 0 && yes) {
        if (dirty) flush(s, seg, i, copied, out), dirty = false;
        seg = i;
      } else if (!yes || ccc < last_ccc) {
        dirty = true;
      }
      last_ccc = ccc;
      i += len;
    }
    if (dirty) flush(s, seg, n, copied, out);
    if (copied == 0) return s;  // nothing changed: one copy
    out.append(s, copied, n - copied);
    return out;
  }

 private:
  // out += s[copied, seg) unchanged + the normalization of the segment s[seg, end).
  void flush(const std::string& s, size_t seg, size_t end, size_t& copied, std::string& out) {
    out.append(s, copied, seg - copied);
    buf_.clear();
    const unsigned char* u = (const unsigned char*)s.data();
    for (size_t i = seg; i < end;) {
      size_t len = 1;
      uint32_t cp = u[i] < 0x80 ? u[i] : decode_at(u, i, end, &len);
      decompose(cp);
      i += len;
    }
    reorder();
    if (compose_) compose();
    for (uint32_t cp : buf_) append_utf8(out, cp);
    copied = end;
  }

  void decompose(uint32_t cp) {
    if (cp - kSBase < kSCount) {  // Hangul syllable: L V or L V T
      uint32_t s = cp - kSBase;
      buf_.push_back(kLBase + s / kNCount);
      buf_.push_back(kVBase + (s % kNCount) / kTCount);
      if (s % kTCount) buf_.push_back(kTBase + s % kTCount);
      return;
    }
    uint32_t idx = info(cp) >> 16;
    if (idx) {
      const Decomposition& d = kDecompositions[idx - 1];
      uint32_t off = compat_ ? d.compat_off : d.canon_off, len = compat_ ? d.compat_len : d.canon_len;
      if (len) {
        buf_.insert(buf_.end(), kDecompData + off, kDecompData + off + len);
        return;
      }
    }
    buf_.push_back(cp);
  }

  uint32_t ccc(uint32_t cp) const { return info(cp) & 0xFF; }

  // Canonical ordering: a stable sort by class of every run of non-zero classes.
  void reorder() {
    for (size_t i = 1; i < buf_.size(); i++) {
      uint32_t c = ccc(buf_[i]);
      if (c == 0) continue;
      size_t j = i;
      while (j > 0 && ccc(buf_[j - 1]) > c) {
        std::swap(buf_[j - 1], buf_[j]);
        j--;
      }
    }
  }

  // The primary composite of (a, b), or 0.
  uint32_t pair(uint32_t a, uint32_t b) const {
    if (a - kLBase < kLCount && b - kVBase < kVCount) return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
    if (a - kSBase < kSCount && (a - kSBase) % kTCount == 0 && b - kTBase - 1 < kTCount - 1) return a + (b - kTBase);
    const Composition* end = kCompositions + kCompositionsSize;
    const Composition* it = std::lower_bound(kCompositions, end, a, [](const Composition& c, uint32_t x) { return c.first < x; });
    for (; it != end && it->first == a; ++it) {
      if (it->second != b) continue;
      if (hf_ && (t_[it->composite] & kNewer)) return 0;
      return it->composite;
    }
    return 0;
  }

  // Canonical composition: each character that is not blocked from the last starter and forms a
  // primary composite with it is merged into it.
  void compose() {
    size_t starter = SIZE_MAX, w = 0;
    uint32_t last = 0;     // class of the last character kept after the starter
    bool adjacent = false;  // the starter is the last character kept
    for (size_t r = 0; r < buf_.size(); r++) {
      uint32_t c = buf_[r], cc = ccc(c);
      if (starter != SIZE_MAX && (adjacent || (last != 0 && last < cc))) {
        uint32_t p = pair(buf_[starter], c);
        if (p) {
          buf_[starter] = p;
          continue;
        }
      }
      buf_[w++] = c;
      if (cc == 0) {
        starter = w - 1;
        adjacent = true;
        last = 0;
      } else {
        adjacent = false;
        last = cc;
      }
    }
    buf_.resize(w);
  }

  const TwoStage<uint32_t>& t_;
  bool hf_, compat_, compose_;
  uint32_t not_yes_ = 0;
  std::vector<uint32_t> buf_;
};

}  // namespace

std::string normalize(NormForm form, const std::string& utf8, NormData data) { return Normalizer(form, data).run(utf8); }

std::string normalize(NormForm form, const std::string& utf8) { return normalize(form, utf8, NormData::kUnicode); }

std::string to_lower(const std::string& s) {
  const unsigned char* u = (const unsigned char*)s.data();
  const size_t n = s.size();
  const TwoStage<uint16_t>& t = lower_table();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  while (i < n) {
    if (u[i] < 0x80) {
      out += (char)(u[i] >= 'A' && u[i] <= 'Z' ? u[i] + 32 : u[i]);
      i++;
      continue;
    }
    size_t len;
    uint32_t cp = decode_at(u, i, n, &len);
    uint16_t idx = cp < kRawByte ? t[cp] : 0;
    if (idx) {
      const LowerMapping& m = kLowerMappings[idx - 1];
      for (uint32_t k = 0; k < m.n; k++) append_utf8(out, m.to[k]);
    } else {
      out.append(s, i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace unicode
}  // namespace ref
