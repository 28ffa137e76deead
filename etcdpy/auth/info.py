"""Who a request runs as (``AuthInfo``), and what the places that enforce auth may ask of the
auth store (``AuthChecker``), so that they depend on this contract and not on the store."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """A caller, as etcd's AuthInfo: the user name and the auth revision its token was made at
    (a certificate's CN gets the store's revision when the call is checked)."""

    username: str
    revision: int


# The caller of the RPC being served, set by the pipeline's Auth interceptor; a proposal made
# for that call carries it in its header (username, auth_revision), where apply checks it.
CALLER: ContextVar[AuthInfo | None] = ContextVar("etcdpy_auth_caller", default=None)


class AuthChecker(Protocol):
    """The auth store, as enforcement sees it. Every ``check_*`` raises the EtcdError etcd
    answers (UserEmpty without a caller, AuthOldRevision for a stale revision,
    PermissionDenied) and returns None when the request may go on, or when auth is off."""

    @property
    def enabled(self) -> bool: ...

    @property
    def revision(self) -> int: ...

    def info_from_token(self, token: str) -> AuthInfo:
        """The caller a token names; raises errors.InvalidAuthToken."""
        ...

    def info_from_cn(self, common_name: str) -> AuthInfo | None:
        """The caller a verified client certificate names (etcd's AuthInfoFromTLS)."""
        ...

    def check_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None: ...

    def check_put(self, info: AuthInfo | None, key: bytes) -> None: ...

    def check_delete_range(self, info: AuthInfo | None, key: bytes, range_end: bytes) -> None: ...

    def check_admin(self, info: AuthInfo | None) -> None: ...
