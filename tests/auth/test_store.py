"""The auth store: etcd's rules and errors, its buckets as etcd keeps them, the auth revision
as etcd moves it, and the apply of the log's auth requests with etcd's admin checks."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from etcdpy import errors
from etcdpy.auth import apply as auth_apply
from etcdpy.auth.info import AuthInfo
from etcdpy.auth.store import AuthStore
from etcdpy.auth.tokens import SimpleTokens
from etcdpy.mvcc.backend import AUTH, AUTH_ROLES, AUTH_USERS, Backend
from etcdpy.pb.authpb import auth_pb2 as authpb
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

READ, WRITE, READWRITE = (
    authpb.Permission.READ,
    authpb.Permission.WRITE,
    authpb.Permission.READWRITE,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[Backend]:
    b = Backend(tmp_path / "db", map_size=64 << 20)
    yield b
    b.close()


@pytest.fixture
def store(backend: Backend) -> AuthStore:
    return AuthStore(backend, SimpleTokens(300, Clock()))


def add_user(store: AuthStore, name: str, *roles: str) -> None:
    store.user_add(pb.AuthUserAddRequest(name=name, hashedPassword="$2b$04$x"))
    for role in roles:
        store.user_grant_role(pb.AuthUserGrantRoleRequest(user=name, role=role))


def grant(store: AuthStore, role: str, kind: int, key: bytes, end: bytes = b"") -> None:
    perm = authpb.Permission(permType=cast(Any, kind), key=key, range_end=end)
    store.role_grant_permission(pb.AuthRoleGrantPermissionRequest(name=role, perm=perm))


def enable_with_root(store: AuthStore) -> None:
    add_user(store, "root", "root")
    store.auth_enable()


def test_a_new_store_is_at_revision_one_and_writes_it_with_its_first_change(
    store: AuthStore, backend: Backend
) -> None:
    assert (store.revision, store.enabled) == (1, False)
    with backend.read() as tx:
        assert tx.get(AUTH, b"authRevision") is None  # no page spent on an unchanged store
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    with backend.read() as tx:
        assert tx.get(AUTH, b"authRevision") == struct.pack(">Q", 2)


def test_buckets_hold_etcds_encoding(store: AuthStore, backend: Backend) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    grant(store, "r", READ, b"a", b"\0")
    enable_with_root(store)
    with backend.read() as tx:
        assert tx.get(AUTH, b"authEnabled") == b"\x01"
        user = authpb.User.FromString(tx.get(AUTH_USERS, b"root") or b"")
        role = authpb.Role.FromString(tx.get(AUTH_ROLES, b"r") or b"")
    assert (user.name, list(user.roles), user.password) == (b"root", ["root"], b"$2b$04$x")
    assert user.HasField("options")  # etcd always stores the options
    assert role.keyPermission[0] == authpb.Permission(permType=READ, key=b"a", range_end=b"\0")


def test_the_revision_moves_as_etcds(store: AuthStore) -> None:
    steps: list[tuple[Callable[[], object], int]] = [
        (lambda: add_user(store, "u"), 2),
        (lambda: store.role_add(pb.AuthRoleAddRequest(name="r")), 3),
        (lambda: store.user_grant_role(pb.AuthUserGrantRoleRequest(user="u", role="r")), 4),
        (lambda: store.user_grant_role(pb.AuthUserGrantRoleRequest(user="u", role="r")), 4),
        (lambda: grant(store, "r", READ, b"k"), 5),
        (lambda: add_user(store, "root", "root"), 7),
        (store.auth_enable, 7),  # enabling does not move it
        (store.auth_disable, 8),  # disabling does
        (lambda: store.role_delete(pb.AuthRoleDeleteRequest(role="r")), 9),
    ]
    for step, revision in steps:
        step()
        assert store.revision == revision


def test_everything_survives_a_reload(store: AuthStore, backend: Backend) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    grant(store, "r", READWRITE, b"k")
    add_user(store, "u", "r")
    enable_with_root(store)
    again = AuthStore(backend, SimpleTokens(300, Clock()))
    assert (again.enabled, again.revision) == (True, store.revision)
    assert again.user_get(pb.AuthUserGetRequest(name="u")).roles == ["r"]
    again.check_put(AuthInfo("u", again.revision), b"k")


def test_enable_needs_root_with_the_root_role(store: AuthStore) -> None:
    with pytest.raises(errors.RootUserNotExist):
        store.auth_enable()
    add_user(store, "root")
    with pytest.raises(errors.RootRoleNotExist):
        store.auth_enable()
    store.user_grant_role(pb.AuthUserGrantRoleRequest(user="root", role="root"))
    store.auth_enable()
    store.auth_enable()  # again: ignored
    assert store.enabled


def test_root_is_protected_while_enabled(store: AuthStore) -> None:
    enable_with_root(store)
    with pytest.raises(errors.InvalidAuthMgmt):
        store.user_delete(pb.AuthUserDeleteRequest(name="root"))
    with pytest.raises(errors.InvalidAuthMgmt):
        store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="root", role="root"))
    with pytest.raises(errors.InvalidAuthMgmt):
        store.role_delete(pb.AuthRoleDeleteRequest(role="root"))
    store.auth_disable()
    store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="root", role="root"))
    store.user_delete(pb.AuthUserDeleteRequest(name="root"))


def test_user_and_role_errors(store: AuthStore) -> None:
    with pytest.raises(errors.UserEmpty):
        store.user_add(pb.AuthUserAddRequest(name=""))
    with pytest.raises(errors.RoleEmpty):
        store.role_add(pb.AuthRoleAddRequest(name=""))
    add_user(store, "u")
    with pytest.raises(errors.UserAlreadyExist):
        add_user(store, "u")
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    with pytest.raises(errors.RoleAlreadyExist):
        store.role_add(pb.AuthRoleAddRequest(name="r"))
    with pytest.raises(errors.RoleNotFound):
        store.user_grant_role(pb.AuthUserGrantRoleRequest(user="u", role="nosuch"))
    with pytest.raises(errors.UserNotFound):
        store.user_grant_role(pb.AuthUserGrantRoleRequest(user="nosuch", role="r"))
    with pytest.raises(errors.RoleNotGranted):
        store.user_revoke_role(pb.AuthUserRevokeRoleRequest(name="u", role="r"))
    with pytest.raises(errors.UserNotFound):
        store.user_delete(pb.AuthUserDeleteRequest(name="nosuch"))
    with pytest.raises(errors.UserNotFound):
        store.user_change_password(pb.AuthUserChangePasswordRequest(name="nosuch"))
    with pytest.raises(errors.RoleNotFound):
        store.role_get(pb.AuthRoleGetRequest(role="nosuch"))
    with pytest.raises(errors.PermissionNotGranted):
        store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="r", key=b"k"))


def test_grant_replaces_the_same_range_and_keeps_them_sorted(store: AuthStore) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    grant(store, "r", READ, b"b")
    grant(store, "r", READ, b"a", b"z")
    grant(store, "r", READ, b"a")
    grant(store, "r", WRITE, b"a", b"z")  # replaces [a, z) read
    perms = store.role_get(pb.AuthRoleGetRequest(role="r")).perm
    assert [(p.key, p.range_end, p.permType) for p in perms] == [
        (b"a", b"z", WRITE),
        (b"a", b"", READ),
        (b"b", b"", READ),
    ]
    store.role_revoke_permission(pb.AuthRoleRevokePermissionRequest(role="r", key=b"a"))
    with pytest.raises(errors.PermissionNotGranted):  # an exact match only
        store.role_revoke_permission(
            pb.AuthRoleRevokePermissionRequest(role="r", key=b"a", range_end=b"y")
        )


def test_deleting_a_role_takes_it_from_its_users(store: AuthStore) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    store.role_add(pb.AuthRoleAddRequest(name="s"))
    add_user(store, "u", "s", "r")
    assert store.user_get(pb.AuthUserGetRequest(name="u")).roles == ["r", "s"]
    store.role_delete(pb.AuthRoleDeleteRequest(role="r"))
    assert store.user_get(pb.AuthUserGetRequest(name="u")).roles == ["s"]


def test_lists_are_sorted_by_bytes(store: AuthStore) -> None:
    for name in ["b", "B", "a", "é"]:
        add_user(store, name)
        store.role_add(pb.AuthRoleAddRequest(name=name))
    assert list(store.user_list().users) == ["B", "a", "b", "é"]
    assert list(store.role_list().roles) == ["B", "a", "b", "é"]


def test_permission_checks_follow_is_op_permitted(store: AuthStore) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    grant(store, "r", READ, b"/a/", b"/a0")
    add_user(store, "u", "r")
    enable_with_root(store)
    rev = store.revision
    store.check_range(AuthInfo("u", rev), b"/a/x", b"")
    store.check_range(AuthInfo("u", rev), b"/a/", b"/a0")
    with pytest.raises(errors.PermissionDenied):
        store.check_range(AuthInfo("u", rev), b"/a/", b"/b")
    with pytest.raises(errors.PermissionDenied):
        store.check_put(AuthInfo("u", rev), b"/a/x")
    with pytest.raises(errors.UserEmpty):
        store.check_range(None, b"/a/x", b"")
    with pytest.raises(errors.UserEmpty):
        store.check_range(AuthInfo("u", 0), b"/a/x", b"")
    with pytest.raises(errors.AuthOldRevision):
        store.check_range(AuthInfo("u", rev - 1), b"/a/x", b"")
    with pytest.raises(errors.PermissionDenied):
        store.check_range(AuthInfo("ghost", rev), b"/a/x", b"")
    store.check_delete_range(AuthInfo("root", rev), b"", b"\0")  # root may do anything
    # a change moves the revision: the merged permissions are rebuilt
    grant(store, "r", WRITE, b"/a/x")
    store.check_put(AuthInfo("u", store.revision), b"/a/x")


def test_checks_pass_while_auth_is_off(store: AuthStore) -> None:
    store.check_put(None, b"k")
    store.check_admin(None)


def test_check_admin(store: AuthStore) -> None:
    add_user(store, "u")
    enable_with_root(store)
    with pytest.raises(errors.UserEmpty):
        store.check_admin(AuthInfo("", 0))
    with pytest.raises(errors.UserNotFound):
        store.check_admin(AuthInfo("ghost", 1))
    with pytest.raises(errors.PermissionDenied):
        store.check_admin(AuthInfo("u", store.revision))
    store.check_admin(AuthInfo("root", 1))  # etcd does not look at the revision here


def test_authenticate_at_apply(store: AuthStore) -> None:
    store.user_add(
        pb.AuthUserAddRequest(name="cn", options=authpb.UserAddOptions(no_password=True))
    )
    with pytest.raises(errors.AuthNotEnabled):
        store.password_of("cn")
    enable_with_root(store)
    with pytest.raises(errors.AuthFailed):
        store.password_of("cn")  # no password: cannot log in
    with pytest.raises(errors.AuthFailed):
        store.password_of("ghost")
    assert store.password_of("root") == (b"$2b$04$x", store.revision)


def _req(caller: str, **fields: object) -> internalpb.InternalRaftRequest:
    req = internalpb.InternalRaftRequest(**fields)  # type: ignore[arg-type]
    req.header.username = caller
    req.header.auth_revision = 5
    return req


def test_apply_checks_admin_and_lets_users_read_themselves(store: AuthStore) -> None:
    store.role_add(pb.AuthRoleAddRequest(name="r"))
    add_user(store, "u", "r")
    enable_with_root(store)
    user_list = pb.AuthUserListRequest()
    assert auth_apply.apply(store, _req("root", auth_user_list=user_list), 10).users == [
        "root",
        "u",
    ]
    with pytest.raises(errors.PermissionDenied):
        auth_apply.apply(store, _req("u", auth_user_list=user_list), 10)
    with pytest.raises(errors.UserEmpty):
        auth_apply.apply(store, _req("", auth_disable=pb.AuthDisableRequest()), 10)
    own = pb.AuthUserGetRequest(name="u")
    assert auth_apply.apply(store, _req("u", auth_user_get=own), 10).roles == ["r"]
    with pytest.raises(errors.PermissionDenied):
        auth_apply.apply(store, _req("u", auth_user_get=pb.AuthUserGetRequest(name="root")), 10)
    assert auth_apply.apply(store, _req("u", auth_role_get=pb.AuthRoleGetRequest(role="r")), 10)
    assert auth_apply.apply(store, _req("u", put=pb.PutRequest(key=b"k")), 10) is None


def test_a_simple_token_is_prefix_dot_index(store: AuthStore) -> None:
    enable_with_root(store)
    req = _req(
        "", authenticate=internalpb.InternalAuthenticateRequest(name="root", simple_token="abc")
    )
    token = auth_apply.apply(store, req, 42).token
    assert token == "abc.42"
    assert store.info_from_token(token) == AuthInfo("root", store.revision)
    store.user_change_password(pb.AuthUserChangePasswordRequest(name="root", hashedPassword="h"))
    with pytest.raises(errors.InvalidAuthToken):  # a password change ends the user's tokens
        store.info_from_token(token)


def test_a_snapshot_backend_replaces_everything(tmp_path: Path, store: AuthStore) -> None:
    other = Backend(tmp_path / "other", map_size=64 << 20)
    try:
        enable_with_root(AuthStore(other, SimpleTokens(300, Clock())))
        store.recover(other)
        assert store.enabled and store.user_list().users == ["root"]
    finally:
        other.close()
