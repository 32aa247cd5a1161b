"""Behaviour and negative layers: commands sent to the machine (only with --allow-control).

The PackML tour is generated from the spec's transition table: starting in
Stopped it takes, in turn, the nearest command edge not yet driven until
every (wait state, command) pair the table accepts has been driven once,
then returns to Stopped. Acting states are transient and are not used as
sources. In every wait state it reaches, the commands the table refuses are
sent too (the negative cases). Every step reads the state back and the
events that followed. The other control cases run in Stopped afterwards,
and the runner leaves the machine in Stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from gateway.conformance.checks import ERROR, FAIL, NOT_APPLICABLE, PASS, Outcome, check, ev, plural, verdict
from gateway.conformance.checks.quality import recipe_hash
from gateway.conformance.context import Context
from interface_spec import Spec

ACCEPTED = ("ok", "accepted_completes_later")
NO_SUCH_RECIPE = "CONFORMANCE-NO-SUCH-RECIPE"


def _code(spec: Spec, name: str) -> int:
    return spec.result_codes[name]


def _name(spec: Spec, code: int | None) -> str:
    if code is None:
        return "no answer"
    return next((k for k, v in spec.result_codes.items() if v == code), f"code {code}")


def wait_states(spec: Spec) -> list[str]:
    pm = spec.core.packml
    return [s for s in pm.states if s not in pm.acting_states and s != "Undefined"]


def packml_edges(spec: Spec) -> dict[tuple[str, str], str]:
    """(wait state, command) -> target, for every command the table accepts in a wait state."""
    waits = set(wait_states(spec))
    return {(s, t.command): t.target for t in spec.core.packml.transitions for s in t.source if s in waits}


def tour(spec: Spec, start: str = "Stopped") -> list[tuple[str, str, str]]:
    """Steps (source, command, target) driving every edge reachable from `start` once, back to `start`."""
    edges = packml_edges(spec)
    order = list(spec.core.packml.commands)

    def route(src: str, goal: Any) -> list[tuple[str, str, str]] | None:
        """Shortest path of edges from src to a state where goal(state) holds (breadth first, spec order)."""
        seen = {src}
        queue: deque[tuple[str, list[tuple[str, str, str]]]] = deque([(src, [])])
        while queue:
            state, path = queue.popleft()
            if goal(state):
                return path
            for cmd in order:
                target = edges.get((state, cmd))
                if target is not None and target not in seen:
                    seen.add(target)
                    queue.append((target, path + [(state, cmd, target)]))
        return None

    reachable = {start} | {s for s, _ in edges if route(start, lambda x, s=s: x == s) is not None}
    todo = [(s, c) for (s, c) in edges if s in reachable]
    steps: list[tuple[str, str, str]] = []
    current = start
    while todo:
        path = route(current, lambda s: any(src == s for src, _ in todo))
        assert path is not None
        for st in path:
            steps.append(st)
            if (st[0], st[1]) in todo:
                todo.remove((st[0], st[1]))
        current = path[-1][2] if path else current
        src, cmd = next((s, c) for s, c in todo if s == current)
        steps.append((src, cmd, edges[(src, cmd)]))
        todo.remove((src, cmd))
        current = edges[(src, cmd)]
    back = route(current, lambda s: s == start) or []
    return steps + back


@dataclass
class Findings:
    """Problems and evidence per case, gathered while commanding."""

    problems: dict[str, list[str]] = field(default_factory=dict)
    evidence: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    done: dict[str, int] = field(default_factory=dict)  # steps checked per case

    def add(self, case: str, problem: str | None = None, evidence: dict[str, Any] | None = None) -> None:
        self.problems.setdefault(case, [])
        self.done[case] = self.done.get(case, 0) + 1
        if problem:
            self.problems[case].append(problem)
        if evidence:
            self.evidence.setdefault(case, []).append(evidence)

    def outcome(self, case: str, ok: str, unreached: str = "") -> Outcome:
        if not self.done.get(case):
            return Outcome(FAIL, unreached or "not checked", self.evidence.get(case, []))
        return verdict(self.problems.get(case, []), self.evidence.get(case, []), ok)


# --- commanding helpers ---------------------------------------------------------------------------------

async def send(ctx: Context, command: str, params: dict[str, Any] | None = None) -> int | None:
    ctx.cache["commanded"] = True
    return await ctx.probe.command(command, params, timeout=ctx.options.command_timeout_s)


async def settle(ctx: Context, target: str, timeout: float | None = None) -> str | None:
    """Read the PackML state until it is `target` or the timeout; the last state read."""
    probe: Any = ctx.probe
    deadline = time.monotonic() + (ctx.options.command_timeout_s if timeout is None else timeout)
    while True:
        state = await probe.state()
        if state == target or time.monotonic() > deadline:
            result: str | None = state
            return result
        await asyncio.sleep(0.05)


async def events_after(ctx: Context, seq0: int | None) -> list[dict[str, Any]]:
    return await ctx.probe.events_since((seq0 or 0) + 1)


async def events_until(ctx: Context, seq0: int | None, want: Any, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Events after seq0, waiting up to `timeout` for one that `want` accepts."""
    deadline = time.monotonic() + timeout
    while True:
        events = await events_after(ctx, seq0)
        if any(want(e) for e in events) or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.1)


