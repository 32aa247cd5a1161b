"""Random mutations of YAML files the gateway reads (line files, mapping files, the spec): shared by their tests.

A value replaced by another of any type, a key removed or added, a line of text duplicated or dropped.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["", "0", "-4", "::1", "[::1]", "fe80::1", "127.0.0.l", "modbus://h:70000", "opc.tcp://",
                     "viewer", "LINEGW_NOT_SET", "../mappings/nowhere.yaml", "../mappings", ".", "/dev/null",
                     "../mappings/sztp-winder-opcua.yaml", "sztp-winder-opcua", "tobu-winder-modbus"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def paths(node: Any, here: tuple = ()) -> list[tuple]:
    """Every place in the parsed file: mapping keys and list items, the root excluded."""
    out = [here] if here else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, here + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, here + (i,))
    return out



def mutate(data: Any, where: tuple, how: str, value: Any) -> Any:
    data = copy.deepcopy(data)
    parent = data
    for part in where[:-1]:
        parent = parent[part]
    last = where[-1]
    if how == "replace":
        parent[last] = value
    elif how == "remove":
        del parent[last]
    elif isinstance(parent, dict):  # "add": a key the format may not have
        parent[f"{last}_extra"] = value
    else:
        parent.append(value)
    return data


def text_mutate(text: str, line: int, how: str) -> str:
    lines = text.splitlines(keepends=True)
    i = line % len(lines)
    return "".join(lines[:i] + ([lines[i]] * 2 if how == "duplicate" else []) + lines[i + 1:])
