"""Test-only fault injection (etcdpy.testing.faults): the peer partition file and the slow core
link, built from the environment knobs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from etcdpy.config import EnvKnobs
from etcdpy.testing.faults import LinkDelay, PeerFaultFile, link_delay, peer_faults


def test_fault_file_blocks_listed_members(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    faults = PeerFaultFile(str(path))
    faults.read()
    assert faults.blocked == frozenset()
    path.write_text("a\nff\n")
    faults.read()
    assert faults.blocked == frozenset({0xA, 0xFF})


def test_fault_file_is_re_read_while_it_runs(tmp_path: Path) -> None:
    path = tmp_path / "faults"
    path.write_text("a\n")
    faults = PeerFaultFile(str(path))

    async def run() -> None:
        faults.start()
        assert faults.blocked == frozenset({0xA})  # at once, before the first poll
        path.write_text("")
        await asyncio.sleep(PeerFaultFile.POLL_SECONDS * 4)
        assert faults.blocked == frozenset()
        faults.stop()

    asyncio.run(run())


def test_no_knob_no_fault() -> None:
    assert peer_faults(EnvKnobs()) is None
    assert link_delay(EnvKnobs(), 0) is None


def test_link_delay_for_every_slot_or_one() -> None:
    every = EnvKnobs(core_link_delay_ms=40.0)
    assert link_delay(every, 0) == link_delay(every, 1) == LinkDelay(0.04)
    one = EnvKnobs(core_link_delay_ms=40.0, core_link_delay_slot=1)
    assert link_delay(one, 0) is None
    assert link_delay(one, 1) == LinkDelay(0.04)


def test_link_delay_keeps_the_order() -> None:
    seen: list[bytes] = []

    async def run() -> None:
        delay = LinkDelay(0.01)
        for data in (b"a", b"b", b"c"):
            delay.defer(seen.append, data)
        assert seen == []
        await asyncio.sleep(0.05)

    asyncio.run(run())
    assert seen == [b"a", b"b", b"c"]
