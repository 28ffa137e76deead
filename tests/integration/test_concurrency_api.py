"""The concurrency API (v3lockpb.Lock, v3electionpb.Election) of a real member: grpcio clients
of the generated stubs, Debian's ``etcdctl lock`` and ``etcdctl elect`` on the same names, the
JSON gateway's routes, and etcd 3.4's own answers to the same error cases."""

from __future__ import annotations

import base64
import http.client
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.pb.v3electionpb import v3election_pb2 as epb
from etcdpy.pb.v3electionpb import v3election_pb2_grpc
from etcdpy.pb.v3lockpb import v3lock_pb2 as lpb
from etcdpy.pb.v3lockpb import v3lock_pb2_grpc
from etcdpy.testing.processes import MemberProcess, etcd_member
from tests.external_tools import eventually, require_tool
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration

TIMEOUT = 20.0  # every call and wait is bounded by this
STILL_WAITING = 0.7  # how long a call must stay blocked to count as waiting
UNKNOWN = grpc.StatusCode.UNKNOWN


class Clients:
    def __init__(self, channel: grpc.Channel) -> None:
        self.lock = v3lock_pb2_grpc.LockStub(channel)
        self.election = v3election_pb2_grpc.ElectionStub(channel)
        self.kv = rpc_pb2_grpc.KVStub(channel)
        self.lease = rpc_pb2_grpc.LeaseStub(channel)

    def grant(self, ttl: int = 60) -> int:
        return int(self.lease.LeaseGrant(pb.LeaseGrantRequest(TTL=ttl), timeout=TIMEOUT).ID)

    def keys(self, prefix: bytes) -> list[bytes]:
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        resp = self.kv.Range(pb.RangeRequest(key=prefix, range_end=end), timeout=TIMEOUT)
        return [kv.key for kv in resp.kvs]


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    """One member for the module: the tests hold locks and leadership under names of their own,
    and each starts with no key and no lease."""
    return wiped(module_etcdpy_server)


@pytest.fixture
def clients(etcdpy_server: MemberProcess) -> Iterator[Clients]:
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        yield Clients(channel)


def _error(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err: Any = info.value
    return err.code(), err.details()


def _still_waiting(future: Any) -> bool:
    time.sleep(STILL_WAITING)
    return not future.done()


# -- Lock --------------------------------------------------------------------------------------


def test_second_lock_waits_until_unlock(clients: Clients) -> None:
    first, second = clients.grant(), clients.grant()
    held = clients.lock.Lock(lpb.LockRequest(name=b"job", lease=first), timeout=TIMEOUT)
    assert held.key == b"job/%x" % first  # clientv3/concurrency's key: NAME/<lease in hex>
    # The same lease again is the same acquisition (no wait, same key).
    again = clients.lock.Lock(lpb.LockRequest(name=b"job", lease=first), timeout=TIMEOUT)
    assert again.key == held.key
    waiting = clients.lock.Lock.future(lpb.LockRequest(name=b"job", lease=second), timeout=TIMEOUT)
    try:
        assert _still_waiting(waiting)
        assert clients.keys(b"job/") == [held.key, b"job/%x" % second]  # in line, by create rev
        unlocked = clients.lock.Unlock(lpb.UnlockRequest(key=held.key), timeout=TIMEOUT)
        got = waiting.result(timeout=TIMEOUT)
    finally:
        waiting.cancel()
    assert got.key == b"job/%x" % second
    assert got.header.revision >= unlocked.header.revision
    assert clients.keys(b"job/") == [got.key]


def test_revoked_lease_releases_the_lock(clients: Clients) -> None:
    first, second = clients.grant(), clients.grant()
    clients.lock.Lock(lpb.LockRequest(name=b"r", lease=first), timeout=TIMEOUT)
    waiting = clients.lock.Lock.future(lpb.LockRequest(name=b"r", lease=second), timeout=TIMEOUT)
    try:
        assert _still_waiting(waiting)
        clients.lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=first), timeout=TIMEOUT)
        assert waiting.result(timeout=TIMEOUT).key == b"r/%x" % second
    finally:
        waiting.cancel()


def test_a_lock_whose_client_gives_up_deletes_its_key(clients: Clients) -> None:
    holder = clients.grant()
    clients.lock.Lock(lpb.LockRequest(name=b"g", lease=holder), timeout=TIMEOUT)
    code, _ = _error(lambda: clients.lock.Lock(lpb.LockRequest(name=b"g", lease=0), timeout=1.0))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    # etcd's Mutex.Lock deletes its key when its wait fails: only the holder's stays.
    eventually(lambda: clients.keys(b"g/") == [b"g/%x" % holder], TIMEOUT, "the key deleted")


