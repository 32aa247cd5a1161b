"""Two minutes of the soak (tests/reliability/soak.py; `make soak` runs thirty): the demo line four times
over, faults switched at random, and the gateway's memory, descriptors, tasks and loop lag stay flat. The soak runs
as its own process beside the rest of the suite, started at collection (tests/reliability/conftest.py)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.reliability.soak import SHORT_BOUNDS, Soak, theil_sen


def test_two_minutes_of_faults_leave_the_gateway_flat(soak_run: tuple[subprocess.Popen[str], Path]) -> None:
    proc, folder = soak_run
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    data = json.loads((folder / "soak.json").read_text())
    soak = Soak(data["minutes"], data["interval_s"], t=data["t"], rss_mb=data["rss_mb"], fds=data["fds"],
                tasks=data["tasks"], loop_lag_ms=data["loop_lag_ms"], faults=data["faults"])
    assert len(soak.t) >= 12 and len(soak.faults) >= 5, soak
    slopes = soak.slopes()
    print(f"\nslopes per minute: {slopes}; faults: {soak.faults}")
    for name, bound in SHORT_BOUNDS.items():
        assert slopes[name] < bound, f"{name} grows {slopes[name]:+.2f}/min (bound {bound}): {getattr(soak, name)}"
    assert (folder / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_slope_sees_a_leak_through_noise() -> None:
    """One task leaked per minute shows through a spike; a flat series with a spike stays flat."""
    t = [i / 2 for i in range(20)]
    leaking = [100 + x + (30 if i == 7 else 0) for i, x in enumerate(t)]
    flat = [100 + (30 if i == 7 else 0) for i in range(20)]
    assert theil_sen(t, leaking) == pytest.approx(1.0)
    assert theil_sen(t, flat) == 0.0
    assert Soak(1, 1, t=t, rss_mb=flat, fds=flat, tasks=leaking, loop_lag_ms=flat).slopes()["tasks"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        theil_sen([1.0], [2.0])
