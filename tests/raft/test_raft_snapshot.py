"""Log compaction and snapshots (§7 of the paper)."""

from __future__ import annotations

from etcdpy.raft.raft import Raft
from etcdpy.raft.tracker import ProgressState
from etcdpy.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SnapshotStatus,
)
from tests.raft.harness import Network, become_leader, memory_storage, new_raft, read_messages

MT = MessageType


def _compact_leader(net: Network, leader: int) -> int:
    storage = net.storages[leader]
    applied = net.raft(leader).raft_log.applied
    storage.create_snapshot(applied, net.raft(leader).prs.conf_state(), b"state@%d" % applied)
    storage.compact(applied)
    return applied


def test_lagging_follower_catches_up_by_snapshot() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind. This
    happens when the leader has already discarded the next log entry that it needs to send to a
    follower." """
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    for i in range(10):
        net.nodes[1].propose(b"e%d" % i)
    net.stabilize()
    snap_index = _compact_leader(net, 1)
    net.nodes[1].propose(b"after")
    net.stabilize()
    net.recover()
    net.tick(1)
    net.stabilize()
    snaps = [m for m in net.delivered if m.type == MT.SNAP]
    assert [(m.to, m.snapshot.metadata.index if m.snapshot else 0) for m in snaps] == [
        (3, snap_index)
    ]
    assert net.storages[3].snapshot().data == b"state@%d" % snap_index
    # After the snapshot, the rest of the log follows by normal replication.
    assert net.raft(3).raft_log.committed == net.raft(1).raft_log.committed
    assert net.applied_data(3) == [b"after"]
    assert net.raft(1).prs.progress[3].state == ProgressState.REPLICATE


def test_follower_installs_snapshot_and_discards_log() -> None:
    """§7: "If instead the follower receives a snapshot that describes a prefix of its log ...
    Usually the snapshot will contain new information not already in the recipient's log. In
    this case, the follower discards its entire log; it is all superseded by the snapshot." """
    s = memory_storage([1, 2], entries=[Entry(term=1, index=1), Entry(term=1, index=2)])
    r = new_raft(2, [1, 2], storage=s)
    snap = Snapshot(
        data=b"s",
        metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=11, term=11),
    )
    r.step(Message(type=MT.SNAP, from_=1, to=2, term=11, snapshot=snap))
    assert r.raft_log.last_index() == 11
    assert r.raft_log.committed == 11
    assert r.raft_log.term(11) == 11
    assert r.raft_log.unstable.snapshot == snap
    assert [(m.type, m.index) for m in read_messages(r)] == [(MT.APP_RESP, 11)]


def test_snapshot_describing_a_prefix_keeps_the_log() -> None:
    """§7: "If instead the follower receives a snapshot that describes a prefix of its log (due
    to retransmission or by mistake), then log entries covered by the snapshot are deleted but
    entries following the snapshot are still valid and must be retained." """
    ents = [Entry(term=1, index=i) for i in range(1, 6)]
    s = memory_storage([1, 2], entries=ents)
    r = new_raft(2, [1, 2], storage=s)
    r._become_follower(1, 1)
    snap = Snapshot(metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=3, term=1))
    r.step(Message(type=MT.SNAP, from_=1, to=2, term=1, snapshot=snap))
    assert r.raft_log.last_index() == 5
    assert r.raft_log.committed == 3
    assert r.raft_log.unstable.snapshot is None


def test_stale_snapshot_is_ignored() -> None:
    """§7 (implied): a snapshot older than the follower's commit index carries nothing new and
    must not roll back its state."""
    s = memory_storage([1, 2], entries=[Entry(term=1, index=i) for i in range(1, 6)])
    s.set_hard_state(HardState(term=1, commit=5))
    r = new_raft(2, [1, 2], storage=s)
    snap = Snapshot(metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=3, term=1))
    r.step(Message(type=MT.SNAP, from_=1, to=2, term=1, snapshot=snap))
    assert r.raft_log.committed == 5
    assert [(m.type, m.index) for m in read_messages(r)] == [(MT.APP_RESP, 5)]


