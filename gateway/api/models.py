"""Response and request models: the API's contract, shown in the OpenAPI docs at /docs.

Pydantic lives here, at the edge; the runtime hands over dataclasses and tuples.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class Problem(BaseModel):
    """Every 4xx/5xx answer: what is wrong and how to fix it."""

    detail: str


class UnitOut(_Out):
    code: str = Field(description="UCUM code, '1' for dimensionless")
    symbol: str


class ValueOut(_Out):
    path: str
    value: Any = Field(description="enum members as their name")
    raw: int | float | str | None = Field(
        None, description="what the machine sent: the code of an enum variable; where a vendor mapping changed the "
                          "value, the vendor's own code or unscaled number")
    unit: UnitOut
    quality: Literal["good", "uncertain", "bad"] | str
    reason: str = Field("", description="why quality is not good: out_of_range, nan, link_down, ...")
    source_ts: float
    source_time: str | None
    gateway_ts: float
    gateway_time: str | None


class ActiveAlarm(_Out):
    code: int
    id: str
    text: str
    severity: int
    stop_reason: bool = False
    raised_ts: float | None = None
    raised_time: str | None = None
    occurrence_id: str
    acknowledged: bool = False


class MachineSummary(_Out):
    id: str
    cls: str = Field(alias="class")
    available: bool
    availability: Literal["AVAILABLE", "UNAVAILABLE"]
    link_reason: str
    packml_state: str | None
    health: str | None
    active_alarms: int
    last_data_ts: float | None
    last_data_time: str | None


class LineOut(_Out):
    line: str
    machines: list[MachineSummary]


class EquipmentOut(_Out):
    id: str
    cls: str = Field(alias="class")
    protocol: str
    endpoint: str
    profile: str = Field(description="'native' or the vendor mapping file")
    identity: dict[str, Any]
    available: bool
    availability: Literal["AVAILABLE", "UNAVAILABLE"]
    link_reason: str
    state: dict[str, Any] = Field(description="state.* variables as enum names")
    packml_state: str | None
    mode: str | None = Field(description="state.operation_mode")
    authority: str | None = Field(description="state.control_authority: commands need Remote")
    health: str | None
    counts: dict[str, int]
    last_data_ts: float | None
    last_data_time: str | None
    active_alarms: list[ActiveAlarm]
    values: list[ValueOut] | None = Field(None, description="current values; omitted in the list")


class HistorySeries(_Out):
    path: str
    unit: UnitOut
    points: list[dict[str, Any]] = Field(description="raw: {ts, time, value, raw (enums), quality, reason, gateway_ts}; "
                                                     "bucketed: {ts (bucket start), time, <each agg>, bad}; aggregates "
                                                     "are over good samples, 'bad' counts the others; empty buckets have no point")


class HistoryOut(_Out):
    equipment: str
    start: float
    end: float
    start_time: str | None
    end_time: str | None
    bucket_s: float | None
    agg: list[str] | None
    series: list[HistorySeries]


class CommandBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    params: dict[str, Any] = Field(default_factory=dict, description="command parameters, per GET /api/v1/spec")


class CommandOut(_Out):
    equipment: str
    command: str
    code: int = Field(description="spec result code")
    result: str = Field(description="ok, accepted_completes_later, cannot_perform_now, parameter_invalid, ...")
    detail: str = Field(description="the reason, readable")
    state_after: str | None
    confirmed: bool = Field(description="the target state was read back from the machine")
    user: str
    role: str


class TraceNode(_Out):
    unit_id: str
    unit_type: str | None = None
    equipment: str | None = None
    event_type: str | None = None
    result: str | None = None
    reason: str | None = None
    job_id: str | None = None
    measurements: dict[str, Any] = {}
    measurement_units: dict[str, str] = {}
    source_ts: float | None = None
    source_time: str | None = None
    made_from: list[TraceNode] = []
    note: str | None = Field(None, description="why a branch ends without a UnitProcessed event")


class HealthProblem(_Out):
    """One thing wrong with the gateway, and what it costs."""

    component: Literal["store", "equipment", "forward"]
    id: str | None = Field(None, description="the machine or sink; none for the store")
    status: Literal["degraded", "failing"] = Field(description="'failing' when it means nothing is being stored")
    reason: str


class HealthOut(_Out):
    status: Literal["ok", "degraded", "failing"] = Field(
        description="ok: everything is recorded and forwarded; degraded: something is wrong (a machine, a sink, "
                    "a slow or dropping store) but data is being recorded; failing: nothing is being stored (store "
                    "commits failing past a short grace, the store stopped, or no machine delivering). HTTP 200 for "
                    "ok and degraded, 503 for failing")
    problems: list[HealthProblem] = Field([], description="why the status is not ok, worst first")
    line: str
    available: int
    unavailable: int
    equipment: dict[str, Any]
    runtime: dict[str, Any]
    store: Any
    forward: dict[str, Any] = {}  # per sink, as GET /forward


class ReadyOut(_Out):
    ready: bool = Field(description="the store is open and every machine's task has started; HTTP 200, else 503")
    reasons: list[str] = Field([], description="why not ready")


class AlarmRecord(_Out):
    """One alarm occurrence: active now (from the runtime) or stored."""

    equipment: str
    occurrence_id: str
    code: int
    id: str | None = Field(None, description="the alarm's id in the class catalogue")
    text: str
    severity: int
    stop_reason: bool = False
    active: bool
    acknowledged: bool
    raised_ts: float | None = None
    raised_time: str | None = None
    cleared_ts: float | None = None
    cleared_time: str | None = None
    acked_ts: float | None = None
    acked_time: str | None = None
    acked_by: str | None = None


class EventRecord(_Out):
    id: int
    equipment: str
    type: str
    source_ts: float
    source_time: str | None
    seq: int
    payload: dict[str, Any]
    recorded_ts: float | None = None
    recorded_time: str | None = None


class AuditRecord(_Out):
    id: int
    ts: float
    time: str | None
    user: str
    role: str
    equipment: str
    command: str
    args: dict[str, Any]
    result_code: int
    result: str
    detail: str


class ReloadOut(_Out):
    added: list[str] = Field(description="machines started")
    changed: list[str] = Field(description="machines restarted: their entry or mapping file changed")
    removed: list[str] = Field(description="machines stopped")
    unchanged: list[str] = Field(description="machines left running, untouched")
    applied: list[str] = Field(description="settings taken live beside the machines: api.keys (rotated keys)")
    needs_restart: list[str] = Field(description="sections that changed but apply only when the gateway restarts "
                                                 "(api, store, forward); they keep their running values")
