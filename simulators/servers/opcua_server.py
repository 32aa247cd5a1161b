"""A generic OPC UA server for simulators, with security and faults.

It knows nothing of the interface spec: a `populate(server, ns)` callback
builds the address space after every (re)start, in namespace index `ns`.
What it adds to a plain asyncua server:

* security: None, and Sign / SignAndEncrypt endpoints (Basic256Sha256 or an Aes policy) with a
  self-signed certificate made at first start, and an optional
  username/password user manager (anonymous access is then refused);
* faults, switchable while clients are connected: slow responses
  (`delay_s`), operation limits that are announced in
  Server/ServerCapabilities/OperationLimits *and* enforced
  (MaxNodesPerRead, MaxMonitoredItemsPerCall: Bad_TooManyOperations),
  dropped connections, and a restart that can register extra namespaces
  first so that namespace indexes change, as a real server's update does;
* `NodeBatch`: many nodes added in one AddNodes call, so a 512-channel rack
  builds in a second;
* a start in a few tens of milliseconds instead of a second: the standard
  address space (thousands of nodes asyncua builds anew at every start) is
  read lazily from a shelf made once per asyncua version (`standard_shelf`).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import hmac
import logging
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto import cert_gen, uacrypto
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.internal_server import InternalServer
from asyncua.server.internal_session import InternalSession
from asyncua.server.standard_address_space.standard_address_space import fill_address_space
from asyncua.server.user_managers import UserManager
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

log = logging.getLogger("linegw.sim.opcua")

Populate = Callable[[Server, int], Awaitable[None]]

SECURITY_MODES = ("None", "Sign", "SignAndEncrypt")
POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss")


def policy_type(mode: str, policy: str) -> ua.SecurityPolicyType:
    return ua.SecurityPolicyType.NoSecurity if mode == "None" else ua.SecurityPolicyType[f"{policy}_{mode}"]
LIMIT_NODES = {
    "max_nodes_per_read": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "max_monitored_items_per_call": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
}
DEFAULT_LIMIT = 10_000  # what asyncua announces when nothing is set


@dataclass
class OpcUaSecurity:
    """Endpoints offered and who may connect."""

    modes: list[str] = field(default_factory=lambda: ["None"])  # "None", "Sign", "SignAndEncrypt"
    username: str | None = None
    password: str | None = None
    policy: str = "Basic256Sha256"  # of the Sign and SignAndEncrypt endpoints: or Aes128Sha256RsaOaep, Aes256Sha256RsaPss

    def __post_init__(self) -> None:
        unknown = [m for m in self.modes if m not in SECURITY_MODES]
        if unknown or not self.modes:
            raise ValueError(f"security modes {unknown or self.modes} not supported (use {', '.join(SECURITY_MODES)})")
        if self.policy not in POLICIES:
            raise ValueError(f"security policy {self.policy} not supported (use {', '.join(POLICIES)})")
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")


class OpcUaFaults:
    """Misbehaviour of the OPC UA server, switchable at run time."""

    def __init__(self, owner: OpcUaSimServer):
        self._owner = owner
        self.delay_s = 0.0
        self._limits: dict[str, int | None] = {name: None for name in LIMIT_NODES}
        self.silenced: set[int] = set()  # subscriptions that send keep-alives but no data changes
        self.max_sessions: int | None = None  # sessions past it are refused with BadTooManySessions
        self.read_reply_delay_s = 0.0  # a Read's values are taken, then answered this much later (a busy server)

    def silence(self, on: bool = True) -> None:
        """The subscriptions that exist now stop sending data changes but go on with keep-alives, as a
        server's stalled subscription does; subscriptions made later work. Off: they send changes again."""
        server = self._owner.server
        self.silenced = set(server.iserver.subscription_service.subscriptions) if on and server is not None else set()

    def limit(self, name: str) -> int | None:
        return self._limits[name]

    async def set_limits(self, max_nodes_per_read: int | None = None,
                         max_monitored_items_per_call: int | None = None) -> None:
        """Announce and enforce operation limits (None: no limit)."""
        self._limits = {"max_nodes_per_read": max_nodes_per_read,
                        "max_monitored_items_per_call": max_monitored_items_per_call}
        await self._owner._write_limits()

    async def pause(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def drop_connections(self) -> None:
        self._owner.drop_connections()

    def sessions(self) -> int:
        """Sessions the server holds now, those of dropped connections that keep subscriptions included."""
        server = self._owner.server
        return len(server.iserver.sim_sessions) if server is not None else 0

    async def clear(self) -> None:
        self.delay_s = 0.0
        self.silenced = set()
        self.max_sessions = None
        self.read_reply_delay_s = 0.0
        await self.set_limits()


class _Session(InternalSession):
    """A client session that honours the simulator's faults."""

    @property
    def _faults(self) -> OpcUaFaults:
        return self.iserver.sim_faults

    async def create_session(self, params: ua.CreateSessionParameters, sockname: Any = None) -> ua.CreateSessionResult:
        limit, live = self._faults.max_sessions, self.iserver.sim_sessions
        if limit is not None and len(live) >= limit:
            raise ServiceError(ua.StatusCodes.BadTooManySessions)
        live.add(self)
        return await super().create_session(params, sockname=sockname)

    async def close_session(self, delete_subs: bool = True) -> None:
        self.iserver.sim_sessions.discard(self)
        await super().close_session(delete_subs)

    async def read(self, params: ua.ReadParameters) -> list[ua.DataValue]:
        await self._faults.pause()
        limit = self._faults.limit("max_nodes_per_read")
        if limit and len(params.NodesToRead) > limit:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        values = await super().read(params)
        if self._faults.read_reply_delay_s > 0:
            await asyncio.sleep(self._faults.read_reply_delay_s)
        return values

    async def create_monitored_items(self, params: ua.CreateMonitoredItemsParameters) -> list[ua.MonitoredItemCreateResult]:
        await self._faults.pause()
        limit = self._faults.limit("max_monitored_items_per_call")
        if limit and len(params.ItemsToCreate) > limit:
            raise ServiceError(ua.StatusCodes.BadTooManyOperations)
        return await super().create_monitored_items(params)

    async def create_subscription(self, params: ua.CreateSubscriptionParameters, callback: Callable[..., Any],
                                  request_callback: Callable[..., Any] | None = None) -> ua.CreateSubscriptionResult:
        result = await super().create_subscription(params, callback, request_callback=request_callback)
        sub_id = result.SubscriptionId
        sub = self.subscription_service.subscriptions[sub_id]
        enqueue = sub.enqueue_datachange_event
        faults = self._faults

        async def maybe_enqueue(mid: int, eventdata: ua.MonitoredItemNotification, maxsize: int) -> None:
            if sub_id not in faults.silenced:
                await enqueue(mid, eventdata, maxsize)

        sub.enqueue_datachange_event = maybe_enqueue
        return result

    async def call(self, params: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        await self._faults.pause()
        return await super().call(params)

    async def browse(self, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
        await self._faults.pause()
        return await super().browse(params)


class ShelvedInternalServer(InternalServer):
    """asyncua's internal server, its standard address space read from `standard_shelf` when there is one."""

    async def load_standard_address_space(self, shelf_file: Path | None = None) -> None:
        shelf = await standard_shelf()
        if shelf is None:
            await super().load_standard_address_space()
        else:
            # In a thread: reading the shelf's index takes 0.1 s or more, too long to hold the event loop.
            await asyncio.to_thread(_load_shelf, self.aspace, shelf)  # each server its own copy of the nodes


# One shelf read at a time: dbm.dumb reads its index with ast.literal_eval, and CPython 3.11's AST constructor keeps
# its recursion depth in shared state: servers started together, reading in parallel threads, corrupted it
# ("SystemError: AST constructor recursion depth mismatch"), and every later parse in the process failed.
_SHELF_READ = threading.Lock()


def _load_shelf(aspace: Any, shelf: Path) -> None:
    with _SHELF_READ:
        aspace.load_aspace_shelf(shelf)


class _InternalServer(ShelvedInternalServer):
    def __init__(self, faults: OpcUaFaults, user_manager: UserManager | None):
        super().__init__(user_manager=user_manager)
        self.sim_faults = faults
        self.sim_sessions: set[_Session] = set()  # created and not closed

    def create_session(self, name: str, user: User = User(role=UserRole.Anonymous), external: bool = False) -> InternalSession:
        return _Session(self, self.aspace, self.subscription_service, name, user=user, external=external)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "linegw"


async def standard_shelf() -> Path | None:
    """The shelf of OPC UA's standard address space for this asyncua, made on first use; None if it cannot be."""
    return await asyncio.to_thread(_standard_shelf)


_SHELF_LOCK = threading.Lock()  # one builder per process; the rename below settles it between processes


@functools.cache
def _asyncua_version() -> str:
    return version("asyncua")  # reads the package's metadata from disk: once per process, not at every start


def _standard_shelf() -> Path | None:
    folder = cache_dir() / f"opcua-standard-{_asyncua_version()}"
    shelf = folder / "aspace"
    with _SHELF_LOCK:
        if folder.is_dir():
            return shelf
        # Made in a folder of its own and renamed into place: a simulator never reads a half-written shelf.
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".opcua-standard-", dir=folder.parent))
        except OSError as e:
            log.info("no cache for OPC UA's standard address space (%s): built at every start", e)
            return None
        try:
            iserver = InternalServer()
            fill_address_space(iserver.node_mgt_service)
            iserver.aspace.make_aspace_shelf(work / "aspace")
            work.rename(folder)
        except OSError:
            if not folder.is_dir():  # another process's rename won; anything else is a cache we go without
                log.info("could not keep OPC UA's standard address space in %s", folder)
                return None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return shelf


class _Users(UserManager):
    def __init__(self, username: str, password: str):
        self._username = username
        self._password = password.encode("utf-8")

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username != self._username or password is None:
            return None
        given = password.encode("utf-8") if isinstance(password, str) else bytes(password)
        return User(role=UserRole.User, name=username) if hmac.compare_digest(given, self._password) else None


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _self_signed(app_uri: str, host: str, name: str) -> tuple[bytes, bytes]:
    """A server certificate (DER) and key (PEM) made now, for the signing endpoints."""
    import ipaddress

    key = cert_gen.generate_private_key()
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(app_uri), x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {"organizationName": "linegw simulators"}, alt, [ExtendedKeyUsageOID.SERVER_AUTH], days=365)
    return uacrypto.der_from_x509(cert), cert_gen.dump_private_key_as_pem(key)


