"""A loopback TCP relay the kit owns, so that it can cut a link it does not own.

The resilience checks run the gateway's Device against the machine through
this relay. `cut()` is a cable pull: every connection through it is closed
on both sides and new ones are refused (nothing listens on its port) until
`restore()` listens again on the same port.

    relay = Relay("10.0.0.31", 502)
    await relay.start()          # relay.port: connect to 127.0.0.1:<port> instead
    await relay.cut(); ...; await relay.restore()
    await relay.close()
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


def endpoint_host_port(protocol: str, endpoint: str) -> tuple[str, int]:
    """(host, port) of an OPC UA URL or a Modbus host:port."""
    if protocol == "opcua":
        parts = urlsplit(endpoint)
        return parts.hostname or "127.0.0.1", parts.port or 4840
    host, _, port = endpoint.removeprefix("modbus://").rpartition(":")
    return host or "127.0.0.1", int(port or 502)


def through(protocol: str, endpoint: str, port: int) -> str:
    """The same endpoint, reached at 127.0.0.1:port (the relay)."""
    if protocol == "opcua":
        parts = urlsplit(endpoint)
        return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
    return f"127.0.0.1:{port}"


class Relay:
    """Forwards every connection made to 127.0.0.1:port to the upstream host and port."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.port = 0  # chosen by start(), kept by restore()
        self.accepted = 0  # connections relayed in all
        self._open = False  # False from cut() to restore(): connections are refused
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._open = True
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def restore(self) -> None:
        if self._server is None:
            await self.start()

    async def cut(self) -> None:
        """Refuse new connections, close every open one on both sides."""
        self._open = False
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for w in list(self._writers):
            w.transport.abort()
        pipes = list(self._pipes)
        for t in pipes:
            t.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        await self.cut()

    def is_open(self) -> bool:
        """Whether the relay passes connections now (a cut may have come during any await)."""
        return self._open

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()  # the machine refuses: so does the relay
            return
        if not self.is_open():  # cut while connecting upstream
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.accepted += 1
        self._writers |= {writer, up_writer}
        pipes = {asyncio.create_task(self._pipe(reader, up_writer), name="relay:up"),
                 asyncio.create_task(self._pipe(up_reader, writer), name="relay:down")}
        self._pipes |= pipes
        try:
            await asyncio.gather(*pipes, return_exceptions=True)
        finally:
            self._pipes -= pipes
            self._writers -= {writer, up_writer}

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction until its end; then close the other side too."""
        try:
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass  # the other side went away: closing below is all there is to do
        finally:
            writer.transport.abort()
