"""Reads a bbolt file: the meta pages, then the B+trees of buckets, page by page from an mmap.

The layout (bbolt's page.go, db.go, bucket.go; all integers little-endian, as bbolt writes them
on the machines etcd runs on):

- a page starts with a 16-byte header: id u64, flags u16, count u16, overflow u32. A page spans
  ``1 + overflow`` pages of ``page_size`` bytes. Flags: 0x01 branch, 0x02 leaf, 0x04 meta,
  0x10 freelist.
- pages 0 and 1 are the two metas: after the header, magic u32 (0xED0CDAED), version u32 (2),
  page size u32, flags u32, the root bucket (root pgid u64, sequence u64), freelist pgid u64,
  pgid u64 (the high-water mark: the pages in use are below it), txid u64, checksum u64 (FNV-64a
  of the 56 bytes before it; 0 means unchecked). bbolt takes the valid meta with the highest txid.
- a branch page holds ``count`` 16-byte elements (pos u32, ksize u32, pgid u64); a leaf page
  ``count`` 16-byte elements (flags u32, pos u32, ksize u32, vsize u32). ``pos`` counts from the
  element itself; a leaf's value follows its key. Leaf flag 0x01 marks a nested bucket.
- a bucket's value is its header (root pgid u64, sequence u64); root 0 means an inline bucket:
  its one leaf page follows the header inside the value.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

MAGIC = 0xED0CDAED
VERSION = 2
PAGE_HEADER_SIZE = 16
ELEMENT_SIZE = 16  # a branch element and a leaf element are both 16 bytes
BUCKET_HEADER_SIZE = 16
META_SIZE = 64  # the meta struct; its checksum covers the first 56 bytes
BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10
BUCKET_LEAF_FLAG = 0x01
SHA256_SIZE = 32
NO_FREELIST = 0xFFFFFFFFFFFFFFFF  # bbolt's pgidNoFreelist: the freelist is not written

_PAGE_HEADER = struct.Struct("<QHHI")
_META = struct.Struct("<IIIIQQQQQQ")
_BRANCH_ELEMENT = struct.Struct("<IIQ")
_LEAF_ELEMENT = struct.Struct("<IIII")
_BUCKET_HEADER = struct.Struct("<QQ")
_MIN_PAGE_SIZE = 512
_MAX_PAGE_SIZE = 1 << 24
_MAX_DEPTH = 64  # a B+tree of 2^64 pages is shallower than this
_PAGE_TYPES = {
    BRANCH_PAGE: "branch",
    LEAF_PAGE: "leaf",
    META_PAGE: "meta",
    FREELIST_PAGE: "freelist",
}


class BoltError(ValueError):
    """The file is not a bbolt file, or not a sound one; the message says what is wrong."""


def fnv64a(data: bytes) -> int:
    """FNV-1a, 64 bits (Go's hash/fnv New64a)."""
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _page_type(flags: int) -> str:
    return _PAGE_TYPES.get(flags, f"unknown<{flags:02x}>")


@dataclass(frozen=True)
class Meta:
    """One meta page, as read."""

    page: int
    magic: int
    version: int
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int
    checksum: int
    computed: int  # FNV-64a of the bytes before the checksum

    @classmethod
    def parse(cls, page: int, raw: bytes) -> Meta:
        fields = _META.unpack_from(raw, PAGE_HEADER_SIZE)
        computed = fnv64a(raw[PAGE_HEADER_SIZE : PAGE_HEADER_SIZE + META_SIZE - 8])
        magic, version, page_size, flags, root, sequence, freelist, pgid, txid, checksum = fields
        return cls(
            page,
            magic,
            version,
            page_size,
            flags,
            root,
            sequence,
            freelist,
            pgid,
            txid,
            checksum,
            computed,
        )

    def problem(self) -> str | None:
        """Why bbolt's meta.validate() would reject it (None: valid)."""
        if self.magic != MAGIC:
            return f"meta page {self.page}: bad magic {self.magic:#010x} (want {MAGIC:#010x})"
        if self.version != VERSION:
            return f"meta page {self.page}: version {self.version} (want {VERSION})"
        if self.checksum != 0 and self.checksum != self.computed:
            return (
                f"meta page {self.page}: checksum {self.checksum:#018x} "
                f"!= FNV-64a {self.computed:#018x}"
            )
        ps = self.page_size
        if ps < _MIN_PAGE_SIZE or ps > _MAX_PAGE_SIZE or ps & (ps - 1):
            return f"meta page {self.page}: page size {ps} is not a power of two in range"
        return None


class _Page:
    """A page's bytes: a slice of the mmap (a real page) or of a bucket value (inline)."""

    __slots__ = ("buf", "count", "end", "flags", "id", "start", "where")

    def __init__(self, buf: bytes | mmap.mmap, start: int, end: int, where: str) -> None:
        if end - start < PAGE_HEADER_SIZE:
            raise BoltError(f"{where}: {end - start} bytes, shorter than a page header")
        self.buf = buf
        self.start = start
        self.end = end
        self.where = where
        header: tuple[int, int, int, int] = _PAGE_HEADER.unpack_from(buf, start)
        self.id, self.flags, self.count, _overflow = header
        if PAGE_HEADER_SIZE + self.count * ELEMENT_SIZE > end - start:
            raise BoltError(f"{where}: {self.count} elements do not fit in the page")

    def _slice(self, at: int, size: int, what: str, index: int) -> bytes:
        if at < self.start or at + size > self.end:
            raise BoltError(f"{self.where}: element {index}'s {what} runs past the page")
        return bytes(self.buf[at : at + size])

    def branch_elements(self) -> Iterator[tuple[bytes, int]]:
        for i in range(self.count):
            at = self.start + PAGE_HEADER_SIZE + i * ELEMENT_SIZE
            pos, ksize, child = _BRANCH_ELEMENT.unpack_from(self.buf, at)
            yield self._slice(at + pos, ksize, "key", i), child

    def leaf_elements(self) -> Iterator[tuple[int, bytes, bytes]]:
        for i in range(self.count):
            at = self.start + PAGE_HEADER_SIZE + i * ELEMENT_SIZE
            flags, pos, ksize, vsize = _LEAF_ELEMENT.unpack_from(self.buf, at)
            key = self._slice(at + pos, ksize, "key", i)
            value = self._slice(at + pos + ksize, vsize, "value", i)
            yield flags, key, value


class Bucket:
    """A bucket: a B+tree rooted at a page, or an inline leaf inside its parent's value."""

    def __init__(
        self, db: BoltFile, name: bytes, value: bytes, ancestors: frozenset[int] = frozenset()
    ) -> None:
        if len(value) < BUCKET_HEADER_SIZE:
            raise BoltError(f"bucket {name!r}: value of {len(value)} bytes, not a bucket header")
        self._db = db
        self.name = name
        root, sequence = _BUCKET_HEADER.unpack_from(value, 0)
        self.root: int = root  # 0: an inline bucket
        self.sequence: int = sequence
        if self.root != 0 and self.root in ancestors:
            raise BoltError(f"bucket {name!r}: root page {self.root} is an ancestor's (a loop)")
        # the root pages of the enclosing buckets: a nested bucket may not point back at one
        self._ancestors = ancestors | {self.root} if self.root else ancestors
        self._inline = value[BUCKET_HEADER_SIZE:] if self.root == 0 else None

    @property
    def inline(self) -> bool:
        return self._inline is not None

    def entries(self) -> Iterator[tuple[bytes, bytes, bool]]:
        """(key, value, is_bucket) for every entry, in key order."""
        if self._inline is not None:
            walk = self._leaf(self._inline_page())
        else:
            walk = self._walk(self.root, set(), 0)
        previous: bytes | None = None
        for key, value, is_bucket in walk:
            if previous is not None and key <= previous:
                raise BoltError(f"bucket {self.name!r}: key {key!r} out of order")
            previous = key
            yield key, value, is_bucket

    def _loop(self, pgid: int) -> BoltError:
        return BoltError(f"bucket {self.name!r}: page {pgid} reached twice (a loop or shared page)")

    def _inline_page(self) -> _Page:
        assert self._inline is not None
        page = _Page(self._inline, 0, len(self._inline), f"inline bucket {self.name!r}")
        if page.flags != LEAF_PAGE:
            raise BoltError(
                f"inline bucket {self.name!r}: a {_page_type(page.flags)} page, want leaf"
            )
        return page

    def _tree_page(self, pgid: int) -> _Page:
        page = self._db.page(pgid)
        if page.flags not in (LEAF_PAGE, BRANCH_PAGE):
            raise BoltError(
                f"bucket {self.name!r}: page {pgid} is a {_page_type(page.flags)} page,"
                " want branch or leaf"
            )
        return page

    def _leaf(self, page: _Page) -> Iterator[tuple[bytes, bytes, bool]]:
        for flags, key, value in page.leaf_elements():
            yield key, value, bool(flags & BUCKET_LEAF_FLAG)

    def _walk(self, pgid: int, seen: set[int], depth: int) -> Iterator[tuple[bytes, bytes, bool]]:
        if pgid in seen:
            raise self._loop(pgid)
        if depth > _MAX_DEPTH:
            raise BoltError(f"bucket {self.name!r}: tree deeper than {_MAX_DEPTH} pages")
        seen.add(pgid)
        page = self._tree_page(pgid)
        if page.flags == LEAF_PAGE:
            yield from self._leaf(page)
        else:
            for _key, child in list(page.branch_elements()):
                yield from self._walk(child, seen, depth + 1)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) in key order; nested buckets' entries are skipped (see ``buckets``)."""
        for key, value, is_bucket in self.entries():
            if not is_bucket:
                yield key, value

    def buckets(self) -> list[bytes]:
        """The names of the nested buckets."""
        return [key for key, _value, is_bucket in self.entries() if is_bucket]

    def find(self, key: bytes) -> tuple[bytes, bool] | None:
        """(value, is_bucket) of ``key``, by one descent of the tree as bbolt's cursor seeks:
        in a branch, the last element whose key is <= ``key``. None: no such key."""
        if self._inline is not None:
            leaf = self._inline_page()
        else:
            pgid, seen = self.root, set[int]()
            while True:
                if pgid in seen or len(seen) > _MAX_DEPTH:
                    raise self._loop(pgid)
                seen.add(pgid)
                page = self._tree_page(pgid)
                if page.flags == LEAF_PAGE:
                    leaf = page
                    break
                child = None
                for branch_key, branch_child in page.branch_elements():
                    if child is not None and branch_key > key:
                        break
                    child = branch_child
                if child is None:
                    raise BoltError(f"bucket {self.name!r}: branch page {pgid} is empty")
                pgid = child
        for flags, k, value in leaf.leaf_elements():
            if k == key:
                return value, bool(flags & BUCKET_LEAF_FLAG)
        return None

    def bucket(self, name: bytes) -> Bucket:
        """The nested bucket ``name``; KeyError when there is none."""
        found = self.find(name)
        if found is None or not found[1]:
            raise KeyError(name)
        return Bucket(self._db, name, found[0], self._ancestors)

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (None: no such key, or it names a nested bucket)."""
        found = self.find(key)
        return None if found is None or found[1] else found[0]


class BoltFile:
    """An open bbolt file, read through a read-only mmap. Use ``BoltFile.open(path)``."""

    def __init__(self, path: Path, file_size: int, data: mmap.mmap, meta: Meta) -> None:
        self.path = path
        self.file_size = file_size
        self._data = data
        self.meta = meta
        self.page_size = meta.page_size
        self.txid = meta.txid
        # The database's size, as bbolt's Tx.Size(): the pages below the high-water mark.
        self.size = meta.pgid * meta.page_size
        self.trailing = file_size - self.size  # bytes after the last page (a sha256, ...)
        self.root = Bucket(self, b"", _BUCKET_HEADER.pack(meta.root, meta.sequence))

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> BoltFile:
        path = Path(path)
        with path.open("rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            if file_size < PAGE_HEADER_SIZE + META_SIZE:
                raise BoltError(f"{path}: not a bbolt file ({file_size} bytes, no meta page)")
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            meta = cls._pick_meta(path, data, file_size)
            if meta.pgid * meta.page_size > file_size:
                raise BoltError(
                    f"{path}: truncated: the meta says {meta.pgid} pages of {meta.page_size}"
                    f" bytes ({meta.pgid * meta.page_size}), the file has {file_size} bytes"
                )
            if meta.pgid < 4:
                raise BoltError(f"{path}: high-water mark {meta.pgid} is below 4 pages")
            return cls(path, file_size, data, meta)
        except BaseException:
            data.close()
            raise

    @staticmethod
    def _pick_meta(path: Path, data: mmap.mmap, file_size: int) -> Meta:
        meta0 = Meta.parse(0, data[: PAGE_HEADER_SIZE + META_SIZE])
        # bbolt takes the page size from meta 0; when meta 0 is invalid, the OS page size.
        sizes = [meta0.page_size] if meta0.problem() is None else []
        metas = [meta0]
        meta1: Meta | None = None
        for size in dict.fromkeys([*sizes, mmap.PAGESIZE, 4096]):
            if file_size < size + PAGE_HEADER_SIZE + META_SIZE:
                continue
            candidate = Meta.parse(1, data[size : size + PAGE_HEADER_SIZE + META_SIZE])
            if candidate.problem() is None and candidate.page_size == size:
                meta1 = candidate
                break
            meta1 = meta1 or candidate  # the first one read, for the error message
        if meta1 is not None:
            metas.append(meta1)
        valid = [m for m in metas if m.problem() is None]
        if valid:
            return max(valid, key=lambda m: m.txid)
        if all(m.magic != MAGIC for m in metas):
            raise BoltError(f"{path}: not a bbolt file (no meta page has magic {MAGIC:#010x})")
        problems = "; ".join(p for m in metas if (p := m.problem()) is not None)
        raise BoltError(f"{path}: both meta pages are invalid: {problems}")

    def page(self, pgid: int) -> _Page:
        """The page ``pgid`` with its overflow pages; checks it is in use and in the file."""
        where = f"{self.path}: page {pgid}"
        if pgid < 2 or pgid >= self.meta.pgid:
            raise BoltError(f"{where}: out of range (pages in use: 2..{self.meta.pgid - 1})")
        start = pgid * self.page_size
        if start + PAGE_HEADER_SIZE > self.file_size:
            raise BoltError(f"{where}: past the end of the file (truncated)")
        header_id, _flags, _count, overflow = _PAGE_HEADER.unpack_from(self._data, start)
        if header_id != pgid:
            raise BoltError(f"{where}: the page header says page {header_id}")
        end = start + (1 + overflow) * self.page_size
        if pgid + 1 + overflow > self.meta.pgid or end > self.file_size:
            raise BoltError(f"{where}: {overflow} overflow pages run past the end (truncated)")
        return _Page(self._data, start, end, where)

    def freelist(self) -> list[int] | None:
        """The free page ids of the freelist page, sorted (freelist.go's read); None when the
        file has none (``NO_FREELIST``: bbolt's NoFreelistSync, which etcd 3.4 sets)."""
        if self.meta.freelist == NO_FREELIST:
            return None
        page = self.page(self.meta.freelist)
        if page.flags != FREELIST_PAGE:
            raise BoltError(f"{page.where}: a {_page_type(page.flags)} page, want freelist")
        first, count = 0, page.count
        if count == 0xFFFF:  # the count overflows u16: it is the first u64
            first, count = 1, struct.unpack_from("<Q", self._data, page.start + 16)[0]
        start = page.start + PAGE_HEADER_SIZE + first * 8
        if start + count * 8 > page.end:
            raise BoltError(f"{page.where}: {count} free page ids do not fit in the page")
        return sorted(struct.unpack_from(f"<{count}Q", self._data, start))

    def buckets(self) -> list[bytes]:
        """The top-level bucket names, in key order."""
        return self.root.buckets()

    def bucket(self, name: bytes) -> Bucket:
        """The top-level bucket ``name``; KeyError when there is none."""
        return self.root.bucket(name)

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of a top-level bucket in key order (nested buckets skipped)."""
        return self.bucket(bucket).items()

    def close(self) -> None:
        self._data.close()

    def __enter__(self) -> BoltFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def has_sha256_trailer(size: int) -> bool:
    """etcd's snapshot.hasChecksum: a file whose size is 32 past a multiple of 512 ends in the
    sha256 of what precedes it (the Maintenance.Snapshot stream appends it; etcdctl snapshot
    save keeps it)."""
    return size % 512 == SHA256_SIZE


def verify_sha256_trailer(path: str | os.PathLike[str]) -> bool | None:
    """None: no trailer; True: the trailer is the sha256 of the bytes before it; False: not."""
    path = Path(path)
    size = path.stat().st_size
    if not has_sha256_trailer(size):
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        remaining = size - SHA256_SIZE
        while remaining:
            chunk = f.read(min(remaining, 1 << 20))
            if not chunk:
                return False
            digest.update(chunk)
            remaining -= len(chunk)
        return f.read(SHA256_SIZE) == digest.digest()


def strip_sha256_trailer(path: str | os.PathLike[str]) -> bool:
    """Truncates the sha256 trailer off the file in place, as etcd's snapshot restore does,
    after checking it (BoltError on a mismatch). False when there was none."""
    checked = verify_sha256_trailer(path)
    if checked is None:
        return False
    if not checked:
        raise BoltError(f"{path}: the sha256 trailer does not match the file")
    os.truncate(path, Path(path).stat().st_size - SHA256_SIZE)
    return True
