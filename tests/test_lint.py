"""The linters `make test` runs catch what they are configured for.

`make lint` (part of `make test`) runs ruff and mypy over the tree with the
configuration in pyproject.toml; a finding fails the build. These tests show the
configuration bites: a module with a type error, an untyped function, a closure
over a loop variable and a blocking call in async code is refused, and the same
module written properly passes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
BIN = Path(sys.executable).parent

BAD = '''\
import time


def untyped(x):
    return x


def count() -> int:
    return "three"


def callbacks() -> list:
    out = []
    for i in range(3):
        out.append(lambda: i)
    return out


async def pause() -> None:
    time.sleep(1)
'''

GOOD = '''\
import asyncio
import functools
from collections.abc import Callable


def typed(x: int) -> int:
    return x


def count() -> int:
    return 3


def callbacks() -> list[Callable[[], int]]:
    return [functools.partial(int, i) for i in range(3)]


async def pause() -> None:
    await asyncio.sleep(0)
'''


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    assert exe.exists(), f"{tool} is not installed in {BIN}: run `make test` (it installs the test extras)"
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _module(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "module_under_lint.py"
    path.write_text(text)
    return path


def test_mypy_refuses_type_errors_and_untyped_code(tmp_path: Path) -> None:
    bad = _run("mypy", "--config-file", str(CONFIG), "--cache-dir", str(tmp_path / ".mypy"), str(_module(tmp_path, BAD)), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Function is missing a type annotation" in bad.stdout  # strict: no untyped defs
    assert 'Incompatible return value type (got "str", expected "int")' in bad.stdout
    assert "[type-arg]" in bad.stdout  # strict: bare `list`


def test_mypy_accepts_the_same_module_typed(tmp_path: Path) -> None:
    good = _run("mypy", "--config-file", str(CONFIG), "--cache-dir", str(tmp_path / ".mypy"), str(_module(tmp_path, GOOD)), cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr


def test_ruff_refuses_loop_closures_and_blocking_calls_in_async_code(tmp_path: Path) -> None:
    bad = _run("ruff", "check", "--config", str(CONFIG), "--no-cache", "--output-format", "concise", str(_module(tmp_path, BAD)), cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "B023" in bad.stdout  # the lambda sees the loop's last i
    assert "ASYNC251" in bad.stdout  # time.sleep stalls the event loop


def test_ruff_accepts_the_same_module_written_properly(tmp_path: Path) -> None:
    good = _run("ruff", "check", "--config", str(CONFIG), "--no-cache", str(_module(tmp_path, GOOD)), cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
