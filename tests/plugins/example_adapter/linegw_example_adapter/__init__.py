"""An example third-party adapter: a machine that publishes its values as a JSON file.

Some line PCs write their values to a shared file. This adapter polls such a
file (`endpoint` is its path; a point is a key of the JSON object, `node: key`
or, typed, `point: {key: ..., index: ...}`) and writes commands back into it. It is deliberately small: it shows
everything a linegw adapter has to do and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.adapters.base import AdapterError, AdapterHealth, LinkCallback, Point, RawReading, ReadingsCallback


class Settings(BaseModel):
    """The settings this adapter takes (`adapter:` of a machine in the line file). Declared as the class's
    `Settings`, `linegw check-config` checks them too: a misspelt name or a value out of range is named there,
    at its file and line, instead of being ignored or failing at run time."""

    model_config = ConfigDict(extra="forbid")

    scan_interval_ms: int = Field(default=200, ge=10, le=60_000, description="how often the file is read")


class Address(BaseModel):
    """Where a value is in the file, as a vendor file's `source: {point: {...}}` gives it. Declared as the class's
    `Address`, a vendor file's points are checked against it when the file loads, each refusal at its field.
    (`source: {node: key}` is the one-string form of `{point: {key: key}}`.)"""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1, description="the key of the JSON object")
    index: int | None = Field(default=None, ge=0, description="an element of the key's list value")


class JsonFileAdapter:
    Settings = Settings
    Address = Address

    def __init__(self, endpoint: str, points: list[Point], settings: dict[str, Any]):
        self.path = Path(endpoint.removeprefix("file://"))
        self.points = {p.key: Address(key=p.options["node"]) if "node" in p.options else
                       Address.model_validate({k: v for k, v in p.options.items() if k in Address.model_fields})
                       for p in points}
        self.scan_keys = [p.key for p in points if p.options.get("scan", True)]
        self.interval = Settings.model_validate(settings).scan_interval_ms / 1000
        self._health = AdapterHealth()

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AdapterError(f"{self.path}: {exc}") from None

    def _value(self, address: Address, data: dict[str, Any]) -> Any:
        if address.key not in data:
            raise KeyError(f"no key '{address.key}' in {self.path.name}")
        value = data[address.key]
        if address.index is None:
            return value
        if not isinstance(value, list) or address.index >= len(value):
            raise KeyError(f"'{address.key}' has no element {address.index}")
        return value[address.index]

    def _readings(self, keys: list[str], data: dict[str, Any], ts: float | None) -> list[RawReading]:
        out = []
        for k in keys:
            try:
                out.append(RawReading(k, self._value(self.points[k], data), ts))
            except KeyError as exc:
                out.append(RawReading(k, None, ts, str(exc.args[0])))
        return out

    async def run(self, on_readings: ReadingsCallback, on_link: LinkCallback) -> None:
        up = False
        while True:
            try:
                data = await asyncio.to_thread(self._load)
            except AdapterError as exc:
                self._health.read_errors += 1
                self._health.last_error = str(exc)
                if up:
                    up = False
                    self._health.connected = False
                    on_link(False, str(exc))
            else:
                if not up:
                    up = True
                    self._health.connected = True
                    on_link(True, "")
                ts = os.stat(self.path).st_mtime if self.path.exists() else time.time()
                self._health.reads += 1
                self._health.last_data_ts = time.time()
                if (behind := on_readings(self._readings(self.scan_keys, data, ts))) is not None:
                    await behind  # back-pressure: the gateway's store is behind
            await asyncio.sleep(self.interval)

    async def read(self, keys: list[str]) -> list[RawReading]:
        return self._readings(keys, await asyncio.to_thread(self._load), None)

    async def write(self, key: str, value: Any) -> None:
        data = await asyncio.to_thread(self._load)
        data[self.points[key].key] = value
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        tmp.replace(self.path)  # atomic: a reader never sees half a file

    async def call(self, key: str, args: list[Any]) -> list[Any]:
        raise AdapterError("a JSON file has no methods")

    def health(self) -> AdapterHealth:
        return self._health
