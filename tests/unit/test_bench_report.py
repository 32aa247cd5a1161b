"""The READMEs' measured figures are what bench/results/ holds: bench/report.py writes them, and a figure typed
or left stale is found."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def report():  # bench/ is scripts, not a package
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readmes_hold_the_figures_of_bench_results():
    done = subprocess.run([sys.executable, "bench/report.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_figure_that_is_not_the_measured_one_is_found():
    r = report()
    _, by_name = r.load_results()
    readme = (ROOT / "README.md").read_text()
    assert r.render_blocks(readme, by_name) == readme
    for name in ("fault_matrix", "sigkill", "soak"):
        assert f"<!-- results: {name} -->" in readme, f"the README has no {name} table"
    typed = readme.replace("| 0 | 0 |", "| 0 | 1 |", 1)  # one duplicate typed into the fault table
    assert typed != readme and r.render_blocks(typed, by_name) == readme
    stale = dict(by_name, soak={**by_name["soak"], "minutes": 31.0})
    assert "31 minutes" in r.render_blocks(readme, stale)


def test_a_profile_sample_goes_to_the_stage_of_its_innermost_named_frame():
    spec = importlib.util.spec_from_file_location("bench_cpuprofile", ROOT / "bench" / "cpuprofile.py")
    assert spec is not None and spec.loader is not None
    cp = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cp)
    root = ["run (gateway/cli.py:273)", "BaseEventLoop._run_once (asyncio/base_events.py:1884)"]
    insert = ["Thread.run (threading.py:982)", "Writer._commit_batch (gateway/store/sqlite/writer.py:620)",
              "Writer._insert (gateway/store/sqlite/writer.py:700)"]
    assert cp.stage_of(insert) == "store: SQLite row inserts"
    assert cp.stage_of(insert[:2]) == "store: transactions, commits, the writer's loop"
    # C and library frames count in the stage of the gateway's code that called them.
    assert cp.stage_of([*root, "Device._on_readings (gateway/runtime/device.py:300)", "to_samples "
                        "(gateway/runtime/ingest.py:86)", "<lambda> (<string>:1)"]) == "validation into Sample objects"
    assert cp.stage_of([*root, "send (gateway/api/routes/live.py:90)", "_SelectorSocketTransport.write "
                        "(asyncio/selector_events.py:1057)"]) == "live WebSocket fan-out"
    assert cp.stage_of([*root, "EpollSelector.select (selectors.py:468)"]) == "event loop: polling the sockets"
    assert cp.stage_of(root) == "API, health and the rest of the gateway"  # the root's cli.py frame, nothing closer
    assert cp.stage_of(["Thread.run (threading.py:982)"]) == cp.OTHER


def test_a_long_run_over_opcua_says_it_has_no_scans():
    r = report()
    _, by_name = r.load_results()
    sealing = by_name["line_sealing"]
    label, modbus = next(iter(sealing["runs"].items()))
    opcua = {**modbus, "protocol": "opcua", "rack_server": "node"}
    ((name, cfg),) = modbus["configs"].items()
    (run,) = cfg["runs"]
    opcua["configs"] = {name: {**cfg, "runs": [{**run, "adapter_overflow": 3, "scans": 0, "overruns": 0}]}}
    table = r.line_sealing({"runs": {label: modbus, "over OPC UA": opcua}})
    modbus_row, opcua_row = table.splitlines()[2:4]
    assert f"{run['overruns']:,} in {run['scans']:,} scans" in modbus_row
    assert "| over OPC UA | – |" in opcua_row and "no scans; 3 readings dropped | – |" in opcua_row


def test_the_node_peer_serves_every_node_the_gateway_reads_through_the_mapping():
    spec = importlib.util.spec_from_file_location("bench_opcua_peer", ROOT / "bench" / "opcua_peer.py")
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    space = peer.rack_space(8)
    served = {"/".join(space["root"] + [v["node"]]): v for v in space["variables"]}
    read = peer.read_nodes(8)
    assert len(read) > 8 * 4 and set(read) <= set(served)
    # What changes each update: the channels' four measurements and the heartbeat, numbers the dialect's types hold.
    changing = {node: v for node, v in served.items() if v["change"]}
    assert peer.changes_per_update(space) == len(changing) == 8 * 4 + 1
    assert {node.rsplit("/", 1)[-1] for node in changing} == {"U", "I_mA", "Q_mAh", "T", "Heartbeat"}
    assert all(isinstance(v["value"], (int, float)) and v["value"] > 0 for v in changing.values())