def state_changes(events: list[dict[str, Any]], variable: str = "packml_state") -> list[tuple[Any, Any]]:
    return [(e["payload"].get("previous"), e["payload"].get("current")) for e in events
            if e.get("type") == "StateChanged" and (e.get("payload") or {}).get("variable") == variable]


def answered(spec: Spec, what: str, got: int | None, want: str, ok: str, also: tuple[str | None, ...] = ()) -> Outcome:
    """Pass when a command answered the result code `want` (and nothing in `also` went wrong)."""
    problems = [] if got == _code(spec, want) else [f"{what} answered {_name(spec, got)}, expected {want}"]
    problems += [p for p in also if p]
    return verdict(problems, [ev("command", what, value=_name(spec, got), expected=want)], ok)


async def to_stopped(ctx: Context) -> str | None:
    """Bring the machine to Stopped with the commands the table allows; the state reached."""
    spec = ctx.spec
    acting = set(spec.core.packml.acting_states)
    state = await ctx.probe.state()
    for _ in range(6):
        if state == "Stopped" or state is None:
            return state
        if state in acting:
            await asyncio.sleep(0.1)
            state = await ctx.probe.state()
            continue
        if state == "Aborted":
            command, target = "Clear", "Stopped"
        elif spec.packml_command(state, "Stop").result in ACCEPTED:
            command, target = "Stop", "Stopped"
        else:
            command, target = "Abort", "Aborted"
        await send(ctx, command)
        state = await settle(ctx, target)
    return state


async def remote(ctx: Context) -> Outcome | None:
    """None when commands may be sent; else why not."""
    authority = await ctx.probe.state("control_authority")
    if authority != "Remote":
        return Outcome(ERROR, f"control authority is {authority}: switch it to Remote for the control cases")
    return None


async def stopped_remote(ctx: Context) -> Outcome | None:
    blocked = await remote(ctx)
    if blocked:
        return blocked
    state = await to_stopped(ctx)
    if state != "Stopped":
        return Outcome(ERROR, f"the machine cannot be brought to Stopped (it is {state})")
    return None


# --- the PackML tour ------------------------------------------------------------------------------------

def _case_of(spec: Spec) -> dict[str, str]:
    return {t.command: f"CTRL-PACKML-{i:03d}" for i, t in enumerate(spec.core.packml.transitions, start=1)}


