"""The resolved spec: core + class profiles, cross-checked, with lookups.

`load_spec()` reads `common.yaml` and every class file beside it (or in a
given folder), checks what a single file's grammar cannot (units, enums,
codes, the PackML table, the Modbus layout) and returns a `Spec`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .loader import SpecError, line_of, load_model, yaml_node
from .model import Alarm, Core, EquipmentClass, SubUnit, Variable

SPEC_DIR = Path(__file__).parent
CLASS_FILES = ("coater.yaml", "winder.yaml", "formation.yaml")


@dataclass(frozen=True)
class VarDef:
    """A variable placed in the model: its sub-unit and where it was declared."""

    sub_unit: SubUnit
    var: Variable
    owner: str  # "core" or the class id

    @property
    def template(self) -> str:
        """Path with `[]` for array sub-units: "dryer_zone[].air_temperature"."""
        suffix = "[]" if self.sub_unit.array else ""
        return f"{self.sub_unit.id}{suffix}.{self.var.id}"

    def path(self, index: int | None = None) -> str:
        """Concrete path; array indexes are 1-based, as machines number them."""
        if self.sub_unit.array:
            if index is None or not 1 <= index <= self.sub_unit.array.max:
                raise ValueError(f"{self.template}: index {index} outside 1..{self.sub_unit.array.max}")
            return f"{self.sub_unit.id}[{index}].{self.var.id}"
        return f"{self.sub_unit.id}.{self.var.id}"


@dataclass(frozen=True)
class CommandOutcome:
    result: str  # a result_codes name
    acting: str | None = None
    target: str | None = None


class Spec:
    def __init__(self, core: Core, classes: dict[str, EquipmentClass], folder: Path):
        self.core = core
        self.classes = classes
        self.folder = folder
        self.version = core.version
        self.units = {u.code: u for u in core.units}
        self.result_codes = core.result_codes
        self.commands = {c.id: c for c in core.commands}
        self.command_by_code = {c.code: c for c in core.commands}
        self.events = {e.id: e for e in core.events}
        self.event_by_code = {e.code: e for e in core.events}
        self._transitions = {t.command: t for t in core.packml.transitions}
        self._vars: dict[str, list[VarDef]] = {}
        self._by_template: dict[str, dict[str, VarDef]] = {}
        for cid, cls in classes.items():
            defs = [VarDef(su, v, "core") for su in core.sub_units for v in su.variables]
            defs += [VarDef(su, v, cid) for su in cls.sub_units for v in su.variables]
            self._vars[cid] = defs
            self._by_template[cid] = {d.template: d for d in defs}

    # --- variables -------------------------------------------------------
    def variables(self, cls: str) -> list[VarDef]:
        return self._vars[self._cls(cls)]

    def variable(self, cls: str, path: str) -> VarDef:
        """The definition behind a concrete path ("lane[3].areal_weight")."""
        template, _ = split_path(path)
        try:
            return self._by_template[self._cls(cls)][template]
        except KeyError:
            raise KeyError(f"{cls} has no variable '{path}'") from None

    def instances(self, cls: str, counts: dict[str, int] | None = None) -> Iterator[tuple[str, VarDef]]:
        """Every concrete path of a class; arrays sized by `counts` (sub-unit -> n), else max."""
        counts = counts or {}
        for d in self.variables(cls):
            arr = d.sub_unit.array
            if arr is None:
                yield d.path(), d
            else:
                for i in range(1, min(counts.get(d.sub_unit.id, arr.max), arr.max) + 1):
                    yield d.path(i), d

    def array_sub_units(self, cls: str) -> list[SubUnit]:
        return [su for su in self.get_class(cls).sub_units if su.array]

    def get_class(self, cls: str) -> EquipmentClass:
        return self.classes[self._cls(cls)]

    def _cls(self, cls: str) -> str:
        if cls not in self.classes:
            raise KeyError(f"unknown equipment class '{cls}' (known: {', '.join(self.classes)})")
        return cls

    # --- enums, units, alarms --------------------------------------------
    def enum(self, name: str) -> dict[str, int]:
        return self.core.enums[name]

    def enum_name(self, name: str, code: int) -> str | None:
        for member, value in self.core.enums[name].items():
            if value == code:
                return member
        return None

    def alarms(self, cls: str) -> list[Alarm]:
        """The alarm catalogue of a class; position = bit in the active-alarm words."""
        return list(self.core.alarms) + list(self.get_class(cls).alarms)

    # --- PackML ------------------------------------------------------------
    def packml_command(self, state: str, command: str) -> CommandOutcome:
        """What a PackML command does in a state, per the transition table."""
        t = self._transitions.get(command)
        if t is None:
            return CommandOutcome("invalid_command")
        if state == t.target and state not in t.source:
            return CommandOutcome("already_in_state")
        if state not in t.source:
            return CommandOutcome("cannot_perform_now")
        return CommandOutcome("accepted_completes_later" if t.acting else "ok", t.acting, t.target)

    def derived_states(self, packml: str, operation_mode: str, alarm_stopped: bool | None = None) -> tuple[str, set[str]]:
        """(item_state, the e10_states allowed) per the derivation table. Downtime is UDT when a stop-reason alarm
        stopped the machine and SDT when a person did; `alarm_stopped=None` (not known) allows both."""
        d = self.core.state_derivation
        row = d.packml[packml]
        item, e10 = row.item_state or "", row.e10_state or ""
        override = d.operation_mode.get(operation_mode)
        if override is not None:
            item = override.item_state or item
            e10 = override.e10_state or e10
        if e10 == "DOWN":
            return item, {"UDT", "SDT"} if alarm_stopped is None else {"UDT" if alarm_stopped else "SDT"}
        return item, {e10}

    def device_health(self, active: list[Alarm], operation_mode: str) -> str:
        """`health.device_health` as the rule health.from-alarms gives it, the first that applies."""
        if any(a.stop_reason and a.kind == "alarm" for a in active):
            return "FAILURE"
        if any(a.category == "quality" for a in active):
            return "OFF_SPEC"
        if any(a.kind == "warning" and a.category == "equipment" for a in active):
            return "MAINTENANCE_REQUIRED"
        if operation_mode in ("Maintenance", "Setup"):
            return "CHECK_FUNCTION"
        return "NORMAL"

    def unit_mode_of(self, operation_mode: str) -> str | None:
        """The PackML unit mode an operation mode implies; None: it leaves unit_mode as it is."""
        return self.core.state_derivation.unit_mode.get(operation_mode)

    def profiles(self, cls: str) -> list[str]:
        """Every profile a fully featured machine of this class can claim."""
        return ["Core", "Control", "Recipe", "Traceability", "DataCollection", self._cls(cls).capitalize()]


def minor_version(version: str | None) -> tuple[int, ...]:
    """(major, minor) of a spec version such as "1.1.0" or "1.1"; () when it is not one."""
    parts = (version or "").split(".")[:2]
    return tuple(int(p) for p in parts) if len(parts) == 2 and all(p.isdigit() for p in parts) else ()


def split_path(path: str) -> tuple[str, int | None]:
    """"lane[3].areal_weight" -> ("lane[].areal_weight", 3)."""
    head, _, tail = path.partition(".")
    if head.endswith("]") and "[" in head:
        name, _, idx = head[:-1].partition("[")
        try:
            return f"{name}[].{tail}", int(idx)
        except ValueError:
            raise KeyError(f"bad array index in '{path}'") from None
    return path, None


@functools.lru_cache(maxsize=4)
def load_spec(folder: str | Path | None = None) -> Spec:
    folder = Path(folder) if folder else SPEC_DIR
    core = load_model(folder / "common.yaml", Core)
    classes: dict[str, EquipmentClass] = {}
    for name in CLASS_FILES:
        path = folder / name
        if path.exists():
            cls = load_model(path, EquipmentClass)
            if cls.id in classes:
                raise SpecError(f"{path}:1: id: class '{cls.id}' is defined twice")
            classes[cls.id] = cls
    if not classes:
        raise SpecError(f"{folder}: no class profiles found ({', '.join(CLASS_FILES)})")
    from .checks import check_spec  # the cross-file rules

    errors = check_spec(core, classes, folder)
    if errors:
        raise SpecError("\n".join(errors))
    return Spec(core, classes, folder)


def locate(path: Path, loc: tuple[Any, ...]) -> str:
    line = line_of(yaml_node(path), loc)
    return f"{path}:{line}" if line else str(path)
