"""Who is calling: API keys, roles, and the loopback rule.

With `api.keys` configured every request carries `X-API-Key` (a browser's
WebSocket cannot set headers, so `/api/v1/live` also takes `?key=`); the key
names a user and a role. Viewers read; operators and engineers also command.
Without keys, reads are open and commands come only from loopback clients, as
user "local" with role "engineer".
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from gateway.config import Api, key_collisions
from interface_spec.loader import format_loc

COMMAND_ROLES = ("operator", "engineer")
KEY_HEADER = "X-API-Key"


class ApiConfigError(ValueError):
    """The api section cannot be served as configured."""


@dataclass(frozen=True)
class Principal:
    user: str
    role: str
    via_key: bool = False

    @property
    def may_command(self) -> bool:
        return self.role in COMMAND_ROLES


LOCAL = Principal("local", "engineer")
ANONYMOUS = Principal("anonymous", "viewer")


class KeyRing:
    """The configured keys, kept as their SHA-256 digests only: a memory dump or a log holds no key.

    Keys come from environment variables (read once, hashed at once) or as `key_sha256` from the
    line file itself. API keys are long random strings (`linegw keys new` makes 32 random bytes),
    so one SHA-256 is enough: there is nothing to guess that a slow hash would protect.
    """

    def __init__(self, api: Api):
        self._keys: list[tuple[bytes, Principal]] = []
        digests: list[bytes | None] = []
        for i, k in enumerate(api.keys):
            digest = k.digest()
            if digest is None:
                raise ApiConfigError(
                    f"api.keys[{i}].key_env: environment variable {k.key_env} (key of user '{k.user}') is not set or empty"
                )
            digests.append(digest)
            self._keys.append((digest, Principal(k.user, k.role, via_key=True)))
        # Refused here as well as at load: a key matching two entries would act with the rights of either.
        collisions = key_collisions(api, digests)
        if collisions:
            raise ApiConfigError("\n".join(f"{format_loc(loc)}: {what}" for loc, what in collisions))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def lookup(self, key: str) -> Principal | None:
        found = None
        given = hashlib.sha256(key.encode()).digest()
        for digest, principal in self._keys:  # compare with every key: timing says nothing about which matched
            if hmac.compare_digest(digest, given):
                found = principal  # at most one: the ring holds no two equal keys
        return found


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


class AuthError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def identify(ring: KeyRing, key: str | None, client_host: str | None) -> Principal:
    """The caller, or AuthError(401) when keys are required and this one is missing or unknown."""
    if not ring.enabled:
        return LOCAL if is_loopback(client_host) else ANONYMOUS
    if not key:
        raise AuthError(401, f"missing {KEY_HEADER} header: this gateway requires an API key (configured under api.keys)")
    principal = ring.lookup(key)
    if principal is None:
        raise AuthError(401, f"unknown API key in {KEY_HEADER}; use a key configured under api.keys")
    return principal


def command_refusal(principal: Principal, client_host: str | None) -> str | None:
    """Why this caller may not command, or None when it may."""
    if principal.may_command:
        return None
    if not principal.via_key:
        return (f"commands without API keys are accepted only from this machine (loopback), not from {client_host or 'an unknown client'}; "
                "configure api.keys with an operator or engineer key to command remotely")
    return f"user '{principal.user}' has role '{principal.role}'; commands need role {' or '.join(COMMAND_ROLES)}"
