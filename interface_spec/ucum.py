"""A small syntax check for UCUM case-sensitive unit codes.

The spec's units are UCUM codes ("mg/cm2", "kW.h", "/min", "[ppm]"). This is
not a full UCUM implementation: it knows the grammar (products with ".",
quotients with "/", integer exponents, prefixes, brackets, annotations) and
the atoms a production line plausibly needs, which is enough to catch typos
such as "kWh", "°C" or "mm^2" before they reach a vendor.
"""

from __future__ import annotations

import re

# Prefixes (UCUM §2.2 table 1). "da" is the only two-letter decimal prefix.
PREFIXES: frozenset[str] = frozenset(
    "Y Z E P T G M k h da d c m u n p f a z y Ki Mi Gi Ti".split()
)

# Atoms that may take a prefix (UCUM "metric" units).
METRIC_ATOMS: frozenset[str] = frozenset(
    """m s g rad K C cd mol sr Hz N Pa J W A V F Ohm S Wb Cel T H lm lx Bq Gy Sv
    l L ar t bar u eV B Np B[V] B[mV] B[W] B[kW] bit By Bd""".split()
)

# Atoms that take no prefix.
PLAIN_ATOMS: frozenset[str] = frozenset(
    """min h d wk mo a mo_j a_j deg gon ' '' % [ppm] [ppb] [ppth] [pptr] [degF] [pH]
    [psi] [in_i] [ft_i] [lb_av] [rpm] [iU] [IU] mho""".split()
)

_EXPONENT = re.compile(r"^(.*?)([+-]?\d+)$")
_ANNOTATION = re.compile(r"\{[\x21-\x7a\x7c\x7e ]*\}")


def _split_top(term: str, seps: str) -> list[str] | None:
    """Split at separators outside parentheses and braces; None if brackets do not balance."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(term):
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth < 0:
                return None
        elif ch in seps and depth == 0:
            parts.append(term[start:i])
            parts.append(ch)
            start = i + 1
    if depth:
        return None
    parts.append(term[start:])
    return parts


def _simple_unit(text: str) -> bool:
    if text in PLAIN_ATOMS or text in METRIC_ATOMS:
        return True
    for size in (2, 1):
        if len(text) > size and text[:size] in PREFIXES and text[size:] in METRIC_ATOMS:
            return True
    return False


def _component(text: str) -> str | None:
    """Why `text` is not a UCUM component, or None."""
    if not text:
        return "empty unit term"
    # An annotation may follow a unit or stand alone ("{cells}" means 1).
    stripped = _ANNOTATION.sub("", text) if text.endswith("}") else text
    if stripped != text:
        if not stripped:
            return None
        text = stripped
    if "{" in text or "}" in text:
        return f"misplaced annotation in '{text}'"
    if text.isdigit():
        return None  # a factor, e.g. "10" in "10.L"
    if text.startswith("(") and text.endswith(")"):
        return _term(text[1:-1])
    m = _EXPONENT.match(text)
    base = m.group(1) if m and m.group(1) and not m.group(1).endswith(("[", "(")) else text
    if base and _simple_unit(base):
        return None
    if _simple_unit(text):
        return None
    return f"'{text}' is not a UCUM unit atom (with optional prefix and exponent)"


def _term(term: str) -> str | None:
    if not term:
        return "empty unit"
    parts = _split_top(term, "./")
    if parts is None:
        return "unbalanced brackets"
    # A leading "/" is UCUM's unary division: "/min" is "per minute".
    if parts[0] == "" and len(parts) > 1 and parts[1] == "/":
        parts = parts[2:]
    for i in range(0, len(parts), 2):
        problem = _component(parts[i])
        if problem:
            return problem
    return None


def ucum_problem(code: str) -> str | None:
    """Why `code` is not a well-formed UCUM case-sensitive code, or None if it is."""
    if not code:
        return "empty unit code"
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in code):
        return "UCUM codes are printable ASCII without spaces"
    if code == "1":
        return None
    return _term(code)


def is_ucum(code: str) -> bool:
    return ucum_problem(code) is None
