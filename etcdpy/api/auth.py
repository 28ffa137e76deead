"""The Auth service (etcd's v3rpc/auth.go and the Auth methods of etcdserver/v3_server.go).

Every RPC goes through the log, as in etcd, so that each member applies the same changes in the
same order and apply checks who asked (etcdpy.auth.apply). Two things happen here, before the
proposal, because apply must be deterministic and cheap:

- passwords are hashed with bcrypt (``--bcrypt-cost``) in a worker thread (bcrypt releases the
  GIL), into the request's ``hashedPassword``: the log never holds a plain password (etcd
  3.5's way; etcd 3.4 hashed at apply, with the password in the log);
- Authenticate checks the password against the hash (in a thread), makes a simple token's
  random prefix, proposes, and retries when the auth revision moved meanwhile; a JWT is signed
  here, once, by the member that answers, not by every member at apply.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import bcrypt

from etcdpy import errors
from etcdpy.auth.tokens import JwtTokens, SimpleTokens
from etcdpy.call import CallContext
from etcdpy.pb.etcdserverpb import raft_internal_pb2 as internalpb
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.server.etcd_server import EtcdServer

Answer = TypeVar("Answer")

DEFAULT_BCRYPT_COST = 10  # bcrypt.DefaultCost; etcd uses it when --bcrypt-cost is out of range
MIN_BCRYPT_COST, MAX_BCRYPT_COST = 4, 31
# Go's bcrypt (as vendored by etcd 3.4) uses the first 72 bytes of a password; so does etcdpy,
# so that a password set on etcd still matches after a migration.
BCRYPT_MAX_BYTES = 72


def bcrypt_cost(configured: int) -> int:
    if MIN_BCRYPT_COST <= configured <= MAX_BCRYPT_COST:
        return configured
    return DEFAULT_BCRYPT_COST


def hash_password(password: str, cost: int) -> str:
    secret = password.encode()[:BCRYPT_MAX_BYTES]
    return bcrypt.hashpw(secret, bcrypt.gensalt(cost)).decode()


def password_matches(password: str, hashed: bytes) -> bool:
    """bcrypt's own comparison (constant time); a hash that is not bcrypt's matches nothing."""
    try:
        return bcrypt.checkpw(password.encode()[:BCRYPT_MAX_BYTES], hashed)
    except ValueError:
        return False


class AuthService:
    def __init__(self, server: EtcdServer) -> None:
        self._server = server
        self._cost = bcrypt_cost(server.config.bcrypt_cost)
        self._decoy: bytes | None = None  # a hash of nothing, made on first need

    def _decoy_check(self, password: str) -> None:
        """The bcrypt work a known user's check costs, spent on an unknown user's name, so that
        the time of a refusal does not tell whether the user exists (etcd 3.4 answers an
        unknown user at once, and a wrong password after a bcrypt comparison)."""
        if self._decoy is None:
            self._decoy = hash_password("", self._cost).encode()
        password_matches(password, self._decoy)

    async def _propose(self, answer: type[Answer], **request: object) -> Answer:
        """Puts the request through the log; returns the applied response (of type ``answer``)."""
        resp = await self._server.propose(internalpb.InternalRaftRequest(**request))  # type: ignore[arg-type]
        assert isinstance(resp, answer)
        return resp

    async def AuthEnable(
        self, request: pb.AuthEnableRequest, context: CallContext
    ) -> pb.AuthEnableResponse:
        return await self._propose(pb.AuthEnableResponse, auth_enable=request)

    async def AuthDisable(
        self, request: pb.AuthDisableRequest, context: CallContext
    ) -> pb.AuthDisableResponse:
        return await self._propose(pb.AuthDisableResponse, auth_disable=request)

    async def AuthStatus(
        self, request: pb.AuthStatusRequest, context: CallContext
    ) -> pb.AuthStatusResponse:
        return await self._propose(pb.AuthStatusResponse, auth_status=request)

    async def Authenticate(
        self, request: pb.AuthenticateRequest, context: CallContext
    ) -> pb.AuthenticateResponse:
        server = self._server
        store = server.auth
        await server.linearizable_read()
        while True:
            try:
                hashed, checked_revision = store.password_of(request.name)
            except errors.AuthFailed:
                await asyncio.to_thread(self._decoy_check, request.password)
                raise
            if not await asyncio.to_thread(password_matches, request.password, hashed):
                raise errors.AuthFailed()
            tokens = store.tokens
            prefix = tokens.gen_prefix() if isinstance(tokens, SimpleTokens) else ""
            resp = await self._propose(
                pb.AuthenticateResponse,
                authenticate=internalpb.InternalAuthenticateRequest(
                    name=request.name, simple_token=prefix
                ),
            )
            if checked_revision == store.revision:
                break
            # the password or the user changed between the check and the apply: check again
        if isinstance(tokens, JwtTokens):
            resp.token = tokens.sign(request.name, checked_revision)
        return resp

    async def UserAdd(
        self, request: pb.AuthUserAddRequest, context: CallContext
    ) -> pb.AuthUserAddResponse:
        if not request.options.no_password and not request.hashedPassword:
            request.hashedPassword = await asyncio.to_thread(
                hash_password, request.password, self._cost
            )
        request.password = ""
        return await self._propose(pb.AuthUserAddResponse, auth_user_add=request)

    async def UserGet(
        self, request: pb.AuthUserGetRequest, context: CallContext
    ) -> pb.AuthUserGetResponse:
        return await self._propose(pb.AuthUserGetResponse, auth_user_get=request)

    async def UserList(
        self, request: pb.AuthUserListRequest, context: CallContext
    ) -> pb.AuthUserListResponse:
        return await self._propose(pb.AuthUserListResponse, auth_user_list=request)

    async def UserDelete(
        self, request: pb.AuthUserDeleteRequest, context: CallContext
    ) -> pb.AuthUserDeleteResponse:
        return await self._propose(pb.AuthUserDeleteResponse, auth_user_delete=request)

    async def UserChangePassword(
        self, request: pb.AuthUserChangePasswordRequest, context: CallContext
    ) -> pb.AuthUserChangePasswordResponse:
        if not request.hashedPassword:
            request.hashedPassword = await asyncio.to_thread(
                hash_password, request.password, self._cost
            )
        request.password = ""
        return await self._propose(
            pb.AuthUserChangePasswordResponse, auth_user_change_password=request
        )

    async def UserGrantRole(
        self, request: pb.AuthUserGrantRoleRequest, context: CallContext
    ) -> pb.AuthUserGrantRoleResponse:
        return await self._propose(pb.AuthUserGrantRoleResponse, auth_user_grant_role=request)

    async def UserRevokeRole(
        self, request: pb.AuthUserRevokeRoleRequest, context: CallContext
    ) -> pb.AuthUserRevokeRoleResponse:
        return await self._propose(pb.AuthUserRevokeRoleResponse, auth_user_revoke_role=request)

    async def RoleAdd(
        self, request: pb.AuthRoleAddRequest, context: CallContext
    ) -> pb.AuthRoleAddResponse:
        return await self._propose(pb.AuthRoleAddResponse, auth_role_add=request)

    async def RoleGet(
        self, request: pb.AuthRoleGetRequest, context: CallContext
    ) -> pb.AuthRoleGetResponse:
        return await self._propose(pb.AuthRoleGetResponse, auth_role_get=request)

    async def RoleList(
        self, request: pb.AuthRoleListRequest, context: CallContext
    ) -> pb.AuthRoleListResponse:
        return await self._propose(pb.AuthRoleListResponse, auth_role_list=request)

    async def RoleDelete(
        self, request: pb.AuthRoleDeleteRequest, context: CallContext
    ) -> pb.AuthRoleDeleteResponse:
        return await self._propose(pb.AuthRoleDeleteResponse, auth_role_delete=request)

    async def RoleGrantPermission(
        self, request: pb.AuthRoleGrantPermissionRequest, context: CallContext
    ) -> pb.AuthRoleGrantPermissionResponse:
        return await self._propose(
            pb.AuthRoleGrantPermissionResponse, auth_role_grant_permission=request
        )

    async def RoleRevokePermission(
        self, request: pb.AuthRoleRevokePermissionRequest, context: CallContext
    ) -> pb.AuthRoleRevokePermissionResponse:
        return await self._propose(
            pb.AuthRoleRevokePermissionResponse, auth_role_revoke_permission=request
        )
