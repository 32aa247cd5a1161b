"""Bindings: the spec's native profile per protocol, found by entry point like the adapters.

A protocol package that wants its machines read without a mapping file registers a `Binding`
beside its adapter:

    [project.entry-points."linegw.bindings"]
    myproto = "my_package.binding:MyBinding"
"""

from __future__ import annotations

from importlib.metadata import entry_points

from gateway.bindings.base import (
    Binding,
    DiscoveryTimeout,
    Envelope,
    NativeIO,
    NativeLink,
    NoCommandResult,
    count_paths,
    discover_counts,
)

GROUP = "linegw.bindings"

__all__ = ["GROUP", "Binding", "DiscoveryTimeout", "Envelope", "NativeIO", "NativeLink", "NoCommandResult", "binding_for",
           "count_paths", "discover_counts", "installed_bindings"]


def installed_bindings() -> list[str]:
    return sorted(ep.name for ep in entry_points(group=GROUP))


def binding_for(protocol: str) -> Binding:
    """The native profile of a protocol; LookupError naming the installed ones when it has none."""
    for ep in entry_points(group=GROUP):
        if ep.name == protocol:
            binding = ep.load()()
            if not isinstance(binding, Binding):
                raise LookupError(f"entry point {GROUP}:{protocol} ({ep.value}) is not a gateway.bindings.Binding")
            return binding
    raise LookupError(f"protocol '{protocol}' has no native profile (entry point group {GROUP}: "
                      f"{', '.join(installed_bindings()) or 'none'}); give a mapping file")
