"""etcdpyctl's auth pieces that need no server: permission ranges, Go bool flags, --user."""

from __future__ import annotations

import io

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from etcdpy.cli import ctl
from etcdpy.cli.ctl_auth import OPEN_END, PermRange, perm_range
from etcdpy.cli.ctl_click import go_bool_args
from etcdpy.cli.ctl_errors import EXIT_BAD_ARGS, CtlError
from etcdpy.cli.ctl_login import Credentials, credentials_from_flags
from etcdpy.cli.ctl_security import TlsSettings, _name_for, parse_endpoint


@pytest.mark.parametrize(
    ("args", "prefix", "from_key", "expected"),
    [
        ([b"k"], False, False, PermRange(b"k", b"")),
        ([b"k"], True, False, PermRange(b"k", b"l")),
        ([b"k"], False, True, PermRange(b"k", OPEN_END)),
        ([b"a", b"c"], False, False, PermRange(b"a", b"c")),
        ([b""], False, False, PermRange(b"\x00", b"")),
        ([b""], True, False, PermRange(b"\x00", OPEN_END)),
        ([b""], False, True, PermRange(b"\x00", OPEN_END)),
    ],
)
def test_perm_range_as_role_command_go(
    args: list[bytes], prefix: bool, from_key: bool, expected: PermRange
) -> None:
    assert perm_range(args, prefix=prefix, from_key=from_key) == expected


@pytest.mark.parametrize(
    ("args", "prefix", "from_key", "message"),
    [
        ([b"k"], True, True, "--from-key and --prefix flags are mutually exclusive"),
        ([b""], True, True, "--from-key and --prefix flags are mutually exclusive"),
        ([b"a", b"c"], True, False, "unexpected endkey argument with --prefix flag"),
        ([b"a", b"c"], False, True, "unexpected endkey argument with --from-key flag"),
    ],
)
def test_perm_range_errors(args: list[bytes], prefix: bool, from_key: bool, message: str) -> None:
    with pytest.raises(CtlError) as caught:
        perm_range(args, prefix=prefix, from_key=from_key)
    assert (str(caught.value), caught.value.code) == (message, EXIT_BAD_ARGS)


def test_go_bool_flags_become_clicks() -> None:
    args = ["--insecure-transport", "--prefix=true", "--detail=false", "user", "add", "x",
            "--interactive=false", "--", "--prefix=false"]  # fmt: skip
    assert go_bool_args(ctl.cli, args) == [
        "--insecure-transport=true", "--prefix", "user", "add", "x", "--interactive=false",
        "--", "--prefix=false",
    ]  # fmt: skip


def test_user_flag_forms(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert credentials_from_flags("", "x") is None
    assert credentials_from_flags("root:pw:with:colons", "") == Credentials(
        "root", "pw:with:colons"
    )
    assert credentials_from_flags("root:pw", "other") == Credentials("root:pw", "other")
    monkeypatch.setattr("sys.stdin", io.StringIO("  secret \nnext\n"))
    assert credentials_from_flags("root", "") == Credentials("root", "secret")
    assert capsys.readouterr().out == "Password: \n"  # speakeasy's prompt and newline
    assert not Credentials("root", "").usable  # clientv3 logs in only with both


def test_endpoint_schemes_choose_tls() -> None:
    default, files, secure = (
        TlsSettings(),
        TlsSettings(cacert="ca.pem"),
        TlsSettings(insecure_transport=False),
    )
    plain, https, bare = (parse_endpoint(e) for e in
                          ("http://h:1", "https://h:1", "h:1"))  # fmt: skip
    assert [default.uses_tls(e) for e in (plain, https, bare)] == [False, True, False]
    assert [files.uses_tls(e) for e in (plain, https, bare)] == [False, True, True]
    assert [secure.uses_tls(e) for e in (plain, https, bare)] == [False, True, True]
    assert (https.host, https.port) == ("h", 1)


def test_pinned_certificate_name() -> None:
    leaf = trustme.CA().issue_cert("127.0.0.1", "etcd.example")
    pem = leaf.cert_chain_pems[0].bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert _name_for(der, "127.0.0.1") is None
    assert _name_for(der, "etcd.example") is None
    assert _name_for(der, "10.9.9.9") == "etcd.example"
