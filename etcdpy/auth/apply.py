"""Applying the auth requests of the log (etcd's applierV3backend auth cases and the admin
checks of its authApplierV3), inside the apply batch, so an auth change commits with the
applied index.

Who asked comes from the entry's RequestHeader (username, auth_revision), filled when the
request was proposed. Changes need the root role once auth is on; UserGet is allowed for the
user itself and RoleGet for a holder of the role, as etcd allows them.
"""

from __future__ import annotations

from typing import Any

from etcdpy.auth.info import AuthInfo
from etcdpy.auth.store import AuthStore
from etcdpy.auth.tokens import SimpleTokens
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb

# The requests only root may make (etcd's needAdminPermission).
ADMIN_ONLY = frozenset(
    {
        "auth_enable",
        "auth_disable",
        "auth_user_add",
        "auth_user_delete",
        "auth_user_change_password",
        "auth_user_grant_role",
        "auth_user_revoke_role",
        "auth_role_add",
        "auth_role_grant_permission",
        "auth_role_revoke_permission",
        "auth_role_delete",
        "auth_user_list",
        "auth_role_list",
    }
)
AUTH_FIELDS = ADMIN_ONLY | {"authenticate", "auth_status", "auth_user_get", "auth_role_get"}


def auth_request(req: Any) -> str | None:
    """Which auth field an InternalRaftRequest carries, or None."""
    for field, _value in req.ListFields():
        if field.name in AUTH_FIELDS:
            return str(field.name)
    return None


def apply(store: AuthStore, req: Any, index: int) -> Any:
    """The response of an auth request, or None when ``req`` is not one. Raises EtcdError."""
    which = auth_request(req)
    if which is None:
        return None
    caller = AuthInfo(req.header.username, req.header.auth_revision)
    if which in ADMIN_ONLY:
        store.check_admin(caller)
    body = getattr(req, which)
    return _APPLY[which](store, body, caller, index)


def _authenticate(
    store: AuthStore, body: Any, caller: AuthInfo, index: int
) -> pb.AuthenticateResponse:
    store.authenticate(body.name)
    tokens = store.tokens
    if isinstance(tokens, SimpleTokens):
        return pb.AuthenticateResponse(token=tokens.assign(body.name, body.simple_token, index))
    return pb.AuthenticateResponse()  # a JWT is signed by the member that answers


def _user_get(
    store: AuthStore, body: pb.AuthUserGetRequest, caller: AuthInfo, index: int
) -> pb.AuthUserGetResponse:
    if body.name != caller.username:
        store.check_admin(caller)
    return store.user_get(body)


def _role_get(
    store: AuthStore, body: pb.AuthRoleGetRequest, caller: AuthInfo, index: int
) -> pb.AuthRoleGetResponse:
    if not (store.enabled and store.has_role(caller.username, body.role)):
        store.check_admin(caller)
    return store.role_get(body)


def _change(method: str, response: type[Any]) -> Any:
    def applied(store: AuthStore, body: Any, caller: AuthInfo, index: int) -> Any:
        getattr(store, method)(body)
        return response()

    return applied


def _no_body(method: str, response: type[Any] | None = None) -> Any:
    def applied(store: AuthStore, body: Any, caller: AuthInfo, index: int) -> Any:
        result = getattr(store, method)()
        return result if response is None else response()

    return applied


_APPLY: dict[str, Any] = {
    "authenticate": _authenticate,
    "auth_enable": _no_body("auth_enable", pb.AuthEnableResponse),
    "auth_disable": _no_body("auth_disable", pb.AuthDisableResponse),
    "auth_status": _no_body("status"),
    "auth_user_add": _change("user_add", pb.AuthUserAddResponse),
    "auth_user_delete": _change("user_delete", pb.AuthUserDeleteResponse),
    "auth_user_change_password": _change("user_change_password", pb.AuthUserChangePasswordResponse),
    "auth_user_grant_role": _change("user_grant_role", pb.AuthUserGrantRoleResponse),
    "auth_user_revoke_role": _change("user_revoke_role", pb.AuthUserRevokeRoleResponse),
    "auth_user_get": _user_get,
    "auth_user_list": _no_body("user_list"),
    "auth_role_add": _change("role_add", pb.AuthRoleAddResponse),
    "auth_role_delete": _change("role_delete", pb.AuthRoleDeleteResponse),
    "auth_role_grant_permission": _change(
        "role_grant_permission", pb.AuthRoleGrantPermissionResponse
    ),
    "auth_role_revoke_permission": _change(
        "role_revoke_permission", pb.AuthRoleRevokePermissionResponse
    ),
    "auth_role_get": _role_get,
    "auth_role_list": _no_body("role_list"),
}
