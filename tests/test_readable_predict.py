"""Issue 15, item 5 (inference): language detection that reports unknown rather than guessing, truncation flagged,
long texts scored by windows, progress by batch, probabilities written with a stated precision."""

from __future__ import annotations

import pytest

from train.inference.rows import detect_languages

# Written for this test (not corpus or real-quote texts). Lingua 2.1 alone reads the first two as Kazakh.
UKRAINIAN = [
    "Ніхто не хоче війни, але ми готові захищатися.",
    "Ще одна ніч тривог у столиці.",
    "Ми вимагаємо негайно припинити обстріли мирних міст.",
    "Уряд заявив, що переговори продовжаться наступного тижня.",
    "Сьогодні у Баку відбулася зустріч міністрів закордонних справ.",
    "Кремль знову бреше про свої цілі.",
    "Їхні погрози нас не лякають.",
    "Слава Україні!",
]


def test_ukrainian_is_not_read_as_kazakh():
    assert detect_languages(UKRAINIAN) == ["uk"] * len(UKRAINIAN)


def test_kazakh_and_azerbaijani_with_their_own_letters_are_still_detected():
    texts = ["Келіссөздер келесі аптада жалғасады деп мәлімдеді министр.", "Danışıqlar gələn həftə davam edəcək."]
    assert detect_languages(texts) == ["kk", "az"]
    assert detect_languages(["Görüşmeler gelecek hafta devam edecek."]) == ["tr"]


@pytest.mark.parametrize(
    "text",
    [
        "https://t.co/abc123XYZ",
        "https://www.example.com/news/2025/07/01/article-12345",
        "@user123 https://t.co/x",
        "ok",
        "👍👍👍",
        "12:45",
    ],
)
def test_text_without_enough_letters_is_unknown(text):
    assert detect_languages([text]) == [None]  # lingua said pl / en / pt / pl for the first four


def test_low_confidence_detection_is_unknown():
    # letters enough, but lingua's best guess is a coin toss among languages (es 0.21, tr 0.17)
    assert detect_languages(["Taxi Hotel Radio", "la la la la la"]) == [None, None]
    assert detect_languages(["let us talk calmly"]) == ["en"]


# -- long texts, progress, precision -------------------------------------------------------------------------------------

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from tests.test_inference import baseline_dir, predict, stance_dir  # noqa: E402,F401 - fixtures
from train.inference.rows import PRED_COLUMNS, _pieces, predict_values  # noqa: E402
from train.models import load_stance_model  # noqa: E402

PROBS = PRED_COLUMNS[2:]
SHORT = "we hope for dialogue"  # 6 tokens with [CLS] [SEP]: fits max_length 16
MIDDLE = " ".join(["peace and good neighbours"] * 5)  # 22 tokens: over 16, under 4 x 16
HUGE = " ".join(["strike them hard now"] * 20)  # 82 tokens: over 4 x 16


def test_truncation_is_flagged_and_huge_texts_are_refused_by_default(stance_dir):
    model = load_stance_model(stance_dir, device="cpu")
    out = predict_values(model, [SHORT, MIDDLE, HUGE], flag_truncated=True)
    assert out["truncated"].tolist() == [False, True, False]
    assert out["pred_stance"].notna().tolist() == [True, True, False]
    assert out["pred_error"][2].startswith("text too long (82 tokens > 4x max_length 16; --long-text window scores it)")
    # the truncated row is what the model makes of its first 16 tokens, as before
    first = model.tokenizer.decode(model.tokenizer(MIDDLE, truncation=True, max_length=16)["input_ids"], skip_special_tokens=True)
    assert np.allclose(out.loc[1, PROBS].astype(float), model.predict_proba([first])[0], atol=1e-5)


def test_window_mode_scores_long_texts_whole_as_the_token_weighted_mean_of_windows(stance_dir):
    model = load_stance_model(stance_dir, device="cpu")
    out = predict_values(model, [SHORT, MIDDLE, HUGE], long_text="window", flag_truncated=True)
    assert out["pred_error"].tolist() == ["", "", ""] and not out["truncated"].any()
    for row, text in ((1, MIDDLE), (2, HUGE)):
        pieces = _pieces(model, text, "window")
        assert len(pieces) >= 2 and all(len(model.tokenizer(p)["input_ids"]) <= 16 for p, _ in pieces)
        assert " ".join(p for p, _ in pieces[:1]) == " ".join(text.split()[:12])  # 16 - [CLS] [SEP] - 2 of margin
        weights = np.array([k for _, k in pieces], dtype=float)
        expected = (model.predict_proba([p for p, _ in pieces]) * weights[:, None]).sum(0) / weights.sum()
        assert np.allclose(out.loc[row, PROBS].astype(float), expected, atol=1e-6)
    assert np.allclose(out.loc[0, PROBS].astype(float), model.predict_proba([SHORT])[0], atol=1e-6)  # short: untouched


