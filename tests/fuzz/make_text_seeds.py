#!/usr/bin/env python3
"""make_text_seeds.py — writes the text seed inputs of the fuzz harnesses into tests/fuzz/corpus/:
json/, config/, regex/, tokenizer_json/ and encode/. The binary seeds (safetensors, checkpoint,
shard) come from make_seeds.cpp. Run from anywhere: python3 tests/fuzz/make_text_seeds.py
The seeds are small on purpose: libFuzzer mutates a few KB far faster than the 80 KB fixtures."""
import json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
corpus = os.path.join(here, "corpus")

def put(sub, name, data):
    os.makedirs(os.path.join(corpus, sub), exist_ok=True)
    with open(os.path.join(corpus, sub, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# ---- json: every kind of value and escape, and the awkward corners of the grammar
put("json", "object", '{"a": [1, -2.5e-3, 0, true, false, null], "b": {"c": "d\\n\\u00e9\\ud83d\\ude00"}, "": []}')
put("json", "numbers", '[0, -0, 1e308, -1.5E+10, 9223372036854775807, -9223372036854775808, 9223372036854775808, 3.0, 1e3]')
put("json", "strings", '["\\"\\\\\\/\\b\\f\\n\\r\\t", "\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80", "\\u0000"]')
put("json", "nested", "[" * 20 + "]" * 20)
put("json", "scalar", '  "x"  ')

# ---- config: the to_json form of a full config, and a few partial ones
cfg = {"V": 256, "C": 64, "H": 4, "L": 4, "n_dense": 1, "Fd": 176, "E": 8, "K": 2, "S": 1, "F": 32, "T": 64,
       "init_std": 0.006, "rope_theta": 10000, "norm_eps": 1e-06, "gate": "sigmoid", "routing": "token_choice",
       "balance": "lossfree", "bias_kind": "add", "update_rule": "sign", "bias_rate": 0.001, "aux_alpha": 0.001,
       "aux_per_batch": False, "norm_topk": False, "route_scale": 1, "ec_chunk": 0, "ec_shuffle": False, "B": 4,
       "grad_accum": 1, "steps": 100, "lr": 0.001, "lr_min": 0.0001, "warmup": 10, "schedule": "cosine",
       "milestones": [], "lr_decay": 0.316, "beta1": 0.9, "beta2": 0.95, "adam_eps": 1e-08,
       "weight_decay": 0.1, "grad_clip": 1, "seed": 1234}
put("config", "full", json.dumps(cfg))
put("config", "expert_choice", json.dumps(dict(cfg, routing="expert_choice", balance="none", ec_chunk=64, ec_shuffle=True)))
put("config", "multistep", json.dumps(dict(cfg, schedule="multistep", milestones=[10, 50], gate="softmax", balance="aux")))
put("config", "partial", '{"V": 300, "seed": 18446744073709551615}')

# ---- regex: the fixture tokenizers' patterns, then unsupported constructs; pattern \0 text
text = "Hello wörld, it's 12345 you'RE  \t\n\n中文テキスト\xff end!!\r\n"
pats = []
for f in sorted(os.listdir(os.path.join(root, "tests/fixtures/tokenizers"))):
    t = json.load(open(os.path.join(root, "tests/fixtures/tokenizers", f)))
    steps = t["pre_tokenizer"].get("pretokenizers", [t["pre_tokenizer"]])
    pats += [s["pattern"]["Regex"] for s in steps if s.get("type") == "Split" and "Regex" in s["pattern"]]
pats += [r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
         r"(?>a+)b|(?=x)\w{2,5}?|[^\P{Lu}a-c]*+|\x{41}\u00e9\t.$", r"(?i:straße)|[\d\D]{,3}|^\S+?$",
         r"(?<=a)b", r"(a)\1", r"\p{Han}", r"[[:alpha:]]", r"a{2,1}", r"(a*)*", r"(?i)x"]
for i, p in enumerate(pats):
    put("regex", "p%02d" % i, p.encode() + b"\0" + text.encode("utf-8", "surrogateescape"))

# ---- tokenizer_json: each fixture cut down to the byte alphabet plus its first merges
for f in sorted(os.listdir(os.path.join(root, "tests/fixtures/tokenizers"))):
    t = json.load(open(os.path.join(root, "tests/fixtures/tokenizers", f)))
    vocab = t["model"]["vocab"]
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    keep = dict(by_id[:256])
    merges = []
    for m in t["model"]["merges"]:
        a, b = m.split(" ") if isinstance(m, str) else m
        if a in keep and b in keep and a + b in vocab and len(merges) < 24:
            merges.append(m)
            keep[a + b] = None
    new_vocab = {tok: i for i, tok in enumerate(keep)}
    t["model"]["vocab"], t["model"]["merges"] = new_vocab, merges
    for i, at in enumerate(t["added_tokens"]):
        at["id"] = len(new_vocab) + i
    put("tokenizer_json", f, json.dumps(t, ensure_ascii=False))

# ---- encode: byte 0 picks the fixture tokenizer (0..3), the rest is text
samples = [text.encode("utf-8", "surrogateescape"), b"<|endoftext|>a<|fim|>\n\n  12 3456 the the", b"",
           "<｜begin▁of▁sentence｜>日本語のテキスト 123".encode(), bytes(range(256))]
for i, s in enumerate(samples):
    put("encode", "s%d" % i, bytes([i % 4]) + s)
print("wrote text seeds under", corpus)
