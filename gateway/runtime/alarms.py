"""Alarm occurrences from what equipment shows: bit words, code lists or flags.

Equipment shows which alarms are active now; the gateway turns transitions
into occurrences (raised, cleared, acknowledged) with their own IDs and
keeps their history in the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from interface_spec import Spec


@dataclass
class Occurrence:
    occurrence_id: str
    code: int
    id: str
    text: str
    severity: int
    stop_reason: bool
    raised_ts: float
    acknowledged: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AlarmTracker:
    def __init__(self, spec: Spec, cls: str, on_change: Callable[[str, Occurrence, float, str | None], None]):
        self.catalogue = spec.alarms(cls)
        self.by_code = {a.code: a for a in self.catalogue}
        self.active: dict[int, Occurrence] = {}
        self._on_change = on_change  # (state, occurrence, ts, by)

    def codes_from_words(self, words: list[int]) -> set[int]:
        """Active codes from the native alarm bit words: bit i = i-th catalogue alarm."""
        codes = set()
        for i, alarm in enumerate(self.catalogue):
            word, bit = divmod(i, 16)
            if word < len(words) and (words[word] >> bit) & 1:
                codes.add(alarm.code)
        return codes

    def update(self, active_codes: set[int], ts: float) -> None:
        for code in active_codes - self.active.keys():
            a = self.by_code.get(code)
            if a is None:
                continue  # a code outside the catalogue is not an alarm of this class
            occ = Occurrence(str(uuid.uuid4()), code, a.id, a.text, a.severity, a.stop_reason, ts)
            self.active[code] = occ
            self._on_change("raised", occ, ts, None)
        for code in list(self.active.keys() - active_codes):
            occ = self.active.pop(code)
            self._on_change("cleared", occ, ts, None)

    def acknowledge(self, code: int, ts: float, by: str) -> Occurrence | None:
        occ = self.active.get(code)
        if occ is not None and not occ.acknowledged:
            occ.acknowledged = True
            self._on_change("acknowledged", occ, ts, by)
        return occ
