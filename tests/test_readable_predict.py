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
    ["https://t.co/abc123XYZ", "https://www.example.com/news/2025/07/01/article-12345", "@user123 https://t.co/x", "ok", "👍👍👍", "12:45"],
)
def test_text_without_enough_letters_is_unknown(text):
    assert detect_languages([text]) == [None]  # lingua said pl / en / pt / pl for the first four


def test_low_confidence_detection_is_unknown():
    # letters enough, but lingua's best guess is a coin toss among languages (es 0.21, tr 0.17)
    assert detect_languages(["Taxi Hotel Radio", "la la la la la"]) == [None, None]
    assert detect_languages(["let us talk calmly"]) == ["en"]
