"""The block codec: one series' samples as one compact, exactly reversible blob.

The store seals the samples of a series into chunks (see gateway/store/sqlite/compactor.py);
this module turns the chunk's columns into bytes and back, column-wise with numpy,
never a Python loop per value.

Columns, and how each is kept
-----------------------------
* source times (float64): pcodec, which finds the regular step and the scan
  jitter by itself (delta encoding, float modes);
* gateway times: as the difference of their IEEE bit patterns from the source
  times' (int64 arithmetic, so exact for every float), then pcodec: equal times
  (Modbus, which has no source time) cost nearly nothing;
* numbers: float64 and int64 arrays of the rows that hold one, each with pcodec
  (bools are ints with a flag in the quality byte, as in the store's rows);
* quality byte and value kind (float, int, none, text): one byte each per row,
  zstd: a run of equal bytes costs a few bytes for the whole chunk;
* text values and reasons: lengths and UTF-8 bytes, zstd; reasons only when a
  row has one, so the numeric path pays nothing for them.
Arrays shorter than PCO_MIN go raw: pcodec's own header is larger than them.

Why pcodec, measured on the simulators' own data (bench/linedata.py: a
512-channel formation rack read every second over Modbus, a coater and a winder
over OPC UA, 10 minutes each; per float value, this machine):

=================  ===========  =========  ==========
float codec         formation    coater     winder
=================  ===========  =========  ==========
pcodec 1.1.0        0.17 B       0.95 B     1.19 B
zstd, byte-shuffled 1.54 B       4.44 B     5.11 B
zstd, XOR + shuffle 1.37 B       5.04 B     5.72 B
=================  ===========  =========  ==========

pcodec costs 70-110 ns per value to compress against zstd's 25-40, but the
store compresses once, off the hot path, and decodes ~6 ns per value; source
times cost 0.05-0.1 B/value with either. The machines round their values to a
few decimals, which pcodec's quantised-float mode finds and XOR schemes
(Gorilla) cannot.

Round trip: every float bit pattern (NaN payloads, -0.0, +/-inf) comes back
bit for bit; rows keep the order they were given in (the store gives them
sorted by time, then by sequence).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from itertools import compress
from typing import Any, NamedTuple

import numpy as np
import pcodec
import zstandard
from pcodec import standalone as pco

FORMAT = 1
PCO_MIN = 16  # below this many values an array is stored raw
K_FLOAT, K_INT, K_NONE, K_TEXT = 0, 1, 2, 3
_KIND_OF_TYPE = {float: K_FLOAT, int: K_INT, type(None): K_NONE}
_RAW, _PCO = 0, 1
_HEAD = struct.Struct("<BBI")  # format, flags, rows
_LEN = struct.Struct("<I")
_F_REASONS = 1

# zstandard's (de)compressor objects must not be shared between threads, and the
# store decodes on a pool of reader threads while the compactor encodes: one each per thread.
_ZSTD = threading.local()


def _zc() -> zstandard.ZstdCompressor:
    zc: zstandard.ZstdCompressor | None = getattr(_ZSTD, "zc", None)
    if zc is None:
        zc = _ZSTD.zc = zstandard.ZstdCompressor(level=3)
    return zc


def _zd() -> zstandard.ZstdDecompressor:
    zd: zstandard.ZstdDecompressor | None = getattr(_ZSTD, "zd", None)
    if zd is None:
        zd = _ZSTD.zd = zstandard.ZstdDecompressor()
    return zd

_PCO_CONFIG = pcodec.ChunkConfig()


class CodecError(ValueError):
    """A blob that is not a chunk this codec wrote, or columns it cannot keep."""


class Columns(NamedTuple):
    """A chunk's rows, column-wise. `floats`/`ints` hold the values of the rows of that kind, in row order."""

    ts: np.ndarray  # float64
    gw: np.ndarray  # float64
    q: np.ndarray  # uint8: quality and flags, as the store's q column
    kind: np.ndarray  # uint8: K_FLOAT, K_INT, K_NONE, K_TEXT
    floats: np.ndarray  # float64
    ints: np.ndarray  # int64
    texts: list[str]
    reasons: list[str]  # "" where none

    def numbers(self) -> np.ndarray:
        """Every row's number as float64 (ints converted), NaN where the row holds none."""
        out = np.full(len(self.kind), np.nan)
        out[self.kind == K_FLOAT] = self.floats
        out[self.kind == K_INT] = self.ints
        return out

    def values(self) -> list[Any]:
        """Every row's value as a Python object (float, int, None or str), in row order."""
        if len(self.floats) == len(self.kind):
            result: list[Any] = self.floats.tolist()  # the common case: a series of floats
            return result
        out: list[Any] = [None] * len(self.kind)
        for k, src in ((K_FLOAT, self.floats.tolist()), (K_INT, self.ints.tolist()), (K_TEXT, self.texts)):
            idx = np.flatnonzero(self.kind == k).tolist()
            for i, v in zip(idx, src):
                out[i] = v
        return out


