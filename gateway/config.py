"""The line configuration: one YAML file that lists a line's equipment.

Validated by pydantic; every error names the file, the line and the field
(`deploy/lines/demo.yaml:14: equipment[2].endpoint: ...`). Secrets are never
written in the file: a password comes from an environment variable or a file.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from gateway.adapters import declared_model, model_problems
from gateway.analytics.energy_settings import EnergySettings
from gateway.analytics.shifts import Shifts
from gateway.endpoint import SCHEMES, host_problem, parse_endpoint
from gateway.forward.config import ForwardConfig
from interface_spec.loader import SpecError, format_loc, line_of, load_model, one_line, yaml_node
from interface_spec.spec import Spec
from interface_spec.vendor import VENDOR_DIR, vendor_names, vendor_path

ID = r"^[A-Za-z][A-Za-z0-9_-]*$"
NETWORK_SCHEMES = {scheme for schemes in SCHEMES.values() for scheme in schemes}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecretError(SpecError):
    """A secret the line file names cannot be read: which field, and why (never the secret)."""

    def __init__(self, field: str, what: str):
        super().__init__(f"security.{field}: {what}")
        self.field, self.what = field, what


class Security(_Strict):
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    policy: Literal["Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"] = "Basic256Sha256"
    # Server certificates: "first_use" keeps the first one an endpoint shows and refuses a change;
    # "list" accepts only those trusted beforehand (`linegw certs trust`), an unknown one is kept aside
    # under rejected/ for the engineer to look at.
    trust: Literal["first_use", "list"] = "first_use"
    username: str | None = None
    password_env: str | None = None  # name of an environment variable holding the password
    password_file: str | None = None  # path of a file holding the password
    certificate_dir: str | None = None  # where the gateway's persistent certificate lives

    def password(self) -> SecretStr | None:
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise SecretError("password_env", f"environment variable {self.password_env} is not set")
            return SecretStr(value)
        if self.password_file:
            try:
                return SecretStr(Path(self.password_file).read_text(encoding="utf-8").strip())
            except OSError as exc:
                raise SecretError("password_file", f"cannot read {self.password_file}: {exc.strerror}") from None
        return None


class Simulate(_Strict):
    """How `linegw simulate` / `linegw demo` serve this machine without hardware."""

    # The vendor file the simulator serves: a shipped vendor's name (interface_spec/vendors/) or a path.
    # Unset: the entry's own `mapping` (one file, read by the gateway and served by the simulator), or
    # the spec's native profile ("conforming") for a machine without one.
    dialect: str | None = None
    seed: int = 1
    time_scale: float = Field(default=1.0, gt=0)
    faults: list[str] = []
    machine_name: str | None = Field(default=None, pattern=r"^[^/]+$")  # a browse path's element, as `machine`
    options: dict[str, Any] = {}  # process model options, e.g. {roll_length_m: 200}


class Equipment(_Strict):
    id: str = Field(pattern=ID)
    cls: Literal["coater", "winder", "formation"] = Field(alias="class")
    protocol: str = Field(pattern=r"^[a-z][a-z0-9_]*$")  # adapter entry-point name: opcua, modbus, ...
    endpoint: str
    # OPC UA native profile: the machine object under Machines/; one element of a browse path, so no "/" in it
    machine: str | None = Field(default=None, pattern=r"^[^/]+$")
    mapping: str | None = None  # vendor file (a path, or a shipped vendor's name); none = the spec's native profile
    # Array sizes, 1 or more (at most the spec's maximum, checked with the spec); discovered from the machine when absent.
    counts: dict[str, Annotated[int, Field(ge=1)]] = {}
    adapter: dict[str, Any] = {}  # adapter settings: scan_interval_ms, timeouts, limits...
    security: Security = Security()
    command_timeout_s: float = Field(default=10.0, gt=0)
    simulate: Simulate | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        protocol = info.data.get("protocol")
        if protocol in SCHEMES:
            parse_endpoint(value, SCHEMES[protocol])  # EndpointError is a ValueError: a field error
        elif value.split("://", 1)[0].lower() in NETWORK_SCHEMES or "://" not in value:
            parse_endpoint(value)  # a plug-in adapter's network address
        # else: a plug-in adapter's own address syntax, its to check
        return value


class CommandLimits(_Strict):
    """Commands (and alarm acknowledgements) accepted per minute; past a limit the API answers 429."""
    per_caller_per_min: int = Field(default=60, ge=1)
    per_machine_per_min: int = Field(default=120, ge=1)


class Tls(_Strict):
    """HTTPS for the API: a PEM certificate (chain) and its private key, paths relative to the line file.

    With it the port speaks TLS only: a plain HTTP request gets no answer but a failed handshake.
    """
    cert_file: str
    key_file: str


class Api(_Strict):
    host: str = "127.0.0.1"  # localhost unless configured otherwise
    port: int = Field(default=8080, ge=0, le=65535)  # 0: a free port, printed at start (tests, demos)
    # API keys: header X-API-Key. Without any, only localhost clients may command, as role "engineer".
    keys: list[ApiKey] = []
    command_limits: CommandLimits = CommandLimits()
    tls: Tls | None = None
    # Live messages waiting for one WebSocket client; a client that lets more pile up is dropped (close 1013),
    # so a client that never reads holds no more than this (the dashboard reconnects by itself).
    live_queue: int = Field(default=1000, ge=10, le=100_000)
    # WebSocket keep-alive: a ping every this many seconds, and a client that has not answered it this many seconds
    # later is dropped. This is what finds a client that stopped reading (a tab asleep, a half-open link): until
    # the kernel's send buffer, which grows to megabytes, is full, its messages still leave without waiting.
    ws_keepalive_s: float = Field(default=20.0, gt=0, le=3600)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        problem = host_problem(value)
        if problem:
            raise ValueError(f"{problem}; give the address to listen on, e.g. 127.0.0.1 or 0.0.0.0")
        return value


class ApiKey(_Strict):
    user: str
    role: Literal["viewer", "operator", "engineer"]
    # Exactly one of: the environment variable holding the key, or the key's SHA-256 (hex) written in the
    # line file itself (`linegw keys new` makes a key and its hash): then no secret is stored anywhere.
    key_env: str | None = None
    key_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _one_source(self) -> ApiKey:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError(f"user '{self.user}': give the key as key_env (an environment variable) or as "
                             "key_sha256 (its hash, from `linegw keys new`), one of the two")
        return self

    def digest(self) -> bytes | None:
        """The key's SHA-256: from the file, or of the variable's value; None when that variable is unset."""
        if self.key_sha256 is not None:
            return bytes.fromhex(self.key_sha256)
        value = os.environ.get(self.key_env or "")
        return hashlib.sha256(value.encode()).digest() if value else None


class RecordRetention(_Strict):
    alarms: float | None = Field(default=None, gt=0)  # by the time they cleared; an active alarm is kept
    events: float | None = Field(default=None, gt=0)
    audit: float | None = Field(default=None, gt=0)

    def days(self) -> dict[str, float]:
        return {kind: d for kind, d in self.model_dump().items() if d is not None}


class Store(_Strict):
    path: str = "var/linegw.sqlite"
    retention_days: float | None = Field(default=30, gt=0)
    # Disk budget for the database; over it the oldest samples go, forwarded or not, counted.
    max_disk_mb: float | None = Field(default=None, gt=0)
    # Alarms, events and the audit log are kept for ever unless given days here (traceability outlives samples).
    records_retention_days: RecordRetention = RecordRetention()
    # Where sealed samples are compressed: "process" puts the codec's CPU on another core, off the event loop;
    # "thread" keeps the gateway one process (a single-core box gains nothing from the other).
    compress_in: Literal["process", "thread"] = "process"


class Acquisition(_Strict):
    # Processes that run the machines' adapters (connect, scan, decode) beside the gateway's own, which keeps
    # validation, the store and the API: one Python process works on one core. 0 runs them in the gateway's process.
    workers: int = Field(default=0, ge=0, le=64)


class LineConfig(_Strict):
    line: str = Field(pattern=ID)
    api: Api = Api()
    store: Store = Store()
    acquisition: Acquisition = Acquisition()
    forward: ForwardConfig | None = None  # copy stored samples to InfluxDB and/or MQTT
    shifts: Shifts | None = None  # shift calendar for per-shift OEE (gateway/analytics/shifts.py)
    energy: EnergySettings | None = None  # grid emission factor, idle-energy rule (gateway/analytics/energy.py)
    equipment: list[Equipment] = Field(min_length=1)

    @field_validator("equipment")
    @classmethod
    def _unique_ids(cls, equipment: list[Equipment]) -> list[Equipment]:
        first: dict[str, int] = {}
        for i, eq in enumerate(equipment):
            j = first.setdefault(eq.id, i)
            if j != i:
                raise ValueError(f"'{eq.id}' is the id of equipment[{j}] and equipment[{i}]; each machine needs its own")
        return equipment


def load_line(path: str | Path, secrets: bool = True, spec: Spec | None = None) -> LineConfig:
    """Load and check a line file; mapping paths become absolute (relative to the file).

    With `secrets`, every secret the file names must be there (environment variables, files),
    so a gateway never starts without the passwords and keys it will need, and the API host
    must resolve here. With `spec`, array sizes are checked against the equipment classes.
    """
    path = Path(path)
    cfg = load_model(path, LineConfig)
    node = yaml_node(path)
    for i, eq in enumerate(cfg.equipment):
        if eq.mapping:
            shipped = vendor_path(eq.mapping)
            mapping = (shipped if shipped.parent == VENDOR_DIR else path.parent / eq.mapping).resolve()
            if not mapping.is_file():
                line = line_of(node, ("equipment", i, "mapping"))
                what = "is not a file" if mapping.exists() else "does not exist"
                if shipped.parent == VENDOR_DIR:
                    what += f" (shipped vendor files: {', '.join(vendor_names())}; or give a path ending in .yaml)"
                raise SpecError(f"{path}:{line}: equipment[{i}].mapping: file {mapping} {what}")
            eq.mapping = str(mapping)
        if eq.mapping is None and eq.protocol == "opcua" and not eq.machine:
            eq.machine = eq.id
    if cfg.api.tls is not None:
        tls = cfg.api.tls
        tls.cert_file, tls.key_file = (str((path.parent / f).resolve()) for f in (tls.cert_file, tls.key_file))
    problems = equipment_problems(cfg, spec)
    problems += key_collisions(cfg.api, [k.digest() for k in cfg.api.keys] if secrets else None)
    if secrets:
        problems += missing_secrets(cfg)
        problems += api_host_problems(cfg.api)
        problems += tls_problems(cfg.api)
    if problems:
        raise SpecError(located(path, node, problems))
    return cfg


def located(path: Path, node: Any, problems: list[tuple[tuple[Any, ...], str]]) -> str:
    """One `file:line: field: what` line per problem, in the order given."""
    return "\n".join(f"{path}:{line_of(node, loc)}: {format_loc(loc)}: {one_line(what)}" for loc, what in problems)


def key_collisions(api: Api, digests: list[bytes | None] | None) -> list[tuple[tuple[Any, ...], str]]:
    """(field location, what is wrong) for every API key entry that is not the only one of its kind.

    A key must name one user with one role: two entries that share a variable, a user or a key
    value would let whoever holds that key act as either (the later entry used to win, so a
    viewer's key carried an engineer's rights). `digests` are the keys' SHA-256, in entry order,
    when they are at hand: equal keys are found without keeping or comparing the keys themselves,
    and the message never contains one.
    """
    problems: list[tuple[tuple[Any, ...], str]] = []
    first_env: dict[str, int] = {}
    first_user: dict[str, int] = {}
    first_value: dict[bytes, int] = {}
    for i, key in enumerate(api.keys):
        shared = False
        if key.key_env is not None:
            j = first_env.setdefault(key.key_env, i)
            shared = j != i  # the same key as that entry: reported here, once
            if shared:
                problems.append((("api", "keys", i, "key_env"),
                                 f"environment variable {key.key_env} already holds the key of api.keys[{j}] "
                                 f"(user '{api.keys[j].user}'); each key entry needs a variable of its own"))
        j = first_user.setdefault(key.user, i)
        if j != i:
            problems.append((("api", "keys", i, "user"),
                             f"user '{key.user}' already has a key, api.keys[{j}]; give each user one key and one role"))
        digest = digests[i] if digests is not None else None
        if digest and not shared:
            j = first_value.setdefault(digest, i)
            if j != i:
                other = api.keys[j]
                this = (("key_env", f"the key in {key.key_env}") if key.key_env is not None
                        else ("key_sha256", "this key_sha256"))
                problems.append((("api", "keys", i, this[0]),
                                 f"{this[1]} is the same as the key of api.keys[{j}] (user '{other.user}'"
                                 f"{', ' + other.key_env if other.key_env else ''}); each user needs a key of its own"))
    return problems


def equipment_problems(cfg: LineConfig, spec: Spec | None) -> list[tuple[tuple[Any, ...], str]]:
    """(field location, what is wrong) for what a machine's adapter or the spec would refuse only at run
    time: a protocol no adapter serves, adapter settings out of range, array sizes the class has not."""
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group="linegw.adapters")}
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i, eq in enumerate(cfg.equipment):
        if eq.protocol not in installed:
            problems.append((("equipment", i, "protocol"),
                             f"no adapter '{eq.protocol}' is installed (known: {', '.join(sorted(installed))})"))
        check = _SETTINGS_CHECKS.get(eq.protocol)
        model = None if check is not None or eq.protocol not in installed else declared_model(eq.protocol, "Settings")
        if model is not None:  # a plug-in that declares its settings: checked here as its adapter will read them
            problems += model_problems(model, eq.adapter, f"a setting of the {eq.protocol} adapter",
                                       ("equipment", i, "adapter"))
        if check is not None:
            raw = _AskedKeys(eq.adapter)
            try:
                check(raw)
            except ValueError as exc:
                # The adapters name the setting first ("modbus setting scan_interval_ms must be ...").
                m = re.search(r"setting (\w+)", str(exc))
                loc = ("equipment", i, "adapter") + ((m.group(1),) if m and m.group(1) in eq.adapter else ())
                problems.append((loc, str(exc)))
            else:  # every setting was read: one the reader never asked for is a typo, silently ignored at run time
                for name in eq.adapter:
                    if name not in raw.asked:
                        near = difflib.get_close_matches(str(name), sorted(raw.asked), n=1)
                        hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(sorted(raw.asked))}"
                        problems.append((("equipment", i, "adapter", name), f"not a setting of the {eq.protocol} adapter; {hint}"))
        if spec is not None:
            arrays = {su.id: su.array.max for su in spec.array_sub_units(eq.cls) if su.array}
            for name, count in eq.counts.items():
                if name not in arrays:
                    known = ", ".join(arrays) or "none"
                    problems.append((("equipment", i, "counts", name),
                                     f"a {eq.cls} has no array '{name}' (its arrays: {known})"))
                elif count > arrays[name]:
                    problems.append((("equipment", i, "counts", name),
                                     f"{count} {name}s; a {eq.cls} has at most {arrays[name]}"))
    return problems


class _AskedKeys(dict[str, Any]):
    """Adapter settings that note which names the adapter's reader asked for."""

    def __init__(self, raw: dict[str, Any]):
        super().__init__(raw)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.asked.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return super().__contains__(key)


