"""Raft snapshots on disk: one file per snapshot, ``<term>-<index>.snap`` (16 hex digits each),
holding a CRC-32 and the codec encoding of the Snapshot (metadata and data).

A file is written under a temporary name, fsynced and renamed, so it appears whole or not at
all. Loading goes from the newest file to the oldest and takes the first that is intact (and,
with ``load_newest_available``, known to the WAL); a broken file is renamed ``*.broken`` and
skipped, as etcd does.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

from etcdpy.raft.codec import CodecError, decode_snapshot, encode_snapshot
from etcdpy.raft.types import Snapshot
from etcdpy.wal.fsync_dir import fsync_dir

SNAP_SUFFIX: Final = ".snap"
_NAME_RE: Final = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}\.snap$")
_CRC: Final = struct.Struct("<I")


class SnapshotFileError(Exception):
    """A snapshot file is empty, truncated or fails its CRC."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


def read_snapshot_file(path: Path) -> Snapshot:
    """Read and check one snapshot file; raise ``SnapshotFileError`` if it is not intact."""
    raw = path.read_bytes()
    if len(raw) <= _CRC.size:
        raise SnapshotFileError(f"snap: empty snapshot {path.name}")
    (crc,) = _CRC.unpack_from(raw)
    body = raw[_CRC.size :]
    if zlib.crc32(body) != crc:
        raise SnapshotFileError(f"snap: crc mismatch in {path.name}")
    try:
        return decode_snapshot(body)
    except CodecError as exc:
        raise SnapshotFileError(f"snap: cannot decode {path.name}: {exc}") from None


class Snapshotter:
    def __init__(self, dir_path: Path) -> None:
        self.dir = Path(dir_path)

    def save(self, snap: Snapshot) -> Path | None:
        """Write ``snap`` durably (nothing for an empty snapshot); return its path."""
        if snap.is_empty():
            return None
        body = encode_snapshot(snap)
        path = self.dir / snap_name(snap.metadata.term, snap.metadata.index)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(_CRC.pack(zlib.crc32(body)) + body)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.rename(tmp, path)
        fsync_dir(self.dir)
        return path

    def load(self) -> Snapshot | None:
        """The newest intact snapshot, or None."""
        return self._load_matching(lambda _snap: True)

    def load_newest_available(self, markers: Iterable[tuple[int, int]]) -> Snapshot | None:
        """The newest intact snapshot whose (index, term) the WAL has a marker for, or None.

        A snapshot file written just before a crash, whose WAL marker never made it, is
        skipped: the WAL could not be opened at it."""
        known = set(markers)
        return self._load_matching(lambda snap: (snap.metadata.index, snap.metadata.term) in known)

    def _load_matching(self, accept: Callable[[Snapshot], bool]) -> Snapshot | None:
        for name in reversed(self.snap_names()):
            path = self.dir / name
            try:
                snap = read_snapshot_file(path)
            except SnapshotFileError:
                os.rename(path, path.with_name(name + ".broken"))
                continue
            if accept(snap):
                return snap
        return None

    def snap_names(self) -> list[str]:
        """The snapshot file names, oldest first (term, then index); drops stale temp files."""
        names = []
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.dir):
                if _NAME_RE.match(name):
                    names.append(name)
                elif name.endswith(SNAP_SUFFIX + ".tmp"):
                    (self.dir / name).unlink(missing_ok=True)
        names.sort()
        return names

    def purge(self, keep: int) -> list[Path]:
        """Delete the oldest snapshot files so that at most ``keep`` remain; return them."""
        names = self.snap_names()
        removed = [self.dir / name for name in names[: max(len(names) - keep, 0)]]
        for path in removed:
            path.unlink()
        if removed:
            fsync_dir(self.dir)
        return removed
