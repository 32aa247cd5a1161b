"""`energy:` in the line file: the grid's emission factor and how idle energy is spread (gateway/analytics/energy.py).

```yaml
energy:
  emission_factor: 0.38            # kgCO2e per kWh
  emission_factors_by_hour: [...]  # or 24 factors, local hours 0..23, when the grid's mix changes over the day
  timezone: Europe/Berlin          # the hours' time zone; UTC when left out
  idle: time                       # time (default), count or none
```
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from gateway.analytics.shifts import TimeZone


class EnergySettings(BaseModel):
    """`energy:` in the line file."""

    model_config = ConfigDict(extra="forbid")

    emission_factor: float = Field(default=0.0, ge=0, description="grid emission factor, kgCO2e per kWh")
    # 24 factors, local hours 0..23, when the grid's mix changes over the day; overrides emission_factor.
    emission_factors_by_hour: list[float] | None = Field(default=None, min_length=24, max_length=24)
    timezone: TimeZone = "UTC"
    idle: Literal["time", "count", "none"] = "time"

    def asked(self, idle: str | None = None, factor: float | None = None) -> EnergySettings:
        """These settings with what one request or command asks instead: an idle rule, one emission factor."""
        changes: dict[str, object] = {"idle": idle} if idle else {}
        if factor is not None:
            changes.update(emission_factor=factor, emission_factors_by_hour=None)
        return self.model_copy(update=changes)

    def factor(self, t: float) -> float:
        if self.emission_factors_by_hour is None:
            return self.emission_factor
        return self.emission_factors_by_hour[datetime.fromtimestamp(t, UTC).astimezone(ZoneInfo(self.timezone)).hour]
