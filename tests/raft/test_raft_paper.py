"""The rules of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable Consensus
Algorithm", extended version), one test per sentence, driving the state machine directly.

Each docstring quotes (or closely paraphrases) the sentence it checks and names its section.
"""

from __future__ import annotations

import pytest

from etcdpy.raft.raft import Raft
from etcdpy.raft.types import NONE, Entry, HardState, Message, MessageType, StateType
from tests.raft.harness import (
    accept_and_reply,
    become_leader,
    commit_noop_entry,
    memory_storage,
    new_raft,
    read_messages,
    state_of,
)

MT = MessageType


def _make_state(r: Raft, state: StateType) -> None:
    if state == StateType.FOLLOWER:
        r._become_follower(1, 2)
    elif state == StateType.CANDIDATE:
        r._become_candidate()
    else:
        become_leader(r)


# --- §5.1 terms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE, StateType.LEADER])
def test_update_term_from_message(state: StateType) -> None:
    """§5.1: "If one server's current term is smaller than the other's, then it updates its
    current term to the larger value. If a candidate or leader discovers that its term is out of
    date, it immediately reverts to follower state." """
    r = new_raft(1, [1, 2, 3])
    _make_state(r, state)
    r.step(Message(type=MT.APP, from_=2, term=5))
    assert r.term == 5
    assert r.state == StateType.FOLLOWER
    assert r.lead == 2


def test_reject_stale_term_message() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the request."
    (Without PreVote/CheckQuorum the request is ignored: nothing changes, nothing is sent.)"""
    r = new_raft(1, [1, 2, 3])
    r._load_state(HardState(term=2))
    r.step(Message(type=MT.APP, from_=2, term=1, index=0, entries=(Entry(term=1, index=1),)))
    assert r.raft_log.last_index() == 0
    assert read_messages(r) == []


def test_start_as_follower() -> None:
    """§5.2: "When servers start up, they begin as followers." """
    r = new_raft(1, [1, 2, 3])
    assert r.state == StateType.FOLLOWER


# --- §5.2 leader election -----------------------------------------------------------------------


def test_leader_bcast_beat() -> None:
    """§5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no log entries) to
    all followers in order to maintain their authority." """
    hb = 1
    r = new_raft(1, [1, 2, 3], 10, hb)
    become_leader(r)
    for i in range(10):
        r._append_entry([Entry(index=i + 1)])
    read_messages(r)
    for _ in range(hb):
        r.tick()
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.commit, m.entries) for m in msgs] == [
        (MT.HEARTBEAT, 2, 0, ()),
        (MT.HEARTBEAT, 3, 0, ()),
    ]


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE])
def test_nonleader_start_election(state: StateType) -> None:
    """§5.2: "If a follower receives no communication over a period of time called the election
    timeout, then it ... begins an election ... it increments its current term and transitions to
    candidate state. It then votes for itself and issues RequestVote RPCs in parallel to each of
    the other servers in the cluster." (A candidate that times out starts a new election.)"""
    et = 10
    r = new_raft(1, [1, 2, 3], et, 1)
    _make_state(r, state)
    read_messages(r)
    for _ in range(2 * et):
        r.tick()
    assert r.term == 2
    assert r.state == StateType.CANDIDATE
    assert r.prs.votes[r.id] is True
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.type, m.to, m.term) for m in msgs] == [(MT.VOTE, 2, 2), (MT.VOTE, 3, 2)]


@pytest.mark.parametrize(
    ("size", "votes", "state"),
    [
        (1, {}, StateType.LEADER),
        (3, {2: True, 3: True}, StateType.LEADER),
        (3, {2: True}, StateType.LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, StateType.LEADER),
        (5, {2: True, 3: True}, StateType.LEADER),
        (3, {2: False, 3: False}, StateType.FOLLOWER),
        (5, {2: False, 3: False, 4: False, 5: False}, StateType.FOLLOWER),
        (5, {2: True, 3: False, 4: False, 5: False}, StateType.FOLLOWER),
        (3, {}, StateType.CANDIDATE),
        (5, {2: True}, StateType.CANDIDATE),
        (5, {2: False, 3: False}, StateType.CANDIDATE),
    ],
)
def test_leader_election_in_one_round(size: int, votes: dict[int, bool], state: StateType) -> None:
    """§5.2: "A candidate wins an election if it receives votes from a majority of the servers in
    the full cluster for the same term." and "... a candidate ... [that] neither wins nor loses
    ... remains a candidate"; a candidate that a majority rejected falls back to follower."""
    r = new_raft(1, list(range(1, size + 1)))
    r.step(Message(type=MT.HUP, from_=1))
    for node_id in sorted(votes):
        r.step(
            Message(type=MT.VOTE_RESP, from_=node_id, to=1, term=r.term, reject=not votes[node_id])
        )
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize(
    ("vote", "candidate", "reject"),
    [(NONE, 1, False), (NONE, 2, False), (1, 1, False), (2, 2, False), (1, 2, True), (2, 1, True)],
)
def test_follower_vote(vote: int, candidate: int, reject: bool) -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis." """
    r = new_raft(1, [1, 2, 3])
    r._load_state(HardState(term=1, vote=vote))
    r.step(Message(type=MT.VOTE, from_=candidate, to=1, term=1))
    msgs = read_messages(r)
    assert [(m.type, m.to, m.term, m.reject) for m in msgs] == [
        (MT.VOTE_RESP, candidate, 1, reject)
    ]


