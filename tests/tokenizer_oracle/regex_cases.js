// regex_cases.js — the regex engine (ref/text/regex.cpp) against HF tokenizers' Oniguruma on the
// points where the two used to differ (issue 12 part 3), plus a seeded random pattern fuzzer.
// Each pattern runs as a Split pre-tokenizer (then ByteLevel without its regex) on both sides,
// once with behaviour Isolated (matches and gaps) and once Removed (gaps only), which together
// fix the exact matches. Four kinds of cases:
//   SAME          both accept the pattern and must split every text the same way;
//   HF_REFUSES    HF refuses to load the pattern; we must refuse it too, with the message given;
//   WE_REFUSE     HF accepts but we refuse on purpose, with the message given (docs/TOKENIZER.md,
//                 "The regex subset": Oniguruma features we do not implement);
//   BUDGET        HF aborts the process (Oniguruma "retry-limit-in-match over"); we must fail
//                 with the backtracking-limit error, in bounded time.
// Used by run_oracle.js (tests/check_tokenizer_hf.sh), which runs everything here with a short
// fuzz. Standalone, for a long fuzz run:
//   node tests/tokenizer_oracle/regex_cases.js --tokenize build/tokenize --fuzz 5000 [--seed 1]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawnSync } = require('child_process');
const { Tokenizer } = require('tokenizers');
const fixtures = require('./fixtures.js');

// ---- hand-picked cases (HF results measured with tokenizers 0.23.2) ----------------------------
const ICASE_TEXT = 'aAbB \u01c5\u01c4\u01c6 \u212a k K 1 ssx \u02bcn \u00df \u00e9\u00c9';
const SAME = [
  // (?i) does not fold a bare \p{..} \w \d \s: (?i:\p{Lu}) matches A, B, Ǆ, K (Kelvin) only.
  ['(?i:\\p{Lu})', [ICASE_TEXT]], ['(?i:\\p{Ll})', [ICASE_TEXT]], ['(?i:\\p{Lt})', [ICASE_TEXT]],
  ['(?i:\\P{Lu})', [ICASE_TEXT]], ['(?i:\\p{^Lu})', [ICASE_TEXT]], ['(?i:\\p{L}+)', [ICASE_TEXT]],
  ['(?i:\\wx)', [ICASE_TEXT]], ['(?i:\\w+)', [ICASE_TEXT]], ['(?i:\\d|\\s)', [ICASE_TEXT]],
  // ... but it folds [...] classes: (?i:[^\p{Lu}]) is "not a letter that folds like an upper case one".
  ['(?i:[^\\p{Lu}])', [ICASE_TEXT]], ['(?i:[^\\p{Lu}]x)', [ICASE_TEXT]], ['(?i:[^\\P{Lu}])', [ICASE_TEXT]],
  ['(?i:[^\\p{Ll}]x)', [ICASE_TEXT]], ['(?i:[^\u00df]x)', [ICASE_TEXT]], ['(?i:[^a-z]+)', [ICASE_TEXT]],
  // \xHH above \x7F: UTF-8 bytes that must spell a character.
  ['\\xC3\\xA9', ['\u00e9 \u00c9 e\u0301']], ['\\xC3\\xA9+', ['\u00e9\u00e9\u00e9 x']], ['[\\xC3\\xA9-\\xC3\\xBF]+', ['\u00e9\u00ea\u00ffa\u00e8']],
  ['[a-\\xC3\\xA9]+', ['a\u00e9z\u00ea']], ['\\xF0\\x9F\\x98\\x80', ['\ud83d\ude00!']], ['\\xE2\\x82\\xAC', ['5\u20ac']],
  ['(?i:\\xC3\\x89)', ['\u00e9\u00c9']], ['\\xc3\\xa9{2}', ['\u00e9\u00e9\u00e9']], ['\\x41|\\x7F|\\x9', ['A\u007f\tB']],
  ['\\xFF', ['\u00ff \u00fe x']], ['\\xFE|a', ['\u00fe a']], ['\\xC0\\x80|\\xC1\\xBF|b', ['\u0000 \u007f b']],
  ['\\xE0\\x80\\x80|\\xED\\xA0\\x80|\\xF4\\x8F\\xBF\\xBF', ['\u0000 \u{10FFFF} x']], ['\\xF4\\x90\\x80\\x80|\\xF5|\\xFD|x', ['x\u00f5']], ['[\\xC0\\x80b]', ['\u0000 b']],
  ['\\x{E9}', ['\u00e9']], ['[\\x{E9}]', ['\u00e9']],
  // Quantifier targets Oniguruma accepts: a sequence or a (capturing / option / atomic) group around a look-ahead.
  ['(?:(?=a)b)+', ['abab ba']], ['((?=a)){2}a', ['aa ba']], ['(?>(?=a)){1,2}a', ['aa ba']], ['(?:^a)*b', ['ab\nab b']],
  ['(?:^$){2}x', ['x\n\nx']],
  // ^ matches after a newline but not at the end of the text (found by the fuzzer).
  ['\\n^', ['a\n\nb\n']], ['^', ['a\nb\n', '\n', '']], ['\\n?(?>^)', ['x\n.\n']], ['$', ['a\nb\n']],
  // Nested repeats are accepted (the budget guards them).
  ['(a+)+', ['aaa b aa']], ['(a+)+b', ['aaaaaaaaaaaaaaaaaaaa', 'aaab']], ['(?:a|aa)+b', ['a'.repeat(20), 'aaaab']],
  ['(?:\\w+\\s?)+$', ['word word word word!']],
];

