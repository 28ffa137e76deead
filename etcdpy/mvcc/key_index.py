"""The history of one key: which revisions of the backend hold its versions.

A key lives through *generations*. A generation begins when the key is created (the first put
after it did not exist) and ends with the tombstone written by its deletion; the tombstone is
the last revision of the generation, and an empty generation is opened after it, ready for the
next creation. Only the last generation can be empty, and only it can be "live".

Worked example, key ``k``, written at revisions 2.0, 3.0, deleted at 4.0, created again at
6.0 and deleted at 7.0 (``t`` marks a tombstone)::

    generations:  [2.0, 3.0, 4.0t]  [6.0, 7.0t]  []
    get(1)  -> miss                 (not created yet)
    get(3)  -> mod 3.0, created 2.0, version 2
    get(5)  -> miss                 (between the generations: deleted)
    get(6)  -> mod 6.0, created 6.0, version 1
    get(9)  -> miss                 (deleted at 7)

Compaction at ``r`` drops every revision ``<= r`` except the newest one of them, which is kept
(reported in ``available``) because a read at ``r`` still needs it; a generation that keeps
only its tombstone is dropped entirely, and the tombstone is not kept::

    compact(3) -> [3.0, 4.0t]  [6.0, 7.0t]  []      available gets 3.0
    compact(4) -> [6.0, 7.0t]  []                   the first generation is gone
    compact(6) -> [6.0, 7.0t]  []                   available gets 6.0
    compact(7) -> []                                only the empty generation: the key can go

``keep(r)`` computes the same ``available`` set without changing anything (used by HashKV).
"""

from __future__ import annotations

from bisect import bisect_right

from etcdpy.mvcc.errors import RevisionNotFoundError
from etcdpy.mvcc.revision import MAX_MAIN, Revision

_ZERO = Revision(0, 0)


class Generation:
    """The revisions of one life of a key, from its creation to its tombstone."""

    __slots__ = ("created", "revs", "ver")

    def __init__(self, created: Revision = _ZERO, ver: int = 0, revs: list[Revision] | None = None):
        self.created = created
        self.ver = ver  # versions ever written in this generation (compaction keeps counting)
        self.revs: list[Revision] = revs if revs is not None else []

    def __repr__(self) -> str:
        return f"Generation(created={tuple(self.created)}, ver={self.ver}, revs={self.revs})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Generation):
            return NotImplemented
        return self.ver == other.ver and self.revs == other.revs

    __hash__ = None  # type: ignore[assignment]


def _last_at_or_before(revs: list[Revision], at_rev: int) -> int:
    """Index of the newest revision with ``main <= at_rev``, or -1."""
    return bisect_right(revs, (at_rev, MAX_MAIN)) - 1


