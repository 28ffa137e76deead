"""The raft state machine (Ongaro and Ousterhout's Raft, with the thesis's extensions).

Roles and their transitions (the rules every function below keeps):

    FOLLOWER      --election timeout, PreVote on-->  PRE_CANDIDATE
    FOLLOWER      --election timeout, PreVote off-> CANDIDATE
    PRE_CANDIDATE --quorum of pre-votes---------->  CANDIDATE (term + 1)
    PRE_CANDIDATE --pre-vote lost, or a leader--->  FOLLOWER (term unchanged)
    CANDIDATE     --quorum of votes-------------->  LEADER (appends an empty entry)
    CANDIDATE     --vote lost, or a leader------->  FOLLOWER
    any role      --message of a higher term----->  FOLLOWER (except pre-votes, which never
                                                    change a term)
    LEADER        --CheckQuorum fails------------>  FOLLOWER (same term)
    LEADER        --no longer a voter, TimeoutNow
                    sent to a caught-up voter----->  FOLLOWER (same term)

Dispatch on the role is by swapping ``_step_role`` and ``tick`` (``_become_*`` set them), not by
role checks scattered through the code. ``step`` handles what every role shares: the term rules
of §5.1 and the vote rules of §5.2 / §5.4.1.

The core is sans-IO: it only appends to ``msgs`` and ``read_states``; ``RawNode`` packs them
into a ``Ready``. It is deterministic: time is ``tick()`` and randomness is ``Config.rand``.
Proposals and safe ReadIndex requests only mark a broadcast as owed; ``flush()`` (called when a
Ready is assembled) sends one per batch. Whoever drives ``Raft`` directly must call it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

from etcdpy.raft.confchange import Changer, restore
from etcdpy.raft.config import Config
from etcdpy.raft.errors import (
    CompactedError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from etcdpy.raft.log import RaftLog
from etcdpy.raft.quorum import VoteResult
from etcdpy.raft.read_only import ReadOnly
from etcdpy.raft.tracker import Inflights, Progress, ProgressState, ProgressTracker, TrackerConfig
from etcdpy.raft.types import (
    NONE,
    ConfChange,
    ConfChangeTransition,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadOnlyOption,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)
from etcdpy.raft.util import payloads_size, vote_resp_msg_type

MT = MessageType


class CampaignType(Enum):
    PRE_ELECTION = b"CampaignPreElection"
    ELECTION = b"CampaignElection"
    TRANSFER = b"CampaignTransfer"  # forced by a leader transfer: ignores the leader lease


def _enter_joint(cc: ConfChange) -> tuple[bool, bool]:
    """(auto_leave, enters_joint) for a conf change, as etcd's ConfChangeV2.EnterJoint."""
    if cc.transition != ConfChangeTransition.AUTO or len(cc.changes) > 1:
        return cc.transition != ConfChangeTransition.JOINT_EXPLICIT, True
    return False, False


