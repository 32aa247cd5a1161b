"""Independent implementations under node (tests/node, installed by `make test` through `make node-peers`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "node"


def run_node(script: str, package: str, lines: list[str]) -> list[str]:
    """Feed `lines` to tests/node/<script> and return its output lines; fails with what to install when node or
    the package is missing."""
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / package).is_dir():
        pytest.fail(f"{script} needs node and tests/node/node_modules/{package}: run `make node-peers` "
                    "(Debian package nodejs, then npm ci in tests/node)")
    done = subprocess.run([node, str(NODE_DIR / script)], input="".join(line + "\n" for line in lines),
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.split("\n")[:-1]  # by "\n" only: a text may hold U+2028 and its kin, which splitlines splits at