def _leader_sending_snapshot() -> Raft:
    s = memory_storage([1, 2])
    s.apply_snapshot(
        Snapshot(metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=11, term=11))
    )
    r = new_raft(1, [1, 2], storage=s)
    become_leader(r)
    read_messages(r)
    pr = r.prs.progress[2]
    pr.recent_active = True
    pr.next = r.raft_log.first_index() - 1  # the follower needs compacted entries
    r.send_append(2)
    (m,) = read_messages(r)
    assert m.type == MT.SNAP
    assert pr.state == ProgressState.SNAPSHOT and pr.pending_snapshot == 11
    return r


def test_snapshot_failure_returns_to_probe_and_pauses() -> None:
    """§7 (etcd's report_snapshot): when sending a snapshot fails, the leader forgets it and
    probes again after the next heartbeat answer."""
    r = _leader_sending_snapshot()
    r.step(Message(type=MT.SNAP_STATUS, from_=2, reject=True))
    pr = r.prs.progress[2]
    assert pr.state == ProgressState.PROBE
    assert pr.pending_snapshot == 0
    assert pr.is_paused()


def test_snapshot_success_waits_for_follower_answer() -> None:
    """§7: after the follower reports the snapshot installed, replication resumes from it (probe
    from the snapshot index, paused until the follower answers)."""
    r = _leader_sending_snapshot()
    r.step(Message(type=MT.SNAP_STATUS, from_=2, reject=False))
    pr = r.prs.progress[2]
    assert pr.state == ProgressState.PROBE
    assert pr.next == 12
    assert pr.is_paused()


def test_report_snapshot_through_rawnode() -> None:
    """The application reports the outcome of a snapshot it sent (§7); RawNode.report_snapshot
    feeds it to the leader."""
    net = Network([1, 2, 3])
    net.campaign(1)
    net.isolate(3)
    for i in range(3):
        net.nodes[1].propose(b"%d" % i)
    net.stabilize()
    _compact_leader(net, 1)
    net.recover()
    net.drop = lambda m: m.type == MT.SNAP  # the snapshot is lost on the way
    net.tick(1)
    net.stabilize()
    assert net.raft(1).prs.progress[3].state == ProgressState.SNAPSHOT
    net.nodes[1].report_snapshot(3, SnapshotStatus.FAILURE)
    assert net.raft(1).prs.progress[3].state == ProgressState.PROBE
    net.drop = None
    net.tick(1)  # heartbeat -> answer -> a new snapshot is sent
    net.stabilize()
    assert net.raft(3).raft_log.committed == net.raft(1).raft_log.committed


def test_no_snapshot_to_inactive_follower() -> None:
    """§7: "the leader must occasionally send snapshots to followers that lag behind" — but, by
    etcd's rule, only to a follower that was recently active, so a dead follower does not cost
    a snapshot every heartbeat."""
    s = memory_storage([1, 2])
    s.apply_snapshot(
        Snapshot(metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=11, term=11))
    )
    r = new_raft(1, [1, 2], storage=s)
    become_leader(r)
    read_messages(r)
    pr = r.prs.progress[2]
    pr.recent_active = False
    pr.next = 5
    r.send_append(2)
    assert read_messages(r) == []
    assert pr.state == ProgressState.PROBE


def test_restart_from_snapshot_and_log() -> None:
    """§7: "Each server takes snapshots independently"; a restarted node starts from its last
    snapshot plus the log after it, with the configuration stored in the snapshot."""
    s = memory_storage()
    s.apply_snapshot(
        Snapshot(
            metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=10, term=2)
        )
    )
    s.append([Entry(term=2, index=11), Entry(term=3, index=12)])
    s.set_hard_state(HardState(term=3, vote=1, commit=12))
    r = new_raft(1, [], storage=s, applied=11)
    assert r.prs.voter_nodes() == [1, 2, 3]
    assert (r.term, r.vote, r.raft_log.committed, r.raft_log.applied) == (3, 1, 12, 11)
    assert r.raft_log.next_ents() == [Entry(term=3, index=12)]
    assert r.raft_log.first_index() == 11
