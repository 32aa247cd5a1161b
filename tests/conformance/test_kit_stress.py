"""A smoke of the kit stress runner (kit_stress.py; the full 20 runs per simulator is `make kit-stress`):
two whole kit runs at a time, a CPU burner alongside, and no false failure on conforming simulators."""

from __future__ import annotations

import pytest

from .kit_stress import stress

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_two_loaded_kit_runs_at_a_time_fail_no_conforming_simulator():
    said: list[str] = []
    result = await stress(1, parallel=2, burn=True, subjects=[("coater", "opcua"), ("winder", "modbus")],
                          report=said.append)
    assert result.runs == 2 and len(said) == 2
    assert result.false_failures == [], "\n".join(result.false_failures)
    assert result.line(2, True).endswith(": 0 false failures")
