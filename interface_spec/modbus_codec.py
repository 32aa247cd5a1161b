"""Register values to Python values and back: the Modbus data types.

A Modbus register is 16 bits, sent high byte first. Wider values span
consecutive registers; how a device orders them is its "order":

    ABCD  big-endian, high word first (the Modbus convention)
    CDAB  words swapped (low word first)
    BADC  bytes swapped within each word
    DCBA  both (little-endian)

64-bit values take the same four orders, written either way (CDAB or
GHEFCDAB mean "words in reverse order"). The order applies to multi-register
numbers only: 16-bit values, bits of a register and strings are taken as the
register gives them (strings: first character in the high byte, NUL or space
padded).

`decoder()` and `encoder()` return precompiled callables for the hot path;
`decode()` and `encode()` are the one-off forms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from struct import Struct
from struct import error as StructError
from typing import Any

Decoder = Callable[[Sequence[int]], Any]
Encoder = Callable[[Any], list[int]]

# dtype -> (registers, struct code of the whole value); strings and bits are special.
_NUMERIC: dict[str, tuple[int, str]] = {
    "int16": (1, "h"),
    "uint16": (1, "H"),
    "float16": (1, "e"),
    "int32": (2, "i"),
    "uint32": (2, "I"),
    "float32": (2, "f"),
    "int64": (4, "q"),
    "uint64": (4, "Q"),
    "float64": (4, "d"),
}
DTYPES: frozenset[str] = frozenset(_NUMERIC) | {"bit", "string"}

_INT_RANGE: dict[str, tuple[int, int]] = {
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
    "uint64": (0, (1 << 64) - 1),
}

# order -> (words reversed, bytes swapped within each word)
_ORDERS: dict[str, tuple[bool, bool]] = {
    "ABCD": (False, False),
    "CDAB": (True, False),
    "BADC": (False, True),
    "DCBA": (True, True),
    "ABCDEFGH": (False, False),
    "GHEFCDAB": (True, False),
    "BADCFEHG": (False, True),
    "HGFEDCBA": (True, True),
}
ORDERS: frozenset[str] = frozenset(_ORDERS)

_REG1 = Struct(">H")


def _order(order: str) -> tuple[bool, bool]:
    try:
        return _ORDERS[order.upper()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown order {order!r} (one of ABCD, CDAB, BADC, DCBA or the 8-letter forms)") from None


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r} (one of {', '.join(sorted(DTYPES))})")


def register_count(dtype: str, count: int | None = None) -> int:
    """Registers a value of `dtype` takes; strings take `count` registers."""
    _check_dtype(dtype)
    if dtype == "string":
        if count is None or isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"a string needs a register count >= 1, got {count!r}")
        return count
    if dtype == "bit":
        return 1
    return _NUMERIC[dtype][0]


def _check_bit(bit: int | None) -> int:
    if bit is None or isinstance(bit, bool) or not isinstance(bit, int) or not 0 <= bit <= 15:
        raise ValueError(f"a bit index must be 0..15, got {bit!r}")
    return bit


# --- decoding ---------------------------------------------------------------------


def _decode_string(n: int) -> Decoder:
    regs = Struct(f">{n}H")

    def dec(r: Sequence[int]) -> str:
        raw = regs.pack(*r)
        end = raw.find(0)
        if end >= 0:
            raw = raw[:end]
        return raw.rstrip(b" ").decode("ascii", errors="replace")

    return dec


def _decode_int16(r: Sequence[int]) -> int:
    v = r[0]
    return v - 0x10000 if v & 0x8000 else v


def _decode_uint16(r: Sequence[int]) -> int:
    return r[0]


def _decode_float16() -> Decoder:
    half = Struct(">e")
    pack, unpack = _REG1.pack, half.unpack

    def dec(r: Sequence[int]) -> float:
        result: float = unpack(pack(r[0]))[0]
        return result

    return dec


def _decode_bit(bit: int) -> Decoder:
    mask = 1 << bit

    def dec(r: Sequence[int]) -> bool:
        return bool(r[0] & mask)

    return dec


def _decode_wide(n: int, code: str, words_reversed: bool, bytes_swapped: bool) -> Decoder:
    # Lay the registers out as the value's big-endian bytes, then read the value.
    pack = Struct(("<" if bytes_swapped else ">") + f"{n}H").pack
    unpack = Struct(">" + code).unpack
    if words_reversed:

        def dec(r: Sequence[int]) -> Any:
            return unpack(pack(*r[::-1]))[0]

    else:

        def dec(r: Sequence[int]) -> Any:
            return unpack(pack(*r))[0]

    return dec


def decoder(dtype: str, order: str = "ABCD", bit: int | None = None, count: int | None = None) -> Decoder:
    """A callable turning exactly `register_count(dtype, count)` registers into a value."""
    n = register_count(dtype, count)
    words_reversed, bytes_swapped = _order(order)
    if dtype == "string":
        return _decode_string(n)
    if dtype == "bit":
        return _decode_bit(_check_bit(bit))
    if dtype == "int16":
        return _decode_int16
    if dtype == "uint16":
        return _decode_uint16
    if dtype == "float16":
        return _decode_float16()
    return _decode_wide(n, _NUMERIC[dtype][1], words_reversed, bytes_swapped)


def struct_code(dtype: str, order: str = "ABCD") -> str | None:
    """The `struct` code reading this value straight from big-endian register bytes.

    None when the value needs rearranging first (a swapped order) or is not a
    plain number (bit, string). Lets a caller decode a whole response with one
    precompiled Struct.
    """
    if dtype not in _NUMERIC:
        return None
    n, code = _NUMERIC[dtype]
    if n > 1 and _order(order) != (False, False):
        return None
    return code


def decode(registers: Sequence[int], dtype: str, order: str = "ABCD", bit: int | None = None,
           count: int | None = None) -> Any:
    """Decode one value; strings take all the registers given unless `count` says otherwise."""
    if dtype == "string" and count is None:
        count = len(registers)
    n = register_count(dtype, count)
    if len(registers) != n:
        raise ValueError(f"{dtype} takes {n} registers, got {len(registers)}")
    try:
        return decoder(dtype, order, bit, n)(registers)
    except StructError as exc:
        raise ValueError(f"registers {list(registers)!r} are not 16-bit values: {exc}") from None


# --- encoding ---------------------------------------------------------------------


def _as_int(value: Any, dtype: str) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"{value!r} is not an integer, as {dtype} needs")


def _as_float(value: Any, dtype: str) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    raise ValueError(f"{value!r} is not a number, as {dtype} needs")


def _encode_int(n: int, code: str, dtype: str, words_reversed: bool, bytes_swapped: bool) -> Encoder:
    lo, hi = _INT_RANGE[dtype]
    pack = Struct(">" + code).pack
    unpack = Struct(("<" if bytes_swapped else ">") + f"{n}H").unpack

    def enc(value: Any) -> list[int]:
        v = _as_int(value, dtype)
        if not lo <= v <= hi:
            raise ValueError(f"{value!r} is out of range for {dtype} ({lo}..{hi})")
        regs = list(unpack(pack(v)))
        return regs[::-1] if words_reversed else regs

    return enc


def _encode_float(n: int, code: str, dtype: str, words_reversed: bool, bytes_swapped: bool) -> Encoder:
    pack = Struct(">" + code).pack
    unpack = Struct(("<" if bytes_swapped else ">") + f"{n}H").unpack

    def enc(value: Any) -> list[int]:
        v = _as_float(value, dtype)
        try:
            raw = pack(v)
        except (OverflowError, StructError):
            raise ValueError(f"{value!r} is out of range for {dtype}") from None
        regs = list(unpack(raw))
        return regs[::-1] if words_reversed else regs

    return enc


def _encode_string(n: int) -> Encoder:
    size = 2 * n
    unpack = Struct(f">{n}H").unpack

    def enc(value: Any) -> list[int]:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{value!r} is not ASCII") from None
        if len(raw) > size:
            raise ValueError(f"{value!r} is {len(raw)} characters, longer than {n} registers hold ({size})")
        return list(unpack(raw.ljust(size, b"\0")))

    return enc


def _encode_bit(bit: int) -> Encoder:
    mask = 1 << bit

    def enc(value: Any) -> list[int]:
        if value in (0, 1):  # True/False included
            return [mask if value else 0]
        raise ValueError(f"{value!r} is not a bit value (true/false or 0/1)")

    return enc


def encoder(dtype: str, order: str = "ABCD", count: int | None = None, bit: int | None = None) -> Encoder:
    """A callable turning a value into registers; raises ValueError when it does not fit.

    For "bit" the result is the register with only that bit set (or 0): a mask
    for a read-modify-write, not a value to write over the whole register.
    """
    n = register_count(dtype, count)
    words_reversed, bytes_swapped = _order(order)
    if dtype == "string":
        return _encode_string(n)
    if dtype == "bit":
        return _encode_bit(_check_bit(bit))
    code = _NUMERIC[dtype][1]
    if n == 1:  # the order is for multi-register values only
        words_reversed = bytes_swapped = False
    if dtype.startswith("float"):
        return _encode_float(n, code, dtype, words_reversed, bytes_swapped)
    return _encode_int(n, code, dtype, words_reversed, bytes_swapped)


def encode(value: Any, dtype: str, order: str = "ABCD", count: int | None = None, bit: int | None = None) -> list[int]:
    """Encode one value into registers; raises ValueError when it does not fit."""
    return encoder(dtype, order, count, bit)(value)
