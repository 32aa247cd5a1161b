"""Storage faults under a running store: real disk-full, immutable and removed files; nothing held is lost.

The faults are real, not simulated in code: a file size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored as CPython does) makes every write to the store's files fail as a
full disk does; `chattr +i` makes the database and its WAL immutable (root only,
where chmod would not stop a write); the file is removed or replaced on disk.
The first two run in a child process, so that a crash (the SIGBUS once seen with
memory-mapped I/O) is a failed test and not a dead test run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.samples import Quality, Sample
from gateway.store import SqliteStore
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0

# The child: a store taking samples while `fault` is switched on and off; prints what it saw as JSON.
CHILD = textwrap.dedent('''
    import asyncio, json, logging, os, resource, sqlite3, subprocess, sys, time
    from gateway.samples import Quality, Sample
    from gateway.store import SqliteStore

    fault, path = sys.argv[1], sys.argv[2]
    lines = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append((record.levelname, record.getMessage()))

    logging.getLogger("linegw.store").addHandler(Keep())
    logging.getLogger("linegw.store").setLevel(logging.INFO)

    def batch(k):
        return [Sample("m1", f"p{i}", float(k), "", 1e9 + k, time.time(), Quality.GOOD) for i in range(100)]

    def switch(on):
        if fault == "fsize":
            soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 if on else hard, hard))
        else:  # "immutable": the database and its WAL; "immutable_db": the database file alone
            for f in (path, path + "-wal") if fault == "immutable" else (path,):
                subprocess.run(["chattr", "+i" if on else "-i", f], check=True)

    async def until(pred, timeout=30):
        end = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < end, "timed out"
            await asyncio.sleep(0.05)

    async def main():
        s = SqliteStore(path, max_queue=100_000)
        await s.start()
        k = 0
        for _ in range(10):
            s.write_samples(batch(k)); k += 1
        await s.flush()
        switch(True)
        try:
            for _ in range(30):
                s.write_samples(batch(k)); k += 1
                # Readers at work meanwhile: the connections that once mapped the file into memory.
                await s.history("m1", "p1", 0, 2e9)
                await asyncio.sleep(0.02)
            if fault == "immutable_db":  # commits go to the WAL; a checkpoint into the file fails
                with sqlite3.connect(path) as c:
                    try:
                        c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    except sqlite3.Error as exc:
                        lines.append(("CHECKPOINT", str(exc)))
                for _ in range(10):
                    s.write_samples(batch(k)); k += 1
                    await s.history("m1", "p1", 0, 2e9)
                await s.flush()
            else:
                await until(lambda: s.stats()["commit_failures"] >= 2)
            during = s.stats()
        finally:
            switch(False)
        await asyncio.wait_for(s.flush(), 60)
        after = s.stats()
        await s.close()
        print(json.dumps({"during": during, "after": after, "sent": k * 100, "lines": lines}))

    asyncio.run(main())
''')


def run_child(fault: str, path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, fault, str(path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"the store's process ended with {proc.returncode}: {proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rows(path: Path) -> int:
    with sqlite3.connect(path) as c:
        return c.execute("SELECT count(*) FROM samples").fetchone()[0]


def check_held_and_caught_up(out: dict, path: Path) -> None:
    during, after = out["during"], out["after"]
    # While failing: the failures are counted, the reason kept, and the samples held in memory.
    assert during["commit_failures"] >= 2 and during["failing_since"] is not None
    assert during["held"] > 0 and during["held"] <= during["max_queue"] + 100 * 30
    # Cleared: nothing held, nothing dropped, every sample on disk.
    assert after["commit_failures"] == 0 and after["failing_since"] is None and after["held"] == 0
    assert after["dropped"] == 0 and after["written"] == out["sent"]
    assert rows(path) == out["sent"]
    # One line as failures start (with the true number held), one as they end; not one per attempt.
    failing = [m for lvl, m in out["lines"] if "commits fail" in m]
    back = [m for lvl, m in out["lines"] if "commits succeed again" in m]
    assert len(failing) == 1 and len(back) == 1, out["lines"]
    held_first = int(failing[0].split("holding ")[1].split()[0])
    assert held_first > 0, failing[0]
    assert int(back[0].split("the ")[1].split()[0]) > 0, back[0]


def test_a_full_disk_holds_the_samples_says_so_once_and_catches_up(tmp_path):
    path = tmp_path / "store.sqlite"
    out = run_child("fsize", path)
    check_held_and_caught_up(out, path)
    assert "full" in out["during"]["last_error"] or "I/O" in out["during"]["last_error"], out["during"]["last_error"]


def run_immutable(tmp_path: Path, fault: str) -> tuple[dict, Path]:
    """The child under `chattr +i`, which stops a write for root too (chmod does not, as root). Without
    root, or on a file system without the flag, skipped: the disk-full test covers a refused write."""
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root")
    probe = tmp_path / "probe"
    probe.write_text("x")
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    path = tmp_path / "store.sqlite"
    try:
        return run_child(fault, path), path
    finally:
        for f in (path, Path(f"{path}-wal")):
            subprocess.run(["chattr", "-i", str(f)], capture_output=True)


def test_an_immutable_store_file_is_survived_without_a_crash_and_caught_up(tmp_path):
    out, path = run_immutable(tmp_path, "immutable")  # the database and its WAL
    check_held_and_caught_up(out, path)


def test_an_immutable_database_file_under_readers_and_checkpoints_is_no_crash(tmp_path):
    # The fault once seen to end the gateway with SIGBUS: chattr +i on the database file alone.
    out, path = run_immutable(tmp_path, "immutable_db")
    assert out["after"]["dropped"] == 0 and out["after"]["held"] == 0
    assert rows(path) == out["sent"]


def samples(k0: int, n: int) -> list[Sample]:
    return [Sample("m1", "p", float(k), "", T0 + k, T0 + k, Quality.GOOD) for k in range(k0, k0 + n)]


async def test_no_connection_maps_the_file_into_memory(tmp_path):
    async with SqliteStore(tmp_path / "store.sqlite") as s:
        s.write_samples(samples(0, 10))
        await s.flush()
        assert await s._read(lambda c: c.execute("PRAGMA mmap_size").fetchone()[0]) == 0
        assert await s._write(lambda c: c.execute("PRAGMA mmap_size").fetchone()[0]) == 0
        # Every other connection is opened by the same _connect as these two.
        with contextlib.closing(s._connect()) as conn:
            assert conn.execute("PRAGMA mmap_size").fetchone()[0] == 0


@pytest.mark.parametrize("how", ["removed", "replaced"])
async def test_a_store_file_removed_or_replaced_underneath_is_opened_again(tmp_path, how, caplog):
    path = tmp_path / "store.sqlite"
    async with SqliteStore(path) as s:
        s.write_samples(samples(0, 100))
        await s.flush()
        assert len(await s.history("m1", "p", T0, T0 + 1000)) == 100
        if how == "removed":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            other = tmp_path / "other.sqlite"
            async with SqliteStore(other) as o:
                o.write_samples(samples(1000, 5))
            os.replace(other, path)
        # The writer notices at its next commits (checked every second while it writes).
        k = 100

        def more() -> bool:
            nonlocal k
            s.write_samples(samples(k, 10))
            k += 10
            return s.stats()["file_reopened"] == 1

        await wait_for(more, "the store opening its file again", timeout=30)
        await s.flush()
        s.write_samples(samples(k, 10))
        await s.flush()
        # The samples written after the reopen are in the file at the path, readable through the store.
        on_disk = rows(path)
        got = {x["value"] for x in await s.history("m1", "p", T0, T0 + 100_000)}
        assert float(k + 9) in got and on_disk == len(got)
        if how == "replaced":  # the file put in its place is the one written to, its samples kept
            assert {float(v) for v in range(1000, 1005)} <= got
    assert any(f"store file was {how}" in r.getMessage() for r in caplog.records)
