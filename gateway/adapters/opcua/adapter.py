"""The generic OPC UA client adapter: points in, readings out, over one session.

It knows OPC UA and nothing of any equipment spec. For each connection it:
reads the server's operation limits and namespace array, resolves every point
to a NodeId (by namespace URI and browse path, since indexes may change when a
server restarts), creates one subscription per distinct publishing interval
with each point's sampling interval, reads every point once so values that
never change are reported too, and then delivers data changes in batches as
they come. Polled points are read on a timer, at their sampling interval; so
are points the server refuses to monitor, or whose subscription it refuses.

The adapter owns its reconnect loop rather than relying on asyncua's
auto-reconnect: any transport error, a subscription status change, or the
watchdog (no publish response, data or keep-alive, for `watchdog_s`) drops the
session, reports the link down, backs off exponentially with jitter
(gateway/backoff.py), and starts over from resolution, so a restarted server
with other namespace indexes is handled the same way as a cable pulled. A long
wait ends early once the server's port opens again after it was seen closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.crypto import security_policies, uacrypto

from gateway.adapters.base import AdapterError, AdapterHealth, LinkCallback, Point, RawReading, ReadingsCallback
from gateway.adapters.opcua import security
from gateway.adapters.opcua.internals import publish_task, state_listener_hook
from gateway.adapters.opcua.resolve import BrowsePathRef, Namespaces, NodeIdRef, NodeRef, Unresolved, parse_ref, target_of
from gateway.adapters.opcua.services import REFUSALS, Counter, OperationLimits, Services
from gateway.adapters.opcua.settings import APPLICATION_URI, MODES, OpcUaSettings
from gateway.adapters.opcua.values import PLAIN_TYPES, plain, reading, status_name, timestamp, to_variant
from gateway.backoff import Backoff, wait_or_reachable
from gateway.endpoint import DEFAULT_PORTS, SCHEMES, EndpointError, parse_endpoint

log = logging.getLogger("linegw.opcua")

_SEVERITY = 0xC0000000
_BAD = 0x80000000
# asyncua's own health probe reads ServerState every interval; the subscription
# watchdog below already covers "connected but silent", so the probe would only
# add a Read per second per machine.
_ASYNCUA_PROBE_S = 3600.0
_SERVER_STATE = ua.NodeId(ua.ObjectIds.Server_ServerStatus_State)
SILENCE_PROBES = 4  # items a silence check reads: the ones notified last, the liveliest
# ActivateSession's answers to an identity the server does not accept.
_LOGIN_REFUSED = frozenset(
    getattr(ua.StatusCodes, name)
    for name in ("BadUserAccessDenied", "BadIdentityTokenInvalid", "BadIdentityTokenRejected", "BadUserSignatureInvalid")
)


@dataclass(frozen=True)
class ValuePoint:
    key: str
    ref: NodeRef
    subscribe: bool  # a monitored item in the subscription of its publishing interval
    poll: bool  # read every poll_ms
    sampling_ms: float
    publishing_ms: float
    poll_ms: float  # also when the server refuses to monitor it


@dataclass(frozen=True)
class MethodPoint:
    key: str
    obj: NodeRef
    method: NodeRef


class LinkLost(Exception):
    """The session is unusable; the message is the reason reported to on_link."""


def describe(exc: BaseException) -> str:
    """A short reason for a failed connection or call, for people reading the dashboard."""
    if isinstance(exc, ua.UaStatusCodeError):
        return status_name(exc.code)
    if isinstance(exc, TimeoutError):
        return "no answer (timed out)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _expected(exc: BaseException) -> bool:
    """Errors a device or network causes, as opposed to defects worth a traceback."""
    return isinstance(exc, (OSError, TimeoutError, ua.UaError, LinkLost, security.TrustError))


def parse_point(point: Point, settings: OpcUaSettings) -> ValuePoint | MethodPoint:
    o = point.options
    ns = o.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not ns):
        raise ValueError(f"point {point.key}: namespace must be a namespace URI string")
    if "method" in o:
        if "object" not in o:
            raise ValueError(f"point {point.key}: a method point needs 'object' (the object the method is called on)")
        return MethodPoint(
            point.key,
            parse_ref(o["object"], ns, f"point {point.key} object"),
            parse_ref(o["method"], ns, f"point {point.key} method"),
        )
    if ("node" in o) == ("browse_path" in o):
        raise ValueError(f"point {point.key}: give exactly one of 'node' (NodeId) or 'browse_path'")
    if "browse_path" in o:
        text = o["browse_path"]
        if not isinstance(text, str) or not text.startswith("/"):
            raise ValueError(f"point {point.key}: browse_path must start with '/', got {text!r}")
    ref = parse_ref(o.get("node", o.get("browse_path")), ns, f"point {point.key}")
    mode = o.get("mode", settings.mode)
    if mode not in MODES:
        raise ValueError(f"point {point.key}: mode must be 'subscribe' or 'poll', got {mode!r}")
    own_sampling = _interval(point.key, o, "sampling_ms", minimum=0.0)
    sampling = settings.sampling_ms if own_sampling is None else own_sampling
    publishing = _interval(point.key, o, "publishing_ms", minimum=0.0, strict=True)
    if publishing is None:
        publishing = settings.publishing_interval_ms
        if settings.publishing_from_sampling and own_sampling:
            publishing = max(publishing, own_sampling)
    # A point with a sampling interval of its own is read at that rate; one asking for the
    # fastest (0) or for nothing in particular at the adapter's polling interval.
    poll_ms = own_sampling if own_sampling else settings.poll_interval_ms
    scan = bool(o.get("scan", True))  # False: read and written on demand only (command areas)
    return ValuePoint(point.key, ref, scan and mode == "subscribe", scan and mode == "poll", sampling, publishing, poll_ms)


def _interval(key: str, options: dict[str, Any], name: str, *, minimum: float, strict: bool = False) -> float | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum or (strict and value == minimum):
        raise ValueError(f"point {key}: {name} must be a number {'>' if strict else '>='} {minimum:g}, got {value!r}")
    return float(value)


@dataclass
class _Subscription:
    """One subscription of a session: the points of one publishing interval."""

    requested_ms: float
    subscription_id: int = 0
    publishing_interval_ms: float = 0.0  # as revised by the server
    keepalive_s: float = 0.0
    watchdog_s: float = 0.0
    last_alive: float = 0.0
    last_data: float = 0.0  # monotonic time of the last data change notified
    last_check: float = 0.0  # and of the last check for silence
    items: int = 0
    keys: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        return {
            "subscription_id": self.subscription_id,
            "requested_publishing_ms": self.requested_ms,
            "publishing_interval_ms": self.publishing_interval_ms,
            "keepalive_s": self.keepalive_s,
            "watchdog_s": self.watchdog_s,
            "monitored_items": self.items,
        }


@dataclass(frozen=True)
class MonitoredItem:
    """A point's monitored item as the server created it."""

    subscription_id: int
    publishing_interval_ms: float
    sampling_ms: float  # requested
    revised_sampling_ms: float