@pytest.mark.parametrize("term", [1, 2])
def test_candidate_fallback(term: int) -> None:
    """§5.2: "While waiting for votes, a candidate may receive an AppendEntries RPC from another
    server claiming to be leader. If the leader's term ... is at least as large as the
    candidate's current term, then the candidate recognizes the leader as legitimate and returns
    to follower state." """
    r = new_raft(1, [1, 2, 3])
    r.step(Message(type=MT.HUP, from_=1))
    assert r.state == StateType.CANDIDATE
    r.step(Message(type=MT.APP, from_=2, to=1, term=term))
    assert state_of(r) == StateType.FOLLOWER
    assert r.term == term
    assert r.lead == 2


@pytest.mark.parametrize("state", [StateType.FOLLOWER, StateType.CANDIDATE])
def test_election_timeout_randomized(state: StateType) -> None:
    """§5.2: "Raft uses randomized election timeouts ... election timeouts are chosen randomly
    from a fixed interval (e.g., 150-300ms)." Here: [election_tick, 2 * election_tick)."""
    et = 10
    seen: set[int] = set()
    for seed in range(50):
        r = new_raft(1, [1, 2, 3], et, 1, seed=seed)
        _make_state(r, state)
        term = r.term
        ticks = 0
        while r.term == term:
            r.tick()
            ticks += 1
        assert et <= ticks < 2 * et
        seen.add(ticks)
    # The draw covers most of the range, so split votes are unlikely to repeat.
    assert len(seen) >= et // 2


def test_election_timeouts_rarely_conflict() -> None:
    """§5.2: "... in most cases only a single server will time out; it wins the election and
    sends heartbeats before any other servers time out." Five followers with different seeds
    seldom all time out on the same tick."""
    conflicts = 0
    for round_ in range(100):
        rafts = [new_raft(i, [1, 2, 3, 4, 5], seed=round_ * 10 + i) for i in range(1, 6)]
        timed_out = 0
        for _ in range(10):
            fired = 0
            for r in rafts:
                before = r.term
                r.tick()
                if r.term != before:
                    fired += 1
            if fired:
                timed_out = fired
                break
        if timed_out > 1:
            conflicts += 1
    assert conflicts < 40


# --- §5.3 log replication -----------------------------------------------------------------------


def test_leader_start_replication() -> None:
    """§5.3: "The leader appends the command to its log as a new entry, then issues AppendEntries
    RPCs in parallel to each of the other servers to replicate the entry." """
    s = memory_storage([1, 2, 3])
    r = new_raft(1, [1, 2, 3], storage=s)
    become_leader(r)
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"some data"),)))
    assert r.raft_log.last_index() == li + 1
    assert r.raft_log.committed == li
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    want = (Entry(index=li + 1, term=1, data=b"some data"),)
    assert [(m.type, m.to, m.index, m.log_term, m.commit, m.entries) for m in msgs] == [
        (MT.APP, 2, li, 1, li, want),
        (MT.APP, 3, li, 1, li, want),
    ]
    assert r.raft_log.unstable_entries() == list(want)


def test_leader_commit_entry() -> None:
    """§5.3: "When the entry has been safely replicated, the leader applies the entry to its
    state machine and returns the result of that execution to the client." and "The leader keeps
    track of the highest index it knows to be committed, and it includes that index in future
    AppendEntries RPCs ... so that the other servers eventually find out." """
    s = memory_storage([1, 2, 3])
    r = new_raft(1, [1, 2, 3], storage=s)
    become_leader(r)
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"some data"),)))
    for m in read_messages(r):
        r.step(accept_and_reply(m))
    assert r.raft_log.committed == li + 1
    assert r.raft_log.next_ents() == [Entry(index=li + 1, term=1, data=b"some data")]
    msgs = sorted(read_messages(r), key=lambda m: m.to)
    assert [(m.to, m.type, m.commit) for m in msgs] == [(2, MT.APP, li + 1), (3, MT.APP, li + 1)]


