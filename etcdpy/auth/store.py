"""The auth store (etcd's auth/store.go): users, roles, the enabled flag and the auth
revision, kept in the backend's auth buckets exactly as etcd keeps them, so that snapshots
carry them and etcd's files can be read:

- bucket ``auth``: ``authEnabled`` -> one byte (1 on, 0 off); ``authRevision`` -> 8 bytes,
  big-endian;
- bucket ``authUsers``: user name -> ``authpb.User`` (bcrypt hash, roles sorted, options);
- bucket ``authRoles``: role name -> ``authpb.Role`` (permissions sorted by key).

Every change arrives through the log (etcdpy.auth.apply) and is written inside the apply
batch, so it commits with the applied index. The store keeps a copy of the buckets in memory
(read on every permission check) and the merged permissions of each user (etcdpy.auth.perms),
dropped whenever the auth revision moves.

The auth revision moves as etcd's does: +1 for every change of a user or a role and for
AuthDisable; AuthEnable and a grant of a role the user already has leave it.

The store implements ``AuthChecker`` (etcdpy.auth.info) for the enforcement sites.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import structlog

from etcdpy import errors
from etcdpy.auth.info import AuthInfo
from etcdpy.auth.perms import READ, WRITE, UserPerms
from etcdpy.auth.tokens import JwtTokens, SimpleTokens
from etcdpy.mvcc.backend import AUTH, AUTH_ROLES, AUTH_USERS, Backend, Tx
from etcdpy.pb.authpb import auth_pb2 as authpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

log = structlog.get_logger(__name__)

ROOT_USER = "root"
ROOT_ROLE = "root"
ENABLED_KEY = b"authEnabled"
REVISION_KEY = b"authRevision"
_ON, _OFF = b"\x01", b"\x00"
_REVISION = struct.Struct(">Q")


class AuthStore:
    """etcd's authStore over a Backend; see the module docstring."""

    def __init__(self, backend: Backend, tokens: SimpleTokens | JwtTokens) -> None:
        self.tokens = tokens
        self._backend = backend
        self._enabled = False
        self._revision = 0
        self._users: dict[str, authpb.User] = {}
        self._roles: dict[str, authpb.Role] = {}
        self._perms: dict[str, UserPerms] = {}
        # Called at each change, inside its apply batch, with the revision (also by AuthEnable,
        # which leaves the revision): the core's replica feed tells the front-ends. Optional.
        self.on_change: Callable[[int], None] | None = None
        self.recover(backend)

    # -- loading ----------------------------------------------------------------------------

    def recover(self, backend: Backend) -> None:
        """(Re)reads everything from ``backend``: at start, and when a snapshot's backend
        replaces the file (etcd's Recover)."""
        self._backend = backend
        with backend.read() as tx:
            enabled = tx.get(AUTH, ENABLED_KEY) == _ON
            raw_revision = tx.get(AUTH, REVISION_KEY)
            users = {k.decode(): authpb.User.FromString(v) for k, v in tx.items(AUTH_USERS)}
            roles = {k.decode(): authpb.Role.FromString(v) for k, v in tx.items(AUTH_ROLES)}
        # A store that never changed is at revision 1, as etcd's; unlike etcd, the 1 is not
        # written until the first change: an LMDB bucket with one key costs a page of its
        # own (a bbolt one is inlined in its parent), which a 13-page quota cannot spare.
        revision = max(1, _REVISION.unpack(raw_revision)[0] if raw_revision else 0)
        self._users, self._roles, self._revision = users, roles, revision
        self._perms.clear()
        was_enabled, self._enabled = self._enabled, enabled
        if enabled:
            self.tokens.enable()
        elif was_enabled:
            self.tokens.disable()

    # -- AuthChecker ------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def revision(self) -> int:
        return self._revision

    def info_from_token(self, token: str) -> AuthInfo:
        info = self.tokens.info(token, self._revision)
        if info is None:
            log.warning("invalid auth token", token=_redacted(token))
            raise errors.InvalidAuthToken()
        return info

    def info_from_cn(self, common_name: str) -> AuthInfo | None:
        return AuthInfo(common_name, self._revision)

    def check_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._check_op(info, key, range_end, READ)

    def check_put(self, info: AuthInfo | None, key: bytes) -> None:
        self._check_op(info, key, b"", WRITE)

    def check_delete_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._check_op(info, key, range_end, WRITE)

    def check_admin(self, info: AuthInfo | None) -> None:
        """etcd's IsAdminPermitted (it does not look at the revision)."""
        if not self._enabled:
            return
        if info is None or not info.username:
            raise errors.UserEmpty()
        user = self._users.get(info.username)
        if user is None:
            raise errors.UserNotFound()
        if not _has_root_role(user):
            raise errors.PermissionDenied()

    def _check_op(self, info: AuthInfo | None, key: bytes, range_end: bytes, kind: int) -> None:
        """etcd's isOpPermitted."""
        if not self._enabled:
            return
        if info is None or info.revision == 0:
            raise errors.UserEmpty()
        if info.revision < self._revision:
            log.warning(
                "request auth revision is less than current node auth revision",
                current_revision=self._revision,
                request_revision=info.revision,
            )
            raise errors.AuthOldRevision()
        user = self._users.get(info.username)
        if user is None:
            raise errors.PermissionDenied()
        if _has_root_role(user):
            return
        if not self._user_perms(info.username, user).permits(key, range_end, kind):
            raise errors.PermissionDenied()

    def _user_perms(self, name: str, user: authpb.User) -> UserPerms:
        perms = self._perms.get(name)
        if perms is None:
            grants = [
                perm
                for role_name in user.roles
                if (role := self._roles.get(role_name)) is not None
                for perm in role.keyPermission
            ]
            perms = self._perms[name] = UserPerms.of(grants)
        return perms

    # -- reads ------------------------------------------------------------------------------

    def has_role(self, username: str, role: str) -> bool:
        user = self._users.get(username)
        return user is not None and role in user.roles

    def password_of(self, name: str) -> tuple[bytes, int]:
        """The bcrypt hash of a user's password and the revision it was read at (the first
        half of etcd's CheckPassword; the API compares in a thread). A user without a
        password cannot authenticate."""
        if not self._enabled:
            raise errors.AuthNotEnabled()
        user = self._users.get(name)
        if user is None or user.options.no_password:
            raise errors.AuthFailed()
        return user.password, self._revision

    def user_get(self, req: pb.AuthUserGetRequest) -> pb.AuthUserGetResponse:
        user = self._users.get(req.name)
        if user is None:
            raise errors.UserNotFound()
        return pb.AuthUserGetResponse(roles=list(user.roles))

    def user_list(self) -> pb.AuthUserListResponse:
        return pb.AuthUserListResponse(users=sorted(self._users, key=str.encode))

    def role_get(self, req: pb.AuthRoleGetRequest) -> pb.AuthRoleGetResponse:
        role = self._roles.get(req.role)
        if role is None:
            raise errors.RoleNotFound()
        return pb.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(self) -> pb.AuthRoleListResponse:
        return pb.AuthRoleListResponse(roles=sorted(self._roles, key=str.encode))

    def status(self) -> pb.AuthStatusResponse:
        return pb.AuthStatusResponse(enabled=self._enabled, authRevision=self._revision)

    # -- changes (called at apply) ----------------------------------------------------------

    def auth_enable(self) -> None:
        if self._enabled:
            log.info("authentication is already enabled; ignored auth enable request")
            return
        root = self._users.get(ROOT_USER)
        if root is None:
            raise errors.RootUserNotExist()
        if not _has_root_role(root):
            raise errors.RootRoleNotExist()
        with self._backend.batch() as tx:
            tx.put(AUTH, ENABLED_KEY, _ON)
        self._enabled = True
        self.tokens.enable()
        self._perms.clear()
        if self.on_change is not None:
            self.on_change(self._revision)
        log.info("enabled authentication")

    def auth_disable(self) -> None:
        if not self._enabled:
            return
        with self._backend.batch() as tx:
            tx.put(AUTH, ENABLED_KEY, _OFF)
            self._bump(tx)
        self._enabled = False
        self.tokens.disable()
        log.info("disabled authentication")

    def authenticate(self, name: str) -> None:
        """The apply half of Authenticate: the user must still exist and have a password."""
        if not self._enabled:
            raise errors.AuthNotEnabled()
        user = self._users.get(name)
        if user is None or user.options.no_password:
            raise errors.AuthFailed()

    def user_add(self, req: pb.AuthUserAddRequest) -> None:
        if not req.name:
            raise errors.UserEmpty()
        if req.name in self._users:
            raise errors.UserAlreadyExist()
        user = authpb.User(
            name=req.name.encode(),
            password=req.hashedPassword.encode() if not req.options.no_password else b"",
            options=authpb.UserAddOptions(no_password=req.options.no_password),
        )
        self._put_users([user])
        log.info("added a user", user_name=req.name)

    def user_delete(self, req: pb.AuthUserDeleteRequest) -> None:
        if self._enabled and req.name == ROOT_USER:
            log.warning("cannot delete 'root' user", user_name=req.name)
            raise errors.InvalidAuthMgmt()
        if req.name not in self._users:
            raise errors.UserNotFound()
        with self._backend.batch() as tx:
            tx.delete(AUTH_USERS, req.name.encode())
            del self._users[req.name]
            self._bump(tx)
        self.tokens.invalidate_user(req.name)
        log.info("deleted a user", user_name=req.name)

    def user_change_password(self, req: pb.AuthUserChangePasswordRequest) -> None:
        user = self._users.get(req.name)
        if user is None:
            raise errors.UserNotFound()
        updated = authpb.User()
        updated.CopyFrom(user)
        updated.password = req.hashedPassword.encode()
        self._put_users([updated])
        self.tokens.invalidate_user(req.name)
        log.info("changed a password of a user", user_name=req.name)

    def user_grant_role(self, req: pb.AuthUserGrantRoleRequest) -> None:
        user = self._users.get(req.user)
        if user is None:
            raise errors.UserNotFound()
        if req.role != ROOT_ROLE and req.role not in self._roles:
            raise errors.RoleNotFound()  # the root role need not exist: it is implicit
        if req.role in user.roles:
            log.warning("ignored grant role request to a user", user_name=req.user)
            return
        updated = authpb.User()
        updated.CopyFrom(user)
        roles = sorted([*user.roles, req.role])
        del updated.roles[:]
        updated.roles.extend(roles)
        self._put_users([updated])
        log.info("granted a role to a user", user_name=req.user, role_name=req.role)

    def user_revoke_role(self, req: pb.AuthUserRevokeRoleRequest) -> None:
        if self._enabled and req.name == ROOT_USER and req.role == ROOT_ROLE:
            log.warning("'root' user cannot revoke 'root' role")
            raise errors.InvalidAuthMgmt()
        user = self._users.get(req.name)
        if user is None:
            raise errors.UserNotFound()
        if req.role not in user.roles:
            raise errors.RoleNotGranted()
        self._put_users([_without_role(user, req.role)])
        log.info("revoked a role from a user", user_name=req.name, role_name=req.role)

    def role_add(self, req: pb.AuthRoleAddRequest) -> None:
        if not req.name:
            raise errors.RoleEmpty()
        if req.name in self._roles:
            raise errors.RoleAlreadyExist()
        self._put_role(authpb.Role(name=req.name.encode()))
        log.info("created a role", role_name=req.name)

    def role_delete(self, req: pb.AuthRoleDeleteRequest) -> None:
        if self._enabled and req.role == ROOT_ROLE:
            log.warning("cannot delete 'root' role")
            raise errors.InvalidAuthMgmt()
        if req.role not in self._roles:
            raise errors.RoleNotFound()
        holders = [
            _without_role(user, req.role)
            for _, user in sorted(self._users.items())
            if req.role in user.roles
        ]
        with self._backend.batch() as tx:
            tx.delete(AUTH_ROLES, req.role.encode())
            del self._roles[req.role]
            self._put_users(holders)  # one revision for the whole delete (nested batch)
        log.info("deleted a role", role_name=req.role)

    def role_grant_permission(self, req: pb.AuthRoleGrantPermissionRequest) -> None:
        role = self._roles.get(req.name)
        if role is None:
            raise errors.RoleNotFound()
        perm = req.perm
        updated = authpb.Role()
        updated.CopyFrom(role)
        same = [
            p for p in updated.keyPermission if (p.key, p.range_end) == (perm.key, perm.range_end)
        ]
        if same:
            # etcd updates only the first permission with the key (sort.Search) and so may
            # keep two with the same key and range_end; etcdpy updates the exact match.
            same[0].permType = perm.permType
        else:
            # appended, then sorted by key, stable (as etcd's sort of a short list)
            new = authpb.Permission(permType=perm.permType, key=perm.key, range_end=perm.range_end)
            ordered = sorted([*updated.keyPermission, new], key=lambda p: p.key)
            del updated.keyPermission[:]
            updated.keyPermission.extend(ordered)
        self._put_role(updated)
        log.info(
            "granted/updated a permission to a user",
            role_name=req.name,
            permission=authpb.Permission.Type.Name(perm.permType),
        )

    def role_revoke_permission(self, req: pb.AuthRoleRevokePermissionRequest) -> None:
        role = self._roles.get(req.role)
        if role is None:
            raise errors.RoleNotFound()
        kept = [p for p in role.keyPermission if (p.key, p.range_end) != (req.key, req.range_end)]
        if len(kept) == len(role.keyPermission):
            raise errors.PermissionNotGranted()
        self._put_role(authpb.Role(name=role.name, keyPermission=kept))
        log.info("revoked a permission on range", role_name=req.role)

    # -- writing ----------------------------------------------------------------------------

    def _put_users(self, users: list[authpb.User]) -> None:
        with self._backend.batch() as tx:
            for user in users:
                tx.put(AUTH_USERS, user.name, user.SerializeToString())
                self._users[user.name.decode()] = user
            self._bump(tx)

    def _put_role(self, role: authpb.Role) -> None:
        with self._backend.batch() as tx:
            tx.put(AUTH_ROLES, role.name, role.SerializeToString())
            self._roles[role.name.decode()] = role
            self._bump(tx)

    def _bump(self, tx: Tx) -> None:
        """etcd's commitRevision; every change also drops the merged permissions."""
        self._revision += 1
        tx.put(AUTH, REVISION_KEY, _REVISION.pack(self._revision))
        self._perms.clear()
        if self.on_change is not None:
            self.on_change(self._revision)


def _has_root_role(user: authpb.User) -> bool:
    return ROOT_ROLE in user.roles


def _without_role(user: authpb.User, role: str) -> authpb.User:
    updated = authpb.User(name=user.name, password=user.password)
    updated.options.CopyFrom(user.options)
    updated.roles.extend(r for r in user.roles if r != role)
    return updated


def _redacted(token: str) -> str:
    """A token in a log line: enough to tell two apart, never enough to use one."""
    return token[:4] + "..." if len(token) > 8 else "..."
