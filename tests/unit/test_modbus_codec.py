"""Register codec: every dtype in every order, known wire layouts, limits."""

from __future__ import annotations

import math

import pytest

from interface_spec import modbus_codec as codec

ORDERS_4 = ["ABCD", "CDAB", "BADC", "DCBA"]
ORDERS_8 = ["ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA"]

SAMPLES = {
    "int16": [0, 1, -1, 12345, -32768, 32767],
    "uint16": [0, 1, 0xBEEF, 65535],
    "float16": [0.0, 1.0, -2.5, 65504.0],
    "int32": [0, 1, -1, 0x12345678, -(2**31), 2**31 - 1],
    "uint32": [0, 1, 0xDEADBEEF, 2**32 - 1],
    "float32": [0.0, 1.0, -1.5, 3.4028234663852886e38, 2.0**-126, -1234.5],
    "int64": [0, -1, 0x0102030405060708, -(2**63), 2**63 - 1],
    "uint64": [0, 1, 0x0102030405060708, 2**64 - 1],
    "float64": [0.0, 1.0, -math.pi, 1e308, 5e-324],
}


@pytest.mark.parametrize("order", ORDERS_4 + ORDERS_8)
@pytest.mark.parametrize("dtype", sorted(SAMPLES))
def test_round_trip_every_dtype_in_every_order(dtype: str, order: str) -> None:
    for value in SAMPLES[dtype]:
        regs = codec.encode(value, dtype, order)
        assert len(regs) == codec.register_count(dtype)
        assert all(0 <= r <= 0xFFFF for r in regs)
        assert codec.decode(regs, dtype, order) == value
        assert codec.decoder(dtype, order)(regs) == value


def test_float32_one_in_the_four_orders() -> None:
    assert codec.encode(1.0, "float32", "ABCD") == [0x3F80, 0x0000]
    assert codec.encode(1.0, "float32", "CDAB") == [0x0000, 0x3F80]
    assert codec.encode(1.0, "float32", "BADC") == [0x803F, 0x0000]
    assert codec.encode(1.0, "float32", "DCBA") == [0x0000, 0x803F]
    assert codec.decode([0x3F80, 0x0000], "float32", "ABCD") == 1.0
    assert codec.decode([0x0000, 0x3F80], "float32", "CDAB") == 1.0
    assert codec.decode([0x803F, 0x0000], "float32", "BADC") == 1.0
    assert codec.decode([0x0000, 0x803F], "float32", "DCBA") == 1.0


def test_uint32_and_uint64_layouts() -> None:
    assert codec.encode(0x11223344, "uint32", "ABCD") == [0x1122, 0x3344]
    assert codec.encode(0x11223344, "uint32", "CDAB") == [0x3344, 0x1122]
    assert codec.encode(0x11223344, "uint32", "BADC") == [0x2211, 0x4433]
    assert codec.encode(0x11223344, "uint32", "DCBA") == [0x4433, 0x2211]
    v = 0x0102030405060708
    assert codec.encode(v, "uint64", "ABCDEFGH") == [0x0102, 0x0304, 0x0506, 0x0708]
    assert codec.encode(v, "uint64", "GHEFCDAB") == [0x0708, 0x0506, 0x0304, 0x0102]
    assert codec.encode(v, "uint64", "BADCFEHG") == [0x0201, 0x0403, 0x0605, 0x0807]
    assert codec.encode(v, "uint64", "HGFEDCBA") == [0x0807, 0x0605, 0x0403, 0x0201]
    # The four-letter names mean the same for 64-bit values.
    for short, long in zip(ORDERS_4, ORDERS_8):
        assert codec.encode(v, "uint64", short) == codec.encode(v, "uint64", long)


def test_float64_and_int16_layouts() -> None:
    assert codec.encode(1.0, "float64") == [0x3FF0, 0, 0, 0]
    assert codec.encode(1.0, "float64", "DCBA") == [0, 0, 0, 0xF03F]
    assert codec.encode(-2, "int16") == [0xFFFE]
    assert codec.decode([0x8000], "int16") == -32768
    assert codec.encode(1.0, "float16") == [0x3C00]