@pytest.mark.parametrize(
    ("size", "acceptors", "committed"),
    [
        (1, set(), True),
        (3, set(), False),
        (3, {2}, True),
        (3, {2, 3}, True),
        (5, set(), False),
        (5, {2}, False),
        (5, {2, 3}, True),
        (5, {2, 3, 4, 5}, True),
    ],
)
def test_leader_acknowledge_commit(size: int, acceptors: set[int], committed: bool) -> None:
    """§5.3: "A log entry is committed once the leader that created the entry has replicated it
    on a majority of the servers." """
    ids = list(range(1, size + 1))
    s = memory_storage(ids)
    r = new_raft(1, ids, storage=s)
    become_leader(r)
    commit_noop_entry(r, s)
    li = r.raft_log.last_index()
    r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"some data"),)))
    for m in read_messages(r):
        if m.to in acceptors:
            r.step(accept_and_reply(m))
    assert (r.raft_log.committed > li) == committed


def test_leader_commit_preceding_entries() -> None:
    """§5.3: "[Committing an entry] also commits all preceding entries in the leader's log,
    including entries created by previous leaders." """
    for prior in ([], [Entry(term=2, index=1)], [Entry(term=1, index=1), Entry(term=2, index=2)]):
        s = memory_storage([1, 2, 3], entries=prior)
        s.set_hard_state(HardState(term=2))
        r = new_raft(1, [1, 2, 3], storage=s)
        become_leader(r)
        r.step(Message(type=MT.PROP, from_=1, entries=(Entry(data=b"some data"),)))
        for m in read_messages(r):
            r.step(accept_and_reply(m))
        li = len(prior)
        want = [*prior, Entry(term=3, index=li + 1), Entry(term=3, index=li + 2, data=b"some data")]
        assert r.raft_log.next_ents() == want


def test_follower_commit_entry() -> None:
    """§5.3: "Once a follower learns that a log entry is committed, it applies the entry to its
    local state machine (in log order)." """
    ents = (Entry(term=1, index=1, data=b"a"), Entry(term=1, index=2, data=b"b"))
    for commit in (1, 2):
        r = new_raft(1, [1, 2, 3])
        r._become_follower(1, 2)
        r.step(Message(type=MT.APP, from_=2, to=1, term=1, entries=ents, commit=commit))
        assert r.raft_log.committed == commit
        assert r.raft_log.next_ents() == list(ents[:commit])


@pytest.mark.parametrize(
    ("log_term", "index", "want_index", "reject", "hint"),
    [
        (0, 0, 1, False, 0),  # match with committed entries
        (1, 1, 1, False, 0),
        (2, 2, 2, False, 0),  # match with uncommitted entries
        (1, 2, 2, True, 1),  # unmatched term: hint points at the last index of term <= 1
        (3, 3, 3, True, 2),  # unexisting entry
    ],
)
def test_follower_check_app(
    log_term: int, index: int, want_index: int, reject: bool, hint: int
) -> None:
    """§5.3: "When sending an AppendEntries RPC, the leader includes the index and term of the
    entry in its log that immediately precedes the new entries. If the follower does not find an
    entry in its log with the same index and term, then it refuses the new entries." """
    ents = [Entry(term=1, index=1), Entry(term=2, index=2)]
    s = memory_storage([1, 2, 3], entries=ents)
    s.set_hard_state(HardState(commit=1))
    r = new_raft(1, [1, 2, 3], storage=s)
    r._become_follower(2, 2)
    r.step(Message(type=MT.APP, from_=2, to=1, term=2, log_term=log_term, index=index))
    msgs = read_messages(r)
    assert [(m.type, m.index, m.reject) for m in msgs] == [(MT.APP_RESP, want_index, reject)]
    if reject:
        assert msgs[0].reject_hint == hint


@pytest.mark.parametrize(
    ("index", "term", "new", "want"),
    [
        (2, 2, [Entry(term=3, index=3)], [(1, 1), (2, 2), (3, 3)]),
        (1, 1, [Entry(term=3, index=2), Entry(term=4, index=3)], [(1, 1), (2, 3), (3, 4)]),
        (0, 0, [Entry(term=1, index=1)], [(1, 1), (2, 2)]),
        (0, 0, [Entry(term=3, index=1)], [(1, 3)]),
    ],
)
def test_follower_append_entries(
    index: int, term: int, new: list[Entry], want: list[tuple[int, int]]
) -> None:
    """§5.3: "If an existing entry conflicts with a new one (same index but different terms),
    delete the existing entry and all that follow it; append any new entries not already in the
    log." and "... the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own." """
    s = memory_storage([1, 2, 3], entries=[Entry(term=1, index=1), Entry(term=2, index=2)])
    r = new_raft(1, [1, 2, 3], storage=s)
    r._become_follower(2, 2)
    r.step(
        Message(type=MT.APP, from_=2, to=1, term=2, log_term=term, index=index, entries=tuple(new))
    )
    assert [(e.index, e.term) for e in r.raft_log.all_entries()] == want


