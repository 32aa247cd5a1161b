"""HTTPS for the API: `linegw run` with api.tls serves TLS only; a certificate and key that do not load
together are refused at load with file:line, not as a traceback when the API starts."""

from __future__ import annotations

import datetime
import ipaddress
import ssl

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import load_line
from interface_spec import SpecError
from simulators.line import SimConfig, SimLine
from tests.e2e.linegw_process import line_starting, start, stop

LINE = """\
line: tlsline
api:
  host: 127.0.0.1
  port: 0
  tls: {{cert_file: {cert}, key_file: {key}}}
store: {{path: {db}}}
equipment:
  - id: winder1
    class: winder
    protocol: modbus
    endpoint: {endpoint}
"""


def self_signed(folder, name: str = "gw") -> tuple[str, str]:
    """A certificate for 127.0.0.1 and its key, as PEM files: (cert file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "linegw test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return f"{name}.pem", f"{name}.key"


async def test_the_api_speaks_tls_only_when_configured(tmp_path):
    sims = SimLine()
    await sims.start([SimConfig(equipment_id="winder1", cls="winder", protocol="modbus", port=0, seed=6, time_scale=10)])
    cert, key = self_signed(tmp_path)
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(cert=cert, key=key, db=tmp_path / "line.sqlite",
                                     endpoint=sims.endpoints()["winder1"]))
    gateway = await start("run", str(line_file))
    try:
        api = (await line_starting(gateway, "linegw: line 'tlsline' API on ")).split()[5]
        assert api.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(tmp_path / cert))
        async with httpx.AsyncClient(verify=trusted, timeout=10) as c:
            r = await c.get(f"{api}/line")
            assert r.status_code == 200 and r.json()["line"] == "tlsline"
        async with httpx.AsyncClient(timeout=5) as c:
            with pytest.raises(httpx.HTTPError):  # plain HTTP on the TLS port: no answer but a failed handshake
                await c.get(api.replace("https://", "http://") + "/line")
            with pytest.raises(httpx.ConnectError):  # and a client that does not trust the certificate stops
                await c.get(f"{api}/line")
        code, err = await stop(gateway)
        gateway = None
        assert code == 0, err
    finally:
        if gateway is not None:
            await stop(gateway)
        await sims.stop()


def test_a_certificate_and_key_that_do_not_match_are_refused_with_the_file_line(tmp_path):
    cert, _ = self_signed(tmp_path, "a")
    _, other_key = self_signed(tmp_path, "b")
    line_file = tmp_path / "line.yaml"
    line_file.write_text(LINE.format(cert=cert, key=other_key, db=tmp_path / "line.sqlite",
                                     endpoint="modbus://127.0.0.1:1"))
    with pytest.raises(SpecError, match=rf"^{line_file}:5: api\.tls: the certificate .*a\.pem and key .*b\.key do not "
                                        r"load together"):
        load_line(line_file)
    line_file.write_text(LINE.format(cert="missing.pem", key=other_key, db=tmp_path / "line.sqlite",
                                     endpoint="modbus://127.0.0.1:1"))
    with pytest.raises(SpecError, match=rf"^{line_file}:5: api\.tls\.cert_file: .*missing\.pem does not exist$"):
        load_line(line_file)