class Raft:
    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.term = 0
        self.vote = NONE
        self.read_states: list[ReadState] = []
        self.msgs: list[Message] = []
        max_committed = c.max_committed_size_per_ready or c.max_size_per_msg
        self.raft_log = RaftLog(c.storage, max_committed)
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size  # 0 = no limit
        self.prs = ProgressTracker(c.max_inflight_msgs)
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.sole_voter = False  # we are the only voter (of both halves, if joint)
        self.lead = NONE
        # Set while a leader transfer is in progress (proposals are dropped meanwhile).
        self.lead_transferee = NONE
        # The index of the latest conf change the leader appended; a new one is refused until
        # it is applied, so that at most one change is in flight (thesis §4.1).
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        # Reads that arrived before the leader committed an entry of its term (thesis §6.4).
        self.pending_read_index_messages: list[Message] = []
        # Broadcasts owed to the entries and the safe reads of this batch (see ``flush``).
        self.append_owed = False
        self.read_heartbeat_owed = False
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.randomized_election_timeout = 0
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.rand = c.rand
        self.logger = c.logger
        self.tick: Callable[[], None] = self._tick_election
        self._step_role: Callable[[Message], None] = self._step_follower

        hs, cs = c.storage.initial_state()
        cfg, prs = restore(Changer(self.prs, self.raft_log.last_index()), cs)
        self.switch_to_config(cfg, prs)
        if not hs.is_empty():
            self._load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self._become_follower(self.term, NONE)
        self._trace(
            f"newRaft {self.id:x} [peers: {self.prs.voter_nodes()}, term: {self.term}, "
            f"commit: {self.raft_log.committed}, applied: {self.raft_log.applied}, "
            f"lastindex: {self.raft_log.last_index()}, lastterm: {self.raft_log.last_term()}]"
        )

    # --- small accessors --------------------------------------------------------------------------

    def _trace(self, text: str) -> None:
        if self.logger is not None:
            self.logger(text)

    def has_leader(self) -> bool:
        return self.lead != NONE

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def promotable(self) -> bool:
        """Whether this node may campaign: it is a voter of the current configuration."""
        pr = self.prs.progress.get(self.id)
        return pr is not None and not pr.is_learner

    def _in_joint(self) -> bool:
        return len(self.prs.config.voters.outgoing) > 0

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(
            self.election_timeout
        )

    def _load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise AssertionError(
                f"{self.id:x} state.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # --- sending ----------------------------------------------------------------------------------

    def _send(
        self,
        kind: MessageType,
        to: int,
        *,
        term: int | None = None,
        index: int = 0,
        log_term: int = 0,
        entries: tuple[Entry, ...] = (),
        commit: int = 0,
        snapshot: Snapshot | None = None,
        reject: bool = False,
        reject_hint: int = 0,
        context: bytes = b"",
    ) -> None:
        """Queue a message from this node; it carries our term unless ``term`` is given."""
        self.msgs.append(
            Message(
                type=kind,
                to=to,
                from_=self.id,
                term=self.term if term is None else term,
                log_term=log_term,
                index=index,
                entries=entries,
                commit=commit,
                snapshot=snapshot,
                reject=reject,
                reject_hint=reject_hint,
                context=context,
            )
        )

    def _forward(self, m: Message, to: int) -> None:
        """Pass a proposal or read request on to the leader (term 0: it is not a raft RPC)."""
        self.msgs.append(
            Message(type=m.type, to=to, from_=self.id, term=0, entries=m.entries, context=m.context)
        )

    def send_append(self, to: int) -> None:
        self.maybe_send_append(to, True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send the entries ``to`` is missing (or a snapshot); False if nothing was sent."""
        pr = self.prs.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        prev_index = pr.next - 1
        term: int | None
        ents: list[Entry] | None
        try:
            term = log.term(prev_index)
        except (CompactedError, UnavailableError):
            term = None
        try:
            ents = log.entries(pr.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            ents = None
        if not ents and not send_if_empty:
            return False

        if term is None or ents is None:
            # The entries are compacted: only a snapshot can catch the follower up.
            if not pr.recent_active:
                self._trace(f"ignore sending snapshot to {to:x} since it is not recently active")
                return False
            try:
                snap = log.snapshot()
            except SnapshotTemporarilyUnavailableError:
                self._trace(
                    f"{self.id:x} failed to send snapshot to {to:x}: temporarily unavailable"
                )
                return False
            if snap.is_empty():
                raise AssertionError("need non-empty snapshot")
            pr.become_snapshot(snap.metadata.index)
            self._trace(
                f"{self.id:x} sent snapshot[index: {snap.metadata.index}, term: "
                f"{snap.metadata.term}] to {to:x}"
            )
            self._send(MT.SNAP, to, snapshot=snap)
            return True

        if ents:
            if pr.state == ProgressState.REPLICATE:
                last = ents[-1].index
                pr.optimistic_update(last)
                pr.inflights.add(last)
            elif pr.state == ProgressState.PROBE:
                pr.probe_sent = True
            else:
                raise AssertionError(f"{self.id:x} is sending append in unhandled state {pr.state}")
        self._send(
            MT.APP,
            to,
            index=prev_index,
            log_term=term,
            entries=tuple(ents),
            commit=log.committed,
        )
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit past what it is known to have: it may not have it.
        commit = min(self.prs.progress[to].match, self.raft_log.committed)
        self._send(MT.HEARTBEAT, to, commit=commit, context=ctx)

    def _peers(self) -> list[int]:
        """The other members (voters and learners), in id order."""
        return [i for i in sorted(self.prs.progress) if i != self.id]

    def bcast_append(self) -> None:
        for i in self._peers():
            self.send_append(i)

    def bcast_heartbeat(self) -> None:
        self.read_heartbeat_owed = False
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes) -> None:
        for i in self._peers():
            self._send_heartbeat(i, ctx)

    def flush(self) -> None:
        """Send the broadcasts owed since the last Ready, once for the whole batch.

        Proposals and ReadIndex requests only mark a broadcast as owed; it goes out when the
        Ready is assembled, so 64 proposals cost one AppendEntries per follower rather than 64,
        and many reads share one heartbeat round (batching, thesis §10.2.1 and §6.4). Messages
        leave only through a Ready anyway, so only the network sees the difference.
        """
        if self.append_owed:
            self.append_owed = False
            if self.state == StateType.LEADER:
                for i in self._peers():
                    self.maybe_send_append(i, False)
        if self.read_heartbeat_owed:
            self.read_heartbeat_owed = False
            if self.state == StateType.LEADER:
                self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    # --- what the application reports back --------------------------------------------------------

    def advance(
        self,
        applied_to: int,
        committed_entries: Sequence[Entry],
        stable: Entry | None,
        snap_index: int,
    ) -> None:
        """The application persisted and applied what a Ready asked for."""
        if applied_to > 0:
            self.raft_log.applied_to(applied_to)
            if (
                self.prs.config.auto_leave
                and applied_to >= self.pending_conf_index
                and self.state == StateType.LEADER
            ):
                # The joint configuration is applied: propose leaving it (an empty change).
                ent = Entry(type=EntryType.CONF_CHANGE, data=ConfChange().encode())
                self._append_entry([ent], force=True)
                self.pending_conf_index = self.raft_log.last_index()
                self._trace("initiating automatic transition out of joint configuration")
                self.append_owed = True
        if committed_entries:
            self._reduce_uncommitted_size(committed_entries)
        if stable is not None:
            self.raft_log.stable_to(stable.index, stable.term)
        if snap_index:
            self.raft_log.stable_snap_to(snap_index)

    # --- commitment -------------------------------------------------------------------------------

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum has, if that entry is of our term (§5.4.2)."""
        return self.raft_log.maybe_commit(self.prs.committed(), self.term)

    def _append_entry(self, entries: Sequence[Entry], force: bool = False) -> bool:
        li = self.raft_log.last_index()
        term = self.term
        stamped = [
            Entry(term=term, index=li + 1 + i, type=e.type, data=e.data)
            for i, e in enumerate(entries)
        ]
        if not force and not self._increase_uncommitted_size(stamped):
            self._trace(
                f"{self.id:x} appending new entries to log would exceed uncommitted entry size "
                "limit; dropping proposal"
            )
            return False
        li = self.raft_log.append(stamped)
        self.prs.progress[self.id].maybe_update(li)
        # Followers never hold more than our log, so a new entry of ours can only commit at once
        # when we are the only voter; otherwise the followers' answers commit it.
        if self.sole_voter:
            self.maybe_commit()
        return True

    def _increase_uncommitted_size(self, entries: Sequence[Entry]) -> bool:
        size = payloads_size(entries)
        limit = self.max_uncommitted_size
        # An empty log of uncommitted entries always takes one proposal, however large.
        if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            return False
        self.uncommitted_size += size
        return True

    def _reduce_uncommitted_size(self, entries: Sequence[Entry]) -> None:
        if self.uncommitted_size == 0:
            return  # the usual case on followers, which do not track it
        size = payloads_size(entries)
        self.uncommitted_size = 0 if size > self.uncommitted_size else self.uncommitted_size - size

    # --- role changes -----------------------------------------------------------------------------

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.prs.reset_votes()
        last = self.raft_log.last_index()
        for node_id in sorted(self.prs.progress):
            pr = self.prs.progress[node_id]
            # Forget what the previous term knew: probe every follower from our last index.
            pr.match = last if node_id == self.id else 0
            pr.next = last + 1
            pr.state = ProgressState.PROBE
            pr.pending_snapshot = 0
            pr.recent_active = False
            pr.probe_sent = False
            pr.inflights = Inflights(self.prs.max_inflight)
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)
        self.append_owed = False
        self.read_heartbeat_owed = False
        self.pending_read_index_messages = []

    def _become_follower(self, term: int, lead: int) -> None:
        self._step_role = self._step_follower
        self.reset(term)
        self.tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER
        self._trace(f"{self.id:x} became follower at term {self.term}")

    def _become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> candidate]")
        self._step_role = self._step_candidate
        self.reset(self.term + 1)
        self.tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE
        self._trace(f"{self.id:x} became candidate at term {self.term}")

    def _become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise AssertionError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither its term nor its vote (thesis §9.6).
        self._step_role = self._step_candidate
        self.prs.reset_votes()
        self.tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE
        self._trace(f"{self.id:x} became pre-candidate at term {self.term}")

    def _become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise AssertionError("invalid transition [follower -> leader]")
        self._step_role = self._step_leader
        self.reset(self.term)
        self.tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        # We know our own log; replicate it optimistically.
        self.prs.progress[self.id].become_replicate()
        # Any conf change in our uncommitted tail may be pending: treat it as such.
        self.pending_conf_index = self.raft_log.last_index()
        # The empty entry of the new term commits the entries of earlier terms (§5.4.2, §8).
        empty = Entry()
        if not self._append_entry([empty]):
            raise AssertionError("empty entry was dropped")
        self._trace(f"{self.id:x} became leader at term {self.term}")

    def hup(self, kind: CampaignType) -> None:
        if self.state == StateType.LEADER:
            self._trace(f"{self.id:x} ignoring MsgHup because already leader")
            return
        if not self.promotable():
            self._trace(f"{self.id:x} is unpromotable and can not campaign")
            return
        log = self.raft_log
        if log.committed > log.applied:
            # A committed conf change not applied yet may remove us or change the quorum.
            # (From the first index: entries before it are in a snapshot not yet applied.)
            ents = log.slice(max(log.applied + 1, log.first_index()), log.committed + 1, None)
            if any(e.type == EntryType.CONF_CHANGE for e in ents):
                self._trace(
                    f"{self.id:x} cannot campaign at term {self.term} since there are still "
                    "pending configuration changes to apply"
                )
                return
        self._trace(f"{self.id:x} is starting a new election at term {self.term}")
        self.campaign(kind)

    def campaign(self, kind: CampaignType) -> None:
        if kind == CampaignType.PRE_ELECTION:
            self._become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            # Ask for votes for the term we would have, without moving to it (thesis §9.6).
            term = self.term + 1
        else:
            self._become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        if self._poll(self.id, vote_resp_msg_type(vote_msg), True) == VoteResult.WON:
            # A single voter wins at once.
            if kind == CampaignType.PRE_ELECTION:
                self.campaign(CampaignType.ELECTION)
            else:
                self._become_leader()
            return
        ctx = CampaignType.TRANSFER.value if kind == CampaignType.TRANSFER else b""
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        for node_id in sorted(self.prs.config.voters.ids()):
            if node_id == self.id:
                continue
            self._trace(
                f"{self.id:x} [logterm: {last_term}, index: {last_index}] sent {vote_msg.name} "
                f"request to {node_id:x} at term {self.term}"
            )
            self._send(
                vote_msg, node_id, term=term, index=last_index, log_term=last_term, context=ctx
            )

    def _poll(self, node_id: int, kind: MessageType, granted: bool) -> VoteResult:
        self._trace(
            f"{self.id:x} received {kind.name} {'from' if granted else 'rejection from'} "
            f"{node_id:x} at term {self.term}"
        )
        self.prs.record_vote(node_id, granted)
        _, _, result = self.prs.tally_votes()
        return result

    # --- ticks ------------------------------------------------------------------------------------

    def _tick_election(self) -> None:
        """Followers and candidates: campaign when the leader has been silent too long (§5.2)."""
        self.election_elapsed += 1
        if self.promotable() and self._past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        """Leaders: heartbeats, CheckQuorum, and the deadline of a leader transfer."""
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM, from_=self.id))
            # The transferee did not take over within an election timeout: give up (and, if we
            # are no longer a voter, try again with the best voter now).
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
                if not self.promotable():
                    self._hand_over_leadership()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT, from_=self.id))

    # --- stepping: what all roles share -----------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message; raises ProposalDroppedError for a proposal that cannot go on."""
        if m.term == 0:
            pass  # a local message, or a forwarded proposal / read request
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CampaignType.TRANSFER.value
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a leader within the minimum election timeout: do not let a
                    # removed or partitioned server disrupt it (thesis §4.2.3).
                    self._trace(
                        f"{self.id:x} [term: {self.term}] ignored {m.type.name} from {m.from_:x} "
                        f"at term {m.term}: lease is not expired"
                    )
                    return
            if m.type == MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                # A granted pre-vote carries the future term; we move to it only once we
                # actually campaign.
                pass
            else:
                self._trace(
                    f"{self.id:x} [term: {self.term}] received a {m.type.name} message with "
                    f"higher term from {m.from_:x} [term: {m.term}]"
                )
                if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                    self._become_follower(m.term, m.from_)
                else:
                    self._become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. one we out-termed after a partition) must learn the new
                # term, or it never steps down: with CheckQuorum or PreVote, our higher term
                # alone would not reach it through votes.
                self._send(MT.APP_RESP, m.from_)
            elif m.type == MT.PRE_VOTE:
                # Reject explicitly, so a pre-candidate with a stale term is not left waiting.
                self._send(MT.PRE_VOTE_RESP, m.from_, term=self.term, reject=True)
            else:
                self._trace(
                    f"{self.id:x} [term: {self.term}] ignored a {m.type.name} message with lower "
                    f"term from {m.from_:x} [term: {m.term}]"
                )
            return

        kind = m.type
        if kind == MT.HUP:
            self.hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif kind in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _handle_vote_request(self, m: Message) -> None:
        # We grant a vote we already gave again (duplicate requests), or a vote when we have
        # none and no leader; a pre-vote for a later term is granted on the log alone.
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        resp = vote_resp_msg_type(m.type)
        # §5.4.1: only for a candidate whose log is at least as up-to-date as ours.
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self._trace(f"{self.id:x} cast {m.type.name} for {m.from_:x} at term {self.term}")
            self._send(resp, m.from_, term=m.term)
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._trace(f"{self.id:x} rejected {m.type.name} from {m.from_:x} at term {self.term}")
            self._send(resp, m.from_, term=self.term, reject=True)

    # --- stepping: leader -------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        kind = m.type
        if kind == MT.BEAT:
            self.bcast_heartbeat()
            return
        if kind == MT.CHECK_QUORUM:
            self._check_quorum()
            return
        if kind == MT.PROP:
            self._leader_propose(m)
            return
        if kind == MT.READ_INDEX:
            self._leader_read_index(m)
            return

        pr = self.prs.progress.get(m.from_)
        if pr is None:
            self._trace(f"{self.id:x} no progress available for {m.from_:x}")
            return
        if kind == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif kind == MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif kind == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                # The snapshot did not arrive: send a fresh one when the follower answers.
                pr.pending_snapshot = 0
            pr.become_probe()
            # Wait for a heartbeat response before probing again.
            pr.probe_sent = True
        elif kind == MT.UNREACHABLE:
            # Optimistic replication to an unreachable node would only fill the network.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif kind == MT.TRANSFER_LEADER:
            self._handle_transfer_leader(m, pr)

    def _check_quorum(self) -> None:
        """Step down if a quorum has not been heard from within an election timeout (§6.2)."""
        own = self.prs.progress.get(self.id)
        if own is not None:
            own.recent_active = True
        if not self.prs.quorum_active():
            self._trace(f"{self.id:x} stepped down to follower since quorum is not active")
            self._become_follower(self.term, NONE)
        for node_id in sorted(self.prs.progress):
            if node_id != self.id:
                self.prs.progress[node_id].recent_active = False

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise AssertionError(f"{self.id:x} stepped empty MsgProp")
        if self.id not in self.prs.progress:
            # We were removed from the configuration while leader.
            raise ProposalDroppedError()
        if self.lead_transferee != NONE:
            self._trace(
                f"{self.id:x} [term {self.term}] transfer leadership to {self.lead_transferee:x} "
                "is in progress; dropping proposal"
            )
            raise ProposalDroppedError()
        entries = list(m.entries)
        for i, e in enumerate(entries):
            if e.type != EntryType.CONF_CHANGE:
                continue
            cc = ConfChange.decode(e.data)
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = self._in_joint()
            wants_leave_joint = len(cc.changes) == 0
            refused = ""
            if already_pending:
                refused = (
                    f"possible unapplied conf change at index {self.pending_conf_index} "
                    f"(applied to {self.raft_log.applied})"
                )
            elif already_joint and not wants_leave_joint:
                refused = "must transition out of joint config first"
            elif not already_joint and wants_leave_joint:
                refused = "not in joint state; refusing empty conf change"
            if refused:
                self._trace(f"{self.id:x} ignoring conf change {cc} at config: {refused}")
                entries[i] = Entry(type=EntryType.NORMAL)
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self._append_entry(entries):
            raise ProposalDroppedError()
        self.append_owed = True

    def _leader_read_index(self, m: Message) -> None:
        if self.prs.is_singleton():
            # Only we vote: the commit index is linearizable as is.
            self._respond_to_read_index(m, self.raft_log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Until an entry of this term is committed we may not know the real commit index
            # (thesis §6.4 step 1): hold the request.
            self.pending_read_index_messages.append(m)
            return
        self._send_read_index_response(m)

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    def _send_read_index_response(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.SAFE:
            ctx = m.entries[0].data
            self.read_only.add_request(self.raft_log.committed, m)
            self.read_only.recv_ack(self.id, ctx)
            # One heartbeat round, sent when the Ready is assembled, confirms the leadership
            # for every read queued until then.
            self.read_heartbeat_owed = True
        else:
            self._respond_to_read_index(m, self.raft_log.committed)

    def _respond_to_read_index(self, req: Message, index: int) -> None:
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=index, request_ctx=req.entries[0].data))
        else:
            self._send(MT.READ_INDEX_RESP, req.from_, index=index, entries=req.entries)

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        held = self.pending_read_index_messages
        self.pending_read_index_messages = []
        for m in held:
            self._send_read_index_response(m)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            self._trace(
                f"{self.id:x} received MsgAppResp(rejected, hint: (index {m.reject_hint}, "
                f"term {m.log_term})) from {m.from_:x} for index {m.index}"
            )
            # Fast backtracking: the follower told us the last index at which its log could
            # match ours and the term there; skip every index of ours whose term is larger.
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                self._trace(f"{self.id:x} decreased progress of {m.from_:x} to [{pr}]")
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self.send_append(m.from_)
            return

        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            # The snapshot (or the log after it) reached the follower: replicate again.
            pr.become_probe()
            pr.become_replicate()
        elif pr.state == ProgressState.REPLICATE:
            pr.inflights.free_le(m.index)

        if self.maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            # The follower was paused and may be missing entries: resume it now.
            self.send_append(m.from_)
        # Fill the window: keep sending while there are entries and room for them.
        while self.maybe_send_append(m.from_, False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
            self._trace(f"{self.id:x} sent MsgTimeoutNow to {m.from_:x} after received MsgAppResp")
            self._send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        # A full window may hide a lost message: free one slot so replication goes on.
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.raft_log.last_index():
            self.send_append(m.from_)

        if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or self.prs.config.voters.vote_result(acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            self._respond_to_read_index(rs.req, rs.index)

    def _handle_transfer_leader(self, m: Message, pr: Progress) -> None:
        if pr.is_learner:
            self._trace(f"{self.id:x} is learner. Ignored transferring leadership")
            return
        transferee = m.from_
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return  # the same transfer is in progress already
            self.abort_leader_transfer()
        if transferee == self.id:
            self._trace(f"{self.id:x} is already leader. Ignored transferring leadership to self")
            return
        self._trace(
            f"{self.id:x} [term {self.term}] starts to transfer leadership to {transferee:x}"
        )
        # The transfer must finish within an election timeout, or it is aborted (thesis §3.10).
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.raft_log.last_index():
            self._send_timeout_now(transferee)
        else:
            # Catch the transferee up first; TIMEOUT_NOW follows its append response.
            self.send_append(transferee)

    def _hand_over_leadership(self) -> None:
        """We lead but are no longer a voter (removed or demoted): transfer the leadership.

        Thesis §4.2.2: a leader that is not part of the new configuration steps down once C_new
        is committed. We hand over as in a leader transfer (§3.10): the most up-to-date voter
        is caught up, then told to campaign at once (TimeoutNow), and we step down; until then we
        keep replicating (so the others learn the commit index) and drop proposals. Stepping
        down before the transferee is caught up could
        leave the others unable to elect anyone: a voter still in the old configuration may
        need our vote and lack our last entries. (etcd 3.4 keeps such a leader in place for
        good, which leaves a demoted learner leading forever.) Retried every election timeout.
        """
        candidates = [
            i
            for i in sorted(self.prs.config.voters.ids())
            if i != self.id and i in self.prs.progress
        ]
        if not candidates or self.lead_transferee in candidates:
            return
        best = max(candidates, key=lambda i: (self.prs.progress[i].match, -i))
        self._trace(f"{self.id:x} is no longer a voter; transferring leadership to {best:x}")
        self.election_elapsed = 0
        self.lead_transferee = best
        if self.prs.progress[best].match == self.raft_log.last_index():
            self._send_timeout_now(best)
        else:
            self.send_append(best)

    def _send_timeout_now(self, to: int) -> None:
        """Tell a caught-up transferee to campaign at once (thesis §3.10)."""
        self._send(MT.TIMEOUT_NOW, to)
        if not self.promotable():
            # We are no longer a voter: the new leader's configuration may not include us,
            # so no message of its term would ever reach us; step down now. The transferee
            # has our whole log, so it can win without us.
            self._become_follower(self.term, NONE)

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    # --- stepping: candidates ---------------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        kind = m.type
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if kind == MT.PROP:
            self._trace(f"{self.id:x} no leader at term {self.term}; dropping proposal")
            raise ProposalDroppedError()
        if kind in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            # A leader of our term exists (m.term == self.term here): follow it (§5.2).
            self._become_follower(m.term, m.from_)
            if kind == MT.APP:
                self._handle_append_entries(m)
            elif kind == MT.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif kind == my_resp:
            result = self._poll(m.from_, kind, not m.reject)
            if result == VoteResult.WON and not self.promotable():
                # Our own removal or demotion was applied mid-campaign: a node outside the
                # voters must not lead (it has no progress of its own to track).
                self._trace(f"{self.id:x} won an election it may no longer take; stepping down")
                self._become_follower(self.term, NONE)
            elif result == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self.campaign(CampaignType.ELECTION)
                else:
                    self._become_leader()
                    self.bcast_append()
            elif result == VoteResult.LOST:
                # A pre-candidate that lost stays at its term; a candidate keeps its vote.
                self._become_follower(self.term, NONE)
        elif kind == MT.TIMEOUT_NOW:
            self._trace(f"{self.id:x} [term {self.term}] ignored MsgTimeoutNow from {m.from_:x}")

    # --- stepping: followers ----------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        kind = m.type
        if kind == MT.PROP:
            if self.lead == NONE:
                self._trace(f"{self.id:x} no leader at term {self.term}; dropping proposal")
                raise ProposalDroppedError()
            if self.disable_proposal_forwarding:
                raise ProposalDroppedError()
            self._forward(m, self.lead)
        elif kind == MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append_entries(m)
        elif kind == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif kind == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif kind == MT.TRANSFER_LEADER:
            if self.lead == NONE:
                self._trace(f"{self.id:x} no leader at term {self.term}; dropping leader transfer")
                return
            self.msgs.append(Message(type=MT.TRANSFER_LEADER, to=self.lead, from_=m.from_, term=0))
        elif kind == MT.TIMEOUT_NOW:
            if self.promotable():
                self._trace(f"{self.id:x} [term {self.term}] received MsgTimeoutNow; campaigning")
                # Campaign at once, skipping PreVote: the leader asked us to (thesis §3.10).
                self.campaign(CampaignType.TRANSFER)
            else:
                self._trace(f"{self.id:x} received MsgTimeoutNow but is not promotable")
        elif kind == MT.READ_INDEX:
            if self.lead == NONE:
                self._trace(
                    f"{self.id:x} no leader at term {self.term}; dropping index reading msg"
                )
                return
            self._forward(m, self.lead)
        elif kind == MT.READ_INDEX_RESP:
            if len(m.entries) != 1:
                self._trace(f"{self.id:x} invalid format of MsgReadIndexResp from {m.from_:x}")
                return
            self.read_states.append(ReadState(index=m.index, request_ctx=m.entries[0].data))

    def _handle_append_entries(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            # Everything up to our commit index matches the leader's log already.
            self._send(MT.APP_RESP, m.from_, index=log.committed)
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(MT.APP_RESP, m.from_, index=last_new)
            return
        # §5.3: reject, with a hint that lets the leader skip a whole term of entries at once
        # (the optimization sketched at the end of §5.3).
        hint_index = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        hint_term = log.term_or_zero(hint_index)
        self._trace(
            f"{self.id:x} [logterm: {log.term_or_zero(m.index)}, index: {m.index}] rejected "
            f"MsgApp [logterm: {m.log_term}, index: {m.index}] from {m.from_:x}"
        )
        self._send(
            MT.APP_RESP,
            m.from_,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        self._send(MT.HEARTBEAT_RESP, m.from_, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        if snap is None:
            return
        if self.restore(snap):
            self._trace(
                f"{self.id:x} [commit: {self.raft_log.committed}] restored snapshot "
                f"[index: {snap.metadata.index}, term: {snap.metadata.term}]"
            )
            self._send(MT.APP_RESP, m.from_, index=self.raft_log.last_index())
        else:
            self._trace(
                f"{self.id:x} [commit: {self.raft_log.committed}] ignored snapshot "
                f"[index: {snap.metadata.index}, term: {snap.metadata.term}]"
            )
            self._send(MT.APP_RESP, m.from_, index=self.raft_log.committed)

    def restore(self, snap: Snapshot) -> bool:
        """Replace our log and configuration by a snapshot; False if it is not newer."""
        meta = snap.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a leader sends snapshots, so we should be following it already; this is a
            # defensive step aside (as etcd does).
            self._become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        members = (cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next)
        if not any(self.id in ids for ids in members):
            self._trace(f"{self.id:x} attempted to restore snapshot but it is not in the ConfState")
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We have the snapshot's last entry: our log already contains it; fast-forward.
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(snap)
        self.prs = ProgressTracker(self.prs.max_inflight)
        cfg, prs = restore(Changer(self.prs, self.raft_log.last_index()), cs)
        self.switch_to_config(cfg, prs)
        pr = self.prs.progress[self.id]
        pr.maybe_update(pr.next - 1)
        return True

    # --- membership -------------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        changer = Changer(self.prs, self.raft_log.last_index())
        if cc.leave_joint():
            cfg, prs = changer.leave_joint()
        else:
            auto_leave, joint = _enter_joint(cc)
            if joint:
                cfg, prs = changer.enter_joint(auto_leave, list(cc.changes))
            else:
                cfg, prs = changer.simple(list(cc.changes))
        return self.switch_to_config(cfg, prs)

    def switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        """Adopt a new configuration; a leader commits and replicates under the new quorum."""
        self.prs.config = cfg
        self.prs.progress = prs
        self.sole_voter = cfg.voters.ids() == {self.id}
        self._trace(f"{self.id:x} switched to configuration {cfg}")
        cs = self.prs.conf_state()
        pr = self.prs.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        # The quorum changed: entries may be committed now, and new members need the log.
        if self.maybe_commit():
            self.bcast_append()
        else:
            for node_id in self._peers():
                self.maybe_send_append(node_id, False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.prs.progress:
            self.abort_leader_transfer()
        if pr is None or self.is_learner:
            self._hand_over_leadership()
        return cs
