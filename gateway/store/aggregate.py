"""Bucketed history: per-bucket aggregates of a series' columns, and their merging.

The store aggregates column-wise with numpy (`partials`), from decoded chunks and
from the rows of the head alike, and merges the results per bucket (`Agg`) with
the summaries kept with each chunk. Aggregates are over GOOD samples that hold
a number; "bad" counts UNCERTAIN and BAD samples; "count" counts every GOOD one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from gateway.store.codec import K_FLOAT, K_INT

QMASK = 3  # quality lives in the low bits of the q byte


class Agg:
    """Running aggregates of one bucket, merged from chunk summaries and partial aggregates."""

    __slots__ = ("ft", "fv", "lt", "lv", "mn", "mx", "n", "nbad", "nv", "sm")

    def __init__(self) -> None:
        self.n = self.nv = self.nbad = 0
        self.sm = 0.0
        self.mn: Any = None
        self.mx: Any = None
        self.ft: float | None = None
        self.fv: Any = None
        self.lt: float | None = None
        self.lv: Any = None

    def add(self, n: int, nv: int, nbad: int, sm: float, mn: Any, mx: Any) -> None:
        self.n += n
        self.nv += nv
        self.nbad += nbad
        self.sm += sm or 0.0
        if mn is not None and (self.mn is None or mn < self.mn):
            self.mn = mn
        if mx is not None and (self.mx is None or mx > self.mx):
            self.mx = mx

    def first(self, ts: float | None, v: Any) -> None:
        if ts is not None and (self.ft is None or ts < self.ft):
            self.ft, self.fv = ts, v

    def last(self, ts: float | None, v: Any) -> None:
        if ts is not None and (self.lt is None or ts >= self.lt):
            self.lt, self.lv = ts, v

    def merge(self, p: Sequence[Any]) -> None:
        """Add one partial (n, nv, nbad, sm, mn, mx, ft, fv, lt, lv), in time order of the data."""
        self.add(p[0], p[1], p[2], p[3], p[4], p[5])
        self.first(p[6], p[7])
        self.last(p[8], p[9])

    def row(self, ts: float, aggs: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"ts": ts}
        for a in aggs:
            if a == "avg":
                out[a] = self.sm / self.nv if self.nv else None
            elif a == "min":
                out[a] = self.mn
            elif a == "max":
                out[a] = self.mx
            elif a == "first":
                out[a] = self.fv
            elif a == "last":
                out[a] = self.lv
            elif a == "count":
                out[a] = self.n
        out["bad"] = self.nbad
        return out


def partials(key: np.ndarray, ts: np.ndarray, q: np.ndarray, kind: np.ndarray,
             num: np.ndarray) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """(bucket key, (n, nv, nbad, sm, mn, mx, ft, fv, lt, lv)) per run of equal keys.

    Rows are in (time, sequence) order, so `key` (the bucket of each row) never
    decreases, and first/last are the first/last numeric GOOD rows of the run.
    A bucket whose numbers are all ints gives its min/max/first/last as ints.
    """
    n = len(key)
    if not n:
        return
    starts = np.concatenate(([0], np.flatnonzero(np.diff(key)) + 1))
    good = (q & QMASK) == 0
    isint = kind == K_INT
    numeric = good & ((kind == K_FLOAT) | isint)
    count = np.diff(np.append(starts, n))
    ng = np.add.reduceat(good.astype(np.int64), starts)
    nv = np.add.reduceat(numeric.astype(np.int64), starts)
    allint = np.add.reduceat((numeric & isint).astype(np.int64), starts) == nv
    sm = np.add.reduceat(np.where(numeric, num, 0.0), starts)
    mn = np.minimum.reduceat(np.where(numeric, num, np.inf), starts)
    mx = np.maximum.reduceat(np.where(numeric, num, -np.inf), starts)
    idx = np.arange(n)
    fi = np.minimum.reduceat(np.where(numeric, idx, n - 1), starts)
    li = np.maximum.reduceat(np.where(numeric, idx, 0), starts)
    # Python objects column-wise; the loop below only picks them.
    fint, lint = isint[fi].tolist(), isint[li].tolist()
    rows = zip(key[starts].tolist(), ng.tolist(), nv.tolist(), (count - ng).tolist(), allint.tolist(), sm.tolist(),
               mn.tolist(), mx.tolist(), ts[fi].tolist(), num[fi].tolist(), fint, ts[li].tolist(), num[li].tolist(),
               lint)
    for k, g, v, bad, ints, s, lo, hi, ft, fv, fi_int, lt, lv, li_int in rows:
        if not v:
            yield k, (g, 0, bad, 0.0, None, None, None, None, None, None)
        elif ints:
            yield k, (g, v, bad, s, int(lo), int(hi), ft, int(fv), lt, int(lv))
        else:
            yield k, (g, v, bad, s, lo, hi, ft, int(fv) if fi_int else fv, lt, int(lv) if li_int else lv)
