"""Any line file is either accepted or refused with `file:line: field: what`, never a traceback;
and what is accepted is taken by the run too: its plans build and its adapters start from it.

Random mutations of the demo line: a value replaced by another of any type, a key removed or
added, a line of text duplicated or dropped.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.adapters import adapter_factory
from gateway.cli import DEMO_LINE
from gateway.clitools import load_config
from gateway.config import load_line
from gateway.runtime.device import Device
from interface_spec import SpecError, load_spec
from interface_spec.vendor import VENDOR_DIR
from tests.mutations import mutate, paths, text_mutate, values

SPEC = load_spec()
DEMO = yaml.safe_load(DEMO_LINE.read_text(encoding="utf-8"))
DEMO_TEXT = yaml.safe_dump(DEMO, sort_keys=False)

PATHS = paths(DEMO)


def check(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        cfg, _ = load_config(path)  # what check-config and run read: the line file and its mapping files
    except SpecError as exc:
        for line in str(exc).splitlines():
            assert re.match(rf"^{re.escape(str(path))}:\d+: \S", line), f"not a file:line: message: {line!r}"
        return
    for eq in cfg.equipment:  # accepted by the check: the run builds its plan and its adapter as well
        dev = Device(SPEC, eq, store=None, publish=lambda message: None)
        counts = {su.id: eq.counts.get(su.id, 1) for su in SPEC.array_sub_units(eq.cls)}  # as if discovered
        plan = dev._build_plan(counts)
        adapter_factory(eq.protocol)(eq.endpoint, plan.points, dev._settings)


@pytest.fixture(scope="module")
def line_path(tmp_path_factory: Any) -> Path:
    """Where each mutated file is written, beside a copy of the shipped vendor files as ../mappings/."""
    root = tmp_path_factory.mktemp("mutations")
    (root / "lines").mkdir()
    shutil.copytree(VENDOR_DIR, root / "mappings")
    return root / "lines" / "demo.yaml"


def test_the_demo_line_passes_as_written_and_as_dumped(line_path):
    check(line_path, DEMO_LINE.read_text(encoding="utf-8"))
    check(line_path, DEMO_TEXT)
    assert [eq.id for eq in load_line(line_path, spec=SPEC).equipment] == ["coater1", "winder1", "winder2", "formation1"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(PATHS), how=st.sampled_from(["replace", "remove", "add"]), value=values)
def test_a_mutated_line_file_is_accepted_or_refused_with_file_and_line(line_path, where, how, value):
    check(line_path, yaml.safe_dump(mutate(DEMO, where, how, value), sort_keys=False, allow_unicode=True))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(line=st.integers(min_value=0, max_value=10_000), how=st.sampled_from(["duplicate", "drop"]))
def test_a_line_duplicated_or_dropped_is_accepted_or_refused_with_file_and_line(line_path, line, how):
    check(line_path, text_mutate(DEMO_LINE.read_text(encoding="utf-8"), line, how))


@pytest.mark.parametrize("value", ["modbus://h:70000", "a/b"])
def test_a_machine_name_with_a_slash_is_refused_at_its_line(line_path, value):
    """Found by the mutation test above: a machine's name is one element of its browse paths."""
    doc = yaml.safe_load(DEMO_TEXT)
    eq = next(e for e in doc["equipment"] if e["protocol"] == "opcua")
    eq["machine"] = value
    line_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with pytest.raises(SpecError, match=rf"{re.escape(str(line_path))}:\d+: .*machine"):
        load_config(line_path)
