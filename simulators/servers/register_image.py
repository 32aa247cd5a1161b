"""What a simulator published into a ModbusSimServer, to undo stray client writes.

The server stores a client's write before it reports it; a device whose map
is read-only there would have refused it. `RegisterImage` remembers every
register the simulator published and puts back the ones a client overwrote
outside the registers it may write.
"""

from __future__ import annotations

from simulators.servers.modbus_server import ModbusSimServer


class RegisterImage:
    def __init__(self, server: ModbusSimServer):
        self.server = server
        self.writable: set[int] = set()  # holding registers clients may write
        self._image: dict[int, int] = {}

    def put(self, address: int, regs: list[int], table: str = "holding") -> None:
        self.server.set_registers(address, regs, table=table)
        if table == "holding":
            image = self._image
            for i, r in enumerate(regs):
                image[address + i] = r

    def put_many(self, writes: list[tuple[int, list[int]]]) -> None:
        """Holding registers of many values at once (a tick's changes), as `put` each."""
        self.server.set_many_registers(writes)
        image = self._image
        for address, regs in writes:
            image.update(zip(range(address, address + len(regs)), regs))

    def accept(self, address: int, count: int) -> None:
        """A client's write to writable registers stands: remember it as published."""
        for a, r in zip(range(address, address + count), self.server.get_registers(address, count)):
            self._image[a] = r

    def undo(self, address: int, count: int) -> None:
        """Put back what the simulator published, wherever the write was not allowed."""
        for a in range(address, address + count):
            if a not in self.writable:
                self.server.set_registers(a, [self._image.get(a, 0)])