def test_single_register_values_ignore_the_order() -> None:
    for order in ORDERS_4:
        assert codec.encode(0x1234, "uint16", order) == [0x1234]
        assert codec.decode([0x1234], "uint16", order) == 0x1234
        assert codec.decode([0xFFFF], "int16", order) == -1


def test_nan_and_infinity_pass_through() -> None:
    assert math.isnan(codec.decode(codec.encode(math.nan, "float32"), "float32"))
    assert codec.decode(codec.encode(math.inf, "float64", "CDAB"), "float64", "CDAB") == math.inf
    assert codec.decode([0x7F80, 0x0000], "float32") == math.inf


def test_strings_pad_and_strip() -> None:
    assert codec.encode("AB", "string", count=2) == [0x4142, 0x0000]
    assert codec.encode("ABC", "string", count=2) == [0x4142, 0x4300]
    assert codec.decode([0x4142, 0x4300], "string") == "ABC"
    assert codec.decode([0x4142, 0x2020], "string") == "AB"  # space padded
    assert codec.decode([0x4142, 0x0043], "string") == "AB"  # ends at the first NUL
    assert codec.decode([0x0000, 0x0000], "string") == ""
    assert codec.decode(codec.encode("LnGw", "string", count=2), "string", count=2) == "LnGw"
    assert codec.register_count("string", 16) == 16


def test_string_limits() -> None:
    with pytest.raises(ValueError, match="longer than 2 registers"):
        codec.encode("ABCDE", "string", count=2)
    with pytest.raises(ValueError, match="not ASCII"):
        codec.encode("Zelle Ä", "string", count=8)
    with pytest.raises(ValueError, match="register count"):
        codec.register_count("string")


def test_bits_of_a_register() -> None:
    assert codec.decode([0b1010], "bit", bit=1) is True
    assert codec.decode([0b1010], "bit", bit=2) is False
    assert codec.decode([0x8000], "bit", bit=15) is True
    assert codec.encode(True, "bit", bit=3) == [0b1000]
    assert codec.encode(0, "bit", bit=3) == [0]
    with pytest.raises(ValueError, match=r"0\.\.15"):
        codec.decode([1], "bit", bit=16)
    with pytest.raises(ValueError, match=r"0\.\.15"):
        codec.decoder("bit")
    with pytest.raises(ValueError, match="not a bit value"):
        codec.encode(2, "bit", bit=0)


@pytest.mark.parametrize(
    ("value", "dtype"),
    [(65536, "uint16"), (-1, "uint16"), (32768, "int16"), (-32769, "int16"), (2**32, "uint32"),
     (-(2**31) - 1, "int32"), (2**64, "uint64"), (2**63, "int64"), (1e39, "float32"), (70000.0, "float16")],
)
def test_out_of_range_encodes_say_so(value: float, dtype: str) -> None:
    with pytest.raises(ValueError, match=f"out of range for {dtype}"):
        codec.encode(value, dtype)


def test_wrong_inputs_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not an integer"):
        codec.encode(1.5, "int32")
    assert codec.encode(7.0, "int32") == [0, 7]
    with pytest.raises(ValueError, match="not a number"):
        codec.encode("7", "float32")
    with pytest.raises(ValueError, match="unknown dtype"):
        codec.encode(1, "int8")
    with pytest.raises(ValueError, match="unknown order"):
        codec.encode(1, "int32", "ACBD")
    with pytest.raises(ValueError, match="takes 2 registers, got 1"):
        codec.decode([1], "float32")


def test_register_counts() -> None:
    counts = {"int16": 1, "uint16": 1, "float16": 1, "bit": 1, "int32": 2, "uint32": 2, "float32": 2,
              "int64": 4, "uint64": 4, "float64": 4}
    for dtype, n in counts.items():
        assert codec.register_count(dtype) == n
