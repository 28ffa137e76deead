"""A front-end's auth view: the feed's AUTH_CHANGED flag, set on the record of any batch that
changed users, roles or the enabled flag (AuthEnable too, which moves no revision), sent after
the batch commits and before its waiters are resolved; and a front-end's replica that reloads
its view from the file when the flag comes.

LMDB refuses to open one file twice in a process, so the front-end's replica runs in a child
process, as it does in a front-end, and answers over a pipe."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from etcdpy import errors
from etcdpy.auth.info import AuthInfo
from etcdpy.auth.store import AuthStore
from etcdpy.auth.tokens import SimpleTokens
from etcdpy.config import ServerConfig, parse_url
from etcdpy.corelink.feed import AUTH_CHANGED, HEADER, FeedBuilder, decode_feed
from etcdpy.corelink.replica_feed import ReplicaFeed
from etcdpy.frontend.replica import FrontendReplica
from etcdpy.mvcc.backend import AUTH_USERS, Backend
from etcdpy.pb.authpb import auth_pb2 as authpb
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.raft.types import StateType
from etcdpy.server.etcd_server import EtcdServer
from etcdpy.server.wait import Wait
from etcdpy.testing.processes import free_port

MAP_SIZE = 64 * 1024 * 1024


def _clock() -> float:
    return 0.0


def test_the_auth_flag_round_trips_alone_and_with_others() -> None:
    builder = FeedBuilder()
    assert not builder
    builder.mark_auth_changed()
    assert builder  # a record goes out even without a change of a key
    update = decode_feed(builder.take(3, 1, 1, 1, is_learner=True))
    assert update.auth_changed and update.is_learner and not update.replaced
    assert update.ops == []
    assert not builder  # taken: the next record has no flag
    assert not decode_feed(builder.take(3, 1, 1, 1)).auth_changed
    builder.mark_auth_changed()
    builder.mark_replaced()
    both = decode_feed(builder.take(4, 1, 1, 1))
    assert both.auth_changed and both.replaced


class Collector:
    def __init__(self) -> None:
        self.records: list[bytes] = []

    def send_feed(self, record: bytes) -> None:
        self.records.append(record)


def _flags(record: bytes) -> int:
    flags: int = HEADER.unpack_from(record, 0)[-1]
    return flags


def test_every_auth_change_flags_the_feed_auth_enable_too(tmp_path: Path) -> None:
    async def body() -> None:
        store = AuthStore(Backend(tmp_path / "db", map_size=MAP_SIZE), SimpleTokens(0, _clock))
        feed = ReplicaFeed(lambda: (1, 1, 1, 1, False))
        store.on_change = lambda revision: feed.on_auth_changed()
        collector = Collector()
        feed.on_auth_changed()  # nobody subscribed: nothing collected
        feed.flush()
        feed.subscribers.add(collector)
        changes: tuple[Callable[[], None], ...] = (
            lambda: store.user_add(pb.AuthUserAddRequest(name="root", hashedPassword="x")),
            lambda: store.user_grant_role(pb.AuthUserGrantRoleRequest(user="root", role="root")),
            store.auth_enable,  # leaves the revision as it is
        )
        for change in changes:
            revision = store.revision
            change()
            feed.flush()
            assert len(collector.records) == 1
            assert _flags(collector.records.pop()) & AUTH_CHANGED
        assert store.revision == revision  # AuthEnable moved no revision, yet was told
        store.status()  # a read changes nothing: no record
        feed.flush()
        assert collector.records == []

    asyncio.run(body())


def _config(data_dir: Path) -> ServerConfig:
    peer = (parse_url(f"http://127.0.0.1:{free_port()}"),)
    return ServerConfig(
        name="solo",
        data_dir=str(data_dir),
        listen_peer_urls=peer,
        initial_advertise_peer_urls=peer,
        initial_cluster={"solo": peer},
    )


def test_the_flagged_record_leaves_after_the_commit_and_before_the_waiter_is_resolved(
    tmp_path: Path,
) -> None:
    """EtcdServer.apply: commit, feed, then the OK (so a revoke reaches every front-end
    before its client hears of it)."""
    seen: list[tuple[str, Any]] = []

    async def body() -> None:
        server = EtcdServer(_config(tmp_path / "solo"))

        class RecordingWait(Wait):
            def resolve(self, request_id: int, result: Any) -> None:
                seen.append(("resolved", request_id))
                super().resolve(request_id, result)

        server._wait = RecordingWait()
        await server.start()
        try:
            for _ in range(200):
                if server.role == StateType.LEADER:
                    break
                await asyncio.sleep(0.05)

            class Subscriber:
                def send_feed(self, record: bytes) -> None:
                    committed = server.backend.current_batch is None
                    with server.backend.read() as tx:  # what another process reads now
                        users = [key for key, _ in tx.items(AUTH_USERS)]
                    seen.append(("feed", (_flags(record) & AUTH_CHANGED, committed, users)))

            server.feed.subscribers.add(Subscriber())
            add = pb.AuthUserAddRequest(name="eve", hashedPassword="x")
            await server.propose(internalpb.InternalRaftRequest(auth_user_add=add))
        finally:
            await asyncio.wait_for(server.stop(), 10)

    asyncio.run(body())
    feeds = [i for i, (kind, _) in enumerate(seen) if kind == "feed"]
    flagged = [i for i in feeds if seen[i][1][0]]
    assert flagged, seen
    first = flagged[0]
    assert seen[first][1][1:] == (True, [b"eve"])  # committed: the file holds the new user
    assert [kind for kind, _ in seen[first + 1 :]] == ["resolved"]


def _view_main(path: str, conn: Connection) -> None:
    replica = FrontendReplica(path, MAP_SIZE, tokens=SimpleTokens(0, _clock))
    while True:
        command, argument = conn.recv()
        if command == "start":
            replica.start(argument)
        elif command == "feed":
            replica.on_feed(argument)
        else:
            replica.close()
            return
        view = replica.auth
        assert view is not None
        try:
            view.check_range(AuthInfo("alice", view.revision), b"k", b"")
            verdict = ""
        except errors.EtcdError as exc:
            verdict = type(exc).__name__
        conn.send((view.enabled, view.revision, verdict))


class ViewProcess:
    def __init__(self, path: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_view_main, args=(str(path), child))
        self._process.start()

    def ask(self, command: str, argument: bytes) -> tuple[bool, int, str]:
        self._conn.send((command, argument))
        answer: tuple[bool, int, str] = self._conn.recv()
        return answer

    def close(self) -> None:
        self._conn.send(("stop", b""))
        self._process.join(10)


def _header(flagged: bool) -> bytes:
    builder = FeedBuilder()
    if flagged:
        builder.mark_auth_changed()
    return builder.take(1, 1, 1, 1)


def test_a_front_ends_view_reloads_when_the_flag_comes(tmp_path: Path) -> None:
    writer = AuthStore(Backend(tmp_path / "db", map_size=MAP_SIZE), SimpleTokens(0, _clock))
    for name in ("root", "alice"):
        writer.user_add(pb.AuthUserAddRequest(name=name, hashedPassword="x"))
    writer.user_grant_role(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    writer.role_add(pb.AuthRoleAddRequest(name="r"))
    perm = authpb.Permission(permType=authpb.Permission.READ, key=b"k")
    writer.role_grant_permission(pb.AuthRoleGrantPermissionRequest(name="r", perm=perm))
    writer.user_grant_role(pb.AuthUserGrantRoleRequest(user="alice", role="r"))
    view = ViewProcess(tmp_path / "db")
    try:
        assert view.ask("start", _header(False)) == (False, writer.revision, "")
        writer.auth_enable()
        assert view.ask("feed", _header(False)) == (False, writer.revision, "")  # not told
        assert view.ask("feed", _header(True)) == (True, writer.revision, "")
        writer.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="alice", role="r"))
        assert view.ask("feed", _header(True)) == (True, writer.revision, "PermissionDenied")
        writer.user_grant_role(pb.AuthUserGrantRoleRequest(user="alice", role="r"))
        replaced = FeedBuilder()
        replaced.mark_replaced()  # a new file: the view is read again too
        assert view.ask("feed", replaced.take(1, 1, 1, 1)) == (True, writer.revision, "")
    finally:
        view.close()
