"""Reports never break on what a machine sends: any evidence round-trips through each format's parser.

A device string may hold any code point: control characters (the Modbus
string codec passes 0x01-0x1F through), lone surrogates (asyncua decodes
invalid UTF-8 from a server with surrogateescape), non-characters. The
property test puts such strings in evidence, messages and the identity of a
run, writes every report and reads each back with its own parser: the JSON
with json, the JUnit XML with ElementTree, the HTML with html.parser; the
evidence comes back as it was, and every hash verifies.
"""

from __future__ import annotations

import json
import tempfile
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.conformance.catalogue import build_catalogue
from gateway.conformance.report import verify, write_reports
from gateway.conformance.runner import Options, Result, Run

from .conftest import SPEC

CATALOGUE = build_catalogue(SPEC).for_class("winder")
CASES = list(CATALOGUE.cases.values())
# Every code point, with the ones that broke reports drawn often: C0 and C1 controls, DEL, surrogates,
# non-characters, the XML/HTML/JSON specials.
AWKWARD = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0xD800, 0xDC80, 0xDFFF, 0xFFFE, 0xFFFF,
                            0xFEFF, 0x2028, 0x10FFFF)] + list("<>&\"'\\]]>--")
DEVICE_TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(AWKWARD)), max_size=40)
EVIDENCE = st.lists(st.fixed_dictionaries({"kind": st.sampled_from(["read", "observe"]), "target": DEVICE_TEXT,
                                           "value": st.one_of(DEVICE_TEXT, st.lists(DEVICE_TEXT, max_size=3),
                                                              st.integers())}),
                    min_size=1, max_size=3)


def a_run(evidence: list[list[dict[str, Any]]], text: str) -> Run:
    """A run whose first cases (a failure, a pass, a warning, an error) carry this evidence and messages."""
    statuses = ["fail", "pass", "warning", "error"]
    now = time.time()
    results = []
    for i, case in enumerate(CASES):
        ev = evidence[i] if i < len(evidence) else []
        status = statuses[i] if i < len(statuses) else "not_applicable"
        results.append(Result(case, status, f"the machine sent {text}" if ev else "", ev, status != "not_applicable",
                              now, 0.01))
    identity = {k: text for k in ("manufacturer", "model", "serial_number", "software_revision")}
    return Run(Options(cls="winder", protocol="modbus", endpoint="127.0.0.1:502"), CATALOGUE, results, identity,
               ["Core"], ["Core"], now, now + 1, SPEC.version, notes=[f"note {text}"])


class Pre(HTMLParser):
    """The text of every <pre> (the evidence of each case), character references resolved."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "pre":
            self._in = True
            self.found.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self._in = False

    def handle_data(self, data: str) -> None:
        if self._in:
            self.found[-1] += data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(evidence=st.lists(EVIDENCE, min_size=4, max_size=4), text=DEVICE_TEXT)
def test_any_evidence_round_trips_through_every_report(evidence, text):
    run = a_run(evidence, text)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_reports(run, folder)
        for kind in ("json", "junit", "html", "statement"):
            assert verify(paths[kind])[0], kind
            paths[kind].read_bytes().decode("utf-8")  # strictly valid UTF-8

        doc = json.loads(paths["json"].read_text(encoding="utf-8"))
        tests = {t["id"]: t for p in doc["results"].values() for u in p.values() for t in u["tests"]}
        for i, ev in enumerate(evidence):
            assert tests[CASES[i].id]["evidence"] == ev
            assert tests[CASES[i].id]["message"] == f"the machine sent {text}"
        assert doc["equipment"]["identity"]["model"] == text

        root = ET.parse(paths["junit"]).getroot()
        cases = {c.get("name").split()[0]: c for c in root.iter("testcase")}
        for i, ev in enumerate(evidence):
            props = {p.get("name"): p.get("value") for p in cases[CASES[i].id].find("properties")}
            assert json.loads(props["evidence"]) == ev
        assert cases[CASES[0].id].find("failure").get("message").startswith("the machine sent")

        pre = Pre()
        pre.feed(paths["html"].read_text(encoding="utf-8"))
        assert [json.loads(t) for t in pre.found] == evidence


def test_verify_accepts_reports_whose_evidence_has_alarm_code_keys():
    """Evidence keyed by alarm code (ints) reads back with string keys: the hash is over what reads back, so the
    report the kit wrote verifies, and an edit of one of those values still does not."""
    evidence = [[{"kind": "read", "target": "alarms.active", "value": {1001: "active", 2: "cleared"}}],
                [{"kind": "observe", "target": "events", "value": (1, 2.5, None)}], [], []]
    run = a_run(evidence, "alarm codes")
    with tempfile.TemporaryDirectory() as folder:
        paths = write_reports(run, folder)
        for kind in ("json", "junit", "html", "statement"):
            assert verify(paths[kind])[0], kind
        doc = json.loads(paths["json"].read_text(encoding="utf-8"))
        tests = {t["id"]: t for p in doc["results"].values() for u in p.values() for t in u["tests"]}
        assert tests[CASES[0].id]["evidence"][0]["value"] == {"1001": "active", "2": "cleared"}
        edited = paths["json"].read_text(encoding="utf-8").replace('"1001": "active"', '"1001": "cleared"')
        assert edited != paths["json"].read_text(encoding="utf-8")
        paths["json"].write_text(edited, encoding="utf-8")
        ok, carried, actual = verify(paths["json"])
        assert not ok and carried != actual
