"""The asyncua internals the OPC UA adapter relies on still exist (gateway/adapters/opcua/internals.py).

If a release renames them the adapter falls back to asyncua's public connection-lost callback and
keeps working, only noisier and later: this test is the notice that the fallback is now in use.
"""

from __future__ import annotations

from asyncua import Client
from asyncua.client.ua_client import UaClient

from gateway.adapters.opcua.internals import publish_task, state_listener_hook


def test_asyncua_still_has_the_state_listener_hook() -> None:
    uaclient = Client("opc.tcp://127.0.0.1:4840").uaclient
    hook = state_listener_hook(uaclient)
    assert hook is not None, "asyncua's UaClient._add_state_listener is gone: the adapter now uses the public callback"
    seen = []
    unsubscribe = hook(seen.append)
    assert callable(unsubscribe)
    unsubscribe()


def test_asyncua_still_has_the_publish_task() -> None:
    assert isinstance(getattr(UaClient, "_publish_task", None), property), "asyncua's UaClient._publish_task is gone"
    assert publish_task(Client("opc.tcp://127.0.0.1:4840").uaclient) is None  # no session, no publish loop


def test_the_accessors_say_none_when_the_names_are_gone() -> None:
    class Bare:
        pass

    assert state_listener_hook(Bare()) is None  # type: ignore[arg-type]  # a stand-in without asyncua's internals
    assert publish_task(Bare()) is None  # type: ignore[arg-type]  # the same
