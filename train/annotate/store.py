"""The annotation store: an append-only JSON Lines log of events (`events.jsonl` in the store folder), each line
written in one `write` and fsynced before the app answers, so a label the annotator saw accepted survives a crash, a
killed server or a closed tab. Everything else (labels in effect, undo stacks, queues, progress) is rebuilt from the
log when the store opens; nothing is ever rewritten in place.

Events (all carry `event`, `annotator`, `role` and `time`):
  label   id, stance, borderline, note, suggestion_shown, seconds   the annotator's label for a statement
  undo    id                                                         reverts that annotator's last label in effect
  skip    id                                                         the statement goes to the end of their queue
  reveal  id                                                         the annotator asked to see the model's suggestion

`role` is `annotator`, or `adjudicator` for labels given in `stance label --adjudicate` (they settle disagreements
and are kept out of the agreement figures).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from train.annotate.pool import AnnotateError
from train.schema import LABELS

EVENTS_FILE = "events.jsonl"
LOCK_FILE = "server.lock"
ROLES = ("annotator", "adjudicator")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")  # annotator names end up in file names and URLs


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise AnnotateError(f"annotator name {name!r}: use 1-40 letters, digits, '.', '_' or '-' (e.g. anna or a.petrova)")
    return name


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Track:
    """One annotator's work in one role: the label events in effect (a stack, for undo), skips and reveals."""

    stack: list[dict] = field(default_factory=list)
    skipped: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    revealed: set[str] = field(default_factory=set)

    def labels(self) -> dict[str, dict]:
        """id -> the label event in effect (a statement labeled twice: the later label)."""
        return {e["id"]: e for e in self.stack}


