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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator


class EnergySettings(BaseModel):
    """`energy:` in the line file."""

    model_config = ConfigDict(extra="forbid")

    emission_factor: float = Field(default=0.0, ge=0, description="grid emission factor, kgCO2e per kWh")
    # 24 factors, local hours 0..23, when the grid's mix changes over the day; overrides emission_factor.
    emission_factors_by_hour: list[float] | None = Field(default=None, min_length=24, max_length=24)
    timezone: str = "UTC"
    idle: Literal["time", "count", "none"] = "time"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not an IANA time zone (e.g. Europe/Berlin)") from None
        return value

    def factor(self, t: float) -> float:
        if self.emission_factors_by_hour is None:
            return self.emission_factor
        return self.emission_factors_by_hour[datetime.fromtimestamp(t, UTC).astimezone(ZoneInfo(self.timezone)).hour]