def _figure7_leader_log() -> list[Entry]:
    terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    return [Entry(term=t, index=i + 1) for i, t in enumerate(terms)]


FIGURE_7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("name", sorted(FIGURE_7_FOLLOWERS))
def test_leader_sync_follower_log(name: str) -> None:
    """§5.3 (figure 7): "the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own ... the leader must find the latest log entry where the two logs agree,
    delete any entries in the follower's log after that point, and send the follower all of the
    leader's entries after that point." """
    from tests.raft.harness import Network

    lead_log = _figure7_leader_log()
    follower_log = [Entry(term=t, index=i + 1) for i, t in enumerate(FIGURE_7_FOLLOWERS[name])]
    net = Network([1, 2, 3])
    net.storages[1].append(lead_log)
    net.storages[1].set_hard_state(HardState(term=8, commit=len(lead_log)))
    net.storages[2].append(follower_log)
    net.storages[2].set_hard_state(HardState(term=7))
    net.add_node(1, net.storages[1])
    net.add_node(2, net.storages[2])
    # Node 3 votes for the leader; the follower under test does not need to.
    net.storages[3].set_hard_state(HardState(term=7))
    net.add_node(3, net.storages[3])
    net.cut(2, 3)
    net.nodes[1].campaign()
    net.stabilize()
    assert net.state(1) == StateType.LEADER
    net.nodes[1].propose(b"x")
    net.stabilize()
    log1 = net.raft(1).raft_log.all_entries()
    log2 = net.raft(2).raft_log.all_entries()
    assert log2 == log1
    assert log1[: len(lead_log)] == lead_log


# --- §5.4 safety --------------------------------------------------------------------------------


def test_vote_request() -> None:
    """§5.2: "[A candidate] issues RequestVote RPCs ... to each of the other servers"; the request
    carries the candidate's last log index and term (§5.4.1)."""
    for ents, wterm in (
        ([Entry(term=1, index=1)], 2),
        ([Entry(term=1, index=1), Entry(term=2, index=2)], 3),
    ):
        r = new_raft(1, [1, 2, 3])
        r.step(Message(type=MT.APP, from_=2, to=1, term=wterm - 1, entries=tuple(ents)))
        read_messages(r)
        for _ in range(2 * r.election_timeout):
            r.tick()
        msgs = sorted(read_messages(r), key=lambda m: m.to)
        assert [(m.type, m.to, m.term, m.index, m.log_term) for m in msgs] == [
            (MT.VOTE, 2, wterm, ents[-1].index, ents[-1].term),
            (MT.VOTE, 3, wterm, ents[-1].index, ents[-1].term),
        ]


@pytest.mark.parametrize(
    ("log_term", "index", "reject"),
    [
        (1, 1, False),  # same log
        (1, 2, False),
        (1, 0, True),  # candidate's log is shorter
        (2, 1, False),  # candidate's last term is higher
        (2, 2, False),
        (2, 0, False),
        (0, 1, True),  # candidate's last term is lower
        (0, 0, True),
    ],
)
def test_voter(log_term: int, index: int, reject: bool) -> None:
    """§5.4.1: "The voter denies its vote if its own log is more up-to-date than that of the
    candidate ... If the logs have last entries with different terms, then the log with the later
    term is more up-to-date. If the logs end with the same term, then whichever log is longer is
    more up-to-date." """
    s = memory_storage([1, 2], entries=[Entry(term=1, index=1)])
    r = new_raft(1, [1, 2], storage=s)
    r.step(Message(type=MT.VOTE, from_=2, to=1, term=3, log_term=log_term, index=index))
    msgs = read_messages(r)
    assert [(m.type, m.reject) for m in msgs] == [(MT.VOTE_RESP, reject)]


@pytest.mark.parametrize(("index", "want_commit"), [(1, 0), (2, 0), (3, 3)])
def test_leader_only_commits_log_from_current_term(index: int, want_commit: int) -> None:
    """§5.4.2: "Raft never commits log entries from previous terms by counting replicas. Only log
    entries from the leader's current term are committed by counting replicas." """
    s = memory_storage([1, 2], entries=[Entry(term=1, index=1), Entry(term=2, index=2)])
    r = new_raft(1, [1, 2], storage=s)
    r._load_state(HardState(term=2))
    become_leader(r)  # term 3; appends the empty entry at index 3
    read_messages(r)
    r.step(Message(type=MT.APP_RESP, from_=2, to=1, term=r.term, index=index))
    assert r.raft_log.committed == want_commit
