"""Debian's etcdctl 3.4 manages users, roles and auth on a real etcdpy process and prints what
it prints against a real etcd 3.4 for the same commands; the auth state survives a restart
and a snapshot restore. Each runs with simple tokens and with JWTs (RS256), which front-end
processes (ETCD_FRONTEND_PROCESSES=2) verify themselves."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from tests.external_tools import Etcdctl
from tests.integration.jwt_keys import jwt_auth_token

pytestmark = pytest.mark.integration

ROOT = "--user=root:rootpw"

# (arguments, stdin): one session of a user setting auth up, using it, and tearing it down.
SCRIPT: list[tuple[tuple[str, ...], str | None]] = [
    (("role", "add", "r1"), None),
    (("role", "add", "r1"), None),  # already exists
    (("role", "grant-permission", "r1", "read", "foo"), None),
    (("role", "grant-permission", "r1", "readwrite", "a", "c"), None),
    (("role", "grant-permission", "r1", "write", "/p/", "--prefix"), None),
    (("role", "grant-permission", "r1", "read", "k", "--from-key"), None),
    (("role", "grant-permission", "r1", "write", "foo"), None),  # replaces read foo
    (("role", "grant-permission", "nosuch", "read", "x"), None),
    (("role", "get", "r1"), None),
    (("role", "revoke-permission", "r1", "a", "c"), None),
    (("role", "revoke-permission", "r1", "a", "c"), None),  # not granted any more
    (("role", "revoke-permission", "r1", "/p/", "--prefix"), None),
    (("role", "get", "r1"), None),
    (("role", "get", "nosuch"), None),
    (("role", "add", "r0"), None),
    (("role", "list"), None),
    (("user", "add", "u1", "--interactive=false"), "pw1\n"),
    (("user", "add", "u1", "--interactive=false"), "pw1\n"),  # already exists
    (("user", "add", "cn-user", "--no-password"), None),
    (("user", "grant-role", "u1", "r1"), None),
    (("user", "grant-role", "u1", "r0"), None),
    (("user", "grant-role", "u1", "r1"), None),  # already granted: ignored
    (("user", "grant-role", "u1", "nosuch"), None),
    (("user", "grant-role", "nosuch", "r1"), None),
    (("user", "get", "u1"), None),
    (("user", "get", "u1", "--detail"), None),
    (("user", "get", "nosuch"), None),
    (("user", "list"), None),
    (("user", "revoke-role", "u1", "r0"), None),
    (("user", "revoke-role", "u1", "r0"), None),  # not granted
    (("user", "passwd", "u1", "--interactive=false"), "pw2\n"),
    (("user", "passwd", "nosuch", "--interactive=false"), "pw2\n"),
    (("auth", "enable"), None),  # no root user
    (("user", "add", "root", "--interactive=false"), "rootpw\n"),
    (("auth", "enable"), None),  # root has no root role
    (("user", "grant-role", "root", "root"), None),  # the root role is implicit
    (("auth", "enable"), None),
    (("user", "list"), None),  # no user given: user name is empty
    (("--user=root:wrong", "user", "list"), None),
    (("--user=nobody:pw", "user", "list"), None),
    (("--user=cn-user:", "user", "list"), None),  # a user without password cannot log in
    ((ROOT, "user", "list"), None),
    ((ROOT, "role", "list"), None),
    (("--user=u1:pw2", "user", "get", "u1"), None),  # a user may read itself
    (("--user=u1:pw2", "user", "get", "root"), None),
    (("--user=u1:pw2", "role", "get", "r1"), None),  # and its roles
    (("--user=u1:pw2", "user", "list"), None),
    (("--user=u1:pw2", "auth", "disable"), None),
    ((ROOT, "user", "delete", "root"), None),
    ((ROOT, "user", "revoke-role", "root", "root"), None),
    ((ROOT, "role", "delete", "root"), None),
    ((ROOT, "role", "delete", "r1"), None),  # u1 loses it
    ((ROOT, "user", "get", "u1"), None),
    ((ROOT, "auth", "disable"), None),
    (("auth", "disable"), None),
    (("user", "delete", "u1"), None),
    (("user", "delete", "u1"), None),
    (("user", "list"), None),
    (("role", "delete", "r0"), None),
    (("role", "list"), None),
]


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def _stderr(text: str) -> str:
    """etcdctl's stderr without what differs between runs (the time and target of the
    client's retry warning: its message and error stay)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            fields = json.loads(line)
            line = f"{fields.get('msg')}: {fields.get('error')}"
        lines.append(line)
    return "\n".join(lines)


