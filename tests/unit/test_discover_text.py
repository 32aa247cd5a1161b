"""Texts found in a draft from register values alone: where they start, where they end, and what is not one."""

from __future__ import annotations

from gateway.mapping.discover import draft_from_registers
from interface_spec import load_spec

SPEC = load_spec()


def registers(text: bytes) -> list[int]:
    text += b"\0" * (len(text) % 2)
    return [int.from_bytes(text[i:i + 2], "big") for i in range(0, len(text), 2)]


def unmatched(values: list[int], start: int = 0) -> list[str]:
    first = {("holding", start + i): v for i, v in enumerate(values)}
    return draft_from_registers(SPEC, "winder", 1, [first, first]).unmatched


def test_a_text_among_numbers_is_listed_at_its_address_with_its_padding_left_out():
    values = [7, 8] + registers(b"SN-4711\0\0\0") + [0, 0, 1234]
    lines = unmatched(values, start=100)
    assert "holding 102-105: text 'SN-4711' (dtype string, count 4 or more)" in lines
    assert any(line.startswith("holding 109: uint16 1234") for line in lines)


def test_a_nul_ends_the_text_and_what_follows_it_is_not_part_of_it():
    lines = unmatched(registers(b"ABCDEF\0G") + [0x0041])
    assert "holding 0-2: text 'ABCDEF' (dtype string, count 3 or more)" in lines
    assert any(line.startswith("holding 3: uint16 71,") for line in lines), lines  # NUL, "G": a number


def test_two_characters_are_no_text():
    assert not any("text" in line for line in unmatched(registers(b"AB") + [0, 0, 0, 9]))


def test_a_thousand_registers_of_text_and_numbers_are_read_in_one_pass():
    # Before, each start address tried every length of the run after it: a thousand registers took a minute.
    values = (registers(b"BATCH-0001") + [0] * 3 + [513, 1027]) * 80
    lines = unmatched(values)
    texts = [line for line in lines if "text 'BATCH-0001'" in line]
    assert len(texts) == 80
    assert texts[1].startswith("holding 10-14:")
