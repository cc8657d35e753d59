"""The labeling app: one HTML page (page.html, inline JS) and a small JSON API on the standard library's threading HTTP
server, bound to 127.0.0.1 unless told otherwise. Every label is in the store (fsynced) before the answer leaves.

  GET  /api/next?annotator=A        the next statement (no suggestion in it), progress, the last label (for undo)
  GET  /api/suggestion?annotator=A&id=I   the model's suggestion; logged as a `reveal` (anchoring is measurable)
  POST /api/label   {annotator, id, stance, borderline, note, suggestion_shown, seconds}
  POST /api/undo    {annotator}      POST /api/skip {annotator, id}
  GET  /api/progress?annotator=A    GET /api/guidelines (labeled/GUIDELINES.md as HTML)
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from train.annotate.pool import HIDDEN_COLUMNS, SUGGESTION_COLUMNS, AnnotateError, Order, Pool
from train.annotate.store import Store, check_name

PAGE = Path(__file__).with_name("page.html")
HEADLINE = ("speaker", "speaker_group", "date", "language")  # shown above the text; every other column is context


@dataclass
class App:
    pool: Pool
    order: Order
    store: Store
    annotator: str  # the page's default annotator (others open /?annotator=NAME)
    role: str = "annotator"  # "adjudicator" in --adjudicate mode
    guidelines: Path | None = None

    def __post_init__(self):
        self.lock = threading.Lock()  # one writer at a time: the log's order is the order labels were given
        # reviewing corpus rows (the pool has a `stance`): their notes explain the label, so they are hidden with it
        self.answer_columns = (*SUGGESTION_COLUMNS, "notes") if "stance" in self.pool.columns else SUGGESTION_COLUMNS

    def item(self, rid: str) -> dict:
        row = self.pool.by_id[rid]
        skip = {self.pool.text_column, "id", *self.answer_columns, *HIDDEN_COLUMNS}
        shown = {k: v for k, v in row.values.items() if k not in skip and v not in (None, "")}
        item = {
            "id": rid,
            "text": row.values[self.pool.text_column],
            "headline": {k: shown[k] for k in HEADLINE if k in shown},
            "context": [
                [k, v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)] for k, v in shown.items() if k not in HEADLINE
            ],
            "reason": self.order.reasons.get(rid, ""),
            "has_suggestion": any(row.values.get(c) not in (None, "") for c in self.answer_columns),
        }
        if self.role == "adjudicator":  # the adjudicator settles a disagreement: the annotators' labels are the point
            item["labels"] = [
                {"annotator": who, "stance": e["stance"], "borderline": e["borderline"], "note": e["note"]}
                for (who, _), labels in sorted(self.store.current("annotator").items())
                if (e := labels.get(rid))
            ]
        return item

    def state(self, annotator: str) -> dict:
        queue = self.store.queue(self.order.ids, annotator, self.role)
        stack = self.store.track(annotator, self.role).stack
        return {
            "annotator": annotator,
            "role": self.role,
            "item": self.item(queue[0]) if queue else None,
            "progress": self.store.progress(self.order.ids, annotator, self.role),
            "last": {"id": stack[-1]["id"], "stance": stack[-1]["stance"]} if stack else None,
            "order": self.order.source,
        }

    def suggestion(self, rid: str, annotator: str) -> dict:
        values = self.pool.by_id[rid].values
        self.store.reveal(rid, annotator, self.role)
        return {c: values.get(c) for c in self.answer_columns if values.get(c) not in (None, "")}

    def guidelines_html(self) -> str:
        if self.guidelines is None or not self.guidelines.is_file():
            return "<p>No guidelines file (labeled/GUIDELINES.md) found.</p>"
        from markdown_it import MarkdownIt  # rich's own Markdown parser: installed with typer

        return MarkdownIt("commonmark", {"html": False}).enable("table").render(self.guidelines.read_text(encoding="utf-8"))

    # -- requests ----------------------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body: dict) -> tuple[int, object]:
        who = check_name(body.get("annotator") or query.get("annotator") or self.annotator)
        rid = body.get("id") or query.get("id")
        if rid is not None and (rid := str(rid)) not in self.pool.by_id:
            raise AnnotateError(f"unknown id {rid!r}")
        with self.lock:
            if method == "GET" and path == "/api/next":
                return 200, self.state(who)
            if method == "GET" and path == "/api/progress":
                return 200, self.store.progress(self.order.ids, who, self.role)
            if method == "GET" and path == "/api/guidelines":
                return 200, {"html": self.guidelines_html()}
            if method == "GET" and path == "/api/suggestion" and rid:
                return 200, self.suggestion(rid, who)
            if method == "POST" and path == "/api/label" and rid:
                self.store.label(
                    rid,
                    who,
                    body.get("stance"),
                    role=self.role,
                    borderline=bool(body.get("borderline")),
                    note=str(body.get("note") or ""),
                    suggestion_shown=bool(body.get("suggestion_shown")),
                    seconds=body.get("seconds"),
                )
                return 200, self.state(who)
            if method == "POST" and path == "/api/undo":
                undone = self.store.undo(who, self.role)
                return 200, self.state(who) | {"undone": undone and undone["id"]}
            if method == "POST" and path == "/api/skip" and rid:
                self.store.skip(rid, who, self.role)
                return 200, self.state(who)
        return 404, {"error": f"no such endpoint: {method} {path}"}


class _Handler(BaseHTTPRequestHandler):
    app: App  # set on the subclass made by make_server
    allowed_hosts: frozenset[str] = frozenset()  # Host names accepted (only checked when bound to loopback)

    def log_message(self, *args):  # quiet: the terminal belongs to the person labeling
        pass

    def _send(self, code: int, payload, content_type: str = "application/json; charset=utf-8") -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        host = self.headers.get("Host", "").rsplit(":", 1)[0].strip("[]")
        if self.allowed_hosts and host not in self.allowed_hosts:  # DNS rebinding: another name pointed at 127.0.0.1
            return self._send(403, {"error": f"host {host!r} not allowed; open http://127.0.0.1:<port>/"})
        if method == "GET" and url.path in ("/", "/index.html"):
            return self._send(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            body = {}
            if method == "POST" and not self.headers.get("Content-Type", "").startswith("application/json"):
                # a page on another site can POST text/plain to localhost without asking; JSON needs CORS, which we never grant
                return self._send(415, {"error": "POST application/json"})
            if method == "POST":
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                if not isinstance(body, dict):
                    raise AnnotateError("the request body must be a JSON object")
            code, payload = self.app.handle(method, url.path, query, body)
        except (AnnotateError, ValueError) as e:
            code, payload = 400, {"error": str(e)}
        except OSError as e:  # the disk refused the write: say so, the page keeps the label on screen
            code, payload = 500, {"error": f"not saved: {e}"}
        self._send(code, payload)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")


def make_server(app: App, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """The bound server (port 0: a free one; `server.server_address[1]` says which). Call serve_forever() on it."""
    loopback = host in ("127.0.0.1", "localhost", "::1")
    allowed = frozenset({"127.0.0.1", "localhost", "::1"}) if loopback else frozenset()
    handler = type("Handler", (_Handler,), {"app": app, "allowed_hosts": allowed})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as e:
        raise AnnotateError(f"cannot listen on {host}:{port} ({e.strerror}); is the port in use? pass --port") from None
    server.daemon_threads = True
    return server