@check(select=lambda c: c.unit == "CTRL-PACKML" or c.id == "TRACE-JOB-003")
async def packml_tour(ctx: Context) -> Outcome | dict[str, Outcome]:
    spec, probe = ctx.spec, ctx.probe
    per_command = _case_of(spec)
    events_case = f"CTRL-PACKML-{len(per_command) + 1:03d}"
    blocked = await stopped_remote(ctx)
    if blocked:
        return blocked
    f = Findings()
    steps = tour(spec)
    visited: set[str] = set()
    job = None  # the job id of the kit's last Start, until Stop or Abort ends it
    stopped_at = ""
    for n, (src, command, target) in enumerate(steps):
        state = await probe.state()
        if state != src:
            stopped_at = f"the tour stopped at step {n + 1} ({command} from {src}): the machine is in {state}"
            break
        if src not in visited:
            visited.add(src)
            await _refusals(ctx, f, src)
        outcome = spec.packml_command(src, command)
        params = {}
        if command == "Start":
            job = f"CONF-{int(time.time()) % 100000:05d}-{n}"
            params = {"job_id": job}
        seq0 = await probe.last_seq()
        code = await send(ctx, command, params)
        reached = await settle(ctx, target)
        events = await events_until(ctx, seq0, lambda e, c=command: e.get("type") == "CommandCompleted"
                                    and (e.get("payload") or {}).get("command") == c)
        case = per_command[command]
        sent = ev("command", f"{command}{params or ''} in {src}", value=_name(spec, code),
                  expected=outcome.result, note=f"reached {reached}")
        problems = []
        if code != _code(spec, outcome.result):
            problems.append(f"{command} in {src} answered {_name(spec, code)}, expected {outcome.result}")
        if reached != target:
            problems.append(f"{command} in {src}: the machine is in {reached} after {ctx.options.command_timeout_s:g} s, "
                            f"expected {target}")
        if outcome.acting and not any(e.get("type") == "CommandCompleted" and e["payload"].get("command") == command
                                      and e["payload"].get("result") == "ok" for e in events):
            problems.append(f"{command} in {src}: no CommandCompleted({command}, ok) event")
        f.add(case, "; ".join(problems) or None, sent)
        # Every transition of this step has its StateChanged with the right previous state.
        want = [(src, outcome.acting), (outcome.acting, target)] if outcome.acting else [(src, target)]
        seen = state_changes(events)
        missing = " / ".join(f"{a} -> {b}" for a, b in want if (a, b) not in seen)
        f.add(events_case, f"{command} from {src}: no StateChanged packml_state {missing} (seen {seen})"
              if missing and reached == target else None,
              ev("observe", f"StateChanged after {command}", value=seen, expected=want))
        if reached == target:
            prev = await probe.read_value("state.previous_packml_state")
            want_prev = spec.enum("packml_state")[want[-1][0]]
            if prev != want_prev:
                f.add(events_case, f"after {command}: state.previous_packml_state is {prev}, expected {want_prev} "
                                   f"({want[-1][0]})")
        _jobs(ctx, f, command, params, events, job)
        if command in ("Stop", "Abort") and job:
            if "job.job_id" in probe.paths():  # the ended job's id stays until the next Start (rule job.id.after)
                served = await probe.read_value("job.job_id")
                f.add("TRACE-JOB-003", None if served == job else
                      f"after {command} ended job {job}, job.job_id reads {served!r}: it keeps the last job's id",
                      ev("read", f"job.job_id after {command}", value=served, expected=job))
            job = None
        if reached != target:
            stopped_at = f"the tour stopped after {command} from {src}: the machine is in {reached}, not {target}"
            break
    unreached = stopped_at or "the tour did not reach a state where this command is accepted"
    planned = {c: sum(1 for _, cmd, _ in steps if cmd == c) for c in per_command}
    for command, case in per_command.items():
        driven = f.done.get(case, 0)
        if stopped_at and 0 < driven < planned[command]:
            f.add(case, f"only {driven} of its {planned[command]} steps were driven: {stopped_at}")
    out = {c: f.outcome(c, f"{plural(f.done.get(c, 0), 'transition')} driven as the table says", unreached)
           for c in per_command.values()}
    out[events_case] = f.outcome(events_case, f"{f.done.get(events_case, 0)} steps, each transition with its "
                                              f"StateChanged event and previous state", unreached)
    out["CTRL-PACKML-ERR-001"] = f.outcome("CTRL-PACKML-ERR-001", f"{f.done.get('CTRL-PACKML-ERR-001', 0)} refused "
                                           f"commands in {len(visited)} wait states answered as the table says",
                                           unreached)
    out["TRACE-JOB-003"] = f.outcome("TRACE-JOB-003", f"{f.done.get('TRACE-JOB-003', 0)} job events carried the "
                                                      f"kit's job ids", unreached)
    ctx.cache["tour_failed"] = bool(stopped_at)
    return out


