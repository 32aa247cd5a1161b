"""A checker that cannot fail proves nothing: each deliberate defect makes the kit fail, on the right case.

Every defect of simulators/defects.py is switched on in a simulator of its
own; the kit runs against it and must fail naming the exact test ID and the
spec clause of the rule the defect breaks, with a message that says what it
saw. The same cases pass on the conforming simulators (test_conforming.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

from gateway.conformance.runner import Run
from simulators.defects import DEFECTS
from simulators.line import SimConfig, SimLine

from .conftest import PARALLEL, at_most, failures, only, run_kit, sim_config, start

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass(frozen=True)
class Expect:
    defect: str
    cls: str
    protocol: str
    case: str  # the test ID that must fail
    clause: str  # its spec clause
    says: tuple[str | tuple[str, ...], ...]  # what the message must mention
    control: bool = False  # the rule is only seen when commanding
    status: str = "fail"
    config: dict[str, Any] = field(default_factory=dict)  # SimConfig settings beyond the defect
    options: dict[str, Any] = field(default_factory=dict)  # kit options beyond the defaults


EXPECT = [
    Expect("missing_variable:path=web.line_speed", "coater", "opcua", "COATER-WEB-001", "coater.yaml § sub_units[web]",
           ("web.line_speed", "not served")),
    Expect("missing_variable:path=tension.cathode", "winder", "modbus", "WINDER-TENSION-001",
           "winder.yaml § sub_units[tension]", ("tension.cathode", "illegal data address")),
    Expect("wrong_type:path=web.line_speed", "coater", "opcua", "COATER-WEB-001", "coater.yaml § sub_units[web]",
           ("web.line_speed", "DataType Float", "Double")),
    Expect("wrong_type:path=winding.speed_setpoint", "winder", "modbus", "CORE-MODBUS-002",
           "common.yaml § modbus.word_order (ABCD)", ("winding.speed_setpoint", "subnormal")),
    Expect("wrong_unit:path=rack.temperature", "formation", "opcua", "FORMATION-RACK-001",
           "formation.yaml § sub_units[rack]", ("rack.temperature", "UnitId")),
    Expect("out_of_range:path=channel[2].voltage", "formation", "modbus", "FORMATION-CHANNEL-002",
           "formation.yaml § sub_units[channel].variables", ("channel[2].voltage", "outside its range 0..5")),
    Expect("wrong_access:path=counters.processed_count", "winder", "opcua", "CORE-COUNTERS-001",
           "common.yaml § sub_units[counters]", ("counters.processed_count is writable", "access r")),
    Expect("word_order", "winder", "modbus", "CORE-MODBUS-002", "common.yaml § modbus.word_order (ABCD)",
           ("status.heartbeat", "65536", "CDAB")),
    Expect("bad_state_code:code=42", "coater", "modbus", "CORE-STATE-002", "common.yaml § sub_units[state].variables",
           ("state.packml_state = 42", "unknown_enum_code")),
    Expect("accepts_wrong_state:command=Start", "winder", "opcua", "CTRL-PACKML-ERR-001",
           "common.yaml § packml.transitions; result_codes", ("Start in Stopped", "expected cannot_perform_now"),
           control=True),
    Expect("ignores_command:command=Reset", "coater", "modbus", "CTRL-PACKML-001",
           "common.yaml § packml.transitions[Reset]", ("Reset in Stopped", "expected Idle"), control=True),
    Expect("frozen_values", "winder", "opcua", "DC-SAMPLING-001",
           "<class>.yaml § sub_units (category sample, sampling_ms)", ("values that never change",)),
    Expect("alarm_never_clears", "coater", "opcua", "CORE-ALARM-003",
           "common.yaml § events[AlarmRaised, AlarmCleared]", ("alarm 4 was cleared", "still active")),
    Expect("transition_without_event:state=Execute", "formation", "modbus", "CORE-EVENT-004",
           "common.yaml § events[StateChanged]; sub_units[state]", ("state.packml_state is Execute", "no event")),
    Expect("unit_without_links", "winder", "modbus", "TRACE-UNIT-001",
           "common.yaml § events[UnitProcessed]; <class>.yaml § unit_processed", ("made_from []", "no input")),
    Expect("heartbeat_stopped", "formation", "opcua", "CORE-STATUS-003",
           "common.yaml § heartbeat_period_s, heartbeat_timeout_s; sub_units[status].heartbeat",
           ("status.heartbeat advanced by 0",)),
    Expect("event_seq_gap:every=3", "coater", "opcua", "CORE-EVENT-002", "common.yaml § events (seq, ring of 1000)",
           ("a gap",)),
    Expect("bad_self_description", "winder", "modbus", "CORE-SELF-001",
           "common.yaml § self-description (schema/self-description.schema.json)", ("profiles: Field required",)),
    Expect("local_ignored", "formation", "opcua", "CTRL-AUTH-001", "common.yaml § commands (Remote only)",
           ("while Local answered accepted_completes_later", "expected cannot_perform_now"), control=True),
    # The same defect seen by the PackML tour: the transition into Execute has no StateChanged.
    Expect("transition_without_event:state=Execute", "formation", "modbus", "CTRL-PACKML-010",
           "common.yaml § events[StateChanged]; packml.transitions", ("no StateChanged packml_state", "-> Execute"),
           control=True),
    Expect("events_lost_offline", "winder", "modbus", "CORE-LINK-002", "common.yaml § events (seq, ring, replay)",
           ("not replayed",), options={"only": ["CORE-LINK"]}),
    # Which the gateway sees first depends on timing: the gap, or a replay that stops short of the newest.
    Expect("events_lost_offline", "coater", "opcua", "CORE-LINK-002", "common.yaml § events (seq, ring, replay)",
           (("not replayed", "the replay ends at seq"),), options={"only": ["CORE-LINK"]}),
    Expect("no_reconnect", "formation", "modbus", "CORE-LINK-001",
           "common.yaml § heartbeat_timeout_s; sub_units[status].availability",
           ("does not show the machine AVAILABLE again within 5 s",), options={"only": ["CORE-LINK"]}),
    Expect("accepts_bad_parameter", "coater", "modbus", "CTRL-MODE-ERR-001",
           "common.yaml § commands (parameters); result_codes.parameter_invalid",
           ("SetOperationMode(mode=99) answered ok", "expected parameter_invalid"), control=True),
    Expect("accepts_unknown_recipe", "winder", "opcua", "RECIPE-SELECT-ERR-001",
           "common.yaml § commands[SelectRecipe]; result_codes.no_such_object",
           ("SelectRecipe(CONFORMANCE-NO-SUCH-RECIPE) answered ok", "expected no_such_object"), control=True),
    Expect("counter_decreases", "winder", "modbus", "CORE-COUNTERS-003", "common.yaml § sub_units[counters]",
           # The defect shows on every second unit made (about one a second): an observation long enough
           # to see several even when the machine is busy.
           ("counters.processed_count went down",), options={"only": ["CORE-COUNTERS"], "observe_s": 6.0}),
    Expect("future_timestamps", "formation", "opcua", "DC-SAMPLING-003", "opcua binding: SourceTimestamp",
           ("s in the future",), options={"only": ["DC-SAMPLING"]}),
    # Published every 1.5 s, sampled every 250 ms: a window of 9 s sees five or more intervals, even when loaded.
    Expect("slow_sampling", "winder", "opcua", "DC-SAMPLING-002", "<class>.yaml § sub_units[*].variables[*].sampling_ms",
           ("tension.cathode changes every", "sampling 250 ms"), options={"only": ["DC-SAMPLING"], "observe_s": 9.0}),
    # Spec 1.1 clauses.
    Expect("e10_not_derived", "coater", "opcua", "CORE-STATE-003", "common.yaml § state_derivation; rules[state.derivation]",
           ("e10_state is SBY in Execute", "the derivation table gives PRD"), options={"only": ["CORE-STATE"]}),
    Expect("units_counted_twice", "winder", "modbus", "TRACE-UNIT-002",
           "common.yaml § sub_units[counters]; events[UnitProcessed]",
           (("counters.good_count grew by", "counters.defective_count grew by"), "UnitProcessed events with result"),
           options={"only": ["TRACE-UNIT"]}),
    Expect("health_not_derived", "formation", "opcua", "CORE-HEALTH-003", "common.yaml § rules[health.from-alarms]",
           ("device_health is CHECK_FUNCTION", "in Processing"), options={"only": ["CORE-HEALTH"]}),
    Expect("recipe_hash_1_0_text", "winder", "opcua", "RECIPE-ACTIVE-003", "common.yaml § sub_units[recipe].active_recipe_hash",
           ("its parameters hash to", "canonical text"), options={"only": ["RECIPE-ACTIVE"]}),
    Expect("mailbox_without_check", "formation", "modbus", "CORE-MODBUS-004",
           "common.yaml § rules[modbus.mailbox.check]", ("events.seq_check 0",), options={"only": ["CORE-MODBUS"]}),
    Expect("zeros_outside_map", "coater", "modbus", "CORE-MODBUS-005", "common.yaml § rules[modbus.outside-map]",
           ("reads 0", "must answer exception 2"), options={"only": ["CORE-MODBUS"]}),
    Expect("unsupported_command_answers", "coater", "opcua", "CTRL-CMD-ERR-002",
           "common.yaml § result_codes.not_supported",
           ("SelectRecipe without the Recipe profile answered no_such_object", "expected not_supported"),
           control=True, config={"profiles": ["Core", "Control", "Traceability", "DataCollection", "Coater"]}),
]
IDS = [f"{e.defect.split(':')[0]}-{e.protocol}-{e.case}" for e in EXPECT]


async def _against(e: Expect) -> Run:
    line = await start(sim_config(e.cls, e.protocol, e.defect.split(":")[0].replace("_", "-"), defects=[e.defect],
                                  **e.config))
    sim = only(line)
    if e.defect.startswith("alarm_never_clears"):
        # An occurrence raised and cleared at the panel before the kit looks (a warning: the machine runs on).
        sim.machine.raise_alarm(4)
        await asyncio.sleep(0.3)
        sim.machine.clear_alarm(4)
        await asyncio.sleep(0.3)
    # Each defect is looked for by its own group of cases (the whole kit runs against every conforming simulator);
    # commanding defects by the control cases, with control allowed.
    options: dict[str, Any] = {"only": [e.case.rsplit("-", 1)[0]], **({"allow_control": True} if e.control else {})}
    try:
        return await run_kit(line, **{**options, **e.options})
    finally:
        await line.stop()  # simulators share the test's event loop: only those under test keep running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runs() -> Any:
    return dict(zip(IDS, await at_most(PARALLEL, [_against(e) for e in EXPECT])))


async def test_the_catalogue_has_at_least_twelve_defects_and_each_is_tested():
    assert len(DEFECTS) >= 12
    assert {e.defect.split(":")[0] for e in EXPECT} == set(DEFECTS)


@pytest.mark.parametrize("e", EXPECT, ids=IDS)
async def test_the_kit_fails_naming_the_test_and_the_clause(runs, e):
    run = runs[IDS[EXPECT.index(e)]]
    assert not run.passed
    r = run.result(e.case)
    assert r.status == e.status, f"{e.case}: {r.status} {r.message}\n{failures(run)}"
    assert r.mandatory and r.failing
    assert r.case.clause == e.clause
    for text in e.says:  # a tuple among them: one of these
        assert any(t in r.message for t in ((text,) if isinstance(text, str) else text)), \
            f"{e.case}: {text!r} not in {r.message!r}"
    assert r.evidence, "a failure shows what was read or sent"
    assert r in run.failing()


async def test_a_machine_without_the_recipe_profile_answers_not_supported():
    """The conforming twin of unsupported_command_answers: the negative case passes, and only it is needed."""
    line = await start(sim_config("coater", "opcua", "no-recipe",
                                  profiles=["Core", "Control", "Traceability", "DataCollection", "Coater"]))
    try:
        run = await run_kit(line, allow_control=True, only=["CTRL-CMD"])
    finally:
        await line.stop()
    assert run.claimed_profiles == ["Core", "Control", "Traceability", "DataCollection", "Coater"]
    r = run.result("CTRL-CMD-ERR-002")
    assert r.status == "pass" and r.mandatory, r.message
    assert [q["result"] for q in run.requests if q.get("command") == "SelectRecipe"] == ["not_supported"]
    assert run.result("RECIPE-SELECT-ERR-001").status == "not_applicable"  # a profile not claimed
    assert run.passed and not run.complete  # --only left the other mandatory cases out


async def test_a_defect_is_for_the_binding_that_can_have_it():
    with pytest.raises(ValueError, match=r"wrong_unit.*opcua"):
        await SimLine().start([SimConfig("x", "winder", "modbus", defects=["wrong_unit"])])
    with pytest.raises(ValueError, match="unknown defect 'no_such_defect'"):
        await SimLine().start([SimConfig("y", "winder", "modbus", defects=["no_such_defect"])])
