"""The store's block codec: every column of every kind comes back exactly, and bad input is refused clearly."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.store import codec


def bits(x: float) -> int:
    return struct.unpack("<q", struct.pack("<d", x))[0]


def same(a, b) -> bool:
    """Equal including type, and floats bit for bit (NaN payloads, -0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return bits(a) == bits(b)
    return a == b


Row = tuple  # (ts, gw, value, text, q, reason)

_times = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e13)
_value = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none(),
    st.text(max_size=12).map(lambda t: ("text", t)),  # a text value: value None, text set
)


@st.composite
def rows(draw) -> list[Row]:
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=80))):
        ts = draw(_times)
        gw = draw(st.one_of(st.just(ts), _times))
        v = draw(_value)
        text = None
        if isinstance(v, tuple):
            v, text = None, v[1]
        out.append((ts, gw, v, text, draw(st.integers(0, 7)), draw(st.sampled_from(["", "", "nan", "link_down", "é"]))))
    return out


def roundtrip(rs: list[Row]) -> list[Row]:
    cols = list(zip(*rs)) if rs else [[]] * 6
    blob = codec.encode(*cols)
    c = codec.decode(blob)
    values = c.values()
    texts = iter(c.texts)
    out = []
    for i in range(len(c.ts)):
        text = next(texts) if c.kind[i] == codec.K_TEXT else None
        out.append((float(c.ts[i]), float(c.gw[i]), values[i] if text is None else None, text, int(c.q[i]),
                    c.reasons[i]))
    return out


def assert_rows_equal(got: list[Row], want: list[Row]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert all(same(a, b) for a, b in zip(g, w[:5])), (g, w)
        assert g[5] == (w[5] or "")


@settings(max_examples=300, deadline=None)
@given(rows())
def test_every_row_comes_back_exactly(rs):
    assert_rows_equal(roundtrip(rs), rs)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=codec.PCO_MIN, max_size=400),
       st.floats(min_value=1.6e9, max_value=1.8e9), st.floats(min_value=0.001, max_value=10.0))
def test_long_float_series_through_pcodec_come_back_bit_for_bit(values, t0, step):
    rs = [(t0 + i * step, t0 + i * step + 0.003, v, None, 0, "") for i, v in enumerate(values)]
    assert_rows_equal(roundtrip(rs), rs)


def test_special_floats_out_of_order_and_duplicate_times_and_quality_changes():
    nan_payload = struct.unpack("<d", struct.pack("<q", 0x7FF8_0000_0000_0123))[0]
    specials = [math.nan, nan_payload, -0.0, 0.0, math.inf, -math.inf, 5e-324, 1.7976931348623157e308]
    rs = []
    for i in range(200):
        ts = 1.7e9 + (i * 7919 % 200) * 0.1  # out of order
        if i % 10 == 0:
            ts = 1.7e9  # duplicates
        v = specials[i % len(specials)] if i % 3 else i
        rs.append((ts, ts, v, None, (i // 50) % 3, "" if i % 50 else "stale"))
    assert_rows_equal(roundtrip(rs), rs)


def test_constant_series_cost_almost_nothing():
    n = 3600
    ts = [1.7e9 + i for i in range(n)]
    blob = codec.encode(ts, ts, [3.7] * n, [None] * n, [0] * n, [""] * n)
    assert len(blob) / n < 0.1


def test_text_values_do_not_touch_the_numeric_columns():
    rs = [(1.7e9 + i, 1.7e9 + i, None, f"LOT-{i // 10}", 0, "") for i in range(100)]
    c = codec.decode(codec.encode(*zip(*rs)))
    assert len(c.floats) == len(c.ints) == 0 and c.texts == [r[3] for r in rs]
    assert codec.decode(codec.encode(*zip(*rs)), texts=False).texts == []


def test_bad_input_and_foreign_blobs_are_refused_with_the_reason():
    with pytest.raises(codec.CodecError, match="type list"):
        codec.encode([1.0], [1.0], [[1, 2]], [None], [0], [""])
    with pytest.raises(codec.CodecError, match="both a number and a text"):
        codec.encode([1.0], [1.0], [1.0], ["x"], [0], [""])
    with pytest.raises(codec.CodecError, match="different lengths"):
        codec.encode([1.0, 2.0], [1.0], [1.0], [None], [0], [""])
    with pytest.raises(codec.CodecError, match="outside 64 bits"):
        codec.encode([1.0], [1.0], [2**64], [None], [0], [""])
    with pytest.raises(codec.CodecError, match="quality byte"):
        codec.encode([1.0], [1.0], [1.0], [None], [256], [""])
    blob = codec.encode([1.0], [1.0], [1.0], [None], [0], [""])
    with pytest.raises(codec.CodecError, match="format 9"):
        codec.decode(bytes([9]) + blob[1:])
    with pytest.raises(codec.CodecError, match="truncated"):
        codec.decode(blob[:-3])
    with pytest.raises(codec.CodecError, match="header"):
        codec.decode(b"\x01")


def test_decoded_arrays_are_numpy_columns():
    ts = np.arange(100, dtype=np.float64) + 1.7e9
    c = codec.decode(codec.encode(ts.tolist(), ts.tolist(), [1] * 100, [None] * 100, [0] * 100, [""] * 100))
    assert c.ts.dtype == np.float64 and c.ints.dtype == np.int64 and (c.ints == 1).all()


def test_blobs_decode_and_encode_on_many_threads_at_once():
    """The store decodes on a pool of reader threads while its compactor encodes; zstd's
    (de)compressor objects are not thread-safe, so a shared one corrupts frames under load."""
    import concurrent.futures

    texts = [(1.7e9 + i, 1.7e9 + i, None, f"LOT-{i % 97}-" + "x" * (i % 50), i % 4, "nan" if i % 7 else "")
             for i in range(4000)]
    blob = codec.encode(*zip(*texts))

    def work(n: int) -> bool:
        for _ in range(40):
            c = codec.decode(codec.encode(*zip(*texts)) if n % 2 else blob)
            if c.texts != [r[3] for r in texts] or list(c.q) != [r[4] for r in texts]:
                return False
        return True

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        assert all(pool.map(work, range(16)))
