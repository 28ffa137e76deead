"""The Auth service's own work before a proposal: password hashing and checking."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from etcdpy import errors
from etcdpy.api import auth
from etcdpy.pb.etcdserverpb import rpc_pb2 as pb


class _Store:
    """Auth on, one user "alice" whose password is "right" (hashed at cost 4)."""

    tokens: Any = None
    revision = 1

    def __init__(self) -> None:
        self.hash = auth.hash_password("right", 4).encode()

    def password_of(self, name: str) -> tuple[bytes, int]:
        if name != "alice":
            raise errors.AuthFailed()
        return self.hash, self.revision


class _Config:
    bcrypt_cost = 4


class _Server:
    config = _Config()

    def __init__(self) -> None:
        self.auth = _Store()

    async def linearizable_read(self) -> None:
        return None


def _authenticate(service: auth.AuthService, name: str, password: str) -> None:
    request = pb.AuthenticateRequest(name=name, password=password)
    asyncio.run(service.Authenticate(request, None))  # type: ignore[arg-type]


def test_an_unknown_user_costs_a_bcrypt_comparison_like_a_wrong_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compared: list[bytes] = []
    real = auth.password_matches

    def counting(password: str, hashed: bytes) -> bool:
        compared.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(auth, "password_matches", counting)
    service = auth.AuthService(_Server())  # type: ignore[arg-type]
    with pytest.raises(errors.AuthFailed):
        _authenticate(service, "alice", "wrong")
    with pytest.raises(errors.AuthFailed):
        _authenticate(service, "mallory", "anything")
    assert len(compared) == 2  # one bcrypt comparison each: the refusals look alike
    assert compared[1] != compared[0] and compared[1].startswith(b"$2b$04$")


def test_passwords_are_cut_at_72_bytes_as_go_bcrypt_does() -> None:
    hashed = auth.hash_password("x" * 72, 4).encode()
    assert auth.password_matches("x" * 72 + "ignored", hashed)
    assert not auth.password_matches("x" * 71, hashed)
    assert not auth.password_matches("x", b"not a bcrypt hash")