def test_eval_file_scores_long_texts_as_predict_does(stance_dir, tmp_path):
    """`stance eval file --long-text window` scores a coded sample as `stance predict --long-text window` scores the
    collection; the default truncates (a long row's figure then comes from its first max_length tokens) or refuses."""
    from typer.testing import CliRunner

    from train.cli import app

    src = tmp_path / "coded.csv"
    pd.DataFrame({"text": [SHORT, MIDDLE, HUGE], "stance": ["conciliatory", "conciliatory", "hostile"]}).to_csv(src, index=False)
    model = load_stance_model(stance_dir, device="cpu")
    want = predict_values(model, [SHORT, MIDDLE, HUGE], long_text="window")
    run = CliRunner().invoke
    window = run(app, ["eval", "file", str(src), "--model", str(stance_dir), "--long-text", "window", "--top", "0",
                       "--errors", str(tmp_path / "w.csv"), "--device", "cpu"])  # fmt: skip
    assert window.exit_code == 0, window.output
    assert "3 rows scored" in window.output and "--long-text window" in window.output
    truncate = run(app, ["eval", "file", str(src), "--model", str(stance_dir), "--device", "cpu"])
    assert truncate.exit_code == 0 and "2 rows scored" in truncate.output and "NOT SCORED" in truncate.output
    gold = np.array([0, 0, 2])
    from sklearn.metrics import f1_score

    expected = f1_score(gold, want[PROBS].astype(float).to_numpy().argmax(1), average="macro", labels=[0, 1, 2])
    assert f"macro-F1 {expected:.3f}" in window.output
    bad = run(app, ["eval", "file", str(src), "--model", str(stance_dir), "--long-text", "whole"])
    assert bad.exit_code != 0 and "--long-text: 'whole' is not one of truncate, window, sentences" in bad.output


def test_sentences_mode_keeps_sentences_whole(stance_dir):
    model = load_stance_model(stance_dir, device="cpu")
    text = "We hope for dialogue. Let us talk calmly. Peace and good neighbours. Strike them hard now."
    pieces = _pieces(model, text, "sentences")
    assert [p for p, _ in pieces] == [
        "We hope for dialogue. Let us talk calmly.",
        "Peace and good neighbours. Strike them hard now.",
    ]
    out = predict_values(model, [text], long_text="sentences")
    assert out["pred_error"][0] == "" and out["pred_stance"][0] is not None


def test_baseline_is_never_truncated(baseline_dir):
    model = load_stance_model(baseline_dir, device="cpu")
    for mode in ("truncate", "window"):
        out = predict_values(model, [SHORT, HUGE], long_text=mode, flag_truncated=True)
        assert out["truncated"].tolist() == [False, False] and out["pred_error"].tolist() == ["", ""]


def test_progress_is_reported_by_slice_of_batches_not_by_chunk(stance_dir, tmp_path):
    from train.inference import predict_file

    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [SHORT] * 23}).to_csv(src, index=False)
    seen = []
    predict_file(
        load_stance_model(stance_dir, device="cpu"),
        src,
        tmp_path / "out.csv",
        batch_size=2,
        chunk_rows=5000,
        detect_language=False,
        progress=lambda done, summary: seen.append(done),
    )
    assert seen[:3] == [8, 16, 23]  # batch_size 2 x 4 batches per slice, within one 5000-row chunk


def test_plain_progress_lines_carry_an_eta(tmp_path, capsys):
    from train.cli.predict import progress_reporter

    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [SHORT] * 100}).to_csv(src, index=False)
    with progress_reporter(src, every=0.0, first=0.0) as progress:
        progress(25, None)
    line = capsys.readouterr().err.strip()
    assert line.startswith("stance predict: 25/100 rows") and ", ETA 0:00:" in line


def test_cli_writes_rounded_probabilities_and_counts_truncated_rows(stance_dir, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [SHORT, MIDDLE, MIDDLE]}).to_csv(src, index=False)
    out_path = tmp_path / "out.csv"
    result = predict("-m", stance_dir, "-i", src, "-o", out_path, "--no-detect-language")
    assert result.exit_code == 0, result.output
    assert "truncated: 2 rows longer than the model's max length" in result.output
    lines = out_path.read_text().splitlines()
    header = lines[0].split(",")
    for line in lines[1:]:
        cells = dict(zip(header, line.split(",")))
        for c in ("pred_confidence", *PROBS):
            assert len(cells[c].split(".")[1]) <= 6, line  # not float32 noise like 0.33312345678901234
        assert cells["truncated"] in ("True", "False")
    parquet = tmp_path / "out.parquet"
    assert predict("-m", stance_dir, "-i", src, "-o", parquet, "--no-detect-language").exit_code == 0
    exact = pd.read_parquet(parquet)
    rounded = pd.read_csv(out_path)
    assert np.abs(exact[PROBS].to_numpy() - rounded[PROBS].to_numpy()).max() <= 5e-7
    assert exact["truncated"].tolist() == [False, True, True]