@dataclass
class _Session:
    """One connection's state; thrown away whole at every reconnect."""

    client: Client
    services: Services
    nodes: dict[str, ua.NodeId] = field(default_factory=dict)  # value points
    methods: dict[str, tuple[ua.NodeId, ua.NodeId]] = field(default_factory=dict)
    handles: dict[int, str] = field(default_factory=dict)  # monitored item client handle -> key
    notified: dict[str, float] = field(default_factory=dict)  # key -> source time of its last notified change
    subscriptions: list[_Subscription] = field(default_factory=list)
    monitored: dict[str, MonitoredItem] = field(default_factory=dict)
    write_types: dict[str, ua.VariantType | None] = field(default_factory=dict)
    arg_types: dict[str, list[ua.VariantType | None]] = field(default_factory=dict)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    next_handle: int = 1

    def fail(self, reason: str) -> None:
        if not self.lost.is_set():
            self.reason = reason
            self.lost.set()


class OpcUaAdapter:
    """OPC UA client adapter; see gateway/adapters/opcua/README.md for options."""

    def __init__(self, endpoint: str, points: list[Point], settings: dict[str, Any] | None = None) -> None:
        try:
            url = parse_endpoint(endpoint, SCHEMES["opcua"])
        except EndpointError as exc:
            raise ValueError(f"OPC UA endpoint must be 'opc.tcp://host:port/path', got {endpoint!r}: {exc}") from None
        self.endpoint = endpoint
        self._host = url.host
        self._port = DEFAULT_PORTS["opcua"] if url.port is None else url.port
        self.settings = OpcUaSettings.from_dict(settings or {})
        self.values: dict[str, ValuePoint] = {}
        self.methods: dict[str, MethodPoint] = {}
        for p in points:
            if p.key in self.values or p.key in self.methods:
                raise ValueError(f"point {p.key}: key given twice")
            parsed = parse_point(p, self.settings)
            if isinstance(parsed, MethodPoint):
                self.methods[p.key] = parsed
            else:
                self.values[p.key] = parsed
        self._session: _Session | None = None
        self._queue: asyncio.Queue[list[RawReading]] | None = None
        self._running = False
        self._on_link: LinkCallback | None = None
        self._last_link: tuple[bool, str] | None = None
        self._counter = Counter()
        self._limits = OperationLimits()
        # health counters
        self._connected = False
        self._last_error = ""
        self._sessions = 0
        self._reads = 0
        self._read_errors = 0
        self._notifications = 0
        self._publishes = 0
        self._silence_checks = 0  # reads made to see whether a quiet subscription went silent
        self._silent = 0  # subscriptions found silent (each one made anew)
        self._overflow = 0
        self._consumer_errors = 0
        self._last_data_ts: float | None = None
        self._unresolved: dict[str, str] = {}
        self._server_thumbprint = ""
        self._own_thumbprint = ""
        self._subscriptions: list[dict[str, float | int]] = []  # of the last session, for health()
        self._fallback: dict[str, str] = {}  # key -> why it is polled although it asked for a subscription
        self._up_since: float | None = None

    # --- the Adapter protocol ---------------------------------------------------------
    async def run(self, on_readings: ReadingsCallback, on_link: LinkCallback) -> None:
        if self._running:
            raise RuntimeError("OpcUaAdapter.run() is already running")
        self._running = True
        self._on_link = on_link
        self._queue = asyncio.Queue(self.settings.delivery_queue)
        deliver = asyncio.create_task(self._deliver(on_readings), name=f"opcua-deliver {self.endpoint}")
        s = self.settings
        # A session that lasted longer than the longest wait was healthy: the
        # delays start over; a flapping one keeps backing off.
        backoff = Backoff(s.backoff_initial_s, s.backoff_max_s)
        try:
            while True:
                try:
                    await self._serve()  # resets _up_since first: a session that never came up was never healthy
                except LinkLost as exc:
                    reason = str(exc)
                except Exception as exc:  # a device must never stop the loop; defects get a traceback
                    reason = describe(exc)
                    if not _expected(exc):
                        log.exception("%s: unexpected error, reconnecting", self.endpoint)
                # The runtime logs the link's changes once, with the machine's name; this is the detail.
                log.debug("%s: link down: %s", self.endpoint, reason)
                self._connected = False
                self._last_error = reason
                self._link(False, reason)
                if self._up_since is not None:
                    backoff.healthy(self._up_since)
                # Cut short when a server that went away listens again: data is back
                # within a second of the machine, whatever the backoff had reached.
                await wait_or_reachable(backoff.next(), self._host, self._port)
        finally:
            deliver.cancel()
            await self._ended(deliver)
            self._running = False
            self._connected = False

    async def read(self, keys: list[str]) -> list[RawReading]:
        sess = self._session
        out: dict[str, RawReading] = {}
        todo: list[str] = []
        for key in keys:
            if key not in self.values:
                out[key] = RawReading(key, None, None, "unknown point")
            elif sess is None:
                out[key] = RawReading(key, None, None, "not connected")
            elif key not in sess.nodes:
                out[key] = RawReading(key, None, None, self._unresolved.get(key, "unresolved node"))
            else:
                todo.append(key)
        if todo and sess is not None:
            try:
                dvs = await sess.services.read_values([sess.nodes[k] for k in todo])
            except Exception as exc:  # reported per point, like any read failure
                if not _expected(exc):
                    log.exception("%s: read failed", self.endpoint)
                why = describe(exc)
                out.update((k, RawReading(k, None, None, why)) for k in todo)
            else:
                out.update((k, reading(k, dv)) for k, dv in zip(todo, dvs))
        return [out[k] for k in keys]

    async def write(self, key: str, value: Any) -> None:
        sess = self._ready(key, self.values)
        node = sess.nodes.get(key)
        if node is None:
            raise AdapterError(f"write {key}: {self._unresolved.get(key, 'unresolved node')}")
        try:
            if key not in sess.write_types:
                sess.write_types[key] = await self._variable_type(sess, node)
            variant = to_variant(value, sess.write_types[key], f"write {key}")
            (status,) = await sess.services.write([(node, variant)])
        except TypeError as exc:
            raise AdapterError(str(exc)) from None
        except Exception as exc:
            if not _expected(exc):
                log.exception("%s: write %s failed", self.endpoint, key)
            raise AdapterError(f"write {key}: {describe(exc)}") from None
        if status.value & _SEVERITY:
            raise AdapterError(f"write {key}: {status_name(status.value)}")

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        sess = self._ready(key, self.methods)
        pair = sess.methods.get(key)
        if pair is None:
            raise AdapterError(f"call {key}: {self._unresolved.get(key, 'unresolved node')}")
        obj, method = pair
        try:
            if key not in sess.arg_types:
                sess.arg_types[key] = await self._argument_types(sess, method)
            types = sess.arg_types[key]
            variants = [
                to_variant(a, types[i] if i < len(types) else None, f"call {key} argument {i + 1}") for i, a in enumerate(args)
            ]
            request = ua.CallMethodRequest()
            request.ObjectId = obj
            request.MethodId = method
            request.InputArguments = variants
            (result,) = await sess.services.call([request])
        except TypeError as exc:
            raise AdapterError(str(exc)) from None
        except Exception as exc:
            if not _expected(exc):
                log.exception("%s: call %s failed", self.endpoint, key)
            raise AdapterError(f"call {key}: {describe(exc)}") from None
        code = result.StatusCode.value
        if code & _BAD:
            bad_args = [
                f"argument {i + 1}: {status_name(r.value)}" for i, r in enumerate(result.InputArgumentResults or []) if r.value & _BAD
            ]
            detail = f" ({'; '.join(bad_args)})" if bad_args else ""
            raise AdapterError(f"call {key}: {status_name(code)}{detail}")
        return [plain(v.Value) for v in result.OutputArguments or []]

    async def data_types(self, keys: list[str]) -> dict[str, tuple[str | None, bool | None]]:
        """(built-in type name such as "Double" or "UInt32" behind the DataType, whether the AccessLevel lets a
        client write the value) of each resolved value point; None where the server gives nothing to go by.
        Unresolved points are left out. For conformance checks: readings carry plain Python values, which cannot
        tell UInt32 from Int32."""
        sess = self._session
        if sess is None:
            raise AdapterError(f"data types: not connected ({self._last_error or 'connecting'})")
        found = [k for k in keys if k in sess.nodes]
        try:
            dvs = await sess.services.read([(sess.nodes[k], attr) for k in found
                                            for attr in (ua.AttributeIds.DataType, ua.AttributeIds.AccessLevel)])
            out: dict[str, tuple[str | None, bool | None]] = {}
            for key, dv, access in zip(found, dvs[::2], dvs[1::2]):
                dt = dv.Value.Value if dv.Value is not None else None
                vtype = await sess.services.builtin_type(dt) if isinstance(dt, ua.NodeId) else None
                level = access.Value.Value if access.Value is not None else None
                out[key] = (vtype.name if vtype is not None else None,
                            bool(level & ua.AccessLevel.CurrentWrite.mask) if isinstance(level, int) else None)
        except Exception as exc:
            if not _expected(exc):
                log.exception("%s: reading data types failed", self.endpoint)
            raise AdapterError(f"data types: {describe(exc)}") from None
        return out

    def monitored_items(self) -> dict[str, MonitoredItem]:
        """Each subscribed point's monitored item in this session, with the sampling interval the server granted."""
        sess = self._session
        return dict(sess.monitored) if sess else {}

    def health(self) -> AdapterHealth:
        sess = self._session
        return AdapterHealth(
            connected=self._connected,
            last_error=self._last_error,
            reconnects=max(0, self._sessions - 1),
            reads=self._reads,
            read_errors=self._read_errors,
            requests=self._counter.requests + self._publishes,
            last_data_ts=self._last_data_ts,
            extra={
                "notifications": self._notifications,
                "silence_checks": self._silence_checks,
                "silent_subscriptions": self._silent,
                "publish_responses": self._publishes,
                "overflow": self._overflow,
                "queued_batches": self._queue.qsize() if self._queue is not None else 0,
                "consumer_errors": self._consumer_errors,
                "operation_limits": self._limits.as_dict(),
                "unresolved": dict(self._unresolved),
                "subscribed": len(sess.handles) if sess else 0,
                "polled": sum(1 for p in self.values.values() if p.poll) + len(self._fallback),
                "poll_fallback": dict(self._fallback),
                "subscriptions": list(self._subscriptions),
                "security_mode": self.settings.security_mode,
                "security_policy": self.settings.security_policy if self.settings.security_mode != "None" else "None",
                "certificate_thumbprint": self._own_thumbprint,
                "server_certificate_thumbprint": self._server_thumbprint,
            },
        )

    # --- delivery ---------------------------------------------------------------------
    def _emit(self, batch: list[RawReading], errors: int, from_device: bool = True) -> None:
        """Queue a batch for on_readings; when full, the oldest batch goes and is counted."""
        q = self._queue
        if q is None:
            return
        self._reads += len(batch)
        self._read_errors += errors
        if from_device:
            self._last_data_ts = time.time()
        try:
            q.put_nowait(batch)
        except asyncio.QueueFull:
            dropped = q.get_nowait()
            self._overflow += len(dropped)
            q.put_nowait(batch)

    async def _deliver(self, on_readings: ReadingsCallback) -> None:
        assert self._queue is not None
        q = self._queue
        while True:
            batch = await q.get()
            try:
                if (behind := on_readings(batch)) is not None:
                    await behind  # the store is behind: batches wait in the bounded queue meanwhile
            except Exception:  # a consumer defect must not stop acquisition; it is logged and counted
                self._consumer_errors += 1
                log.exception("%s: on_readings raised; %d readings not taken", self.endpoint, len(batch))

    def _link(self, up: bool, reason: str) -> None:
        # Once per change of state: an outage whose reason moves on (the connection lost, then
        # refused while the server restarts) is one outage; health() has the latest reason.
        if self._on_link is None or (self._last_link is not None and self._last_link[0] == up):
            return
        self._last_link = (up, reason)
        try:
            self._on_link(up, reason)
        except Exception:  # same as on_readings: logged, acquisition goes on
            log.exception("%s: on_link raised", self.endpoint)

    # --- one session --------------------------------------------------------------------
    async def _serve(self) -> None:
        """Connect, resolve, subscribe, then wait until the link is lost; always raises."""
        self._up_since = None
        s = self.settings
        client = Client(self.endpoint, timeout=s.request_timeout_s, watchdog_intervall=_ASYNCUA_PROBE_S)
        client.application_uri = APPLICATION_URI
        client.name = client.description = "linegw gateway"
        client.product_uri = "urn:linegw"
        client.session_timeout = int(s.session_timeout_ms)
        if s.username:
            client.set_user(s.username)
            if s.password is not None:
                client.set_password(s.password)
        sess = _Session(client, Services(client.uaclient, s.max_nodes_per_request, self._counter))

        self._watch_transport(client, sess)
        stage = "connect"
        poller: asyncio.Task[None] | None = None
        try:
            async with asyncio.timeout(s.request_timeout_s * 4):
                if s.secure:
                    stage = "security"
                    await self._secure(client)
                stage = "connect"
                await client.connect()
            stage = "operation limits"
            self._limits = await sess.services.load_limits()
            stage = "namespaces"
            namespaces = Namespaces(await sess.services.namespace_array())
            stage = "resolve"
            await self._resolve(sess, namespaces)
            stage = "subscribe"
            await self._subscribe(sess)
            stage = "initial read"
            self._session = sess
            self._sessions += 1
            self._connected = True
            self._up_since = time.monotonic()
            self._last_error = ""
            self._link(True, "")
            await self._read_into_queue(sess, list(sess.handles.values()))
            polls = self._poll_groups(sess)
            if polls:
                poller = asyncio.create_task(self._poll_all(sess, polls), name=f"opcua-poll {self.endpoint}")
            stage = "running"
            await self._wait_lost(sess)
        except (LinkLost, asyncio.CancelledError):
            raise
        except security.TrustError as exc:
            raise LinkLost(f"security: {exc}") from None
        except Exception as exc:
            if sess.lost.is_set():  # the transport went first; that is the better reason
                raise LinkLost(sess.reason) from None
            if stage == "connect" and isinstance(exc, ua.UaStatusCodeError) and exc.code in _LOGIN_REFUSED:
                who = f"as '{s.username}'" if s.username else "without a user name (anonymous)"
                raise LinkLost(f"login {who} refused: {status_name(exc.code)}; check username and password") from None
            if not _expected(exc):
                log.exception("%s: %s failed", self.endpoint, stage)
            if isinstance(exc, TimeoutError):
                # Which bound, and the setting behind it: a server slow to set a large session up (thousands of
                # points to resolve and monitor) needs a larger one, not a reconnect that asks it all again.
                t = s.request_timeout_s
                bound = f"{t:g} s per request, {4 * t:g} s to connect" if stage in ("security", "connect") else f"{t:g} s"
                raise LinkLost(f"{stage}: no answer in time (adapter setting request_timeout_s: {bound})") from None
            raise LinkLost(f"{stage}: {describe(exc)}") from None
        finally:
            if self._session is sess:
                self._session = None
            if poller is not None:
                poller.cancel()
                await self._ended(poller)
            await self._teardown(client, sess.services)

    def _watch_transport(self, client: Client, sess: _Session) -> None:
        """Fail the session the moment the socket goes, before asyncua's tasks notice.

        asyncua's publish loop logs a traceback for the pending publish request a
        lost socket fails; cancelling it first, from the synchronous state change,
        turns that into a quiet cancellation. The listener hook is internal to
        asyncua (see internals.py), so without it the public (later, noisier) callback is used.
        """
        uaclient = client.uaclient
        add_listener = state_listener_hook(uaclient)
        if add_listener is None:

            async def lost(exc: Exception) -> None:
                sess.fail("connection lost")

            client.connection_lost_callback = lost
            return
        connected = False

        def on_state(state: UaClientState) -> None:
            nonlocal connected
            if state is UaClientState.CONNECTED:
                connected = True
            elif state is UaClientState.DISCONNECTED and connected:
                sess.fail("connection lost")
                publish = publish_task(uaclient)
                if publish is not None and not publish.done():
                    publish.cancel()

        add_listener(on_state)

    async def _wait_lost(self, sess: _Session) -> None:
        """Until the session fails, or a subscription stays silent past its watchdog.

        Without subscriptions the polls watch the link: a read that fails or times out fails the session.
        """
        quiet_s = self.settings.silence_check_s
        while True:
            remaining = None
            if sess.subscriptions:
                sub = min(sess.subscriptions, key=lambda x: x.last_alive + x.watchdog_s)
                remaining = sub.last_alive + sub.watchdog_s - time.monotonic()
                if remaining <= 0:
                    raise LinkLost(
                        f"watchdog: no data or keep-alive from the subscription for {sub.watchdog_s:g} s"
                        f" (publishing interval {sub.publishing_interval_ms:g} ms)"
                    )
                for sub in sess.subscriptions:
                    due = max(sub.last_data, sub.last_check) + quiet_s - time.monotonic()
                    if due <= 0:
                        sub.last_check = time.monotonic()
                        await self._check_silence(sess, sub)
                        due = quiet_s
                    remaining = min(remaining, due)
            try:
                async with asyncio.timeout(remaining):
                    await sess.lost.wait()
            except TimeoutError:
                continue
            raise LinkLost(sess.reason)

    async def _check_silence(self, sess: _Session, sub: _Subscription) -> None:
        """Read the subscription's liveliest items; a change the server shows that is still not notified
        a notification's time later means the subscription went silent while its keep-alives kept coming (the
        "connected but no data" of servers whose subscriptions stall): LinkLost, and the reconnect subscribes
        anew. A Read that fails is left to the watchdog and the polls."""
        self._silence_checks += 1
        notified = sess.notified
        keys = sorted(sub.keys, key=lambda k: notified.get(k, 0.0), reverse=True)[:SILENCE_PROBES]
        try:
            dvs = await sess.services.read_values([sess.nodes[k] for k in keys]) if keys else []
        except Exception as exc:  # the link's own checks judge a failing connection
            log.debug("%s: silence check read failed: %s", self.endpoint, describe(exc))
            return
        changed = {k: ts for k, dv in zip(keys, dvs)
                   if (ts := timestamp(dv)) is not None and (last := notified.get(k)) is not None and ts > last}
        if not changed:
            return  # nothing changed since it was notified: a quiet machine, not a silent subscription
        grace = 2 * sub.publishing_interval_ms / 1000.0 + 1.0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await sess.lost.wait()
            return  # the link went meanwhile: its own reason is the better one
        if all(notified.get(k, 0.0) < ts for k, ts in changed.items()):
            key = next(iter(changed))
            self._silent += 1
            raise LinkLost(f"subscription {sub.subscription_id} silent: {key} changed on the server and was not"
                           f" notified within {grace:g} s, while keep-alives still came; subscribing anew")

    async def _teardown(self, client: Client, services: Services) -> None:
        """Close the session politely if the server still answers, the socket in any case.

        Requests still on their way (a read whose caller was cancelled) get their answers
        first: one arriving after the session began to close is logged by asyncua as a
        request nobody waits for.
        """
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                await services.settle()
                if client.uaclient.state is UaClientState.CONNECTED:
                    await client.disconnect()
                else:
                    # No transport to say goodbye on: stop asyncua's tasks, forget the session.
                    await client.close_session()
        except Exception as exc:  # the link is already being given up; only the socket matters now
            log.debug("%s: disconnect: %s", self.endpoint, describe(exc))
        client.disconnect_socket()
        # asyncua cancels its publish loop on close but does not wait for it.
        publish = publish_task(client.uaclient)
        if publish is not None and not publish.done():
            publish.cancel()
            await self._ended(publish)

    async def _ended(self, task: asyncio.Task[Any]) -> None:
        """Wait for a cancelled task, but never for ever: a stop or a reconnect must not hang on a task
        that swallows its cancellation (once in about 160 kit runs, a stop waited for ever here)."""
        done, _ = await asyncio.wait({task}, timeout=self.settings.request_timeout_s)
        for t in done:
            exc = None if t.cancelled() else t.exception()
            if exc is not None:
                log.debug("%s: %s ended with %s", self.endpoint, t.get_name(), describe(exc))
        if not done:
            log.warning("%s: %s did not end %g s after it was cancelled; left behind", self.endpoint,
                        task.get_name(), self.settings.request_timeout_s)

    async def _secure(self, client: Client) -> None:
        s = self.settings
        pki = s.pki_dir()
        identity = await security.gateway_identity(pki)
        self._own_thumbprint = identity.thumbprint
        policy = getattr(security_policies, f"SecurityPolicy{s.security_policy}")
        mode = getattr(ua.MessageSecurityMode, s.security_mode)
        endpoints = await client.connect_and_get_server_endpoints()
        self._counter.requests += 1
        try:
            ep = Client.find_endpoint(endpoints, mode, policy.URI)
        except ua.UaError:
            offered = sorted({f"{e.SecurityMode.name}/{e.SecurityPolicyUri.rsplit('#', 1)[-1]}" for e in endpoints})
            raise LinkLost(
                f"security: the server offers no {s.security_mode}/{s.security_policy} endpoint (offers {', '.join(offered)})"
            ) from None
        if not ep.ServerCertificate:
            raise LinkLost("security: the server endpoint carries no certificate")
        trust = security.TrustStore(pki, self._host, self._port, s.server_certificate, first_use=s.trust == "first_use")
        server_der = security.first_certificate(ep.ServerCertificate)
        self._server_thumbprint = trust.check(server_der)
        # Handing the certificate over makes asyncua compare it with the one the
        # session presents, so the checked certificate is the one actually used.
        await client.set_security(
            policy,
            str(identity.cert),
            str(identity.key),
            server_certificate=uacrypto.CertProperties(server_der, extension="der"),
            mode=mode,
        )

    # --- resolution -------------------------------------------------------------------------
    async def _resolve(self, sess: _Session, namespaces: Namespaces) -> None:
        """NodeIds for every point; failures are reported once per connect, the rest go on."""
        errors: dict[str, str] = {}
        # Each distinct reference is resolved once, however many points use it.
        refs: dict[NodeRef, ua.NodeId | None] = {}
        for p in self.values.values():
            refs[p.ref] = None
        for m in self.methods.values():
            refs[m.obj] = None
            refs[m.method] = None
        failed: dict[NodeRef, str] = {}
        paths: list[tuple[BrowsePathRef, ua.BrowsePath]] = []
        for ref in refs:
            try:
                if isinstance(ref, NodeIdRef):
                    refs[ref] = namespaces.nodeid(ref)
                else:
                    paths.append((ref, namespaces.browse_path(ref)))
            except Unresolved as exc:
                failed[ref] = str(exc)
        if paths:
            results = await sess.services.translate([bp for _, bp in paths])
            for (ref, _), result in zip(paths, results):
                try:
                    refs[ref] = target_of(ref, result)
                except Unresolved as exc:
                    failed[ref] = str(exc)
        # Check each node exists and is of the right kind: a NodeId given directly is
        # otherwise only found wrong at the first read, as a stream of errors.
        found = [(ref, nodeid) for ref, nodeid in refs.items() if nodeid is not None]
        classes = await sess.services.read([(n, ua.AttributeIds.NodeClass) for _, n in found])
        kind: dict[NodeRef, ua.NodeClass | None] = {}
        for (ref, _), dv in zip(found, classes):
            code = dv.StatusCode.value if dv.StatusCode is not None else 0
            if code & _BAD:
                failed[ref] = f"unresolved node {ref.text}: {status_name(code)}"
                kind[ref] = None
            else:
                kind[ref] = ua.NodeClass(dv.Value.Value)

        def usable(ref: NodeRef, want: ua.NodeClass) -> ua.NodeId | None:
            if ref in failed:
                return None
            if kind.get(ref) != want:
                got = kind.get(ref)
                failed[ref] = f"unresolved node {ref.text}: is {'an' if got is ua.NodeClass.Object else 'a'} {got.name if got else '?'}, not a {want.name}"
                return None
            return refs[ref]

        for key, p in self.values.items():
            nodeid = usable(p.ref, ua.NodeClass.Variable)
            if nodeid is None:
                errors[key] = failed[p.ref]
            else:
                sess.nodes[key] = nodeid
        for key, m in self.methods.items():
            obj, method = usable(m.obj, ua.NodeClass.Object), usable(m.method, ua.NodeClass.Method)
            if obj is None or method is None:
                errors[key] = failed.get(m.obj) or failed[m.method]
            else:
                sess.methods[key] = (obj, method)
        self._unresolved = errors
        if errors:
            log.warning("%s: %d of %d points unresolved, e.g. %s", self.endpoint, len(errors), len(self.values) + len(self.methods), next(iter(errors.values())))
            batch = [RawReading(k, None, None, why) for k, why in errors.items() if k in self.values]
            if batch:
                self._emit(batch, len(batch), False)

    # --- subscription ---------------------------------------------------------------------
    async def _subscribe(self, sess: _Session) -> None:
        """One subscription per publishing interval; what the server refuses is polled instead."""
        self._fallback = {}
        groups: dict[float, list[str]] = {}
        for key, p in self.values.items():
            if p.subscribe and key in sess.nodes:
                groups.setdefault(p.publishing_ms, []).append(key)
        # The fastest first: a server that runs out of subscriptions leaves the slower points to poll.
        # A subscription made while the publish loop runs can publish before asyncua knows its id
        # (a dropped keep-alive, logged); the slower the later ones, the less likely.
        for publishing_ms, keys in sorted(groups.items()):
            sub = _Subscription(publishing_ms)
            try:
                await self._create_subscription(sess, sub)
            except ua.UaStatusCodeError as exc:
                if exc.code not in REFUSALS:
                    raise
                self._fallback.update((k, f"subscription refused: {status_name(exc.code)}") for k in keys)
                continue
            sess.subscriptions.append(sub)
            await self._monitor(sess, sub, keys)
        self._subscriptions = [sub.summary() for sub in sess.subscriptions]
        by_reason: dict[str, list[str]] = {}
        for key, why in self._fallback.items():
            by_reason.setdefault(why, []).append(key)
        for why, keys in by_reason.items():
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            log.warning("%s: %s; polling %d point%s instead: %s", self.endpoint, why, len(keys), "" if len(keys) == 1 else "s", shown)

    async def _create_subscription(self, sess: _Session, sub: _Subscription) -> None:
        s = self.settings
        keepalive_count = max(1, math.ceil(s.keepalive_ms / sub.requested_ms))
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = sub.requested_ms
        params.RequestedMaxKeepAliveCount = keepalive_count
        # How long the server keeps the subscription without publish requests. Recovery is
        # ours (watchdog, reconnect), so generous: a minute, and at least the 3x keep-alive
        # count the specification demands.
        params.RequestedLifetimeCount = max(3 * keepalive_count, math.ceil(60_000 / sub.requested_ms))
        params.MaxNotificationsPerPublish = 0  # no limit: one publish response carries one whole batch
        params.PublishingEnabled = True
        params.Priority = 0
        result = await sess.services.create_subscription(params, self._publish_callback(sess, sub))
        sub.last_alive = sub.last_data = sub.last_check = time.monotonic()
        sub.subscription_id = result.SubscriptionId
        sub.publishing_interval_ms = result.RevisedPublishingInterval
        sub.keepalive_s = result.RevisedPublishingInterval * result.RevisedMaxKeepAliveCount / 1000.0
        floor = max(result.RevisedPublishingInterval / 1000.0, sub.keepalive_s)
        if s.watchdog_s is None:
            sub.watchdog_s = max(5.0, 3 * floor)
        else:
            # A watchdog shorter than the keep-alive period would fire on every quiet spell.
            sub.watchdog_s = max(s.watchdog_s, 1.5 * floor)
            if sub.watchdog_s > s.watchdog_s:
                log.warning("%s: watchdog_s raised to %.3g s to cover the server's keep-alive period", self.endpoint, sub.watchdog_s)

    async def _monitor(self, sess: _Session, sub: _Subscription, keys: list[str]) -> None:
        s = self.settings
        handles = range(sess.next_handle, sess.next_handle + len(keys))
        sess.next_handle += len(keys)
        requests = []
        for handle, key in zip(handles, keys):
            rv = ua.ReadValueId()
            rv.NodeId = sess.nodes[key]
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = handle
            mp.SamplingInterval = self.values[key].sampling_ms
            mp.QueueSize = s.queue_size
            mp.DiscardOldest = True
            req = ua.MonitoredItemCreateRequest()
            req.ItemToMonitor = rv
            req.MonitoringMode = ua.MonitoringMode.Reporting
            req.RequestedParameters = mp
            requests.append(req)
            # Registered before the call: the first notifications can overtake its response.
            sess.handles[handle] = key
        results = await sess.services.create_monitored_items(sub.subscription_id, requests)
        for handle, key, res in zip(handles, keys, results):
            if res.StatusCode.value & _BAD:
                del sess.handles[handle]
                self._fallback[key] = f"monitored item refused: {status_name(res.StatusCode.value)}"
            else:
                sub.items += 1
                sub.keys.append(key)
                sess.monitored[key] = MonitoredItem(
                    sub.subscription_id, sub.publishing_interval_ms, self.values[key].sampling_ms, res.RevisedSamplingInterval
                )

    def _publish_callback(self, sess: _Session, sub: _Subscription) -> Callable[[ua.PublishResult], None]:
        """The hot path: one call per publish response, however many notifications it holds."""
        handles = sess.handles
        emit = self._emit
        new = tuple.__new__
        RR = RawReading
        plain_types = PLAIN_TYPES
        monotonic = time.monotonic
        DataChange = ua.DataChangeNotification
        StatusChange = ua.StatusChangeNotification

        notified = sess.notified

        def on_publish(result: ua.PublishResult) -> None:
            sub.last_alive = monotonic()
            self._publishes += 1
            data = result.NotificationMessage.NotificationData
            if not data:
                return  # keep-alive
            sub.last_data = sub.last_alive
            out: list[RawReading] = []
            append = out.append
            errors = 0
            for notif in data:
                if isinstance(notif, DataChange):
                    for item in notif.MonitoredItems:
                        key = handles.get(item.ClientHandle)
                        if key is None:
                            continue
                        dv = item.Value
                        ts = dv.SourceTimestamp or dv.ServerTimestamp
                        if ts is not None:
                            ts = notified[key] = ts.timestamp()
                        var = dv.Value
                        value = var.Value if var is not None else None
                        if type(value) not in plain_types:
                            value = plain(value)
                        sc = dv.StatusCode
                        code = sc.value if sc is not None else 0
                        if code & _SEVERITY:
                            errors += 1
                            append(new(RR, (key, None if code & _BAD else value, ts, status_name(code))))
                        else:
                            append(new(RR, (key, value, ts, "")))
                elif isinstance(notif, StatusChange):
                    sess.fail(f"subscription status {status_name(notif.Status.value)}")
            if out:
                self._notifications += len(out)
                emit(out, errors)

        return on_publish

    # --- reads ----------------------------------------------------------------------------------
    async def _read_into_queue(self, sess: _Session, keys: list[str]) -> None:
        if not keys:
            return
        dvs = await sess.services.read_values([sess.nodes[k] for k in keys])
        # Notifications that came while the Read was on its way are newer than (or as new as) what it read: the
        # read value of such a key would go out after them and be stored again (22 rows twice, under load).
        notified = sess.notified
        batch = [r for k, dv in zip(keys, dvs)
                 if (r := reading(k, dv)).source_ts is None or (seen := notified.get(k)) is None or r.source_ts > seen]
        if batch:
            self._emit(batch, sum(1 for r in batch if r.error))

    def _poll_groups(self, sess: _Session) -> dict[float, list[str]]:
        """Polled keys by period (ms): the points asking for polling and those the server would not monitor.

        A session without a subscription and without polled points reads the server's state
        instead, every keep-alive period, so that a dead link is still noticed.
        """
        groups: dict[float, list[str]] = {}
        for key, p in self.values.items():
            if key in sess.nodes and (p.poll or key in self._fallback):
                groups.setdefault(p.poll_ms, []).append(key)
        if not groups and not sess.subscriptions:
            groups[self.settings.keepalive_ms] = []
        return groups

    async def _poll_all(self, sess: _Session, groups: dict[float, list[str]]) -> None:
        async with asyncio.TaskGroup() as tg:
            for period_ms, keys in groups.items():
                tg.create_task(self._poll(sess, period_ms / 1000.0, keys), name=f"opcua-poll {period_ms:g} ms {self.endpoint}")

    async def _poll(self, sess: _Session, period: float, keys: list[str]) -> None:
        """Read points at a fixed rate; a cycle that overruns skips, it does not pile up."""
        next_at = time.monotonic()
        while True:
            try:
                if keys:
                    await self._read_into_queue(sess, keys)
                else:
                    await sess.services.read_values([_SERVER_STATE])
            except Exception as exc:  # handed to the session: it reconnects and reports the reason
                if not _expected(exc):
                    log.exception("%s: poll failed", self.endpoint)
                sess.fail(f"poll: {describe(exc)}")
                return
            next_at += period
            now = time.monotonic()
            if next_at < now:
                next_at = now + period - (now - next_at) % period
            await asyncio.sleep(next_at - now)

    # --- helpers for write and call ---------------------------------------------------------------
    def _ready(self, key: str, table: dict[str, Any]) -> _Session:
        if key not in table:
            kind = "variable" if table is self.values else "method"
            raise AdapterError(f"{key}: no such {kind} point")
        sess = self._session
        if sess is None:
            raise AdapterError(f"{key}: not connected ({self._last_error or 'connecting'})")
        return sess

    async def _variable_type(self, sess: _Session, node: ua.NodeId) -> ua.VariantType | None:
        """The built-in type to write: from DataType, else from the current value's Variant."""
        dt, value = await sess.services.read([(node, ua.AttributeIds.DataType), (node, ua.AttributeIds.Value)])
        vtype = None
        if dt.StatusCode is None or not dt.StatusCode.value & _BAD:
            if isinstance(dt.Value.Value, ua.NodeId):
                vtype = await sess.services.builtin_type(dt.Value.Value)
        if vtype is None and value.Value is not None and value.Value.VariantType is not ua.VariantType.Null:
            vtype = value.Value.VariantType
        return vtype

    async def _argument_types(self, sess: _Session, method: ua.NodeId) -> list[ua.VariantType | None]:
        """Input argument types from the method's InputArguments property (none: send as given)."""
        path = ua.BrowsePath()
        path.StartingNode = method
        el = ua.RelativePathElement()
        el.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
        el.IsInverse = False
        el.IncludeSubtypes = False
        el.TargetName = ua.QualifiedName("InputArguments", 0)
        path.RelativePath = ua.RelativePath(Elements=[el])
        (result,) = await sess.services.translate([path])
        targets = [t.TargetId for t in result.Targets] if result.StatusCode.is_good() else []
        if not targets:
            return []
        (dv,) = await sess.services.read_values([ua.NodeId(targets[0].Identifier, targets[0].NamespaceIndex)])
        args = dv.Value.Value if dv.Value is not None else None
        types: list[ua.VariantType | None] = []
        for arg in args or []:
            # Decoded as asyncua's generated Argument class, not ua.Argument: look at the field.
            datatype = getattr(arg, "DataType", None)
            types.append(await sess.services.builtin_type(datatype) if isinstance(datatype, ua.NodeId) else None)
        return types
