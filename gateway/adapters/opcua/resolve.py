"""Point addresses: how a point names its node, and how that name becomes a NodeId.

Namespace indexes are a property of one server run, not of the machine: a
server that restarts may register its namespaces in another order. So a point
names its node by namespace URI (a NodeId "nsu=<uri>;s=Foo", or a browse path
qualified by URIs), and the adapter turns names into NodeIds against the
server's namespace array at every (re)connect. A plain "ns=2;..." NodeId is
taken as given, for servers whose indexes are fixed.

Browse paths are written "/Objects/Machines/Coater1/Identification/Manufacturer".
They start at the Root folder; the first element ("Objects", "Types", ...) is a
standard OPC UA name, every later element is qualified by the point's
`namespace` option unless it is written "{<namespace uri>}Name".
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua

from gateway.adapters.opcua.values import status_name

UA_NAMESPACE = "http://opcfoundation.org/UA/"  # namespace 0 on every server
_ALL_RESOLVED = 0xFFFFFFFF  # BrowsePathTarget.RemainingPathIndex when the whole path matched


class Unresolved(Exception):
    """A point's node cannot be found on this server (this time)."""


@dataclass(frozen=True)
class NodeIdRef:
    """A NodeId as given; `uri` set when the namespace is named by URI ("nsu=")."""

    text: str
    nodeid: ua.NodeId
    uri: str | None = None


@dataclass(frozen=True)
class BrowsePathRef:
    """A browse path from the Root folder: (namespace URI, browse name) per element."""

    text: str
    elements: tuple[tuple[str, str], ...]


NodeRef = NodeIdRef | BrowsePathRef


def split_path(path: str) -> list[str]:
    """Split on "/" outside braces: namespace URIs in "{...}" contain slashes themselves."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in path:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                raise ValueError(f"unbalanced '}}' in browse path {path!r}")
            depth -= 1
        if ch == "/" and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if depth:
        raise ValueError(f"unbalanced '{{' in browse path {path!r}")
    parts.append("".join(current))
    return parts


def parse_browse_path(text: str, namespace: str | None) -> BrowsePathRef:
    if not text.startswith("/"):
        raise ValueError(f"browse path {text!r} must start with '/' (it is resolved from the Root folder)")
    default_uri = namespace or UA_NAMESPACE
    elements: list[tuple[str, str]] = []
    for i, part in enumerate(split_path(text[1:])):
        if not part:
            raise ValueError(f"browse path {text!r} has an empty element")
        if part.startswith("{"):
            uri, _, name = part[1:].partition("}")
            if not uri or not name:
                raise ValueError(f"browse path element {part!r} must be '{{<namespace uri>}}Name'")
        else:
            uri, name = (UA_NAMESPACE if i == 0 else default_uri), part
        elements.append((uri, name))
    return BrowsePathRef(text, tuple(elements))


def parse_ref(text: object, namespace: str | None, what: str) -> NodeRef:
    """Parse one address option: a NodeId string or a browse path.

    Also accepted, as older configurations write it: "nsu=<uri>;/Objects/..." (or
    "ns=<uri>;/Objects/...") for a browse path in that namespace.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{what}: expected a NodeId string or a browse path, got {text!r}")
    text = text.strip()
    if text.startswith("/"):
        return parse_browse_path(text, namespace)
    head, sep, rest = text.partition(";")
    if sep and rest.startswith("/"):
        key, _, value = head.partition("=")
        if key.strip() == "nsu" or (key.strip() == "ns" and not value.strip().isdigit()):
            ref = parse_browse_path(rest, value.strip())
            return BrowsePathRef(text, ref.elements)
    try:
        parsed = ua.NodeId.from_string(text)
    except (ua.UaStringParsingError, ValueError) as exc:
        raise ValueError(f"{what}: {text!r} is neither a NodeId nor a browse path ({exc})") from None
    uri = getattr(parsed, "NamespaceUri", None)
    if getattr(parsed, "ServerIndex", None):
        raise ValueError(f"{what}: {text!r} names another server (srv=); only local nodes can be read")
    return NodeIdRef(text, ua.NodeId(parsed.Identifier, parsed.NamespaceIndex, parsed.NodeIdType), uri or None)


class Namespaces:
    """The server's namespace array of this connection, by URI."""

    def __init__(self, array: list[str]) -> None:
        self.array = list(array)
        self._index = {uri: i for i, uri in enumerate(self.array)}
        self._index.setdefault(UA_NAMESPACE, 0)

    def index(self, uri: str, ref: NodeRef) -> int:
        idx = self._index.get(uri)
        if idx is None:
            raise Unresolved(f"unresolved node {ref.text}: namespace {uri!r} is not on the server")
        return idx

    def nodeid(self, ref: NodeIdRef) -> ua.NodeId:
        if ref.uri is None:
            return ref.nodeid
        n = ref.nodeid
        return ua.NodeId(n.Identifier, self.index(ref.uri, ref), _widen(n.NodeIdType))

    def browse_path(self, ref: BrowsePathRef) -> ua.BrowsePath:
        elements = []
        for uri, name in ref.elements:
            el = ua.RelativePathElement()
            el.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HierarchicalReferences)
            el.IsInverse = False
            el.IncludeSubtypes = True
            el.TargetName = ua.QualifiedName(name, self.index(uri, ref))
            elements.append(el)
        path = ua.BrowsePath()
        path.StartingNode = ua.NodeId(ua.ObjectIds.RootFolder)
        path.RelativePath = ua.RelativePath(Elements=elements)
        return path


def _widen(kind: ua.NodeIdType) -> ua.NodeIdType | None:
    """Let the NodeId pick its numeric encoding again: the index may have grown past one byte."""
    return None if kind in (ua.NodeIdType.TwoByte, ua.NodeIdType.FourByte, ua.NodeIdType.Numeric) else kind


def target_of(ref: BrowsePathRef, result: ua.BrowsePathResult) -> ua.NodeId:
    """The node a translated browse path leads to, or Unresolved with the server's reason."""
    code = result.StatusCode.value
    if code & 0x80000000:
        raise Unresolved(f"unresolved node {ref.text}: {status_name(code)}")
    for target in result.Targets:
        if target.RemainingPathIndex == _ALL_RESOLVED:
            t = target.TargetId
            return ua.NodeId(t.Identifier, t.NamespaceIndex, _widen(t.NodeIdType))
    raise Unresolved(f"unresolved node {ref.text}: the path leads to another server")
