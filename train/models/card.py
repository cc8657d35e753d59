"""The saved model directory's card (stance_model.json): what it holds, every file's digest, and its checks on load.

Saved model directories hold only JSON, safetensors and skops files: loading never unpickles anything and never runs
remote code.
"""

from __future__ import annotations

import math
import hashlib
import json
from pathlib import Path

from train.formats import sha256_file
from train.schema import LABELS

MODEL_CARD = "stance_model.json"
POOLINGS = ("mean", "cls", "auto")

class ModelFileError(ValueError):
    """A saved model directory that is incomplete, altered or inconsistent: refused before anything is predicted."""


def file_digests(path: Path) -> dict[str, str]:
    """sha256 of every file a saved model consists of (the card itself aside)."""
    return {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file() and f.name != MODEL_CARD}


def write_card(path: Path, card: dict) -> None:
    """The card is written last and lists every file's digest, so a partial or altered directory is detected on load."""
    card = {**card, "files": file_digests(path)}
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")


def _card_with_kind(card_path: Path) -> dict:
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{card_path}: unreadable model card: {e}") from e
    if card.get("kind") not in ("transformer", "baseline"):
        raise ModelFileError(f"{card_path}: kind {card.get('kind')!r} is not one of transformer, baseline")
    return card


def card_kind(path: Path) -> str:
    """Which estimator a saved directory holds; the rest of the card (and the files' digests) is checked by
    `read_card` when that estimator loads it, so the weights are hashed once per load."""
    return _card_with_kind(Path(path) / MODEL_CARD)["kind"]


def model_fingerprint(model_dir: Path) -> str:
    """One digest for a saved model's content: the card's own sha256, since the card lists every other file's sha256
    (checked on load). A directory saved before cards held digests is hashed in full, card included. Keys the ONNX
    export cache and binds `stance predict --resume` parts to the model."""
    card = Path(model_dir) / MODEL_CARD
    if "files" in json.loads(card.read_text(encoding="utf-8")):
        return sha256_file(card)[:24]
    listing = {**file_digests(Path(model_dir)), MODEL_CARD: sha256_file(card)}
    return hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:24]


def read_card(path: Path) -> dict:
    """The card, checked against what the code can run and against the files next to it."""
    card_path = Path(path) / MODEL_CARD
    card = _card_with_kind(card_path)
    # The head's outputs are in training order, which is always LABELS: another order here would swap classes.
    if card.get("labels") != list(LABELS):
        raise ModelFileError(f"{card_path}: labels {card.get('labels')!r} must be {list(LABELS)!r} in this order")
    if card["kind"] == "transformer" and card.get("pooling") not in POOLINGS:
        raise ModelFileError(f"{card_path}: pooling {card.get('pooling')!r} is not one of {', '.join(POOLINGS)}")
    prior, temperature = card.get("class_prior"), card.get("temperature", 1.0)
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ModelFileError(f"{card_path}: temperature {temperature!r} must be a number > 0")
    if prior is not None and not (isinstance(prior, list) and len(prior) == len(LABELS) and all(isinstance(x, (int, float)) and x > 0 for x in prior)):
        raise ModelFileError(f"{card_path}: class_prior {prior!r} must be {len(LABELS)} numbers > 0 or null")
    bias = card.get("class_bias")
    if bias is not None and not (isinstance(bias, list) and len(bias) == len(LABELS) and all(isinstance(x, (int, float)) and math.isfinite(x) for x in bias)):
        raise ModelFileError(f"{card_path}: class_bias {bias!r} must be {len(LABELS)} finite numbers or absent")
    expected = card.get("files")
    if expected is not None:  # directories saved before digests were recorded have none to check
        found = file_digests(Path(path))
        missing = sorted(set(expected) - set(found))
        changed = sorted(k for k in expected if k in found and found[k] != expected[k])
        if missing or changed:
            what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "", f"changed since saved: {', '.join(changed)}" if changed else "") if x)
            raise ModelFileError(f"{path}: model files do not match the card ({what})")
    return card
