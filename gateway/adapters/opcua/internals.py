"""The two places the OPC UA adapter reaches inside asyncua, kept here and tested.

asyncua 2.1.0 has no public hook for either:

* the transport's state change, as it happens (`UaClient._add_state_listener`): the public
  `Client.connection_lost_callback` fires later, after asyncua's publish loop has already
  logged a traceback for the publish request the lost socket failed;
* its publish loop's task (`UaClient._publish_task`), which asyncua cancels on close but never
  awaits: a reconnect that does not wait for it overlaps two publish loops.

Where the private name is gone, each function says so (None) and the adapter falls back to
the public callback. tests/unit/test_asyncua_internals.py fails the day a release renames them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asyncua.client.ua_client import UaClient, UaClientState

StateListener = Callable[[UaClientState], None]


def state_listener_hook(uaclient: UaClient) -> Callable[[StateListener], Callable[[], None]] | None:
    """asyncua's internal registration of a synchronous transport-state listener, or None."""
    hook: Callable[[StateListener], Callable[[], None]] | None = getattr(uaclient, "_add_state_listener", None)
    return hook


def publish_task(uaclient: UaClient) -> asyncio.Task[Any] | None:
    """asyncua's running publish loop, or None."""
    task: asyncio.Task[Any] | None = getattr(uaclient, "_publish_task", None)
    return task
