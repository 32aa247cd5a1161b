"""The spec-level machine: state machine table, authority, events, alarms, recipes, jobs, counters."""

from __future__ import annotations

import hashlib

import pytest

from interface_spec.model import SelfDescription
from interface_spec.recipes import recipe_hash
from simulators.machine import Machine

from .harness import step_machine

ACTING_FOREVER = 1e9  # acting states stay put, so the table's acting state is observable


def make(spec, cls: str = "coater", **kw) -> Machine:
    return Machine(spec, cls, "m1", counts={"channel": 4} if cls == "formation" else None, **kw)


def codes(spec) -> dict[str, int]:
    return spec.result_codes


def of_type(m: Machine, event_type: str) -> list[dict]:
    return [e for e in m.events if e["type"] == event_type]


def run(m: Machine) -> None:
    """Reset and Start, through the acting states."""
    m.execute("Reset")
    step_machine(m, lambda: m.state() == "Idle", "Idle")
    m.execute("Start")
    step_machine(m, lambda: m.state() == "Execute", "Execute")


def test_every_packml_command_in_every_state_does_what_the_table_says(spec):
    for state in spec.core.packml.states:
        for command in spec.core.packml.commands:
            m = make(spec, acting_s=ACTING_FOREVER)
            m.set_packml_state(state)
            expected = spec.packml_command(state, command)
            assert m.execute(command) == codes(spec)[expected.result], (state, command)
            after = expected.acting or expected.target if expected.target else state
            assert m.state() == after, (state, command)


def test_table_spot_checks(spec):
    m = make(spec, acting_s=ACTING_FOREVER)
    m.set_packml_state("Idle")
    assert m.execute("Start") == codes(spec)["accepted_completes_later"]
    m.set_packml_state("Execute")
    assert m.execute("Start") == codes(spec)["already_in_state"]
    assert m.execute("Reset") == codes(spec)["cannot_perform_now"]
    assert m.execute("Teleport") == codes(spec)["invalid_command"]


def test_acting_states_complete_and_report_completion(spec):
    m = make(spec, acting_s=2.0)
    assert m.state() == "Stopped"
    assert m.execute("Reset") == codes(spec)["accepted_completes_later"]
    assert m.state() == "Resetting"
    m.tick(1.0)
    assert m.state() == "Resetting"
    m.tick(1.5)
    assert m.state() == "Idle"
    done = of_type(m, "CommandCompleted")
    assert [e["payload"] for e in done] == [{"command": "Reset", "result": "ok"}]


def test_commands_need_remote_authority_except_from_the_local_panel(spec):
    m = make(spec)
    m.set_control_authority("Local")
    for command in spec.commands:
        if command in spec.core.packml.commands or not spec.commands[command].params:
            assert m.execute(command) == codes(spec)["cannot_perform_now"], command
    assert m.state() == "Stopped"
    assert m.execute("Reset", source="local") == codes(spec)["accepted_completes_later"]
    m.set_control_authority("Remote")
    changes = [e["payload"] for e in of_type(m, "StateChanged") if e["payload"]["variable"] == "control_authority"]
    assert changes == [{"variable": "control_authority", "previous": "Remote", "current": "Local"},
                       {"variable": "control_authority", "previous": "Local", "current": "Remote"}]


def test_state_changes_are_events_with_the_previous_value(spec):
    m = make(spec)
    run(m)
    for variable in ("packml_state", "item_state", "e10_state"):
        chain = [e["payload"] for e in of_type(m, "StateChanged") if e["payload"]["variable"] == variable]
        assert chain, variable
        for before, after in zip(chain, chain[1:]):
            assert after["previous"] == before["current"]
        enum = spec.variable("coater", f"state.{variable}").var.enum
        assert m.get(f"state.previous_{variable}") == spec.enum(enum)[chain[-1]["previous"]]
        assert m.get(f"state.{variable}") == spec.enum(enum)[chain[-1]["current"]]
    packml = [e["payload"]["current"] for e in of_type(m, "StateChanged") if e["payload"]["variable"] == "packml_state"]
    assert packml == ["Resetting", "Idle", "Starting", "Execute"]
    assert m.state("item_state") == "Executing" and m.state("e10_state") == "PRD"


