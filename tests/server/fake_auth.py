"""A small AuthChecker (etcdpy.auth.info) for the tests of the enforcement sites: users with
read and write intervals, root, tokens, a revision, following etcd's rules (auth/store.go
isOpPermitted, IsAdminPermitted)."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy import errors
from etcdpy.auth.info import AuthInfo

READ, WRITE = "read", "write"


@dataclass
class FakeAuth:
    enabled: bool = True
    revision: int = 1
    root: set[str] = field(default_factory=lambda: {"root"})
    # user -> [(kind, key, range_end)], range_end as etcd's: b"" one key, b"\0" every key >= key
    perms: dict[str, list[tuple[str, bytes, bytes]]] = field(default_factory=dict)
    tokens: dict[str, AuthInfo] = field(default_factory=dict)
    checks: int = 0

    def grant(self, user: str, kind: str, key: bytes, range_end: bytes = b"") -> None:
        self.perms.setdefault(user, []).append((kind, key, range_end))
        self.revision += 1

    def revoke_all(self, user: str) -> None:
        self.perms.pop(user, None)
        self.revision += 1

    def token_for(self, user: str) -> str:
        token = f"{user}.{len(self.tokens)}"
        self.tokens[token] = AuthInfo(user, self.revision)
        return token

    def info_from_token(self, token: str) -> AuthInfo:
        info = self.tokens.get(token)
        if info is None:
            raise errors.InvalidAuthToken()
        return info

    def info_from_cn(self, common_name: str) -> AuthInfo | None:
        return AuthInfo(common_name, self.revision)

    def check_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._check(info, key, range_end, READ)

    def check_put(self, info: AuthInfo | None, key: bytes) -> None:
        self._check(info, key, b"", WRITE)

    def check_delete_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._check(info, key, range_end, WRITE)

    def check_admin(self, info: AuthInfo | None) -> None:
        self.checks += 1
        if not self.enabled:
            return
        if info is None or not info.username:
            raise errors.UserEmpty()
        if info.username not in self.root and info.username not in self.perms:
            raise errors.UserNotFound()
        if info.username not in self.root:
            raise errors.PermissionDenied()

    def _check(self, info: AuthInfo | None, key: bytes, range_end: bytes, kind: str) -> None:
        self.checks += 1
        if not self.enabled:
            return
        if info is None or info.revision == 0:
            raise errors.UserEmpty()
        if info.revision < self.revision:
            raise errors.AuthOldRevision()
        if info.username in self.root:
            return
        for granted, begin, end in self.perms.get(info.username, []):
            if granted == kind and _covers(begin, end, key, range_end):
                return
        raise errors.PermissionDenied()


def _covers(begin: bytes, end: bytes, key: bytes, range_end: bytes) -> bool:
    """Whether the granted [begin, end) holds the asked key or [key, range_end)."""
    infinite_grant = end == b"\x00"
    if not range_end:  # one key
        return key == begin if not end else begin <= key and (infinite_grant or key < end)
    if not end:
        return False  # a single key never holds an interval
    if range_end == b"\x00":
        return infinite_grant and begin <= key
    return begin <= key and (infinite_grant or range_end <= end)
