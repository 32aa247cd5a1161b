"""A generic Modbus TCP server for simulators, with faults switchable at run time.

The simulator's physics writes plain Python lists through synchronous,
cheap methods (`set_registers`, `set_coils`); clients read them through a real
pymodbus server. Client writes are stored first and then reported through
`on_write`, so a simulator can run a command handshake. `faults` makes the
device misbehave the way field devices do: exception responses for address
ranges, slow replies, dropped connections, a closed port, a small request
limit. It knows nothing of the interface spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Sequence

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import NoSuchIdException
from pymodbus.server import ModbusTcpServer

log = logging.getLogger("linegw.sim.modbus")

WriteCallback = Callable[[str, int, list], None]  # (table, address, values)

# Function code -> table it reads or writes.
_READ_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 15: "coil",
               6: "holding", 16: "holding", 22: "holding", 23: "holding"}
_WRITE_TABLE = {5: "coil", 15: "coil", 6: "holding", 16: "holding", 22: "holding", 23: "holding"}
# Only these answer to a client's read; the rest read back after a write (one delay per request).
_READ_CODES = frozenset({1, 2, 3, 4})
_BIT_TABLES = frozenset({"coil", "discrete"})
_MAX_REGISTERS = 125
_MAX_BITS = 2000


class Bank:
    """One device's four tables as plain lists, indexed by 0-based address."""

    __slots__ = ("coil", "discrete", "holding", "input")

    def __init__(self, size: int):
        self.holding: list[int] = [0] * size
        self.input: list[int] = [0] * size
        self.coil: list[bool] = [False] * size
        self.discrete: list[bool] = [False] * size

    def table(self, name: str) -> list:
        if name not in _READ_TABLE.values():
            raise ValueError(f"unknown table {name!r} (holding, input, coil, discrete)")
        return getattr(self, name)


class Faults:
    """Misbehaviour, switchable while clients are connected.

    exception_addresses: {range(a, b) or (a, b): exception code} answers any
        request touching addresses a..b-1 (of any table) with that exception,
        e.g. 2 illegal data address, 6 device busy, 11 gateway target failed.
    delay_s: every request waits this long before it is answered.
    max_registers_per_request: register requests above it get
        `oversize_exception` (3 illegal data value, or 2 as some devices do).
    refuse: stop listening (connections in place stay; drop them with
        `drop_connections()`); back to False listens again on the same port.
    replies: how replies leave the device: "ok"; "garbage", bytes of the
        reply's length that are no Modbus frame (a serial gateway's line
        noise); "foreign_tid", the right reply under another transaction id
        (a gateway mixing up its clients' requests).
    """

    def __init__(self, server: ModbusSimServer):
        self._server = server
        self.exception_addresses: dict[range | tuple[int, int], int] = {}
        self.delay_s: float = 0.0
        self.max_registers_per_request: int | None = None
        self.oversize_exception: int = int(ExcCodes.ILLEGAL_VALUE)
        self.replies: str = "ok"
        self._refuse = False
        self._noise = random.Random(7)

    @property
    def refuse(self) -> bool:
        return self._refuse

    @refuse.setter
    def refuse(self, value: bool) -> None:
        value = bool(value)
        if value != self._refuse:
            self._refuse = value
            self._server._set_listening(not value)

    def drop_connections(self) -> None:
        """Close every client connection now, as a device reboot or a cable pull would."""
        self._server._drop_connections()

    def clear(self) -> None:
        """Back to a well-behaved device."""
        self.exception_addresses = {}
        self.delay_s = 0.0
        self.max_registers_per_request = None
        self.oversize_exception = int(ExcCodes.ILLEGAL_VALUE)
        self.replies = "ok"
        self.refuse = False

    def packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus's packet hook: a reply as the `replies` fault makes it (requests pass untouched)."""
        if not sending or self.replies == "ok":
            return data
        if self.replies == "garbage":
            return self._noise.randbytes(len(data))
        if self.replies == "foreign_tid":
            tid = int.from_bytes(data[:2], "big")
            return ((tid + 0x4000) & 0xFFFF).to_bytes(2, "big") + data[2:]
        raise ValueError(f"replies={self.replies!r}: use ok, garbage or foreign_tid")

    def exception_for(self, address: int, count: int) -> int | None:
        """The exception code for a request over address..address+count-1, if any."""
        if not self.exception_addresses:
            return None
        end = address + count
        for where, code in self.exception_addresses.items():
            lo, hi = (where.start, where.stop) if isinstance(where, range) else where
            if address < hi and lo < end:
                return int(code)
        return None


