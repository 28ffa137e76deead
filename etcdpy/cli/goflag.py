"""Command-line parsing with the rules of Go's ``flag`` package, which etcd uses.

argparse cannot take these rules: one or two dashes mean the same (``-name x`` is
``--name x``), booleans take a value only with ``=`` (``--pre-vote=false``; ``--pre-vote false``
leaves ``false`` as a stray argument), a non-boolean flag takes the next argument even when it
starts with a dash, and parsing stops at the first argument that is not a flag, or after ``--``.

The messages are Go's (``flag provided but not defined: -nmae``), plus a suggestion of the
nearest known flag.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from etcdpy.config import ConfigError, go_quote, parse_duration

__all__ = [
    "FlagError",
    "HelpRequested",
    "ParsedArgs",
    "Spec",
    "parse_bool",
    "parse_go_args",
    "parse_go_duration",
    "parse_int",
    "parse_uint",
    "suggest",
]

Parser = Callable[[str], Any]


class FlagError(Exception):
    """The command line is malformed (etcd exits with code 2 for these)."""


class HelpRequested(Exception):
    """``-h`` or ``--help`` was given."""


@dataclass(frozen=True, slots=True)
class Spec:
    """What the parser needs to know about one flag."""

    name: str
    parse: Parser
    is_bool: bool = False


@dataclass(slots=True)
class ParsedArgs:
    """The flags in the order given (a flag given twice appears twice), and what was left."""

    values: list[tuple[str, Any]]
    rest: list[str]


# -- value parsers with Go's semantics; they raise ValueError with Go's error text -----------

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("parse error")


_GO_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|0[0-7]*|[1-9][0-9]*)")


def _go_int(text: str) -> int:
    # Go's base-0 integer syntax: 0x.., 0o.., 0b.., and a leading 0 means octal.
    if not _GO_INT.fullmatch(text):
        raise ValueError("parse error")
    sign = -1 if text.startswith("-") else 1
    digits = text.lstrip("+-")
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "01234567":
        return sign * int(digits[1:], 8)
    try:
        return sign * int(digits, 0)
    except ValueError:
        raise ValueError("parse error") from None


def parse_uint(bits: int = 64) -> Parser:
    """Go's ``flag.UintVar``/``Uint64Var``: base prefixes allowed, no sign."""

    def parse(text: str) -> int:
        if text.startswith(("-", "+")):
            raise ValueError("parse error")
        value = _go_int(text)
        if value >= 1 << bits:
            raise ValueError("value out of range")
        return value

    return parse


def parse_int(bits: int = 64) -> Parser:
    """Go's ``flag.IntVar``/``Int64Var``."""

    def parse(text: str) -> int:
        value = _go_int(text)
        if not -(1 << (bits - 1)) <= value < 1 << (bits - 1):
            raise ValueError("value out of range")
        return value

    return parse


def parse_go_duration(text: str) -> float:
    """Go's ``flag.DurationVar``, in seconds."""
    try:
        return parse_duration(text)
    except ConfigError:
        raise ValueError("parse error") from None


# -- suggestions ------------------------------------------------------------------------------


def suggest(name: str, known: Iterable[str]) -> str | None:
    """The known flag name closest to ``name``, if one is close enough."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


# -- the parser -------------------------------------------------------------------------------


def parse_go_args(args: Sequence[str], specs: Mapping[str, Spec]) -> ParsedArgs:
    """Parse ``args`` as Go's ``FlagSet.Parse`` does; raise ``FlagError`` on bad input."""
    values: list[tuple[str, Any]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if len(arg) < 2 or arg[0] != "-":
            break  # the first non-flag argument ends the flags
        dashes = 2 if arg[1] == "-" else 1
        if arg == "--":
            i += 1
            break
        name = arg[dashes:]
        if not name or name[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        i += 1
        name, has_value, value = name.partition("=")
        spec = specs.get(name)
        if spec is None:
            if name in ("h", "help"):
                raise HelpRequested
            message = f"flag provided but not defined: -{name}"
            near = suggest(name, specs)
            if near is not None:
                message += f"\n(did you mean --{near}?)"
            raise FlagError(message)
        if spec.is_bool:
            if not has_value:
                value = "true"
            try:
                values.append((name, spec.parse(value)))
            except ValueError as err:
                raise FlagError(
                    f"invalid boolean value {go_quote(value)} for -{name}: {err}"
                ) from None
            continue
        if not has_value:
            if i >= len(args):
                raise FlagError(f"flag needs an argument: -{name}")
            value = args[i]
            i += 1
        try:
            values.append((name, spec.parse(value)))
        except ValueError as err:
            raise FlagError(f"invalid value {go_quote(value)} for flag -{name}: {err}") from None
    return ParsedArgs(values, list(args[i:]))
