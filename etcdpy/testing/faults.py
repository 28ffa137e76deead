"""Test-only fault injection into real member processes.

Tests switch these on through environment knobs (etcdpy.config.EnvKnobs), because the member
they break is another process. Production modules know them only through a seam that is None
there: ``PeerFaultFile`` is a ``etcdpy.peer.transport.PeerFaults`` and ``LinkDelay`` an
``etcdpy.corelink.client.InboundDelay``. Only the entry points (etcdpy.cli.run,
etcdpy.cli.frontend_run) import this module, and only when a knob asks for a fault.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from etcdpy.config import EnvKnobs

__all__ = ["LinkDelay", "PeerFaultFile", "link_delay", "peer_faults"]


class PeerFaultFile:
    """A network partition a test edits while the member runs: the file lists, one per line in
    hex, the members this one cannot talk to (``ETCDPY_PEER_FAULTS_FILE``). Re-read often."""

    POLL_SECONDS: Final = 0.05

    def __init__(self, path: str) -> None:
        self.path = path
        self.blocked: frozenset[int] = frozenset()
        self._task: asyncio.Task[None] | None = None

    def read(self) -> None:
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            text = ""
        self.blocked = frozenset(int(line, 16) for line in text.split() if line)

    async def watch(self) -> None:
        while True:
            self.read()
            await asyncio.sleep(self.POLL_SECONDS)

    def start(self) -> None:
        """Reads the file now (the partition holds from the first message), then keeps
        re-reading it in a task."""
        self.read()
        self._task = asyncio.create_task(self.watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


@dataclass(frozen=True, slots=True)
class LinkDelay:
    """A slow core link: a front-end handles the core's records ``seconds`` late, in order
    (``ETCDPY_CORE_LINK_DELAY_MS``)."""

    seconds: float

    def defer(self, handle: Callable[[bytes], None], data: bytes) -> None:
        # call_later with one delay keeps the order in which the records arrived.
        asyncio.get_running_loop().call_later(self.seconds, handle, data)


def peer_faults(knobs: EnvKnobs) -> PeerFaultFile | None:
    """The partition file the knobs name, if any."""
    return PeerFaultFile(knobs.peer_faults_file) if knobs.peer_faults_file else None


def link_delay(knobs: EnvKnobs, slot: int) -> LinkDelay | None:
    """The delay of front-end ``slot``'s core link, if the knobs give it one."""
    if not knobs.core_link_delay_ms:
        return None
    if knobs.core_link_delay_slot is not None and knobs.core_link_delay_slot != slot:
        return None
    return LinkDelay(knobs.core_link_delay_ms / 1000.0)
