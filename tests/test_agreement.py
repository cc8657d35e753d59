"""`stance agreement`: Krippendorff's alpha and Cohen's kappa against values computed by hand here, bootstrap
intervals, the model beside the humans, the disagreement list, and bad input (file:line: field, exit 2)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from train.cli import app
from train.coding.agreement import Annotations, agreement_report, alpha, codes, disagreements, kappa, majority

runner = CliRunner()
C, N, H = "conciliatory", "neutral", "hostile"
A_LABELS = [H, H, H, N, N, N, N, C, C, H]
B_LABELS = [H, H, N, N, N, N, C, C, C, N]


def _alpha_by_hand(m: np.ndarray, ordinal: bool) -> float:
    """Krippendorff (2011): coincidences o_ck over pairable values, D_o / D_e with the nominal or ordinal metric."""
    k = 3
    o = np.zeros((k, k))
    for unit in m.T:
        vals = [int(v) for v in unit if not np.isnan(v)]
        if len(vals) < 2:
            continue
        for i, a in enumerate(vals):
            for j, b in enumerate(vals):
                if i != j:
                    o[a, b] += 1 / (len(vals) - 1)
    nc, n = o.sum(1), o.sum()

    def delta(c, d):
        if not ordinal:
            return float(c != d)
        lo, hi = min(c, d), max(c, d)
        return (nc[lo : hi + 1].sum() - (nc[c] + nc[d]) / 2) ** 2

    do = sum(o[c, d] * delta(c, d) for c in range(k) for d in range(k))
    de = sum(nc[c] * nc[d] * delta(c, d) for c in range(k) for d in range(k)) / (n - 1)
    return 1 - do / de


def _two_coders() -> Annotations:
    ann = Annotations()
    for i, (a, b) in enumerate(zip(A_LABELS, B_LABELS)):
        ann.labels[f"s{i}"] = {"ann_a": a, "ann_b": b}
        ann.languages[f"s{i}"] = "ru" if i < 5 else "en"
    return ann


def test_krippendorff_textbook_example():
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability', nominal example: 4 coders, 12 units, alpha 0.743."""
    nan = np.nan
    m = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    )
    assert alpha(m, "nominal") == pytest.approx(0.743, abs=5e-4)


def test_kappa_and_alpha_by_hand():
    m = codes(_two_coders().labels, [f"s{i}" for i in range(10)], ["ann_a", "ann_b"])
    # Cohen's kappa: p_o = 7/10; marginals A (c 2, n 4, h 4), B (c 3, n 5, h 2): p_e = .2*.3 + .4*.5 + .4*.2 = .34
    assert kappa(m[0], m[1]) == pytest.approx((0.7 - 0.34) / (1 - 0.34)) == pytest.approx(6 / 11)
    assert alpha(m, "nominal") == pytest.approx(_alpha_by_hand(m, ordinal=False))
    assert alpha(m, "ordinal") == pytest.approx(_alpha_by_hand(m, ordinal=True))
    # no hostile-vs-conciliatory disagreement here, so the ordinal alpha exceeds the nominal one
    assert alpha(m, "ordinal") > alpha(m, "nominal")
    m3 = m.copy()
    m3[1, 9] = 0  # the last unit becomes hostile vs conciliatory: ordinal alpha falls more than nominal
    assert alpha(m, "ordinal") - alpha(m3, "ordinal") > alpha(m, "nominal") - alpha(m3, "nominal")