async def _refusals(ctx: Context, f: Findings, state: str) -> None:
    """Every command the table refuses in this state: its code, and nothing changes."""
    spec, probe = ctx.spec, ctx.probe
    seq0 = await probe.last_seq()
    for command in spec.core.packml.commands:
        outcome = spec.packml_command(state, command)
        if outcome.result in ACCEPTED:
            continue
        code = await send(ctx, command)
        now = await probe.state()
        problem = None
        if code != _code(spec, outcome.result):
            problem = f"{command} in {state} answered {_name(spec, code)}, expected {outcome.result}"
        if now != state:
            problem = (problem + "; " if problem else "") + f"{command} in {state} changed the state to {now}"
        f.add("CTRL-PACKML-ERR-001", problem, ev("command", f"{command} in {state}", value=_name(spec, code),
                                                  expected=outcome.result))
        if now != state:
            return
    changed = state_changes(await events_after(ctx, seq0))
    if changed:
        f.add("CTRL-PACKML-ERR-001", f"refused commands in {state} were followed by StateChanged {changed}")


def _jobs(ctx: Context, f: Findings, command: str, params: dict[str, Any], events: list[dict[str, Any]],
          job: str | None) -> None:
    if job is None:
        return
    kinds = {"Start": ("JobStarted",), "Stop": ("JobCompleted",), "Abort": ("JobAborted",)}.get(command)
    if kinds is None:
        return
    got = [e for e in events if e.get("type") in kinds]
    carried = [e for e in got if (e.get("payload") or {}).get("job_id") == job]
    problem = None
    if not carried:
        problem = f"{command} of job {job}: no {kinds[0]} event with that job_id (seen {[e.get('payload') for e in got]})"
    elif kinds[0] == "JobCompleted" and not all(isinstance(carried[0]["payload"].get(k), int) for k in ("good", "defective")):
        problem = f"JobCompleted of {job} lacks integer good/defective counts: {carried[0]['payload']}"
    f.add("TRACE-JOB-003", problem, ev("observe", f"{kinds[0]} for {job}", value=[e.get("payload") for e in got]))


# --- authority, mode, counters, alarms, commands -------------------------------------------------------------

@check("CTRL-AUTH-001")
async def local_authority(ctx: Context) -> Outcome:
    blocked = await stopped_remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    timeout = ctx.options.operator_timeout_s

    async def switch(to: str) -> bool:
        await ctx.tell_operator(f"Switch the control authority to {to} at the machine's panel.")
        deadline = time.monotonic() + timeout
        while await probe.state("control_authority") != to:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    if not await switch("Local"):
        return Outcome(ERROR, f"operator step not done within {timeout:g} s: the authority never read Local")
    problems, evidence = [], []
    seq0 = await probe.last_seq()
    try:
        for command in [c for c in spec.core.packml.commands if spec.packml_command("Stopped", c).result in ACCEPTED]:
            code = await send(ctx, command)
            state = await settle(ctx, "Stopped", 0.3)
            evidence.append(ev("command", f"{command} while Local", value=_name(spec, code),
                               expected="cannot_perform_now", note=f"state {state}"))
            if code != _code(spec, "cannot_perform_now"):
                problems.append(f"{command} while Local answered {_name(spec, code)}, expected cannot_perform_now")
            if state != "Stopped":
                problems.append(f"{command} while Local changed the state to {state}")
        changed = state_changes(await events_after(ctx, seq0))
        if changed:
            problems.append(f"commands while Local were followed by StateChanged {changed}")
    finally:
        back = await switch("Remote")
    if not back:
        problems.append(f"operator step not done within {timeout:g} s: the authority never read Remote again")
    return verdict(problems, evidence, "every command was refused with cannot_perform_now while Local")


@check("CTRL-MODE-001", "CTRL-MODE-ERR-001")
async def operation_mode(ctx: Context) -> Outcome | dict[str, Outcome]:
    blocked = await stopped_remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    modes = spec.enum("operation_mode")
    before = await probe.state("operation_mode")
    code = await send(ctx, "SetOperationMode", {"mode": 99})
    after = await probe.state("operation_mode")
    err = answered(spec, "SetOperationMode(mode=99)", code, "parameter_invalid",
                   "answered parameter_invalid; nothing changed",
                   (None if after == before else f"the operation mode changed from {before} to {after}",))
    target = "Maintenance" if before != "Maintenance" else "Processing"
    problems, evidence = [], []
    seq0 = await probe.last_seq()
    for mode, want in ((target, "ok"), (target, "already_in_state"), (before, "ok")):
        code = await send(ctx, "SetOperationMode", {"mode": modes.get(mode or "", 0)})
        await probe.wait_value("state.operation_mode", lambda v, m=mode: v == modes.get(m or ""), 2.0)
        now = await probe.state("operation_mode")
        evidence.append(ev("command", f"SetOperationMode({mode})", value=_name(spec, code), expected=want,
                           note=f"operation_mode now {now}"))
        if code != _code(spec, want):
            problems.append(f"SetOperationMode({mode}) answered {_name(spec, code)}, expected {want}")
        if now != mode:
            problems.append(f"after SetOperationMode({mode}) the operation mode is {now}")
    seen = state_changes(await events_after(ctx, seq0), "operation_mode")
    for pair in ((before, target), (target, before)):
        if pair not in seen:
            problems.append(f"no StateChanged operation_mode {pair[0]} -> {pair[1]} (seen {seen})")
    ok = verdict(problems, evidence, f"{before} -> {target} -> {before}, each with its StateChanged event")
    return {"CTRL-MODE-001": ok, "CTRL-MODE-ERR-001": err}