def take(c: Columns, idx: np.ndarray) -> Columns:
    """The rows at the indices idx, in that order, as columns of their own."""
    idx = np.asarray(idx, dtype=np.int64)
    kind = c.kind[idx]

    def pick(k: int, src: np.ndarray) -> np.ndarray:
        pos = np.cumsum(c.kind == k) - 1  # row -> index among the rows of kind k
        result: np.ndarray = src[pos[idx[kind == k]]]
        return result

    text_pos = (np.cumsum(c.kind == K_TEXT) - 1)[idx[kind == K_TEXT]].tolist()
    return Columns(c.ts[idx], c.gw[idx], c.q[idx], kind, pick(K_FLOAT, c.floats), pick(K_INT, c.ints),
                   [c.texts[i] for i in text_pos], [c.reasons[i] for i in idx.tolist()])


def window(c: Columns, lo: int, hi: int) -> Columns:
    """The rows lo..hi-1: a slice of every column (no copy), the values' by their kind's count before lo."""
    if lo == 0 and hi == len(c.kind):
        return c
    before, within = c.kind[:lo], c.kind[lo:hi]
    f0, i0, t0 = (int(np.count_nonzero(before == k)) for k in (K_FLOAT, K_INT, K_TEXT))
    nf, ni, nt = (int(np.count_nonzero(within == k)) for k in (K_FLOAT, K_INT, K_TEXT))
    return Columns(c.ts[lo:hi], c.gw[lo:hi], c.q[lo:hi], within, c.floats[f0:f0 + nf], c.ints[i0:i0 + ni],
                   c.texts[t0:t0 + nt], c.reasons[lo:hi])


def concat(parts: Sequence[Columns]) -> Columns:
    """The rows of every part, one part after the other."""
    if len(parts) == 1:
        return parts[0]
    texts: list[str] = []
    reasons: list[str] = []
    for p in parts:
        texts += p.texts
        reasons += p.reasons
    ts, gw, q, kind, floats, ints = (np.concatenate(col) for col in zip(*(p[:6] for p in parts)))
    return Columns(ts, gw, q, kind, floats, ints, texts, reasons)


def _array(a: np.ndarray) -> bytes:
    if len(a) < PCO_MIN:
        return bytes((_RAW,)) + a.tobytes()
    result: bytes = bytes((_PCO,)) + pco.simple_compress(np.ascontiguousarray(a), _PCO_CONFIG)
    return result


def _unarray(b: bytes, dtype: type) -> np.ndarray:
    if not b:
        raise CodecError("empty array section")
    if b[0] == _RAW:
        return np.frombuffer(b, dtype=dtype, offset=1).copy()
    if b[0] == _PCO:
        out = pco.simple_decompress(b[1:])
        return np.empty(0, dtype) if out is None else out.astype(dtype, copy=False)
    raise CodecError(f"unknown array encoding {b[0]}")


def _strings(values: Sequence[str]) -> bytes:
    raw = [v.encode("utf-8", "surrogatepass") for v in values]
    lengths = np.fromiter(map(len, raw), dtype=np.uint32, count=len(raw))
    return _zc().compress(lengths.tobytes() + b"".join(raw))


def _unstrings(b: bytes, n: int) -> list[str]:
    data = _zd().decompress(b)
    lengths = np.frombuffer(data, dtype=np.uint32, count=n)
    ends = np.cumsum(lengths, dtype=np.int64) + 4 * n
    starts = ends - lengths
    return [data[s:e].decode("utf-8", "surrogatepass") for s, e in zip(starts.tolist(), ends.tolist())]