class KeyIndex:
    """Generations of one key; see the module docstring for the rules."""

    __slots__ = ("generations", "key", "modified")

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.modified = _ZERO  # the newest revision ever added
        self.generations: list[Generation] = []

    def __repr__(self) -> str:
        return f"KeyIndex({self.key!r}, modified={tuple(self.modified)}, {self.generations})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyIndex):
            return NotImplemented
        return (
            self.key == other.key
            and self.modified == other.modified
            and self.generations == other.generations
        )

    __hash__ = None  # type: ignore[assignment]

    def is_empty(self) -> bool:
        """True when nothing but the empty generation is left (after compaction)."""
        gens = self.generations
        return len(gens) == 1 and not gens[0].revs

    def put(self, main: int, sub: int) -> None:
        """Record a new version of the key at ``(main, sub)``."""
        rev = Revision(main, sub)
        if rev <= self.modified:
            raise ValueError(f"put at {rev} is not after the last revision {self.modified}")
        gens = self.generations
        if not gens:
            gens.append(Generation())
        g = gens[-1]
        if not g.revs:
            g.created = rev
        g.revs.append(rev)
        g.ver += 1
        self.modified = rev

    def restore(self, created: Revision, modified: Revision, ver: int) -> None:
        """Start an index from the newest surviving version found in the backend."""
        if self.generations:
            raise ValueError("restore on a key index that already has generations")
        self.modified = modified
        self.generations.append(Generation(created, ver, [modified]))

    def tombstone(self, main: int, sub: int) -> None:
        """Close the live generation with a deletion at ``(main, sub)``."""
        if self.is_empty():
            raise ValueError(f"tombstone on the empty key index of {self.key!r}")
        if not self.generations[-1].revs:
            raise RevisionNotFoundError(self.key)
        self.put(main, sub)
        self.generations.append(Generation())

    def find(self, at_rev: int) -> tuple[Revision, Revision, int] | None:
        """(modified, created, version) of the key as of ``at_rev``, or None if absent."""
        gens = self.generations
        last = gens[-1]
        revs = last.revs
        # Fast path: the key is live and unchanged since at_rev.
        if revs and revs[-1].main <= at_rev:
            return revs[-1], last.created, last.ver
        g = self._find_generation(at_rev)
        if g is None:
            return None
        revs = g.revs
        i = _last_at_or_before(revs, at_rev)
        if i < 0:
            return None
        return revs[i], g.created, g.ver - (len(revs) - 1 - i)

    def is_live(self) -> bool:
        """The key exists at the latest revision (its last generation is open)."""
        gens = self.generations
        return bool(gens) and bool(gens[-1].revs)

    def live_at(self, at_rev: int) -> bool:
        """find(at_rev) is not None, without building its answer (for counting)."""
        revs = self.generations[-1].revs
        if revs and revs[-1].main <= at_rev:  # live, and unchanged since at_rev
            return True
        return self.find(at_rev) is not None

    def get(self, at_rev: int) -> tuple[Revision, Revision, int]:
        """Like find(), but a miss raises RevisionNotFoundError."""
        found = self.find(at_rev)
        if found is None:
            raise RevisionNotFoundError(self.key)
        return found

    def _find_generation(self, at_rev: int) -> Generation | None:
        gens = self.generations
        last = len(gens) - 1
        for i in range(last, -1, -1):
            g = gens[i]
            revs = g.revs
            if not revs:
                continue
            # A closed generation whose tombstone is at or before at_rev: deleted by then.
            if i != last and revs[-1].main <= at_rev:
                return None
            if revs[0].main <= at_rev:
                return g
        return None

    def since(self, rev: int) -> list[Revision]:
        """Revisions with ``main >= rev``, one per main revision (the highest sub wins)."""
        out: list[Revision] = []
        last_main = -1
        for g in self.generations:
            revs = g.revs
            if not revs or revs[-1].main < rev:
                continue
            for r in revs:
                if r.main < rev:
                    continue
                if r.main == last_main:
                    out[-1] = r  # a later change to the key in the same txn hides the earlier
                    continue
                out.append(r)
                last_main = r.main
        return out

    def compact(self, at_rev: int, available: set[Revision]) -> None:
        """Drop the revisions a read at ``at_rev`` or later cannot see.

        The revision that stays visible at ``at_rev`` is added to ``available``; the caller
        removes the key when is_empty() becomes true.
        """
        if self.is_empty():
            raise ValueError(f"compact on the empty key index of {self.key!r}")
        gi, ri = self._do_compact(at_rev, available)
        gens = self.generations
        g = gens[gi]
        if g.revs:
            if ri != -1:
                del g.revs[:ri]
            # Only the tombstone is left: the whole generation is history.
            if len(g.revs) == 1 and gi != len(gens) - 1:
                available.discard(g.revs[0])
                gi += 1
        del gens[:gi]

    def keep(self, at_rev: int, available: set[Revision]) -> None:
        """Add to ``available`` what compact(at_rev) would keep, changing nothing."""
        if self.is_empty():
            return
        gi, ri = self._do_compact(at_rev, available)
        gens = self.generations
        g = gens[gi]
        if g.revs and ri == len(g.revs) - 1 and gi != len(gens) - 1:
            available.discard(g.revs[ri])

    def _do_compact(self, at_rev: int, available: set[Revision]) -> tuple[int, int]:
        """(generation, revision) positions of the newest revision ``<= at_rev``."""
        gens = self.generations
        gi = 0
        # Skip generations that were closed at or before at_rev.
        while gi < len(gens) - 1 and gens[gi].revs[-1].main <= at_rev:
            gi += 1
        revs = gens[gi].revs
        ri = _last_at_or_before(revs, at_rev)
        if ri >= 0:
            available.add(revs[ri])
        return gi, ri