@check("CTRL-COUNTERS-001")
async def reset_counters(ctx: Context) -> Outcome:
    blocked = await stopped_remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    paths = ["counters.processed_count", "counters.good_count", "counters.defective_count"]
    seq0 = await probe.last_seq()
    code = await send(ctx, "ResetCounters")
    values = {p: await probe.wait_value(p, lambda v: v == 0, 2.0) for p in paths}
    events = await events_until(ctx, seq0, lambda e: e.get("type") == "CountersReset")
    problems = []
    if code != _code(spec, "ok"):
        problems.append(f"ResetCounters answered {_name(spec, code)}, expected ok")
    if any(v != 0 for v in values.values()):
        problems.append(f"counters after ResetCounters: {values}")
    if not any(e.get("type") == "CountersReset" for e in events):
        problems.append("no CountersReset event")
    return verdict(problems, [ev("command", "ResetCounters", value=_name(spec, code), expected="ok"),
                              ev("read", "counters", value=values, expected=0)], "counters 0, CountersReset emitted")


@check("CTRL-ALARM-ERR-001")
async def acknowledge_nothing(ctx: Context) -> Outcome:
    blocked = await remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    await probe.refresh_alarms()
    active, _ = probe.alarm_codes()
    events = list(ctx.events) + await events_after(ctx, max((e.get("seq", 0) for e in ctx.events), default=0))
    touched = {(e.get("payload") or {}).get("alarm_code") for e in events if str(e.get("type")).startswith("Alarm")}
    quiet = [a.code for a in reversed(spec.alarms(ctx.cls)) if a.code not in (active or []) and a.code not in touched]
    if not quiet:
        return Outcome(ERROR, "every alarm of the catalogue has an occurrence now; none can be used")
    problems, evidence = [], []
    for code in (quiet[0], 65000):
        got = await send(ctx, "AcknowledgeAlarm", {"alarm_code": code})
        evidence.append(ev("command", f"AcknowledgeAlarm({code})", value=_name(spec, got), expected="no_such_object"))
        if got != _code(spec, "no_such_object"):
            problems.append(f"AcknowledgeAlarm({code}) answered {_name(spec, got)}, expected no_such_object")
    return verdict(problems, evidence, f"AcknowledgeAlarm({quiet[0]}) and ({65000}) answered no_such_object")


@check("CTRL-CMD-ERR-001", "CTRL-CMD-ERR-002")
async def unknown_commands(ctx: Context) -> Outcome | dict[str, Outcome]:
    blocked = await remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    out = {}
    if probe.protocol == "modbus":
        unused = max(c.code for c in spec.commands.values()) + 1
        code = unused if unused > 199 else 199
        got = await probe.raw_command(code)
        out["CTRL-CMD-ERR-001"] = answered(spec, f"command code {code}", got, "invalid_command",
                                           f"code {code} answered invalid_command")
    unclaimed = [p for p in ("Recipe",) if p not in ctx.claimed]
    if not unclaimed:
        out["CTRL-CMD-ERR-002"] = Outcome(NOT_APPLICABLE, "the machine claims every optional profile with commands")
    else:
        got = await send(ctx, "SelectRecipe", {"recipe_id": NO_SUCH_RECIPE})
        out["CTRL-CMD-ERR-002"] = answered(spec, "SelectRecipe without the Recipe profile", got, "not_supported",
                                           "SelectRecipe answered not_supported")
    return out


# --- recipes ----------------------------------------------------------------------------------------------

