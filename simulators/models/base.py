"""What every process model shares: its interface, options and the fault schedule.

A model is the physics of one equipment class. It reads the machine's state
and set points, writes process values into the machine by spec path, and
reports units made and material used. It is deterministic for a seed: all
randomness comes from `random.Random` instances seeded from it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, ClassVar

from simulators.machine import Machine
from simulators.material import MaterialFlow


class ProcessModel:
    """Base of the class models. Subclasses set OPTIONS and implement `physics`."""

    # Wall-clock seconds between physics steps (the values' refresh period).
    period_s: ClassVar[float] = 0.25
    # Array sizes when the configuration gives none (sub-unit -> count); the spec's maximum otherwise.
    DEFAULT_COUNTS: ClassVar[dict[str, int]] = {}
    # Option name -> default; SimConfig.options may override any of them.
    OPTIONS: ClassVar[dict[str, Any]] = {}
    # Options every model takes.
    COMMON_OPTIONS: ClassVar[dict[str, Any]] = {
        "alarm_interval_s": 1800.0,  # mean simulated seconds between occasional faults (0: none)
        "alarm_duration_s": (60.0, 300.0),  # how long such a fault stays active, simulated seconds
    }

    def __init__(self, machine: Machine, seed: int, flow: MaterialFlow | None = None,
                 options: dict[str, Any] | None = None):
        self.machine = machine
        self.seed = seed
        self.flow = flow if flow is not None else MaterialFlow()
        defaults = {**self.COMMON_OPTIONS, **self.OPTIONS}
        unknown = set(options or {}) - set(defaults)
        if unknown:
            raise ValueError(f"{machine.cls} model has no option {sorted(unknown)} (options: {', '.join(sorted(defaults))})")
        self.options = {**defaults, **(options or {})}
        self.rng = random.Random(seed)
        for path in self.paths():
            machine.spec.variable(machine.cls, path)  # a renamed spec variable fails here, not mid-run
        self.faults = AlarmSchedule(machine, random.Random(seed * 7919 + 1), float(self.options["alarm_interval_s"]),
                                    tuple(self.options["alarm_duration_s"]), self.on_fault)
        machine.recipe_hook = self.apply_recipe

    # --- what subclasses provide ------------------------------------------------------
    def paths(self) -> list[str]:
        """Spec paths (templates with [1] for arrays) this model writes; checked against the spec."""
        return []

    def default_recipes(self) -> dict[str, dict[str, Any]]:
        """Recipes a fresh machine holds, by id; the first is activated at start."""
        return {}

    def apply_recipe(self, parameters: dict[str, Any]) -> None:
        """The machine activated a recipe: take over its set points."""

    def physics(self, dt: float) -> None:
        raise NotImplementedError

    def on_fault(self, code: int, active: bool) -> None:
        """An occasional fault was raised or cleared; models may show its effect."""

    # --- driven by the simulator --------------------------------------------------------
    def load_recipes(self) -> None:
        """Store the default recipes and activate the first."""
        first = None
        for rid, params in self.default_recipes().items():
            code, reason = self.machine.put_recipe(rid, params)
            if code != self.machine.spec.result_codes["ok"]:
                raise ValueError(f"default recipe {rid} of {self.machine.cls} is invalid: {reason}")
            first = first or rid
        if first is not None:
            self.machine.activate_recipe(first)

    def power_kw(self) -> float:
        """Electrical power the machine draws now, auxiliaries included: what its meter reads. Models give theirs."""
        return 0.0

    def step(self, dt: float) -> None:
        """Advance the process by `dt` simulated seconds."""
        if dt <= 0:
            return
        self.faults.step(dt)
        self.physics(dt)
        self._meter(dt)

    def _meter(self, dt: float) -> None:
        """The core's electricity meter (spec 1.1): power now, energy integrated over simulated time."""
        if "meter.active_power" not in self.machine.values:
            return
        power = max(self.power_kw(), 0.0)
        self.meter_energy = getattr(self, "meter_energy", 0.0) + power * dt / 3600.0
        self.machine.set("meter.active_power", round(power, 2))
        self.machine.set("meter.active_energy", round(self.meter_energy, 6))


class AlarmSchedule:
    """Occasional faults that raise an alarm and clear by themselves, deterministic per seed.

    Only alarms that are not stop reasons are used, so the line keeps running;
    stop-reason alarms are raised by tests and operators through the machine.
    """

    def __init__(self, machine: Machine, rng: random.Random, mean_interval_s: float,
                 duration_s: tuple[float, float], on_change: Callable[[int, bool], None] | None = None):
        self.machine = machine
        self.rng = rng
        self.mean_interval_s = mean_interval_s
        self.duration_s = duration_s
        self.on_change = on_change
        self.codes = [a.code for a in machine.alarm_catalogue if not a.stop_reason]
        self._until_next = self._draw_interval()
        self._active: dict[int, float] = {}  # code -> simulated seconds left

    def _draw_interval(self) -> float:
        if self.mean_interval_s <= 0:
            return float("inf")
        return self.rng.expovariate(1.0 / self.mean_interval_s)

    def step(self, dt: float) -> None:
        for code in list(self._active):
            self._active[code] -= dt
            if self._active[code] <= 0:
                del self._active[code]
                self.machine.clear_alarm(code)
                if self.on_change is not None:
                    self.on_change(code, False)
        if not self.codes:
            return
        self._until_next -= dt
        while self._until_next <= 0:
            self._until_next += self._draw_interval()
            code = self.rng.choice(self.codes)
            if code in self._active:
                continue
            self._active[code] = self.rng.uniform(*self.duration_s)
            self.machine.raise_alarm(code)
            if self.on_change is not None:
                self.on_change(code, True)


def lag(value: float, target: float, dt: float, tau: float) -> float:
    """First-order lag, exact for any step length."""
    return target + (value - target) * math.exp(-dt / tau)


def ramp(value: float, target: float, dt: float, rate: float) -> float:
    """Move towards `target` at `rate` units per second at most."""
    step = rate * dt
    if value < target:
        return min(value + step, target)
    return max(value - step, target)