def columns(ts: Sequence[float], gw: Sequence[float], values: Sequence[Any], texts: Sequence[str | None],
            q: Sequence[int], reasons: Sequence[str | None]) -> Columns:
    """Columns from the store's row columns: value is float, int or None; text the row's text value or None."""
    n = len(ts)
    if not (len(gw) == len(values) == len(texts) == len(q) == len(reasons) == n):
        raise CodecError("columns of different lengths")
    try:
        kind = np.fromiter(map(_KIND_OF_TYPE.__getitem__, map(type, values)), dtype=np.uint8, count=n)
    except KeyError as exc:
        raise CodecError(f"a value of type {exc.args[0].__name__}: the codec keeps float, int, None and text") from None
    has_text = np.fromiter((t is not None for t in texts), dtype=bool, count=n)
    if has_text.any():
        if (kind[has_text] != K_NONE).any():
            raise CodecError("a row with both a number and a text value")
        kind[has_text] = K_TEXT
    q_a = np.asarray(q, dtype=np.int64).reshape(n)
    if n and (q_a.min() < 0 or q_a.max() > 255):
        raise CodecError("a quality byte outside 0..255")
    floats = np.fromiter(compress(values, (kind == K_FLOAT).tolist()), dtype=np.float64)
    try:
        ints = np.fromiter(compress(values, (kind == K_INT).tolist()), dtype=np.int64)
    except OverflowError:
        raise CodecError("an int outside 64 bits") from None
    return Columns(np.asarray(ts, dtype=np.float64).reshape(n), np.asarray(gw, dtype=np.float64).reshape(n),
                   q_a.astype(np.uint8), kind, floats, ints, [str(t) for t in compress(texts, has_text.tolist())],
                   [r or "" for r in reasons])


def pack(c: Columns) -> bytes:
    """The blob of a chunk's columns."""
    flags = 0
    sections = [
        _array(c.ts),
        _array(c.gw.view(np.int64) - c.ts.view(np.int64)),  # wraps on overflow, exactly undone in decode
        _zc().compress(c.q.tobytes() + c.kind.tobytes()),
        _array(c.floats),
        _array(c.ints),
        _strings(c.texts),
    ]
    if any(c.reasons):
        flags |= _F_REASONS
        sections.append(_strings(c.reasons))
    out = [_HEAD.pack(FORMAT, flags, len(c.ts))]
    for s in sections:
        out.append(_LEN.pack(len(s)))
        out.append(s)
    return b"".join(out)


def encode(ts: Sequence[float], gw: Sequence[float], values: Sequence[Any], texts: Sequence[str | None],
           q: Sequence[int], reasons: Sequence[str | None]) -> bytes:
    """One chunk's blob from the store's row columns (see `columns`)."""
    return pack(columns(ts, gw, values, texts, q, reasons))


def _sections(blob: bytes) -> tuple[int, int, list[bytes]]:
    try:
        fmt, flags, n = _HEAD.unpack_from(blob, 0)
    except struct.error:
        raise CodecError("a chunk shorter than its header") from None
    if fmt != FORMAT:
        raise CodecError(f"chunk format {fmt}: this version reads format {FORMAT}")
    pos = _HEAD.size
    out = []
    while pos < len(blob):
        (length,) = _LEN.unpack_from(blob, pos)
        pos += _LEN.size
        out.append(blob[pos:pos + length])
        pos += length
    if pos != len(blob) or len(out) < 6:
        raise CodecError("a truncated chunk")
    return flags, n, out


def decode(blob: bytes, *, texts: bool = True, gw: bool = True) -> Columns:
    """The columns of a chunk; aggregation needs no text values, reasons (texts=False) or gateway times (gw=False:
    an empty gw column)."""
    flags, n, s = _sections(blob)
    ts = _unarray(s[0], np.float64)
    gw_a = (_unarray(s[1], np.int64) + ts.view(np.int64)).view(np.float64) if gw else np.empty(n, np.float64)
    qk = np.frombuffer(_zd().decompress(s[2]), dtype=np.uint8)
    q, kind = qk[:n], qk[n:]
    floats = _unarray(s[3], np.float64)
    ints = _unarray(s[4], np.int64)
    if not (len(ts) == len(gw_a) == len(q) == len(kind) == n):
        raise CodecError("a chunk whose columns disagree on its length")
    text_values: list[str] = []
    reasons: list[str] = [""] * n
    if texts:
        text_values = _unstrings(s[5], int((kind == K_TEXT).sum()))
        if flags & _F_REASONS:
            reasons = _unstrings(s[6], n)
    return Columns(ts, gw_a, q, kind, floats, ints, text_values, reasons)
