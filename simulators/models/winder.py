"""Jelly-roll winder: one cycle per jelly roll.

A cycle winds `turns` turns at the recipe's winding speed, then indexes
(cut, tape, unload, hi-pot test). Tensions scatter around the set point, the
edge-position controllers wander a little, overhangs and the diameter come
from distributions, and a few rolls fail alignment, hi-pot or tension and are
rejected with a reason. Input IDs come from the shared material flow (newest
cathode and anode roll), or placeholders when the line has no coater.
"""

from __future__ import annotations

import math
from typing import Any

from simulators.material import JELLY_ROLL, electrode_roll

from .base import ProcessModel

MANDREL_MM = 4.0
INDEX_S = 2.0  # cut, tape, unload and hi-pot per jelly roll
NOMINAL_DIAMETER_MM = 20.9
SEPARATOR_LOT_ROLLS = 2500  # jelly rolls per separator lot


class WinderModel(ProcessModel):
    period_s = 0.25
    OPTIONS = {
        "hipot_fail_rate": 0.004,
        "overhang_sd_mm": 0.2,
    }
    MEASUREMENTS = ("overhang_anode_cathode", "overhang_separator_anode", "diameter", "hipot_resistance")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        m = self.machine
        if set(self.MEASUREMENTS) != set(m.spec.get_class(m.cls).unit_processed):
            raise ValueError("winder measurements differ from the spec's unit_processed")
        self.tag = m.equipment_id[:14]
        self.jr_number = 0
        self.lot_number = 0
        self.phase = "index"
        self.phase_t = 0.0
        self.phase_len = INDEX_S
        self.speed = 0.0
        self.clock = 0.0
        self.epc = [0.0, 0.0, 0.0]
        self.hipot_streak = 0
        self.streak_clear_in: float | None = None
        self.recipe: dict[str, Any] = {}
        self.input_ids: dict[str, str] = {}
        self._fault_ids: set[str] = set()
        self._streak_code = next(a.code for a in m.alarm_catalogue if a.id == "hipot_fail_streak")
        self._new_separator_lot()

    def paths(self) -> list[str]:
        return ["winding.speed", "winding.speed_setpoint", "winding.mandrel_speed", "winding.cycle_time",
                "tension.cathode", "tension.anode", "tension.separator_upper", "tension.separator_lower",
                "tension.setpoint", "edge_control.cathode_deviation", "edge_control.anode_deviation",
                "edge_control.separator_deviation", "jelly_roll.roll_id", "jelly_roll.overhang_anode_cathode",
                "jelly_roll.overhang_separator_anode", "jelly_roll.diameter", "jelly_roll.hipot_result",
                "jelly_roll.hipot_resistance", "jelly_roll.result", "jelly_roll.reject_reason",
                "rejects.other", "material.cathode_roll_id", "material.anode_roll_id",
                "material.separator_lot_id", "environment.dew_point"]

    # --- recipes ------------------------------------------------------------------------------
    def default_recipes(self) -> dict[str, dict[str, Any]]:
        return {"JR-21700": {"winding_speed": 1500.0, "tension_setpoint": 15.0, "turns": 30},
                "JR-18650": {"winding_speed": 1200.0, "tension_setpoint": 12.0, "turns": 24}}

    def apply_recipe(self, parameters: dict[str, Any]) -> None:
        m = self.machine
        self.recipe = parameters
        m.set("winding.speed_setpoint", float(parameters["winding_speed"]))
        m.set("tension.setpoint", float(parameters["tension_setpoint"]))
        m.set_design_speed(round(60.0 / self._cycle_time(float(parameters["winding_speed"])), 3))

    def _electrode_length(self) -> float:
        turns = int(self.recipe.get("turns", 30))
        return turns * math.pi * (MANDREL_MM + NOMINAL_DIAMETER_MM) / 2.0

    def _cycle_time(self, speed: float) -> float:
        return self._electrode_length() / max(speed, 1.0) + INDEX_S

    def on_fault(self, code: int, active: bool) -> None:
        alarm = self.machine.alarm_by_code[code]
        (self._fault_ids.add if active else self._fault_ids.discard)(alarm.id)

    # --- material -------------------------------------------------------------------------------
    def _new_separator_lot(self) -> None:
        self.lot_number += 1
        lot = f"SEP-{self.seed}-{self.lot_number:04d}"
        self.input_ids["separator_lot_id"] = lot
        self.machine.set("material.separator_lot_id", lot)
        self.machine.material_consumed("separator_lot", lot)

    def _load_inputs(self) -> None:
        m = self.machine
        for kind, prefix in (("cathode", "EC"), ("anode", "EA")):
            roll = self.flow.newest(electrode_roll(kind)) or f"{prefix}-{self.tag[:12]}-X0001"
            key = f"{kind}_roll_id"
            if self.input_ids.get(key) != roll:
                self.input_ids[key] = roll
                m.set(f"material.{key}", roll)
                m.material_consumed("electrode_roll", roll)
        if self.jr_number and self.jr_number % SEPARATOR_LOT_ROLLS == 0:
            self._new_separator_lot()

    # --- one jelly roll ---------------------------------------------------------------------------
    def _finish_jelly_roll(self) -> None:
        m, rng = self.machine, self.rng
        sd = float(self.options["overhang_sd_mm"])
        overhang_ac = rng.gauss(1.5, sd)
        overhang_sa = rng.gauss(2.0, sd)
        diameter = rng.gauss(NOMINAL_DIAMETER_MM, 0.04)
        hipot_fail = rng.random() < float(self.options["hipot_fail_rate"])
        resistance = rng.uniform(0.5, 5.0) if hipot_fail else math.exp(rng.gauss(math.log(800.0), 0.5))
        reason = "none"
        if hipot_fail:
            reason = "hipot"
        elif not 0.9 <= overhang_ac <= 2.1 or not 1.2 <= overhang_sa <= 2.8:
            reason = "alignment"
        elif "epc_limit" in self._fault_ids and rng.random() < 0.2:
            reason = "alignment"
        elif "tension_out_of_range" in self._fault_ids and rng.random() < 0.3:
            reason = "tension"
        elif abs(diameter - NOMINAL_DIAMETER_MM) > 0.15:
            reason = "diameter"
        good = reason == "none"
        self.jr_number += 1
        jr_id = f"JR-{self.tag}-{self.jr_number:06d}"
        hipot = m.spec.enum("hipot_result")
        m.set("jelly_roll.roll_id", jr_id)
        m.set("jelly_roll.overhang_anode_cathode", round(overhang_ac, 3))
        m.set("jelly_roll.overhang_separator_anode", round(overhang_sa, 3))
        m.set("jelly_roll.diameter", round(diameter, 3))
        m.set("jelly_roll.hipot_result", hipot["fail" if hipot_fail else "pass"])
        m.set("jelly_roll.hipot_resistance", round(resistance, 2))
        m.set("jelly_roll.result", m.spec.enum("unit_result")["good" if good else "reject"])
        m.set("jelly_roll.reject_reason", m.spec.enum("reject_reason")[reason])
        if not good:
            counter = f"rejects.{reason}" if f"rejects.{reason}" in m.values else "rejects.other"
            m.set(counter, m.get(counter) + 1)
        made_from = [self.input_ids["cathode_roll_id"], self.input_ids["anode_roll_id"], self.input_ids["separator_lot_id"]]
        values = (overhang_ac, overhang_sa, diameter, resistance)
        m.unit_processed(jr_id, good, made_from, dict(zip(self.MEASUREMENTS, values)),
                         None if good else reason)
        if good:
            self.flow.put(JELLY_ROLL, jr_id)
        self.hipot_streak = self.hipot_streak + 1 if hipot_fail else 0
        if self.hipot_streak >= 3:
            self.hipot_streak = 0
            m.raise_alarm(self._streak_code)
            self.streak_clear_in = 60.0  # the operator clears the cause

    # --- physics ------------------------------------------------------------------------------------
    def power_kw(self) -> float:
        """Drives in proportion to the winding speed, the hi-pot and handling while indexing, a standby load."""
        winding = self.machine.producing and self.phase == "winding"
        return 2.0 + (6.0 + 0.02 * self.speed if winding else 1.5 if self.machine.producing else 0.0)

    def physics(self, dt: float) -> None:
        m, rng = self.machine, self.rng
        self.clock += dt
        if self.streak_clear_in is not None:
            self.streak_clear_in -= dt
            if self.streak_clear_in <= 0:
                self.streak_clear_in = None
                m.clear_alarm(self._streak_code)
        setpoint = float(m.get("winding.speed_setpoint"))
        remaining = dt
        while m.producing and remaining > 0:
            step = min(remaining, self.phase_len - self.phase_t)
            self.phase_t += step
            remaining -= step
            if self.phase_t < self.phase_len:
                break
            if self.phase == "winding":
                self.phase, self.phase_t, self.phase_len = "index", 0.0, INDEX_S
                self._finish_jelly_roll()
            else:
                self._load_inputs()
                self.phase, self.phase_t = "winding", 0.0
                self.phase_len = self._electrode_length() / max(setpoint, 1.0)
                m.set("winding.cycle_time", round(self.phase_len + INDEX_S, 3))
        winding = m.producing and self.phase == "winding"
        self.speed = setpoint if winding else 0.0
        progress = self.phase_t / self.phase_len if winding else 0.0
        diameter = MANDREL_MM + (NOMINAL_DIAMETER_MM - MANDREL_MM) * progress
        m.set("winding.speed", round(self.speed * (1.0 + rng.gauss(0.0, 0.002)) if winding else 0.0, 2))
        m.set("winding.mandrel_speed", round(self.speed / (math.pi * diameter) * 60.0, 1) if winding else 0.0)

        tension_sp = float(m.get("tension.setpoint"))
        spread = 0.06 if "tension_out_of_range" in self._fault_ids else 0.015
        hold = 1.0 if winding else 0.7
        for name, share in (("cathode", 1.0), ("anode", 1.0), ("separator_upper", 0.5), ("separator_lower", 0.5)):
            value = tension_sp * share * hold * (1.0 + rng.gauss(0.0, spread)) if m.state() != "Stopped" else 0.0
            m.set(f"tension.{name}", round(max(value, 0.0), 3))
        wander = 0.25 if "epc_limit" in self._fault_ids else 0.05
        for i, name in enumerate(("cathode_deviation", "anode_deviation", "separator_deviation")):
            self.epc[i] = max(-5.0, min(5.0, self.epc[i] * 0.8 + rng.gauss(0.0, wander))) if winding else self.epc[i] * 0.5
            m.set(f"edge_control.{name}", round(self.epc[i], 3))
        dew = -45.0 + 1.5 * math.sin(self.clock / 7200.0) + (12.0 if "dew_point_high" in self._fault_ids else 0.0)
        m.set("environment.dew_point", round(dew + rng.gauss(0.0, 0.1), 2))
