"""Two minutes of the soak (tests/reliability/soak.py; `make soak` runs thirty): the demo line four times
over, faults switched at random, and the gateway's memory, descriptors, tasks and loop lag stay flat."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.soak import SHORT_BOUNDS, Soak, chart, run_soak, theil_sen


async def test_two_minutes_of_faults_leave_the_gateway_flat(tmp_path: Path) -> None:
    soak = await run_soak(tmp_path, minutes=2, interval_s=8, fault_period_s=10)
    assert len(soak.t) >= 12 and len(soak.faults) >= 5, soak
    slopes = soak.slopes()
    print(f"\nslopes per minute: {slopes}; faults: {soak.faults}")
    for name, bound in SHORT_BOUNDS.items():
        assert slopes[name] < bound, f"{name} grows {slopes[name]:+.2f}/min (bound {bound}): {getattr(soak, name)}"
    chart(soak, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
