"""The kit under load against conforming simulators: every failure it reports is a false one.

    .venv/bin/python -m tests.conformance.kit_stress --runs 20      # make kit-stress

Starts every conforming simulator (each class over each binding, as
test_conforming.py does), runs the whole kit (with --allow-control, so every
layer) against each of them `--runs` times, `--parallel` kits at a time,
while a CPU-burning process of its own competes for the cores; after each
run the operator at the simulated panel starts the machine producing again.
A conforming machine must never fail, so any mandatory case not passed is a
false failure: each is printed with its message as it happens, then the
count; the exit status is 1 when there is any. Too slow for the suite, which runs a small smoke of it
(test_kit_stress.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from gateway.conformance.runner import Run
from simulators.line import SimLine

from .conftest import CLASSES, PARALLEL, PROTOCOLS, at_most, only, produce, run_kit, sim_config, start

SUBJECTS = [(cls, protocol) for cls in CLASSES for protocol in PROTOCOLS]
BURN = "while True: pass"  # one core kept busy: the kit must not depend on getting the CPU when it asks


@dataclass
class Stress:
    runs: int = 0
    false_failures: list[str] = field(default_factory=list)  # "subject run n: CASE status: message"
    seconds: float = 0.0

    def line(self, parallel: int, burning: bool) -> str:
        return (f"kit stress: {self.runs} runs ({parallel} at a time{', a CPU burner alongside' if burning else ''}) "
                f"in {self.seconds:.0f} s: {len(self.false_failures)} false failures")


@contextmanager
def burner(on: bool) -> Iterator[None]:
    """A process of our own spinning on one core while the block runs; stopped by its pid."""
    proc = subprocess.Popen([sys.executable, "-c", BURN]) if on else None
    try:
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


async def stress(runs: int, parallel: int = 2, burn: bool = True, subjects: list[tuple[str, str]] | None = None,
                 allow_control: bool = True, report: Any = None) -> Stress:
    """Run the kit `runs` times against each conforming simulator; the false failures it reported."""
    subjects = subjects or SUBJECTS
    out = Stress()
    lines: list[SimLine] = await asyncio.gather(*(start(sim_config(c, p, f"stress-{c}-{p}")) for c, p in subjects))

    async def rounds(subject: tuple[str, str], line: SimLine) -> None:
        sim = only(line)
        for n in range(1, runs + 1):
            run: Run = await run_kit(line, allow_control=allow_control)
            out.runs += 1
            failed = [f"{'-'.join(subject)} run {n}: {r.case.id} {r.status}: {r.message}" for r in run.failing()]
            out.false_failures += failed
            if report is not None:
                report("\n  ".join([f"{'-'.join(subject)} run {n}: {'FAILED' if failed else 'ok'}"] + failed))
            if sim.machine.state() != "Execute":
                await produce(sim)  # the control tour leaves it Stopped; the next run observes it producing

    started = time.monotonic()
    try:
        with burner(burn):
            await at_most(parallel, [rounds(s, line) for s, line in zip(subjects, lines)])
    finally:
        for line in lines:
            await line.stop()
    out.seconds = time.monotonic() - started
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="kit_stress", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="kit runs per simulator (default 20)")
    ap.add_argument("--parallel", type=int, default=PARALLEL, help=f"kits at a time (default {PARALLEL}, as the suite)")
    ap.add_argument("--no-burn", action="store_true", help="without the CPU-burning process")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    for name in ("asyncua", "pymodbus", "linegw"):  # link errors during the outages are expected, and the kit's
        logging.getLogger(name).setLevel(logging.CRITICAL)  # verdict says what matters
    result = asyncio.run(stress(args.runs, args.parallel, not args.no_burn, report=lambda t: print(t, flush=True)))
    print(result.line(args.parallel, not args.no_burn))
    return 1 if result.false_failures else 0


if __name__ == "__main__":
    sys.exit(main())