@check("RECIPE-SELECT-001", "RECIPE-SELECT-ERR-001")
async def select_recipe(ctx: Context) -> Outcome | dict[str, Outcome]:
    blocked = await stopped_remote(ctx)
    if blocked:
        return blocked
    spec, probe = ctx.spec, ctx.probe
    active = await probe.read_value("recipe.active_recipe_id")
    code = await send(ctx, "SelectRecipe", {"recipe_id": NO_SUCH_RECIPE})
    after = await probe.read_value("recipe.active_recipe_id")
    err = answered(spec, f"SelectRecipe({NO_SUCH_RECIPE})", code, "no_such_object",
                   "answered no_such_object; the active recipe stayed",
                   (None if after == active else f"the active recipe changed from {active!r} to {after!r}",))
    if not active:
        return {"RECIPE-SELECT-ERR-001": err,
                "RECIPE-SELECT-001": Outcome(ERROR, "no recipe is active: select one at the machine for this case")}
    seq0 = await probe.last_seq()
    code = await send(ctx, "SelectRecipe", {"recipe_id": active})
    events = await events_until(ctx, seq0, lambda e: e.get("type") == "RecipeActivated")
    served = {k: await probe.read_value(f"recipe.active_recipe_{k}") for k in ("id", "version", "hash")}
    activated = [e["payload"] for e in events if e.get("type") == "RecipeActivated"]
    problems = []
    if code != _code(spec, "ok"):
        problems.append(f"SelectRecipe({active}) answered {_name(spec, code)}, expected ok")
    want = {"recipe_id": served["id"], "version": served["version"], "hash": served["hash"]}
    if want not in activated:
        problems.append(f"no RecipeActivated event {want} (seen {activated})")
    return {"RECIPE-SELECT-ERR-001": err, "RECIPE-SELECT-001": verdict(
        problems, [ev("command", f"SelectRecipe({active})", value=_name(spec, code), expected="ok"),
                   ev("observe", "RecipeActivated", value=activated, expected=want)],
        f"{active} activated; RecipeActivated carries what recipe.active_recipe_* serve")}


def _recipe_parameters(ctx: Context, bad: bool = False) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in ctx.spec.get_class(ctx.cls).recipe:
        if p.type == "string":
            params[p.name] = "CONFORMANCE"
            continue
        lo, hi = p.range or (0.0, 100.0)
        value = (lo + hi) / 2
        params[p.name] = int(value) if p.type == "int" else value
    if bad:
        first = next(p for p in ctx.spec.get_class(ctx.cls).recipe if p.type != "string" and p.range)
        assert first.range is not None  # picked for having one
        params[first.name] = first.range[1] * 2 + 1
    return params


@check("RECIPE-TRANSFER-001", "RECIPE-TRANSFER-ERR-001")
async def transfer_recipe(ctx: Context) -> Outcome | dict[str, Outcome]:
    blocked = await remote(ctx)
    if blocked:
        return blocked
    ctx.cache["commanded"] = True
    spec, probe = ctx.spec, ctx.probe
    stamp = int(time.time()) % 1000000
    out = {}
    for case, bad in (("RECIPE-TRANSFER-001", False), ("RECIPE-TRANSFER-ERR-001", True)):
        rid = f"CONFORMANCE-{stamp}{'-BAD' if bad else ''}"
        params = _recipe_parameters(ctx, bad)
        seq0 = await probe.last_seq()
        put = await probe.call("recipes.put", [json.dumps({"id": rid, "parameters": params})])
        code = int(put[0]) if put else None
        kind = "RecipeRejected" if bad else "RecipeChanged"
        events = [e["payload"] for e in await events_until(ctx, seq0, lambda e, k=kind: e.get("type") == k)
                  if e.get("type") == kind and (e.get("payload") or {}).get("recipe_id") == rid]
        listing = json.loads((await probe.call("recipes.list", []))[0] or "[]")
        listed = [r for r in listing if isinstance(r, dict) and r.get("id") == rid]
        evidence = [ev("call", f"Recipes/Put({rid})", value=_name(spec, code), expected="parameter_invalid" if bad else "ok",
                       note=json.dumps(params)), ev("observe", kind, value=events), ev("call", "Recipes/List", value=listed)]
        problems = []
        want = "parameter_invalid" if bad else "ok"
        if code != _code(spec, want):
            problems.append(f"Recipes/Put of {'an invalid' if bad else 'a valid'} recipe answered {_name(spec, code)}, "
                            f"expected {want}")
        if not events:
            problems.append(f"no {kind} event for {rid}")
        if bad and listed:
            problems.append(f"the rejected recipe {rid} is listed")
        if not bad:
            got = json.loads((await probe.call("recipes.get", [rid]))[0] or "null")
            version = (got or {}).get("version")
            computed, text = recipe_hash(ctx, rid, version, params) if isinstance(version, int) else (None, "")
            evidence.append(ev("call", f"Recipes/Get({rid})", value=got, expected=f"hash {computed}", note=text))
            if not listed:
                problems.append(f"{rid} is not listed after Put")
            if not isinstance(got, dict) or got.get("parameters") != params:
                problems.append(f"Recipes/Get({rid}) returns {got}, expected the parameters {params} it was given")
            elif got.get("hash") != computed:
                problems.append(f"Recipes/Get({rid}) carries hash {got.get('hash')}; its parameters hash to {computed} "
                                f"(canonical text {text})")
            elif events and events[0].get("hash") != computed:
                problems.append(f"RecipeChanged carries hash {events[0].get('hash')}, expected {computed}")
        out[case] = verdict(problems, evidence, f"Put {rid}: {want}, {kind} emitted" +
                            ("" if bad else ", listed, hash as the spec's rule gives"))
    out["RECIPE-TRANSFER-ERR-001"] = await _put_existing_version(ctx, f"CONFORMANCE-{stamp}",
                                                                 out["RECIPE-TRANSFER-ERR-001"])
    return out