class OpcUaSimServer:
    """An asyncua server whose address space `populate` builds, with faults and restarts."""

    def __init__(self, *, host: str, port: int, path: str, name: str, app_uri: str, namespace_uri: str,
                 populate: Populate, security: OpcUaSecurity | None = None):
        self.host = host
        self.port = port
        self.path = path.strip("/")
        self.name = name
        self.app_uri = app_uri
        self.namespace_uri = namespace_uri
        self.populate = populate
        self.security = security or OpcUaSecurity()
        self.faults = OpcUaFaults(self)
        self.server: Server | None = None
        self.ns = 0
        self.restarts = 0
        self._cert: tuple[bytes, bytes] | None = None
        self._down = asyncio.Event()

    @property
    def url(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/{self.path}"

    @property
    def running(self) -> bool:
        return self.server is not None

    @property
    def connections(self) -> int:
        """Clients connected now."""
        return len(self.server.iserver.asyncio_transports) if self.server is not None else 0

    async def start(self, extra_namespaces: int = 0) -> None:
        """Listen; `extra_namespaces` are registered before the simulator's own, shifting its index."""
        if self.server is not None:
            return
        if self.port == 0:
            self.port = free_port(self.host)
        users = _Users(self.security.username, self.security.password or "") if self.security.username else None
        faults = self.faults
        server = Server(iserver=_InternalServer(faults, users))
        await server.init()
        server.set_endpoint(self.url)
        server.set_server_name(self.name)
        await server.set_application_uri(self.app_uri)
        server.set_security_policy([policy_type(m, self.security.policy) for m in self.security.modes])
        secured = any(m != "None" for m in self.security.modes)
        if users is not None:
            server.set_identity_tokens([ua.UserNameIdentityToken])
        elif not secured:
            server.set_identity_tokens([ua.AnonymousIdentityToken])
        if secured:
            if self._cert is None:
                self._cert = await asyncio.to_thread(_self_signed, self.app_uri, self.host, self.name)
            await server.load_certificate(self._cert[0], format="der")
            await server.load_private_key(self._cert[1], format="pem")
        for i in range(extra_namespaces):
            await server.register_namespace(f"urn:linegw:sim:firmware:{self.restarts}:{i}")
        self.ns = await server.register_namespace(self.namespace_uri)
        self.server = server
        await self._write_limits()
        await self.populate(server, self.ns)
        await server.start()

    async def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def restart(self, shift_namespace: bool = True, downtime_s: float = 0.0, new_certificate: bool = False) -> None:
        """Stop, wait, start again; with `shift_namespace`, the simulator's namespace index grows by one; with
        `new_certificate`, the server comes back with a certificate made anew (a renewal, or a replaced device)."""
        await self.stop()
        if new_certificate:
            self._cert = None
        if downtime_s > 0:
            await asyncio.sleep(downtime_s)
        self.restarts += 1
        await self.start(extra_namespaces=self.restarts if shift_namespace else 0)

    def drop_connections(self) -> None:
        server = self.server
        if server is None:
            return
        for transport in list(server.iserver.asyncio_transports):
            transport.close()

    async def _write_limits(self) -> None:
        server = self.server
        if server is None:
            return
        for name, node_id in LIMIT_NODES.items():
            value = self.faults.limit(name) or DEFAULT_LIMIT
            dv = ua.DataValue(ua.Variant(value, ua.VariantType.UInt32), SourceTimestamp=now(), ServerTimestamp=now())
            await server.write_attribute_value(ua.NodeId(node_id), dv)


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


# --- building address spaces in bulk --------------------------------------------------------------------



class NodeBatch:
    """Collects folders, objects, variables and properties; `commit` adds them in one call."""

    def __init__(self, ns: int):
        self.ns = ns
        self.items: list[ua.AddNodesItem] = []
        self._folders: set[ua.NodeId] = {ua.NodeId(ua.ObjectIds.ObjectsFolder)}

    def node_id(self, ident: str) -> ua.NodeId:
        return ua.NodeId(ident, self.ns)

    def _add(self, parent: ua.NodeId, ident: str, name: str, node_class: ua.NodeClass, type_def: int,
             attrs: Any, reference: int | None = None, name_ns: int | None = None) -> ua.NodeId:
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = self.node_id(ident)
        item.BrowseName = ua.QualifiedName(name, self.ns if name_ns is None else name_ns)
        item.ParentNodeId = parent
        if reference is None:
            reference = ua.ObjectIds.Organizes if parent in self._folders else ua.ObjectIds.HasComponent
        item.ReferenceTypeId = ua.NodeId(reference)
        item.NodeClass = node_class
        item.TypeDefinition = ua.NodeId(type_def)
        attrs.DisplayName = ua.LocalizedText(name)
        attrs.Description = ua.LocalizedText(name)
        attrs.WriteMask = 0
        attrs.UserWriteMask = 0
        item.NodeAttributes = attrs
        self.items.append(item)
        return item.RequestedNewNodeId

    def folder(self, parent: ua.NodeId, ident: str, name: str) -> ua.NodeId:
        attrs = ua.ObjectAttributes()
        attrs.EventNotifier = 0
        nid = self._add(parent, ident, name, ua.NodeClass.Object, ua.ObjectIds.FolderType, attrs)
        self._folders.add(nid)
        return nid

    def obj(self, parent: ua.NodeId, ident: str, name: str) -> ua.NodeId:
        attrs = ua.ObjectAttributes()
        attrs.EventNotifier = 0
        return self._add(parent, ident, name, ua.NodeClass.Object, ua.ObjectIds.BaseObjectType, attrs)

    def variable(self, parent: ua.NodeId, ident: str, name: str, value: Any, vtype: ua.VariantType,
                 writable: bool = False, array: bool = False) -> ua.NodeId:
        return self._variable(parent, ident, name, ua.Variant(value, vtype), ua.NodeId(vtype.value), writable, array)

    def _variable(self, parent: ua.NodeId, ident: str, name: str, variant: ua.Variant, datatype: ua.NodeId,
                  writable: bool, array: bool, prop: bool = False) -> ua.NodeId:
        attrs = ua.VariableAttributes()
        attrs.DataType = datatype
        attrs.Value = variant
        if array:
            attrs.ValueRank = ua.ValueRank.OneDimension
            attrs.ArrayDimensions = [0]
        else:
            attrs.ValueRank = ua.ValueRank.Scalar
            attrs.ArrayDimensions = None
        access = ua.AccessLevel.CurrentRead.mask | (ua.AccessLevel.CurrentWrite.mask if writable else 0)
        attrs.AccessLevel = access
        attrs.UserAccessLevel = access
        attrs.Historizing = False
        if prop:
            return self._add(parent, ident, name, ua.NodeClass.Variable, ua.ObjectIds.PropertyType, attrs,
                             ua.ObjectIds.HasProperty, name_ns=0)
        return self._add(parent, ident, name, ua.NodeClass.Variable, ua.ObjectIds.BaseDataVariableType, attrs)

    def engineering_units(self, var: ua.NodeId, ident: str, namespace_uri: str, unit_id: int, symbol: str,
                          description: str) -> None:
        eu = ua.EUInformation(NamespaceUri=namespace_uri, UnitId=unit_id,
                              DisplayName=ua.LocalizedText(symbol), Description=ua.LocalizedText(description))
        self._variable(var, f"{ident}.EngineeringUnits", "EngineeringUnits",
                       ua.Variant(eu, ua.VariantType.ExtensionObject), ua.NodeId(ua.ObjectIds.EUInformation),
                       False, False, prop=True)

    def eu_range(self, var: ua.NodeId, ident: str, low: float, high: float) -> None:
        self._variable(var, f"{ident}.EURange", "EURange",
                       ua.Variant(ua.Range(Low=float(low), High=float(high)), ua.VariantType.ExtensionObject),
                       ua.NodeId(ua.ObjectIds.Range), False, False, prop=True)

    async def commit(self, server: Server) -> None:
        if not self.items:
            return
        results = await server.iserver.isession.add_nodes(self.items)
        for item, res in zip(self.items, results):
            if not res.StatusCode.is_good():
                raise RuntimeError(f"cannot add node {item.RequestedNewNodeId}: {res.StatusCode}")
        self.items = []


def argument(name: str, vtype: ua.VariantType, array: bool = False, doc: str = "") -> ua.Argument:
    arg = ua.Argument()
    arg.Name = name
    arg.DataType = ua.NodeId(vtype.value)
    arg.ValueRank = ua.ValueRank.OneDimension if array else ua.ValueRank.Scalar
    arg.ArrayDimensions = [0] if array else []
    arg.Description = ua.LocalizedText(doc or name)
    return arg


def data_value(value: Any, vtype: ua.VariantType, ts: datetime.datetime) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=ts, ServerTimestamp=ts)

