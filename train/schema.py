"""The labeled-statement schema, shared by every module. Values here are the contract with labeled/GUIDELINES.md."""

import hashlib

# Label order is the class-index order everywhere (model heads, probability columns, confusion matrices).
LABELS = ("conciliatory", "neutral", "hostile")

REQUIRED_FIELDS = ("id", "text", "language", "stance", "speaker", "speaker_group", "source", "date", "split")
# `meta`: an object of a study's own columns kept by `stance data import csv` (coder, source_url, outlet, ...):
# carried with the row, never read by training.
OPTIONAL_FIELDS = ("register", "notes", "meta")

SPLITS = ("train", "val", "test")

# The crisis's core languages, shown first (and one by one) in tables, plots and the MLflow UI; the others are pooled.
CORE_LANGUAGES = ("en", "ru", "tr", "az", "uk")

# The default codebook's speaker groups (labeled/codebook.yaml lists the same); a study folder with its own
# codebook.yaml uses its own groups instead (train/data/codebook.py).
SPEAKER_GROUPS = (
    "russian_military_blogger",  # "Z-bloggers", war correspondents on Telegram
    "russian_official",  # Kremlin, MFA, Duma, governors
    "russian_state_media",  # RT, Sputnik, TV hosts and talk-show guests
    "azerbaijani_official",  # president's office, MFA, parliament
    "azerbaijani_media",  # Azerbaijani journalists, pro-government and independent outlets
    "turkish_official",
    "turkish_analyst",
    "western_official",  # EU, US, UK governments
    "western_analyst",  # think tanks, columnists, academics
    "ukrainian_voice",  # officials, journalists, bloggers
    "iranian_voice",
    "ordinary_commentator",  # social-media users, readers' comments, street interviews
    "other",
)

REGISTERS = (
    "tweet",
    "telegram_post",
    "official_statement",
    "op_ed",
    "talk_show",
    "interview",
    "comment",
    "news_report",
    "speech",
)

# `source` says where a row came from. Rows the project wrote itself are `authored`; never present them as collected.
# `annotated`: real statements from a pool file labeled in `stance label` (annotator and time in `notes`).
SOURCES = ("authored", "seed_article", "imported", "annotated")


def split_for_id(row_id: str, val_pct: int = 15, test_pct: int = 15) -> str:
    """A row's split depends on its id alone, so adding rows never moves an existing row to another split."""
    bucket = int(hashlib.sha256(row_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    if bucket < test_pct:
        return "test"
    if bucket < test_pct + val_pct:
        return "val"
    return "train"
