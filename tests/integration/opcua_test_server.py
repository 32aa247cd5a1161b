"""A tiny real OPC UA server for the adapter tests: one machine, a few typed variables.

Address space (namespace "urn:test:equipment", string NodeIds "M1.<name>"):

    Objects/Machines/M1/
        Temperature   Double
        Count         Int32
        Running       Boolean
        Mode          UInt16     (writable)
        Setpoint      Float      (writable)
        Label         String     (writable)
        Identification/Manufacturer  String
        Start(mode: UInt16) -> Int32   returns 100 + mode, or BadInvalidArgument for mode 0

Options make it behave like the equipment the tests need: published operation
limits that are also enforced (small controllers refuse oversized requests),
a cap on subscriptions and on monitored items per session (small controllers
run out of both), namespaces registered before ours (indexes shift across
restarts), security with a server certificate, user names, and a way to stop
publishing while the session stays up.

The server grants each monitored item the sampling interval asked for (asyncua
itself answers with the publishing interval) and records every monitored item
it creates, so tests can check what a client asked for from the server side.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_session import InternalSession
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from simulators.servers.opcua_server import ShelvedInternalServer

NS_URI = "urn:test:equipment"
MACHINE = "/Objects/Machines/M1"
VARIABLES: dict[str, tuple[Any, ua.VariantType]] = {
    "Temperature": (21.5, ua.VariantType.Double),
    "Count": (7, ua.VariantType.Int32),
    "Running": (True, ua.VariantType.Boolean),
    "Mode": (1, ua.VariantType.UInt16),
    "Setpoint": (60.0, ua.VariantType.Float),
    "Label": ("idle", ua.VariantType.String),
}
WRITABLE = {"Mode", "Setpoint", "Label"}
MANUFACTURER = "ACME Cells"

_LIMIT_IDS = {
    "read": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "translate": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds,
    "monitored_items": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
    "browse": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class _Users:
    """Accepts exactly the given user names and passwords."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None) -> User | None:
        if username is not None and self.users.get(username) == password:
            return User(role=UserRole.User, name=username)
        return None


@dataclass(frozen=True)
class MonitoredRequest:
    subscription_id: int
    node: str  # the NodeId's identifier, e.g. "M1.Count"
    sampling_ms: float  # requested by the client
    status: str  # the item's result: "Good" or why it was refused


@dataclass
class EquipmentServer:
    server: Server
    port: int
    ns: int
    nodes: dict[str, Node]
    endpoint: str
    client_thumbprints: list[str] = field(default_factory=list)  # one per CreateSession with a certificate
    refused: dict[str, int] = field(default_factory=dict)  # BadTooManyOperations answered, per service
    largest: dict[str, int] = field(default_factory=dict)  # largest request that was served, per service
    certificate: Path | None = None
    monitored: list[MonitoredRequest] = field(default_factory=list)  # every monitored item created

    def subscriptions(self) -> dict[int, float]:
        """The server's live subscriptions: id -> revised publishing interval (ms)."""
        subs = self.server.iserver.subscription_service.subscriptions
        return {sid: sub.data.RevisedPublishingInterval for sid, sub in subs.items()}

    async def set_value(self, name: str, value: Any, status: int | None = None, source_ts: datetime | None = None) -> datetime:
        """Change a variable as the machine would, stamped by the machine's clock; returns the stamp.

        `status` sets a StatusCode with the value. The default stamp lies a little in
        the past, as a device's sample does, so it is told apart from server time.
        """
        vtype = VARIABLES.get(name, (None, None))[1]
        stamp = source_ts or datetime.now(UTC) - timedelta(milliseconds=250)
        dv = ua.DataValue(
            ua.Variant(value, vtype),
            StatusCode=ua.StatusCode(status if status is not None else 0),
            SourceTimestamp=stamp,
        )
        await self.nodes[name].write_value(dv)
        return stamp

    async def value(self, name: str) -> Any:
        return await self.nodes[name].read_value()

    def stop_publishing(self) -> None:
        """The publish engine stops while sessions and reads go on: "connected but no data"."""
        for sub in self.server.iserver.subscription_service.subscriptions.values():
            task = sub._task
            if task is not None:
                task.cancel()

    async def stop(self) -> None:
        await self.server.stop()


