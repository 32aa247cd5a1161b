"""Adapter settings for the OPC UA client: parsed once, checked early, typed.

Settings arrive as a plain dict from the line configuration (`adapter:` of an
equipment) merged with its `security:` section. Unknown keys are ignored because
the runtime passes the same dict to every adapter kind; known keys with wrong
values fail at construction, before anything connects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
# Policies asyncua implements that are still considered secure; the older
# Basic128Rsa15/Basic256 are deprecated by the OPC Foundation and not offered.
SECURITY_POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")
TRUST_MODES = ("first_use", "list")
APPLICATION_URI = "urn:linegw:gateway"
MODES = ("subscribe", "poll")


def default_certificate_dir() -> Path:
    """Where the gateway keeps its certificate when the configuration names no directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "linegw" / "opcua-pki"


@dataclass(frozen=True)
class OpcUaSettings:
    publishing_interval_ms: float = 500.0
    # Each point published at its own sampling interval when that is the slower one
    # (native machines: the spec's sampling_ms), grouped into one subscription per interval.
    publishing_from_sampling: bool = False
    mode: str = "subscribe"  # of points that do not name their own
    sampling_ms: float = 250.0
    queue_size: int = 1
    poll_interval_ms: float = 1000.0
    # How often the server must send a keep-alive when nothing changes; the
    # subscription's keep-alive count is derived from it and the publishing interval.
    keepalive_ms: float = 1000.0
    security_mode: str = "None"
    security_policy: str = "Basic256Sha256"
    certificate_dir: Path | None = None
    server_certificate: Path | None = None
    trust: str = "first_use"  # or "list": only certificates trusted beforehand
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    watchdog_s: float | None = None  # None: derived from the revised subscription timing
    # A subscription without data changes this long is checked against a Read of its liveliest items: changes
    # the server holds but never notified mean it went silent while sending keep-alives (a reconnect heals it).
    silence_check_s: float = 5.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    session_timeout_ms: float = 60_000.0
    request_timeout_s: float = 5.0
    # Upper bound on nodes per service call even when the server advertises no limit,
    # so one request never grows into a multi-megabyte message.
    max_nodes_per_request: int = 1000
    delivery_queue: int = 1000  # batches buffered between the publish loop and on_readings

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OpcUaSettings:
        def num(name: str, default: float, *, minimum: float = 0.0, strict: bool = True) -> float:
            value = raw.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"opcua setting {name}: expected a number, got {value!r}")
            if value < minimum or (strict and value == minimum):
                raise ValueError(f"opcua setting {name}: must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
            return float(value)

        def integer(name: str, default: int, minimum: int) -> int:
            value = raw.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"opcua setting {name}: expected an integer >= {minimum}, got {value!r}")
            return value

        def text(name: str) -> str | None:
            value = raw.get(name)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise ValueError(f"opcua setting {name}: expected a string, got {type(value).__name__}")
            return value

        def choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            value = raw.get(name, default) or default
            if value not in allowed:
                raise ValueError(f"opcua setting {name}: {value!r} is not one of {', '.join(allowed)}")
            return value

        from_sampling = raw.get("publishing_from_sampling", False)
        if not isinstance(from_sampling, bool):
            raise ValueError(f"opcua setting publishing_from_sampling: expected true or false, got {from_sampling!r}")
        # The runtime scans Modbus devices at scan_interval_ms; accept it as the
        # polling interval too, so one line config key works for both kinds.
        poll_default = raw.get("scan_interval_ms", 1000.0)
        watchdog = raw.get("watchdog_s")
        cert_dir = text("certificate_dir")
        server_cert = text("server_certificate")
        backoff_initial = num("backoff_initial_s", 0.5)
        backoff_max = num("backoff_max_s", 30.0)
        if backoff_max < backoff_initial:
            raise ValueError("opcua setting backoff_max_s: must be >= backoff_initial_s")
        return cls(
            publishing_interval_ms=num("publishing_interval_ms", 500.0),
            publishing_from_sampling=from_sampling,
            mode=choice("mode", "subscribe", MODES),
            sampling_ms=num("sampling_ms", 250.0, strict=False),
            queue_size=integer("queue_size", 1, 1),
            poll_interval_ms=num("poll_interval_ms", poll_default),
            keepalive_ms=num("keepalive_ms", 1000.0),
            security_mode=choice("security_mode", "None", SECURITY_MODES),
            security_policy=choice("security_policy", "Basic256Sha256", SECURITY_POLICIES),
            certificate_dir=Path(cert_dir) if cert_dir else None,
            server_certificate=Path(server_cert) if server_cert else None,
            trust=choice("trust", "first_use", TRUST_MODES),
            username=text("username"),
            password=text("password"),
            watchdog_s=None if watchdog is None else num("watchdog_s", 0.0),
            silence_check_s=num("silence_check_s", 5.0),
            backoff_initial_s=backoff_initial,
            backoff_max_s=backoff_max,
            session_timeout_ms=num("session_timeout_ms", 60_000.0),
            request_timeout_s=num("request_timeout_s", 5.0),
            max_nodes_per_request=integer("max_nodes_per_request", 1000, 1),
            delivery_queue=integer("delivery_queue", 1000, 1),
        )

    @property
    def secure(self) -> bool:
        return self.security_mode != "None"

    def pki_dir(self) -> Path:
        return self.certificate_dir or default_certificate_dir()
