"""Network endpoints: the one parser for every address in a line file.

The config check, the Modbus and the OPC UA adapters and the simulators all read
an endpoint here, so a file that passes `check-config` is read the same way at
run time. Accepted forms (the scheme is optional where a protocol has a default):

    host              host:port             modbus://host:port     modbus+tcp://[::1]:502
    [::1]             [::1]:502             fe80::1 (a bare IPv6 address, no port)
    opc.tcp://host:4840/path                opc.tcp://[fe80::1%25eth0]:4840/path

URLs go through `urllib.parse.urlsplit`; a bare address is read as the network
location of a URL. IPv6 hosts come back without brackets; `Endpoint.where`
puts them back for messages and URLs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# A host name per RFC 1123: dot-separated labels of letters, digits and inner hyphens,
# 253 characters at most. Underscores are accepted (they occur in site DNS names).
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


# The schemes each built-in adapter accepts ("" for a bare address).
SCHEMES: dict[str, tuple[str, ...]] = {
    "modbus": ("", "modbus", "modbus+tcp", "tcp"),
    "opcua": ("opc.tcp",),
}
DEFAULT_PORTS = {"modbus": 502, "opcua": 4840}


class EndpointError(ValueError):
    """An endpoint that cannot be read; the message says what is wrong with it."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # lower case; "" when the text had none
    host: str  # an IPv6 address without its brackets
    port: int | None  # None when the text names none
    path: str = ""

    @property
    def where(self) -> str:
        """host:port for messages, IPv6 in brackets ("[::1]:502"); the host alone without a port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"


def host_problem(host: str) -> str | None:
    """Why `host` is neither an IP address nor a host name, or None when it is one."""
    if not host:
        return "no host"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    name = host[:-1] if host.endswith(".") else host  # a fully qualified name may end in a dot
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"'{host}' is neither an IP address nor a host name"
    if labels[-1].isdigit():  # all-numeric last label: meant as an IPv4 address, and not a valid one
        return f"'{host}' is not a valid IPv4 address"
    return None


def parse_endpoint(text: str, schemes: tuple[str, ...] | None = None) -> Endpoint:
    """The scheme, host, port and path of `text`, or EndpointError saying what is wrong.

    `schemes`, when given, are the schemes accepted ("" for none).
    """
    raw = text.strip()
    if "://" in raw:
        url = raw
    elif raw.count(":") >= 2 and not raw.startswith("["):
        # Two colons or more outside brackets: an IPv6 address, which cannot carry a port this way.
        try:
            ipaddress.ip_address(raw)
        except ValueError:
            raise EndpointError(f"'{text}' is not an IPv6 address; write an IPv6 address with a port as [address]:port") from None
        url = f"//[{raw}]"
    else:
        url = "//" + raw
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port that is not a number or out of range
    except ValueError as exc:
        raise EndpointError(_why(text, str(exc))) from None
    scheme = parts.scheme.lower()
    if schemes is not None and scheme not in schemes:
        accepted = ", ".join(f"{s}://" for s in schemes if s)
        bare = " or none" if "" in schemes else ""
        raise EndpointError(f"'{text}': scheme '{scheme}' is not accepted here (use {accepted}{bare})")
    if parts.username is not None or parts.password is not None:
        raise EndpointError(f"'{text}': credentials do not belong in an endpoint; use the security section")
    host = parts.hostname or ""
    if not host:
        raise EndpointError(f"'{text}' has no host")
    if ":" in host:  # IPv6, checked by urlsplit; a zone is written %25eth0 in a URL (RFC 6874), %eth0 to the OS
        host = host.replace("%25", "%", 1)
    else:
        problem = host_problem(host)
        if problem:
            raise EndpointError(problem)
    return Endpoint(scheme, host, port, parts.path)


def _why(text: str, error: str) -> str:
    """urlsplit's complaint in the words of a line file."""
    if "out of range" in error:
        return f"port must be 0-65535, got {_port_text(text)}"
    if "could not be cast" in error:
        return f"port '{_port_text(text)}' is not a number"
    if "Invalid IPv6 URL" in error:
        return f"'{text}': unbalanced brackets around an IPv6 address"
    return f"'{text}': {error}"


def _port_text(text: str) -> str:
    """What follows the host's last colon, for messages about a bad port."""
    netloc = text.strip().split("://", 1)[-1].split("/", 1)[0]
    return netloc.rpartition("]")[2].rpartition(":")[2]
