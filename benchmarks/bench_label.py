"""What saving every label durably costs: `stance label`'s POST /api/label round trip through the real HTTP server,
with the store's fsync per label (what the app does) beside the same without fsync (what a crash could lose), and the
time the store takes to rebuild its state from the log when the app starts.

    python benchmarks/bench_label.py [--labels 500] [--pool 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from unittest import mock

from train.annotate import App, Store, make_server, read_order, read_pool
from train.schema import LABELS


def post(url: str, body: dict) -> None:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def run(tmp: Path, pool, n: int, fsync: bool) -> list[float]:
    store = Store(tmp / f"store-{fsync}", writer=True)
    server = make_server(App(pool, read_order(None, pool), store, "bench"), port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/label"
    times = []
    with contextlib.nullcontext() if fsync else mock.patch("os.fsync"):  # the store calls os.fsync
        for i in range(n):
            t = time.perf_counter()
            post(url, {"annotator": "bench", "id": pool.rows[i].id, "stance": LABELS[i % 3], "note": "a short note"})
            times.append(time.perf_counter() - t)
    server.shutdown()
    server.server_close()
    store.close()
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--labels", type=int, default=500)
    ap.add_argument("--pool", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as d:  # the working directory's disk, not a tmpfs
        tmp = Path(d)
        rows = [
            {"id": f"p{i}", "text": f"statement {i} " * 20, "speaker": "s", "pred_stance": "neutral"} for i in range(args.pool)
        ]
        (tmp / "pool.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        pool = read_pool(tmp / "pool.jsonl")
        results = {fsync: run(tmp, pool, min(args.labels, args.pool), fsync) for fsync in (True, False)}
        t = time.perf_counter()
        store = Store(tmp / "store-True")
        rebuild = time.perf_counter() - t
    print(f"{args.labels} labels through POST /api/label (pool of {args.pool}), one client, this machine:")
    print(f"{'store':<22}{'median ms':>10}{'p95 ms':>9}")
    for fsync, times in results.items():
        ms = sorted(x * 1000 for x in times)
        name = "fsync per label (app)" if fsync else "no fsync"
        print(f"{name:<22}{statistics.median(ms):>10.2f}{ms[int(0.95 * len(ms)) - 1]:>9.2f}")
    print(f"rebuilding the state from {store.events} events: {rebuild * 1000:.1f} ms")


if __name__ == "__main__":
    main()
