// cases.js — test texts for the tokenizer oracles: hand-picked edge cases plus seeded random
// strings drawn from a pool of troublesome pieces (CJK, emoji/ZWJ, combining marks, odd spaces,
// contractions, digits, CRLF, punctuation runs).
'use strict';

const HANDPICKED = [
  '', ' ', '  ', '\n', '\n\n\n', '\t', ' \t \n ', 'a', 'Hello world', 'Hello, world!',
  '   leading and trailing   ', 'multiple   spaces\n\n\nand newlines\n', 'tab\tseparated\tvalues\n',
  'a\r\nb\r\n\r\nc\r', '\r\n', ' \r\n', 'line\n  indented\n\tmore\n',
  // contractions, upper case 'S included
  "I'm you're he'll she'd we've it's they've", "IT'S WE'LL THEY'RE DON'T I'D I'M", "It'S We'Ll", "'s 's' ''s '", "a's'b",
  "rock 'n' roll", "the dogs' bones", "\u2019s curly apostrophe \u2019S",
  // case-folding corner cases for (?i:'s): long s, Kelvin sign, sharp s
  "it'\u017f a'K a'\u00df a'\u1e9e",
  // accents, combining marks, other scripts
  'h\u00e9llo na\u00efve caf\u00e9 \u00d1and\u00fa', 'e\u0301 a\u0300\u0301 n\u0303o', '\u0915\u094d\u0937 \u0939\u093f\u0902\u0926\u0940',
  '\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627 \u0661\u0662\u0663', '\u0391\u03b8\u03ae\u03bd\u03b1 \u041c\u043e\u0441\u043a\u0432\u0430',
  // CJK
  '\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002', '\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\uff01',
  '\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8', '\u4ef7\u683c\u662f\u3000\uff11\uff10\uff10\u5186\u3067\u3059\u3002', 'mixed\u4e2d\u6587English123\u6570\u5b57',
  // emoji, ZWJ sequences, flags, skin tones, variation selectors
  '\ud83d\udc4d\ud83c\udffd \ud83d\udc68\u200d\ud83d\udc69\u200d\ud83d\udc67\u200d\ud83d\udc66 \u2764\ufe0f',
  '\ud83c\uddef\ud83c\uddf5\ud83c\uddfa\ud83c\uddf8 \ud83c\udff3\ufe0f\u200d\ud83c\udf08', 'smile\ud83d\ude00smile \ud83d\ude00\ud83d\ude00\ud83d\ude00',
  // digits and numbers in many scripts
  '1234567890 3.14159 1,000,000 2024-01-01', '\u0661\u0662\u0663 \u00b2\u00b3 \u00bd \u216b \ud835\udfd9\ud835\udfda \u2460\u2461',
  '12Ⅳ²x ①② 𝟙𝟚', '007 0x1F 1e-9 -42',
  // symbols and punctuation runs
  '$100 \u20ac50 \u00a5 \u00a9 \u2122 \u2192 \u2211 \u221a', '...!!!???---___***', '<<>> [[]] {{}} (()) //\\\\ ||',
  'a/b/c /path/to/file.txt http://example.com/x?y=1&z=2',
  // code
  'def f(x):\n    return x**2  # comment\n', '\tif (a && b) { c++; }\n', 'int main(){return 0;}', 'HelloWorld camelCase XMLHttpRequest snake_case',
  // white space variants
  '\u00a0non\u00a0breaking', '\u3000ideographic\u3000space', 'line\u2028sep para\u2029sep', 'nel\u0085here', 'zw\u200bsp',
  'bom\ufeffhere', 'mongolian\u180evowel', '\u000b\u000c vertical', 'trailing space ', 'trailing spaces   ',
  // long runs
  'a'.repeat(3000), ' '.repeat(500) + 'x', '\n'.repeat(200), 'ab'.repeat(1000), '1'.repeat(100), '\u4e2d'.repeat(300),
  '\ud83d\ude00'.repeat(100), '!'.repeat(300),
];

