"""Write the READMEs' figures from bench/results/*.json, so the figures there are the measured ones.

bench/README.md: each results file names its script; the row whose first cell
is that script gets its "what" and "figures" cells from the formatter below.
Rows of scripts without results are left as they are.

README.md (Reliability): each table between `<!-- results: NAME -->` and
`<!-- /results -->` is written from bench/results/NAME.json (the fault
matrix, the SIGKILL series, the soak).

Run: .venv/bin/python bench/report.py [--check]   (--check: exit 1 if the README is not up to date)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
TOP_README = HERE.parent / "README.md"


def _mmm(d: dict[str, float], fmt: str = "{:,.0f}") -> str:
    return "–".join(fmt.format(d[k]) for k in ("min", "max")) + f" (median {fmt.format(d['median'])})"


def store(r: dict[str, Any]) -> tuple[str, str]:
    paced, unpaced, day = r["line_write_paced"], r["line_write_unpaced"], r["day"]
    grown, h, b = r["line_write_on_a_day"], r["history"], r["bytes_per_value"]
    run = paced["runs"][0]
    what = (f"embedded store under formation racks' scans as the gateway writes them ({run['series']:,} series, "
            f"{run['values'] / run['seconds']:,.0f} values/s paced); bytes per value sealed, per class; the same "
            f"write on a store holding a simulated day; history queries. {len(paced['runs'])} runs, min–max (median)")
    figures = (
        f"paced: {_mmm(paced['cpu_us_per_value'], '{:.1f}')} µs CPU/value written, "
        f"+ {b['formation']['compaction_us_per_value']:.1f} sealed "
        f"(= {r['write_and_seal_cpu_us_per_value']:.1f} median), "
        f"{_mmm(paced['values_per_commit'])} values/commit; "
        f"unpaced: {_mmm(unpaced['values_per_s'])} values/s; "
        f"on a day's store ({day['values'] / 1e6:,.0f} M values, {day['file_bytes'] / 2**30:.1f} GiB): "
        f"{_mmm(grown['cpu_us_per_value'], '{:.1f}')} µs CPU/value, {r['cpu_per_value_day_vs_empty']:.2f}× the empty "
        f"store's; bytes/value in chunks: "
        + ", ".join(f"{cls} {c['chunk_bytes_per_value']:.2f} (file {c['file_bytes_per_value']:.2f}"
                    + (f"; a second span {c['next_span_chunk_bytes_per_value']:.2f}"
                       if "next_span_chunk_bytes_per_value" in c else "") + ")"
                    for cls, c in b.items())
        + (f" (measured {r['bytes_per_value_when'][:10]} alone)" if "bytes_per_value_when" in r else "")
        + f"; a day at 10 Hz in 1-min buckets {_mmm(h['day_10hz_1min_buckets_ms'])} ms; "
        f"last hour of 512 channels raw: as columns {_mmm(h['hour_512_channels_columns_ms'])} ms, as rows "
        f"{_mmm(h['hour_512_channels_raw_ms'])} ms, in 1-min buckets {_mmm(h['hour_512_channels_1min_buckets_ms'])} ms"
        + (f" (history queries measured {h['when'][:10]} alone)" if "when" in h else "")
        + f" (load average {r['machine']['load_average_at_start'][0]:.1f} at start)")
    return what, figures


def _racks(name: str, cfg: dict[str, Any], unit: str = " racks") -> str:
    """A configuration of bench/line.py: its racks, and its acquisition workers where it had some."""
    workers = cfg.get("workers", 0)
    others = "".join(f" + {cfg[k]} {k}" for k in ("coaters", "winders") if cfg.get(k))  # a mixed line
    return f"{cfg.get('racks', name)}{unit}{others}" + (f" ({workers} acquisition workers)" if workers else "")


def _publishing(r: dict[str, Any]) -> str:
    """The OPC UA subscriptions' publishing interval of a bench/line.py result (1 s before it was a setting)."""
    ms = r.get("publishing_ms", 1000.0)
    return f"{ms / 1000:g} s" if ms >= 1000 else f"{ms:g} ms"


