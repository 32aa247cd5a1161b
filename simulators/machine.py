"""The spec-level machine: one piece of equipment as the line interface spec sees it.

Class-independent and driven by the spec: it holds every served variable by
spec path, runs the PackML state machine from the spec's transition table,
derives the Machinery item state and the E10 time state, executes the spec's
commands with the spec's result codes, keeps alarms, recipes, the job and the
counters, and records events in a ring buffer. Process physics (models/)
writes values into it; protocol bindings (servers/) read from it.

Behaviour the spec leaves open, decided here:

* The power-on state is Stopped; acting states (Starting, Stopping, ...)
  complete after `acting_s` simulated seconds.
* A stop-reason alarm of category "safety" aborts the machine (Aborting ->
  Aborted) from any state; any other stop-reason alarm holds it (Holding ->
  Held) when Hold is allowed, and aborts it while it is starting up again.
  The E10 state is then UDT instead of SDT until the machine leaves
  Held/Aborted. Clearing the alarm does not restart the machine.
* A job starts when Start reaches Execute and ends at Stopped (JobCompleted)
  or Aborted (JobAborted).
* Heartbeat counts wall-clock periods: it shows the link is alive, whatever
  the time scale.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from interface_spec import Spec
from interface_spec.model import Alarm, SelfDescription, Tier, Variable
from interface_spec.recipes import recipe_hash

STATE = "state"
PACKML, ITEM, E10, MODE, AUTHORITY, UNIT_MODE = (
    "packml_state", "item_state", "e10_state", "operation_mode", "control_authority", "unit_mode")
HEALTH = "health.device_health"
HEARTBEAT = "status.heartbeat"
COUNTS = ("counters.processed_count", "counters.good_count", "counters.defective_count")
SPEED, DESIGN_SPEED = "counters.current_speed", "counters.design_speed"
RECIPE_VARS = ("recipe.active_recipe_id", "recipe.active_recipe_version", "recipe.active_recipe_hash")
JOB_ID = "job.job_id"
LOCAL_PANEL = "local"
PROFILE_OF_COMMAND = {"SelectRecipe": "Recipe"}  # commands of optional profiles: not_supported unless claimed
UINT32 = 1 << 32
SPEED_WINDOW_S = 3600.0  # current_speed averages the units made over this much simulated time


@dataclass
class Occurrence:
    """One raising of an alarm, from raised to cleared and acknowledged."""

    alarm: Alarm
    occurrence_id: str
    raised_ts: float
    active: bool = True
    acked: bool = False
    cleared_ts: float | None = None


@dataclass(frozen=True)
class Recipe:
    id: str
    version: int
    parameters: dict[str, Any]
    hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "hash": self.hash, "parameters": dict(self.parameters)}


def _default_value(spec: Spec, var: Variable) -> Any:
    if var.type == "string":
        return ""
    if var.type == "bool":
        return False
    if var.type == "enum":
        codes = spec.enum(var.enum or "").values()
        return 0 if 0 in codes else min(codes)
    if var.type == "float":
        lo, hi = var.range or (0.0, 0.0)
        return min(max(0.0, lo), hi)
    lo, hi = var.range or (0, 0)
    return int(min(max(0, lo), hi))


@dataclass
class _Acting:
    command: str
    target: str
    remaining_s: float
    notify: bool  # a CommandCompleted is owed


@dataclass
class _Job:
    job_id: str
    good_at_start: int
    defective_at_start: int
    running: bool = False


class Machine:
    """A machine of one class: values by spec path, state model, commands, alarms, events."""

    def __init__(self, spec: Spec, cls: str, equipment_id: str, *, counts: dict[str, int] | None = None,
                 identification: dict[str, str] | None = None, time_scale: float = 1.0, acting_s: float = 2.0,
                 ring_size: int = 1000, clock: Callable[[], float] = time.time, profiles: list[str] | None = None):
        if time_scale <= 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale}")
        self.spec = spec
        self.cls = cls
        self.equipment_id = equipment_id
        self.time_scale = time_scale
        self.acting_s = acting_s
        self.clock = clock
        self.alarm_catalogue: list[Alarm] = spec.alarms(cls)
        self.alarm_by_code: dict[int, Alarm] = {a.code: a for a in self.alarm_catalogue}
        self.counts = self._resolve_counts(counts or {})
        self.processed_unit = spec.get_class(cls).processed_unit
        self.profiles = self._resolve_profiles(profiles)

        # Values by spec path, and the paths changed since the last take_changes().
        self.values: dict[str, Any] = {}
        self._changed: dict[str, Any] = {}
        self._string_limits: dict[str, int] = {}
        self._writable: dict[str, Variable] = {}
        self.variables: dict[str, Variable] = {}
        for path, d in spec.instances(cls, self.counts):
            if d.var.origin != "equipment":
                continue
            self.variables[path] = d.var
            self.values[path] = _default_value(spec, d.var)
            if d.var.type == "string":
                self._string_limits[path] = d.var.length or 0
            if d.var.access == "rw":
                self._writable[path] = d.var
        for su in spec.array_sub_units(cls):
            assert su.array is not None
            self.values[su.array.count_variable] = self.counts[su.id]

        # Events: a ring of envelopes, seq from 1 up.
        self.events: deque[dict[str, Any]] = deque(maxlen=ring_size)
        self.last_seq = 0
        self.event_listeners: list[Callable[[dict[str, Any]], None]] = []

        # State model.
        enums = {v: spec.enum(self.variables[f"{STATE}.{v}"].enum or "") for v in (PACKML, ITEM, E10, MODE, AUTHORITY, UNIT_MODE)}
        self._enum_codes = enums
        self._enum_names = {v: {code: name for name, code in members.items()} for v, members in enums.items()}
        self._state: dict[str, str] = {}
        for var, member in ((PACKML, "Stopped"), (MODE, "Processing"), (AUTHORITY, "Remote"), (UNIT_MODE, "Production")):
            self._put_state(var, member, initial=True)
        self._acting: _Acting | None = None
        self._stop_reason: int | None = None
        self._derive_states(initial=True)

        # Alarms: occurrences by code (active, or cleared but not yet acknowledged).
        self.occurrences: dict[int, Occurrence] = {}
        # Cleared, unacknowledged occurrences that a new raising of their code took the place of, oldest first.
        self._older_unacked: dict[int, list[Occurrence]] = {}
        self.alarms_version = 0  # bumped on every change of the active set

        # Recipes, job, counters.
        self.recipes: dict[str, Recipe] = {}
        self.recipe_hook: Callable[[dict[str, Any]], None] | None = None
        self.active_recipe: Recipe | None = None
        self._job: _Job | None = None
        self._job_number = 0
        self._e10_seconds: dict[str, float] = {m: 0.0 for m in self._enum_codes[E10]}
        self._time_paths = {m: f"counters.time_{m.lower()}" for m in self._enum_codes[E10]}
        for p in self._time_paths.values():
            spec.variable(cls, p)  # fails loudly if the spec renames the counters
        self.sim_time = 0.0
        self._unit_times: deque[float] = deque()
        self._producing_s = 0.0
        self._wall_since_beat = 0.0

        ident = {
            "manufacturer": "linegw simulators",
            "model": f"SIM-{cls.upper()}",
            "serial_number": f"SN-{equipment_id}",
            "product_instance_uri": f"urn:linegw:sim:{equipment_id}",
            "software_revision": "1.0.0",
            "hardware_revision": "A",
            "equipment_class": cls,
            "spec_version": spec.version,
            "supported_profiles": ",".join(self.profiles),
            "asset_id": "",
            "location": "",
        }
        ident.update(identification or {})
        for name, value in ident.items():
            self.set(f"identification.{name}", value)

    # --- set-up checks -------------------------------------------------------------
    def _resolve_counts(self, counts: dict[str, int]) -> dict[str, int]:
        arrays = {su.id: su for su in self.spec.array_sub_units(self.cls)}
        unknown = set(counts) - set(arrays)
        if unknown:
            raise ValueError(f"{self.cls} has no array sub-unit {sorted(unknown)} (has {sorted(arrays)})")
        out = {}
        for sid, su in arrays.items():
            assert su.array is not None
            n = counts.get(sid, su.array.max)
            if not 1 <= n <= su.array.max:
                raise ValueError(f"count of {sid} must be 1..{su.array.max}, got {n}")
            out[sid] = n
        return out

    def _resolve_profiles(self, profiles: list[str] | None) -> list[str]:
        """The profiles this machine claims: every one of its class, or those given (Core and the class always)."""
        known = self.spec.profiles(self.cls)
        if profiles is None:
            return known
        unknown = [p for p in profiles if p not in known]
        if unknown:
            raise ValueError(f"profiles {unknown} are not profiles of a {self.cls} (known: {', '.join(known)})")
        return [p for p in known if p in profiles or p in ("Core", self.cls.capitalize())]

    # --- values ------------------------------------------------------------------------
    def set(self, path: str, value: Any) -> None:
        """Set a value by spec path; strings longer than the spec allows are a programming error."""
        limit = self._string_limits.get(path)
        if limit is not None and len(value) > limit:
            raise ValueError(f"{path}: '{value}' is longer than {limit} characters")
        old = self.values[path]
        if old != value or (value != value):  # NaN never equals itself: always a change
            self.values[path] = value
            self._changed[path] = value

    def set_many(self, paths: Iterable[str], values: Iterable[Any]) -> None:
        """Set many values at once (the hot path of array models)."""
        current, changed, limits = self.values, self._changed, self._string_limits
        for path, value in zip(paths, values):
            if current[path] != value:
                limit = limits.get(path)
                if limit is not None and len(value) > limit:
                    raise ValueError(f"{path}: '{value}' is longer than {limit} characters")
                current[path] = value
                changed[path] = value

    def get(self, path: str) -> Any:
        return self.values[path]

    def take_changes(self) -> dict[str, Any]:
        """Values changed since the last call, by path."""
        out, self._changed = self._changed, {}
        return out

    def array_paths(self, sub_unit: str, var_id: str) -> list[str]:
        """Concrete paths of one array variable, for every instance this machine has."""
        return [f"{sub_unit}[{i}].{var_id}" for i in range(1, self.counts[sub_unit] + 1)]

    def write_locked(self, path: str) -> bool:
        """A set-point write needs control authority Remote (the rule write.authority); identification does not."""
        return not path.startswith("identification.") and self._state[AUTHORITY] != "Remote"

    def write(self, path: str, value: Any) -> bool:
        """A client writes a writable variable; False (value unchanged) if it is not writable or not valid."""
        var = self._writable.get(path)
        if var is None:
            return False
        if self.write_locked(path):
            return False
        if var.type in ("float", "int", "uint"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                return False
            lo, hi = var.range or (-math.inf, math.inf)
            if not lo <= value <= hi:
                return False
            value = float(value) if var.type == "float" else int(value)
        elif var.type == "string":
            if not isinstance(value, str) or len(value) > (var.length or 0):
                return False
        self.set(path, value)
        return True

    # --- state model ---------------------------------------------------------------------
    def state(self, var: str = PACKML) -> str:
        """Current member name of a state variable ("packml_state", "control_authority", ...)."""
        return self._state[var]

    @property
    def stop_reason(self) -> int | None:
        """Code of the alarm that holds or aborts the machine now, if an alarm did."""
        return self._stop_reason

    @property
    def producing(self) -> bool:
        return self._state[PACKML] == "Execute"

    def _put_state(self, var: str, member: str, initial: bool = False) -> None:
        old = self._state.get(var)
        if old == member:
            return
        code = self._enum_codes[var][member]
        path = f"{STATE}.{var}"
        prev_path = f"{STATE}.previous_{var}"
        has_prev = prev_path in self.values
        if initial:
            self.set(path, code)
            if has_prev:
                self.set(prev_path, code)
            self._state[var] = member
            return
        assert old is not None
        if has_prev:
            self.set(prev_path, self._enum_codes[var][old])
        self.set(path, code)
        self._state[var] = member
        if has_prev:  # the spec's StateChanged covers the variables that keep a previous value
            self.emit("StateChanged", {"variable": var, "previous": old, "current": member})

    def _derive_states(self, initial: bool = False) -> None:
        item, e10s = self.spec.derived_states(self._state[PACKML], self._state[MODE], self._stop_reason is not None)
        (e10,) = e10s
        self._put_state(ITEM, item, initial)
        self._put_state(E10, e10, initial)
        if not initial:
            self._derive_health()

    def _enter(self, member: str) -> None:
        """PackML state change, with everything that hangs on it."""
        old = self._state[PACKML]
        self._put_state(PACKML, member)
        if member not in ("Held", "Holding", "Aborting", "Aborted"):
            self._stop_reason = None
        self._derive_states()
        job = self._job
        if job is not None:
            if member == "Execute" and not job.running:
                job.running = True
                payload = {"job_id": job.job_id}
                if self.active_recipe is not None:
                    payload["recipe_id"] = self.active_recipe.id
                self.emit("JobStarted", payload)
            elif member == "Stopped" and old == "Stopping":
                self._end_job("JobCompleted")
            elif member == "Aborted":
                self._end_job("JobAborted")

    def _end_job(self, kind: str) -> None:
        job = self._job
        if job is None:
            return
        self._job = None
        if not job.running:
            return
        if kind == "JobCompleted":
            good = self.values[COUNTS[1]] - job.good_at_start
            bad = self.values[COUNTS[2]] - job.defective_at_start
            self.emit(kind, {"job_id": job.job_id, "good": max(good, 0), "defective": max(bad, 0)})
        else:
            alarm = self.alarm_by_code.get(self._stop_reason or -1)
            reason = f"alarm {alarm.code} {alarm.id}" if alarm else "Abort command"
            self.emit(kind, {"job_id": job.job_id, "reason": reason})

    def _packml(self, command: str, notify: bool) -> str:
        """Apply a PackML command per the spec's table; returns the result name."""
        outcome = self.spec.packml_command(self._state[PACKML], command)
        if outcome.result not in ("ok", "accepted_completes_later"):
            return outcome.result
        assert outcome.target is not None
        if outcome.acting:
            self._acting = _Acting(command, outcome.target, self.acting_s, notify)
            self._enter(outcome.acting)
            if self.acting_s <= 0:
                self._finish_acting()
        else:
            self._acting = None
            self._enter(outcome.target)
        return outcome.result

    def _finish_acting(self) -> None:
        acting, self._acting = self._acting, None
        if acting is None:
            return
        self._enter(acting.target)
        if acting.notify:
            self.emit("CommandCompleted", {"command": acting.command, "result": "ok"})

    def set_packml_state(self, member: str) -> None:
        """Enter a PackML state without a command: the machine's own transitions
        (Completing, Complete when a job's quantity is reached) and test set-up."""
        if member not in self._enum_codes[PACKML]:
            raise ValueError(f"'{member}' is not a PackML state")
        self._acting = None
        self._enter(member)

    def set_control_authority(self, member: str) -> None:
        """The local panel's key switch: Offline, Local or Remote."""
        if member not in self._enum_codes[AUTHORITY]:
            raise ValueError(f"'{member}' is not a control authority ({', '.join(self._enum_codes[AUTHORITY])})")
        self._put_state(AUTHORITY, member)

    # --- commands ------------------------------------------------------------------------------
    def execute(self, command: str, params: dict[str, Any] | None = None, source: str = "remote") -> int:
        """Run a spec command; returns the spec result code. `source="local"` is the machine's own panel."""
        codes = self.spec.result_codes
        result = self._execute(command, dict(params or {}), source)
        return codes[result]

    def _execute(self, command: str, params: dict[str, Any], source: str) -> str:
        cmd = self.spec.commands.get(command)
        if cmd is None:
            return "invalid_command"
        if PROFILE_OF_COMMAND.get(command, "Core") not in self.profiles:
            return "not_supported"
        if source != LOCAL_PANEL and self._state[AUTHORITY] != "Remote":
            return "cannot_perform_now"
        packml = command in self.spec.core.packml.commands
        if packml:
            outcome = self.spec.packml_command(self._state[PACKML], command)
            if outcome.result not in ("ok", "accepted_completes_later"):
                return outcome.result
        problem = self._check_params(cmd.id, params)
        if problem:
            return "parameter_invalid"
        if packml:
            if command == "Start":
                self._begin_job(params.get("job_id") or None)
            return self._packml(command, notify=True)
        handler = getattr(self, f"_cmd_{command}", None)
        if handler is None:
            return "not_supported"
        return handler(params)

    def _check_params(self, command: str, params: dict[str, Any]) -> str | None:
        cmd = self.spec.commands[command]
        known = {p.name: p for p in cmd.params}
        if set(params) - set(known):
            return f"unknown parameters {sorted(set(params) - set(known))}"
        for p in cmd.params:
            value = params.get(p.name)
            if value is None or value == "":
                if p.required:
                    return f"'{p.name}' is required"
                params.pop(p.name, None)
                continue
            if p.type == "string" and not isinstance(value, str):
                return f"'{p.name}' must be a string"
            if p.type == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                return f"'{p.name}' must be an integer"
            if p.type == "enum":
                members = self.spec.enum(p.enum or "")
                if isinstance(value, str) and value in members:
                    params[p.name] = members[value]
                elif isinstance(value, bool) or value not in members.values():
                    return f"'{p.name}' is not a {p.enum}"
        return None

    def _begin_job(self, job_id: str | None) -> None:
        self._job_number += 1
        if job_id is None:
            job_id = f"{self.equipment_id[:24]}-J{self._job_number:05d}"
        limit = self._string_limits[JOB_ID]
        job_id = job_id[:limit]
        self._job = _Job(job_id, self.values[COUNTS[1]], self.values[COUNTS[2]])
        self.set(JOB_ID, job_id)

    @property
    def job_id(self) -> str | None:
        return self._job.job_id if self._job is not None and self._job.running else None

    def _cmd_SetOperationMode(self, params: dict[str, Any]) -> str:
        mode = self._enum_names[MODE][params["mode"]]
        if mode == self._state[MODE]:
            return "already_in_state"
        if self._state[ITEM] == "Executing":
            return "cannot_perform_now"
        self._put_state(MODE, mode)
        unit_mode = self.spec.unit_mode_of(mode)
        if unit_mode is not None:
            self._put_state(UNIT_MODE, unit_mode)
        self._derive_states()
        return "ok"

    def _cmd_SelectRecipe(self, params: dict[str, Any]) -> str:
        recipe = self.recipes.get(params["recipe_id"])
        if recipe is None:
            return "no_such_object"
        if self._state[ITEM] == "Executing":
            return "cannot_perform_now"
        self.activate_recipe(recipe.id)
        return "ok"

    def _cmd_AcknowledgeAlarm(self, params: dict[str, Any]) -> str:
        code = params["alarm_code"]
        if code not in self.alarm_by_code:
            return "no_such_object"
        occ = self.occurrences.get(code)
        if occ is None and not self._older_unacked.get(code):
            return "no_such_object"
        return "ok" if self.acknowledge_alarm(code) else "already_in_state"

    def _cmd_ResetCounters(self, params: dict[str, Any]) -> str:
        for p in COUNTS:
            self.set(p, 0)
        if self._job is not None:
            self._job.good_at_start = self._job.defective_at_start = 0
        self.emit("CountersReset", {})
        return "ok"

    # --- alarms ---------------------------------------------------------------------------------
    def raise_alarm(self, code: int) -> Occurrence:
        """Raise a catalogue alarm (no-op while it is active); a stop reason stops the machine."""
        alarm = self.alarm_by_code.get(code)
        if alarm is None:
            raise KeyError(f"alarm {code} is not in the {self.cls} catalogue")
        occ = self.occurrences.get(code)
        if occ is not None and occ.active:
            return occ
        if occ is not None and not occ.acked:
            self._older_unacked.setdefault(code, []).append(occ)
        occ = Occurrence(alarm, str(uuid.uuid4()), self.clock())
        self.occurrences[code] = occ
        self.alarms_version += 1
        self.emit("AlarmRaised", {"alarm_code": code, "occurrence_id": occ.occurrence_id})
        if alarm.stop_reason and alarm.kind == "alarm":
            self._stop_for(alarm)
        self._derive_health()
        return occ

    def _stop_for(self, alarm: Alarm) -> None:
        state = self._state[PACKML]
        if state in ("Aborting", "Aborted"):
            return
        if alarm.category == "safety":
            command = "Abort"
        elif self.spec.packml_command(state, "Hold").result == "accepted_completes_later":
            command = "Hold"
        elif "PRD" in self.spec.derived_states(state, "Processing")[1]:
            command = "Abort"
        else:
            return
        self._stop_reason = alarm.code
        self._packml(command, notify=False)

    def clear_alarm(self, code: int) -> None:
        """The condition is gone; the occurrence stays until acknowledged."""
        occ = self.occurrences.get(code)
        if occ is None or not occ.active:
            return
        occ.active = False
        occ.cleared_ts = self.clock()
        self.alarms_version += 1
        self.emit("AlarmCleared", {"alarm_code": code, "occurrence_id": occ.occurrence_id})
        if occ.acked:
            del self.occurrences[code]
        self._derive_health()

    def acknowledge_alarm(self, code: int) -> bool:
        """Acknowledge every unacknowledged occurrence of the code, oldest first (the rule command.ack.several)."""
        occ = self.occurrences.get(code)
        pending = self._older_unacked.pop(code, []) + ([occ] if occ is not None and not occ.acked else [])
        for o in pending:
            o.acked = True
            self.emit("AlarmAcknowledged", {"alarm_code": code, "occurrence_id": o.occurrence_id})
        if occ is not None and occ.acked and not occ.active:
            del self.occurrences[code]
        return bool(pending)

    def active_alarm_codes(self) -> list[int]:
        return [code for code, occ in self.occurrences.items() if occ.active]

    def alarm_words(self) -> list[int]:
        """Active alarms as bits: bit i = i-th alarm of the catalogue, word 0 bit 0 first."""
        words = [0] * self.spec.core.modbus.alarm_words
        active = set(self.active_alarm_codes())
        for i, alarm in enumerate(self.alarm_catalogue):
            if alarm.code in active:
                words[i // 16] |= 1 << (i % 16)
        return words

    def _derive_health(self) -> None:
        health = self.spec.device_health([self.alarm_by_code[c] for c in self.active_alarm_codes()], self._state[MODE])
        self.set(HEALTH, self.spec.enum(self.variables[HEALTH].enum or "")[health])

    # --- recipes ----------------------------------------------------------------------------------
    def validate_recipe(self, parameters: Any) -> str | None:
        """Why these parameters are not a valid recipe of this class, or None."""
        if not isinstance(parameters, dict):
            return "parameters must be an object"
        declared = {p.name: p for p in self.spec.get_class(self.cls).recipe}
        unknown = sorted(set(parameters) - set(declared))
        if unknown:
            return f"unknown parameters {unknown}"
        for name, p in declared.items():
            if name not in parameters:
                return f"parameter '{name}' is missing"
            value = parameters[name]
            if p.type == "string":
                if not isinstance(value, str):
                    return f"parameter '{name}' must be a string"
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                return f"parameter '{name}' must be a number"
            if p.type == "int" and not float(value).is_integer():
                return f"parameter '{name}' must be an integer"
            if p.range and not p.range[0] <= value <= p.range[1]:
                return f"parameter '{name}' = {value} is outside {p.range[0]:g}..{p.range[1]:g} {p.unit}"
        return None

    def put_recipe(self, recipe_id: str, parameters: Any, version: int | None = None) -> tuple[int, str]:
        """Store a recipe (download); returns (result code, reason). Emits RecipeChanged or RecipeRejected."""
        codes = self.spec.result_codes
        limit = self._string_limits[RECIPE_VARS[0]]
        problem = None
        if not isinstance(recipe_id, str) or not recipe_id or len(recipe_id) > limit:
            problem = f"recipe id must be 1..{limit} characters"
        elif version is not None and (isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= 65535):
            problem = "version must be 0..65535"
        else:
            problem = self.validate_recipe(parameters)
        if problem:
            self.emit("RecipeRejected", {"recipe_id": str(recipe_id), "reason": problem})
            return codes["parameter_invalid"], problem
        old = self.recipes.get(recipe_id)
        if version is None:
            version = old.version + 1 if old else 1
        elif old is not None and old.version == version:  # the rule recipe.put.existing
            if old.parameters == parameters:
                return codes["ok"], ""
            problem = f"version {version} of {recipe_id} is stored with other parameters; store a new version"
            self.emit("RecipeRejected", {"recipe_id": recipe_id, "reason": problem})
            return codes["parameter_invalid"], problem
        recipe = Recipe(recipe_id, version, dict(parameters), recipe_hash(self.cls, recipe_id, version, parameters))
        self.recipes[recipe_id] = recipe
        self.emit("RecipeChanged", {"recipe_id": recipe.id, "version": recipe.version, "hash": recipe.hash})
        return codes["ok"], ""

    def activate_recipe(self, recipe_id: str) -> Recipe:
        recipe = self.recipes[recipe_id]
        self.active_recipe = recipe
        for path, value in zip(RECIPE_VARS, (recipe.id, recipe.version, recipe.hash)):
            self.set(path, value)
        if self.recipe_hook is not None:
            self.recipe_hook(dict(recipe.parameters))
        self.emit("RecipeActivated", {"recipe_id": recipe.id, "version": recipe.version, "hash": recipe.hash})
        return recipe

    # --- production -----------------------------------------------------------------------------------
    def unit_processed(self, unit_id: str, good: bool, made_from: list[str], measurements: dict[str, float],
                       reason: str | None = None) -> None:
        """A unit of the class's processed_unit was made: counters and the UnitProcessed event."""
        self.set(COUNTS[0], (self.values[COUNTS[0]] + 1) % UINT32)
        path = COUNTS[1] if good else COUNTS[2]
        self.set(path, (self.values[path] + 1) % UINT32)
        self._unit_times.append(self.sim_time)
        payload: dict[str, Any] = {
            "unit_type": self.processed_unit, "unit_id": unit_id, "result": "good" if good else "reject",
            "made_from": list(made_from),
            "measurements": {k: round(v, 4) for k, v in measurements.items()},
        }
        if reason:
            payload["reason"] = reason
        if self.job_id:
            payload["job_id"] = self.job_id
        self.emit("UnitProcessed", payload)

    def material_consumed(self, material_type: str, material_id: str) -> None:
        payload = {"material_type": material_type, "material_id": material_id}
        if self.job_id:
            payload["job_id"] = self.job_id
        self.emit("MaterialConsumed", payload)

    # --- time -------------------------------------------------------------------------------------------
    def tick(self, dt_sim: float, dt_wall: float | None = None) -> None:
        """Advance simulated time by `dt_sim` seconds (wall time defaults to dt_sim / time_scale)."""
        if dt_wall is None:
            dt_wall = dt_sim / self.time_scale
        self.sim_time += dt_sim
        # Heartbeat: wall-clock periods.
        self._wall_since_beat += dt_wall
        period = self.spec.core.heartbeat_period_s
        if self._wall_since_beat >= period:
            beats = int(self._wall_since_beat // period)
            self._wall_since_beat -= beats * period
            self.set(HEARTBEAT, (self.values[HEARTBEAT] + beats) % UINT32)
        # Cumulative seconds per E10 state.
        e10 = self._state[E10]
        self._e10_seconds[e10] += dt_sim
        self.set(self._time_paths[e10], int(self._e10_seconds[e10]) % UINT32)
        # Acting states complete by themselves.
        acting = self._acting
        if acting is not None:
            acting.remaining_s -= dt_sim
            if acting.remaining_s <= 0:
                self._finish_acting()
        self._update_speed(dt_sim)

    def _update_speed(self, dt: float) -> None:
        times = self._unit_times
        horizon = self.sim_time - SPEED_WINDOW_S
        while times and times[0] < horizon:
            times.popleft()
        speed = 0.0
        if self.producing:
            self._producing_s += dt
            span = min(SPEED_WINDOW_S, max(self._producing_s, 60.0))
            speed = len(times) * 60.0 / span
        self.set(SPEED, round(speed, 4))

    def set_design_speed(self, units_per_minute: float) -> None:
        self.set(DESIGN_SPEED, units_per_minute)

    # --- events -------------------------------------------------------------------------------------------
    def emit(self, event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Record an event envelope {type, equipment, source_ts, seq, payload}."""
        etype = self.spec.events.get(event_type)
        if etype is None:
            raise KeyError(f"'{event_type}' is not a spec event type")
        missing = [f.name for f in etype.payload if f.required and f.name not in payload]
        if missing:
            raise ValueError(f"{event_type} payload lacks {missing}")
        self.last_seq += 1
        env = {"type": event_type, "equipment": self.equipment_id, "source_ts": self.clock(),
               "seq": self.last_seq, "payload": payload}
        self.events.append(env)
        for listener in self.event_listeners:
            listener(env)
        return env

    def event(self, seq: int) -> dict[str, Any] | None:
        """The event with this sequence number, if the ring still holds it."""
        if not self.events:
            return None
        first = self.events[0]["seq"]
        i = seq - first
        if 0 <= i < len(self.events):
            return self.events[i]
        return None

    def events_from(self, first: int, limit: int = 100) -> list[dict[str, Any]]:
        """Events with seq >= first, oldest first, at most `limit`."""
        if not self.events or limit <= 0:
            return []
        start = max(first - self.events[0]["seq"], 0)
        return [self.events[i] for i in range(start, min(start + limit, len(self.events)))]

    # --- self-description ---------------------------------------------------------------------------------
    def self_description(self) -> dict[str, Any]:
        """The machine's data dictionary, validated by the spec's SelfDescription model."""
        optional = []
        for d in self.spec.variables(self.cls):
            if d.var.origin == "equipment" and (d.var.tier != Tier.mandatory or d.sub_unit.tier != Tier.mandatory):
                optional.append(d.template)
        desc = SelfDescription(
            spec_version=self.spec.version,
            equipment_class=self.cls,
            profiles=list(self.profiles),
            counts=dict(self.counts),
            optional_variables=optional,
        )
        return desc.model_dump(mode="json")

