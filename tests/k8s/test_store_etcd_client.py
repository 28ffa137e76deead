"""The store's etcd client against an etcd 3.4 with auth on: the token in etcd's metadata, and
one re-authentication when etcd no longer knows the token (its simple tokens die with a
restart)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from etcdpy.k8s import errors
from etcdpy.k8s.etcd import Connection, EtcdClient
from etcdpy.k8s.store import ObjectStore
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc as stubs
from etcdpy.testing.processes import MemberProcess, etcd_member
from tests.external_tools import require_tool
from tests.k8s.store_support import pod

PASSWORD = "s3cret-pw"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[MemberProcess]:
    require_tool("etcd")
    member = etcd_member(tmp_path, "auth")
    member.start()
    try:
        with member.client_channel() as channel:
            auth = stubs.AuthStub(channel)
            auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=PASSWORD), timeout=5)
            auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=5)
            auth.UserGrantRole(
                rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=5
            )
            auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=5)
        yield member
    finally:
        member.stop()


def test_auth_token_and_one_reauthentication(secured: MemberProcess) -> None:
    with pytest.raises(errors.StatusError) as anonymous:
        EtcdClient.connect(secured.endpoint).range(b"/x")
    assert "user name is empty" in anonymous.value.message
    with pytest.raises(errors.StatusError) as wrong:
        EtcdClient.connect(secured.endpoint, user="root", password="wrong").range(b"/x")
    assert "authentication failed, invalid user ID or password" in wrong.value.message
    with ObjectStore.connect(f"http://{secured.endpoint}", user=f"root:{PASSWORD}") as store:
        store.create(pod("a"))
        token = store.client._auth.token  # private: the only way to see the re-authentication
        assert token
        secured.stop()
        secured.start(wait=False)
        deadline = time.monotonic() + 20
        while True:  # until the member serves again; then the old token is refused once
            try:
                assert store.get("pods", "a").metadata.name == "a"
                break
            except errors.ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert store.client._auth.token not in ("", token)


def test_connection_settings_and_unreachable_endpoints() -> None:
    connection = Connection.of("127.0.0.1:1", user="root:pw", timeout=0.5)
    assert (connection.user, connection.password) == ("root", "pw")
    with pytest.raises(errors.ServiceUnavailable):
        EtcdClient(connection).range(b"/x")
    with pytest.raises(errors.BadRequest):
        Connection.of(" , ")