async def start_server(
    port: int | None = None,
    *,
    limits: dict[str, int] | None = None,
    advertise_limits: bool = True,
    namespaces_before: list[str] = (),  # type: ignore[assignment]
    secure_dir: Path | None = None,
    security_mode: str = "SignAndEncrypt",
    users: dict[str, str] | None = None,
    max_subscriptions: int | None = None,
    max_monitored_items: int | None = None,
) -> EquipmentServer:
    """Start the test server; `secure_dir` makes it require `security_mode` ("Sign" or
    "SignAndEncrypt") with Basic256Sha256.

    `limits` are enforced per request ("read", "translate", "monitored_items") and,
    with `advertise_limits`, published under OperationLimits as well.
    `max_subscriptions` caps the server's subscriptions (BadTooManySubscriptions);
    `max_monitored_items` the monitored items of a session: items beyond it are
    refused one by one with BadTooManyMonitoredItems.
    """
    port = port or free_port()
    server = Server(iserver=ShelvedInternalServer(user_manager=_Users(users) if users else None))
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/test"
    server.set_endpoint(endpoint)
    server.set_server_name("linegw test equipment")
    for uri in namespaces_before:
        await server.register_namespace(uri)
    ns = await server.register_namespace(NS_URI)
    ts = EquipmentServer(server, port, ns, {}, endpoint)

    if secure_dir is not None:
        secure_dir.mkdir(parents=True, exist_ok=True)
        key, cert = secure_dir / "server-key.pem", secure_dir / "server-cert.der"
        app_uri = "urn:test:equipment:server"
        await server.set_application_uri(app_uri)
        await cert_gen.setup_self_signed_certificate(
            key, cert, app_uri, socket.gethostname(), [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], {}
        )
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([getattr(ua.SecurityPolicyType, f"Basic256Sha256_{security_mode}")])
        ts.certificate = cert

        async def remember(certificate: x509.Certificate, app: ua.ApplicationDescription) -> None:
            ts.client_thumbprints.append(hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest())

        server.set_certificate_validator(remember)
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])

    objects = server.nodes.objects
    machines = await objects.add_folder(ua.NodeId("Machines", ns), ua.QualifiedName("Machines", ns))
    m1 = await machines.add_object(ua.NodeId("M1", ns), ua.QualifiedName("M1", ns))
    for name, (value, vtype) in VARIABLES.items():
        node = await m1.add_variable(ua.NodeId(f"M1.{name}", ns), ua.QualifiedName(name, ns), ua.Variant(value, vtype))
        if name in WRITABLE:
            await node.set_writable()
        ts.nodes[name] = node
    ident = await m1.add_folder(ua.NodeId("M1.Identification", ns), ua.QualifiedName("Identification", ns))
    ts.nodes["Manufacturer"] = await ident.add_variable(
        ua.NodeId("M1.Identification.Manufacturer", ns), ua.QualifiedName("Manufacturer", ns), ua.Variant(MANUFACTURER, ua.VariantType.String)
    )

    async def start(parent: ua.NodeId, mode: ua.Variant) -> list[ua.Variant] | ua.StatusCode:
        # Strict like PLC servers: an Int64 where UInt16 is declared is refused.
        if mode.VariantType is not ua.VariantType.UInt16:
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        if mode.Value == 0:
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        return [ua.Variant(100 + mode.Value, ua.VariantType.Int32)]

    await m1.add_method(ua.NodeId("M1.Start", ns), ua.QualifiedName("Start", ns), start, [ua.VariantType.UInt16], [ua.VariantType.Int32])

    if limits:
        for kind, value in (limits.items() if advertise_limits else ()):
            await server.write_attribute_value(ua.NodeId(_LIMIT_IDS[kind]), ua.DataValue(ua.Variant(value, ua.VariantType.UInt32)))
    if max_subscriptions is not None:
        server.iserver.max_subscriptions = max_subscriptions
    _enforce_limits(server, ts, limits or {}, max_monitored_items)
    await server.start()
    return ts


def _enforce_limits(server: Server, ts: EquipmentServer, limits: dict[str, int], max_monitored_items: int | None) -> None:
    """Refuse oversized requests with BadTooManyOperations, as a small controller does."""
    create_session = server.iserver.create_session

    def limited(name: str, user: Any = None, external: bool = False) -> InternalSession:
        session = create_session(name, user=user, external=external)
        if external:
            _monitor_items(session, ts, max_monitored_items)
            _guard(session, ts, "read", limits.get("read"), lambda p: len(p.NodesToRead))
            _guard(session, ts, "translate_browsepaths_to_nodeids", limits.get("translate"), len)
            _guard(session, ts, "create_monitored_items", limits.get("monitored_items"), lambda p: len(p.ItemsToCreate))
        return session

    server.iserver.create_session = limited  # type: ignore[method-assign]


def _monitor_items(session: InternalSession, ts: EquipmentServer, cap: int | None) -> None:
    """Grant the sampling intervals asked for, record every item, refuse those beyond `cap` per session."""
    inner = session.create_monitored_items
    created = 0

    async def create(params: ua.CreateMonitoredItemsParameters) -> list[ua.MonitoredItemCreateResult]:
        nonlocal created
        room = len(params.ItemsToCreate) if cap is None else max(0, cap - created)
        granted, refused = params.ItemsToCreate[:room], params.ItemsToCreate[room:]
        params.ItemsToCreate = granted
        results = list(await inner(params)) if granted else []
        for _ in refused:
            res = ua.MonitoredItemCreateResult()
            res.StatusCode = ua.StatusCode(ua.StatusCodes.BadTooManyMonitoredItems)
            results.append(res)
        for item, res in zip(granted + refused, results):
            if res.StatusCode.is_good():
                created += 1
                res.RevisedSamplingInterval = item.RequestedParameters.SamplingInterval
            ts.monitored.append(
                MonitoredRequest(
                    params.SubscriptionId,
                    str(item.ItemToMonitor.NodeId.Identifier),
                    item.RequestedParameters.SamplingInterval,
                    res.StatusCode.name,
                )
            )
        return results

    session.create_monitored_items = create  # type: ignore[method-assign]


def _guard(session: InternalSession, ts: EquipmentServer, method: str, limit: int | None, count: Callable[[Any], int]) -> None:
    if not limit:
        return
    inner: Callable[[Any], Awaitable[Any]] = getattr(session, method)

    async def guarded(params: Any) -> Any:
        n = count(params)
        if n > limit:
            ts.refused[method] = ts.refused.get(method, 0) + 1
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        ts.largest[method] = max(ts.largest.get(method, 0), n)
        return await inner(params)

    setattr(session, method, guarded)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for a condition with a deadline; the deadline only bounds a failing test."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
