"""Values written the way etcd's Go tools write them, for output users compare with etcd's.

- ``humanize_bytes``: go-humanize's ``Bytes`` (SI units, one decimal below 10), as etcdctl's
  DB SIZE and ``snapshot status`` TOTAL SIZE columns: ``32768`` is ``33 kB``.
- ``go_duration``: Go's ``time.Duration.String`` (``1µs``, ``1.305484ms``, ``2.5s``), as etcd's
  logs and etcdctl's timings write durations.
- ``go_bytes``, ``go_path_error``: byte slices and file errors in etcdctl's error messages.
"""

from __future__ import annotations

import math

__all__ = ["go_bytes", "go_duration", "go_path_error", "humanize_bytes"]

_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB")


def humanize_bytes(size: int) -> str:
    """Sizes as etcdctl prints them (go-humanize ``Bytes``: SI units, ``20 kB``)."""
    if size < 10:
        return f"{size} B"
    exponent = min(math.floor(math.log(size, 1000)), len(_SIZE_UNITS) - 1)
    value = math.floor(size / 1000**exponent * 10 + 0.5) / 10
    unit = _SIZE_UNITS[exponent]
    return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"


def go_duration(seconds: float) -> str:
    """A duration as Go's ``time.Duration.String`` writes it (``1.305484ms``, ``2.5s``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    for unit, scale, digits in (("µs", 1_000, 3), ("ms", 1_000_000, 6)):
        if ns < scale * 1_000:
            whole, frac = divmod(ns, scale)
            text = f"{whole}.{frac:0{digits}d}".rstrip("0").rstrip(".")
            return f"{sign}{text}{unit}"
    # Go writes larger values as 1h2m3.5s; seconds alone is enough for what we time.
    whole, frac = divmod(ns, 1_000_000_000)
    text = f"{whole}.{frac:09d}".rstrip("0").rstrip(".")
    return f"{sign}{text}s"


def go_bytes(data: bytes) -> str:
    """A byte slice as Go's ``%v`` prints it: ``[55 159 244]``."""
    return "[" + " ".join(str(b) for b in data) + "]"


def go_path_error(op: str, err: OSError) -> str:
    """An OSError as Go's ``*os.PathError`` reads: ``open backup.db: no such file or directory``
    (Go's error strings are the C library's, starting in lower case)."""
    reason = err.strerror or str(err)
    reason = reason[:1].lower() + reason[1:]
    if err.filename is None:
        return reason
    return f"{op} {err.filename}: {reason}" if op else f"{err.filename}: {reason}"
