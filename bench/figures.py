"""What every benchmark reports alike: a figure's spread over runs, and the machine it ran on."""

from __future__ import annotations

import os
import statistics
import time
from typing import Any


def spread(values: list[float]) -> dict[str, float]:
    """min, median and max of a figure over the runs."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def machine() -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}


def today() -> str:
    return time.strftime("%Y-%m-%d")
