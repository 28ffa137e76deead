"""etcdpyctl's TLS flags, --user and auth/user/role commands print what etcdctl 3.4 prints.

One scenario of commands is run twice, each time against a fresh server behind mutual TLS:
once with Debian's etcdctl, once with etcdpyctl; the transcripts (exit code, stdout, the
``Error:`` line) must be equal. The server is a parameter (``SERVERS``): real etcd 3.4 and
etcdpy; and etcdctl's transcript against etcdpy must equal its transcript against etcd 3.4.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_command, free_port
from tests.ctl_inprocess import run_ctl
from tests.external_tools import require_tool
from tests.tls_certs import write_member_certs

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SecureServer:
    """A server on ``endpoint`` (https, mutual TLS) and the client files that reach it."""

    endpoint: str
    ca: Path
    cert: Path  # CN "root"
    key: Path
    stranger_cert: Path  # CN "nobody": no such user
    stranger_key: Path

    def tls_args(self) -> list[str]:
        return [f"--cacert={self.ca}", f"--cert={self.cert}", f"--key={self.key}"]


def _certs(tmp: Path) -> tuple[Path, Path, Path, Path, Path, Path, Path]:
    ca = trustme.CA()
    server = write_member_certs(ca, tmp, "server", hosts=("127.0.0.1", "localhost"))
    root = write_member_certs(ca, tmp, "root", common_name="root")
    nobody = write_member_certs(ca, tmp, "nobody", common_name="nobody")
    return server.cert, server.key, server.ca, root.cert, root.key, nobody.cert, nobody.key


@contextlib.contextmanager
def start_etcd(tmp: Path) -> Iterator[SecureServer]:
    """Real etcd 3.4 with https client URLs and --client-cert-auth."""
    with _start_secure([require_tool("etcd")], tmp) as server:
        yield server


@contextlib.contextmanager
def start_etcdpy(tmp: Path) -> Iterator[SecureServer]:
    """etcdpy with the same flags (its front-end processes as the suite's mode sets them)."""
    with _start_secure(etcdpy_command(), tmp) as server:
        yield server


@contextlib.contextmanager
def _start_secure(binary: list[str], tmp: Path) -> Iterator[SecureServer]:
    s_cert, s_key, ca, cert, key, n_cert, n_key = _certs(tmp / "certs")
    member = MemberProcess(
        name="a1",
        data_dir=tmp / "data",
        client_port=free_port(),
        peer_port=free_port(),
        binary=binary,
        extra_args=[
            f"--cert-file={s_cert}",
            f"--key-file={s_key}",
            f"--trusted-ca-file={ca}",
            "--client-cert-auth",
        ],
        log_path=tmp / "server.log",
        client_scheme="https",
        client_tls=(ca, cert, key),  # the readiness probe logs in with root's certificate
    )
    member.start()
    try:
        yield SecureServer(member.client_url, ca, cert, key, n_cert, n_key)
    finally:
        member.stop()


# name -> how to start a fresh server of that kind.
SERVERS: dict[str, Callable[[Path], contextlib.AbstractContextManager[SecureServer]]] = {
    "etcd": start_etcd,
    "etcdpy": start_etcdpy,
}

ETCDCTL, ETCDPYCTL = "etcdctl", "etcdpyctl"


def _run(
    tool: str, server: SecureServer, *args: str, stdin: str = "", tls: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    head = [f"--endpoints={server.endpoint}", "--dial-timeout=3s", "--command-timeout=5s"]
    argv = [*head, *(server.tls_args() if tls else []), *args]
    if tool == ETCDPYCTL:  # in this process: the output is the subject, not the interpreter
        return run_ctl(argv, stdin=stdin, env=env)
    return subprocess.run(
        [require_tool("etcdctl"), *argv],
        input=stdin, capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip


def _strip_header(stdout: str) -> str:
    """JSON lines without the header's cluster and member ids (each server has its own)."""
    lines = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            value = json.loads(line)
            for field in ("cluster_id", "member_id"):
                value.get("header", {}).pop(field, None)
            line = json.dumps(value, sort_keys=True)
        lines.append(line)
    return "\n".join(lines)


# (the command, exit code, stdout, the Error: lines of stderr)
Line = tuple[str, int, str, list[str]]


def _transcript(tool: str, server: SecureServer, steps: list[Step]) -> list[Line]:
    out: list[Line] = []
    for step in steps:
        args = [a.format(nobody_cert=server.stranger_cert, nobody_key=server.stranger_key)
                for a in step.args]  # fmt: skip
        proc = _run(tool, server, *args, stdin=step.stdin, tls=step.tls)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
        out.append((" ".join(step.args), proc.returncode, _strip_header(proc.stdout), errors))
    return out


@dataclass(frozen=True)
class Step:
    args: tuple[str, ...]
    stdin: str = ""
    tls: bool = True


def _steps(*lines: str | tuple[str, str]) -> list[Step]:
    steps = []
    for line in lines:
        text, stdin = (line, "") if isinstance(line, str) else line
        steps.append(Step(tuple(text.split(" ")), stdin))
    return steps


ROOT = "--user=root:rootpw"

SCENARIO = _steps(
    # auth off: users and roles can be managed by anyone, auth cannot be enabled without root
    "auth enable",
    "user add root --new-user-password=rootpw",
    "user add root:again",
    "user add :pw",
    "user add",
    "user list",
    "role list -w json",
    "auth enable",  # root lacks the root role: etcdctl adds it and grants it
    "auth enable",
    # auth on: a log-in is needed (the certificate's CN root is one too, as with etcd)
    f"{ROOT} user add alice --new-user-password=alicepw",
    f"{ROOT} user add carol --no-password",
    (f"{ROOT} user add dave --interactive=false", "davepw extra\n"),
    (f"{ROOT} user add erin", "pw1\npw2\n"),
    (f"{ROOT} user add erin", ""),
    f"{ROOT} role add reader",
    f"{ROOT} role add reader",
    f"{ROOT} role grant-permission reader read /r/ --prefix",
    f"{ROOT} role grant-permission reader readwrite /a /c",
    f"{ROOT} role grant-permission reader write /z --from-key",
    f"{ROOT} role grant-permission reader WRITE x",
    f"{ROOT} role grant-permission reader write  --prefix",
    f"{ROOT} role grant-permission reader bogus x",
    f"{ROOT} role grant-permission reader read x y --prefix",
    f"{ROOT} role grant-permission reader read x --prefix --from-key",
    f"{ROOT} role grant-permission reader read",
    f"{ROOT} role get reader",
    f"{ROOT} role get reader -w json",
    f"{ROOT} role get reader -w table",
    f"{ROOT} role get missing",
    f"{ROOT} user grant-role alice reader",
    f"{ROOT} user grant-role alice missing",
    f"{ROOT} user get alice",
    f"{ROOT} user get alice --detail",
    f"{ROOT} user get alice -w json",
    f"{ROOT} user list",
    f"{ROOT} user list -w json",
    "--user=alice:alicepw put /r/1 one",
    "--user=alice:alicepw put /a/1 one",
    "--user=alice:alicepw get /a/1",
    "--user=alice:wrong get /a/1",
    "--user=nobody --password=x get /a/1",
    ("--user=alice get /a/1", "alicepw\n"),
    "--user=alice --password=alicepw user list",
    "--user=alice:alicepw auth disable",
    (f"{ROOT} user passwd alice --interactive=false", "newpw\n"),
    "--user=alice:newpw get /a/1 -w json",
    f"{ROOT} user revoke-role alice reader",
    f"{ROOT} user revoke-role alice reader",
    f"{ROOT} role revoke-permission reader /a /c",
    f"{ROOT} role revoke-permission reader /r/ --prefix",
    f"{ROOT} role revoke-permission reader /z --from-key",
    f"{ROOT} role revoke-permission reader x",
    f"{ROOT} role revoke-permission reader x",
    f"{ROOT} role revoke-permission reader  --prefix",
    f"{ROOT} role revoke-permission reader",
    f"{ROOT} role get reader",
    f"{ROOT} role delete reader",
    f"{ROOT} role delete reader",
    f"{ROOT} user delete dave",
    f"{ROOT} user delete dave",
    f"{ROOT} user delete root",
    f"{ROOT} user list extra",
    f"{ROOT} auth disable extra",
    f"{ROOT} auth disable",
    "user list",
)

TLS_ERRORS = _steps(
    "--cacert= get k",
    "--cert={nobody_cert} --key= get k",
    "--key={nobody_key} --cert=/nonexistent/cert.pem get k",
)


# (tool, server kind) -> the SCENARIO's transcript, each run once on a fresh server
Transcripts = Callable[[str, str], list[Line]]


@pytest.fixture(scope="module")
def scenario_transcript(tmp_path_factory: pytest.TempPathFactory) -> Transcripts:
    """Each (tool, server) transcript is run once per module: etcdctl's against etcd 3.4 and
    against etcdpy serve two tests each."""
    done: dict[tuple[str, str], list[Line]] = {}

    def transcript(tool: str, kind: str) -> list[Line]:
        if (tool, kind) not in done:
            with SERVERS[kind](tmp_path_factory.mktemp(f"{kind}-{tool}")) as server:
                done[tool, kind] = _transcript(tool, server, SCENARIO)
        return done[tool, kind]

    return transcript


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_auth_commands_print_what_etcdctl_prints(
    kind: str, scenario_transcript: Transcripts
) -> None:
    require_tool("etcdctl")
    theirs, ours = (scenario_transcript(tool, kind) for tool in (ETCDCTL, ETCDPYCTL))
    for expected, got in zip(theirs, ours, strict=True):
        assert got == expected
    # the scenario is not vacuous: it enabled auth, printed a role and met refusals
    assert ("auth enable", 0, "Authentication Enabled", []) in ours
    assert any(step[2].startswith("Role reader\nKV Read:\n\t[/a, /c)") for step in ours)
    assert sum(step[1] != 0 for step in ours) >= 20


def test_etcdctl_prints_the_same_against_etcd_and_etcdpy(scenario_transcript: Transcripts) -> None:
    """The server side: Debian's etcdctl runs the scenario against etcd 3.4 and etcdpy."""
    require_tool("etcdctl")
    theirs, ours = (scenario_transcript(ETCDCTL, kind) for kind in ("etcd", "etcdpy"))
    for expected, got in zip(theirs, ours, strict=True):
        assert got == expected


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_tls_flags_as_etcdctl_reads_them(kind: str, tmp_path: Path) -> None:
    require_tool("etcdctl")
    with SERVERS[kind](tmp_path) as server:
        for step in TLS_ERRORS:
            assert _transcript(ETCDPYCTL, server, [step]) == _transcript(ETCDCTL, server, [step])
        # a bad bool: etcdctl also prints the command's usage on stdout; we print only the error
        ours, theirs = (_transcript(tool, server, _steps("--insecure-transport=maybe get k"))[0]
                        for tool in (ETCDPYCTL, ETCDCTL))  # fmt: skip
        assert (ours[1], set(ours[3])) == (theirs[1], set(theirs[3]))  # cobra says it twice
        # https endpoint, the server's CA and a client certificate: served
        assert _run(ETCDPYCTL, server, "put", "k", "v").stdout == "OK\n"
        # host:port with TLS flags is TLS too (clientv3's rule)
        bare = SecureServer(server.endpoint.removeprefix("https://"), server.ca, server.cert,
                            server.key, server.stranger_cert, server.stranger_key)  # fmt: skip
        assert _run(ETCDPYCTL, bare, "get", "k", "--print-value-only").stdout == "v\n"
        # http:// is plain text whatever the flags: the TLS port does not answer it
        plain = SecureServer(server.endpoint.replace("https", "http"), server.ca, server.cert,
                             server.key, server.stranger_cert, server.stranger_key)  # fmt: skip
        failed = _run(ETCDPYCTL, plain, "--dial-timeout=1s", "get", "k")
        assert (failed.returncode, failed.stdout) == (1, "")
        assert "Error: context deadline exceeded" in failed.stderr
        # without --cacert the system's CAs do not know the test CA
        unknown = _run(ETCDPYCTL, server, "--dial-timeout=1s", f"--cert={server.cert}",
                       f"--key={server.key}", "get", "k", tls=False)  # fmt: skip
        assert unknown.returncode == 1
        # better than etcdctl 3.4: --insecure-skip-tls-verify alone works for https endpoints
        skipped = _run(ETCDPYCTL, server, "--insecure-skip-tls-verify", f"--cert={server.cert}",
                       f"--key={server.key}", "get", "k", "--print-value-only",
                       tls=False)  # fmt: skip
        assert (skipped.returncode, skipped.stdout) == (0, "v\n"), skipped.stderr
        # the environment, as etcdctl reads it; a real process, the proof that the console
        # script behaves as run_ctl does
        env_run = subprocess.run(
            [sys.executable, "-m", "etcdpy.cli.ctl", "get", "k", "--print-value-only"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "ETCDCTL_ENDPOINTS": server.endpoint,
                 "ETCDCTL_CACERT": str(server.ca), "ETCDCTL_CERT": str(server.cert),
                 "ETCDCTL_KEY": str(server.key)},
        )  # fmt: skip
        assert (env_run.returncode, env_run.stdout) == (0, "v\n"), env_run.stderr


@pytest.mark.first_pass_only("it starts no etcdpy member: etcdpyctl's client against etcd 3.4")
def test_an_expired_token_is_fetched_again_once(tmp_path: Path) -> None:
    """etcd 3.4 with simple tokens that live 1 s: a call after that is refused with "invalid
    auth token"; etcdpyctl's client logs in again and the call succeeds (clientv3's rule)."""
    from etcdpy.cli.ctl_client import Client
    from etcdpy.cli.ctl_login import UserFlags
    from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

    require_tool("etcd")
    member = etcd_member(tmp_path, "t1", ["--auth-token=simple", "--auth-token-ttl=1"])
    member.start()
    try:
        client = member.client_url
        server = SecureServer(client, Path(), Path(), Path(), Path(), Path())
        assert _run(ETCDPYCTL, server, "user", "add", "root:pw", tls=False).returncode == 0
        assert _run(ETCDPYCTL, server, "auth", "enable", tls=False).returncode == 0
        ctl = Client([client], user=UserFlags("root", "pw"))
        try:
            stub = rpc_pb2_grpc.AuthStub(ctl.channel())
            assert list(ctl.call(stub.UserList, rpc_pb2.AuthUserListRequest()).users) == ["root"]
            time.sleep(2.5)  # the token expires (the server sweeps them every second)
            assert list(ctl.call(stub.UserList, rpc_pb2.AuthUserListRequest()).users) == ["root"]
        finally:
            ctl.close()
        assert "invalid auth token" in member.log_tail(400)
    finally:
        member.stop()
