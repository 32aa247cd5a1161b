"""The whole gateway SIGKILLed under load three times (tests/reliability/sigkill.py; `make sigkill` runs
ten): the store stays intact, nothing the API showed as stored is lost, and the outbox resumes exactly."""

from __future__ import annotations

from pathlib import Path

from tests.forward.conftest import VictoriaMetrics, assert_resends_identical
from tests.reliability.sigkill import SINK_SERIES, run_series, unsent

KILLS = 3


async def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path, vm: VictoriaMetrics) -> None:
    rounds, final, drained_at = await run_series(tmp_path, vm.url, KILLS, seed=7)
    assert len(rounds) == KILLS
    for r in rounds:
        assert r.integrity == "ok", r
        assert r.acknowledged > 0 and r.kept == r.acknowledged, r
    await vm.searchable(SINK_SERIES, at_least=sum(ts < drained_at - 1.0 for ts in final))  # written is not yet searchable
    got = assert_resends_identical(vm.points(SINK_SERIES), at_most=KILLS * 2000)
    assert unsent(final, drained_at, {ts for _, ts in got}) == []
    assert len(final) >= rounds[-1].stored  # the last run went on recording


def test_the_check_sees_a_heartbeat_the_sink_never_got() -> None:
    assert unsent([10.0, 11.0, 12.0], drained_at=20.0, in_sink_ms={10_000, 12_000}) == [11.0]
    assert unsent([10.0, 19.5], drained_at=20.0, in_sink_ms={10_000}) == []  # 19.5: stored after the drain began