def test_report_intervals_model_and_disagreements():
    ann = _two_coders()
    ann.labels["s10"] = {"ann_a": H, "ann_b": H, "ann_c": C}  # a third coder on one unit: majority hostile
    model = {f"s{i}": a for i, a in enumerate(A_LABELS)}  # the model labels exactly like annotator a
    rep = agreement_report(ann, model=model, n_boot=200, seed=1)
    for fig in [rep["alpha_nominal"], rep["alpha_ordinal"], rep["pairs"][0]["kappa"]]:
        assert fig["low"] <= fig["value"] <= fig["high"] and fig["high"] - fig["low"] > 0.05
    assert rep["pairs"][0]["a"] == "ann_a" and rep["pairs"][0]["kappa"]["n"] == 11
    assert set(rep["languages"]) == {"ru", "en", "?"} and set(rep["labels"]) == {C, N, H}
    mo = rep["model"]
    assert mo["model_vs_annotator"]["ann_a"] == pytest.approx(1.0)
    assert mo["model_vs_annotator"]["ann_b"] == pytest.approx(6 / 11)
    # majority of two coders exists only where they agree (7 units) plus s10: the model (= a) matches them all there
    assert rep["reference"] == "majority" and rep["reference_n"] == 8 and mo["vs_reference"]["kappa"]["n"] == 7
    assert mo["vs_reference"]["kappa"]["value"] == pytest.approx(1.0)
    dis = disagreements(ann)
    assert [d["id"] for d in dis][0] == "s10" and dis[0]["spread"] == 2 and len(dis) == 4
    assert dis[0]["reason"] == "disagreement: ann_a=hostile, ann_b=hostile, ann_c=conciliatory" and dis[0]["majority"] == H


def test_majority_and_undefined_alpha():
    assert majority({"a": H, "b": H, "c": N}) == H and majority({"a": H, "b": N}) is None and majority({"a": H}) is None
    assert math.isnan(alpha(np.array([[1.0, 1.0], [1.0, 1.0]])))  # one value only: alpha undefined, not 1 or an error


def test_cli_agreement_outputs(tmp_path):
    rows = [
        {"id": f"s{i}", "annotator": who, "stance": lab, "text": f"text {i}", "language": "en"}
        for who, labels in (("ann_a", A_LABELS), ("ann_b", B_LABELS))
        for i, lab in enumerate(labels)
    ]
    with open(tmp_path / "a.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[:10])
    (tmp_path / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[10:]), encoding="utf-8")
    (tmp_path / "pred.csv").write_text(
        "id,pred_stance\n" + "".join(f"s{i},{a}\n" for i, a in enumerate(B_LABELS)), encoding="utf-8"
    )
    (tmp_path / "adj.csv").write_text("id,stance\n" + "".join(f"s{i},{a}\n" for i, a in enumerate(A_LABELS)), encoding="utf-8")
    out = tmp_path / "out"
    r = runner.invoke(
        app,
        [
            "agreement",
            str(tmp_path / "a.csv"),
            str(tmp_path / "b.jsonl"),
            "--model-predictions",
            str(tmp_path / "pred.csv"),
            "--adjudicated",
            str(tmp_path / "adj.csv"),
            "--bootstrap",
            "50",
            "--output",
            str(out),
        ],
    )
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "agreement.json").read_text())
    assert rep["reference"] == "adjudicated" and rep["model"]["vs_reference"]["kappa"]["value"] == pytest.approx(6 / 11)
    dis = list(csv.DictReader((out / "disagreements.csv").open(encoding="utf-8")))
    assert len(dis) == 3 and {"id", "reason", "text", "label_ann_a", "label_ann_b"} <= set(dis[0])
    assert "Cohen's kappa per pair" in (out / "agreement.md").read_text()


@pytest.mark.parametrize(
    "content, where",
    [
        ("id,annotator\ns1,a\n", "a.csv:2: field 'stance': missing column"),
        ("id,annotator,stance\ns1,a,hostile\ns2,a,angry\n", "a.csv:3: field 'stance': unknown label 'angry'"),
        ("id,annotator,stance\ns1,a,hostile\ns1,a,neutral\n", "a.csv:3: field 'id': 's1' labeled twice by annotator 'a'"),
        ("id,annotator,stance\ns1,,hostile\n", "a.csv:2: field 'annotator': empty"),
    ],
)
def test_cli_agreement_bad_input_exit_2(tmp_path, content, where):
    (tmp_path / "a.csv").write_text(content, encoding="utf-8")
    r = runner.invoke(app, ["agreement", str(tmp_path / "a.csv"), "--output", str(tmp_path / "out")])
    assert r.exit_code == 2 and where in r.output, r.output
    assert not (tmp_path / "out").exists()