def test_a_campaign_whose_client_gives_up_resigns(clients: Clients) -> None:
    leader = clients.grant()
    clients.election.Campaign(
        epb.CampaignRequest(name=b"c", lease=leader, value=b"l"), timeout=TIMEOUT
    )
    gives_up = epb.CampaignRequest(name=b"c", lease=clients.grant(), value=b"w")
    code, _ = _error(lambda: clients.election.Campaign(gives_up, timeout=1.0))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    eventually(lambda: clients.keys(b"c/") == [b"c/%x" % leader], TIMEOUT, "the key deleted")


def test_lock_with_lease_zero_gets_a_lease_of_sixty_seconds(clients: Clients) -> None:
    resp = clients.lock.Lock(lpb.LockRequest(name=b"z"), timeout=TIMEOUT)
    lease = int(resp.key.split(b"/")[1], 16)
    ttl = clients.lease.LeaseTimeToLive(pb.LeaseTimeToLiveRequest(ID=lease), timeout=TIMEOUT)
    assert ttl.grantedTTL == 60 and 0 < ttl.TTL <= 60


def test_lock_errors(clients: Clients) -> None:
    missing = _error(lambda: clients.lock.Lock(lpb.LockRequest(name=b"x", lease=12345)))
    assert missing == (UNKNOWN, "etcdserver: requested lease not found")
    empty = _error(lambda: clients.lock.Unlock(lpb.UnlockRequest()))
    assert empty == (UNKNOWN, "etcdserver: key is not provided")
    # Unlocking a key that is not there is not an error.
    clients.lock.Unlock(lpb.UnlockRequest(key=b"x/1"), timeout=TIMEOUT)


# -- Election ----------------------------------------------------------------------------------


class Observer:
    """An Observe stream read by a thread; values land in a queue."""

    def __init__(self, clients: Clients, name: bytes) -> None:
        self.call = clients.election.Observe(epb.LeaderRequest(name=name), timeout=TIMEOUT)
        self.seen: queue.Queue[tuple[bytes, bytes]] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for resp in self.call:
                self.seen.put((resp.kv.key, resp.kv.value))
        except grpc.RpcError:
            pass

    def next(self) -> tuple[bytes, bytes]:
        return self.seen.get(timeout=TIMEOUT)

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(TIMEOUT)


def test_campaign_proclaim_observe_resign(clients: Clients) -> None:
    election = clients.election
    a, b = clients.grant(), clients.grant()
    observer = Observer(clients, b"e")
    try:
        won = election.Campaign(
            epb.CampaignRequest(name=b"e", lease=a, value=b"a1"), timeout=TIMEOUT
        )
        leader = won.leader
        assert (leader.name, leader.key, leader.lease) == (b"e", b"e/%x" % a, a)
        assert leader.rev == won.header.revision
        assert observer.next() == (leader.key, b"a1")
        got = election.Leader(epb.LeaderRequest(name=b"e"), timeout=TIMEOUT)
        assert (got.kv.key, got.kv.value, got.kv.create_revision) == (leader.key, b"a1", leader.rev)

        contender = election.Campaign.future(
            epb.CampaignRequest(name=b"e", lease=b, value=b"b1"), timeout=TIMEOUT
        )
        try:
            assert _still_waiting(contender)
            election.Proclaim(epb.ProclaimRequest(leader=leader, value=b"a2"), timeout=TIMEOUT)
            assert observer.next() == (leader.key, b"a2")
            election.Resign(epb.ResignRequest(leader=leader), timeout=TIMEOUT)
            next_leader = contender.result(timeout=TIMEOUT).leader
        finally:
            contender.cancel()
        assert next_leader.key == b"e/%x" % b
        assert observer.next() == (next_leader.key, b"b1")
        got = election.Leader(epb.LeaderRequest(name=b"e"), timeout=TIMEOUT)
        assert got.kv.value == b"b1"
        # The old leader's key no longer leads.
        stale = epb.ProclaimRequest(leader=leader, value=b"a3")
        assert _error(lambda: election.Proclaim(stale, timeout=TIMEOUT)) == (
            UNKNOWN,
            "election: not leader",
        )
        election.Resign(epb.ResignRequest(leader=leader), timeout=TIMEOUT)  # a no-op
        assert election.Leader(epb.LeaderRequest(name=b"e"), timeout=TIMEOUT).kv.value == b"b1"
    finally:
        observer.close()


