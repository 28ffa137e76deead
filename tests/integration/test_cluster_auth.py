"""Auth across a three-member etcdpy cluster: what one member learns, every member enforces.

A token made by one member works on the others (a simple token is replicated through the log,
as etcd 3.4 does; a JWT is checked by any member with the public key), a user's role revoked
through one member is refused on every member once the revoke is acknowledged, and nothing a
refused user tried was written anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from etcdpy.pb.authpb import auth_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc as rpc
from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from tests.integration.jwt_keys import jwt_auth_token

pytestmark = pytest.mark.integration

Stubs = tuple[rpc.KVStub, rpc.AuthStub]


def _token_flags(kind: str, tmp: Path) -> list[str]:
    return [] if kind == "simple" else ["--auth-token", jwt_auth_token(tmp)]


@pytest.fixture(params=["simple", "jwt"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ProcessCluster]:
    c = ProcessCluster.etcdpy(tmp_path, extra_args=_token_flags(request.param, tmp_path))
    with c:
        c.leader()
        yield c


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def _set_up(member: ClusterMember) -> None:
    """root, and alice who may read and write /app/; auth on."""
    with grpc.insecure_channel(member.endpoint) as channel:
        auth = rpc.AuthStub(channel)
        auth.UserAdd(pb.AuthUserAddRequest(name="root", password="rootpw"), timeout=10)
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        auth.RoleAdd(pb.AuthRoleAddRequest(name="app"), timeout=10)
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"/app/",
                                   range_end=b"/app0")  # fmt: skip
        auth.RoleGrantPermission(pb.AuthRoleGrantPermissionRequest(name="app", perm=perm),
                                 timeout=10)  # fmt: skip
        auth.UserAdd(pb.AuthUserAddRequest(name="alice", password="alicepw"), timeout=10)
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user="alice", role="app"), timeout=10)
        auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)


def _login(member: ClusterMember, name: str, password: str) -> str:
    with grpc.insecure_channel(member.endpoint) as channel:
        request = pb.AuthenticateRequest(name=name, password=password)
        token: str = rpc.AuthStub(channel).Authenticate(request, timeout=10).token
        return token


def _call(method: Callable[..., object], request: object, md: object) -> Callable[[], object]:
    return lambda: method(request, metadata=md, timeout=5)


def _succeeds(call: Callable[[], object]) -> Callable[[], bool]:
    return lambda: _code(call) is None


def _code(call: Callable[[], object]) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return None


def test_a_token_from_one_member_works_on_every_member_and_a_revoke_holds_everywhere(
    cluster: ProcessCluster,
) -> None:
    first, *others = cluster.members
    _set_up(first)
    token = _login(first, "alice", "alicepw")
    md = (("token", token),)
    channels = [grpc.insecure_channel(m.endpoint) for m in cluster.members]
    try:
        kvs = [rpc.KVStub(ch) for ch in channels]
        for i, kv in enumerate(kvs):  # written through every member with the first's token

            def put(kv: rpc.KVStub = kv, i: int = i) -> bool:
                request = pb.PutRequest(key=f"/app/{i}".encode(), value=b"v")
                return _code(lambda: kv.Put(request, metadata=md, timeout=5)) is None

            _eventually(put)  # a follower knows a simple token once it applied the login
        other_put = pb.PutRequest(key=b"/other", value=b"x")
        for kv in kvs:
            got = kv.Range(pb.RangeRequest(key=b"/app/", range_end=b"/app0"), metadata=md,
                           timeout=5)  # fmt: skip
            assert [x.key for x in got.kvs] == [b"/app/0", b"/app/1", b"/app/2"]
            assert _code(_call(kv.Put, other_put, md)) == grpc.StatusCode.PERMISSION_DENIED
        root_md = (("token", _login(others[0], "root", "rootpw")),)
        revoke = pb.AuthUserRevokeRoleRequest(name="alice", role="app")
        rpc.AuthStub(channels[1]).UserRevokeRole(revoke, metadata=root_md, timeout=10)
        # acknowledged: refused on every member (a JWT made before the revoke is stale: etcd's
        # "revision of auth store is old"; a simple token's user has lost the role)
        refused = {_code(_call(kv.Range, pb.RangeRequest(key=b"/app/0"), md)) for kv in kvs}
        assert refused <= {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INVALID_ARGUMENT}
        assert None not in refused
        root_md = (("token", _login(others[1], "root", "rootpw")),)  # after the revoke
        for kv in kvs:  # nothing refused was written, on any member
            request = pb.RangeRequest(key=b"/other", serializable=True)
            _eventually(_succeeds(_call(kv.Range, request, root_md)))  # the login is applied
            assert kv.Range(request, metadata=root_md, timeout=5).count == 0
    finally:
        for ch in channels:
            ch.close()
