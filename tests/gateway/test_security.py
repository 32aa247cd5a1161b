"""OPC UA security from the line file: Sign and SignAndEncrypt, logins with the password from the
environment or a file, the gateway's certificate kept across reconnects, a wrong password refused."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.config import load_line
from gateway.logs import configure as configure_logging
from gateway.runtime.device import Device
from gateway.runtime.line import LineRuntime
from gateway.store.sqlite import SqliteStore
from interface_spec import load_spec
from simulators.line import SimConfig, SimLine
from simulators.servers.opcua_server import OpcUaSecurity
from tests.waiting import wait_for

PASSWORD = "s3cret-line-pw"
ROOT = Path(__file__).resolve().parents[2]


@contextlib.asynccontextmanager
async def secured_coater(tmp_path: Path, mode: str, password_source: str, policy: str = "Basic256Sha256",
                         trust: str = "first_use") -> AsyncIterator[tuple[Device, SimLine]]:
    """A simulated coater that accepts only `mode` under `policy` and user "line" with PASSWORD, read
    through a line file whose security section names them and gives the password by `password_source`."""
    sims = SimLine()
    await sims.start([SimConfig(equipment_id="coater9", cls="coater", port=0, counts={"dryer_zone": 2, "lane": 2},
                                security=OpcUaSecurity(modes=[mode], username="line", password=PASSWORD,
                                                       policy=policy))])
    (tmp_path / "line.yaml").write_text(
        "line: secure\nequipment:\n  - id: coater9\n    class: coater\n    protocol: opcua\n"
        f"    endpoint: {sims.endpoints()['coater9']}\n    counts: {{dryer_zone: 2, lane: 2}}\n"
        "    adapter: {backoff_initial_s: 0.1, backoff_max_s: 0.5}\n"
        f"    security:\n      mode: {mode}\n      policy: {policy}\n      trust: {trust}\n      username: line\n"
        f"      {password_source}\n      certificate_dir: {tmp_path / 'pki'}\n"
    )
    store = SqliteStore(tmp_path / "store.sqlite")
    await store.start()
    runtime = LineRuntime(load_line(tmp_path / "line.yaml"), load_spec(), store)
    configure_logging("info")  # as `linegw run` does
    task = asyncio.create_task(runtime.run())
    try:
        yield runtime.devices["coater9"], sims
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await sims.stop()


async def serving(dev: Device) -> None:
    await wait_for(lambda: "identification.manufacturer" in dev.latest and dev.view.available,
                   f"values over the secured session (link: {dev.view.link_reason!r})", timeout=30)


async def test_sign_and_encrypt_with_login_from_the_line_file(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LINEGW_TEST_OPCUA_PASSWORD", PASSWORD)
    caplog.set_level(logging.INFO)
    async with secured_coater(tmp_path, "SignAndEncrypt", "password_env: LINEGW_TEST_OPCUA_PASSWORD") as (dev, _):
        await serving(dev)
        assert dev.latest["identification.manufacturer"].value
        assert any((tmp_path / "pki").rglob("*")), "the gateway certificate was not kept in certificate_dir"
        assert caplog.records, "nothing was logged: the check below would prove nothing"
        assert PASSWORD not in caplog.text, "a secret reached the log"


async def test_sign_with_the_password_from_a_file_keeps_its_certificate_across_reconnects(tmp_path):
    (tmp_path / "pw").write_text(PASSWORD + "\n")  # as editors and `echo` leave it
    async with secured_coater(tmp_path, "Sign", f"password_file: {tmp_path / 'pw'}") as (dev, sims):
        await serving(dev)
        assert dev.adapter is not None
        health = dev.adapter.health()
        assert health.extra["security_mode"] == "Sign"  # the server offers nothing else
        first = health.extra["certificate_thumbprint"]
        cert = tmp_path / "pki" / "own" / "cert.der"
        assert hashlib.sha1(cert.read_bytes()).hexdigest() == first
        before = dev.latest["status.heartbeat"].gateway_ts

        sims.simulators["coater9"].faults.drop_connections()
        await wait_for(lambda: dev.adapter.health().reconnects >= 1 and dev.adapter.health().connected, "a new session")
        await wait_for(lambda: dev.latest["status.heartbeat"].gateway_ts > before and dev.view.available,
                       "values on the new session")
        assert dev.adapter.health().extra["certificate_thumbprint"] == first
        assert hashlib.sha1(cert.read_bytes()).hexdigest() == first


async def test_a_wrong_password_is_refused_with_the_reason(tmp_path, caplog):
    (tmp_path / "pw").write_text("not-the-password\n")
    caplog.set_level(logging.INFO)
    async with secured_coater(tmp_path, "Sign", f"password_file: {tmp_path / 'pw'}") as (dev, _):
        reason = await wait_for(lambda: dev.view.link_reason, "the refusal")
        assert reason == "login as 'line' refused: BadUserAccessDenied; check username and password"
        assert not dev.view.available
        assert set(dev.latest) == {"status.availability"}  # the gateway's own word, nothing from the machine
        assert dev.adapter is not None and dev.adapter.health().last_error == reason
        assert "not-the-password" not in caplog.text


@pytest.mark.parametrize("policy", ["Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"])
async def test_sign_and_encrypt_under_the_aes_policies(tmp_path, monkeypatch, policy):
    monkeypatch.setenv("LINEGW_TEST_OPCUA_PASSWORD", PASSWORD)
    async with secured_coater(tmp_path, "SignAndEncrypt", "password_env: LINEGW_TEST_OPCUA_PASSWORD",
                              policy=policy) as (dev, _):
        await serving(dev)
        assert dev.adapter is not None
        assert dev.adapter.health().extra["security_mode"] == "SignAndEncrypt"
        assert dev.adapter.health().extra["security_policy"] == policy


def certs(*args: str) -> str:
    """`linegw certs ...` as a process: its output (the command must succeed)."""
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "certs", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_a_trust_list_refuses_an_unknown_server_until_an_engineer_trusts_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LINEGW_TEST_OPCUA_PASSWORD", PASSWORD)
    pki = tmp_path / "pki"
    async with secured_coater(tmp_path, "SignAndEncrypt", "password_env: LINEGW_TEST_OPCUA_PASSWORD",
                              trust="list") as (dev, sims):
        reason = await wait_for(lambda: "not trusted" in dev.view.link_reason and dev.view.link_reason,
                                "the refusal", timeout=30)
        assert "(trust: list)" in reason and "linegw certs trust" in reason
        assert not dev.view.available and not list((pki / "trusted").glob("*.der"))
        [rejected] = (pki / "rejected").glob("*.der")
        tp = hashlib.sha1(rejected.read_bytes()).hexdigest()
        listed = certs("list", "--dir", str(pki))
        assert "rejected" in listed and tp in listed

        certs("trust", tp[:12], "--dir", str(pki))
        await serving(dev)  # the next connect presents the same certificate, trusted now
        assert dev.adapter is not None and dev.adapter.health().extra["server_certificate_thumbprint"] == tp

        certs("reject", tp[:12], "--dir", str(pki))
        sims.simulators["coater9"].faults.drop_connections()
        # One outage, reported once as it began ("connection lost"); the adapter's health has the reason now.
        await wait_for(lambda: not dev.view.available and "not trusted" in dev.adapter.health().last_error,
                       "refused again after the reject", timeout=30)
