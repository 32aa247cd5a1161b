"""Fixtures of the spec tests: the shipped spec, and broken copies of it.

Broken specs are made by copying the real spec folder into a fresh tmp folder
(load_spec caches by folder) and replacing one exact snippet in one file.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from interface_spec import Spec, load_spec
from interface_spec.spec import SPEC_DIR


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load_spec()


@dataclass
class SpecCopy:
    """A copy of the spec folder that a test edits."""

    folder: Path

    def path(self, file: str) -> Path:
        return self.folder / file

    def replace(self, file: str, old: str, new: str) -> None:
        """Replace the one occurrence of `old` in `file`."""
        path = self.path(file)
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{file}: expected exactly one {old!r}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def line(self, file: str, snippet: str) -> int:
        """1-based line where the one occurrence of `snippet` starts in the edited file."""
        text = self.path(file).read_text(encoding="utf-8")
        assert text.count(snippet) == 1, f"{file}: expected exactly one {snippet!r}"
        return text[: text.index(snippet)].count("\n") + 1


@pytest.fixture
def spec_copy(tmp_path: Path) -> SpecCopy:
    folder = tmp_path / "spec"
    folder.mkdir()
    for f in SPEC_DIR.glob("*.yaml"):
        shutil.copy(f, folder / f.name)
    return SpecCopy(folder)
