"""What the runtime offers to the API and other readers (the northbound view).

The API depends on this protocol only, never on adapters or the runtime's
internals. Samples are `gateway.samples.Sample`; the store is a
`gateway.store.base.Store`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.samples import Sample


@dataclass
class EquipmentView:
    """The live picture of one machine, as the API shows it."""

    id: str
    cls: str  # equipment class: coater, winder, formation
    protocol: str  # opcua, modbus, or a plug-in adapter name
    endpoint: str
    profile: str  # "native" or the mapping file name
    available: bool = False
    link_reason: str = ""  # why unavailable
    identity: dict[str, Any] = field(default_factory=dict)  # identification.* without the prefix
    state: dict[str, Any] = field(default_factory=dict)  # state.* as enum names: {"packml_state": "Execute", ...}
    health: str | None = None
    active_alarms: list[dict[str, Any]] = field(default_factory=list)  # {code, id, text, severity, raised_ts, occurrence_id, acknowledged}
    last_data_ts: float | None = None
    counts: dict[str, int] = field(default_factory=dict)  # array sizes, e.g. {"channel": 64}


@dataclass
class CommandResult:
    command: str
    code: int  # spec result code
    result: str  # result code name: ok, cannot_perform_now, ...
    detail: str  # human-readable reason
    state_after: str | None = None  # packml state read back, when confirmed
    confirmed: bool = False  # the state change was read back within the timeout


@dataclass
class LiveMessage:
    """One WebSocket message: kind 'samples' | 'state' | 'alarm' | 'event' | 'link' (gateway/api/routes/live.py)."""

    kind: str
    equipment: str
    data: dict[str, Any]


class LineView(Protocol):
    line_id: str

    def equipment(self) -> list[EquipmentView]: ...

    def get(self, equipment_id: str) -> EquipmentView | None: ...

    def current(self, equipment_id: str) -> list[Sample]:
        """Latest sample of every path of the machine."""

    async def command(
        self, equipment_id: str, command: str, params: dict[str, Any], user: str, role: str
    ) -> CommandResult: ...

    def live(self, max_queue: int = 1000, overflow: asyncio.Event | None = None,
             equipment: str | None = None) -> AsyncGenerator[LiveMessage, None]:
        """Live messages for one subscriber, of one machine or (None) all; a slow subscriber loses the oldest
        (counted), and `overflow` is set."""

    def health(self) -> dict[str, Any]: ...