async def _put_existing_version(ctx: Context, rid: str, so_far: Outcome) -> Outcome:
    """A Put of a stored id and version with other parameters is refused, and the stored recipe stays (rule
    recipe.put.existing): added to what the invalid recipe's Put found."""
    spec, probe = ctx.spec, ctx.probe
    stored = json.loads((await probe.call("recipes.get", [rid]))[0] or "null")
    if not isinstance(stored, dict) or not isinstance(stored.get("version"), int):
        return so_far  # the valid Put failed: RECIPE-TRANSFER-001 says so
    number = next((p for p in spec.get_class(ctx.cls).recipe if p.type != "string" and p.range), None)
    if number is None or number.range is None:
        return so_far
    other = {**stored["parameters"], number.name: number.range[0] if stored["parameters"].get(number.name) !=
             number.range[0] else number.range[1]}
    if number.type == "int":
        other[number.name] = int(other[number.name])
    seq0 = await probe.last_seq()
    put = await probe.call("recipes.put", [json.dumps({"id": rid, "version": stored["version"], "parameters": other})])
    code = int(put[0]) if put else None
    rejected = [e for e in await events_until(ctx, seq0, lambda e: e.get("type") == "RecipeRejected")
                if e.get("type") == "RecipeRejected" and (e.get("payload") or {}).get("recipe_id") == rid]
    after = json.loads((await probe.call("recipes.get", [rid]))[0] or "null")
    problems = []
    if code != _code(spec, "parameter_invalid"):
        problems.append(f"Recipes/Put of {rid} version {stored['version']} (stored) with other parameters answered "
                        f"{_name(spec, code)}, expected parameter_invalid")
    if not rejected:
        problems.append(f"no RecipeRejected for the Put of {rid} version {stored['version']} with other parameters")
    if after != stored:
        problems.append(f"the stored {rid} changed: {after}, was {stored}")
    evidence = so_far.evidence + [ev("call", f"Recipes/Put({rid}, version {stored['version']}, other parameters)",
                                     value=_name(spec, code), expected="parameter_invalid", note=json.dumps(other))]
    if not problems:
        return Outcome(so_far.status, so_far.message + f"; a Put of {rid} v{stored['version']} with other parameters "
                                                       f"refused", evidence)
    return verdict(([so_far.message] if so_far.status != PASS else []) + problems, evidence, "", "recipe problem")


async def leave_stopped(ctx: Context) -> None:
    """After the control cases: the machine is left in Stopped, and the report says so."""
    try:
        state = await to_stopped(ctx) if await ctx.probe.state("control_authority") == "Remote" else \
            await ctx.probe.state()
    except Exception as exc:
        ctx.notes.append(f"the machine could not be brought to Stopped at the end: {exc}")
        return
    ctx.notes.append(f"the machine was left in {state}" + ("" if state == "Stopped" else " (it should be Stopped)"))