// ---- Unicode 16.0 (issue 12) ----------------------------------------------------------------------
// Code points whose class differs between Unicode 15.0 and 16.0 (the version of HF's regex
// tables), so that tables of another version give other ids or pieces: letters of the scripts new
// in 16.0 (Garay, Gurung Khema, Kirat Rai, Ol Onal, Sunuwar, Todhri, Tulu-Tigalari), new digits
// (Nd: \p{N} pieces), new Latin/Cyrillic letters, CJK Extension I (15.1) and new CJK strokes and
// description characters, Emoji 16 (So), new marks and punctuation, Egyptian hieroglyphs
// extended, and U+1171E, whose category changed (Mn -> Mc). With 15.0 tables these are Cn, so
// "x\u{10D50}y" is three GPT-2 pre-tokens instead of one.
const UNICODE16 = [
  'I am tired \u{1FAE9} ok', '\u{1FAC6}\u{1FABE}\u{1FADC} \u{1FADF}\u{1FA89}\u{1FA8F}!', 'tree\u{1FABE}tree \u{1FAE9}\u{1FAE9}',
  'x\u{10D50}\u{10D70}\u{10D4A}y \u{10D50}\u{10D70} Garay', '\u{16100}\u{16101}\u{16102} gurung \u{16130}\u{16131}',
  'kirat \u{16D43}\u{16D44}\u{16D40}\u{16D45} \u{16D70}\u{16D71}\u{16D72}', 'ol onal \u{1E5D0}\u{1E5D1}\u{1E5D2}\u{1E5FF} \u{1E5F1}\u{1E5F2}',
  'sunuwar \u{11BC0}\u{11BC1}\u{11BC2} \u{11BF0}\u{11BF1}\u{11BF2}\u{11BF3}', 'todhri \u{105C0}\u{105C1}\u{105C2}', 'tulu \u{11380}\u{11381}\u{11382}',
  'digits \u{10D40}\u{10D41}\u{10D42}\u{10D43}\u{10D44} \u{1CCF0}\u{1CCF1}\u{1CCF2}\u{1CCF3} \u{116D0}\u{116D1}', 'a\u{1CCF0}\u{1CCF1}b 12\u{1CCF5}34',
  'RAMS\uA7CB\uA7CCword \uA7DC\uA7CD', 'Cyrillic \u1C89\u1C8A\u0430\u1C89', 'cjk \u{2EBF0}\u{2EBF1}\u{2EC00}\u{2EE5D}\u4e2d\u{2EBF2}',
  'strokes \u31E4\u31E5\u31EF \u2FFC\u2FFD\u2FFE\u2FFF\u4e00', 'arabic \u{10EC2}\u{10EC3}\u{10EC4}\u0628\u0897\u{10EFC}',
  'balinese \u1B4E\u1B4F\u1B7F mark\u{11F5A}', 'hiero \u{13460}\u{13461}\u{13462} go \u{1CC00}\u{1CC01}', 'ahom \u{11700}\u{1171E}\u{1171D}',
  '\u{10D50}'.repeat(50), 'mixed\u{10D50}\u{1FAE9}\u{16100}123\u{10D40}\u{2EBF0}',
];
// The same for the regex conformance table (every pattern x behaviour): \p{Mn}/\p{Mc} see U+1171E,
// \p{So}/\p{Cn} see Emoji 16, \p{Lu}/\p{Ll}/\p{Nd} the new letters and digits.
const UNICODE16_REGEX = [
  '\u{1FAE9} \u{1FAC6} \u{1CC00} \u31E4 \u2FFC \u{11700}\u{1171E}\u{1171D} \u0628\u0897',
  '\u{10D50}\u{10D70}\u{10D4A} \uA7CB\uA7CC \u1C89\u1C8A \u{16D40}\u{16D43} \u{2EBF0}\u{2EE5D}',
  '\u{10D40}\u{10D41} \u{1CCF0}\u{1CCF9} \u{116D0} \u{1E5F1} \u1B4E\u{1E5FF} x\u{11F5A}\u{10EFC}',
];

const POOL = [
  'a', 'b', 'Z', 'the', ' the', 'The', 'HELLO', 'world', ' ', '  ', '   ', '\t', '\n', '\r\n', '\r', '\n\n',
  '0', '7', '42', '12345', "'s", "'S", "'t", "'ll", "'LL", "'ve", "'re", "'d", "'m", "'", '"', '.', ',', '!', '?', '-', '_',
  '/', '\\', '(', ')', '[', ']', '{', '}', '<', '>', '|', '&', '*', '#', '@', '$', '%', '^', '~', '`', '+', '=', ':', ';',
  '\u00e9', '\u00c9', '\u00df', '\u017f', '\u212a', '\u01c5', '\u0301', '\u0308', '\u093f', '\u0e31', '\u4e2d', '\u6587', '\u3042', '\u30a2', '\uac00',
  '\u0661', '\u00b2', '\u00bd', '\u216b', '\u2460', '\ud835\udfd9', '\uff11', '\u3000', '\u00a0', '\u2009', '\u200b', '\u200d', '\u2028',
  '\u0085', '\ufeff', '\u00a9', '\u20ac', '\u2192', '\u2211', '\ud83d\ude00', '\ud83d\udc4d', '\ud83c\udffd', '\u2764', '\ufe0f',
  '\ud83c\uddef', '\ud83c\uddf5', '\u0627', '\u05e9', '\u0416', '\u03a9', '\u01c4', '\u02b0', '\u1e9e', '\uff21', '\uff41',
];

// mulberry32: a tiny seeded PRNG, so the random cases are the same on every run.
function prng(seed) {
  return function () {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// n random strings; `extra` (e.g. a tokenizer's added tokens) joins the pool.
function randomCases(n, seed, extra = []) {
  const rand = prng(seed);
  const pool = POOL.concat(extra, extra, extra);
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(rand() * 30);
    let s = '';
    for (let k = 0; k < len; k++) s += pool[Math.floor(rand() * pool.length)];
    out.push(s);
  }
  return out;
}

module.exports = { HANDPICKED, UNICODE16, UNICODE16_REGEX, POOL, randomCases, prng };
