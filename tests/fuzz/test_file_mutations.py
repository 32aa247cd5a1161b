"""Any mapping file and any spec file is either accepted or refused with `file:line: field: what`, never a traceback.

Random mutations (tests/mutations.py) of every shipped mapping file and of the spec's own files. A mapping that is
accepted must also build its plan and the adapter's compiled points, as a run would; a spec that is accepted must
build each class's Modbus layout and conformance catalogue.
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
from gateway.conformance.catalogue import build_catalogue
from gateway.mapping.compile import load_mapping, mapped_plan
from interface_spec import SpecError, load_spec
from interface_spec.modbus_map import layout
from interface_spec.spec import SPEC_DIR
from interface_spec.vendor import VENDOR_DIR
from tests.mutations import mutate, paths, text_mutate, values

SPEC = load_spec()
MAPPINGS = sorted(VENDOR_DIR.glob("*.yaml"))
PARSED = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in MAPPINGS}
PLACES = [(name, where) for name, doc in PARSED.items() for where in paths(doc)]
SPEC_FILES = sorted(SPEC_DIR.glob("*.yaml"))
SPEC_PARSED = {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in SPEC_FILES}
SPEC_PLACES = [(name, where) for name, doc in SPEC_PARSED.items() for where in paths(doc)]
ENDPOINTS = {"modbus": "127.0.0.1:1502", "opcua": "opc.tcp://127.0.0.1:4840/x"}


def refused_at_lines(exc: SpecError, folder: Path) -> None:
    for line in str(exc).splitlines():
        assert re.match(rf"^{re.escape(str(folder))}/\S+:\d+: \S", line) or re.match(
            rf"^{re.escape(str(folder))}/\S+: \S", line), f"not a file:line: message: {line!r}"


def check_mapping(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    try:
        mapping = load_mapping(path, SPEC)
    except SpecError as exc:
        refused_at_lines(exc, path.parent)
        return
    counts = {su.id: 2 for su in SPEC.array_sub_units(mapping.cls)}
    plan = mapped_plan(SPEC, "eq", mapping, counts)
    adapter_factory(mapping.protocol)(ENDPOINTS[mapping.protocol], plan.points, {})


@pytest.fixture(scope="module")
def folder(tmp_path_factory: Any) -> Path:
    return tmp_path_factory.mktemp("mapping-mutations")


def test_every_shipped_mapping_passes_as_dumped(folder):
    for name, doc in PARSED.items():
        check_mapping(folder / name, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    assert len(PLACES) > 300


@settings(max_examples=250, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(PLACES), how=st.sampled_from(["replace", "remove", "add"]), value=values)
def test_a_mutated_mapping_is_accepted_or_refused_with_file_and_line(folder, place, how, value):
    name, where = place
    check_mapping(folder / name, yaml.safe_dump(mutate(PARSED[name], where, how, value), sort_keys=False,
                                                allow_unicode=True))


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mapping=st.sampled_from(MAPPINGS), line=st.integers(0, 10_000), how=st.sampled_from(["duplicate", "drop"]))
def test_a_mapping_line_duplicated_or_dropped_is_accepted_or_refused(folder, mapping, line, how):
    check_mapping(folder / mapping.name, text_mutate(mapping.read_text(encoding="utf-8"), line, how))


def check_spec(folder: Path, name: str, text: str) -> None:
    for f in SPEC_FILES:
        shutil.copy(f, folder / f.name)
    (folder / name).write_text(text, encoding="utf-8")
    try:
        spec = load_spec.__wrapped__(folder)  # not the cached spec: a fresh load of the mutated files
    except SpecError as exc:
        refused_at_lines(exc, folder)
        return
    for cls in spec.classes:
        layout(spec.core, spec.get_class(cls))
    build_catalogue(spec)


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(place=st.sampled_from(SPEC_PLACES), how=st.sampled_from(["replace", "remove", "add"]), value=values)
def test_a_mutated_spec_is_accepted_or_refused_with_file_and_line(tmp_path_factory, place, how, value):
    name, where = place
    folder = tmp_path_factory.mktemp("spec")
    check_spec(folder, name, yaml.safe_dump(mutate(SPEC_PARSED[name], where, how, value), sort_keys=False,
                                            allow_unicode=True))
