"""The OPC UA service calls the adapter makes, cut to the server's operation limits.

Small controllers answer a Read of 5000 nodes with BadTooManyOperations; their
limits are published under Server/ServerCapabilities/OperationLimits. Every
multi-node call goes through here and is split accordingly. A server that
publishes no limit (0) but still refuses large requests is handled too: the
chunk is halved and remembered until the call goes through.

Every request runs in a task of its own that outlives a cancelled caller: the
server's answer is still taken when it comes, and `settle()` lets the session
wait for such answers before it closes, instead of leaving them to arrive for
a request nobody waits for any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from asyncua import ua
from asyncua.client.ua_client import UaClient

from gateway.adapters.opcua.values import builtin_of

log = logging.getLogger("linegw.opcua")

T = TypeVar("T")
R = TypeVar("R")

OL = "Server_ServerCapabilities_OperationLimits_"
LIMIT_NODES = {
    "read": getattr(ua.ObjectIds, OL + "MaxNodesPerRead"),
    "write": getattr(ua.ObjectIds, OL + "MaxNodesPerWrite"),
    "call": getattr(ua.ObjectIds, OL + "MaxNodesPerMethodCall"),
    "browse": getattr(ua.ObjectIds, OL + "MaxNodesPerBrowse"),
    "translate": getattr(ua.ObjectIds, OL + "MaxNodesPerTranslateBrowsePathsToNodeIds"),
    "monitored_items": getattr(ua.ObjectIds, OL + "MaxMonitoredItemsPerCall"),
}
# Service results that refuse a subscription or monitored items as such; anything else
# (a closed session, a timeout) is a link problem and fails the session.
REFUSALS = frozenset(
    getattr(ua.StatusCodes, name)
    for name in (
        "BadTooManySubscriptions",
        "BadTooManyMonitoredItems",
        "BadServiceUnsupported",
        "BadNotSupported",
        "BadNotImplemented",
        "BadMonitoredItemFilterUnsupported",
        "BadMonitoredItemFilterInvalid",
        "BadFilterNotAllowed",
        "BadResourceUnavailable",
    )
)


@dataclass
class OperationLimits:
    """Per-call node limits as the server publishes them; 0 means none given."""

    read: int = 0
    write: int = 0
    call: int = 0
    browse: int = 0
    translate: int = 0
    monitored_items: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Counter:
    """Service calls issued, for health()."""

    def __init__(self) -> None:
        self.requests = 0


class Services:
    def __init__(self, uaclient: UaClient, cap: int, counter: Counter) -> None:
        self.ua = uaclient
        self.cap = cap
        self.counter = counter
        self.limits = OperationLimits()
        self._learned: dict[str, int] = {}  # smaller chunks a server forced on us
        self._supertypes: dict[ua.NodeId, ua.VariantType | None] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()

    async def _send(self, request: Coroutine[Any, Any, R]) -> R:
        task = asyncio.ensure_future(request)
        self._in_flight.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            task.exception()  # taken here too: a cancelled caller no longer does

    async def settle(self) -> None:
        """Wait until every request sent has its answer (or its error), whether or not its caller still waits."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))

    def chunk(self, kind: str) -> int:
        published = getattr(self.limits, kind)
        n = min(published, self.cap) if published > 0 else self.cap
        return min(n, self._learned.get(kind, n))

    async def chunked(self, kind: str, items: Sequence[T], call: Callable[[list[T]], Awaitable[list[R]]]) -> list[R]:
        out: list[R] = []
        i = 0
        while i < len(items):
            n = self.chunk(kind)
            part = list(items[i : i + n])
            self.counter.requests += 1
            try:
                results: list[R] = await self._send(_coroutine(call(part)))
            except ua.uaerrors.BadTooManyOperations:
                if n <= 1:
                    raise
                self._learned[kind] = max(1, n // 2)
                log.info("server refused %d nodes per %s call; retrying with %d", n, kind, self._learned[kind])
                continue
            if len(results) != len(part):
                raise ua.UaError(f"{kind}: server answered {len(results)} results for {len(part)} nodes")
            out.extend(results)
            i += n
        return out

    # --- Attribute services ---------------------------------------------------
    async def read(self, items: Sequence[tuple[ua.NodeId, int]]) -> list[ua.DataValue]:
        """Read (node, attribute) pairs; results in the same order."""

        async def call(part: list[tuple[ua.NodeId, int]]) -> list[ua.DataValue]:
            params = ua.ReadParameters()
            params.MaxAge = 0
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            for nodeid, attr in part:
                rv = ua.ReadValueId()
                rv.NodeId = nodeid
                rv.AttributeId = attr
                params.NodesToRead.append(rv)
            result: list[Any] = await self.ua.read(params)
            return result

        return await self.chunked("read", items, call)

    async def read_values(self, nodes: Sequence[ua.NodeId]) -> list[ua.DataValue]:
        return await self.read([(n, ua.AttributeIds.Value) for n in nodes])

    async def write(self, items: Sequence[tuple[ua.NodeId, ua.Variant]]) -> list[ua.StatusCode]:
        async def call(part: list[tuple[ua.NodeId, ua.Variant]]) -> list[ua.StatusCode]:
            params = ua.WriteParameters()
            for nodeid, variant in part:
                wv = ua.WriteValue()
                wv.NodeId = nodeid
                wv.AttributeId = ua.AttributeIds.Value
                # Value only: several PLC servers refuse writes that carry a status
                # or timestamps (BadWriteNotSupported).
                wv.Value = ua.DataValue(variant, StatusCode=None)
                params.NodesToWrite.append(wv)
            result: list[Any] = await self.ua.write(params)
            return result

        return await self.chunked("write", items, call)

    # --- View services --------------------------------------------------------
    async def translate(self, paths: Sequence[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
        async def call(part: list[ua.BrowsePath]) -> list[ua.BrowsePathResult]:
            result: list[Any] = await self.ua.translate_browsepaths_to_nodeids(part)
            return result

        return await self.chunked("translate", paths, call)

    async def supertype(self, datatype: ua.NodeId) -> ua.NodeId | None:
        desc = ua.BrowseDescription()
        desc.NodeId = datatype
        desc.BrowseDirection = ua.BrowseDirection.Inverse
        desc.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasSubtype)
        desc.IncludeSubtypes = False
        desc.NodeClassMask = ua.NodeClass.DataType
        desc.ResultMask = ua.BrowseResultMask.None_
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        params.RequestedMaxReferencesPerNode = 1
        params.NodesToBrowse = [desc]
        self.counter.requests += 1
        results = await self._send(self.ua.browse(params))
        if not results or not results[0].References:
            return None
        t = results[0].References[0].NodeId
        return ua.NodeId(t.Identifier, t.NamespaceIndex)

    async def builtin_type(self, datatype: ua.NodeId) -> ua.VariantType | None:
        """The built-in type behind a DataType, following HasSubtype up for vendor types."""
        if datatype in self._supertypes:
            return self._supertypes[datatype]
        current: ua.NodeId | None = datatype
        found: ua.VariantType | None = None
        for _ in range(16):  # type hierarchies are shallow; a cycle must not hang us
            if current is None:
                break
            known = builtin_of(current)
            if known is not False:
                found = known if isinstance(known, ua.VariantType) else None
                break
            current = await self.supertype(current)
        self._supertypes[datatype] = found
        return found

    # --- Method services --------------------------------------------------------
    async def call(self, requests: Sequence[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
        async def call(part: list[ua.CallMethodRequest]) -> list[ua.CallMethodResult]:
            result: list[Any] = await self.ua.call(part)
            return result

        return await self.chunked("call", requests, call)

    # --- Subscription services ----------------------------------------------------
    async def create_monitored_items(
        self, subscription_id: int, requests: Sequence[ua.MonitoredItemCreateRequest]
    ) -> list[ua.MonitoredItemCreateResult]:
        """One result per request; a call the server refuses as a whole answers each of its items so."""

        async def call(part: list[ua.MonitoredItemCreateRequest]) -> list[ua.MonitoredItemCreateResult]:
            params = ua.CreateMonitoredItemsParameters()
            params.SubscriptionId = subscription_id
            params.TimestampsToReturn = ua.TimestampsToReturn.Both
            params.ItemsToCreate = part
            try:
                result: list[Any] = await self.ua.create_monitored_items(params)
                return result
            except ua.UaStatusCodeError as exc:
                if exc.code not in REFUSALS:
                    raise
                return [ua.MonitoredItemCreateResult(StatusCode=ua.StatusCode(exc.code)) for _ in part]

        return await self.chunked("monitored_items", requests, call)

    async def create_subscription(
        self, params: ua.CreateSubscriptionParameters, callback: Callable[[ua.PublishResult], Any]
    ) -> ua.CreateSubscriptionResult:
        self.counter.requests += 1
        return await self._send(self.ua.create_subscription(params, callback))

    # --- Server facts ---------------------------------------------------------------
    async def load_limits(self) -> OperationLimits:
        """Read OperationLimits; MaxNodesPerRead first, since it bounds reading the rest."""
        first = await self.read_values([ua.NodeId(LIMIT_NODES["read"])])
        self.limits.read = _limit(first[0])
        kinds = [k for k in LIMIT_NODES if k != "read"]
        values = await self.read_values([ua.NodeId(LIMIT_NODES[k]) for k in kinds])
        for kind, dv in zip(kinds, values):
            setattr(self.limits, kind, _limit(dv))
        return self.limits

    async def namespace_array(self) -> list[str]:
        dv = (await self.read_values([ua.NodeId(ua.ObjectIds.Server_NamespaceArray)]))[0]
        if dv.StatusCode is not None and not dv.StatusCode.is_good():
            raise ua.UaStatusCodeError(dv.StatusCode.value)
        value = dv.Value.Value if dv.Value is not None else None
        if not isinstance(value, list):
            raise ua.UaError(f"the server's NamespaceArray is not a list: {value!r}")
        return [str(v) for v in value]


def _limit(dv: ua.DataValue) -> int:
    """A published limit; anything unreadable counts as "none given"."""
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return 0
    value = dv.Value.Value if dv.Value is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def _coroutine(awaitable: Awaitable[R]) -> R:
    """An awaitable as a coroutine, which is what a task is made of."""
    return await awaitable
