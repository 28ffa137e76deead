"""The corruption check's verdicts (etcd 3.4's rules)."""

from __future__ import annotations

from etcdpy.server.ops.corrupt_check import HashAt, judge

LEADER = HashAt(hash=111, revision=10, compact_revision=4)


def test_members_that_agree_raise_nothing() -> None:
    assert judge(LEADER, LEADER, [(2, HashAt(111, 10, 4)), (3, HashAt(111, 10, 4))]) == []


def test_a_member_behind_on_compaction_is_not_compared() -> None:
    # Its compact revision differs, so its hash covers other revisions: no verdict.
    assert judge(LEADER, LEADER, [(2, HashAt(999, 10, 2))]) == []


def test_same_compaction_different_hash_is_a_mismatch() -> None:
    reasons = judge(LEADER, LEADER, [(2, HashAt(222, 10, 4))])
    assert len(reasons) == 1
    assert "member 2 has hash 222" in reasons[0]


def test_a_member_ahead_of_the_leader_is_a_mismatch() -> None:
    assert judge(LEADER, LEADER, [(3, HashAt(111, 11, 4))])
    assert judge(LEADER, LEADER, [(3, HashAt(111, 10, 5))])


def test_the_leaders_own_hash_changing_under_the_same_revision() -> None:
    second = HashAt(hash=112, revision=10, compact_revision=4)
    reasons = judge(LEADER, second, [])
    assert reasons == ["the leader's own hash changed at revision 10"]
    # A write in between (a new revision) explains a new hash.
    assert judge(LEADER, HashAt(hash=112, revision=11, compact_revision=4), []) == []
