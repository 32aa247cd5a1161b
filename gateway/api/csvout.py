"""CSV answers: which requests want one, and rows streamed as they are read.

A route that can answer in CSV takes `format=csv` or `Accept: text/csv` and
returns `csv_response(name, header, rows)`, where `rows` is an async iterator:
a large range is written out while the store is still being read, never held
whole in memory. Cells that are not scalars (event payloads, measurements)
are written as compact JSON.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

from fastapi import HTTPException, Request
from fastapi.responses import StreamingResponse

Format = Literal["json", "csv"]
FORMAT_DOC = "json (default) or csv; Accept: text/csv also asks for CSV"
ROWS_PER_CHUNK = 500  # rows written per chunk sent: small enough to stream, large enough to be cheap


def wants_csv(request: Request, format: str | None) -> bool:
    """True for format=csv, or for Accept: text/csv without format=json."""
    if format is not None:
        if format not in ("json", "csv"):
            raise HTTPException(422, f"format='{format}': use json or csv (or send Accept: text/csv)")
        return format == "csv"
    accept = request.headers.get("accept", "")
    return any(part.split(";")[0].strip() == "text/csv" for part in accept.split(","))


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


async def _chunks(header: list[str], rows: AsyncIterator[Iterable[Any]]) -> AsyncIterator[str]:
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\r\n")  # RFC 4180
    out.writerow(header)
    n = 0
    async for row in rows:
        out.writerow([cell(v) for v in row])
        n += 1
        if n % ROWS_PER_CHUNK == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def csv_response(name: str, header: list[str], rows: AsyncIterator[Iterable[Any]]) -> StreamingResponse:
    return StreamingResponse(_chunks(header, rows), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def each(items: Iterable[Any]) -> AsyncIterator[Any]:
    """Rows already in memory (one store page) as the async iterator csv_response takes."""
    for item in items:
        yield item
