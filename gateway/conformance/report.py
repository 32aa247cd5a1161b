"""Reports of a run: JSON, JUnit XML, a self-contained HTML page and a compliance statement (Markdown).

Every report is stamped with the equipment's identity and software version,
the spec version and the kit version, and carries the SHA-256 of its own
content:

* JSON: the field "sha256" is the SHA-256 of the report without that field,
  serialised canonically (keys sorted, separators "," and ":", UTF-8).
* XML, HTML, Markdown: the last line is `<!-- sha256: <hex> -->`, the SHA-256
  of every byte before that line (`head -n -1 FILE | sha256sum`).

`verify(path)` checks either kind; `write_reports` also writes SHA256SUMS
(`sha256sum -c SHA256SUMS`). A hash shows that a report was not altered after
it was written; it does not say who wrote it.

Evidence is what a machine sent, and a machine may send anything: control
characters (the Modbus string codec passes 0x01-0x1F through), lone
surrogates (invalid UTF-8 from an OPC UA server, as asyncua decodes it),
non-characters. No report breaks on them and evidence round-trips through
each format's parser: JSON escapes them (`\\uXXXX`, valid UTF-8 throughout);
JUnit carries each case's evidence as JSON in its `evidence` property and
failure text, and HTML in its `<pre>`, escaped the same way; free text
(messages, identity) shows such a character as its `\\uXXXX` escape.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.conformance.checks import (
    ERROR,
    FAIL,
    NOT_APPLICABLE,
    NOT_IMPLEMENTED,
    NOT_TESTED,
    STATUSES,
    WARNING,
    plural,
)
from gateway.conformance.runner import Result, Run

FILES = {"json": "report.json", "junit": "junit.xml", "html": "report.html", "statement": "compliance.md"}
HASH_LINE = "<!-- sha256: {} -->\n"


# What XML 1.0 cannot hold, UTF-8 cannot encode, or a reader would not see: C0 controls but tab, newline and
# carriage return; DEL and C1 controls; lone surrogates; the non-characters U+FFFE and U+FFFF.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def visible(text: str) -> str:
    """Each unsafe character as its \\uXXXX escape: in JSON text (where these only occur inside strings) the
    escape means the same character, so the JSON still parses to what the machine sent; in free text it shows."""
    return _UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _json(doc: Any, **kw: Any) -> str:
    """JSON that is valid UTF-8 whatever strings `doc` holds, and parses back to them."""
    return visible(json.dumps(doc, ensure_ascii=False, default=str, **kw))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _canonical(doc: dict[str, Any]) -> bytes:
    """The bytes a report's hash is over. The document is taken as its JSON reads back (integer keys such as alarm
    codes become strings, tuples lists), so that `verify` of the written file hashes exactly what was hashed here."""
    as_read = json.loads(_json(doc))
    return _json(as_read, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stamp(run: Run) -> dict[str, Any]:
    o = run.options
    return {
        "equipment": {"class": o.cls, "protocol": o.protocol, "endpoint": o.endpoint,
                      "mode": "integration" if o.mapping else "native", "mapping": o.mapping,
                      "identity": dict(run.identity)},
        "software_version": run.identity.get("software_revision", ""),
        "spec_version": run.spec_version,
        "kit_version": run.kit_version,
        "started": _iso(run.started),
        "finished": _iso(run.finished),
    }


def summary(run: Run) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in run.results:
        out[r.status] += 1
    return out


def _result_dict(r: Result) -> dict[str, Any]:
    c = r.case
    return {"id": c.id, "title": c.title, "description": c.description, "clause": c.clause,
            "doc": f"interface_spec/docs/{c.doc}", "layer": c.layer, "severity": c.severity, "tier": c.tier,
            "mandatory": r.mandatory, "status": r.status, "message": r.message, "evidence": r.evidence,
            "started": _iso(r.started), "duration_s": r.duration_s}


def to_json(run: Run) -> dict[str, Any]:
    """Profile -> conformance unit -> test, with the evidence; "sha256" over the rest."""
    results: dict[str, dict[str, Any]] = {}
    units = run.catalogue.units
    for r in run.results:
        unit = units[r.case.unit]
        profile = results.setdefault(r.case.profile, {})
        profile.setdefault(unit.id, {"title": unit.title, "tests": []})["tests"].append(_result_dict(r))
    doc = {
        "report": "linegw conformance report",
        **stamp(run),
        "verdict": verdict_word(run),
        "summary": summary(run),
        "profiles": {"claimed": run.claimed_profiles, "tested": run.tested_profiles},
        "options": {k: v for k, v in vars(run.options).items() if k not in ("cls", "protocol", "endpoint", "mapping")},
        "notes": list(run.notes),
        "requests": run.requests,
        "results": results,
    }
    doc["sha256"] = sha256(_canonical(doc))
    return doc


def _with_hash_line(text: str) -> str:
    text = visible(text)  # what a format missed (the statement's free text): never a file that cannot be read
    body = text if text.endswith("\n") else text + "\n"
    return body + HASH_LINE.format(sha256(body.encode("utf-8")))


# --- JUnit ------------------------------------------------------------------------------------------------

def to_junit(run: Run) -> str:
    """A testsuite per conformance unit; N/A as skipped; failing statuses as failure or error."""
    root = ET.Element("testsuites", name=f"linegw conformance {run.options.cls}", tests=str(len(run.results)))
    props = ET.SubElement(root, "properties")
    st = stamp(run)
    for name, value in (("spec_version", st["spec_version"]), ("kit_version", st["kit_version"]),
                        ("software_version", st["software_version"]), ("endpoint", run.options.endpoint),
                        *((f"identity.{k}", v) for k, v in run.identity.items())):
        ET.SubElement(props, "property", name=name, value=str(value))
    for unit in run.catalogue.units.values():
        rs = [r for r in run.results if r.case.unit == unit.id]
        suite = ET.SubElement(root, "testsuite", name=unit.id, tests=str(len(rs)),
                              time=f"{sum(r.duration_s for r in rs):.3f}")
        sp = ET.SubElement(suite, "properties")
        ET.SubElement(sp, "property", name="profile", value=unit.profile)
        ET.SubElement(sp, "property", name="title", value=unit.title)
        for r in rs:
            tc = ET.SubElement(suite, "testcase", classname=f"{unit.profile}.{unit.id}", name=f"{r.case.id} {r.case.title}",
                               time=f"{r.duration_s:.3f}")
            cp = ET.SubElement(tc, "properties")
            for name, value in (("profile", r.case.profile), ("clause", r.case.clause), ("severity", r.case.severity),
                                ("mandatory", str(r.mandatory).lower()), ("layer", r.case.layer), ("status", r.status)):
                ET.SubElement(cp, "property", name=name, value=value)
            if r.evidence:  # whole, whatever the status: json.loads(value) gives back what the machine sent
                ET.SubElement(cp, "property", name="evidence", value=_json(r.evidence))
            detail = r.message + ("\n" + _json(r.evidence, indent=1) if r.evidence else "")
            if r.status in (NOT_APPLICABLE, NOT_TESTED) or (r.status == NOT_IMPLEMENTED and not r.mandatory):
                kind = f"{r.status}{' (mandatory)' if r.mandatory and r.status == NOT_TESTED else ''}"
                ET.SubElement(tc, "skipped", message=f"{kind}: {r.message}")
            elif r.status == ERROR:
                ET.SubElement(tc, "error", message=r.message, type=r.status).text = detail
            elif r.status in (FAIL, NOT_IMPLEMENTED):
                ET.SubElement(tc, "failure", message=r.message, type=r.status).text = detail
            elif r.status == WARNING:
                ET.SubElement(tc, "system-out").text = f"warning: {detail}"
        _count(suite)
    _count(root)
    for el in root.iter():  # XML 1.0 cannot hold every character a machine may send (see _UNSAFE)
        el.text = visible(el.text) if el.text else el.text
        for k, v in el.attrib.items():
            el.attrib[k] = visible(v)
    ET.indent(root)
    return _with_hash_line('<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode"))


def _count(element: ET.Element) -> None:
    """failures, errors and skipped of a suite (or of all), from the testcases it holds."""
    cases = list(element.iter("testcase"))
    for tag, attr in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
        element.set(attr, str(sum(1 for c in cases if c.find(tag) is not None)))


# --- compliance statement -------------------------------------------------------------------------------

def _reasons(rs: list[Result]) -> str:
    """Why the mandatory cases among these were not run, e.g. "run with --allow-control"."""
    return "; ".join(sorted({r.message.rsplit(": ", 1)[-1] if "--allow-control" in r.message else r.message
                             for r in rs if r.mandatory and r.status == NOT_TESTED}))


def _left_out(rs: list[Result]) -> str:
    """How many mandatory cases were not run, and why: "3 not tested: run with --allow-control"."""
    return f"{sum(1 for r in rs if r.mandatory and r.status == NOT_TESTED)} not tested: {_reasons(rs)}"


def unit_status(rs: list[Result]) -> tuple[str, str]:
    """(implemented, compliant) of one conformance unit."""
    tested = [r for r in rs if r.status not in (NOT_APPLICABLE, NOT_TESTED)]
    untested = any(r.mandatory and r.status == NOT_TESTED for r in rs)
    if not tested:
        if untested:
            return "—", f"not tested ({_left_out(rs)})"
        return "—", "not applicable"
    missing = [r for r in tested if r.status == NOT_IMPLEMENTED]
    implemented = "no" if len(missing) == len(tested) else "partly" if missing else "yes"
    if any(r.failing or (r.status == FAIL) for r in tested):
        compliant = "no"
    elif untested:
        compliant = f"incomplete ({_left_out(rs)})"
    elif implemented == "no":
        compliant = "not implemented (optional)"
    else:
        compliant = "yes"
    return implemented, compliant


def profile_status(run: Run, profile: str) -> tuple[str, str]:
    """(tested, compliant) of one profile: compliant only when every mandatory case of it ran and passed."""
    rs = [r for r in run.results if r.case.profile == profile]
    ran = [r for r in rs if r.status not in (NOT_APPLICABLE, NOT_TESTED)]
    untested = [r for r in rs if r.mandatory and r.status == NOT_TESTED]
    if profile not in run.tested_profiles and not untested:
        return "no (not claimed)", "—"
    if any(r.failing or r.status == FAIL for r in ran):
        compliant = "no"
    elif untested:
        compliant = "not tested" if not ran else "incomplete"
    else:
        compliant = "yes"
    tested = "yes" if not untested else f"partly ({_left_out(rs)})" if ran else f"no ({_left_out(rs)})"
    return tested, compliant


def verdict_word(run: Run) -> str:
    """pass (conforms, everything mandatory run), fail, or incomplete (nothing failed, but not all was run)."""
    return "fail" if not run.passed else "pass" if run.complete else "incomplete"


def verdict_line(run: Run) -> str:
    complete = [p for p in run.tested_profiles if profile_status(run, p)[1] == "yes"]
    if not run.passed:
        return f"DOES NOT CONFORM: {plural(len(run.failing()), 'mandatory test')} not passed"
    if not run.complete:
        left = sorted({r.case.profile for r in run.untested()})
        return (f"INCOMPLETE: {plural(len(run.untested()), 'mandatory test')} of {', '.join(left)} not run "
                f"({_reasons(run.results)}); none that ran failed; complete in {', '.join(complete) or 'no profile'}")
    return f"CONFORMS in {', '.join(complete) or 'no profile'}"


def to_statement(run: Run) -> str:
    st = stamp(run)
    ident = run.identity
    lines = [
        f"# Conformance statement — {run.options.cls}",
        "",
        f"**Verdict: {verdict_line(run)}** (line interface spec {run.spec_version}).",
        "",
        "| | |",
        "|---|---|",
        f"| Equipment | {ident.get('manufacturer', '')} {ident.get('model', '')}, serial {ident.get('serial_number', '')} |",
        f"| Software version | {st['software_version']} (hardware {ident.get('hardware_revision', '')}) |",
        f"| Instance | {ident.get('product_instance_uri', '')} |",
        f"| Class, binding | {run.options.cls}, {run.options.protocol} {run.options.endpoint} |",
        f"| Mode | {st['equipment']['mode']}{' with ' + str(run.options.mapping) if run.options.mapping else ''} |",
        f"| Spec version | {run.spec_version} |",
        f"| Kit version | linegw conformance {run.kit_version} |",
        f"| Date | {st['started']} to {st['finished']} |",
        f"| Control | {'commands sent (--allow-control)' if run.options.allow_control else 'no command sent'} |",
        *([f"| Declared absent | {', '.join(run.options.absent)} (the integrator: the machine does not have them) |"]
          if run.options.absent else []),
        "",
        "## Profiles",
        "",
        "| Profile | Claimed | Tested | Compliant |",
        "|---|---|---|---|",
    ]
    for profile in run.catalogue.profiles:
        if not any(r.case.profile == profile for r in run.results):
            continue
        tested, compliant = profile_status(run, profile)
        lines.append(f"| {profile} | {'yes' if profile in run.claimed_profiles else 'no'} | {tested} | {compliant} |")
    lines += ["", "## Capabilities", "", "| Capability | Profile | Implemented | Compliant | Tests |", "|---|---|---|---|---|"]
    for unit in run.catalogue.units.values():
        rs = [r for r in run.results if r.case.unit == unit.id]
        implemented, compliant = unit_status(rs)
        if compliant == "not applicable":
            continue
        counts = ", ".join(f"{n} {s}" for s, n in summary_of(rs).items() if n)
        lines.append(f"| {unit.id} {unit.title} | {unit.profile} | {implemented} | {compliant} | {counts} |")
    failing = [r for r in run.results if r.failing or r.status == FAIL]
    if failing:
        lines += ["", "## Not conforming", ""]
        lines += [f"- **{r.case.id}** ({r.status}, {r.case.clause}): {r.message}" for r in failing]
    untested = run.untested()
    if untested:
        lines += ["", "## Not tested", "", f"{plural(len(untested), 'mandatory test')} did not run; no profile they "
                                           f"belong to is compliant until they have:", ""]
        lines += [f"- **{r.case.id}** ({r.case.profile}, {r.case.clause}): {r.message}" for r in untested]
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    lines += ["", f"Full results and evidence: {FILES['json']}, {FILES['html']}, {FILES['junit']}.", ""]
    return _with_hash_line("\n".join(lines))


def summary_of(rs: list[Result]) -> dict[str, int]:
    out = {s: 0 for s in STATUSES}
    for r in rs:
        out[r.status] += 1
    return out


# --- HTML -----------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:80rem}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}h3{font-size:1rem;margin:1.2rem 0 .3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}td,th{border:1px solid #ccc;padding:.25rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f3f3}
.st{font-weight:600;padding:.1rem .4rem;border-radius:.3rem;white-space:nowrap}
.pass{background:#d7f5dd}.fail{background:#f8d0d0}.error{background:#f4b6b6}.warning{background:#fbeec2}
.not_implemented{background:#f6d8bd}.not_applicable{background:#eee;color:#666}
.not_tested{background:#dde6f6}.incomplete{background:#dde6f6}
.verdict{font-size:1.2rem;padding:.5rem 1rem;display:inline-block;border-radius:.4rem}
pre{white-space:pre-wrap;font-size:.8rem;background:#fafafa;padding:.4rem;margin:.2rem 0}
small{color:#666}
"""