const HF_REFUSES = [
  // A quantified anchor or look-ahead, or an alternation with one: "target of repeat operator is invalid".
  ...['(?=a)+', '(?=a)*', '(?=a)?', '(?=a){2}', '(?=a){0,1}', '(?!a)+', '(?:(?=a))+', '(?:(?=a)|(?=b)){2}',
      '(?:(?=a)|b)*', '(?:a|^)+', '(?:(?:^))+', '^+', '^*', '$*', '(?:^)?']
    .map((p) => [p, 'target of repeat operator is invalid']),
  // Byte escapes that spell no character.
  ...['\\xE9', '[\\xE9]', '\\xE9+', 'a\\xE9', '[\\xC3]', '\\xE2\\x82', '\\xC3A']
    .map((p) => [p, 'too short multibyte code string']),
  ...['\\x80', '\\xBF\\xBF', '\\xC3\\x41', '\\xF5\\x80\\x80\\x80', '\\xF5\\x80', '\\xC3\\xA9\\xA9', '\\xF8\\x88\\x80\\x80\\x80']
    .map((p) => [p, 'invalid code point value']),
];

const WE_REFUSE = [
  // POSIX brackets: not implemented (Oniguruma's Unicode [:alpha:] etc. are not General Categories).
  ['[[:alpha:]]+', 'POSIX bracket'],
  // Oniguruma stops a loop whose iteration matched empty; we refuse such loops.
  ['(?:)+', 'can match empty'], ['(?:a*)*', 'can match empty'], ['(a|)+', 'can match empty'], ['(?i:(?=a))+', 'can match empty'],
  // Stacked quantifiers: Oniguruma reads a** as (?:a*)* (and reduces some pairs); we refuse them.
  ['a**', 'stacked quantifiers'], ['a{2}{3}', 'stacked quantifiers'], ['a{2}*', 'stacked quantifiers'],
  // [...] classes under (?i) that hold a character with a multi-character case folding (HF:
  // (?i:[\p{Lu}]x) matches "ssx" through U+1E9E, (?i:[\p{Ll}]) matches "ʼn" through U+0149).
  ['(?i:[\\p{Lu}]x)', 'multi-character case folding'], ['(?i:[\\p{Ll}])', 'multi-character case folding'],
  ['(?i:[\\w])', 'multi-character case folding'], ['(?i:[\\p{Lt}])', 'multi-character case folding'], ['(?i:[\\p{L}])', 'multi-character case folding'],
  // Bytes above U+10FFFF as a braced code point, \x without digits: HF reads them oddly.
  ['\\x{110000}', 'above U+10FFFF'], ['\\xG', 'expected hex digits'],
];