def _modbus_settings(raw: dict[str, Any]) -> None:
    from gateway.adapters.modbus.adapter import Settings

    Settings.from_dict(raw)


def _opcua_settings(raw: dict[str, Any]) -> None:
    from gateway.adapters.opcua.settings import OpcUaSettings

    OpcUaSettings.from_dict(raw)


# The built-in adapters' own settings readers (imported when used), so the check and the run refuse the same values.
_SETTINGS_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {"modbus": _modbus_settings, "opcua": _opcua_settings}


def api_host_problems(api: Api) -> list[tuple[tuple[Any, ...], str]]:
    """The API host must be an address or a name that resolves here; whether this machine has the
    address is found when `run` binds it (`linegw check-config` may check a file for another machine)."""
    try:
        socket.getaddrinfo(api.host, api.port or None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return [(("api", "host"), f"'{api.host}' does not resolve to an address ({exc.strerror})")]
    return []


def tls_problems(api: Api) -> list[tuple[tuple[Any, ...], str]]:
    """The certificate and key must load together: found now, not as a traceback when the API starts."""
    if api.tls is None:
        return []
    import ssl

    missing = [(("api", "tls", field), f"{name} does not exist")
               for field, name in (("cert_file", api.tls.cert_file), ("key_file", api.tls.key_file))
               if not Path(name).is_file()]
    if missing:
        return missing
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(api.tls.cert_file, api.tls.key_file)
    except (ssl.SSLError, OSError) as exc:
        return [(("api", "tls"), f"the certificate {api.tls.cert_file} and key {api.tls.key_file} do not load "
                                 f"together ({getattr(exc, 'reason', None) or exc})")]
    return []


def missing_secrets(cfg: LineConfig) -> list[tuple[tuple[Any, ...], str]]:
    """(field location, what is wrong) for every secret of the line that cannot be read; never the secret."""
    problems: list[tuple[tuple[Any, ...], str]] = []
    for i, eq in enumerate(cfg.equipment):
        try:
            eq.security.password()
        except SecretError as exc:
            problems.append((("equipment", i, "security", exc.field), exc.what))
    for i, key in enumerate(cfg.api.keys):
        if key.key_env is not None and not os.environ.get(key.key_env):
            problems.append((("api", "keys", i, "key_env"),
                             f"environment variable {key.key_env} (key of user '{key.user}') is not set or empty"))
    influx = cfg.forward.influx if cfg.forward else None
    if influx and influx.token_env and not os.environ.get(influx.token_env):
        problems.append((("forward", "influx", "token_env"),
                         f"environment variable {influx.token_env} (the InfluxDB token) is not set or empty; "
                         "token_env: null for a server that takes writes without a token"))
    for name in ("mqtt", "sparkplug"):
        sink = getattr(cfg.forward, name) if cfg.forward else None
        if sink and sink.password_env and not os.environ.get(sink.password_env):
            problems.append((("forward", name, "password_env"),
                             f"environment variable {sink.password_env} (the MQTT password) is not set or empty"))
    return problems