class _Store(ModbusServerContext):
    """The pymodbus datastore: requests go straight to the banks, faults first."""

    def __init__(self, sim: ModbusSimServer):  # no super().__init__: it only builds its own devices
        self.old_simulator = True  # pymodbus then calls this context as it is
        self.simdevices = []
        self._sim = sim

    def device_ids(self) -> list[int]:
        return list(self._sim.banks)

    def _bank(self, device_id: int) -> Bank:
        bank = self._sim.banks.get(device_id)
        if bank is None:
            raise NoSuchIdException(f"device id {device_id} is not simulated here")
        return bank

    def _refusal(self, table: str, address: int, count: int) -> ExcCodes | int | None:
        faults = self._sim.faults
        code = faults.exception_for(address, count)
        if code is not None:
            return code
        if table in _BIT_TABLES:
            limit = _MAX_BITS
        else:
            limit = min(_MAX_REGISTERS, faults.max_registers_per_request or _MAX_REGISTERS)
            if count > limit:
                return faults.oversize_exception
        if count < 1 or count > limit:
            return ExcCodes.ILLEGAL_VALUE
        if address < 0 or address + count > self._sim.size:
            return ExcCodes.ILLEGAL_ADDRESS
        served = self._sim.served.get(table)
        if served is not None and not any(address >= r.start and address + count <= r.stop for r in served):
            return ExcCodes.ILLEGAL_ADDRESS  # outside the device's map
        return None

    async def async_getValues(self, device_id: int, func_code: int, address: int, count: int = 1):
        bank = self._bank(device_id)
        if func_code in _READ_CODES:
            await self._sim._delay()
        table = _READ_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        refused = self._refusal(table, address, count)
        if refused is not None:
            return ExcCodes(refused)
        return getattr(bank, table)[address:address + count]

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Sequence) -> ExcCodes | None:
        bank = self._bank(device_id)
        await self._sim._delay()
        table = _WRITE_TABLE.get(func_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        refused = self._refusal(table, address, len(values))
        if refused is not None:
            return ExcCodes(refused)
        values = [bool(v) for v in values] if table in _BIT_TABLES else list(values)
        getattr(bank, table)[address:address + len(values)] = values
        if self._sim.on_write is not None:
            self._sim.on_write(table, address, values)
        return None


class ModbusSimServer:
    """A Modbus TCP server over in-memory tables; `port` is the bound port after `start()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, size: int = 65536,
                 device_ids: Iterable[int] = (1,), on_write: WriteCallback | None = None):
        if not 1 <= size <= 65536:
            raise ValueError(f"size must be 1..65536, got {size}")
        ids = tuple(device_ids)
        if not ids or any(not 0 <= d <= 255 for d in ids):
            raise ValueError(f"device ids must be 0..255, got {ids!r}")
        self.host = host
        self.port = port
        self.size = size
        self.banks: dict[int, Bank] = {d: Bank(size) for d in ids}
        self._default = self.banks[ids[0]]
        self.on_write = on_write
        self.faults = Faults(self)
        # table -> the address ranges the device's map has; a request reaching outside them answers exception 2.
        # A table not listed serves its whole size.
        self.served: dict[str, list[range]] = {}
        self._server: ModbusTcpServer | None = None
        self._stopped = asyncio.Event()
        self._relisten: asyncio.Task | None = None

    # --- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        """Listen; after a `stop()` this listens again on the same port."""
        if self._server is not None:
            return
        self._stopped = asyncio.Event()
        server = ModbusTcpServer(_Store(self), address=(self.host, self.port), trace_packet=self.faults.packet)
        if not await server.listen():
            raise OSError(f"modbus simulator cannot listen on {self.host}:{self.port}")
        bound = server.transport.sockets[0].getsockname()[1]  # type: ignore[attr-defined]  # pymodbus types the transport as a BaseTransport; it is an asyncio Server
        if bound != self.port:
            self.port = bound
            # Later re-listens (refuse off) must take this port, not "any".
            server.init_setup_connect_listen(self.host, bound)
        self._server = server
        if self.faults.refuse:
            self._set_listening(False)

    async def stop(self) -> None:
        """Close the port and every connection; pending slow replies are cut short."""
        self._stopped.set()
        if self._relisten is not None:
            self._relisten.cancel()
            await asyncio.gather(self._relisten, return_exceptions=True)
            self._relisten = None
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()

    async def __aenter__(self) -> ModbusSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        """Clients connected now."""
        return len(self._server.active_connections) if self._server is not None else 0

    # --- the register bank (synchronous: the physics loop calls these) ---------------
    def _bank_for(self, device_id: int | None) -> Bank:
        if device_id is None:
            return self._default
        try:
            return self.banks[device_id]
        except KeyError:
            raise ValueError(f"device id {device_id} is not simulated here") from None

    def _check_span(self, address: int, count: int) -> None:
        if address < 0 or count < 0 or address + count > self.size:
            raise ValueError(f"{count} values from address {address} do not fit {self.size} addresses")

    def set_registers(self, address: int, values: Sequence[int], table: str = "holding",
                      device_id: int | None = None) -> None:
        """Store 16-bit values from `address` (0-based) on: holding or input registers."""
        self.set_many_registers([(address, values)], table, device_id)

    def set_many_registers(self, writes: Sequence[tuple[int, Sequence[int]]], table: str = "holding",
                           device_id: int | None = None) -> None:
        """`set_registers` for many (address, values) at once: the table looked up once, each write checked."""
        if table not in ("holding", "input"):
            raise ValueError(f"registers live in 'holding' or 'input', not {table!r}")
        registers = self._bank_for(device_id).table(table)
        for address, values in writes:
            self._check_span(address, len(values))
            if values and (min(values) < 0 or max(values) > 0xFFFF):
                raise ValueError(f"register values must be 0..65535, got {min(values)}..{max(values)}")
            registers[address:address + len(values)] = values

    def get_registers(self, address: int, count: int, table: str = "holding",
                      device_id: int | None = None) -> list[int]:
        if table not in ("holding", "input"):
            raise ValueError(f"registers live in 'holding' or 'input', not {table!r}")
        self._check_span(address, count)
        return self._bank_for(device_id).table(table)[address:address + count]

    def set_coils(self, address: int, values: Sequence[bool], table: str = "coil",
                  device_id: int | None = None) -> None:
        """Store bits from `address` (0-based) on: coils or discrete inputs."""
        if table not in _BIT_TABLES:
            raise ValueError(f"bits live in 'coil' or 'discrete', not {table!r}")
        self._check_span(address, len(values))
        self._bank_for(device_id).table(table)[address:address + len(values)] = [bool(v) for v in values]

    def get_coils(self, address: int, count: int, table: str = "coil",
                  device_id: int | None = None) -> list[bool]:
        if table not in _BIT_TABLES:
            raise ValueError(f"bits live in 'coil' or 'discrete', not {table!r}")
        self._check_span(address, count)
        return self._bank_for(device_id).table(table)[address:address + count]

    # --- faults ----------------------------------------------------------------------
    async def _delay(self) -> None:
        delay = self.faults.delay_s
        if delay > 0:
            # Wakes early on stop(), so no reply task outlives the server.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()

    def _set_listening(self, on: bool) -> None:
        server = self._server
        if server is None:
            return  # applied by the next start()
        if not on:
            if self._relisten is not None:
                self._relisten.cancel()
                self._relisten = None
            if server.transport is not None:
                server.transport.close()  # the listening socket only
                server.transport = None  # type: ignore[assignment]  # pymodbus declares it never None; None makes it listen again
            return
        if getattr(server, "transport", None) is None and self._relisten is None:  # pymodbus types it as never None
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again(server))

    async def _listen_again(self, server: ModbusTcpServer) -> None:
        try:
            if not await server.listen():
                log.warning("modbus simulator cannot listen again on %s:%s", self.host, self.port)
        finally:
            self._relisten = None

    def _drop_connections(self) -> None:
        server = self._server
        if server is None:
            return
        for conn in list(server.active_connections.values()):
            conn.close()