// (pattern, text): HF aborts on these (10,000,000 backtracks in one match attempt).
const BUDGET = [['(?:a|aa)+b', 'a'.repeat(3000)], ['(?:a|aa)+b', 'a'.repeat(40)], ['(a+)+b', 'a'.repeat(40)]];
const BUDGET_SECONDS = 3;  // ours must give up within this (it takes ~0.1 s; generous for loaded machines)

// ---- helpers ------------------------------------------------------------------------------------
const BASE = fixtures.truncatedGpt2(0);
function tokenizerJson(pattern, behavior) {
  const split = { type: 'Split', pattern: { Regex: pattern }, behavior, invert: false };
  return JSON.stringify(fixtures.tokenizerJson({ ...BASE, preTokenizer: { type: 'Sequence', pretokenizers: [split, fixtures.BYTELEVEL_NO_REGEX] } }));
}

// Our CLI on texts: { ok, pieces } or { ok: false, error }, and the wall time in ms.
function ours(tokenize, tmp, pattern, behavior, texts) {
  const file = path.join(tmp, 'regex_case.json');
  fs.writeFileSync(file, tokenizerJson(pattern, behavior));
  const input = texts.map((x) => JSON.stringify(x)).join('\n') + '\n';
  const t0 = process.hrtime.bigint();
  const r = spawnSync(tokenize, ['pretokenize', '--tokenizer', file, '--jsonl'], { input, maxBuffer: 1 << 28, timeout: 60000 });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // EPIPE: the CLI refused the file and exited before reading its input; its status tells.
  if (r.error && !(r.error.code === 'EPIPE' && r.status !== null)) throw new Error(`cannot run ${tokenize}: ${r.error.message}`);
  if (r.status !== 0) return { ok: false, error: r.stderr.toString(), ms, status: r.status, signal: r.signal };
  return { ok: true, pieces: r.stdout.toString('utf-8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l)), ms };
}

function hf(pattern, behavior, texts) {
  let pre;
  try { pre = Tokenizer.fromString(tokenizerJson(pattern, behavior)).getPreTokenizer(); }
  catch (e) { return { ok: false, error: String(e.message) }; }
  return { ok: true, pieces: texts.map((t) => pre.preTokenizeString(t).map((x) => x[0])) };
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

// Compares one pattern on texts, both behaviours. Returns 'same', 'both-refuse', 'we-refuse'
// (with the reason) or calls fail(). maxMs collects the slowest CLI call.
function compare(tokenize, tmp, pattern, texts, fail, stats, allowedRefusals) {
  let result = 'same';
  for (const behavior of ['Isolated', 'Removed']) {
    const h = hf(pattern, behavior, texts);
    const o = ours(tokenize, tmp, pattern, behavior, texts);
    stats.maxMs = Math.max(stats.maxMs, o.ms);
    stats.calls++;
    if (!h.ok && !o.ok) return 'both-refuse';
    if (!h.ok) { fail(`regex /${pattern}/: HF refuses it (${h.error.split('\n')[0]}) but we accept it`); return 'fail'; }
    if (!o.ok) {
      const reason = (allowedRefusals || []).find((r) => o.error.includes(r));
      if (reason) return 'we-refuse:' + reason;
      fail(`regex /${pattern}/: HF accepts it but we refuse it: ${o.error.split('\n')[0]}`);
      return 'fail';
    }
    texts.forEach((t, k) => {
      if (!same(h.pieces[k], o.pieces[k])) {
        fail(`regex /${pattern}/ ${behavior} on ${JSON.stringify(t)}\n  HF  : ${JSON.stringify(h.pieces[k])}\n  ours: ${JSON.stringify(o.pieces[k])}`);
        result = 'fail';
      }
    });
    stats.texts += texts.length;
  }
  return result;
}

// ---- fuzzer -------------------------------------------------------------------------------------
// A small deterministic generator (xorshift32) of patterns in our subset, with the constructs
// whose Oniguruma meaning is subtle: case folding, classes, look-aheads, atomic groups, lazy and
// possessive repeats, anchors, byte escapes; and short texts over a matching alphabet (short, so
// that no pattern reaches HF's retry limit, which aborts the process).
function rng(seed) {
  let x = (seed >>> 0) || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 4294967296; };
}
const ATOMS = ['a', 'b', 'A', 'B', ' ', '1', '\u00e9', '\u00c9', 'k', '\\n', '.', '[ab]', '[^a]', '[a-c]', '[^\\s]', '\\s', '\\S',
  '\\w', '\\W', '\\d', '\\D', '\\p{L}', '\\p{Lu}', '\\p{Ll}', '\\P{L}', '\\p{N}', '[\\p{L}\\d]', '[^\\p{L}\\p{N}]', '\\xC3\\xA9',
  '\\x41', '\\x{e9}', '[\\xC3\\x89a]', '\\u00c9', '\\.', '[\\-a]', '[A-Z]', '(?i:a)', '(?i:[a-z])', '(?i:\\p{Lu})', '(?i:[^\\p{Lu}])'];
const TEXT_ALPHABET = ['a', 'b', 'A', 'B', 'c', ' ', ' ', '1', '2', '\u00e9', '\u00c9', 'k', 'K', '\u212a', '\n', '.', '-', '\u01c5', '\u00df', 'x'];
const QUANTS = ['?', '*', '+', '??', '*?', '+?', '?+', '*+', '++', '{2}', '{1,2}', '{0,2}', '{2,}', '{,2}', '{1,2}?'];

function genPattern(r, depth) {
  const pick = (a) => a[Math.floor(r() * a.length)];
  const items = 1 + Math.floor(r() * 3);
  let out = '';
  for (let i = 0; i < items; i++) {
    let atom;
    const u = r();
    if (depth < 2 && u < 0.3) {
      const inner = genPattern(r, depth + 1) + (r() < 0.3 ? '|' + genPattern(r, depth + 1) : '');
      atom = pick(['(?:', '(', '(?>', '(?=', '(?!', '(?i:', '(?-i:']) + inner + ')';
    } else if (u < 0.36) {
      atom = pick(['^', '$']);
    } else {
      atom = pick(ATOMS);
    }
    if (r() < (atom === '^' || atom === '$' ? 0.05 : 0.4)) atom += pick(QUANTS);  // both refuse a quantified anchor
    out += atom;
  }
  return out;
}

function genText(r) {
  const n = Math.floor(r() * 14);
  let s = '';
  for (let i = 0; i < n; i++) s += TEXT_ALPHABET[Math.floor(r() * TEXT_ALPHABET.length)];
  return s;
}

// Our refusals that the fuzzer may meet (documented, HF accepts them).
const FUZZ_ALLOWED = ['can match empty', 'multi-character case folding'];

// ---- the checks -----------------------------------------------------------------------------------
function checkRegexCases({ tokenize, tmp, fail, log = console.log, fuzzPatterns = 150, seed = 12 }) {
  const stats = { maxMs: 0, calls: 0, texts: 0 };
  for (const [pattern, texts] of SAME) {
    const r = compare(tokenize, tmp, pattern, texts, fail, stats, []);
    if (r === 'both-refuse') fail(`regex /${pattern}/: both refuse it, but HF accepted it when this case was written`);
  }
  for (const [pattern, message] of HF_REFUSES) {
    const h = hf(pattern, 'Isolated', ['']);
    const o = ours(tokenize, tmp, pattern, 'Isolated', ['']);
    if (h.ok || !h.error.includes(message)) fail(`regex /${pattern}/: expected HF to refuse it with "${message}", got ${h.ok ? 'acceptance' : h.error}`);
    if (o.ok || !o.error.includes(message)) fail(`regex /${pattern}/: we must refuse it with "${message}" as HF does, got ${o.ok ? 'acceptance' : o.error}`);
  }
  for (const [pattern, message] of WE_REFUSE) {
    const h = hf(pattern, 'Isolated', ['']);
    const o = ours(tokenize, tmp, pattern, 'Isolated', ['']);
    if (!h.ok) fail(`regex /${pattern}/: HF refuses it now (${h.error}); move the case to HF_REFUSES`);
    if (o.ok || !o.error.includes(message)) fail(`regex /${pattern}/: we must refuse it with "${message}", got ${o.ok ? 'acceptance' : o.error}`);
  }
  let budgetMaxMs = 0;
  for (const [pattern, text] of BUDGET) {
    // HF in a child process: Oniguruma's error is a Rust panic that aborts node.
    const script = `const { Tokenizer } = require(${JSON.stringify(require.resolve('tokenizers'))});` +
      `Tokenizer.fromString(process.argv[1]).getPreTokenizer().preTokenizeString(process.argv[2]); console.log('no error');`;
    const h = spawnSync(process.execPath, ['-e', script, tokenizerJson(pattern, 'Isolated'), text], { timeout: 120000 });
    if (!h.stderr.toString().includes('retry-limit-in-match over'))
      fail(`regex /${pattern}/ on ${text.length} code points: expected HF to abort with retry-limit-in-match, got status ${h.status}: ${h.stdout}${h.stderr}`);
    const o = ours(tokenize, tmp, pattern, 'Isolated', [text]);
    budgetMaxMs = Math.max(budgetMaxMs, o.ms);
    if (o.ok || !o.error.includes('backtracking limit exceeded') || !o.error.includes(pattern))
      fail(`regex /${pattern}/ on ${text.length} code points: expected our backtracking-limit error, got ${o.ok ? 'a result' : o.error}`);
    if (o.ms > BUDGET_SECONDS * 1000) fail(`regex /${pattern}/ on ${text.length} code points: took ${o.ms.toFixed(0)} ms (limit ${BUDGET_SECONDS} s)`);
  }
  log(`regex cases: ${SAME.length} patterns split as HF, ${HF_REFUSES.length} refused as HF refuses them, ` +
      `${WE_REFUSE.length} refused as documented, ${BUDGET.length} budget cases (HF aborts; ours errors in <= ${budgetMaxMs.toFixed(0)} ms)`);

  const r = rng(seed);
  const counts = { same: 0, 'both-refuse': 0, fail: 0 };
  const fuzzStats = { maxMs: 0, calls: 0, texts: 0 };
  const t0 = Date.now();
  for (let i = 0; i < fuzzPatterns; i++) {
    const pattern = genPattern(r, 0);
    const texts = [];
    for (let k = 0; k < 8; k++) texts.push(genText(r));
    const res = compare(tokenize, tmp, pattern, texts, fail, fuzzStats, FUZZ_ALLOWED);
    counts[res] = (counts[res] || 0) + 1;
  }
  log(`regex fuzz (seed ${seed}): ${fuzzPatterns} random patterns x 8 texts x 2 behaviours: ${counts.same} split as HF, ` +
      `${counts['both-refuse']} refused by both, ` +
      Object.keys(counts).filter((k) => k.startsWith('we-refuse')).map((k) => `${counts[k]} ${k}`).join(', ') +
      `${counts.fail ? `, ${counts.fail} MISMATCHED` : ''}; slowest CLI call ${fuzzStats.maxMs.toFixed(0)} ms; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return counts;
}

module.exports = { checkRegexCases, genPattern, genText, rng };

if (require.main === module) {
  const a = { tokenize: 'build/tokenize', fuzz: 150, seed: 12 };
  for (let i = 2; i < process.argv.length; i++) {
    const k = process.argv[i];
    if (k === '--tokenize') a.tokenize = process.argv[++i];
    else if (k === '--fuzz') a.fuzz = parseInt(process.argv[++i], 10);
    else if (k === '--seed') a.seed = parseInt(process.argv[++i], 10);
    else { console.error('unknown argument', k); process.exit(2); }
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'regex_cases_'));
  let failures = 0;
  const fail = (m) => { if (failures++ < 20) console.log('MISMATCH ' + m); };
  checkRegexCases({ tokenize: a.tokenize, tmp, fail, fuzzPatterns: a.fuzz, seed: a.seed });
  fs.rmSync(tmp, { recursive: true, force: true });
  if (failures) { console.log(`FAIL: ${failures} mismatches`); process.exit(1); }
  console.log('OK');
}
