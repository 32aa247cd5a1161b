"""Realistic process data for store benchmarks: the simulators' own models, stepped by hand.

A formation rack is read over Modbus every scan, so every value of every scan is
recorded; coaters and winders over OPC UA send only what changed. The values are
the models' (rounded as the machines round them), with one gateway time per
scan a few milliseconds after the scan, as the adapters stamp a response.
No server is started: this is the data, not the protocol.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from gateway.samples import Quality, Sample
from interface_spec import load_spec
from simulators.line import SimConfig
from simulators.simulator import Simulator


def _machine(cls: str, eq: str, protocol: str, counts: dict[str, int] | None = None, seed: int = 1) -> Simulator:
    options = {"first_tray": "fresh"} if cls == "formation" else {}
    sim = Simulator(SimConfig(eq, cls, protocol, counts=counts or {}, seed=seed, options=options), load_spec())
    sim.machine.execute("Reset")
    sim.machine.tick(5.0)
    sim.machine.execute("Start")
    sim.machine.tick(5.0)
    return sim


def scans(cls: str, t0: float, seconds: float, *, eq: str | None = None, channels: int = 512,
          seed: int = 1) -> Iterator[list[Sample]]:
    """One list of samples per scan (formation: every value every 1 s; coater/winder: changes every 0.25 s)."""
    eq = eq or {"formation": "rack1", "coater": "coater1", "winder": "winder1"}[cls]
    modbus = cls == "formation"
    sim = _machine(cls, eq, "modbus" if modbus else "opcua",
                   {"channel": channels} if modbus else None, seed)
    period = 1.0 if modbus else sim.model.period_s
    rnd = random.Random(seed)
    m = sim.machine
    m.take_changes()
    units = {p: "" for p in m.values}
    t = t0
    while t < t0 + seconds:
        # What Simulator.advance does, less the publishing: the changes are ours to record.
        m.tick(period)
        sim.model.step(period)
        sim._operate()
        changes = m.take_changes()
        values = m.values if modbus else changes
        # One gateway time per response, as to_samples stamps a batch; Modbus has no source time, so the
        # source time is that gateway time too; OPC UA's is the server's.
        gw = t + 0.002 + rnd.random() * 0.004
        ts = gw if modbus else t
        yield [Sample(eq, path, value, units[path], ts, gw, Quality.GOOD, "")
               for path, value in values.items() if not isinstance(value, (list, dict))]
        t += period
