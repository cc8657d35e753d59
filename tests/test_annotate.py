"""`stance label`: the event store (labels survive reopening, undo, several annotators, a torn last write), the JSON
API through the real server on a free port, and the exports (long form, disagreements, corpus rows validated like
labeled/, all or nothing, errors naming the pool file, line and field). The browser test is test_label_browser.py."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import make_rows, write_jsonl
from train.annotate import AnnotateError, App, Store, corpus_rows, long_rows, make_server, read_order, read_pool, resolve
from train.annotate.export import write_corpus
from train.cli import app as cli
from train.schema import split_for_id


def make_pool(path: Path, n: int = 6, **extra) -> Path:
    rows = [
        {
            "id": f"p{i}",
            "text": f"statement {i} on the talks in Baku",
            "speaker": f"speaker {i}",
            "date": "2025-07-2" + str(i),
            "channel": "telegram",
            "pred_stance": "hostile",
            "pred_confidence": 0.81,
            "prob_conciliatory": 0.04,
            "prob_neutral": 0.15,
            "prob_hostile": 0.81,
            **extra,
        }
        for i in range(n)
    ]
    return write_jsonl(path, rows)


@pytest.fixture
def pool(tmp_path):
    return read_pool(make_pool(tmp_path / "pool.jsonl", language="en"))


# -- the store -------------------------------------------------------------------------------------------------------


def test_labels_survive_reopening_and_undo_reverts_the_last(tmp_path, pool):
    ids = [r.id for r in pool.rows]
    s = Store(tmp_path / "st", writer=True)
    s.label("p0", "anna", "hostile", borderline=True, note="sarcasm")
    s.label("p1", "anna", "neutral")
    s.label("p2", "anna", "conciliatory")
    assert s.undo("anna")["id"] == "p2"
    s.skip("p3", "anna")
    s.close()

    s = Store(tmp_path / "st", writer=True)  # a new server: everything rebuilt from the log
    labels = s.track("anna").labels()
    assert {k: v["stance"] for k, v in labels.items()} == {"p0": "hostile", "p1": "neutral"}
    assert labels["p0"]["borderline"] is True and labels["p0"]["note"] == "sarcasm"
    assert s.queue(ids, "anna") == ["p2", "p4", "p5", "p3"]  # the undone one next, the skipped one last
    assert s.progress(ids, "anna") == {"done": 2, "total": 6}
    assert s.undo("anna")["id"] == "p1" and s.undo("anna")["id"] == "p0" and s.undo("anna") is None
    assert s.progress(ids, "anna")["done"] == 0
    lines = (tmp_path / "st" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["label"] * 3 + ["undo", "skip", "undo", "undo"]  # append-only


def test_relabel_then_undo_restores_the_earlier_label(tmp_path):
    s = Store(tmp_path / "st", writer=True)
    s.label("p0", "anna", "neutral")
    s.label("p0", "anna", "hostile")
    assert s.track("anna").labels()["p0"]["stance"] == "hostile"
    s.undo("anna")
    assert s.track("anna").labels()["p0"]["stance"] == "neutral"


def test_annotators_have_their_own_queues(tmp_path, pool):
    ids = [r.id for r in pool.rows]
    s = Store(tmp_path / "st", writer=True)
    s.label("p0", "anna", "hostile")
    s.label("p1", "anna", "hostile")
    s.label("p0", "ben", "neutral")
    assert s.queue(ids, "anna")[0] == "p2" and s.queue(ids, "ben")[0] == "p1"
    s.undo("ben")  # ben's undo never touches anna's labels
    assert s.progress(ids, "anna")["done"] == 2 and s.progress(ids, "ben")["done"] == 0


def test_a_second_server_on_one_store_is_refused(tmp_path):
    s = Store(tmp_path / "st", writer=True)
    with pytest.raises(AnnotateError, match="another `stance label` server"):
        Store(tmp_path / "st", writer=True)
    s.close()
    Store(tmp_path / "st", writer=True).close()


def test_a_write_torn_by_a_crash_is_cut_and_the_rest_kept(tmp_path):
    s = Store(tmp_path / "st", writer=True)
    s.label("p0", "anna", "hostile")
    s.close()
    with open(tmp_path / "st" / "events.jsonl", "ab") as fh:
        fh.write(b'{"event": "label", "id": "p1", "anno')  # the process died mid-write: never acknowledged
    assert len(Store(tmp_path / "st").track("anna").labels()) == 1  # a reader ignores the unfinished line
    s = Store(tmp_path / "st", writer=True)
    assert s.torn_tail.startswith(b'{"event"') and list(s.track("anna").labels()) == ["p0"]
    s.label("p1", "anna", "neutral")
    s.close()
    assert [e["stance"] for e in Store(tmp_path / "st").track("anna").stack] == ["hostile", "neutral"]


def test_a_corrupt_line_in_the_middle_names_file_and_line(tmp_path):
    d = tmp_path / "st"
    d.mkdir()
    (d / "events.jsonl").write_text('{"event": "label", "id": "a", "annotator": "x", "stance": "hostile"}\nnot json\n')
    with pytest.raises(AnnotateError, match=r"events.jsonl:2: corrupt event"):
        Store(d)


def test_bad_labels_and_names_are_refused_before_the_log(tmp_path):
    s = Store(tmp_path / "st", writer=True)
    with pytest.raises(AnnotateError, match="stance 'angry'"):
        s.label("p0", "anna", "angry")
    assert (tmp_path / "st" / "events.jsonl").read_text() == ""
    with pytest.raises(AnnotateError, match="annotator name"):
        from train.annotate import check_name

        check_name("../etc")


# -- pool and order files ---------------------------------------------------------------------------------------------


def test_pool_problems_name_file_line_and_field(tmp_path):
    p = tmp_path / "pool.csv"
    p.write_text("id,text\n1,first statement\n2,\n", encoding="utf-8")
    with pytest.raises(AnnotateError, match=r"pool.csv:3: field 'text': no text"):
        read_pool(p)
    p.write_text("id,text\n1,first\n1,second\n", encoding="utf-8")
    with pytest.raises(AnnotateError, match=r"pool.csv:3: field 'id': duplicate id '1' \(also at .*pool.csv:2\)"):
        read_pool(p)
    p.write_text("quote\nhello\n", encoding="utf-8")
    with pytest.raises(AnnotateError, match="no 'id' column .* pass --id-column"):
        read_pool(p)


def test_order_file_sets_the_queue_with_reasons(tmp_path, pool):
    sel = tmp_path / "selected.csv"
    sel.write_text("id,reason\np4,uncertain (margin 0.02)\np1,diverse\np4,near the decision boundary\n")
    order = read_order(sel, pool)
    assert order.ids == ["p4", "p1"] and order.reasons["p4"] == "uncertain (margin 0.02); near the decision boundary"
    sel.write_text("id\np1\nnope\n")
    with pytest.raises(AnnotateError, match=r"selected.csv:3: field 'id': 'nope' is not an id of the pool"):
        read_order(sel, pool)


def test_parquet_pool_with_integer_ids(tmp_path):
    import pandas as pd

    path = tmp_path / "pool.parquet"
    pd.DataFrame({"id": [1790000000000000123, 7], "text": ["a statement", "another"]}).to_parquet(path)
    assert [r.id for r in read_pool(path).rows] == ["1790000000000000123", "7"]


# -- the API through the real server ---------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path, pool):
    store = Store(tmp_path / "st", writer=True)
    guide = tmp_path / "GUIDELINES.md"
    guide.write_text("# Rules\n\n## 2. Decision rules\n\n1. **Whose voice is it?**\n", encoding="utf-8")
    srv = make_server(App(pool, read_order(None, pool), store, "anna", guidelines=guide), port=0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", store
    srv.shutdown()
    srv.server_close()
    store.close()


def call(url, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_api_labels_undo_progress_and_hidden_suggestion(server):
    url, store = server
    first = call(url, "/api/next?annotator=ben")
    assert first["item"]["id"] == "p0" and first["progress"] == {"done": 0, "total": 6}
    assert "hostile" not in json.dumps(first["item"]) and "0.81" not in json.dumps(first["item"])  # no suggestion
    assert first["item"]["has_suggestion"] and ["channel", "telegram"] in first["item"]["context"]
    assert first["item"]["headline"] == {"speaker": "speaker 0", "date": "2025-07-20", "language": "en"}
    after = call(url, "/api/label", {"annotator": "ben", "id": "p0", "stance": "neutral", "borderline": True, "note": "quoted"})
    assert after["item"]["id"] == "p1" and after["progress"]["done"] == 1
    assert call(url, "/api/suggestion?annotator=ben&id=p1")["pred_stance"] == "hostile"
    call(url, "/api/label", {"annotator": "ben", "id": "p1", "stance": "hostile"})
    undone = call(url, "/api/undo", {"annotator": "ben"})
    assert undone["undone"] == "p1" and undone["item"]["id"] == "p1" and undone["progress"]["done"] == 1
    call(url, "/api/label", {"annotator": "ben", "id": "p1", "stance": "hostile"})
    assert call(url, "/api/progress?annotator=ben") == {"done": 2, "total": 6}
    assert call(url, "/api/progress?annotator=anna") == {"done": 0, "total": 6}
    labels = store.track("ben").labels()
    assert labels["p0"]["suggestion_shown"] is False and labels["p1"]["suggestion_shown"] is True  # revealed, then undone
    assert "Decision rules" in call(url, "/api/guidelines")["html"]
    with pytest.raises(urllib.error.HTTPError) as e:
        call(url, "/api/label", {"annotator": "ben", "id": "zzz", "stance": "hostile"})
    assert e.value.code == 400 and "unknown id" in json.loads(e.value.read())["error"]
    with urllib.request.urlopen(url + "/", timeout=10) as r:
        assert b"stance label" in r.read()


# -- exports -----------------------------------------------------------------------------------------------------------


def labeled_store(tmp_path) -> Store:
    s = Store(tmp_path / "st", writer=True)
    s.label("p0", "anna", "hostile", note="contempt")
    s.label("p0", "ben", "hostile")
    s.label("p1", "anna", "neutral")
    s.label("p1", "ben", "hostile")  # a disagreement
    s.label("p2", "ben", "conciliatory", borderline=True)
    return s


def test_long_form_and_resolution(tmp_path, pool):
    s = labeled_store(tmp_path)
    rows = long_rows(s)
    assert [(r["id"], r["annotator"], r["stance"]) for r in rows] == [
        ("p0", "anna", "hostile"),
        ("p0", "ben", "hostile"),
        ("p1", "anna", "neutral"),
        ("p1", "ben", "hostile"),
        ("p2", "ben", "conciliatory"),
    ]
    decided, disputed = resolve(s)
    assert sorted(decided) == ["p0", "p2"] and [d["id"] for d in disputed] == ["p1"]
    assert disputed[0]["reason"] == "disagreement: anna: neutral, ben: hostile"
    assert "unanimous, 2 annotators" in decided["p0"]["notes"] and "note: contempt" in decided["p0"]["notes"]
    s.label("p1", "lead", "neutral", role="adjudicator")  # the adjudicator settles it; not an annotator row
    decided, disputed = resolve(s)
    assert decided["p1"]["stance"] == "neutral" and not disputed
    assert decided["p1"]["notes"].startswith("adjudicated by lead") and "anna: neutral, ben: hostile" in decided["p1"]["notes"]
    assert all(r["annotator"] != "lead" for r in long_rows(s))


def test_corpus_export_writes_valid_rows(tmp_path, pool):
    labeled = tmp_path / "labeled"
    write_jsonl(labeled / "statements.jsonl", make_rows(2))
    decided, _ = resolve(labeled_store(tmp_path))
    target = labeled / "statements_annotated_test.jsonl"
    write_corpus(corpus_rows(pool, decided, {"speaker_group": "other"}, "ann-"), pool, target)
    rows = [json.loads(x) for x in target.read_text().splitlines()]
    assert [(r["id"], r["stance"]) for r in rows] == [("ann-p0", "hostile"), ("ann-p2", "conciliatory")]
    r = rows[0]
    assert (r["source"], r["language"], r["speaker"], r["speaker_group"], r["date"]) == (
        "annotated",
        "en",
        "speaker 0",
        "other",
        "2025-07-20",
    )
    assert r["split"] == split_for_id("ann-p0") and "annotated by anna" in r["notes"] and "ben" in r["notes"]
    assert rows[1]["notes"].endswith("; borderline: flagged by the annotator")  # the guidelines' `borderline:` flag
    from train.data import validate

    assert validate(labeled).ok  # `stance data validate` passes with the new file in place


def test_corpus_export_errors_name_pool_file_line_and_field_and_write_nothing(tmp_path):
    pool = read_pool(make_pool(tmp_path / "pool.jsonl"))  # no language column
    decided, _ = resolve(labeled_store(tmp_path))
    target = tmp_path / "labeled" / "statements_annotated_x.jsonl"
    with pytest.raises(AnnotateError) as e:
        write_corpus(corpus_rows(pool, decided, {"speaker_group": "other"}), pool, target)
    msg = str(e.value)
    assert "pool.jsonl:1: field 'language': missing required field" in msg and "--set language=xx" in msg
    assert "pool.jsonl:3: field 'language'" in msg and "nothing written" in msg
    assert not target.exists() and list(target.parent.iterdir()) == []  # no half file, no temp file
    with pytest.raises(AnnotateError, match=r"pool.jsonl:1: field 'speaker_group': unknown speaker_group 'pundit'"):
        write_corpus(corpus_rows(pool, decided, {"speaker_group": "pundit", "language": "en"}), pool, target)
    assert not target.exists()


def test_corpus_export_refuses_ids_already_in_the_corpus_and_keeps_the_old_file(tmp_path, pool):
    labeled = tmp_path / "labeled"
    existing = make_rows(1)[0] | {"id": "p0", "split": split_for_id("p0")}
    write_jsonl(labeled / "statements.jsonl", [existing])
    target = labeled / "statements_annotated_x.jsonl"
    target.write_text("old content\n")
    decided, _ = resolve(labeled_store(tmp_path))
    with pytest.raises(AnnotateError, match=r"pool.jsonl:1: field 'id': duplicate id 'p0'"):
        write_corpus(corpus_rows(pool, decided, {"speaker_group": "other"}), pool, target)
    assert target.read_text() == "old content\n"


def test_cli_export_end_to_end(tmp_path, pool):
    labeled_store(tmp_path).close()
    labeled = tmp_path / "labeled"
    write_jsonl(labeled / "statements.jsonl", make_rows(2))
    out = CliRunner().invoke(
        cli,
        [
            "label",
            "export",
            str(tmp_path / "st"),
            "--long",
            str(tmp_path / "long.csv"),
            "--disagreements",
            str(tmp_path / "dis.csv"),
            "--corpus",
            str(labeled / "statements_annotated_t.jsonl"),
            "--pool",
            str(pool.path),
            "--set",
            "speaker_group=other",
            "--id-prefix",
            "ann-",
        ],
    )
    assert out.exit_code == 0, out.output
    assert (tmp_path / "long.csv").read_text().splitlines()[
        0
    ] == "id,annotator,stance,borderline,suggestion_shown,seconds,note,time"
    assert (tmp_path / "dis.csv").read_text().splitlines() == ["id,reason", 'p1,"disagreement: anna: neutral, ben: hostile"']
    assert read_order(tmp_path / "dis.csv", pool).ids == ["p1"]  # the list --adjudicate takes
    assert CliRunner().invoke(cli, ["data", "validate", str(labeled)]).exit_code == 0
    bad = CliRunner().invoke(
        cli,
        [
            "label",
            "export",
            str(tmp_path / "st"),
            "--corpus",
            str(tmp_path / "x.jsonl"),
            "--pool",
            str(make_pool(tmp_path / "nolang.jsonl")),
            "--set",
            "speaker_group=other",
        ],
    )
    assert bad.exit_code == 2 and "nolang.jsonl:1: field 'language'" in bad.output and not (tmp_path / "x.jsonl").exists()


def test_api_refuses_cross_site_posts_and_foreign_hosts(server):
    url, store = server
    req = urllib.request.Request(url + "/api/label", data=b'{"annotator": "x", "id": "p0", "stance": "hostile"}', method="POST")
    req.add_header("Content-Type", "text/plain")  # what a form or no-cors fetch from another site can send
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 415
    req = urllib.request.Request(url + "/api/next", headers={"Host": "evil.example:80"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 403
    assert store.track("x").stack == []


def test_adjudication_shows_the_annotators_labels_and_decides(tmp_path, pool):
    s = labeled_store(tmp_path)
    dis = tmp_path / "dis.csv"
    from train.annotate import write_rows

    write_rows(resolve(s)[1], ("id", "reason"), dis)
    app = App(pool, read_order(dis, pool), s, "lead", role="adjudicator")
    state = app.handle("GET", "/api/next", {}, {})[1]
    assert state["item"]["id"] == "p1" and state["item"]["reason"] == "disagreement: anna: neutral, ben: hostile"
    assert [(x["annotator"], x["stance"]) for x in state["item"]["labels"]] == [("anna", "neutral"), ("ben", "hostile")]
    state = app.handle("POST", "/api/label", {}, {"id": "p1", "stance": "neutral", "note": "reported speech"})[1]
    assert state["item"] is None and state["progress"] == {"done": 1, "total": 1}
    decided, disputed = resolve(s)
    assert decided["p1"]["stance"] == "neutral" and "note: reported speech" in decided["p1"]["notes"] and not disputed


def test_reviewing_corpus_rows_hides_their_label_and_notes(tmp_path):
    labeled = tmp_path / "labeled"
    rows = make_rows(1)
    rows[0]["notes"] = "sarcasm -> hostile"
    write_jsonl(labeled / "a.jsonl", rows[:2])
    write_jsonl(labeled / "b.jsonl", rows[2:4])
    pool = read_pool(labeled)  # a folder: the corpus itself, for a label-problems review
    assert len(pool.rows) == 4 and pool.by_id[rows[3]["id"]].where.endswith("b.jsonl:2")
    issues = tmp_path / "issues.csv"
    issues.write_text(f"id,reason\n{rows[0]['id']},given label has low probability (0.03)\n")
    app = App(pool, read_order(issues, pool), Store(tmp_path / "st", writer=True), "anna")
    item = app.handle("GET", "/api/next", {}, {})[1]["item"]
    assert rows[0]["stance"] not in json.dumps(item) and "sarcasm" not in json.dumps(item) and item["has_suggestion"]
    assert item["reason"] == "given label has low probability (0.03)" and ["source", "authored"] in item["context"]
    shown = app.handle("GET", "/api/suggestion", {"id": rows[0]["id"]}, {})[1]
    assert shown == {"stance": rows[0]["stance"], "notes": "sarcasm -> hostile"}


def test_stores_of_several_machines_export_together(tmp_path):
    from train.annotate import open_stores

    a = Store(tmp_path / "a", writer=True)
    a.label("p0", "anna", "hostile")
    b = Store(tmp_path / "b", writer=True)
    b.label("p0", "ben", "neutral")
    merged = open_stores([tmp_path / "a", tmp_path / "b"])
    assert [(r["annotator"], r["stance"]) for r in long_rows(merged)] == [("anna", "hostile"), ("ben", "neutral")]
    assert [d["id"] for d in resolve(merged)[1]] == ["p0"]
    b.label("p1", "anna", "neutral")  # anna in both stores: two histories of one person
    with pytest.raises(AnnotateError, match="'anna' also labeled in another store"):
        open_stores([tmp_path / "a", tmp_path / "b"])


def test_cli_serve_refuses_bad_input_before_serving(tmp_path):
    import socket

    pool = make_pool(tmp_path / "pool.jsonl")
    run = lambda *a: CliRunner().invoke(cli, ["label", str(pool), "--store", str(tmp_path / "st"), *a])
    bad = run("--annotator", "anna smith")
    assert bad.exit_code == 2 and "annotator name 'anna smith'" in bad.output
    bad = run("--annotator", "anna", "--order", str(tmp_path / "missing.csv"))
    assert bad.exit_code == 2 and "missing.csv: no such file" in bad.output
    (tmp_path / "pool.txt").write_text("id,text\n")
    bad = CliRunner().invoke(cli, ["label", str(tmp_path / "pool.txt"), "--annotator", "anna"])
    assert bad.exit_code == 2 and "unknown pool format '.txt'" in bad.output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = run("--annotator", "anna", "--port", str(s.getsockname()[1]))
    assert busy.exit_code == 1 and "is the port in use?" in busy.output
