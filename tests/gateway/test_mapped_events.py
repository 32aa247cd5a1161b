"""Events a mapping derives from value changes, fed to a device as its adapter would.

A machine in a vendor dialect sends no events; its mapping says which value
changes mean a unit was made or a material loaded. These tests drive the
shipped mappings' triggers with readings and check the recorded events: one
per change, none for the first value, none twice across a link outage, per
array instance, with values from before the change where the mapping asks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.adapters.base import RawReading
from gateway.config import Equipment
from gateway.runtime.device import Device
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from interface_spec.vendor import VENDOR_DIR
from tests.waiting import wait_for

MAPPINGS = VENDOR_DIR


class Fed:
    """A device whose adapter is this test: readings go in by spec path, raw as the vendor serves them."""

    def __init__(self, dev: Device):
        self.dev = dev
        assert dev.plan is not None
        self.keys = {t.path: key for key, ts in dev.plan.targets.items() for t in ts}

    def values(self, values: dict[str, Any]) -> None:
        self.dev._on_readings([RawReading(self.keys[p], v, 1000.0) for p, v in values.items()])


@pytest.fixture
async def device(tmp_path):
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    devices: list[tuple[Device, asyncio.Task]] = []

    def make(mapping: str, cls: str, counts: dict[str, int]) -> Fed:
        eq = Equipment.model_validate({"id": mapping.split("-")[0], "class": cls, "protocol": "modbus",
                                       "endpoint": "127.0.0.1:502", "mapping": str(MAPPINGS / f"{mapping}.yaml"),
                                       "counts": counts})
        dev = Device(load_spec(), eq, store, lambda msg: None)
        dev.plan = dev._build_plan(counts)
        devices.append((dev, asyncio.create_task(dev._drain_records())))
        dev._on_link(True, "")
        return Fed(dev)

    yield make, store
    for _, task in devices:
        task.cancel()
    await asyncio.gather(*(t for _, t in devices), return_exceptions=True)
    await store.close()


async def recorded(store: SqliteStore, fed: Fed, event_type: str) -> list[dict[str, Any]]:
    """The events a device recorded, oldest first (it records off the hot path)."""
    await wait_for(fed.dev._records.empty, "the device's records written")
    await asyncio.sleep(0.05)  # the last one taken may still be on its way to the store
    await store.flush()
    return [e["payload"] for e in reversed(await store.events(equipment=fed.dev.eq.id, event_type=event_type))]


async def test_a_graded_slot_is_one_cell_per_change_per_slot(device):
    make, store = device
    rack = make("voltra-formation-modbus", "formation", {"channel": 2})
    grade = {"none": 0, "A": 1, "B": 2, "NG": 9}  # Voltra's codes
    first = {"channel[1].cell_id": "CL-1", "channel[2].cell_id": "CL-2", "channel[1].result_ocv": 36000,
             "channel[1].result_dcir": 2000, "channel[1].result_grade": grade["none"],
             "channel[2].result_grade": grade["none"]}
    rack.values(first)  # values seen at connect are no event
    rack.values({"channel[1].result_grade": grade["A"]})
    rack.dev._on_link(False, "test outage")
    rack.dev._on_link(True, "")
    rack.values(first | {"channel[1].result_grade": grade["A"]})  # unchanged across the outage: no second event
    rack.values({"channel[1].result_grade": grade["none"]})  # the next tray: ignored
    rack.values({"channel[1].cell_id": "CL-3", "channel[1].result_grade": grade["NG"]})
    rack.values({"channel[2].result_grade": grade["B"]})
    cells = await recorded(store, rack, "UnitProcessed")
    assert [(c["unit_id"], c["result"], c.get("reason")) for c in cells] == [
        ("CL-1", "good", None), ("CL-3", "reject", "grade NG"), ("CL-2", "good", None)]
    assert cells[0]["unit_type"] == "cell" and cells[0]["made_from"] == []
    assert cells[0]["measurements"] == {"ocv": pytest.approx(3.6), "dcir": pytest.approx(20.0)}


async def test_a_jelly_roll_is_made_from_the_inputs_loaded_before_it_finished(device):
    make, store = device
    winder = make("tobu-winder-modbus", "winder", {})
    assert winder.dev.view.identity == {"manufacturer": "Tobu Engineering", "model": "TW-21"}  # its nameplate
    inputs = {"material.cathode_roll_id": "EC-1", "material.anode_roll_id": "EA-1", "material.separator_lot_id": "SEP-1"}
    winder.values({"jelly_roll.roll_id": "JR-1", "jelly_roll.result": 1, "jelly_roll.reject_reason": 0, **inputs})
    # The next roll is finished and the next cathode roll loaded in the same scan.
    winder.values({"jelly_roll.roll_id": "JR-2", "jelly_roll.result": 2, "jelly_roll.reject_reason": 12,
                   "jelly_roll.diameter": 21050, "material.cathode_roll_id": "EC-2"})
    [roll] = await recorded(store, winder, "UnitProcessed")
    assert (roll["unit_id"], roll["result"], roll["reason"]) == ("JR-2", "reject", "hipot")
    assert roll["made_from"] == ["EC-1", "EA-1", "SEP-1"]
    assert roll["measurements"] == {"diameter": pytest.approx(21.05)}  # µm read as mm; unread ones left out
    [loaded] = await recorded(store, winder, "MaterialConsumed")
    assert loaded == {"material_type": "electrode_roll", "material_id": "EC-2"}
