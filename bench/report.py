"""Write the README's table rows from bench/results/*.json, so the figures there are the measured ones.

Each results file names its script; the README row whose first cell is that
script gets its "what" and "figures" cells from the formatter below. Rows of
scripts without results are left as they are.

Run: .venv/bin/python bench/report.py [--check]   (--check: exit 1 if the README is not up to date)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"


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
        + ", ".join(f"{cls} {c['chunk_bytes_per_value']:.2f} (file {c['file_bytes_per_value']:.2f})"
                    for cls, c in b.items())
        + f"; a day at 10 Hz in 1-min buckets {_mmm(h['day_10hz_1min_buckets_ms'])} ms; "
        f"last hour of 512 channels raw {_mmm(h['hour_512_channels_raw_ms'])} ms, "
        f"in 1-min buckets {_mmm(h['hour_512_channels_1min_buckets_ms'])} ms "
        f"(load average {r['machine']['load_average_at_start'][0]:.1f} at start)")
    return what, figures


FORMATTERS: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {"store.py": store}


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the README differs from the results")
    args = ap.parse_args()
    results = {}
    for path in sorted((HERE / "results").glob("*.json")):
        r = json.loads(path.read_text())
        results[r.get("script", f"{path.stem}.py")] = r  # a file names its script, or is named after it
    before = README.read_text()
    after = render(before, results)
    if args.check:
        if after != before:
            print(f"{README}: not what bench/results/ says; run bench/report.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(after)
    print(f"{README}: rows for {', '.join(sorted(set(results) & set(FORMATTERS)))} written from bench/results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
