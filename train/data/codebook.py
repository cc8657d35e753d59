"""A study's codebook: the speaker groups its rows may use and the languages it expects, read from `codebook.yaml` in
the data folder. The three stance labels are not part of it (they are the models' contract, train.schema.LABELS).

A folder without a codebook uses the shipped default (train.schema.SPEAKER_GROUPS, any ISO 639-1 language), which is
also what labeled/codebook.yaml holds. The file is checked like the rows are: every problem names the file, the line
and the key, with the close valid key named ("Did you mean 'speaker_groups'?").

    # study/codebook.yaml
    speaker_groups:
      western_media: newspapers, TV and news sites based in EU/NATO countries
      international_org: UN, OSCE, Council of Europe officials and spokespeople
    languages: [ru, en, de]     # optional; without it any ISO 639-1 code is accepted
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from train.data.problems import Problem, _display, did_you_mean
from train.schema import SPEAKER_GROUPS

CODEBOOK_FILE = "codebook.yaml"
KEYS = ("speaker_groups", "languages")
_GROUP_RE = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class Codebook:
    speaker_groups: tuple[str, ...] = SPEAKER_GROUPS
    languages: tuple[str, ...] | None = None  # None: any ISO 639-1 code
    path: str = ""  # "" for the shipped default

    @property
    def where(self) -> str:
        return f" in {self.path}" if self.path else ""


DEFAULT_CODEBOOK = Codebook()


def codebook_for(path: Path) -> Path | None:
    """The codebook file that governs a data file (its folder's codebook.yaml) or a data folder."""
    folder = path if path.is_dir() else path.parent
    found = folder / CODEBOOK_FILE
    return found if found.is_file() else None


def group_key(value: str) -> str:
    """The group id a free-text value stands for: "Western media" -> "western_media" (used by the importer)."""
    return re.sub(r"[^a-z0-9]+", "_", value.strip().casefold()).strip("_")


def _line(node) -> int:
    return node.start_mark.line + 1


def load_codebook(path: Path, iso_codes: frozenset[str]) -> tuple[Codebook, list[Problem]]:
    """The codebook in `path` and every problem found in it (with problems, the default codebook is returned too, so
    rows are still checked; the problems are errors of the validation)."""
    shown = _display(path)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        mark = getattr(e, "problem_mark", None)
        return DEFAULT_CODEBOOK, [Problem(shown, mark.line + 1 if mark else None, None, f"not readable YAML: {e}")]
    if root is None:
        return DEFAULT_CODEBOOK, [
            Problem(shown, None, None, "empty codebook (expected speaker_groups: and optionally languages:)")
        ]
    if not isinstance(root, yaml.MappingNode):
        return DEFAULT_CODEBOOK, [Problem(shown, _line(root), None, "expected a mapping with speaker_groups: and languages:")]
    problems, groups, languages = [], None, None
    for key_node, value_node in root.value:
        key = key_node.value
        if key not in KEYS:
            problems.append(
                Problem(shown, _line(key_node), key, f"unknown codebook key (valid: {', '.join(KEYS)}){did_you_mean(key, KEYS)}")
            )
        elif key == "speaker_groups":
            groups = _groups(shown, value_node, problems)
        else:
            languages = _languages(shown, value_node, problems, iso_codes)
    if groups is None and not problems:  # a misspelt key was reported already
        problems.append(Problem(shown, None, "speaker_groups", "missing: the speaker groups of this study (name: description)"))
    book = Codebook(tuple(groups or SPEAKER_GROUPS), tuple(languages) if languages else None, shown)
    return book, problems


def _groups(shown: str, node, problems: list[Problem]) -> list[str] | None:
    if not isinstance(node, yaml.MappingNode) or not node.value:
        problems.append(
            Problem(shown, _line(node), "speaker_groups", "expected a mapping of group name to a one-line description")
        )
        return None
    groups = []
    for key_node, value_node in node.value:
        name, where = key_node.value, f"speaker_groups.{key_node.value}"
        if not _GROUP_RE.fullmatch(name):
            suggestion = group_key(name)
            hint = f"; write it as {suggestion!r}" if _GROUP_RE.fullmatch(suggestion) else ""
            problems.append(
                Problem(shown, _line(key_node), where, f"group name {name!r} is not lowercase letters, digits and _{hint}")
            )
        elif name in groups:
            problems.append(Problem(shown, _line(key_node), where, f"group {name!r} listed twice"))
        elif not isinstance(value_node, yaml.ScalarNode) or value_node.tag != "tag:yaml.org,2002:str":
            problems.append(Problem(shown, _line(value_node), where, "expected a one-line description (a string)"))
        else:
            groups.append(name)
    return groups


def _languages(shown: str, node, problems: list[Problem], iso_codes: frozenset[str]) -> list[str] | None:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        problems.append(Problem(shown, _line(node), "languages", "expected a list of ISO 639-1 codes, e.g. [ru, en, de]"))
        return None
    codes = []
    for item in node.value:
        code = item.value if isinstance(item, yaml.ScalarNode) else None
        if code not in iso_codes:
            problems.append(Problem(shown, _line(item), "languages", f"{code!r} is not a lowercase ISO 639-1 code"))
        elif code not in codes:
            codes.append(code)
    return codes
