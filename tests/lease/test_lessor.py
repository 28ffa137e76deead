"""The Lessor with a fake clock, over a real LMDB backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy import errors
from etcdpy.lease.lessor import (
    EXPIRED_RETRY_SECONDS,
    FOREVER,
    LEASE_REVOKE_RATE,
    MAX_LEASE_TTL,
    Expired,
    Lessor,
    NotPrimary,
    min_lease_ttl,
)
from etcdpy.mvcc import Backend


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(str(tmp_path / "db"), map_size=64 * 1024**2)
    yield b
    b.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make(backend: Backend, clock: FakeClock, primary: bool = True) -> Lessor:
    lessor = Lessor(backend, clock, min_ttl=2, checkpoint_interval=5.0)
    lessor.restore({})
    if primary:
        lessor.promote()
    return lessor


def test_min_lease_ttl_is_one_and_a_half_election_timeouts_rounded_up() -> None:
    assert min_lease_ttl(10, 100) == 2  # etcd's defaults: 15 ticks of 100 ms -> 1.5 s -> 2
    assert min_lease_ttl(5, 1000) == 7  # (3*5)//2 = 7 whole ticks of 1 s
    assert min_lease_ttl(50, 100) == 8  # 75 ticks of 100 ms = 7.5 s -> 8


def test_grant_applies_the_minimum_ttl_and_refuses_bad_ids(
    backend: Backend, clock: FakeClock
) -> None:
    lessor = make(backend, clock)
    assert lessor.grant(1, 1).ttl == 2
    assert lessor.grant(2, 60).ttl == 60
    with pytest.raises(errors.LeaseExist):
        lessor.grant(1, 10)
    with pytest.raises(errors.LeaseNotFound):
        lessor.grant(0, 10)
    with pytest.raises(errors.LeaseTTLTooLarge):
        lessor.grant(3, MAX_LEASE_TTL + 1)
    assert lessor.grant(3, MAX_LEASE_TTL).ttl == MAX_LEASE_TTL


def test_a_lease_expires_at_its_deadline_not_before(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    clock.advance(9.9)
    assert lessor.find_expired(100) == []
    clock.advance(0.2)
    assert lessor.find_expired(100) == [7]
    # Offered once; again only after the retry interval if its revoke did not go through.
    assert lessor.find_expired(100) == []
    clock.advance(EXPIRED_RETRY_SECONDS)
    assert lessor.find_expired(100) == [7]
    lessor.revoke(7)
    clock.advance(EXPIRED_RETRY_SECONDS)
    assert lessor.find_expired(100) == []


def test_renew_moves_the_deadline(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    for _ in range(5):
        clock.advance(8)
        assert lessor.renew(7).ttl == 10
        assert lessor.find_expired(100) == []
    clock.advance(10.5)
    assert lessor.find_expired(100) == [7]


def test_renew_of_unknown_expired_or_on_a_follower(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    with pytest.raises(errors.LeaseNotFound):
        lessor.renew(42)
    lessor.grant(7, 5)
    clock.advance(5)
    with pytest.raises(Expired):
        lessor.renew(7)
    follower = make(backend, clock, primary=False)
    with pytest.raises(NotPrimary):
        follower.renew(7)


def test_a_follower_never_expires_leases(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock, primary=False)
    lessor.grant(7, 2)
    clock.advance(1e6)
    assert lessor.find_expired(100) == []
    assert lessor.lookup(7) is not None and lessor.lookup(7).expiry == FOREVER  # type: ignore[union-attr]
    with pytest.raises(NotPrimary):
        lessor.time_to_live(7)


def test_demote_then_promote_restarts_deadlines(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    clock.advance(6)
    lessor.demote()
    clock.advance(100)
    assert lessor.find_expired(100) == []
    lessor.promote(extend=1.0)
    assert lessor.time_to_live(7)[1] == 11  # no checkpoint on record: full TTL + extension


def test_find_expired_respects_the_limit(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    for i in range(1, 11):
        lessor.grant(i, 5)
    clock.advance(6)
    first = lessor.find_expired(4)
    second = lessor.find_expired(4)
    third = lessor.find_expired(4)
    assert len(first) == 4 and len(second) == 4 and len(third) == 2
    assert sorted(first + second + third) == list(range(1, 11))


def test_time_to_live_truncates_like_etcd(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    clock.advance(2.5)
    lease, remaining = lessor.time_to_live(7)
    assert (lease.ttl, remaining) == (10, 7)
    with pytest.raises(errors.LeaseNotFound):
        lessor.time_to_live(8)


def test_keys_attach_detach_and_revoke_returns_them_sorted(
    backend: Backend, clock: FakeClock
) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    for key in (b"c", b"a", b"b"):
        lessor.attach(7, key)
    lessor.detach(7, b"b")
    lessor.attach(99, b"x")  # unknown lease: nothing to attach to
    assert lessor.revoke(7) == [b"a", b"c"]
    assert 7 not in lessor
    with pytest.raises(errors.LeaseNotFound):
        lessor.revoke(7)


def test_checkpoints_survive_a_restart(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 60)
    lessor.grant(8, 60)
    lessor.attach(7, b"k")
    clock.advance(20.2)
    due = lessor.due_checkpoints()
    assert due == [(7, 40), (8, 40)]
    for lease_id, remaining in due:
        lessor.checkpoint(lease_id, remaining)
    assert lessor.due_checkpoints() == []  # the same values are on record already

    again = Lessor(backend, clock, min_ttl=2)
    again.restore({7: [b"k"], 12345: [b"orphan"]})
    assert len(again) == 2
    again.promote()
    lease, remaining = again.time_to_live(7)
    assert remaining == 40 and lease.ttl == 60 and lease.keys == {b"k"}


def test_renew_after_a_checkpoint_asks_to_clear_it(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 60)
    assert lessor.renew(7).clear_checkpoint is False
    clock.advance(10)
    lessor.checkpoint(7, 50)
    renewal = lessor.renew(7)
    assert renewal.clear_checkpoint is True
    lessor.checkpoint(7, 0)  # what the server proposes; a new leader then starts from 60
    lessor.demote()
    lessor.promote()
    assert lessor.time_to_live(7)[1] == 60


def test_short_leases_are_checkpointed_only_on_request(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 6)
    clock.advance(2)
    assert lessor.due_checkpoints() == []  # 4 s left, below the 5 s interval
    assert lessor.due_checkpoints(every=True) == [(7, 4)]


def test_promote_spreads_a_pile_of_deadlines(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock, primary=False)
    count = 2 * LEASE_REVOKE_RATE
    for i in range(1, count + 1):
        lessor.grant(i, 10)
    lessor.promote()
    per_second = (3 * LEASE_REVOKE_RATE) // 4
    clock.advance(10)
    expired_per_second = []
    for _ in range(10):
        found = lessor.find_expired(count)
        for lease_id in found:
            lessor.revoke(lease_id)
        expired_per_second.append(len(found))
        clock.advance(1.0)
    # All 2000 fell due at once; after promote at most ~750 fall due in any one second.
    assert sum(expired_per_second) == count
    assert max(expired_per_second) <= per_second + 1
    assert len(lessor) == 0


def test_leases_are_listed_soonest_first(backend: Backend, clock: FakeClock) -> None:
    lessor = make(backend, clock)
    lessor.grant(1, 30)
    lessor.grant(2, 10)
    lessor.grant(3, 20)
    assert [lease.id for lease in lessor.leases()] == [2, 3, 1]


def test_a_lease_granted_again_under_its_id_is_offered_once(
    backend: Backend, clock: FakeClock
) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 5)
    lessor.revoke(7)
    lessor.grant(7, 5)
    clock.advance(6)
    assert lessor.find_expired(100) == [7]


def test_recover_reloads_from_a_new_backend(
    backend: Backend, clock: FakeClock, tmp_path: Path
) -> None:
    lessor = make(backend, clock)
    lessor.grant(7, 10)
    other = Backend(str(tmp_path / "other-db"), map_size=64 * 1024**2)
    try:
        donor = make(other, clock)
        donor.grant(8, 20)
        lessor.recover(other, {8: [b"k"]})
        assert 7 not in lessor and 8 in lessor
        assert not lessor.is_primary
        lessor.grant(9, 10)  # persists into the new backend
        assert len(make(other, clock)) == 2
    finally:
        other.close()
