"""Reports: JUnit XML that parses, JSON with the hierarchy and evidence, self-contained HTML, a compliance
statement; every one stamped and carrying a SHA-256 that verifies, and fails once the content changes.
The `linegw conformance` command end to end: exit 0 on a conforming machine tested completely, 1 on a
defective one, 3 when mandatory cases were not run; each result that is not a pass is printed as it is decided.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from gateway.conformance.report import FILES, verify, write_reports
from gateway.conformance.runner import Options, Result, run_conformance
from simulators.simulator import Simulator

from .conftest import KIT, PARALLEL, SPEC, Operator, at_most, endpoint, only, produce, run_kit, sim_config, start

pytestmark = pytest.mark.asyncio(loop_scope="module")
LINEGW = str(Path(sys.executable).with_name("linegw"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def reports(tmp_path_factory) -> Any:
    good_line, bad_line = await asyncio.gather(
        start(sim_config("winder", "modbus", "good")),
        start(sim_config("coater", "opcua", "bad", defects=["out_of_range:path=web.line_speed"])))
    try:
        good, bad = await at_most(PARALLEL, [run_kit(good_line, allow_control=True), run_kit(bad_line)])
        # Only the self-description and identification: passed, but far from complete.
        incomplete = await run_kit(good_line, only=["CORE-SELF", "CORE-IDENT"], observe_s=0.5)
        runs = {"good": good, "bad": bad, "incomplete": incomplete}
        out = {kind: write_reports(run, tmp_path_factory.mktemp(kind)) for kind, run in runs.items()}
        yield {"runs": runs, "paths": out, "lines": {"good": good_line, "bad": bad_line}}
    finally:
        await good_line.stop()
        await bad_line.stop()


async def test_junit_has_a_suite_per_conformance_unit_with_profile_clause_and_severity(reports):
    for kind in ("good", "bad"):
        run, path = reports["runs"][kind], reports["paths"][kind]["junit"]
        root = ET.parse(path).getroot()
        assert root.tag == "testsuites" and int(root.get("tests")) == len(run.results)
        suites = root.findall("testsuite")
        assert [s.get("name") for s in suites] == list(run.catalogue.units)
        stamp = {p.get("name"): p.get("value") for p in root.find("properties")}
        assert stamp["spec_version"] == run.spec_version and stamp["kit_version"] == run.kit_version
        assert stamp["software_version"] == run.identity["software_revision"] and stamp["identity.serial_number"]
        for case in root.iter("testcase"):
            props = {p.get("name"): p.get("value") for p in case.find("properties")}
            assert {"profile", "clause", "severity", "mandatory", "status"} <= set(props)
            if props["status"] == "not_applicable":
                assert case.find("skipped") is not None
    failed = [c for c in ET.parse(reports["paths"]["bad"]["junit"]).getroot().iter("testcase")
              if c.find("failure") is not None]
    assert [c.get("name").split()[0] for c in failed] == ["COATER-WEB-002"]
    assert "web.line_speed" in failed[0].find("failure").get("message")
    assert int(ET.parse(reports["paths"]["good"]["junit"]).getroot().get("failures")) == 0


async def test_json_keeps_profile_unit_test_with_evidence_and_the_stamp(reports):
    for kind in ("good", "bad"):
        run = reports["runs"][kind]
        doc = json.loads(reports["paths"][kind]["json"].read_text())
        assert doc["verdict"] == ("pass" if kind == "good" else "fail")
        assert doc["spec_version"] == SPEC.version and doc["kit_version"] == run.kit_version
        eq = doc["equipment"]
        assert eq["class"] == run.options.cls and eq["identity"]["manufacturer"] and eq["identity"]["serial_number"]
        assert doc["software_version"] == eq["identity"]["software_revision"] != ""
        tests = [t for units in doc["results"].values() for unit in units.values() for t in unit["tests"]]
        assert len(tests) == len(run.results) and sum(doc["summary"].values()) == len(tests)
        assert list(doc["results"]) == [p for p in run.catalogue.profiles if p in doc["results"]]
        for t in tests:
            assert {"id", "description", "clause", "severity", "mandatory", "status", "message", "evidence"} <= set(t)
            assert t["status"] in doc["summary"]
    bad = json.loads(reports["paths"]["bad"]["json"].read_text())
    web = bad["results"]["Coater"]["COATER-WEB"]["tests"]
    failed = next(t for t in web if t["id"] == "COATER-WEB-002")
    assert failed["status"] == "fail" and failed["clause"] == "coater.yaml § sub_units[web].variables"
    assert failed["evidence"][0]["target"] == "web.line_speed" and failed["evidence"][0]["expected"] == "0..150 m/min"
    good = json.loads(reports["paths"]["good"]["json"].read_text())
    # What was sent to the machine, as evidence of the behaviour layer.
    assert [r for r in good["requests"] if r["kind"] == "command" and r["command"] == "Start"
            and r["params"].get("job_id", "").startswith("CONF-") and r["result"] == "accepted_completes_later"]


async def test_html_is_one_self_contained_page(reports):
    text = reports["paths"]["bad"]["html"].read_text()
    assert text.startswith("<!DOCTYPE html>") and "</html>" in text
    for outside in ("<script", "src=", "<link", "href=\"http", "@import", "url("):
        assert outside not in text, outside
    run = reports["runs"]["bad"]
    assert all(f'id="{r.case.id}"' in text for r in run.results)
    assert "DOES NOT CONFORM" in text and run.identity["serial_number"] in text


async def test_compliance_statement_lists_capabilities(reports):
    text = reports["paths"]["good"]["statement"].read_text()
    assert "| Capability | Profile | Implemented | Compliant | Tests |" in text
    assert "| CTRL-PACKML PackML state machine | Control | yes | yes |" in text
    assert "| Control | yes | yes | yes |" in text  # claimed, completely tested (--allow-control), compliant
    assert "Software version" in text and "Kit version" in text and "CONFORMS" in text
    assert "## Not tested" not in text
    bad = reports["paths"]["bad"]["statement"].read_text()
    # Claimed, not run without --allow-control: never "compliant", and each case left out is listed.
    assert re.search(r"\| Control \| yes \| no \(\d+ not tested: run with --allow-control\) \| not tested \|", bad)
    assert "**COATER-WEB-002**" in bad
    assert "## Not tested" in bad and "- **CTRL-PACKML-001** (Control" in bad


async def test_a_run_that_leaves_mandatory_cases_out_is_incomplete_in_every_report(reports):
    run, paths = reports["runs"]["incomplete"], reports["paths"]["incomplete"]
    assert run.passed and not run.complete
    untested = run.untested()
    assert untested and all(r.status == "not_tested" and r.mandatory for r in untested)
    assert {r.case.profile for r in untested} >= {"Control", "Recipe", "Traceability", "Core"}  # --only left Core out
    doc = json.loads(paths["json"].read_text())
    assert doc["verdict"] == "incomplete" and doc["summary"]["not_tested"] == len(
        [r for r in run.results if r.status == "not_tested"])
    statement = paths["statement"].read_text()
    assert "**Verdict: INCOMPLETE:" in statement and "CONFORMS" not in statement
    assert "| Core | yes | partly (" in statement  # some Core cases ran, others were not selected
    assert not re.search(r"\| Control \| yes \| [^|]* \| yes \|", statement)
    skipped = [c for c in ET.parse(paths["junit"]).getroot().iter("testcase")
               if (c.find("skipped") is not None and c.find("skipped").get("message").startswith("not_tested (mandatory)"))]
    assert len(skipped) == len(untested)


async def test_every_report_carries_a_hash_that_verifies_and_breaks_when_edited(reports, tmp_path):
    paths = reports["paths"]["good"]
    for kind in FILES:
        ok, carried, actual = verify(paths[kind])
        assert ok and carried == actual and len(carried) == 64, kind
    # The guide's shell recipe for the text formats, and sha256sum -c for the files as written.
    html = paths["html"]
    out = subprocess.run(["sh", "-c", f"head -n -1 '{html}' | sha256sum"], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == verify(html)[1]
    sums = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=paths["sums"].parent, capture_output=True, text=True)
    assert sums.returncode == 0, sums.stdout
    for kind, old, new in (("json", '"status": "pass"', '"status": "fail"'), ("junit", "winder", "coater"),
                           ("html", "pass", "fail"), ("statement", "| yes |", "| no |")):
        edited = tmp_path / paths[kind].name
        edited.write_text(paths[kind].read_text().replace(old, new, 1))
        ok, carried, actual = verify(edited)
        assert not ok and carried == verify(paths[kind])[1] != actual, kind
    # Two runs are two contents: their hashes differ.
    assert verify(paths["json"])[1] != verify(reports["paths"]["bad"]["json"])[1]
    assert hashlib.sha256(paths["json"].read_bytes()).hexdigest() in paths["sums"].read_text()


async def _linegw(*args: str, panel: Simulator | None = None) -> tuple[int, str]:
    """Run linegw; with `panel`, an operator at that simulator does what the printed operator steps ask."""
    proc = await asyncio.create_subprocess_exec(LINEGW, *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"})
    assert proc.stdout is not None
    operator = Operator(panel) if panel is not None else None
    out = []
    async for raw in proc.stdout:
        out.append(raw.decode())
        if operator is not None:
            operator(out[-1])
    return await proc.wait(), "".join(out)


async def test_the_runner_reports_each_case_once_as_it_is_decided(reports):
    calls: list[tuple[Result, int, int]] = []
    good = only(reports["lines"]["good"])
    options = Options(cls="winder", protocol="modbus", endpoint=endpoint(reports["lines"]["good"]),
                      only=["CORE-SELF", "CORE-IDENT", "CORE-MODBUS"], **{**KIT, "observe_s": 0.5})
    run = await run_conformance(options, SPEC, progress=lambda r, done, total: calls.append((r, done, total)))
    ran = [r for r in run.results if r.status not in ("not_applicable", "not_tested")]
    assert ran and good.config.protocol == "modbus"
    assert [done for _, done, _ in calls] == list(range(1, len(ran) + 1))  # once per case, counted in order
    assert {total for _, _, total in calls} == {len(ran)}
    ids = [r.case.id for r, _, _ in calls]
    assert sorted(ids) == sorted(r.case.id for r in ran)
    assert [r.started for r, _, _ in calls] == sorted(r.started for r, _, _ in calls)  # as decided
    for r, _, _ in calls:
        assert (r.status, r.message) == (run.result(r.case.id).status, run.result(r.case.id).message)


async def test_linegw_conformance_exit_code_and_reports(reports, tmp_path):
    good, bad = reports["lines"]["good"], reports["lines"]["bad"]
    await produce(only(good))  # the control run left it stopped; the data checks want it producing
    common = ["--observe", "2.5s", "--outage", "0.5s", "--unit-wait", "10s"]
    (code_good, out_good), (code_bad, out_bad) = await asyncio.gather(
        _linegw("conformance", "--modbus", endpoint(good), "--class", "winder", "--out", str(tmp_path / "g"), *common),
        _linegw("conformance", "--opcua", endpoint(bad), "--class", "coater", "--out", str(tmp_path / "b"), *common))
    # Passed all it ran, but the machine claims Control and Recipe and no command was allowed: incomplete.
    assert code_good == 3, out_good
    assert "INCOMPLETE" in out_good and "CONFORMS" not in out_good and "no command will be sent" in out_good
    assert code_bad == 1, out_bad
    assert "COATER-WEB-002" in out_bad and "coater.yaml § sub_units[web].variables" in out_bad
    # Live progress: the failure was printed when it was decided (status column), before the summary.
    live = re.search(r"^ +fail {2,}COATER-WEB-002 +1 invalid value: web\.line_speed", out_bad, re.M)
    assert live and live.start() < out_bad.index("Summary")
    assert only(good).machine.state() == "Execute"  # the passive run left it producing
    code_all, out_all = await _linegw("conformance", "--modbus", endpoint(good), "--class", "winder", "--allow-control",
                                      "--operator-timeout", "5s", "--command-timeout", "3s", "--out",
                                      str(tmp_path / "a"), *common, panel=only(good))
    assert code_all == 0, out_all
    assert "CONFORMS" in out_all
    for folder in ("g", "b"):
        assert sorted(p.name for p in (tmp_path / folder).iterdir()) == sorted([*FILES.values(), "SHA256SUMS"])
    code, out = await _linegw("conformance", "--verify", str(tmp_path / "g" / FILES["json"]))
    assert code == 0 and "OK" in out
    report = tmp_path / "b" / FILES["statement"]
    report.write_text(report.read_text().replace("coater", "winder"))
    code, out = await _linegw("conformance", "--verify", str(report))
    assert code == 1 and "MODIFIED" in out
    code, out = await _linegw("conformance", "--class", "coater")
    assert code == 2 and "--opcua or --modbus" in out
