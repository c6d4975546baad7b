// oracle.js — HF tokenizers (the native Node binding) as the oracle for build/bpe_train and
// build/make_shards. Used by tests/check_bpe_vs_hf.sh; every command exits non-zero on mismatch.
//
//   node oracle.js train SAMPLE OUT.json        train HF's default BpeTrainer (vocab 30000,
//                                               min_frequency 0, no specials, alphabet from the
//                                               data) with a ByteLevel(add_prefix_space=false)
//                                               pre-tokenizer on SAMPLE, read line by line
//   node oracle.js merges OURS.json HF.json     the two merge lists must be identical
//   node oracle.js shards TOK.json DIR VAL_EVERY PARTS...
//                                               HF loads TOK.json (ours) and encodes every
//                                               document; DIR/train.bin and DIR/val.bin must
//                                               hold exactly <|endoftext|> + ids per document
'use strict';
const fs = require('fs');
const tk = require('tokenizers');

function die(msg) { console.error('oracle: FAIL: ' + msg); process.exit(1); }

function train(sample, out) {
  const t = new tk.Tokenizer(tk.BPE.empty());
  t.setPreTokenizer(tk.byteLevelPreTokenizer(false, true));
  t.train([sample]);  // the model's default trainer: BpeTrainer::default()
  t.save(out, false);
  console.log(`oracle: HF trained ${t.getVocabSize()} tokens on ${sample}`);
}

function mergesOf(path) {
  const m = JSON.parse(fs.readFileSync(path, 'utf8')).model.merges;
  return m.map((x) => (Array.isArray(x) ? x : x.split(' ')));
}

function compareMerges(ours, hf) {
  const a = mergesOf(ours), b = mergesOf(hf);
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    if (a[i][0] !== b[i][0] || a[i][1] !== b[i][1]) {
      const show = (l, j) => l.slice(Math.max(0, j - 3), j + 3).map((x) => JSON.stringify(x)).join(' ');
      die(`merge ${i} of ${n} differs: ours ${JSON.stringify(a[i])}, HF ${JSON.stringify(b[i])}\n` +
          `  ours around it: ${show(a, i)}\n  HF around it:   ${show(b, i)}`);
    }
  }
  if (a.length !== b.length) die(`same first ${n} merges, but ours has ${a.length} merges and HF ${b.length}`);
  const va = JSON.parse(fs.readFileSync(ours, 'utf8')).model.vocab;
  const vb = JSON.parse(fs.readFileSync(hf, 'utf8')).model.vocab;
  for (const k of Object.keys(vb)) if (va[k] !== vb[k]) die(`vocab differs at ${JSON.stringify(k)}: ours ${va[k]}, HF ${vb[k]}`);
  if (Object.keys(va).length !== Object.keys(vb).length) die('vocab sizes differ');
  console.log(`oracle: all ${n} merges and ${Object.keys(vb).length} vocab entries identical to HF`);
}

function readShard(path) {
  const buf = fs.readFileSync(path);
  const magic = buf.readInt32LE(0), version = buf.readInt32LE(4), count = buf.readInt32LE(8);
  if (magic !== 20240520) die(`${path}: bad magic ${magic}`);
  const width = version === 1 ? 2 : 4;
  if (buf.length !== 1024 + count * width) die(`${path}: size does not match the header`);
  const out = new Array(count);
  for (let i = 0; i < count; i++) out[i] = width === 2 ? buf.readUInt16LE(1024 + 2 * i) : buf.readUInt32LE(1024 + 4 * i);
  return out;
}

function documents(path) {  // the corpus format: each document followed by a "\x1e" line
  const text = fs.readFileSync(path, 'utf8');
  return text.split('\x1e\n').filter((d, i, all) => i < all.length - 1 && d.length > 0);
}

async function checkShards(tokPath, dir, valEvery, parts) {
  const t = tk.Tokenizer.fromFile(tokPath);
  const eot = t.tokenToId('<|endoftext|>');
  if (eot === null || eot === undefined) die(`${tokPath} has no <|endoftext|>`);
  const want = { train: [], val: [] };
  let docs = 0, roundTrips = 0;
  for (const p of parts) {
    const ds = documents(p);
    for (let i = 0; i < ds.length; i++) {
      const enc = await t.encode(ds[i], null, { addSpecialTokens: false });
      const ids = enc.getIds();
      const dst = i % valEvery === valEvery - 1 ? want.val : want.train;
      dst.push(eot);
      for (const x of ids) dst.push(x);
      if (i < 3) {  // HF's own decode must give the text back (byte-level BPE is lossless)
        const back = await t.decode(ids, false);
        if (back !== ds[i]) die(`${p} document ${i}: HF decode(encode(doc)) != doc`);
        roundTrips++;
      }
      docs++;
    }
  }
  for (const split of ['train', 'val']) {
    const got = readShard(`${dir}/${split}.bin`);
    const w = want[split];
    const n = Math.min(got.length, w.length);
    for (let i = 0; i < n; i++)
      if (got[i] !== w[i])
        die(`${split}.bin token ${i}: ours ${got[i]} (${JSON.stringify(t.idToToken(got[i]))}), HF ${w[i]} (${JSON.stringify(t.idToToken(w[i]))})`);
    if (got.length !== w.length) die(`${split}.bin has ${got.length} tokens, HF encoding gives ${w.length}`);
    console.log(`oracle: ${split}.bin: all ${got.length} tokens equal HF's encoding`);
  }
  console.log(`oracle: ${docs} documents from ${parts.length} parts encoded identically; ${roundTrips} HF round trips ok`);
}

const [cmd, ...args] = process.argv.slice(2);
if (cmd === 'train') train(args[0], args[1]);
else if (cmd === 'merges') compareMerges(args[0], args[1]);
else if (cmd === 'shards') checkShards(args[0], args[1], parseInt(args[2], 10), args.slice(3)).catch((e) => die(String(e)));
else die('usage: node oracle.js train|merges|shards ...');
