"""The fault matrix (tests/reliability/matrix.py), every row against real simulators, one at a time as
`make fault-matrix` runs them: whatever the fault, no event the machine kept is lost and nothing is stored
twice; every fault the gateway must show is shown, and GOOD data comes back after each one.

Run four side by side (`run_all(folder, side_by_side=4)`) under the full suite's load, two rows have shown
gateway bugs not yet fixed: Modbus exception 2 on every register once lost 42 events, and a dropped OPC UA
connection once stored 22 rows twice. They are open in the reliability issue."""

from __future__ import annotations

import logging

import pytest

from tests.reliability.matrix import FAULTS, run_all, table


async def test_every_fault_of_the_matrix_loses_nothing_and_recovers(tmp_path, caplog):
    caplog.set_level(logging.CRITICAL)  # the faults make the adapters log by design; the table says what happened
    rows = await run_all(tmp_path, side_by_side=1)
    print("\n" + table(rows))
    assert [r.fault for r in rows] == [f.name for f in FAULTS]
    for fault, row in zip(FAULTS, rows):
        assert row.events > 0, f"{row.fault}: the machine made no events to lose"
        assert (row.events_lost, row.duplicates) == (0, 0), row
        if fault.outage:
            assert row.detected_s is not None and row.recovered_s is not None, row


def test_the_matrix_would_see_a_lost_event(tmp_path):
    """The counting itself: a seq missing from the store is a lost event, a seq twice a duplicate."""
    from tests.reliability.matrix import count_events

    assert count_events(first=5, last=9, stored=[5, 6, 8, 9, 9]) == (1, 1)
    assert count_events(first=5, last=9, stored=[5, 6, 7, 8, 9]) == (0, 0)
    with pytest.raises(ValueError):
        count_events(first=9, last=5, stored=[])
