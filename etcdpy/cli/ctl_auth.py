"""etcdpyctl's auth, user and role operations, printed as etcdctl 3.4 prints them
(ctlv3/command/auth_command.go, user_command.go, role_command.go, printer_simple.go).

Each takes a Client, an Output and plain values. ``-w json`` writes the response (proto
field names, bytes in base64); ``-w table`` is refused after the call, as etcdctl's table
printer refuses these responses; ``auth enable`` and ``auth disable`` print their line whatever
the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from google.protobuf.message import Message

from etcdpy.cli.ctl_client import EXIT_BAD_ARGS, Client, CtlError
from etcdpy.cli.ctl_kv import prefix_range_end
from etcdpy.cli.ctl_output import Output, message_to_json
from etcdpy.pb.authpb import auth_pb2
from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "PERMISSION_TYPES",
    "PermRange",
    "auth_disable",
    "auth_enable",
    "auth_status",
    "perm_range",
    "role_add",
    "role_delete",
    "role_get",
    "role_grant_permission",
    "role_list",
    "role_revoke_permission",
    "user_add",
    "user_change_password",
    "user_delete",
    "user_get",
    "user_grant_role",
    "user_list",
    "user_revoke_role",
]

ROOT_ROLE_MISSING = "etcdserver: root user does not have root role"  # rpctypes.ErrRootRoleNotExist
OPEN_END = b"\x00"  # a range end of one zero byte: every key from the start on

# clientv3.StrToPermissionType: the names, any case.
PERMISSION_TYPES = {"READ": auth_pb2.Permission.READ, "WRITE": auth_pb2.Permission.WRITE,
                    "READWRITE": auth_pb2.Permission.READWRITE}  # fmt: skip


def _stub(client: Client) -> rpc_pb2_grpc.AuthStub:
    return rpc_pb2_grpc.AuthStub(client.channel())


def _show(out: Output, response: Message, simple_lines: Sequence[bytes]) -> None:
    """etcdctl's display: the simple printer's lines, the JSON printer's object, or the
    table printer's refusal."""
    if out.is_json:
        out.json(message_to_json(response))
        return
    out.no_table()
    for line in simple_lines:
        out.write(line + b"\n")


def _text(value: str) -> bytes:
    return value.encode("utf-8", errors="surrogateescape")


# -- auth -------------------------------------------------------------------------------------


def auth_enable(client: Client, out: Output) -> None:
    """AuthEnable; when root exists without the root role, etcdctl adds the role, grants it to
    root and tries again."""
    stub = _stub(client)
    while True:
        try:
            client.call(stub.AuthEnable, rpc_pb2.AuthEnableRequest())
            break
        except CtlError as err:
            if str(err) != ROOT_ROLE_MISSING:
                raise
        client.call(stub.RoleAdd, rpc_pb2.AuthRoleAddRequest(name="root"))
        client.call(stub.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"))
    out.line("Authentication Enabled")


def auth_disable(client: Client, out: Output) -> None:
    client.call(_stub(client).AuthDisable, rpc_pb2.AuthDisableRequest())
    out.line("Authentication Disabled")


def auth_status(client: Client, out: Output) -> None:
    """etcdctl 3.5's ``auth status`` (3.4 has none; the AuthStatus call is 3.5's)."""
    response = client.call(_stub(client).AuthStatus, rpc_pb2.AuthStatusRequest())
    enabled = "true" if response.enabled else "false"
    lines = [f"Authentication Status: {enabled}", f"AuthRevision: {response.authRevision}"]
    _show(out, response, [_text(line) for line in lines])


# -- users ------------------------------------------------------------------------------------


def user_add(client: Client, out: Output, name: str, password: str, *, no_password: bool) -> None:
    request = rpc_pb2.AuthUserAddRequest(name=name, password=password)
    request.options.SetInParent()  # clientv3 always sends the options
    request.options.no_password = no_password
    response = client.call(_stub(client).UserAdd, request)
    _show(out, response, [_text(f"User {name} created")])


def user_delete(client: Client, out: Output, name: str) -> None:
    response = client.call(_stub(client).UserDelete, rpc_pb2.AuthUserDeleteRequest(name=name))
    _show(out, response, [_text(f"User {name} deleted")])


def user_get(client: Client, out: Output, name: str, *, detail: bool) -> None:
    """The user's roles; with ``detail``, each role's permissions (etcdctl prints the
    ``User:`` line itself and then each role as ``role get`` would, in any format)."""
    stub = _stub(client)
    response = client.call(stub.UserGet, rpc_pb2.AuthUserGetRequest(name=name))
    if not detail:
        roles = "".join(f" {role}" for role in response.roles)
        _show(out, response, [_text(f"User: {name}"), _text(f"Roles:{roles}")])
        return
    out.line(f"User: {name}")
    for role in response.roles:
        out.line("")
        role_get(client, out, role)


def user_list(client: Client, out: Output) -> None:
    response = client.call(_stub(client).UserList, rpc_pb2.AuthUserListRequest())
    _show(out, response, [_text(user) for user in response.users])


def user_change_password(client: Client, out: Output, name: str, password: str) -> None:
    request = rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password)
    response = client.call(_stub(client).UserChangePassword, request)
    _show(out, response, [b"Password updated"])


