"""`linegw demo` itself, the command behind `make demo`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from gateway.cli import DEMO_LINE


def test_linegw_demo_starts_serves_and_stops_by_itself(tmp_path):
    """The `make demo` command itself, with free ports, stopping after a few seconds."""
    text = DEMO_LINE.read_text()
    for port in ("4841", "4842", "5021", "5022", "8080"):
        text = text.replace(f":{port}", ":0").replace(f"port: {port}", "port: 0")
    text = text.replace("path: var/demo.sqlite", f"path: {tmp_path / 'demo.sqlite'}")
    text = text.replace("../mappings/", f"{DEMO_LINE.parent.parent / 'mappings'}/")  # the copy lives elsewhere
    line_file = tmp_path / "demo.yaml"
    line_file.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "demo", "--line", str(line_file), "--for", "8s"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "dashboard    http://127.0.0.1:" in proc.stdout
    for eq_id in ("coater1", "winder1", "winder2", "formation1"):
        assert eq_id in proc.stdout
    assert Path(tmp_path / "demo.sqlite").exists()
