"""The fault matrix (tests/reliability/matrix.py), every row against real simulators, four side by side: whatever
the fault, no event the machine kept is lost and nothing is stored twice; every fault the gateway must show is
shown, and GOOD data comes back after each one.

Side by side under the full suite's load, rows showed gateway bugs, all fixed: Modbus exception 2 on every
register held a third of the map BAD for 10 s after it ended (the events behind it counted as lost), and a dropped
OPC UA connection stored 20 rows twice (the initial read's newer value, then the subscription's older one and the
newer again). A third showed in CI: a gateway that connected during the simulator's first tick, which stamps every
unchanged value anew, stored 22 such values again at the reconnect of the session-limit row. `make fault-matrix` runs the rows one at a
time for the README's figures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.reliability.matrix import FAULTS, STORE_FAULTS, run_all, run_store_rows, table
from tests.reliability.sinks import SINK_FAULTS, run_sinks, sink_table


async def test_every_fault_of_the_matrix_loses_nothing_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.CRITICAL)  # the faults make the adapters log by design; the table says what happened
    machine_rows, store_rows = await asyncio.gather(run_all(tmp_path, side_by_side=4), run_store_rows(tmp_path))
    rows = machine_rows + store_rows
    print("\n" + table(rows))
    assert [r.fault for r in rows] == [f.name for f in FAULTS + STORE_FAULTS]
    for fault, row in zip(FAULTS + STORE_FAULTS, rows):
        assert row.events > 0, f"{row.fault}: the machine made no events to lose"
        assert (row.events_lost, row.duplicates) == (0, 0), f"{row}\n{row.twice}"
        if fault.outage:
            assert row.detected_s is not None and row.recovered_s is not None, row


def test_the_matrix_would_see_a_lost_event(tmp_path):
    """The counting itself: a seq missing from the store is a lost event, a seq twice a duplicate."""
    from tests.reliability.matrix import count_events

    assert count_events(first=5, last=9, stored=[5, 6, 8, 9, 9]) == (1, 1)
    assert count_events(first=5, last=9, stored=[5, 6, 7, 8, 9]) == (0, 0)
    with pytest.raises(ValueError):
        count_events(first=9, last=5, stored=[])


async def test_every_fault_of_the_sink_loses_nothing_and_catches_up(tmp_path, caplog):
    """The sink rows (tests/reliability/sinks.py), four side by side: whatever the InfluxDB sink does, every number
    stored reaches it once, the forwarder shows the fault, and it catches up after."""
    caplog.set_level(logging.CRITICAL)
    rows = await run_sinks(tmp_path, side_by_side=4)
    print("\n" + sink_table(rows))
    assert [r.fault for r in rows] == [f.name for f in SINK_FAULTS]
    for fault, row in zip(SINK_FAULTS, rows):
        assert row.forwarded > 200 and (row.samples_lost, row.duplicates) == (0, 0), row
        if fault.shown:
            assert row.detected_s is not None and row.recovered_s is not None, row
