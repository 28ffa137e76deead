"""Numbers as etcdctl parses them (Go's strconv), with Go's error texts.

Python's ``int()`` is more lenient (``0x`` prefixes, underscores, spaces); a script that
etcdctl refuses should be refused here too, with the same words.
"""

from __future__ import annotations

import re

__all__ = ["parse_go_int", "parse_hex_id"]

_DIGITS = {10: re.compile(r"[+-]?[0-9]+"), 16: re.compile(r"[+-]?[0-9a-fA-F]+")}


def parse_go_int(text: str, base: int = 10, bits: int = 64, *, signed: bool = True) -> int:
    """``strconv.ParseInt`` (or ``ParseUint`` when not ``signed``); ValueError with Go's text."""
    func = "ParseInt" if signed else "ParseUint"
    if not _DIGITS[base].fullmatch(text) or (not signed and text[0] in "+-"):
        raise ValueError(f'strconv.{func}: parsing "{text}": invalid syntax')
    value = int(text, base)
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not low <= value <= high:
        raise ValueError(f'strconv.{func}: parsing "{text}": value out of range')
    return value


def parse_hex_id(text: str, *, signed: bool = True) -> int:
    """A lease ID (signed, as etcdctl's ``ParseInt(s, 16, 64)``) or a member ID (unsigned)."""
    return parse_go_int(text, 16, 64, signed=signed)