def run_script(endpoint: str) -> list[Outcome]:
    ctl = Etcdctl(endpoint)
    outcomes = []
    for args, stdin in SCRIPT:
        proc = ctl.run(*args, input=stdin, check=False)
        outcomes.append(Outcome(proc.returncode, proc.stdout, _stderr(proc.stderr)))
    return outcomes


class AuthAwareMember(MemberProcess):
    """Ready once it answers, even with an auth error (auth may be on after a restart)."""

    def ready_probe(self, channel: grpc.Channel) -> None:
        try:
            super().ready_probe(channel)
        except grpc.RpcError as exc:
            if exc.code() not in (  # type: ignore[attr-defined]
                grpc.StatusCode.INVALID_ARGUMENT,
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
            ):
                raise


def auth_aware(member: MemberProcess) -> AuthAwareMember:
    return AuthAwareMember(
        name=member.name,
        data_dir=member.data_dir,
        client_port=member.client_port,
        peer_port=member.peer_port,
        binary=member.binary,
        extra_args=[*member.extra_args, "--bcrypt-cost=4"],
    )


@pytest.fixture(params=["simple", "jwt"])
def member(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AuthAwareMember]:
    # JWT: front-end processes (ETCD_FRONTEND_PROCESSES=2) verify tokens themselves
    extra = [f"--auth-token={jwt_auth_token(tmp_path)}"] if request.param == "jwt" else []
    process = auth_aware(etcdpy_member(tmp_path, extra_args=extra))
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_etcdctl_prints_what_it_prints_against_etcd(
    tmp_path: Path, member: AuthAwareMember
) -> None:
    reference = auth_aware(etcd_member(tmp_path, name="ref"))
    reference.start()
    try:
        expected = run_script(reference.endpoint)
    finally:
        reference.stop()
    got = run_script(member.endpoint)
    differences = [
        f"etcdctl {' '.join(args)}:\n  etcd:   {want}\n  etcdpy: {have}"
        for (args, _stdin), want, have in zip(SCRIPT, expected, got, strict=True)
        if have != want
    ]
    assert not differences, "\n".join(differences)


def test_auth_survives_a_restart_and_a_snapshot_restore(
    tmp_path: Path, member: AuthAwareMember
) -> None:
    ctl = Etcdctl(member.endpoint)
    ctl.out("user", "add", "root", "--interactive=false", input="rootpw\n")
    ctl.out("user", "grant-role", "root", "root")
    ctl.out("role", "add", "reader")
    ctl.out("role", "grant-permission", "reader", "read", "/a/", "--prefix")
    ctl.out("user", "add", "alice", "--interactive=false", input="alicepw\n")
    ctl.out("user", "grant-role", "alice", "reader")
    ctl.out("auth", "enable")
    expected_role = ctl.out(ROOT, "role", "get", "reader")

    member.stop()
    member.start()
    assert ctl.out(ROOT, "user", "list") == "alice\nroot\n"
    assert ctl.out(ROOT, "role", "get", "reader") == expected_role
    assert ctl.run("user", "list", check=False).stderr.endswith("user name is empty\n")

    snapshot = tmp_path / "snap.db"
    ctl.out(ROOT, "snapshot", "save", str(snapshot))
    member.stop()
    restored = auth_aware(etcdpy_member(tmp_path, name="restored"))
    restore = subprocess.run(
        [
            sys.executable,
            "-m",
            "etcdpy.cli.ctl",
            "snapshot",
            "restore",
            str(snapshot),
            "--data-dir",
            str(restored.data_dir),
            "--name",
            restored.name,
            "--initial-cluster",
            f"{restored.name}={restored.peer_url}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert restore.returncode == 0, restore.stderr
    restored.start()
    try:
        restored_ctl = Etcdctl(restored.endpoint)
        assert restored_ctl.out("--user=alice:alicepw", "user", "get", "alice") == (
            "User: alice\nRoles: reader\n"
        )
        assert restored_ctl.out(ROOT, "role", "get", "reader") == expected_role
    finally:
        restored.stop()


def test_a_bad_jwt_option_refuses_the_start_with_etcds_message(tmp_path: Path) -> None:
    member = etcdpy_member(tmp_path, extra_args=["--auth-token=jwt,sign-method=RS256,ttl=1m"])
    member.start(wait=False)
    assert member.proc is not None
    assert member.proc.wait(timeout=30) == 1
    assert "auth: missing key data" in member.log_tail()
    member.proc = None
