"""Formation and grading rack: one cell per channel, a step program, results per cell.

Each channel holds a cell model: an open-circuit voltage curve over state of
charge, an internal resistance, a capacity that scatters across cells, a
first-charge loss (SEI), a self-discharge rate (K) and a temperature rise
proportional to I^2 R. The recipe's program runs on every channel: CC charge
to the charge voltage, CV charge down to the cut-off current, rest, CC
discharge to the discharge voltage. When every channel has finished, each
cell is graded (A/B/C by OCV deviation from the tray median, NG beyond) and
reported, and the next tray starts with cells made from the jelly rolls the
winders finished.

State lives in numpy arrays, one entry per channel, and a step advances every
channel at once: a 512-channel rack costs well under a millisecond per
substep, so that racks served on the gateway's own box leave it the CPU (one
channel at a time in Python, eight racks at 600x took half a core). A rack
you connect to is mid-program: by default the first tray starts part-way
through its discharge step.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import numpy as np

from simulators.material import JELLY_ROLL

from .base import ProcessModel

# Open-circuit voltage (V) at state of charge 0.0, 0.1, ... 1.0; linear in between and beyond.
OCV_TABLE = (2.70, 3.40, 3.53, 3.61, 3.67, 3.73, 3.81, 3.90, 4.00, 4.10, 4.20)
NOMINAL_AH = 5.0
NOMINAL_OHM = 0.020
THERMAL_K_PER_W = 8.0
UNLOAD_S = 120.0  # simulated seconds to swap a tray
MAX_SUBSTEP_S = 30.0
AUXILIARY_KW = 1.5  # what the meter sees beyond the process: controls, HVAC share, pumps
# Program steps: index -> (channel status, step type), by spec enum member name.
STEPS = {0: ("idle", "none"), 1: ("cc_charge", "cc_charge"), 2: ("cv_charge", "cv_charge"), 3: ("rest", "rest"),
         4: ("cc_discharge", "cc_discharge"), 5: ("finished", "none")}
GRADES = ((5.0, "A"), (15.0, "B"), (50.0, "C"))  # |OCV - tray median| in mV, at most


def ocv(soc: float) -> float:
    i = min(max(int(soc * 10.0), 0), 9)
    lo = OCV_TABLE[i]
    return lo + (OCV_TABLE[i + 1] - lo) * (soc * 10.0 - i)


def ocv_slope(soc: float) -> float:
    i = min(max(int(soc * 10.0), 0), 9)
    return (OCV_TABLE[i + 1] - OCV_TABLE[i]) * 10.0


_OCV = np.array(OCV_TABLE)


def ocv_and_slope(soc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ocv` and `ocv_slope` of every channel at once (the segment by truncation, as int() takes it)."""
    x = soc * 10.0
    i = np.clip(x.astype(np.int64), 0, 9)
    lo, hi = _OCV[i], _OCV[i + 1]
    return lo + (hi - lo) * (x - i), (hi - lo) * 10.0


