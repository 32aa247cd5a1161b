"""The kit passes every conforming simulator over both bindings, and sends nothing unless allowed to.

Each simulator is run twice: first without --allow-control (the passive
layers only; the simulator must show that no command reached it), then with
it (behaviour and negative layers too, operator steps done at the simulated
panel; the machine is left in Stopped).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from gateway.conformance.runner import Run
from simulators.line import SimLine
from simulators.simulator import Simulator

from .conftest import CLASSES, PARALLEL, PROTOCOLS, SPEC, at_most, failures, only, run_kit, sim_config, start

pytestmark = pytest.mark.asyncio(loop_scope="module")
SUBJECTS = [(cls, protocol) for cls in CLASSES for protocol in PROTOCOLS]
MAINTENANCE_DUE = next(a.code for a in SPEC.core.alarms if a.id == "maintenance_due")


@dataclass
class Subject:
    sim: Simulator
    passive: Run
    control: Run
    before: dict[str, Any]  # the simulator before the passive run
    after_passive: dict[str, Any]


def snapshot(sim: Simulator) -> dict[str, Any]:
    m = sim.machine
    return {
        "commands_run": sim.binding.commands_run,
        "state": m.state(),
        "authority": m.state("control_authority"),
        "recipes": {r.id: (r.version, r.hash) for r in m.recipes.values()},
        "active_recipe": m.active_recipe.id if m.active_recipe else None,
        "setpoints": {p: m.values[p] for p, v in m.variables.items() if v.access == "rw"},
        "command_events": [e["seq"] for e in m.events if e["type"] in ("CommandCompleted", "CountersReset")],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def subjects() -> Any:
    lines: list[SimLine] = await asyncio.gather(*(start(sim_config(c, p, f"{c}-{p}")) for c, p in SUBJECTS))

    async def both(line: SimLine) -> Subject:
        sim = only(line)
        # An alarm in use, so that the alarm cases have something to judge (with none they warn "nothing to
        # judge"): a warning (maintenance due), raised at the panel; it does not stop the machine.
        sim.machine.raise_alarm(MAINTENANCE_DUE)
        await sim.publish()
        before = snapshot(sim)
        passive = await run_kit(line)
        after = snapshot(sim)
        control = await run_kit(line, allow_control=True)
        return Subject(sim, passive, control, before, after)

    try:
        done = await at_most(PARALLEL, [both(line) for line in lines])
        yield dict(zip(SUBJECTS, done))
    finally:
        for line in lines:
            await line.stop()


@pytest.mark.parametrize("cls,protocol", SUBJECTS)
async def test_the_kit_passes_a_conforming_simulator(subjects, cls, protocol):
    s = subjects[(cls, protocol)]
    assert s.passive.passed, failures(s.passive)
    assert s.control.passed and s.control.complete and s.control.conforms, failures(s.control)
    assert s.control.tested_profiles == ["Core", "Control", "Recipe", "Traceability", "DataCollection",
                                         cls.capitalize()]
    # The optional-profile negative case has nothing to do on a machine that claims every profile.
    left = [r.case.id for r in s.control.results if r.status == "not_applicable" and protocol in r.case.bindings
            and "native" in r.case.modes]
    assert left == ["CTRL-CMD-ERR-002"], left
    assert not [r for r in s.control.results if r.status not in ("pass", "not_applicable")], failures(s.control)


@pytest.mark.parametrize("cls,protocol", SUBJECTS)
async def test_without_allow_control_no_command_reaches_the_machine(subjects, cls, protocol):
    s = subjects[(cls, protocol)]
    assert s.before["commands_run"] == 0
    assert s.after_passive == s.before  # no command run, no state, recipe or set point changed
    assert s.after_passive["state"] == "Execute"
    assert not [q for q in s.passive.requests if q["kind"] in ("command", "write")]
    # Reading only: the active recipe, and the events (Events/Read with MaxCount 0, CORE-EVENT-001).
    assert {q.get("method") for q in s.passive.requests} <= {"recipes.get", "events.read"}
    control_cases = [r for r in s.passive.results if r.case.needs_control and protocol in r.case.bindings]
    assert control_cases and all(r.status == "not_tested" and "--allow-control" in r.message
                                 for r in control_cases)
    # Nothing mandatory is skipped silently: the passive run passed what it ran, but it is not complete.
    assert s.passive.passed and not s.passive.complete and not s.passive.conforms
    assert {r.case.id for r in s.passive.untested()} == {r.case.id for r in control_cases if r.case.tier == "M"}
    assert all(r.mandatory for r in s.passive.untested())


@pytest.mark.parametrize("cls,protocol", SUBJECTS)
async def test_with_allow_control_the_tour_drives_the_machine_and_leaves_it_stopped(subjects, cls, protocol):
    s = subjects[(cls, protocol)]
    sim = s.sim
    # Every PackML command edge of the table, the refusals in each wait state and the other commands.
    assert sim.binding.commands_run > 60
    assert sim.machine.state() == "Stopped"
    assert sim.machine.state("control_authority") == "Remote"
    assert "the machine was left in Stopped" in s.control.notes
    assert [q for q in s.control.requests if q["kind"] == "command" and q["command"] == "Reset"]
    tour = s.control.result("CTRL-PACKML-010")
    assert tour.status == "pass" and "steps" in tour.message
    refused = s.control.result("CTRL-PACKML-ERR-001")
    assert refused.status == "pass" and "6 wait states" in refused.message


async def test_a_stopped_machine_shows_the_replay_only_when_the_kit_may_cause_an_event():
    """Resilience needs an event during the outage: none without control (a warning that says why), a mode change
    there and back with it (a pass, and the mode is as it was)."""
    line = SimLine(SPEC)
    await line.start([sim_config("winder", "modbus", "stopped", auto_start=False)])
    sim = only(line)
    try:
        passive = await run_kit(line, only=["CORE-LINK"])
        control = await run_kit(line, only=["CORE-LINK"], allow_control=True)
    finally:
        await line.stop()
    link, replay = passive.result("CORE-LINK-001"), passive.result("CORE-LINK-002")
    assert link.status == "pass", link.message  # availability is judged either way
    assert replay.status == "warning" and not replay.failing
    assert "was in Stopped, not producing" in replay.message and "--allow-control" in replay.message
    assert [e for e in replay.evidence if e.get("target") == "events during the outage" and e["value"] == 0]
    assert not [q for q in passive.requests if q["kind"] == "command"]
    assert control.result("CORE-LINK-002").status == "pass", control.result("CORE-LINK-002").message
    sent = [(q["command"], q["result"]) for q in control.requests if q["kind"] == "command"]
    assert sent[:2] == [("SetOperationMode", "ok"), ("SetOperationMode", "ok")]
    assert sim.machine.state("operation_mode") == "Processing" and sim.machine.state() == "Stopped"
