"""The environment is the one the constraints file pins: a dependency release cannot change a result unnoticed."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from packaging.requirements import Requirement

from tests.conftest import REPO


def pins() -> dict[str, str]:
    out = {}
    for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: constraints pin exact versions"
            out[req.name] = spec.version
    return out


def test_the_whole_stack_is_pinned():
    p = {k.lower().replace("_", "-"): v for k, v in pins().items()}
    for name in (
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "scikit-learn",
        "skops",
        "mlflow",
        "pyarrow",
        "numpy",
        "pandas",
        "datasets",
        "accelerate",
        "onnxruntime",
    ):
        assert name in p, f"{name} is not pinned in .ci/constraints.txt"


def test_installed_versions_match_the_pins():
    wrong = []
    for name, want in pins().items():
        try:
            got = version(name)
        except PackageNotFoundError:
            wrong.append(f"{name}: not installed (pinned {want})")
            continue
        if got.split("+")[0] != want:  # torch's local label (+cpu) aside
            wrong.append(f"{name}: installed {got}, pinned {want}")
    assert not wrong, "run scripts/setup.sh (or scripts/lock.sh after a deliberate upgrade):\n" + "\n".join(wrong)