def test_observe_waits_for_a_first_leader(clients: Clients) -> None:
    observer = Observer(clients, b"later")
    try:
        time.sleep(STILL_WAITING)
        assert observer.seen.empty()
        lease = clients.grant()
        clients.election.Campaign(
            epb.CampaignRequest(name=b"later", lease=lease, value=b"v"), timeout=TIMEOUT
        )
        assert observer.next() == (b"later/%x" % lease, b"v")
    finally:
        observer.close()


def test_election_errors(clients: Clients) -> None:
    election = clients.election
    assert _error(lambda: election.Leader(epb.LeaderRequest(name=b"none"), timeout=TIMEOUT)) == (
        UNKNOWN,
        "election: no leader",
    )
    no_key = (UNKNOWN, '"leader" field must be provided')
    assert _error(lambda: election.Proclaim(epb.ProclaimRequest(value=b"v"))) == no_key
    assert _error(lambda: election.Resign(epb.ResignRequest())) == no_key
    gone = epb.CampaignRequest(name=b"e", lease=999, value=b"v")
    assert _error(lambda: election.Campaign(gone, timeout=TIMEOUT)) == (
        UNKNOWN,
        "etcdserver: requested lease not found",
    )


# -- etcdctl lock and etcdctl elect on the same names ------------------------------------------


