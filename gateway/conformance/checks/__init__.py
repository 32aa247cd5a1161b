"""The checks, by layer. A check is registered for the test cases it decides:

    @check("CORE-SELF-001")                          one case
    @check(select=lambda c: c.id.endswith("-001") and c.sub_unit)   generated cases

and returns an `Outcome` (the same for every case it decides) or {case id: Outcome}. Checks run in the
order of their modules (`ORDER`): static, presence, data quality,
consistency over the event history, resilience, then control (only with
--allow-control). A case a check does not decide ends as an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.conformance.catalogue import TestCase
    from gateway.conformance.context import Context

PASS, FAIL, WARNING, NOT_IMPLEMENTED, NOT_APPLICABLE, NOT_TESTED, ERROR = (
    "pass", "fail", "warning", "not_implemented", "not_applicable", "not_tested", "error")
# not_tested: the case applies to the machine but this run left it out (no --allow-control, --only,
# a claimed profile not asked for); not_applicable: it does not apply (binding, mode, profile not claimed).
STATUSES = (PASS, FAIL, WARNING, NOT_IMPLEMENTED, NOT_APPLICABLE, NOT_TESTED, ERROR)
MAX_EVIDENCE = 60  # items per case; the message says how many problems there were in all


@dataclass
class Outcome:
    status: str
    message: str
    evidence: list[dict[str, Any]] = field(default_factory=list)
    mandatory: bool | None = None  # None: as the catalogue and the claimed profiles say

    def __post_init__(self) -> None:
        assert self.status in STATUSES, self.status
        if len(self.evidence) > MAX_EVIDENCE:
            left = len(self.evidence) - MAX_EVIDENCE
            self.evidence = self.evidence[:MAX_EVIDENCE] + [{"kind": "note", "note": f"{left} more items not shown"}]


def ev(kind: str, target: str, value: Any = None, expected: Any = None, note: str = "") -> dict[str, Any]:
    """One piece of evidence: what was read, sent or observed, and what the spec expects."""
    out: dict[str, Any] = {"kind": kind, "target": target}
    if value is not None:
        out["value"] = value
    if expected is not None:
        out["expected"] = expected
    if note:
        out["note"] = note
    return out


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def verdict(problems: list[str], evidence: list[dict[str, Any]], ok: str, what: str = "problem",
            status: str = FAIL) -> Outcome:
    """Pass with `ok`, or `status` naming the first problems and how many there were."""
    if not problems:
        return Outcome(PASS, ok, evidence)
    head = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    noun, paren, rest = what.partition(" (")
    plural = f"{noun}{'s' if len(problems) != 1 else ''}{paren}{rest}"
    return Outcome(status, f"{len(problems)} {plural}: {head}{more}", evidence)


def unobserved(what: str, how: str, evidence: list[dict[str, Any]] | None = None) -> Outcome:
    """A case whose observation held nothing to judge is not a pass: a warning saying what was missing and how to
    exercise the clause."""
    return Outcome(WARNING, f"nothing to judge: {what}. To exercise it: {how}", evidence or [])


def graded(problems: list[str], doubts: list[str], evidence: list[dict[str, Any]], ok: str, what: str,
           doubt: str) -> Outcome:
    """Fail naming the problems (the doubts after them); else a warning naming the doubts, what the kit
    cannot judge (a machine clock that went back, an order that cannot be known); else pass with `ok`."""
    if problems:
        return verdict(problems + doubts, evidence, ok, what)
    return verdict(doubts, evidence, ok, doubt, status=WARNING)


CheckFn = Callable[["Context"], Awaitable[Any]]


@dataclass
class Check:
    ids: tuple[str, ...]
    select: Callable[[TestCase], bool] | None
    fn: CheckFn

    def decides(self, case: TestCase) -> bool:
        return case.id in self.ids or (self.select is not None and self.select(case))


REGISTRY: list[Check] = []


def check(*ids: str, select: Callable[[TestCase], bool] | None = None) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY.append(Check(ids, select, fn))
        return fn

    return register


ORDER = ("static", "presence", "quality", "consistency", "resilience", "control")


def load() -> list[Check]:
    """The registry in run order: by layer module, then as each module declares its checks."""
    import importlib

    for name in ORDER:
        importlib.import_module(f"gateway.conformance.checks.{name}")
    return sorted(REGISTRY, key=lambda c: ORDER.index(c.fn.__module__.rsplit(".", 1)[-1]))


# --- helpers shared by the layers ------------------------------------------------------------------------

def sub_unit_of(case: TestCase, ctx: Context) -> Any:
    spec = ctx.spec
    for su in list(spec.core.sub_units) + list(spec.get_class(ctx.cls).sub_units):
        if su.id == case.sub_unit:
            return su
    raise KeyError(case.sub_unit)


def served_paths(ctx: Context, sub_unit: str) -> list[tuple[str, Any]]:
    """(path, VarDef) of every instance of a sub-unit the probe reads."""
    out = []
    for path in ctx.probe.paths():
        head = path.split(".", 1)[0].split("[", 1)[0]
        if head == sub_unit:
            out.append((path, ctx.spec.variable(ctx.cls, path)))
    return out


def is_required(ctx: Context, d: Any) -> bool:
    """Must the machine serve this variable: mandatory in the spec, or optional and declared served."""
    from interface_spec.model import Tier

    if d.sub_unit.since and ctx.mode == "native" and not declares_at_least(ctx, d.sub_unit.since):
        return d.template in ctx.declared()  # added after the version the machine implements
    if d.var.tier == Tier.mandatory and (d.sub_unit.tier == Tier.mandatory or d.sub_unit.id in ("recipe", "job")):
        return True
    return d.template in ctx.declared()


def declares_at_least(ctx: Context, version: str) -> bool:
    """Does the machine declare (identification.spec_version) this minor version or a later one?"""
    from interface_spec import minor_version

    declared = minor_version(str(ctx.probe.value("identification.spec_version") or ""))
    return declared >= minor_version(version) if declared else True  # unknown: judged by the kit's version


def declared_absent(ctx: Context, template: str) -> str | None:
    """The --absent pattern that declares this variable absent from the machine, or None."""
    import re

    for pattern in ctx.options.absent:
        rx = re.escape(pattern.replace("[*]", "[]")).replace(r"\*", ".*")
        if re.fullmatch(rx, template):
            return pattern
    return None


def missing_reason(ctx: Context, path: str) -> str | None:
    """Why a path is not served (unresolved node, refused registers), or None when it reads."""
    from gateway.samples import Quality

    probe: Any = ctx.probe
    if path in getattr(probe, "unresolved", {}):
        result: str | None = probe.unresolved[path]
        return result
    history = probe.history.get(path, [])
    if not history:
        return "never read"
    for s in history:
        # Read at least once (a bad value is still a value: the values case judges it).
        if s.quality != Quality.BAD or s.reason in ("nan", "infinite", "wrong_type", "unknown_enum_code") \
                or s.reason.startswith("unknown_vendor_code"):
            return None
    reason: str | None = history[-1].reason
    return reason
