// bench_tokenizer_hf.js — the HF side of dev/bench_tokenizer.sh: encode throughput of HuggingFace
// tokenizers (npm `tokenizers`: the Rust library behind a Node binding) on the same text and in the
// same two ways as build/bench_tokenizer (whole text / one call per document), same TSV rows.
// Single thread: one encode() call at a time (encode never fans out; only encodeBatch would), and
// the script is run with RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false.
//   node dev/bench_tokenizer_hf.js TOKENIZER.json TEXT [REPEAT]
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require(path.join(__dirname, '..', 'tests', 'tokenizer_oracle', 'node_modules', 'tokenizers'));

const [tokPath, textPath, repeatArg] = process.argv.slice(2);
const repeat = Math.max(1, parseInt(repeatArg || '3', 10));
const text = fs.readFileSync(textPath, 'utf8');
const docs = splitDocuments(text);

// The documents of `text`, split at separator lines (lines holding only 0x1E, data/README.md): a
// copy of ref::split_documents(text, path, TrailingText::document) (ref/text/corpus.cpp), which
// build/bench_tokenizer uses. They must stay equal, or the two sides encode different documents and
// dev/bench_tokenizer.sh's id check fails. Each document keeps its final '\n'; empty documents are
// dropped; text after the last separator line is one more document.
function splitDocuments(text) {
  const docs = [];
  for (let begin = 0; begin < text.length;) {
    let sep = text.indexOf('\x1e\n', begin);  // a separator only at a line start (begin is one)
    while (sep >= 0 && sep !== begin && text[sep - 1] !== '\n') sep = text.indexOf('\x1e\n', sep + 1);
    if (sep < 0) { docs.push(text.slice(begin)); break; }
    if (sep > begin) docs.push(text.slice(begin, sep));
    begin = sep + 2;
  }
  return docs;
}

function fnv1a(ids) {  // 64-bit FNV-1a over the ids, as in bench_tokenizer.cpp
  let h = 1469598103934665603n;
  for (const id of ids) { h ^= BigInt(id); h = (h * 1099511628211n) & 0xffffffffffffffffn; }
  return h.toString(16).padStart(16, '0');
}

async function encodeAll(tok, input) {
  const t0 = process.hrtime.bigint();
  const ids = [];
  for (const d of input) {
    const enc = await tok.encode(d, null, { addSpecialTokens: false });
    for (const id of enc.getIds()) ids.push(id);
  }
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, ids };
}

function row(what, pass, bytes, tokens, seconds) {
  console.log(['hf', what, pass, (bytes / 1e6).toFixed(2), tokens, seconds.toFixed(3), (bytes / 1e6 / seconds).toFixed(2)].join('\t'));
}

async function main() {
  for (const [what, input] of [['text', [text]], ['docs', docs]]) {
    const bytes = input.reduce((s, d) => s + Buffer.byteLength(d), 0);
    const tok = Tokenizer.fromFile(tokPath);  // fresh: empty BPE cache for the first pass
    const first = await encodeAll(tok, input);
    row(what, 'first', bytes, first.ids.length, first.seconds);
    let best = Infinity;
    for (let r = 0; r < repeat; r++) best = Math.min(best, (await encodeAll(tok, input)).seconds);
    row(what, 'best', bytes, first.ids.length, best);
    console.log(`# hf ${what} ids fnv1a ${fnv1a(first.ids)}`);
    if (what === 'docs') {
      const t0 = process.hrtime.bigint();
      const back = await tok.decode(first.ids, false);
      const dt = Number(process.hrtime.bigint() - t0) / 1e9;
      row('decode', 'first', Buffer.byteLength(back), first.ids.length, dt);
    }
  }
}
main().catch((e) => { console.error('bench_tokenizer_hf: error:', e.message); process.exit(1); });
