"""A scripted machine history written into a real store: known states, units, rejects, outages, alarms.

The script is the ground truth the tests compute their expected figures from
by hand; the store only sees what a gateway would have recorded: state and
counter samples every second, a BAD link-down marker and a link record when
the link drops, alarm records as raised and cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.samples import Quality, Sample
from interface_spec import load_spec

SPEC = load_spec()
E10 = SPEC.enum("e10_state")
PACKML = SPEC.enum("packml_state")
COUNTERS = ("counters.processed_count", "counters.good_count", "counters.defective_count")


@dataclass
class Machine:
    equipment: str
    start: float  # first sample
    end: float  # no sample at or after
    periods: list[tuple[float, float, str]]  # (from, to, state name) covering [start, end)
    state_path: str = "state.e10_state"
    enum: dict[str, int] = field(default_factory=lambda: E10)
    units: list[tuple[float, bool]] = field(default_factory=list)  # (time counted, good)
    resets: list[float] = field(default_factory=list)  # counters set to 0 at these times
    link_down: list[tuple[float, float]] = field(default_factory=list)
    design_speed: float | None = 6.0  # units per minute
    base: tuple[int, int, int] = (1000, 990, 10)
    period_s: float = 1.0

    def state_at(self, t: float) -> str:
        return next(name for a, b, name in self.periods if a <= t < b)

    def down(self, t: float) -> bool:
        return any(a <= t < b for a, b in self.link_down)

    def counters_at(self, t: float) -> tuple[int, int, int]:
        reset = max((r for r in self.resets if r <= t), default=None)
        p, g, d = (0, 0, 0) if reset is not None else self.base
        for ts, good in self.units:
            if ts <= t and (reset is None or ts > reset):
                p, g, d = p + 1, g + good, d + (not good)
        return p, g, d

    def samples(self) -> list[Sample]:
        out: list[Sample] = []
        n = round((self.end - self.start) / self.period_s)
        marked = False
        for k in range(n):
            t = self.start + k * self.period_s
            if self.down(t):
                if not marked:  # the gateway marks every series BAD once when the link drops
                    out += [self._s(p, None, t, Quality.BAD, "link_down") for p in (self.state_path, *COUNTERS)]
                    marked = True
                continue
            marked = False
            out.append(self._s(self.state_path, self.enum[self.state_at(t)], t))
            out += [self._s(p, v, t) for p, v in zip(COUNTERS, self.counters_at(t))]
            if self.design_speed is not None:
                out.append(self._s("counters.design_speed", self.design_speed, t))
        return out

    def _s(self, path: str, value, t: float, q: Quality = Quality.GOOD, reason: str = "") -> Sample:
        return Sample(self.equipment, path, value, "", t, t + 0.01, q, reason)

    async def write(self, store) -> None:
        samples = self.samples()
        for i in range(0, len(samples), 5000):
            await store.write_samples_async(samples[i:i + 5000])
        for a, b in self.link_down:
            await store.record_link(self.equipment, a, False, "connection refused")
            await store.record_link(self.equipment, b, True, "")
        await store.flush()


async def alarm(store, equipment: str, code: int, raised: float, cleared: float | None, stop_reason: bool) -> None:
    occ = f"{equipment}-{code}-{raised}"
    await store.record_alarm(equipment, occ, code, f"alarm {code}", 900, "raised", raised, stop_reason, None)
    if cleared is not None:
        await store.record_alarm(equipment, occ, code, f"alarm {code}", 900, "cleared", cleared, stop_reason, None)
