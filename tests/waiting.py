"""Waiting for a condition in tests: poll with a deadline, never a bare sleep.

The timeout only bounds a hang; it is not what a test measures.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Return the predicate's first truthy value (awaited if it is a coroutine)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)