def line(r: dict[str, Any]) -> tuple[str, str]:
    n = len(next(iter(r["configs"].values()))["runs"])
    opcua = r.get("protocol") == "opcua"
    over, bare = (f"OPC UA (subscriptions, {_publishing(r)} publishing, 1 s sampling)", "plain asyncua subscribed to the "
                  "same variables") if opcua else (f"Modbus at a {r['scan_s']:g} s scan", "plain pymodbus reading the same "
                                                   "requests")
    served = "`linegw simulate` (machines in their own process)"
    if r.get("rack_server") == "node":
        served = "node-opcua serving the racks in a vendor's dialect (bench/opcua_peer.py, a process of its own)"
        over += ", read through the dialect's shipped mapping"
    others = " and ".join(f"{r[k]} {k}" for k in ("coaters", "winders") if r.get(k))
    if others:  # a mixed line: the racks' figures with the others' beside them
        over += (f", and {others} over OPC UA (subscriptions, 1 s publishing and sampling; what they offer is what "
                 f"plain asyncua got from them)")
        bare = f"{bare} and plain asyncua subscribed to the others"
    what = (f"the whole gateway: {served} and `linegw run` on the embedded store, "
            f"N formation racks × 512 channels over {over}, {r['seconds']:g} s after a "
            f"{r['warmup_s']:g} s warm-up; values/s stored, {'adapter queue drops' if opcua else 'scan overruns'}, "
            f"gateway CPU per value against {bare} into nothing, RSS and its growth, bytes on disk per value "
            f"(the unsealed head), source timestamp → WebSocket client latency. {n} runs, min–max (median)")
    parts = []
    for name, cfg in r["configs"].items():
        s = cfg["summary"]
        kept = (f"{_mmm(s['adapter_overflow'])} readings dropped by the adapters' queues, every rack subscribed "
                f"after {_mmm(s['connect_s'])} s" if opcua
                else f"{_mmm(s['overruns'])} scan ticks missed in {s['scans']['median']:,.0f} scans")
        parts.append(
            f"{_racks(name, cfg)}, {s['asked_values_per_s']:,} values/s {'offered' if opcua else 'asked'}:: "
            f"{_mmm(s['values_per_s'])} values/s, {kept}, "
            f"{s['cpu_pct']['median']:.0f} % CPU, {_mmm(s['cpu_us_per_value'], '{:.1f}')} µs/value = "
            f"{s['cpu_vs_bare']['median']:.1f}× {'plain asyncua' if opcua else 'the bare libraries' if others else 'plain pymodbus'} "
            f"({s['bare_cpu_us_per_value']['median']:.1f}), "
            f"RSS {s['rss_mb']['median']:,.0f} MB ({s['rss_growth_mb']['median']:+.0f} over the run), "
            f"{s['bytes_per_value_on_disk']['median']:.1f} B/value, latency p50 {s['latency_p50_ms']['median']:,.0f} ms, "
            f"p99 {_mmm(s['latency_p99_ms'])} ms")
    return what, "; ".join(parts) + f" (load average {r['machine']['load_average_at_start'][0]:.1f} at start)"


def _load(r: dict[str, Any]) -> str:
    return f"(load average {r['machine']['load_average_at_start'][0]:.1f} at start)"


