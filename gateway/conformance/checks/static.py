"""Static layer: the machine's self-description, or in integration mode its mapping file."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from gateway.conformance.checks import FAIL, NOT_IMPLEMENTED, PASS, WARNING, Outcome, check, ev, verdict
from gateway.conformance.context import Context
from interface_spec.model import SelfDescription, Tier


@check("CORE-SELF-001", "CORE-SELF-002", "CORE-SELF-003")
async def self_description(ctx: Context) -> dict[str, Outcome]:
    text, where = await ctx.probe.self_description()
    read = ev("read", where, value=text if text is None or len(text) <= 400 else text[:400] + "...")
    if not text:
        missing = Outcome(NOT_IMPLEMENTED, f"no self-description is served ({where})", [read])
        return {"CORE-SELF-001": missing, "CORE-SELF-002": missing, "CORE-SELF-003": missing}
    try:
        doc = json.loads(text)
    except ValueError as exc:
        bad = Outcome(FAIL, f"the self-description is not JSON: {exc}", [read])
        return {"CORE-SELF-001": bad, "CORE-SELF-002": bad, "CORE-SELF-003": bad}
    try:
        SelfDescription.model_validate(doc)
        first = Outcome(PASS, f"valid against the self-description schema ({len(text)} characters)", [read])
    except ValidationError as exc:
        errors = [f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in exc.errors()]
        first = verdict(errors, [read] + [ev("expected", "self-description.schema.json", note=e) for e in errors],
                        "", "schema violation")
    if not isinstance(doc, dict):
        return {"CORE-SELF-001": first, "CORE-SELF-002": first, "CORE-SELF-003": first}
    ctx.self_description = doc
    return {"CORE-SELF-001": first, "CORE-SELF-002": _agrees(ctx, doc), "CORE-SELF-003": _extensions(ctx, doc)}


def _agrees(ctx: Context, doc: dict[str, Any]) -> Outcome:
    spec, cls, probe = ctx.spec, ctx.cls, ctx.probe
    problems, evidence = [], []

    def compare(what: str, got: Any, expected: Any) -> None:
        evidence.append(ev("compare", what, value=got, expected=expected))
        if got != expected:
            problems.append(f"{what} is {got!r}, expected {expected!r}")

    compare("equipment_class", doc.get("equipment_class"), cls)
    compare("equipment_class vs identification.equipment_class", doc.get("equipment_class"),
            probe.value("identification.equipment_class"))
    version = doc.get("spec_version")
    compare("spec_version vs identification.spec_version", version, probe.value("identification.spec_version"))
    if not isinstance(version, str) or version.split(".")[0] != spec.version.split(".")[0]:
        problems.append(f"spec_version {version!r} is not a {spec.version.split('.')[0]}.x version (the kit checks {spec.version})")
    profiles: list[Any] = doc["profiles"] if isinstance(doc.get("profiles"), list) else []
    known = set(spec.profiles(cls))
    unknown = [p for p in profiles if p not in known]
    if unknown:
        problems.append(f"unknown profiles {unknown} (known for {cls}: {sorted(known)})")
    for need in ("Core", cls.capitalize()):
        if need not in profiles:
            problems.append(f"profiles lack {need}")
    ident = probe.value("identification.supported_profiles")
    ident_list = [p.strip() for p in ident.split(",")] if isinstance(ident, str) else None
    compare("profiles vs identification.supported_profiles", sorted(profiles), sorted(ident_list or []))
    counts: dict[str, Any] = doc["counts"] if isinstance(doc.get("counts"), dict) else {}
    arrays = {su.id: su.array for su in spec.array_sub_units(cls) if su.array is not None}
    for su_id, n in counts.items():
        if su_id not in arrays:
            problems.append(f"counts names '{su_id}', not an array sub-unit of {cls}")
            continue
        hi = arrays[su_id].max
        served = probe.value(arrays[su_id].count_variable)
        compare(f"counts.{su_id} vs {arrays[su_id].count_variable}", n, served)
        if not isinstance(n, int) or not 1 <= n <= hi:
            problems.append(f"counts.{su_id} = {n!r} is outside 1..{hi}")
    for su_id in arrays.keys() - counts.keys():
        problems.append(f"counts lacks the array sub-unit '{su_id}'")
    return verdict(problems, evidence, "class, spec version, profiles and array sizes agree with what the machine serves",
                   "disagreement")


def _extensions(ctx: Context, doc: dict[str, Any]) -> Outcome:
    spec, cls = ctx.spec, ctx.cls
    problems, warnings, evidence = [], [], []
    optional = {d.template for d in spec.variables(cls)
                if d.var.origin == "equipment" and (d.var.tier != Tier.mandatory or d.sub_unit.tier != Tier.mandatory)}
    declared = doc.get("optional_variables") or []
    evidence.append(ev("read", "optional_variables", value=declared))
    for p in declared:
        if p not in optional:
            problems.append(f"optional_variables names '{p}', not a recommended or optional variable of {cls}")
    ids = [v.get("id") for v in doc.get("vendor_variables") or [] if isinstance(v, dict)]
    for vid in {i for i in ids if ids.count(i) > 1}:
        problems.append(f"vendor variable id '{vid}' is used twice")
    for v in doc.get("vendor_variables") or []:
        unit = v.get("unit", "1") if isinstance(v, dict) else None
        if unit not in spec.units:
            warnings.append(f"vendor variable {v.get('id')!r} has unit {unit!r}, not a unit code of the spec")
    states = set(spec.core.packml.states)
    for state in (doc.get("vendor_substates") or {}):
        if state not in states:
            problems.append(f"vendor_substates key '{state}' is not a PackML state")
    for code, state in (doc.get("native_status_map") or {}).items():
        if state not in states:
            problems.append(f"native_status_map maps {code!r} to '{state}', not a PackML state")
    if problems:
        return verdict(problems, evidence, "")
    if warnings:
        return verdict(warnings, evidence, "", "warning", status=WARNING)
    return Outcome(PASS, f"{len(declared)} optional variables declared, {len(ids)} vendor variables, all well-formed",
                   evidence)


@check("CORE-MAPPING-001")
async def mapping_file(ctx: Context) -> Outcome:
    probe: Any = ctx.probe
    m = probe.mapping
    evidence = [ev("read", probe.mapping_path, note=f"mapping '{m.mapping}', class {m.cls}, protocol {m.protocol}, "
                                                    f"{len(m.variables)} variables, {len(m.alarms)} alarms, "
                                                    f"{len(m.commands)} commands, {len(m.events)} event triggers")]
    problems = []
    if m.cls != ctx.cls:
        problems.append(f"the mapping is for class {m.cls}, the machine is claimed as {ctx.cls}")
    if m.protocol != probe.protocol:
        problems.append(f"the mapping is for protocol {m.protocol}, the endpoint is {probe.protocol}")
    return verdict(problems, evidence, "the mapping loads and every reference in it is a spec element")
