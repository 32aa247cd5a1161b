"""deploy/systemd/linegw.service: the unit starts a command the package has, and its paths agree.

`systemd-analyze verify` needs a running systemd; the unit is read as the INI
file it is and checked against the package: the command and its arguments,
where the line file and secrets live, and that everything the gateway writes
(the store, the OPC UA certificate) is inside the paths the hardening leaves
writable.
"""

from __future__ import annotations

import configparser
import subprocess
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import typer

from gateway.adapters.opcua.settings import default_certificate_dir
from gateway.cli import app
from gateway.config import Store

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "linegw.service"
INSTALL = PurePosixPath("/opt/linegw")  # where deploy/README.md has the tree installed (make venv)


def read_unit(text: str) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#", ";"))
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read_string(text)
    return unit


def within(path: PurePosixPath, roots: list[PurePosixPath]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def problems(text: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What is inconsistent in a unit for `linegw run` (empty: nothing)."""
    unit = read_unit(text)
    svc = unit["Service"]
    out = []
    argv = svc["ExecStart"].split()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program = PurePosixPath(argv[0])
    if program.name not in scripts or program.parent != INSTALL / ".venv" / "bin":
        out.append(f"ExecStart: {program} is not {INSTALL}/.venv/bin/<a script of pyproject.toml: {', '.join(scripts)}>")
    commands = typer.main.get_command(app).commands
    if len(argv) != 3 or argv[1] != "run" or argv[1] not in commands:
        out.append(f"ExecStart: expected '<linegw> run <line file>', got {argv[1:]}")
    config_dir = PurePosixPath("/etc") / svc.get("ConfigurationDirectory", "?")
    state_dir = PurePosixPath("/var/lib") / svc.get("StateDirectory", "?")
    if len(argv) == 3 and PurePosixPath(argv[2]).parent != config_dir:
        out.append(f"ExecStart: the line file {argv[2]} is not in ConfigurationDirectory {config_dir}")
    env_file = PurePosixPath(svc.get("EnvironmentFile", "").lstrip("-"))
    if env_file.parent != config_dir:
        out.append(f"EnvironmentFile: {env_file} is not in {config_dir}")
    writable = [PurePosixPath(p) for p in svc.get("ReadWritePaths", "").split()]
    workdir = PurePosixPath(svc.get("WorkingDirectory", "/"))
    if workdir != state_dir or not within(workdir, writable):
        out.append(f"WorkingDirectory: {workdir} should be the state directory {state_dir}, writable")
    store = workdir / Store().path  # the default store path is relative to the working directory
    if not within(store, writable):
        out.append(f"the default store {store} is outside ReadWritePaths {writable}")
    env = dict(e.split("=", 1) for e in svc.get("Environment", "").split())
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")  # a home the unit does not make writable (ProtectHome)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cert = PurePosixPath(default_certificate_dir())
    if not within(cert, writable):
        out.append(f"the OPC UA certificate directory {cert} is outside ReadWritePaths {writable}")
    expected = {"Restart": "on-failure", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes"}
    out += [f"{k}: expected {v}, got {svc.get(k)}" for k, v in expected.items() if svc.get(k) != v]
    if svc.get("User", "root") in ("root", "0"):
        out.append("User: the gateway runs as a dedicated user, never root")
    doc = unit["Unit"].get("Documentation", "").removeprefix("file:")
    if not doc.startswith(f"{INSTALL}/") or not (ROOT / PurePosixPath(doc).relative_to(INSTALL)).exists():
        out.append(f"Documentation: {doc} is not a file of the installed tree")
    return out


def test_the_shipped_unit_is_consistent(monkeypatch):
    assert problems(UNIT.read_text(), monkeypatch) == []
    assert "## Running as a service" in (ROOT / "deploy" / "README.md").read_text()


@pytest.mark.parametrize("edit, expected", [
    (("linegw run", "linegw serve"), "ExecStart: expected '<linegw> run <line file>'"),
    (("/.venv/bin/linegw", "/bin/linegw"), "ExecStart: /opt/linegw/bin/linegw is not"),
    (("ReadWritePaths=/var/lib/linegw", "ReadWritePaths=/var/log/linegw"), "the default store /var/lib/linegw/var"),
    (("Environment=XDG_DATA_HOME=/var/lib/linegw\n", ""), "the OPC UA certificate directory /nonexistent/"),
    (("EnvironmentFile=-/etc/linegw/", "EnvironmentFile=-/root/"), "EnvironmentFile: /root/linegw.env"),
    (("User=linegw", "User=root"), "User: the gateway runs as a dedicated user"),
    (("Restart=on-failure", "Restart=always"), "Restart: expected on-failure"),
])
def test_an_inconsistent_unit_is_caught(monkeypatch, edit, expected):
    text = UNIT.read_text()
    assert edit[0] in text
    found = problems(text.replace(*edit), monkeypatch)
    assert any(expected in p for p in found), found


def test_the_command_line_of_the_unit_parses_as_linegw_run():
    """ExecStart, with the installed tree taken to be this one: `--help` shows what `run` would do."""
    argv = read_unit(UNIT.read_text())["Service"]["ExecStart"].split()
    program = ROOT / PurePosixPath(argv[0]).relative_to(INSTALL)
    proc = subprocess.run([str(program), *argv[1:], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Run the gateway for a line" in proc.stdout