class Store:
    """The event log of one store folder. `writer=True` (the server) takes an exclusive lock, so two servers cannot
    interleave undo stacks, and cuts an unterminated last line (a write torn by a crash, never acknowledged)."""

    def __init__(self, directory: Path, writer: bool = False):
        self.dir = Path(directory)
        self.path = self.dir / EVENTS_FILE
        self.tracks: dict[tuple[str, str], Track] = {}
        self.events = 0
        self._lock_fd = None
        self.torn_tail = b""  # bytes of a write torn by a crash, cut off when a server opened the store
        if writer:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._lock()
            self._repair_tail()
        elif not self.path.is_file():
            raise AnnotateError(f"{self.dir}: not an annotation store (no {EVENTS_FILE})")
        self._replay()

    # -- opening ---------------------------------------------------------------------------------------------------

    def _lock(self) -> None:
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 200).decode(errors="replace")
            os.close(fd)
            raise AnnotateError(
                f"{self.dir}: another `stance label` server uses this store ({owner}); open that one, or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}, since {now()}".encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # the kernel drops the flock with the descriptor
            self._lock_fd = None

    def _repair_tail(self) -> None:
        if not self.path.exists():
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            os.fsync(fd)
            os.close(fd)
            dfd = os.open(self.dir, os.O_RDONLY)  # the new file's name is durable too
            os.fsync(dfd)
            os.close(dfd)
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                os.fsync(fh.fileno())
            self.torn_tail = data[keep:]

    def _replay(self) -> None:
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        if not data.endswith(b"\n"):
            lines = lines[:-1]  # a reader may see a line being written right now; it is not part of the log yet
        for n, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
                self._apply(event)
            except (ValueError, KeyError, TypeError, AssertionError) as e:
                raise AnnotateError(
                    f"{self.path}:{n}: corrupt event ({e}); the log is append-only: "
                    "restore the file from a backup or remove this line by hand"
                ) from None

    # -- state -----------------------------------------------------------------------------------------------------

    def track(self, annotator: str, role: str = "annotator") -> Track:
        return self.tracks.setdefault((annotator, role), Track())

    def _apply(self, e: dict) -> None:
        kind, rid = e["event"], str(e["id"])
        assert e.get("role", "annotator") in ROLES, f"unknown role {e.get('role')!r}"
        t = self.track(e["annotator"], e.get("role", "annotator"))
        if kind == "label":
            assert e["stance"] in LABELS, f"unknown stance {e['stance']!r}"
            t.stack.append(e)
            t.skipped.pop(rid, None)
        elif kind == "undo":
            assert t.stack and t.stack[-1]["id"] == rid, f"undo of {rid!r}, but the last label in effect is another"
            t.stack.pop()
        elif kind == "skip":
            t.skipped.pop(rid, None)
            t.skipped[rid] = None
        elif kind == "reveal":
            t.revealed.add(rid)
        else:
            raise ValueError(f"unknown event {kind!r}")
        self.events += 1

    def append(self, event: dict) -> dict:
        """Write one event durably (one write + fsync), then apply it. If the disk refuses, the log is cut back to
        where it was and nothing is applied: the caller reports the error and the annotator's label is not lost silently."""
        if self._lock_fd is None:
            raise AnnotateError(f"{self.dir}: opened read-only")
        event = {**event, "time": now()}
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        size = os.fstat(fd).st_size
        try:
            os.write(fd, line)
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
        finally:
            os.close(fd)
        self._apply(dict(event))
        return event

    # -- actions ---------------------------------------------------------------------------------------------------

    def label(
        self,
        rid: str,
        annotator: str,
        stance: str,
        *,
        role: str = "annotator",
        borderline: bool = False,
        note: str = "",
        suggestion_shown: bool = False,
        seconds: float | None = None,
    ) -> dict:
        if stance not in LABELS:
            raise AnnotateError(f"stance {stance!r}: expected one of {', '.join(LABELS)}")
        shown = bool(suggestion_shown) or rid in self.track(annotator, role).revealed
        return self.append(
            {
                "event": "label",
                "id": rid,
                "annotator": annotator,
                "role": role,
                "stance": stance,
                "borderline": bool(borderline),
                "note": str(note or "").strip(),
                "suggestion_shown": shown,
                "seconds": None if seconds is None else round(float(seconds), 1),
            }
        )

    def undo(self, annotator: str, role: str = "annotator") -> dict | None:
        """Revert the annotator's last label in effect; None when there is nothing to undo."""
        t = self.track(annotator, role)
        if not t.stack:
            return None
        return self.append({"event": "undo", "id": t.stack[-1]["id"], "annotator": annotator, "role": role})

    def skip(self, rid: str, annotator: str, role: str = "annotator") -> dict:
        return self.append({"event": "skip", "id": rid, "annotator": annotator, "role": role})

    def reveal(self, rid: str, annotator: str, role: str = "annotator") -> dict:
        return self.append({"event": "reveal", "id": rid, "annotator": annotator, "role": role})

    def queue(self, ids: list[str], annotator: str, role: str = "annotator") -> list[str]:
        """The ids still to label, in order: never-skipped ones first, then the skipped ones in the order skipped."""
        t = self.track(annotator, role)
        done = t.labels()
        wanted = set(ids)
        fresh = [i for i in ids if i not in done and i not in t.skipped]
        return fresh + [i for i in t.skipped if i in wanted and i not in done]

    def progress(self, ids: list[str], annotator: str, role: str = "annotator") -> dict:
        done = self.track(annotator, role).labels()
        return {"done": sum(i in done for i in ids), "total": len(ids)}

    def current(self, role: str | None = None) -> dict[tuple[str, str], dict[str, dict]]:
        """(annotator, role) -> id -> the label event in effect."""
        return {k: t.labels() for k, t in self.tracks.items() if role is None or k[1] == role}


def open_stores(directories: list[Path]) -> Store:
    """Several stores read as one (e.g. each annotator labeled on their own machine). The same annotator in the same
    role in two stores would be two histories of one person: refused rather than guessed."""
    merged = Store(directories[0])
    for d in directories[1:]:
        other = Store(d)
        for key, track in other.tracks.items():
            if key in merged.tracks:
                raise AnnotateError(f"{d}: {key[1]} {key[0]!r} also labeled in another store given; export them separately")
            merged.tracks[key] = track
        merged.events += other.events
    return merged