def modbus_scan(r: dict[str, Any]) -> tuple[str, str]:
    s = r["summary"]
    what = (f"Modbus adapter feeding the runtime's ingest (every register decoded and checked into a spec sample) "
            f"against bare pymodbus doing the same planned requests into nothing: {r['devices']} devices × "
            f"{r['registers']:,} registers ({r['points']} points, {r['requests_per_scan']} requests a scan), "
            f"servers in their own process, unpaced. {len(r['runs'])} runs of {r['seconds']:g} s, min–max (median)")
    figures = (f"adapter + ingest {_mmm(s['adapter']['points_per_s'])} samples/s at "
               f"{_mmm(s['adapter']['cpu_us_per_point'], '{:.2f}')} µs CPU each; bare pymodbus "
               f"{_mmm(s['bare']['points_per_s'])} points/s at {_mmm(s['bare']['cpu_us_per_point'], '{:.2f}')} µs; "
               f"{s['cpu_vs_bare']['median']:.2f}× the bare library's CPU per value {_load(r)}")
    return what, figures


def opcua_notifications(r: dict[str, Any]) -> tuple[str, str]:
    s = r["summary"]
    what = (f"OPC UA data-change notifications through the adapter and the runtime's ingest against bare asyncua "
            f"(a Subscription handler making the same tuple): {r['devices']} server processes × {r['variables']:,} "
            f"variables changed every {r['change_ms']:g} ms ({r['offered_per_s']:,} changes/s offered), publishing "
            f"every {r['interval_ms']:g} ms. {len(r['runs'])} runs of {r['seconds']:g} s, min–max (median)")
    a, b = s["adapter"], s["asyncua"]
    figures = (f"adapter + ingest {_mmm(a['notifications_per_s'])} notifications/s at "
               f"{_mmm(a['cpu_us_per_notification'], '{:.1f}')} µs client CPU each; asyncua "
               f"{_mmm(b['notifications_per_s'])} at {_mmm(b['cpu_us_per_notification'], '{:.1f}')} µs; "
               f"{s['cpu_vs_asyncua']['median']:.2f}× the bare library's CPU per notification {_load(r)}")
    return what, figures


def oee(r: dict[str, Any]) -> tuple[str, str]:
    what = (f"OEE of a day of a {len(r['day_figures'])}-machine line (the demo line's shape: "
            f"{r['samples_stored'] / 1e6:.1f} M samples sealed, 300 stops per machine) from the embedded store: the "
            f"day report (every machine, stages, line, bottleneck), the day per shift (3 shifts), the last hour. "
            f"{r.get('runs', 3)} runs, min–max (median)")
    ms = {q: v * 1000 for q, v in r["last_hour_s"].items()}
    figures = (f"day {_mmm(r['day_report_s'], '{:.3f}')} s; per shift {_mmm(r['day_per_shift_s'], '{:.3f}')} s; "
               f"last hour {_mmm(ms)} ms")
    return what, figures


def features(r: dict[str, Any]) -> tuple[str, str]:
    what = (f"the quality feature table of {r['cells']:,} graded cells (a coater's 20 electrode rolls, 10,000 jelly "
            f"rolls, 20 formation trays of 512; {r['samples_written'] / 1e6:.1f} M samples) from the embedded store: "
            f"the whole table ({r['columns']} columns), and its Parquet file. {r['runs']} runs, min–max (median)")
    figures = (f"table {_mmm(r['table_s'], '{:.1f}')} s = {r['ms_per_cell_median']:.1f} ms per cell; "
               f"Parquet {_mmm(r['parquet_s'], '{:.2f}')} s, {r['parquet_bytes'] / 1000:,.0f} kB")
    return what, figures


FORMATTERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "oee.py": oee, "features.py": features,
    "store.py": store, "line.py": line, "line.py --protocol opcua": line, "line.py (mixed line)": line,
    "line.py --protocol opcua --rack-server node": line,
    "modbus_scan.py": modbus_scan,
    "opcua_notifications.py": opcua_notifications}


def render(readme: str, results: dict[str, dict[str, Any]]) -> str:
    out = []
    for line in readme.split("\n"):
        cells = line.split(" | ")
        name = cells[0].removeprefix("| `").removesuffix("`") if line.startswith("| `") else None
        if name in results and name in FORMATTERS:
            what, figures = FORMATTERS[name](results[name])
            line = f"| `{name}` | {what} | {figures} |"
        out.append(line)
    return "\n".join(out)