def test_event_envelopes_have_consecutive_sequence_numbers_from_one(spec):
    m = make(spec)
    run(m)
    seqs = [e["seq"] for e in m.events]
    assert seqs == list(range(1, len(seqs) + 1))
    for e in m.events:
        assert set(e) == {"type", "equipment", "source_ts", "seq", "payload"}
        assert e["equipment"] == "m1" and e["type"] in spec.events
    assert m.last_seq == seqs[-1]


def test_the_event_ring_keeps_at_least_a_thousand_events(spec):
    m = make(spec)
    for _ in range(1500):
        m.emit("CountersReset", {})
    assert len(m.events) >= 1000
    assert m.event(1) is None
    assert m.event(1500)["seq"] == 1500
    oldest = m.events[0]["seq"]
    assert [e["seq"] for e in m.events_from(oldest - 10, 3)] == [oldest, oldest + 1, oldest + 2]
    assert m.events_from(1501) == []


def test_alarms_raise_clear_and_acknowledge(spec):
    m = make(spec)
    catalogue = spec.alarms("coater")
    alarm = next(a for a in catalogue if not a.stop_reason)
    index = catalogue.index(alarm)
    occ = m.raise_alarm(alarm.code)
    assert m.active_alarm_codes() == [alarm.code]
    words = m.alarm_words()
    assert words[index // 16] == 1 << (index % 16) and sum(words) == words[index // 16]
    assert m.raise_alarm(alarm.code) is occ  # no second occurrence while active
    assert m.execute("AcknowledgeAlarm", {"alarm_code": alarm.code}) == codes(spec)["ok"]
    assert m.execute("AcknowledgeAlarm", {"alarm_code": alarm.code}) == codes(spec)["already_in_state"]
    m.clear_alarm(alarm.code)
    assert m.active_alarm_codes() == [] and m.alarm_words() == [0] * spec.core.modbus.alarm_words
    kinds = [(e["type"], e["payload"]["occurrence_id"]) for e in m.events if e["type"].startswith("Alarm")]
    assert kinds == [("AlarmRaised", occ.occurrence_id), ("AlarmAcknowledged", occ.occurrence_id),
                     ("AlarmCleared", occ.occurrence_id)]
    assert m.execute("AcknowledgeAlarm", {"alarm_code": 99999}) == codes(spec)["no_such_object"]
    assert m.execute("AcknowledgeAlarm", {"alarm_code": "1001"}) == codes(spec)["parameter_invalid"]
    # Cleared before acknowledged: the occurrence waits for its acknowledgement.
    m.raise_alarm(alarm.code)
    m.clear_alarm(alarm.code)
    assert m.execute("AcknowledgeAlarm", {"alarm_code": alarm.code}) == codes(spec)["ok"]
    assert m.execute("AcknowledgeAlarm", {"alarm_code": alarm.code}) == codes(spec)["no_such_object"]


def test_a_process_stop_reason_holds_the_machine_as_unscheduled_downtime(spec):
    m = make(spec)
    run(m)
    web_break = next(a for a in spec.alarms("coater") if a.stop_reason and a.category != "safety")
    m.raise_alarm(web_break.code)
    assert m.state() == "Holding" and m.state("e10_state") == "UDT"
    step_machine(m, lambda: m.state() == "Held", "Held")
    assert m.state("e10_state") == "UDT" and m.stop_reason == web_break.code
    assert m.get("health.device_health") == spec.enum("device_health")["FAILURE"]
    m.clear_alarm(web_break.code)
    assert m.state() == "Held"  # clearing the cause does not restart the machine
    assert m.execute("Unhold") == codes(spec)["accepted_completes_later"]
    step_machine(m, lambda: m.state() == "Execute", "Execute")
    assert m.stop_reason is None and m.state("e10_state") == "PRD"


def test_a_safety_stop_reason_aborts_the_machine_and_the_job(spec):
    m = make(spec)
    m.execute("Reset")
    step_machine(m, lambda: m.state() == "Idle", "Idle")
    m.execute("Start", {"job_id": "LOT-7"})
    step_machine(m, lambda: m.state() == "Execute", "Execute")
    estop = next(a for a in spec.alarms("coater") if a.stop_reason and a.category == "safety")
    m.raise_alarm(estop.code)
    assert m.state() == "Aborting"
    step_machine(m, lambda: m.state() == "Aborted", "Aborted")
    assert m.state("item_state") == "OutOfService" and m.state("e10_state") == "UDT"
    aborted = of_type(m, "JobAborted")
    assert [e["payload"]["job_id"] for e in aborted] == ["LOT-7"]
    assert str(estop.code) in aborted[0]["payload"]["reason"]


def test_an_operator_stop_is_scheduled_downtime(spec):
    m = make(spec)
    run(m)
    m.execute("Hold")
    step_machine(m, lambda: m.state() == "Held", "Held")
    assert m.state("e10_state") == "SDT"


def test_a_job_runs_from_start_to_stop_with_its_counts(spec):
    m = make(spec)
    m.execute("Reset")
    step_machine(m, lambda: m.state() == "Idle", "Idle")
    assert m.execute("Start", {"job_id": "LOT-1"}) == codes(spec)["accepted_completes_later"]
    assert of_type(m, "JobStarted") == []  # only once Execute is reached
    step_machine(m, lambda: m.state() == "Execute", "Execute")
    assert [e["payload"]["job_id"] for e in of_type(m, "JobStarted")] == ["LOT-1"]
    assert m.get("job.job_id") == "LOT-1"
    m.unit_processed("EC-1", True, ["AL-1"], {"length": 10.0})
    m.unit_processed("EC-2", False, ["AL-2"], {"length": 9.0}, reason="cv")
    unit = of_type(m, "UnitProcessed")[-1]["payload"]
    assert unit["job_id"] == "LOT-1" and unit["result"] == "reject" and unit["reason"] == "cv"
    assert unit["unit_type"] == spec.get_class("coater").processed_unit
    m.execute("Stop")
    step_machine(m, lambda: m.state() == "Stopped", "Stopped")
    assert [e["payload"] for e in of_type(m, "JobCompleted")] == [{"job_id": "LOT-1", "good": 1, "defective": 1}]
    assert (m.get("counters.processed_count"), m.get("counters.good_count"), m.get("counters.defective_count")) == (2, 1, 1)
    assert m.execute("ResetCounters") == codes(spec)["ok"]
    assert m.get("counters.processed_count") == 0 and of_type(m, "CountersReset")
    assert m.execute("Start", {"job_id": 5}) == codes(spec)["cannot_perform_now"]  # state first: Stopped
    m.execute("Reset")
    step_machine(m, lambda: m.state() == "Idle", "Idle")
    assert m.execute("Start", {"job_id": 5}) == codes(spec)["parameter_invalid"]


def test_operation_mode_sets_unit_mode_and_time_states(spec):
    m = make(spec)
    assert m.execute("SetOperationMode", {"mode": "Maintenance"}) == codes(spec)["ok"]
    assert (m.state("operation_mode"), m.state("unit_mode")) == ("Maintenance", "Maintenance")
    assert (m.state("item_state"), m.state("e10_state")) == ("OutOfService", "SDT")
    assert m.execute("SetOperationMode", {"mode": "Maintenance"}) == codes(spec)["already_in_state"]
    assert m.execute("SetOperationMode", {"mode": "Turbo"}) == codes(spec)["parameter_invalid"]
    assert m.execute("SetOperationMode", {}) == codes(spec)["parameter_invalid"]
    assert m.execute("SetOperationMode", {"mode": spec.enum("operation_mode")["Processing"]}) == codes(spec)["ok"]
    assert m.state("e10_state") == "SBY"
    run(m)
    assert m.execute("SetOperationMode", {"mode": "Setup"}) == codes(spec)["cannot_perform_now"]


def test_recipes_are_validated_hashed_selected_and_rejected(spec):
    m = make(spec)
    params = {"line_speed": 30.0, "pump_flow": 2500.0, "dryer_temperature": 120.0,
              "areal_weight_target": 20.0, "roll_length": 500.0}
    assert m.put_recipe("R1", params) == (codes(spec)["ok"], "")
    # RFC 8785 text, written out by hand: keys sorted, whole-number floats without ".0".
    canonical = ('{"equipment_class":"coater","id":"R1","parameters":{"areal_weight_target":20,"dryer_temperature":120,'
                 '"line_speed":30,"pump_flow":2500,"roll_length":500},"version":1}')
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert m.recipes["R1"].hash == expected == recipe_hash("coater", "R1", 1, params)
    assert of_type(m, "RecipeChanged")[-1]["payload"] == {"recipe_id": "R1", "version": 1, "hash": expected}

    code, reason = m.put_recipe("R2", {**params, "line_speed": 900.0})
    assert code == codes(spec)["parameter_invalid"] and "line_speed" in reason
    assert of_type(m, "RecipeRejected")[-1]["payload"]["recipe_id"] == "R2"
    assert m.put_recipe("R3", {**params, "speed": 1.0})[0] == codes(spec)["parameter_invalid"]
    assert m.put_recipe("R4", {k: v for k, v in params.items() if k != "pump_flow"})[0] == codes(spec)["parameter_invalid"]

    assert m.execute("SelectRecipe", {"recipe_id": "NOPE"}) == codes(spec)["no_such_object"]
    assert m.execute("SelectRecipe", {"recipe_id": 7}) == codes(spec)["parameter_invalid"]
    assert m.execute("SelectRecipe", {"recipe_id": "R1"}) == codes(spec)["ok"]
    assert (m.get("recipe.active_recipe_id"), m.get("recipe.active_recipe_version"),
            m.get("recipe.active_recipe_hash")) == ("R1", 1, expected)
    assert of_type(m, "RecipeActivated")[-1]["payload"]["recipe_id"] == "R1"
    assert m.put_recipe("R1", params)[0] == codes(spec)["ok"] and m.recipes["R1"].version == 2
    run(m)
    assert m.execute("SelectRecipe", {"recipe_id": "R1"}) == codes(spec)["cannot_perform_now"]


def test_heartbeat_counts_wall_clock_periods_whatever_the_time_scale(spec):
    m = make(spec, time_scale=1000.0)
    m.tick(500.0)  # half a wall second
    assert m.get("status.heartbeat") == 0
    m.tick(600.0)
    assert m.get("status.heartbeat") == 1
    m.tick(10.0, dt_wall=3.0)
    assert m.get("status.heartbeat") == 4


def test_time_counters_accumulate_per_e10_state(spec):
    m = make(spec)
    m.tick(30.0)
    assert m.get("counters.time_sby") == 30
    run(m)
    m.tick(100.0)
    assert m.get("counters.time_prd") >= 100


def test_strings_longer_than_the_spec_allows_are_refused(spec):
    m = make(spec)
    with pytest.raises(ValueError, match="longer than 24"):
        m.set("rewinder.roll_id", "X" * 25)
    assert not m.write("rewinder.roll_id", "EC-1")  # read-only
    assert m.write("web.line_speed_setpoint", 45)
    assert not m.write("web.line_speed_setpoint", 1e6)
    assert m.get("web.line_speed_setpoint") == 45.0


def test_self_description_is_valid_and_names_the_counts(spec):
    for cls in spec.classes:
        m = make(spec, cls)
        desc = SelfDescription.model_validate(m.self_description())
        assert desc.equipment_class == cls and desc.spec_version == spec.version
        assert set(desc.counts) == {su.id for su in spec.array_sub_units(cls)}
        assert desc.profiles == spec.profiles(cls)


def test_identification_comes_from_the_constructor(spec):
    m = make(spec, identification={"manufacturer": "ACME", "serial_number": "42"})
    assert m.get("identification.manufacturer") == "ACME" and m.get("identification.serial_number") == "42"
    assert m.get("identification.equipment_class") == "coater"
    assert m.get("identification.spec_version") == spec.version