def user_grant_role(client: Client, out: Output, user: str, role: str) -> None:
    request = rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role)
    response = client.call(_stub(client).UserGrantRole, request)
    _show(out, response, [_text(f"Role {role} is granted to user {user}")])


def user_revoke_role(client: Client, out: Output, user: str, role: str) -> None:
    request = rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role)
    response = client.call(_stub(client).UserRevokeRole, request)
    _show(out, response, [_text(f"Role {role} is revoked from user {user}")])


# -- roles ------------------------------------------------------------------------------------


def role_add(client: Client, out: Output, name: str) -> None:
    response = client.call(_stub(client).RoleAdd, rpc_pb2.AuthRoleAddRequest(name=name))
    _show(out, response, [_text(f"Role {name} created")])


def role_delete(client: Client, out: Output, name: str) -> None:
    response = client.call(_stub(client).RoleDelete, rpc_pb2.AuthRoleDeleteRequest(role=name))
    _show(out, response, [_text(f"Role {name} deleted")])


def role_list(client: Client, out: Output) -> None:
    response = client.call(_stub(client).RoleList, rpc_pb2.AuthRoleListRequest())
    _show(out, response, [_text(role) for role in response.roles])


def _perm_line(perm: auth_pb2.Permission) -> bytes:
    """printer_simple.go's RoleGet line of one permission (keys written as the bytes they are)."""
    if not perm.range_end:
        return b"\t" + perm.key
    if perm.range_end != OPEN_END:
        line = b"\t[" + perm.key + b", " + perm.range_end + b")"
    else:
        line = b"\t[" + perm.key + b", <open ended>"
    if prefix_range_end(perm.key) == perm.range_end:
        line += b" (prefix " + perm.key + b")"
    return line


def role_get(client: Client, out: Output, name: str) -> None:
    response = client.call(_stub(client).RoleGet, rpc_pb2.AuthRoleGetRequest(role=name))
    readable = (auth_pb2.Permission.READ, auth_pb2.Permission.READWRITE)
    writable = (auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE)
    lines = [_text(f"Role {name}"), b"KV Read:"]
    lines += [_perm_line(p) for p in response.perm if p.permType in readable]
    lines.append(b"KV Write:")
    lines += [_perm_line(p) for p in response.perm if p.permType in writable]
    _show(out, response, lines)


@dataclass(frozen=True, slots=True)
class PermRange:
    key: bytes
    range_end: bytes


def perm_range(args: Sequence[bytes], *, prefix: bool, from_key: bool) -> PermRange:
    """role_command.go's permRange: ``args`` is KEY [END]; an empty KEY means the whole key
    space (``\\x00``), open ended with --prefix or --from-key."""
    key = args[0]
    if not key:
        if prefix and from_key:
            raise CtlError("--from-key and --prefix flags are mutually exclusive", EXIT_BAD_ARGS)
        return PermRange(b"\x00", OPEN_END if prefix or from_key else b"")
    if len(args) == 1:
        if prefix:
            if from_key:
                raise CtlError("--from-key and --prefix flags are mutually exclusive",
                               EXIT_BAD_ARGS)  # fmt: skip
            return PermRange(key, prefix_range_end(key))
        return PermRange(key, OPEN_END if from_key else b"")
    if prefix:
        raise CtlError("unexpected endkey argument with --prefix flag", EXIT_BAD_ARGS)
    if from_key:
        raise CtlError("unexpected endkey argument with --from-key flag", EXIT_BAD_ARGS)
    return PermRange(key, args[1])


def role_grant_permission(
    client: Client, out: Output, role: str, perm_type: int, span: PermRange
) -> None:
    perm = auth_pb2.Permission(permType=perm_type, key=span.key, range_end=span.range_end)  # type: ignore[arg-type]
    request = rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm)
    response = client.call(_stub(client).RoleGrantPermission, request)
    _show(out, response, [_text(f"Role {role} updated")])


def role_revoke_permission(
    client: Client, out: Output, role: str, typed_key: bytes, span: PermRange
) -> None:
    """``typed_key`` is the key as given (etcdctl's message names it, not ``\\x00``)."""
    request = rpc_pb2.AuthRoleRevokePermissionRequest(
        role=role, key=span.key, range_end=span.range_end
    )
    response = client.call(_stub(client).RoleRevokePermission, request)
    role_b = _text(role)
    if not span.range_end:
        line = b"Permission of key " + typed_key + b" is revoked from role " + role_b
    elif span.range_end != OPEN_END:
        line = b"Permission of range [" + typed_key + b", " + span.range_end + b") is revoked"
        line += b" from role " + role_b
    else:
        line = b"Permission of range [" + typed_key + b", <open ended> is revoked from role "
        line += role_b
    _show(out, response, [line])
