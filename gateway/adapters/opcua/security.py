"""The gateway's OPC UA identity and which servers it trusts.

The gateway has one application instance certificate (application URI
"urn:linegw:gateway") kept in the certificate directory. It is created on first
use and reused afterwards: equipment administrators trust it once on their
server, and a new certificate at every start would undo that.

Server certificates are trusted on first use by default: the first certificate
seen at an endpoint is stored under `trusted/` and from then on only a trusted
certificate is accepted there. With the trust mode "list" nothing is trusted
by being seen: an unknown certificate is refused and kept under `rejected/`,
where `linegw certs list` shows it and `linegw certs trust` moves it to
`trusted/` (`linegw certs reject` moves a trusted one back). A certificate
copied into `trusted/` by hand is trusted too. A `server_certificate` setting
pins one exact certificate instead.

Layout of the certificate directory:

    own/cert.der        the gateway certificate (DER)
    own/key.pem         its private key (PEM, mode 0600)
    trusted/*.der       accepted server certificates
    rejected/*.der      certificates refused (trust mode "list"), for an engineer to trust or leave
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.adapters.opcua.settings import APPLICATION_URI

# One generation at a time per directory: several machines' adapters start together
# and must not each write a different key into the same files.
_dir_locks: dict[Path, asyncio.Lock] = {}


class TrustError(Exception):
    """The server's certificate is not trusted; the message says what to do."""


def thumbprint(der: bytes) -> str:
    """SHA-1 over the DER bytes: the thumbprint OPC UA tools show."""
    return hashlib.sha1(der).hexdigest()


@dataclass(frozen=True)
class Identity:
    cert: Path
    key: Path
    thumbprint: str


async def gateway_identity(pki: Path) -> Identity:
    """The gateway certificate and key, created when missing or no longer valid."""
    pki = pki.expanduser().resolve()  # noqa: ASYNC240  (once per connect, before any I/O: no stall worth a thread)
    lock = _dir_locks.setdefault(pki, asyncio.Lock())
    own = pki / "own"
    cert, key = own / "cert.der", own / "key.pem"
    async with lock:
        own.mkdir(parents=True, exist_ok=True)
        # Regenerates only what is missing or invalid (expired, other host name).
        await cert_gen.setup_self_signed_certificate(
            key, cert, APPLICATION_URI, socket.gethostname(), [ExtendedKeyUsageOID.CLIENT_AUTH], {"organizationName": "linegw"}
        )
        os.chmod(key, 0o600)
        der = cert.read_bytes()
    return Identity(cert, key, thumbprint(der))


def load_certificate_der(path: Path) -> bytes:
    data = path.read_bytes()
    if b"-----BEGIN CERTIFICATE-----" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(Encoding.DER)
    x509.load_der_x509_certificate(data)  # fail early on a file that is no certificate
    return data


def first_certificate(der: bytes) -> bytes:
    """The leading certificate of a DER blob that may carry the issuer chain after it."""
    length = int.from_bytes(der[2:4], "big") + 4
    return der[:length]


class TrustStore:
    """Decides whether a server certificate is accepted at one endpoint."""

    def __init__(self, pki: Path, endpoint_host: str, endpoint_port: int, pinned: Path | None,
                 first_use: bool = True) -> None:
        self.dir = pki.expanduser() / "trusted"
        self.rejected = pki.expanduser() / "rejected"
        self.slug = re.sub(r"[^A-Za-z0-9.-]", "_", f"{endpoint_host}_{endpoint_port}")
        self.pinned = pinned
        self.first_use = first_use

    def check(self, der: bytes) -> str:
        """Accept `der` or raise TrustError; returns the thumbprint."""
        der = first_certificate(der)
        tp = thumbprint(der)
        if self.pinned is not None:
            try:
                pinned = load_certificate_der(self.pinned)
            except (OSError, ValueError) as exc:
                raise TrustError(f"cannot load server_certificate {self.pinned}: {exc}") from None
            if pinned != der:
                raise TrustError(
                    f"server certificate {tp} is not the pinned certificate {thumbprint(pinned)} ({self.pinned})"
                )
            return tp
        self.dir.mkdir(parents=True, exist_ok=True)
        known = sorted(self.dir.glob("*.der"))
        for path in known:
            if path.read_bytes() == der:
                return tp
        remembered = [p for p in known if p.name.startswith(self.slug + "_")]
        if remembered:
            # Kept where `linegw certs` finds it: an engineer who knows the server was renewed accepts it there.
            _write(self.rejected / f"{self.slug}_{tp[:16]}.der", der)
            raise TrustError(
                f"server certificate changed: {tp} is not trusted for this endpoint "
                f"(trusted: {', '.join(p.name for p in remembered)}); if the server's certificate was renewed, "
                f"accept it with `linegw certs trust {tp[:16]} --dir {self.dir.parent}`"
            )
        if not self.first_use:
            _write(self.rejected / f"{self.slug}_{tp[:16]}.der", der)
            raise TrustError(f"server certificate {tp} is not trusted (trust: list); see it with `linegw certs list "
                             f"--dir {self.dir.parent}` and accept it with `linegw certs trust {tp[:16]} --dir "
                             f"{self.dir.parent}`")
        _write(self.dir / f"{self.slug}_{tp[:16]}.der", der)
        return tp


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@dataclass(frozen=True)
class StoredCertificate:
    status: str  # "trusted" or "rejected"
    thumbprint: str
    endpoint: str  # host_port the certificate was first seen at (from the file name), or "" if copied in
    subject: str
    not_after: str
    path: Path


def certificates(pki: Path) -> list[StoredCertificate]:
    """Every certificate under trusted/ and rejected/, trusted first."""
    out = []
    for status in ("trusted", "rejected"):
        for path in sorted((pki.expanduser() / status).glob("*.der")):
            der = path.read_bytes()
            try:
                cert = x509.load_der_x509_certificate(der)
                subject, not_after = cert.subject.rfc4514_string(), cert.not_valid_after_utc.isoformat()
            except ValueError:
                subject, not_after = "(not a certificate)", ""
            endpoint = path.stem.rsplit("_", 1)[0] if "_" in path.stem else ""
            out.append(StoredCertificate(status, thumbprint(der), endpoint, subject, not_after, path))
    return out


def move(pki: Path, prefix: str, to: str) -> StoredCertificate:
    """Move the one certificate whose thumbprint starts with `prefix` into trusted/ or rejected/."""
    found = [c for c in certificates(pki) if c.thumbprint.startswith(prefix.lower())]
    if len(found) != 1:
        raise ValueError(f"{len(found)} certificates under {pki} have a thumbprint starting with '{prefix}'"
                         + (": give more of it" if found else "; `linegw certs list` shows them"))
    cert = found[0]
    target = pki.expanduser() / to / cert.path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    cert.path.replace(target)
    return StoredCertificate(to, cert.thumbprint, cert.endpoint, cert.subject, cert.not_after, target)
