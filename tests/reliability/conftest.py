"""The sink servers of the forwarding tests, for the SIGKILL series; the soak started beside the suite.

The two-minute soak (tests/reliability/soak.py) mostly waits on its gateway: it starts, as its own process, as
soon as the suite is collected and runs beside the other tests (a plant's gateway does not have the machine to
itself either); its test collects what it measured. Run alone, the test waits the two minutes."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.forward.conftest import vm  # noqa: F401  (a fixture: pytest finds it by name)

ROOT = Path(__file__).resolve().parents[2]
SOAK_TEST = "tests/reliability/test_soak.py::test_two_minutes_of_faults_leave_the_gateway_flat"
SOAK = pytest.StashKey[tuple[subprocess.Popen[str], Path]]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.nodeid == SOAK_TEST for item in session.items):
        folder = Path(tempfile.mkdtemp(prefix="linegw-soak-"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.soak", "--minutes", "2", "--interval", "8", "--fault-period", "10",
             "--out", str(folder / "soak.json"), "--chart", str(folder / "soak.png")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        session.config.stash[SOAK] = (proc, folder)


def pytest_sessionfinish(session: pytest.Session) -> None:
    started = session.config.stash.get(SOAK, None)
    if started is not None and started[0].poll() is None:  # the suite was cut short: so is the soak
        started[0].kill()
        started[0].wait()


@pytest.fixture
def soak_run(request: pytest.FixtureRequest) -> tuple[subprocess.Popen[str], Path]:
    started = request.config.stash.get(SOAK, None)
    if started is None:
        raise AssertionError(f"the soak was not started at collection ({SOAK_TEST} not collected by that id?)")
    return started