class FormationModel(ProcessModel):
    period_s = 1.0
    DEFAULT_COUNTS = {"channel": 64}
    OPTIONS = {
        "first_tray": "mid",  # "mid": start part-way through the program; "fresh": from empty cells
        "aging_days": 7.0,  # OCV used for grading is extrapolated over this aging time with K
        "defect_rate": 0.02,  # share of cells with a high self-discharge
    }
    MEASUREMENTS = ("charge_capacity", "discharge_capacity", "coulombic_efficiency", "ocv", "dcir", "k_value")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        m = self.machine
        if set(self.MEASUREMENTS) != set(m.spec.get_class(m.cls).unit_processed):
            raise ValueError("formation measurements differ from the spec's unit_processed")
        if self.options["first_tray"] not in ("mid", "fresh"):
            raise ValueError(f"first_tray must be mid or fresh, got {self.options['first_tray']!r}")
        self.n = n = m.counts["channel"]
        self.tag = m.equipment_id[:12]
        status, step_type = m.spec.enum("channel_status"), m.spec.enum("step_type")
        self.status_code = {k: status[s] for k, (s, _) in STEPS.items()}
        self.type_code = {k: step_type[t] for k, (_, t) in STEPS.items()}
        self.paused_code, self.fault_code = status["paused"], status["fault"]
        self.grade_code = m.spec.enum("cell_grade")
        self.p = {var: m.array_paths("channel", var) for var in (
            "cell_id", "status", "step_index", "step_type", "cycle_index", "voltage", "current", "capacity",
            "energy", "temperature", "result_charge_capacity", "result_discharge_capacity",
            "result_coulombic_efficiency", "result_ocv", "result_dcir", "result_k_value", "result_grade")}
        self.program = {"charge_current": 5.0, "charge_voltage": 4.2, "cutoff_current": 0.25, "rest_time": 600.0,
                        "discharge_current": 5.0, "discharge_voltage": 2.75}
        self.rack_temp = 25.0
        self.energy_total = 0.0
        self.power = AUXILIARY_KW
        self.tray_number = 0
        self.placeholder_number = 0
        self.unload_left = 0.0
        self.faulted: set[int] = set()
        self._contact_code = next(a.code for a in m.alarm_catalogue if a.id == "contact_fault")
        self.soc, self.cap, self.res, self.k, self.sei = (np.zeros(n) for _ in range(5))
        self.stage, self.t_step = np.zeros(n, dtype=np.int64), np.zeros(n)
        self.amps, self.volts, self.temp = np.zeros(n), np.zeros(n), np.full(n, 25.0)
        self.ah_chg, self.ah_dis, self.wh_chg, self.wh_dis = (np.zeros(n) for _ in range(4))
        self.ocv_rest, self.dcir = np.zeros(n), np.zeros(n)
        self.cells: list[str] = []
        self.sources: list[str] = []
        self._start_tray()
        if self.options["first_tray"] == "mid":
            self._fast_forward()

    def paths(self) -> list[str]:
        return ["rack.temperature", "rack.power", "rack.energy_total", "rack.tray_id", "channel[1].cell_id",
                "channel[1].status", "channel[1].step_index", "channel[1].step_type", "channel[1].cycle_index",
                "channel[1].voltage", "channel[1].current", "channel[1].capacity", "channel[1].energy",
                "channel[1].temperature", "channel[1].result_grade"]

    # --- recipes --------------------------------------------------------------------------------------
    def default_recipes(self) -> dict[str, dict[str, Any]]:
        return {"FORM-NMC-1C": dict(self.program),
                "FORM-NMC-C2": {**self.program, "charge_current": 2.5, "discharge_current": 2.5, "cutoff_current": 0.125}}

    def apply_recipe(self, parameters: dict[str, Any]) -> None:
        self.program = {k: float(v) for k, v in parameters.items()}
        hours = NOMINAL_AH / max(self.program["charge_current"], 0.01) * 1.3 + \
            NOMINAL_AH / max(self.program["discharge_current"], 0.01) + self.program["rest_time"] / 3600.0
        self.machine.set_design_speed(round(self.n / (hours * 60.0 + UNLOAD_S / 60.0), 4))

    def on_fault(self, code: int, active: bool) -> None:
        if code != self._contact_code:
            return
        if active:
            running = [i for i in range(self.n) if 1 <= self.stage[i] <= 4 and i not in self.faulted]
            if running:
                self.faulted.add(self.rng.choice(running))
        else:
            self.faulted.clear()

    # --- trays -----------------------------------------------------------------------------------------
    def _start_tray(self) -> None:
        m, rng, n = self.machine, self.rng, self.n
        self.tray_number += 1
        m.set("rack.tray_id", f"TR-{self.tag}-{self.tray_number:05d}")
        rolls = self.flow.take(JELLY_ROLL, n)
        while len(rolls) < n:
            self.placeholder_number += 1
            rolls.append(f"JR-{self.tag}-P{self.placeholder_number:05d}")
        self.sources = rolls
        self.cells = ["CL-" + r[3:] if r.startswith("JR-") else f"CL-{r}"[:24] for r in rolls]
        defect = float(self.options["defect_rate"])
        for i in range(n):
            self.soc[i] = rng.uniform(0.0, 0.01)
            self.cap[i] = NOMINAL_AH * (1.0 + rng.gauss(0.0, 0.015))
            self.res[i] = NOMINAL_OHM * (1.0 + rng.gauss(0.0, 0.05))
            self.sei[i] = min(max(rng.gauss(0.08, 0.01), 0.02), 0.2)
            self.k[i] = rng.uniform(3.0, 15.0) if rng.random() < defect else max(rng.gauss(0.3, 0.1), 0.0)
            self.stage[i], self.t_step[i] = 1, 0.0
            self.ah_chg[i] = self.ah_dis[i] = self.wh_chg[i] = self.wh_dis[i] = 0.0
            self.ocv_rest[i] = self.dcir[i] = 0.0
            self.amps[i] = 0.0
            self.volts[i] = ocv(self.soc[i])
            m.material_consumed(JELLY_ROLL, rolls[i])
        m.set_many(self.p["cell_id"], self.cells)
        m.set_many(self.p["cycle_index"], [1] * n)
        for var in ("result_charge_capacity", "result_discharge_capacity", "result_coulombic_efficiency",
                    "result_ocv", "result_dcir", "result_k_value"):
            m.set_many(self.p[var], [0.0] * n)
        m.set_many(self.p["result_grade"], [self.grade_code["none"]] * n)

    def _fast_forward(self) -> None:
        """Run the first tray up to part-way through its discharge step, without events."""
        for _ in range(10_000):
            if (self.stage >= 4).all():
                break
            self._channels(MAX_SUBSTEP_S, running=True)
        discharge_s = NOMINAL_AH / max(self.program["discharge_current"], 0.01) * 3600.0
        left = self.rng.uniform(0.6, 0.85) * discharge_s
        while left > 0:
            self._channels(min(MAX_SUBSTEP_S, left), running=True)
            left -= MAX_SUBSTEP_S

    def _finish_tray(self) -> None:
        m, rng, n = self.machine, self.rng, self.n
        aging = float(self.options["aging_days"])
        ocv_rest, k_cell, dcir = self.ocv_rest.tolist(), self.k.tolist(), self.dcir.tolist()
        ah_chg, ah_dis = self.ah_chg.tolist(), self.ah_dis.tolist()
        ocvs = [ocv_rest[i] - k_cell[i] * aging / 1000.0 + rng.gauss(0.0, 0.0003) for i in range(n)]
        median = statistics.median(ocvs)
        results: dict[str, list[Any]] = {k: [] for k in ("chg", "dis", "ce", "ocv", "dcir", "k", "grade")}
        for i in range(n):
            chg, dis = ah_chg[i], ah_dis[i]
            ce = 100.0 * dis / chg if chg > 0 else 0.0
            k_value = k_cell[i] + rng.gauss(0.0, 0.05)
            dev_mv = abs(ocvs[i] - median) * 1000.0
            grade = next((g for limit, g in GRADES if dev_mv <= limit), "NG")
            if ce < 80.0 or dis < 0.8 * NOMINAL_AH:
                grade = "NG"
            dcir_mohm = dcir[i] * 1000.0
            values = (chg, dis, ce, ocvs[i], dcir_mohm, k_value)
            for key, v in zip(("chg", "dis", "ce", "ocv", "dcir", "k"), values):
                results[key].append(round(v, 4))
            results["grade"].append(self.grade_code[grade])
            good = grade != "NG"
            m.unit_processed(self.cells[i], good, [self.sources[i]], dict(zip(self.MEASUREMENTS, values)),
                             None if good else f"grade NG (OCV deviation {dev_mv:.1f} mV, CE {ce:.1f} %)")
        for var, key in (("result_charge_capacity", "chg"), ("result_discharge_capacity", "dis"),
                         ("result_coulombic_efficiency", "ce"), ("result_ocv", "ocv"), ("result_dcir", "dcir"),
                         ("result_k_value", "k"), ("result_grade", "grade")):
            m.set_many(self.p[var], results[key])
        self.unload_left = UNLOAD_S

    # --- physics -------------------------------------------------------------------------------------------
    def _channels(self, dt: float, running: bool) -> None:
        """Advance every channel by dt (one substep); the hot path, column-wise.

        Each channel takes the branch of the step it is in at the start of the substep; a step it reaches
        takes effect at the next substep. The rest step's DCIR draws come in channel order, as the random
        stream of a seed has always given them.
        """
        prog = self.program
        i_chg, v_chg, i_cut = prog["charge_current"], prog["charge_voltage"], prog["cutoff_current"]
        t_rest, i_dis, v_dis = prog["rest_time"], prog["discharge_current"], prog["discharge_voltage"]
        soc, cap, res, sei, stage, t_step = self.soc, self.cap, self.res, self.sei, self.stage, self.t_step
        hours = dt / 3600.0
        step = stage.copy()  # the branch of each channel, taken before any of them moves on
        if not running:
            step[:] = 0
        elif self.faulted:
            step[list(self.faulted)] = 0
        current = np.zeros(self.n)
        volts = np.empty(self.n)
        # CC charge
        m = step == 1
        soc[m] += i_chg * hours * (1.0 - sei[m]) / cap[m]
        self.ah_chg[m] += i_chg * hours
        current[m] = i_chg
        v = ocv_and_slope(soc[m])[0] + i_chg * res[m]
        done = v >= v_chg
        v[done] = v_chg
        volts[m] = v
        self._move(np.flatnonzero(m)[done], 2)
        # CV charge: the gap to the charge voltage decays with tau = R C / slope
        m = step == 2
        ocv_now, slope = ocv_and_slope(soc[m])
        gap = v_chg - ocv_now
        amps = np.zeros(len(gap))
        up = gap > 0
        idx = np.flatnonzero(m)[up]
        g, sl, r, c, loss = gap[up], slope[up], res[idx], cap[idx], 1.0 - sei[idx]
        tau = r * c * 3600.0 / (sl * loss)
        new_gap = g * np.exp(-dt / tau)
        dsoc = (g - new_gap) / sl
        soc[idx] += dsoc
        self.ah_chg[idx] += dsoc * c / loss
        amps[up] = new_gap / r
        current[m] = amps
        volts[m] = v_chg
        self._move(np.flatnonzero(m)[amps <= i_cut], 3)
        # Rest: open circuit; at its end the OCV and the DCIR are taken
        m = step == 3
        volts[m] = ocv_and_slope(soc[m])[0]
        ending = np.flatnonzero(m & (t_step + dt >= t_rest))
        for i in ending.tolist():
            self.ocv_rest[i] = volts[i]
            self.dcir[i] = res[i] * (1.0 + self.rng.gauss(0.0, 0.02))
        self._move(ending, 4)
        # CC discharge
        m = step == 4
        soc[m] -= i_dis * hours / cap[m]
        self.ah_dis[m] += i_dis * hours
        current[m] = -i_dis
        v = ocv_and_slope(soc[m])[0] - i_dis * res[m]
        done = v <= v_dis
        v[done] = v_dis
        volts[m] = v
        self._move(np.flatnonzero(m)[done], 5)
        # Idle, finished, paused or faulted: open circuit
        m = (step == 0) | (step == 5)
        volts[m] = ocv_and_slope(soc[m])[0]
        power = volts * current * hours
        self.wh_chg += np.where(current > 0, power, 0.0)
        self.wh_dis -= np.where(current < 0, power, 0.0)
        t_step += dt
        self.amps, self.volts = current, volts
        target = self.rack_temp + current * current * res * THERMAL_K_PER_W
        self.temp = target + (self.temp - target) * math.exp(-dt / 300.0)

    def _move(self, channels: np.ndarray, to: int) -> None:
        """Channels on to program step `to`, its clock from zero (the substep's dt is added after)."""
        self.stage[channels] = to
        self.t_step[channels] = 0.0

    def power_kw(self) -> float:
        return self.power

    def physics(self, dt: float) -> None:
        m = self.machine
        running = m.producing
        if self.unload_left > 0:
            if running:
                self.unload_left -= dt
                if self.unload_left <= 0:
                    self._start_tray()
            running = False
        substeps = max(1, math.ceil(dt / MAX_SUBSTEP_S))
        for _ in range(substeps):
            self._channels(dt / substeps, running)
        self._publish(running)
        if self.unload_left <= 0 and (self.stage == 5).all():
            self._finish_tray()
        # Rack: heat from the channels, power drawn (charging) or returned (discharging).
        heat = float(np.dot(self.amps * self.amps, self.res))
        self.rack_temp += (25.0 + heat * 0.05 - self.rack_temp) * (1.0 - math.exp(-dt / 900.0))
        power_kw = float(np.dot(self.volts, self.amps)) / 1000.0
        # The meter: the rack's converters draw what the cells take (discharge energy is not returned to the grid
        # here) at 90 % efficiency, plus the rack's auxiliaries (fans, control).
        self.power = abs(power_kw) / 0.9 + AUXILIARY_KW
        self.energy_total += abs(power_kw) * dt / 3600.0
        m.set("rack.temperature", round(self.rack_temp, 2))
        m.set("rack.power", round(power_kw, 4))
        m.set("rack.energy_total", round(self.energy_total, 4))

    def _publish(self, running: bool) -> None:
        m, n, p = self.machine, self.n, self.p
        step = self.stage.tolist()
        in_tray = self.unload_left <= 0
        # np.round: within an ulp of round()'s decimal rounding, at a tenth of its cost per value.
        m.set_many(p["voltage"], np.round(self.volts, 4).tolist())
        m.set_many(p["current"], np.round(self.amps, 4).tolist())
        charging = self.stage <= 3
        m.set_many(p["capacity"], np.round(np.where(charging, self.ah_chg, self.ah_dis), 4).tolist())
        m.set_many(p["energy"], np.round(np.where(charging, self.wh_chg, self.wh_dis), 4).tolist())
        m.set_many(p["temperature"], np.round(self.temp, 2).tolist())
        status = []
        for i in range(n):
            s = step[i] if in_tray else 0
            if i in self.faulted and 1 <= s <= 4:
                status.append(self.fault_code)
            elif not running and 1 <= s <= 4:
                status.append(self.paused_code)
            else:
                status.append(self.status_code[s])
        m.set_many(p["status"], status)
        m.set_many(p["step_index"], [s if in_tray and s <= 4 else 0 for s in step])
        m.set_many(p["step_type"], [self.type_code[s if in_tray else 0] for s in step])
