// normalizer_cases.js — test texts for normalizers, Metaspace and byte_fallback (issue 12 part 2),
// used by real_tokenizers.js next to the classes of cases.js. Each group aims at one mechanism:
// a text that a wrong implementation of it would encode differently.
'use strict';
const { prng } = require('./cases.js');

const NORMALIZER_CASES = [
  // NFC/NFD/NFKC/NFKD: composed vs decomposed, reordering of marks, compatibility characters,
  // Hangul syllables and jamo, singletons, composition exclusions, a code point past Unicode 9.0
  'cafe\u0301 caf\u00e9 e\u0301\u0323 e\u0323\u0301 a\u0328\u0301 \u1e9b\u0323', '\u1100\u1161\u11a8 \uac01 \u1100\u1161 \ud55c\uad6d\uc5b4',
  '\ufb01ne \ufb03 \u2460 \u00bd \u2122 \u33a1 \u2075 \uff21\uff22\uff23 \uff71\uff72 \u3000x', '\u212b \u2126 \u00c5 \u0958 \u2adc \u0f73',
  '\u1f23b \u{1F23B} \u{1E030}x \u1df9\u0301a\u0301\u1df9', '\u0344 \u0f77 \u1e0a\u0323 q\u0307\u0323', 'x\u0345\u0301 \u03b1\u0345\u0301',
  // Lowercase: full mappings (U+0130), Greek sigma (no final-sigma rule), Cherokee, Deseret, 17.0 pairs
  'HELLO World \u0130stanbul \u0049\u0307 \u03a3\u039f\u03a3 \u1e9e \u212a \u2160', '\u13a0\u13a1 \u{10400}\u{10401} \uA7CB\uA7CC \uA7CE \u{16EA0}',
  // Strip and white space: every White_Space character at both ends
  '   padded   ', '\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000x\u3000 \n', ' ', '\u200b zero width is not space \u200b',
  // Replace / Prepend / Metaspace: the SentencePiece meta symbol and spaces everywhere
  '\u2581', '\u2581\u2581x', 'a\u2581b \u2581 c', ' leading', '  two leading', 'trailing ', 'a  b   c    d', '\u2581 \u2581',
  // byte_fallback: characters outside a 32k SentencePiece vocabulary, and literal <0xHH> text
  '\u{1FAE9} \u{10D50}\u{16100} \u2ffc\u{2EBF0} \u0f3a\u0f3b \ua9c1 \u{1F9CC}', '<0x41> <0x0A> <0xe9><0xff> <0x+A>', '\ud7a3\ud7fb \u{2A700}',
];

// Random texts from a pool rich in what normalizers change (marks, compatibility forms, case,
// spaces, U+2581).
const NORM_POOL = [
  'a', 'A', 'e', 'E', '\u00e9', '\u00c9', '\u0301', '\u0323', '\u0308', '\u0345', '\u1e9e', '\u00df', '\u0130', '\u0131', '\u03a3', '\u03c3',
  '\ufb01', '\u2460', '\u00bd', '\uff21', '\uff41', '\u3000', ' ', '  ', '\t', '\n', '\u00a0', '\u2581', '\u1100', '\u1161', '\u11a8', '\uac00',
  '\u4e2d', '\u3042', '\u30ab', '\u3099', '\u0915', '\u093c', '\u094d', '0', '7', '\u0661', '!', "'s", '<', '>', '\ud83d\ude00', '\u200d',
  '\u212a', '\u2126', 'x', 'the', ' The', 'HELLO', '\u{1F23B}', '\u{10400}',
];

function normalizerRandomCases(n, seed, extra = []) {
  const rand = prng(seed);
  const pool = NORM_POOL.concat(extra, extra);
  const out = [];
  for (let i = 0; i < n; i++) {
    const len = Math.floor(rand() * 24);
    let s = '';
    for (let k = 0; k < len; k++) s += pool[Math.floor(rand() * pool.length)];
    out.push(s);
  }
  return out;
}

// A multi-script text of about `chars` UTF-16 units: words from many scripts, numbers, emoji,
// combining sequences and compatibility characters, separated by spaces, punctuation and
// newlines (a stand-in for web text in scripts the committed fixtures lack).
const SCRIPTS = [
  [0x61, 0x7a], [0x41, 0x5a], [0xe0, 0xff], [0x100, 0x17f], [0x3b1, 0x3c9], [0x430, 0x44f], [0x410, 0x42f], [0x5d0, 0x5ea],
  [0x627, 0x64a], [0x905, 0x939], [0x985, 0x9b9], [0xe01, 0xe30], [0x10d0, 0x10f0], [0x3041, 0x3096], [0x30a1, 0x30fa],
  [0x4e00, 0x4fff], [0xac00, 0xd7a3], [0x1200, 0x1248], [0x13a0, 0x13f4], [0x1f600, 0x1f64f], [0x1f300, 0x1f5ff],
  [0xff21, 0xff3a], [0xfb00, 0xfb06], [0x2460, 0x2473], [0x1d400, 0x1d433], [0x20000, 0x2001f],
];
function multiScriptText(chars, seed) {
  const rand = prng(seed);
  const marks = ['\u0301', '\u0300', '\u0308', '\u0323', '\u0327', '\u093c', '\u3099'];
  const seps = [' ', ' ', ' ', ' ', ', ', '. ', '\n', '  ', '\t', ' - ', '! ', '? ', '\u3002', '\u3001', ' (', ') ', '\r\n', ' 2024 ', ' 3.14 '];
  let s = '';
  while (s.length < chars) {
    const [lo, hi] = SCRIPTS[Math.floor(rand() * SCRIPTS.length)];
    const len = 1 + Math.floor(rand() * 8);
    for (let k = 0; k < len; k++) {
      s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
      if (rand() < 0.05) s += marks[Math.floor(rand() * marks.length)];
    }
    s += seps[Math.floor(rand() * seps.length)];
  }
  return s;
}

module.exports = { NORMALIZER_CASES, normalizerRandomCases, multiScriptText };
