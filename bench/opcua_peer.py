"""Formation racks over OPC UA from a server on another stack (node-opcua, bench/node/rack_server.js).

The simulators' asyncua servers saturate their process near 6,000 notifications/s on this kind of machine, so
they cannot show where the gateway's own OPC UA ceiling is. node-opcua serves 20,000 a second at a quarter to a half
of a core (reporting by exception, see rack_server.js). The racks speak a shipped vendor dialect (RACK_DIALECT, the gateway reads them through that mapping): the
nodes, their builtin types and first values are the simulator's own (simulators/servers/dialect.py's projections
of a started rack), written to a JSON description the node server builds its address space from. What changes
once a second (a tenth of the nodes every tenth of a second): every channel's voltage, current, capacity and
temperature (a small walk, rounded as the machine rounds) and the heartbeat; the rest holds its value, as a rack in
the middle of a tray does.

`npm ci` installs the pinned node-opcua-server into bench/node/node_modules on first use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).parent / "node"
RACK_DIALECT = "cellforge-formation-opcua"
CHANGING = {"voltage": 0.0001, "current": 1, "capacity": 1, "temperature": 0.1}  # step per update, per variable
HEARTBEAT = "status.heartbeat"


def install() -> str:
    """The node executable, with bench/node's packages installed (npm ci, versions locked)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise SystemExit("--rack-server node needs node and npm (Debian packages nodejs and npm)")
    if not (NODE_DIR / "node_modules" / "node-opcua-server").is_dir():
        done = subprocess.run([npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
                              capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise SystemExit(f"npm ci in {NODE_DIR} failed:\n{done.stderr[-2000:]}")
    return node


def rack_space(channels: int) -> dict[str, Any]:
    """A started rack's nodes in the vendor dialect: namespace, root, variables (node, type, value, change), methods."""
    from interface_spec import load_spec
    from simulators.line import SimConfig
    from simulators.servers.dialect import alarm_active, most_severe
    from simulators.servers.dialect_opcua import DialectOpcUaBinding
    from simulators.simulator import Simulator

    sim = Simulator(SimConfig("rack", "formation", "opcua", dialect=RACK_DIALECT, counts={"channel": channels},
                              options={"first_tray": "fresh"}), load_spec())
    m = sim.machine
    for command in ("Reset", "Start"):
        m.execute(command)
        m.tick(5.0)
    for _ in range(120):  # two minutes into the tray: the channels charging, their values the physics'
        m.tick(1.0)
        sim.model.step(1.0)
        sim._operate()
    binding = sim.binding
    assert isinstance(binding, DialectOpcUaBinding)
    d, cfg = binding.dialect, binding.cfg
    variables: list[dict[str, Any]] = []
    for path, projections in binding.projections.items():
        for p in projections:
            assert p.node is not None and p.field.type is not None
            change: dict[str, Any] | None = None
            leaf = path.rsplit(".", 1)[-1]
            if path == HEARTBEAT:
                change = {"count": True}
            elif path.startswith("channel[") and leaf in CHANGING:
                step = CHANGING[leaf]
                change = {"step": step} if isinstance(step, int) else {"step": step, "digits": len(str(step)) - 2}
            variables.append({"node": p.node, "type": p.field.type, "value": p.to_raw(m.values[path]),
                              "writable": p.field.writable, "change": change})
    for a in d.alarms:
        assert a.node is not None
        variables.append({"node": a.node, "type": "Boolean", "value": alarm_active(m, a.alarm), "writable": False,
                          "change": None})
    if d.alarm_code is not None and d.alarm_code.node is not None and d.alarm_code.type is not None:
        variables.append({"node": d.alarm_code.node, "type": d.alarm_code.type,
                          "value": most_severe(m, d.alarm_code.codes), "writable": False, "change": None})
    reg = d.commands.register_
    if reg is not None and reg.node is not None and reg.type is not None:
        variables.append({"node": reg.node, "type": reg.type, "value": 0, "writable": True, "change": None})
    return {"namespace": cfg.namespace_uri, "root": [p for p in cfg.root.split("/") if p and p != "Objects"],
            "variables": variables, "methods": list(d.commands.methods.values())}


def _mapping() -> tuple[Any, Any]:
    """(spec, the rack dialect's mapping) as the gateway loads them."""
    from gateway.mapping.compile import load_mapping
    from interface_spec import load_spec
    from interface_spec.vendor import vendor_path

    spec = load_spec()
    return spec, load_mapping(str(vendor_path(RACK_DIALECT)), spec)


def namespace() -> str:
    """The racks' namespace URI, as the mapping names it."""
    uri: str = _mapping()[1].opcua.namespace_uri
    return uri


def read_nodes(channels: int) -> list[str]:
    """The string node ids of what the gateway subscribes to through the mapping (its plan's read points)."""
    from gateway.mapping.compile import mapped_plan

    spec, mapping = _mapping()
    plan = mapped_plan(spec, "rack", mapping, {"channel": channels})
    paths = {p.options["browse_path"] for p in plan.points if "browse_path" in p.options and p.options.get("scan", True)}
    return sorted(path.removeprefix("/Objects/") for path in paths)


def changes_per_update(space: dict[str, Any]) -> int:
    return sum(1 for v in space["variables"] if v["change"])


class RackServer:
    """The node process serving `ports` racks (one OPC UA server each, endpoint opc.tcp://127.0.0.1:<port>/rack)."""

    PATH = "/rack"

    def __init__(self, ports: list[int], channels: int, update_ms: int, workdir: Path):
        self.node = install()
        self.space = rack_space(channels)
        self.description = workdir / "racks.json"
        self.description.write_text(json.dumps({"update_ms": update_ms, "racks": [
            {"port": port, "path": self.PATH, **self.space} for port in ports]}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 120.0) -> subprocess.Popen[bytes]:
        """The node process, once every rack listens; its output goes to a log beside the description (a pipe
        nobody read would stop it once full)."""
        log_path = self.description.with_suffix(".log")
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen([self.node, str(NODE_DIR / "rack_server.js"), str(self.description)],
                                         stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            said = log_path.read_text(errors="replace")
            if any(line.startswith("ready") for line in said.splitlines()):
                return self.proc
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node rack server ended (exit code {self.proc.returncode}): {said[-2000:]}")
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the node rack server was not ready within {timeout_s:.0f} s: "
                           f"{log_path.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
