"""Prune e5-small's vocabulary to the pieces the corpus + dev texts use, for a GPU tuning run only (the tree that
travels to the device is capped at 64 MiB). Unigram Viterbi over a vocab subset that keeps every piece of each text's
optimal segmentation gives the same segmentation, so the pruned model computes exactly what the full one does on
these texts. Checked below on every text. Writes .gpu/e5p/{emb.safetensors, layers.safetensors, tokenizer files}."""

import glob
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

SRC = Path("models/multilingual-e5-small")
OUT = Path(".gpu/e5p")
OUT.mkdir(parents=True, exist_ok=True)
texts = []
for f in glob.glob("labeled/*.jsonl") + ["../shared/external/realquotes-dev/realquotes_dev.jsonl"]:
    texts += ["query: " + json.loads(l)["text"] for l in open(f, encoding="utf-8") if l.strip()]
tok = Tokenizer.from_file(str(SRC / "tokenizer.json"))
encs = tok.encode_batch(texts)
used = sorted({i for e in encs for i in e.ids} | {0, 1, 2, 3, 250001})
print("texts", len(texts), "pieces used", len(used))
old2new = {o: n for n, o in enumerate(used)}
t = json.loads((SRC / "tokenizer.json").read_text())
vocab = t["model"]["vocab"]
# <mask> (250001) is an added token beyond the unigram vocab of 250002? keep vocab entries < len(vocab)
t["model"]["vocab"] = [vocab[o] for o in used if o < len(vocab)]
assert all(o < len(vocab) for o in used), "an id outside the unigram vocab"
t["model"]["unk_id"] = old2new[3]
for a in t["added_tokens"]:
    a["id"] = old2new[a["id"]]
for st in t["post_processor"]["special_tokens"].values():
    st["ids"] = [old2new[i] for i in st["ids"]]
(OUT / "tokenizer.json").write_text(json.dumps(t, ensure_ascii=False))
for f in ("tokenizer_config.json", "special_tokens_map.json"):
    (OUT / f).write_text((SRC / f).read_text())
cfg = json.loads((SRC / "config.json").read_text())
cfg["vocab_size"] = len(used)
(OUT / "config.json").write_text(json.dumps(cfg, indent=2))
new = Tokenizer.from_file(str(OUT / "tokenizer.json"))
bad = sum(1 for e, n in zip(encs, new.encode_batch(texts)) if [old2new[i] for i in e.ids] != n.ids)
print("texts tokenized differently:", bad)
assert bad == 0
sd = load_file(str(SRC / "model.safetensors"))
emb_key = [k for k in sd if k.endswith("word_embeddings.weight")][0]
emb = sd.pop(emb_key)[torch.tensor(used)]
save_file({emb_key: emb.half()}, str(OUT / "emb.safetensors"))
save_file({k: (v.half() if v.dim() == 2 else v) for k, v in sd.items()}, str(OUT / "layers.safetensors"))
# check fp16 storage loses little: max abs diff of the 2-D tensors
err = max((v - v.half().float()).abs().max().item() for v in list(sd.values()) + [emb] if v.dim() == 2)
print("fp16 max abs rounding", err)
