import random

import pytest

from etcdpy.mvcc.revision import (
    MARKED_REV_BYTES_LEN,
    REV_BYTES_LEN,
    Revision,
    decode,
    encode,
    is_tombstone,
)


def test_layout_is_etcds() -> None:
    b = encode(0x0102030405060708, 0x1112131415161718)
    assert len(b) == REV_BYTES_LEN
    assert b == bytes.fromhex("0102030405060708") + b"_" + bytes.fromhex("1112131415161718")
    assert encode(5, 2, tombstone=True) == encode(5, 2) + b"t"
    assert len(encode(5, 2, tombstone=True)) == MARKED_REV_BYTES_LEN


def test_round_trip_and_tombstone_mark() -> None:
    for main, sub in [(0, 0), (1, 0), (2, 7), (2**63 - 1, 2**63 - 1)]:
        r = Revision(main, sub)
        assert decode(r.to_bytes()) == r
        assert decode(r.to_tombstone_bytes()) == r
        assert not is_tombstone(r.to_bytes())
        assert is_tombstone(r.to_tombstone_bytes())


def test_byte_order_equals_revision_order() -> None:
    rng = random.Random(7)
    revs = [Revision(rng.randrange(0, 2**40), rng.randrange(0, 300)) for _ in range(500)]
    revs += [Revision(255, 0), Revision(256, 0), Revision(1, 255), Revision(1, 256)]
    by_bytes = sorted(revs, key=lambda r: r.to_bytes())
    assert by_bytes == sorted(revs)


def test_tombstone_sorts_between_its_revision_and_the_next() -> None:
    assert encode(3, 1) < encode(3, 1, tombstone=True) < encode(3, 2) < encode(4, 0)


def test_revision_order_is_main_then_sub() -> None:
    assert Revision(1, 9) < Revision(2, 0)
    assert Revision(2, 0) < Revision(2, 1)
    assert max(Revision(3, 0), Revision(2, 5)) == Revision(3, 0)


def test_decode_rejects_short_bytes() -> None:
    with pytest.raises(Exception):  # noqa: B017 - struct.error
        decode(b"short")