# --- the README's Reliability tables -------------------------------------------------------------------------
# Each sits between `<!-- results: NAME -->` and `<!-- /results -->` in the top README and is written from
# bench/results/NAME.json by the formatter of that name.

BLOCK = re.compile(r"(<!-- results: (\w+) -->\n)(.*?)(<!-- /results -->)", re.S)


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _said(reason: str) -> str:
    """A reason as the table shows it: no addresses, thumbprints or paths of one run, its first clause."""
    reason = re.sub(r"\b[0-9a-f]{40}\b", "<thumbprint>", reason)
    reason = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "<device>", reason)
    reason = reason.split(";", 1)[0]
    return (reason if len(reason) <= 70 else reason[:69] + "…").replace("|", "/")


def fault_matrix(r: dict[str, Any]) -> str:
    head = ["fault", "detected (s)", "recovered (s)", "events lost", "duplicates", "longest gap (s)", "shown as"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in r["rows"]:
        cells = [row["fault"], _secs(row["detected_s"]), _secs(row["recovered_s"]), str(row["events_lost"]),
                 str(row["duplicates"]), f"{row['gap_s']:.1f}", _said(row.get("shown", "")) or "-"]
        rows.append("| " + " | ".join(cells) + " |")
    out = "\n".join(rows) + f"\n\n{len(r['rows'])} rows, measured {r['measured']}.\n"
    if r.get("sink_rows"):
        head = ["sink fault", "detected (s)", "recovered (s)", "samples lost", "duplicates", "backlog at the fault's end"]
        rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows += [f"| {x['fault']} | {_secs(x['detected_s'])} | {_secs(x['recovered_s'])} | {x['samples_lost']} | "
                 f"{x['duplicates']} | {x['backlog']} |" for x in r["sink_rows"]]
        out += "\n" + "\n".join(rows) + "\n"
    return out


def soak(r: dict[str, Any]) -> str:
    names = {"rss_mb": "resident memory (MB)", "fds": "open file descriptors", "tasks": "asyncio tasks",
             "loop_lag_ms": "worst loop lag of the minute (ms)"}
    rows = ["| series | first → last | slope per minute | bound |", "|---|---|---|---|"]
    for key, name in names.items():
        first, last = (f"{x:.1f}".removesuffix(".0") for x in (r[key][0], r[key][-1]))
        rows.append(f"| {name} | {first} → {last} | {r['slopes'][key]:+.2f} | {r['bounds'][key]:g} |")
    return "\n".join(rows) + f"\n\n{r['minutes']:g} minutes, a sample every {r['interval_s']} s, {len(r['faults'])} faults.\n"


def sigkill(r: dict[str, Any]) -> str:
    rows = ["| kill | after (s) | acknowledged before it | kept after it | integrity_check |", "|---|---|---|---|---|"]
    for i, k in enumerate(r["rounds"], 1):
        rows.append(f"| {i} | {k['kill_after_s']:.2f} | {k['acknowledged']} | {k['kept']} | {k['integrity']} |")
    return ("\n".join(rows) + f"\n\nAfter a clean drain: {r['stored']} heartbeats stored, {r['in_sink']} in the sink, "
            f"{r['unsent']} unsent (seed {r['seed']}).\n")


def line_block(r: dict[str, Any]) -> str:
    opcua = r.get("protocol") == "opcua"
    mixed = bool(r.get("coaters") or r.get("winders"))
    asked, kept, bare = (("values/s the servers offer (plain asyncua got)", "readings the adapters' queues dropped",
                          "plain asyncua") if opcua else ("values/s asked", "scan ticks missed", "plain pymodbus"))
    if mixed:  # the racks' scans asked for, the coaters' and winders' changes as plain asyncua got them
        asked, bare = "values/s asked (racks) and offered (OPC UA machines)", "the bare libraries"
    extra = " every rack subscribed after | servers' process CPU |" if opcua else ""
    rows = [f"| {'machines' if mixed else 'racks × 512 channels'} | {asked} | stored | {kept} | gateway CPU per value | × {bare} "
            f"| latency p50 / p99 | RSS (growth) |{extra}", "|---|---|---|---|---|---|---|---|" + "---|" * extra.count("|")]
    for name, cfg in r["configs"].items():
        s = cfg["summary"]
        missed = (f"{s['adapter_overflow']['median']:,.0f}" if opcua
                  else f"{s['overruns']['median']:,.0f} in {s['scans']['median']:,.0f} scans")
        rows.append(
            f"| {_racks(name, cfg, ' racks' if mixed else '')} | {s['asked_values_per_s']:,} | {s['values_per_s']['median']:,.0f} | "
            f"{missed} | {s['cpu_us_per_value']['median']:.1f} µs | "
            f"{s['cpu_vs_bare']['median']:.1f}× | {s['latency_p50_ms']['median']:,.0f} / "
            f"{s['latency_p99_ms']['median']:,.0f} ms | {s['rss_mb']['median']:,.0f} MB "
            f"({s['rss_growth_mb']['median']:+.0f}) |"
            + (f" {s['connect_s']['median']:.0f} s | {statistics.median(run['simulators_cpu_pct'] for run in cfg['runs']):.0f} % |"
               if opcua else ""))
    n = len(next(iter(r["configs"].values()))["runs"])
    once = f" once every rack was subscribed ({_publishing(r)} publishing) and" if opcua else ""
    clock = ("racks served by node-opcua" if r.get("rack_server") == "node"
             else f"racks' clock at {r.get('time_scale', 600):g}× real time")
    return ("\n".join(rows) + f"\n\n{f'Medians of {n} runs' if n > 1 else 'One run'} of {r['seconds']:g} s,{once} after a {r['warmup_s']:g} s warm-up, "
            f"{clock}, measured {r['measured']}, {r['machine']['cpus']} cores.\n")


def _last_minutes(series: list[dict[str, Any]], minutes: float) -> str:
    """Resident memory's low and high over the run's last minutes: flat memory shows as a narrow band."""
    last = [p["rss_mb"] for p in series if p["t_s"] >= series[-1]["t_s"] - 60 * minutes]
    return f"{min(last):,.0f}–{max(last):,.0f} MB"


def line_sealing(r: dict[str, Any]) -> str:
    """Long runs of bench/line.py, past the store's first sealing: each labelled with what it ran."""
    rows = ["| run | racks' clock | values/s asked | stored | scan ticks missed | ... after sealing began | samples sealed "
            "| CPU per value | latency p99 | RSS start → end | RSS, last 10 minutes |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, res in r["runs"].items():
        ((_, cfg),) = res["configs"].items()
        (run,) = cfg["runs"]
        series = run["rss_series"]
        first = next((i for i, p in enumerate(series) if p["sealed"]), None)
        after = "none sealed" if not first else (
            f"{series[-1]['overruns'] - series[first - 1]['overruns']:,} in "
            f"{series[-1]['scans'] - series[first - 1]['scans']:,} (from minute {series[first]['t_s'] / 60:.0f})")
        missed = f"{run['overruns']:,} in {run['scans']:,} scans"
        clock = f"{res.get('time_scale', 600):g}×"
        if res.get("protocol") == "opcua":  # subscriptions: no scans; what the adapters' queues could not hold
            missed, after = f"no scans; {run['adapter_overflow']:,} readings dropped", "–"
            clock = "–" if res.get("rack_server") == "node" else clock
        rows.append(f"| {label} | {clock} | {run['asked_values_per_s']:,} | {run['values_per_s']:,} | "
                    f"{missed} | {after} | {run['sealed_samples'] / 1e6:,.0f} M | "
                    f"{run['cpu_us_per_value']:.1f} µs | {run['latency_ms']['p99']:,.0f} ms | "
                    f"{series[0]['rss_mb']:,.0f} → {series[-1]['rss_mb']:,.0f} MB | {_last_minutes(series, 10)} |")
    return "\n".join(rows) + "\n"


def line_profile(r: dict[str, Any]) -> str:
    """bench/line.py --profile-s: the whole gateway's CPU per value by stage (bench/cpuprofile.py), per configuration."""
    configs = r["configs"]
    head = "| stage | " + " | ".join(_racks(name, cfg) for name, cfg in configs.items()) + " |"
    rows = [head, "|---|" + "---|" * len(configs)]

    def share(cfg: dict[str, Any], stage: str) -> float:  # averaged over the configuration's runs
        return sum(run["profile"]["share"].get(stage, 0.0) for run in cfg["runs"]) / len(cfg["runs"])

    def cell(cfg: dict[str, Any], stage: str) -> str:
        if not share(cfg, stage):
            return "–"  # not in this configuration's processes
        return f"{share(cfg, stage) * cfg['summary']['cpu_us_per_value']['median']:.2f} µs ({100 * share(cfg, stage):.0f} %)"
    stages = {stage for cfg in configs.values() for run in cfg["runs"] for stage in run["profile"]["share"]}
    order = sorted(stages, key=lambda st: (-max(share(cfg, st) for cfg in configs.values()), st))
    rows += [f"| {stage} | " + " | ".join(cell(cfg, stage) for cfg in configs.values()) + " |" for stage in order]
    rows.append("| **the whole gateway** | " + " | ".join(
        f"**{cfg['summary']['cpu_us_per_value']['median']:.2f} µs**" for cfg in configs.values()) + " |")
    rows.append("| plain pymodbus, the same requests | " + " | ".join(
        f"{cfg['summary']['bare_cpu_us_per_value']['median']:.2f} µs" for cfg in configs.values()) + " |")
    n = len(next(iter(configs.values()))["runs"])
    run = next(iter(configs.values()))["runs"][0]["profile"]
    return ("\n".join(rows) + f"\n\nShares averaged over {n} run(s) of {r['seconds']:g} s after a {r['warmup_s']:g} s warm-up, "
            f"py-spy at {run['rate_hz']} Hz over the first {run['seconds']:g} s of each, measured {r['measured']}, "
            f"{r['machine']['cpus']} cores.\n")


BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {"fault_matrix": fault_matrix, "soak": soak, "sigkill": sigkill,
                                                      "line": line_block, "line_opcua": line_block,
                                                      "line_opcua_20k": line_block,
                                                      "line_mixed": line_block, "line_100k": line_block,
                                                      "line_sealing": line_sealing, "line_profile": line_profile}


def render_blocks(text: str, results: dict[str, dict[str, Any]]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(2)
        if name not in results or name not in BLOCKS:
            return m.group(0)
        return m.group(1) + BLOCKS[name](results[name]) + m.group(4)
    return BLOCK.sub(one, text)


def load_results(folder: Path = HERE / "results") -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(results by script, for bench/README.md rows; results by file name, for the README's blocks)."""
    by_script, by_name = {}, {}
    for path in sorted(folder.glob("*.json")):
        r = json.loads(path.read_text())
        by_script[r.get("script", f"{path.stem}.py")] = r  # a file names its script, or is named after it
        by_name[path.stem] = r
    return by_script, by_name


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a README differs from the results")
    args = ap.parse_args()
    by_script, by_name = load_results()
    stale = []
    for path in (README, TOP_README):
        before = path.read_text()
        after = render(before, by_script) if path == README else render_blocks(before, by_name)
        if after == before:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(after)
            print(f"{path}: figures written from bench/results/")
    for path in stale:
        print(f"{path}: not what bench/results/ says; run bench/report.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