def to_html(run: Run) -> str:
    def e(text: str) -> str:
        return html.escape(visible(text))

    st = stamp(run)
    s = summary(run)
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>Conformance report — {e(run.options.cls)} {e(run.identity.get('model', ''))}</title>",
           f"<style>{CSS}</style></head><body>",
           f"<h1>linegw conformance report — {e(run.options.cls)}</h1>",
           f"<p class=\"verdict {verdict_word(run)}\">{e(verdict_line(run))}</p>",
           "<table>"]
    rows = [("Equipment", f"{run.identity.get('manufacturer', '')} {run.identity.get('model', '')}, serial "
                          f"{run.identity.get('serial_number', '')}"),
            ("Software version", st["software_version"]), ("Endpoint", f"{run.options.protocol} {run.options.endpoint}"),
            ("Mode", st["equipment"]["mode"] + (f" ({run.options.mapping})" if run.options.mapping else "")),
            ("Spec version", st["spec_version"]), ("Kit version", st["kit_version"]),
            ("Date", f"{st['started']} to {st['finished']}"),
            ("Profiles", f"claimed {', '.join(run.claimed_profiles) or '—'}; tested {', '.join(run.tested_profiles)}"),
            ("Summary", ", ".join(f"{n} {k}" for k, n in s.items() if n))]
    out += [f"<tr><th>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows]
    out.append("</table>")
    for note in run.notes:
        out.append(f"<p><small>{e(note)}</small></p>")
    for profile in run.catalogue.profiles:
        units = [u for u in run.catalogue.units.values() if u.profile == profile]
        if not units:
            continue
        out.append(f"<h2>{e(profile)}</h2>")
        for u in units:
            rs = [r for r in run.results if r.case.unit == u.id]
            implemented, compliant = unit_status(rs)
            out.append(f"<h3 id=\"{e(u.id)}\">{e(u.id)} — {e(u.title)} <small>implemented: {e(implemented)}; "
                       f"compliant: {e(compliant)}</small></h3>")
            out.append("<table><tr><th>Test</th><th>Status</th><th>What is checked</th><th>Result</th></tr>")
            for r in rs:
                c = r.case
                evidence = ""
                if r.evidence:
                    evidence = (f"<details><summary>evidence ({len(r.evidence)})</summary><pre>"
                                f"{html.escape(_json(r.evidence, indent=1))}</pre></details>")
                out.append(
                    f"<tr id=\"{e(c.id)}\"><td><b>{e(c.id)}</b><br>{e(c.title)}<br><small>{e(c.clause)}; "
                    f"{e(c.layer)}, {e(c.severity)}, {'mandatory' if r.mandatory else 'optional'}</small></td>"
                    f"<td><span class=\"st {e(r.status)}\">{e(r.status)}</span></td>"
                    f"<td><small>{e(c.description)}</small></td><td>{e(r.message)}{evidence}</td></tr>")
            out.append("</table>")
    out.append("</body></html>")
    return _with_hash_line("\n".join(out))


# --- files and verification -----------------------------------------------------------------------------

def write_reports(run: Run, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "json": _json(to_json(run), indent=2) + "\n",
        "junit": to_junit(run),
        "html": to_html(run),
        "statement": to_statement(run),
    }
    paths = {}
    for kind, text in texts.items():
        path = out / FILES[kind]
        path.write_text(text, encoding="utf-8")
        paths[kind] = path
    sums = "".join(f"{sha256(p.read_bytes())}  {p.name}\n" for p in paths.values())
    (out / "SHA256SUMS").write_text(sums, encoding="utf-8")
    paths["sums"] = out / "SHA256SUMS"
    return paths


def verify(path: str | Path) -> tuple[bool, str, str]:
    """(valid, hash the report carries, hash of its content now)."""
    data = Path(path).read_bytes()
    if Path(path).suffix == ".json":
        doc = json.loads(data)
        carried = str(doc.pop("sha256", ""))
        return carried == sha256(_canonical(doc)), carried, sha256(_canonical(doc))
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n"
    text = last.decode("utf-8", "replace").strip()
    carried = text[len("<!-- sha256: "):-len(" -->")] if text.startswith("<!-- sha256: ") else ""
    actual = sha256(body)
    return carried == actual, carried, actual


__all__ = ["FILES", "to_html", "to_json", "to_junit", "to_statement", "verify", "write_reports"]