class EtcdctlProcess:
    """A long-running ``etcdctl`` (lock, elect) whose output is read line by line."""

    def __init__(self, endpoint: str, *args: str) -> None:
        binary = require_tool("etcdctl")
        env = dict(os.environ, ETCDCTL_API="3")
        env.pop("ETCDCTL_ENDPOINTS", None)
        self.proc = subprocess.Popen(
            [binary, f"--endpoints={endpoint}", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line(self) -> str:
        return self.lines.get(timeout=TIMEOUT)

    def stop(self) -> int:
        """SIGINT (etcdctl unlocks or resigns), then SIGKILL if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(TIMEOUT)
        self._thread.join(TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def test_a_lock_held_by_the_service_makes_etcdctl_lock_wait(
    etcdpy_server: MemberProcess, clients: Clients
) -> None:
    held = clients.lock.Lock(lpb.LockRequest(name=b"shared", lease=clients.grant()))
    ctl = EtcdctlProcess(etcdpy_server.endpoint, "lock", "shared", "echo", "got-it")
    try:
        time.sleep(STILL_WAITING * 2)
        assert ctl.proc.poll() is None and ctl.lines.empty()
        clients.lock.Unlock(lpb.UnlockRequest(key=held.key), timeout=TIMEOUT)
        assert ctl.line() == "got-it"
        assert ctl.proc.wait(TIMEOUT) == 0
    finally:
        ctl.stop()
    assert clients.keys(b"shared/") == []  # etcdctl unlocked after its command


def test_a_lock_held_by_etcdctl_makes_the_service_wait(
    etcdpy_server: MemberProcess, clients: Clients
) -> None:
    ctl = EtcdctlProcess(etcdpy_server.endpoint, "lock", "held")
    try:
        key = ctl.line()  # etcdctl prints its key once it holds the lock
        assert key.startswith("held/")
        waiting = clients.lock.Lock.future(lpb.LockRequest(name=b"held"), timeout=TIMEOUT)
        try:
            assert _still_waiting(waiting)
            assert ctl.stop() == 0  # etcdctl unlocks on SIGINT
            assert waiting.result(timeout=TIMEOUT).key.startswith(b"held/")
        finally:
            waiting.cancel()
    finally:
        ctl.stop()


def test_etcdctl_elect_leader_is_seen_by_the_service(
    etcdpy_server: MemberProcess, clients: Clients
) -> None:
    ctl = EtcdctlProcess(etcdpy_server.endpoint, "elect", "vote", "proposal-x")
    try:
        key, value = ctl.line(), ctl.line()  # printed once elected
        assert (key.split("/")[0], value) == ("vote", "proposal-x")
        got = clients.election.Leader(epb.LeaderRequest(name=b"vote"), timeout=TIMEOUT)
        assert (got.kv.key, got.kv.value) == (key.encode(), b"proposal-x")
        contender = clients.election.Campaign.future(
            epb.CampaignRequest(name=b"vote", lease=clients.grant(), value=b"mine"),
            timeout=TIMEOUT,
        )
        try:
            assert _still_waiting(contender)
            assert ctl.stop() == 0  # etcdctl resigns on SIGINT
            assert contender.result(timeout=TIMEOUT).leader.name == b"vote"
        finally:
            contender.cancel()
    finally:
        ctl.stop()
    got = clients.election.Leader(epb.LeaderRequest(name=b"vote"), timeout=TIMEOUT)
    assert got.kv.value == b"mine"


# -- the JSON gateway --------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(member: MemberProcess, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=TIMEOUT)
    try:
        conn.request("POST", path, body=json.dumps(payload).encode())
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_gateway_routes(etcdpy_server: MemberProcess, clients: Clients) -> None:
    status, locked = post(etcdpy_server, "/v3/lock/lock", {"name": b64(b"gw")})
    assert status == 200 and base64.b64decode(locked["key"]).startswith(b"gw/")
    status, body = post(etcdpy_server, "/v3beta/lock/unlock", {"key": locked["key"]})
    assert status == 200 and "header" in body
    assert clients.keys(b"gw/") == []

    status, body = post(etcdpy_server, "/v3/election/leader", {"name": b64(b"gwe")})
    assert (status, body) == (
        500,
        {"error": "election: no leader", "message": "election: no leader", "code": 2},
    )
    lease = clients.grant()
    campaign = {"name": b64(b"gwe"), "lease": str(lease), "value": b64(b"one")}
    status, won = post(etcdpy_server, "/v3/election/campaign", campaign)
    assert status == 200
    leader = won["leader"]
    assert base64.b64decode(leader["key"]) == b"gwe/%x" % lease and leader["lease"] == str(lease)
    proclaim = {"leader": leader, "value": b64(b"two")}
    assert post(etcdpy_server, "/v3/election/proclaim", proclaim)[0] == 200
    status, got = post(etcdpy_server, "/v3/election/leader", {"name": b64(b"gwe")})
    assert status == 200 and base64.b64decode(got["kv"]["value"]) == b"two"

    # Observe: one JSON object per line, for as long as the connection stays open.
    conn = http.client.HTTPConnection("127.0.0.1", etcdpy_server.client_port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/v3/election/observe", body=json.dumps({"name": b64(b"gwe")}))
        resp = conn.getresponse()
        assert resp.status == 200
        first = json.loads(resp.readline())
        assert base64.b64decode(first["result"]["kv"]["value"]) == b"two"
    finally:
        conn.close()

    assert post(etcdpy_server, "/v3/election/resign", {"leader": leader})[0] == 200
    status, body = post(etcdpy_server, "/v3/election/proclaim", proclaim)
    assert (status, body["code"], body["message"]) == (500, 2, "election: not leader")


# -- the same error cases against etcd 3.4 -----------------------------------------------------


def _error_cases(endpoint: str) -> list[tuple[str, str, str]]:
    """(case, code, message) of each error case; the same requests on any member."""
    out: list[tuple[str, str, str]] = []
    with grpc.insecure_channel(endpoint) as channel:
        c = Clients(channel)
        leader = epb.LeaderKey(name=b"e", key=b"e/1", rev=5, lease=7)
        cases: list[tuple[str, Any]] = [
            ("lock, lease gone", lambda: c.lock.Lock(lpb.LockRequest(name=b"n", lease=12345))),
            ("unlock, no key", lambda: c.lock.Unlock(lpb.UnlockRequest())),
            ("leader, none", lambda: c.election.Leader(epb.LeaderRequest(name=b"e"))),
            ("proclaim, no leader", lambda: c.election.Proclaim(epb.ProclaimRequest())),
            ("resign, no leader", lambda: c.election.Resign(epb.ResignRequest())),
            (
                "proclaim, not leader",
                lambda: c.election.Proclaim(epb.ProclaimRequest(leader=leader, value=b"v")),
            ),
            (
                "campaign, lease gone",
                lambda: c.election.Campaign(epb.CampaignRequest(name=b"e", lease=99)),
            ),
        ]
        for case, call in cases:
            try:
                call()
                out.append((case, "OK", ""))
            except grpc.RpcError as exc:
                err: Any = exc
                out.append((case, err.code().name, err.details()))
    return out


def test_error_codes_and_messages_match_etcd(etcdpy_server: MemberProcess, tmp_path: Path) -> None:
    require_tool("etcd")
    etcd = etcd_member(tmp_path)
    etcd.start()
    try:
        expected = _error_cases(etcd.endpoint)
        expected_http = post(etcd, "/v3/election/leader", {"name": b64(b"none")})
    finally:
        etcd.stop()
    assert _error_cases(etcdpy_server.endpoint) == expected
    assert post(etcdpy_server, "/v3/election/leader", {"name": b64(b"none")}) == expected_http
