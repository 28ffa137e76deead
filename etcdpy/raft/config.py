"""The parameters of one raft node."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from etcdpy.raft.errors import ConfigError
from etcdpy.raft.storage import Storage
from etcdpy.raft.types import NONE, ReadOnlyOption


@dataclass
class Config:
    id: int
    storage: Storage
    rand: random.Random
    # Ticks without hearing from a leader before campaigning; the real timeout is drawn
    # from [election_tick, 2 * election_tick) so that split votes resolve (§5.2).
    election_tick: int = 10
    heartbeat_tick: int = 1
    # The last applied index, given on restart so that committed entries are not re-applied.
    applied: int = 0
    max_size_per_msg: int = 1024 * 1024
    max_committed_size_per_ready: int = 0  # 0 = same as max_size_per_msg
    max_uncommitted_entries_size: int = 0  # 0 = no limit
    max_inflight_msgs: int = 256
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    logger: Callable[[str], None] | None = None

    def validate(self) -> None:
        if self.id == NONE:
            raise ConfigError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ConfigError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigError("election tick must be greater than heartbeat tick")
        if self.storage is None:
            raise ConfigError("storage cannot be nil")
        if self.max_inflight_msgs <= 0:
            raise ConfigError("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise ConfigError(
                "CheckQuorum must be enabled when ReadOnlyOption is ReadOnlyLeaseBased"
            )
