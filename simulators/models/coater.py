"""Slot-die electrode coater: web, coating head, dryer, inline gauge, rolls.

The web speed ramps to its set point on Start and down on Stop. The pump is
pre-metered and follows the web, so the dry areal weight is
pump_flow * slurry density * solids / (line_speed * coating width), with a
fixed offset and a little noise per lane. Dryer zones follow their set points
with a first-order lag. A roll finishes at the recipe's roll_length: it is
reported (UnitProcessed, made from its foil roll and slurry batches), put into
the material flow for the winders, and the next roll starts. By default the
coater alternates cathode and anode rolls so that one coater feeds a line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simulators.material import electrode_roll

from .base import ProcessModel, lag, ramp

AMBIENT_C = 25.0
AUXILIARY_KW = 8.0  # what the meter sees beyond the process: controls, HVAC share, pumps


@dataclass(frozen=True)
class Electrode:
    roll_prefix: str  # electrode roll ID prefix
    foil_prefix: str
    slurry_prefix: str
    slurry_density: float  # g/mL
    solids: float  # mass fraction of solids in the slurry
    coating_density: float  # g/cm3 of the dry coating
    die_gap: float  # um
    viscosity: float  # mPa.s at 25 degC
    nmp: bool  # solvent-based (cathode) or water-based (anode)
    recipe: str  # default recipe id


ELECTRODES: dict[str, Electrode] = {
    "cathode": Electrode("EC", "AL", "SC", 2.0, 0.70, 3.3, 180.0, 6000.0, True, "CATHODE-NMC"),
    "anode": Electrode("EA", "CU", "SA", 1.35, 0.50, 1.6, 220.0, 3000.0, False, "ANODE-GR"),
}


def flow_for(target_mg_cm2: float, speed_m_min: float, width_mm: float, e: Electrode) -> float:
    """Pump flow (mL/min) that gives the target dry areal weight."""
    grams_per_m2 = target_mg_cm2 * 10.0
    return grams_per_m2 * speed_m_min * width_mm / 1000.0 / (e.slurry_density * e.solids)


class CoaterModel(ProcessModel):
    period_s = 0.25
    DEFAULT_COUNTS = {"dryer_zone": 6, "lane": 4}
    OPTIONS = {
        "electrode": "alternate",  # "alternate", "cathode" or "anode"
        "coating_width_mm": 600.0,
        "roll_length_m": 800.0,  # of the default recipes
        "foil_roll_diameter_mm": 700.0,
        "slurry_batch_ml": 300_000.0,
        "ramp_m_min_per_s": 2.0,
    }
    MEASUREMENTS = ("length", "areal_weight_mean", "areal_weight_cv")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        m = self.machine
        if set(self.MEASUREMENTS) != set(m.spec.get_class(m.cls).unit_processed):
            raise ValueError("coater measurements differ from the spec's unit_processed")
        mode = self.options["electrode"]
        if mode not in ("alternate", *ELECTRODES):
            raise ValueError(f"electrode must be alternate, cathode or anode, got {mode!r}")
        self.zones = m.counts["dryer_zone"]
        self.lanes = m.counts["lane"]
        self.width = float(self.options["coating_width_mm"])
        self.kind = "anode" if mode == "anode" else "cathode"
        self.speed = 0.0
        self.pump = 0.0
        self.zone_temp = [AMBIENT_C] * self.zones
        self.lane_offset = [self.rng.gauss(0.0, 0.006) + (0.005 if i in (0, self.lanes - 1) else 0.0)
                            for i in range(self.lanes)]
        self.lane_noise = [0.0] * self.lanes
        self.edge = 0.0
        self.nmp = 0.0
        self.slurry_temp = 24.0
        self.clock = 0.0
        self.energy = 0.0
        self.power = AUXILIARY_KW
        self.coated_total = 0.0
        self.roll_number = 0
        self.foil_number = 0
        self.batch_number = 0
        self.batches: dict[str, tuple[str, float]] = {}  # kind -> (batch id, mL left)
        self.recipe: dict[str, Any] = {}
        self.zone_sp_paths = m.array_paths("dryer_zone", "air_temperature_setpoint")
        self.zone_temp_paths = m.array_paths("dryer_zone", "air_temperature")
        self.zone_air_paths = m.array_paths("dryer_zone", "air_velocity")
        self.lane_aw_paths = m.array_paths("lane", "areal_weight")
        self.lane_thick_paths = m.array_paths("lane", "dry_thickness")
        self._fault_ids: set[str] = set()
        m.set_design_speed(0.0)
        m.set("coating_head.coating_width", self.width)
        self._start_roll(first=True)

    def paths(self) -> list[str]:
        return ["web.line_speed", "web.line_speed_setpoint", "web.edge_position", "web.coated_length_total",
                "unwinder.tension", "unwinder.roll_diameter", "unwinder.roll_id",
                "rewinder.tension", "rewinder.roll_diameter", "rewinder.roll_id", "rewinder.roll_length",
                "coating_head.die_gap", "coating_head.pump_flow", "coating_head.pump_flow_setpoint",
                "coating_head.slurry_temperature", "coating_head.slurry_viscosity", "coating_head.coating_width",
                "coating_head.slurry_batch_id", "dryer_zone[1].air_temperature",
                "dryer_zone[1].air_temperature_setpoint", "dryer_zone[1].air_velocity", "lane[1].areal_weight",
                "lane[1].dry_thickness", "quality.areal_weight_target", "quality.areal_weight_cv",
                "solvent.nmp_concentration", "solvent.recovery_rate", "energy.power", "energy.energy_total"]

    # --- recipes -------------------------------------------------------------------------
    def default_recipes(self) -> dict[str, dict[str, Any]]:
        out = {}
        order = [self.kind] + [k for k in ELECTRODES if k != self.kind]
        for kind, (speed, target, dryer) in ((k, {"cathode": (30.0, 20.0, 130.0), "anode": (35.0, 10.0, 110.0)}[k]) for k in order):
            e = ELECTRODES[kind]
            out[e.recipe] = {"line_speed": speed, "pump_flow": round(flow_for(target, speed, self.width, e), 1),
                             "dryer_temperature": dryer, "areal_weight_target": target,
                             "roll_length": float(self.options["roll_length_m"])}
        return out

    def apply_recipe(self, parameters: dict[str, Any]) -> None:
        m = self.machine
        self.recipe = parameters
        m.set("web.line_speed_setpoint", float(parameters["line_speed"]))
        m.set("coating_head.pump_flow_setpoint", float(parameters["pump_flow"]))
        m.set("quality.areal_weight_target", float(parameters["areal_weight_target"]))
        top = float(parameters["dryer_temperature"])
        for i, path in enumerate(self.zone_sp_paths, start=1):
            # Gentle at the inlet, full heat from the middle of the dryer on.
            m.set(path, round(top - 15.0 + 15.0 * min(1.0, 2.0 * i / self.zones), 1))
        speed = float(parameters["line_speed"])
        m.set_design_speed(round(speed / float(parameters["roll_length"]), 5))

    def on_fault(self, code: int, active: bool) -> None:
        alarm = self.machine.alarm_by_code[code]
        (self._fault_ids.add if active else self._fault_ids.discard)(alarm.id)

    # --- rolls and material ------------------------------------------------------------------
    def _start_roll(self, first: bool = False) -> None:
        m = self.machine
        if not first and self.options["electrode"] == "alternate":
            self.kind = "anode" if self.kind == "cathode" else "cathode"
        e = ELECTRODES[self.kind]
        if not first and e.recipe in m.recipes and (m.active_recipe is None or m.active_recipe.id != e.recipe):
            m.activate_recipe(e.recipe)
        self.roll_number += 1
        self.roll_id = f"{e.roll_prefix}-{self.seed}-{self.roll_number:04d}"
        self.foil_number += 1
        self.foil_id = f"{e.foil_prefix}-{self.seed}-{self.foil_number:04d}"
        self.roll_len = 0.0
        self.roll_sum = self.roll_sq = self.roll_n = 0.0
        self.roll_batches: list[str] = []
        m.set("rewinder.roll_id", self.roll_id)
        m.set("unwinder.roll_id", self.foil_id)
        m.set("coating_head.die_gap", e.die_gap)
        m.material_consumed("foil_roll", self.foil_id)
        self._batch(e)

    def _batch(self, e: Electrode, used_ml: float = 0.0) -> str:
        m = self.machine
        batch = self.batches.get(self.kind)
        if batch is not None and batch[1] > used_ml:
            self.batches[self.kind] = (batch[0], batch[1] - used_ml)
        else:
            self.batch_number += 1
            batch = (f"{e.slurry_prefix}-{self.seed}-{self.batch_number:03d}", float(self.options["slurry_batch_ml"]))
            self.batches[self.kind] = batch
            m.material_consumed("slurry_batch", batch[0])
        batch_id = self.batches[self.kind][0]
        if batch_id not in self.roll_batches:
            self.roll_batches.append(batch_id)
        m.set("coating_head.slurry_batch_id", batch_id)
        return batch_id

    def _finish_roll(self) -> None:
        m = self.machine
        target = float(self.recipe.get("areal_weight_target", 0.0)) or 1.0
        mean = self.roll_sum / self.roll_n if self.roll_n else 0.0
        var = max(self.roll_sq / self.roll_n - mean * mean, 0.0) if self.roll_n else 0.0
        cv = 100.0 * math.sqrt(var) / mean if mean else 0.0
        good = abs(mean - target) / target <= 0.03 and cv <= 2.0
        values = (self.roll_len, mean, cv)
        reason = None if good else "areal weight out of tolerance"
        m.unit_processed(self.roll_id, good, [self.foil_id, *self.roll_batches],
                         dict(zip(self.MEASUREMENTS, values)), reason)
        if good:
            self.flow.put(electrode_roll(self.kind), self.roll_id)
        self._start_roll()

    # --- physics ------------------------------------------------------------------------------------
    def power_kw(self) -> float:
        return self.power

    def physics(self, dt: float) -> None:
        m, rng = self.machine, self.rng
        e = ELECTRODES[self.kind]
        self.clock += dt
        state = m.state()
        producing = m.producing
        heaters = state not in ("Stopped", "Aborted", "Aborting", "Clearing")
        setpoint = float(m.get("web.line_speed_setpoint"))
        self.speed = ramp(self.speed, setpoint if producing else 0.0, dt, float(self.options["ramp_m_min_per_s"]))
        # Pre-metered pump synchronised with the web, so the loading holds during ramps.
        flow_sp = float(m.get("coating_head.pump_flow_setpoint"))
        bias = 1.06 if "areal_weight_out_of_tolerance" in self._fault_ids else 1.0
        flow_target = flow_sp * bias * (self.speed / setpoint if setpoint > 0 else 0.0)
        self.pump = lag(self.pump, flow_target, dt, 2.0)
        length = self.speed * dt / 60.0
        self.coated_total += length

        # Areal weight per lane.
        weights: list[float] = []
        if self.speed > 0.5:
            base = self.pump * e.slurry_density * e.solids / (self.speed * self.width / 1000.0) / 10.0
            keep = math.exp(-dt / 5.0)
            shock = math.sqrt(max(1.0 - keep * keep, 0.0)) * 0.004
            for i in range(self.lanes):
                self.lane_noise[i] = self.lane_noise[i] * keep + rng.gauss(0.0, shock)
                weights.append(max(base * (1.0 + self.lane_offset[i] + self.lane_noise[i]), 0.0))
        else:
            weights = [0.0] * self.lanes
        m.set_many(self.lane_aw_paths, [round(w, 4) for w in weights])
        m.set_many(self.lane_thick_paths, [round(10.0 * w / e.coating_density, 3) for w in weights])
        if weights and weights[0] > 0:
            mean = sum(weights) / len(weights)
            sd = math.sqrt(sum((w - mean) ** 2 for w in weights) / len(weights))
            m.set("quality.areal_weight_cv", round(100.0 * sd / mean, 4))
            if length > 0:
                for w in weights:
                    self.roll_sum += w * length
                    self.roll_sq += w * w * length
                    self.roll_n += length
        else:
            m.set("quality.areal_weight_cv", 0.0)

        # Dryer.
        for i in range(self.zones):
            sp = float(m.get(self.zone_sp_paths[i])) if heaters else AMBIENT_C
            self.zone_temp[i] = lag(self.zone_temp[i], sp, dt, 180.0)
        m.set_many(self.zone_temp_paths, [round(t + rng.gauss(0.0, 0.2), 2) for t in self.zone_temp])
        m.set_many(self.zone_air_paths, [round(12.0 + rng.gauss(0.0, 0.15), 2) if heaters else 0.0
                                         for _ in range(self.zones)])

        # Web and rolls.
        self.edge = self.edge * 0.9 + rng.gauss(0.0, 0.08) if producing else self.edge * 0.5
        m.set("web.line_speed", round(self.speed, 3))
        m.set("web.edge_position", round(max(-10.0, min(10.0, self.edge)), 3))
        m.set("web.coated_length_total", round(self.coated_total, 2))
        running = self.speed > 0.5
        m.set("unwinder.tension", round((120.0 if running else 40.0) + rng.gauss(0.0, 1.5 if running else 0.3), 2))
        m.set("rewinder.tension", round((180.0 if running else 60.0) + rng.gauss(0.0, 2.0 if running else 0.3), 2))
        m.set("coating_head.pump_flow", round(self.pump, 2))

        roll_length = float(self.recipe.get("roll_length", self.options["roll_length_m"]))
        self.roll_len += length
        if length > 0:
            self._batch(e, self.pump * dt / 60.0)
        full, core = float(self.options["foil_roll_diameter_mm"]), 152.0
        left = max(1.0 - self.roll_len / roll_length, 0.0)
        m.set("unwinder.roll_diameter", round(math.sqrt(core * core + (full * full - core * core) * left), 1))
        m.set("rewinder.roll_diameter", round(math.sqrt(core * core + (full * full - core * core) * (1.0 - left)), 1))
        m.set("rewinder.roll_length", round(self.roll_len, 2))

        # Slurry.
        self.slurry_temp = lag(self.slurry_temp, 25.0 + 0.8 * math.sin(self.clock / 3600.0), dt, 600.0)
        m.set("coating_head.slurry_temperature", round(self.slurry_temp + rng.gauss(0.0, 0.05), 2))
        m.set("coating_head.slurry_viscosity", round(e.viscosity * (1.0 - 0.05 * (self.slurry_temp - 25.0)), 1))

        # Solvent and energy.
        evaporating = 200.0 + 0.15 * self.pump if (e.nmp and running) else 15.0
        if "solvent_high" in self._fault_ids:
            evaporating *= 3.0
        self.nmp = lag(self.nmp, evaporating, dt, 60.0)
        m.set("solvent.nmp_concentration", round(self.nmp, 1))
        m.set("solvent.recovery_rate", round(95.0 + rng.gauss(0.0, 0.3), 2) if running else 0.0)
        heat = sum(max(t - AMBIENT_C, 0.0) for t in self.zone_temp) * 0.4
        power = 15.0 + 0.3 * self.speed + heat
        self.power = power + AUXILIARY_KW  # the meter sees the drives and dryers, plus the plant's auxiliaries
        self.energy += power * dt / 3600.0
        m.set("energy.power", round(power, 2))
        m.set("energy.energy_total", round(self.energy, 3))

        if self.roll_len >= roll_length:
            self._finish_roll()
