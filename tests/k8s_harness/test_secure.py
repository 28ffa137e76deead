"""The chart with client and peer TLS and etcd's auth (JWT tokens, a root password): the pods
bootstrap over https, set up root and enable auth; anonymous requests are refused; a leader
killed under authenticated writes loses none of them; scale 3 -> 4 -> 3 with the scale-in hook
(which authenticates as root over TLS); the snapshot CronJob and ``helm test`` as root over
TLS. The certificates are made for the pod DNS names (trustme) and given as existing Secrets."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.k8s_harness.checks import Etcdctl, eventually, lost_keys, members_agree, writing
from tests.k8s_harness.cluster import LocalKube, Release
from tests.k8s_harness.conftest import require_helm
from tests.k8s_harness.manifests import Obj

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RELEASE = "sec"
FULLNAME = f"{RELEASE}-etcdpy"
HEADLESS = f"{FULLNAME}-headless"
ROOT_PASSWORD = "k8s-harness-root"
READY_TIMEOUT = 90.0


def tls_secret(name: str, ca: trustme.CA, names: list[str]) -> Obj:
    cert = ca.issue_cert(*names)
    data = {
        "ca.crt": ca.cert_pem.bytes(),
        "tls.crt": b"".join(b.bytes() for b in cert.cert_chain_pems),
        "tls.key": cert.private_key_pem.bytes(),
    }
    return {
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def jwt_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def values(replicas: int, jwt_key: str) -> dict[str, Any]:
    return {
        "replicaCount": replicas,
        "terminationGracePeriodSeconds": 15,
        "auth": {
            "rbac": {
                "create": True,
                "allowNoneAuthentication": False,
                "rootPassword": ROOT_PASSWORD,
            },
            "token": {"type": "jwt", "privateKey": {"key": jwt_key}},
            "client": {"secureTransport": True, "existingSecret": f"{FULLNAME}-client-tls"},
            "peer": {"secureTransport": True, "existingSecret": f"{FULLNAME}-peer-tls"},
        },
        "disasterRecovery": {"enabled": True},
    }


@pytest.fixture(scope="module")
def secure(kube: LocalKube) -> Iterator[tuple[Release, Etcdctl, str]]:
    require_helm()
    ca = trustme.CA()
    domain = f"{kube.namespace}.svc.{kube.cluster_domain}"
    names = [f"*.{HEADLESS}.{domain}", f"{FULLNAME}.{domain}", FULLNAME, "localhost"]
    kube.extra_objects += [
        tls_secret(f"{FULLNAME}-client-tls", ca, names),
        tls_secret(f"{FULLNAME}-peer-tls", ca, [f"*.{HEADLESS}.{domain}"]),
    ]
    cacert = kube.workdir / "ca.crt"
    ca.cert_pem.write_to_path(str(cacert))
    # No CN (the user comes from --user); the client namespace's address as its one SAN, which
    # etcd checks against the connection's remote address.
    client = ca.issue_cert(kube.client_host.address)
    cert = (kube.workdir / "client.crt", kube.workdir / "client.key")
    client.cert_chain_pems[0].write_to_path(str(cert[0]))
    client.private_key_pem.write_to_path(str(cert[1]))
    jwt_key = jwt_key_pem()
    release = Release(kube, RELEASE)
    ctl = Etcdctl(release, "root", ROOT_PASSWORD, cacert, "https", cert)
    try:
        release.install(values(3, jwt_key))
        yield release, ctl, jwt_key
    finally:
        release.uninstall()


def agree(release: Release, ctl: Etcdctl, writes_stopped: bool = True) -> None:
    release.wait_ready(timeout=READY_TIMEOUT)
    eventually(
        lambda: members_agree(ctl, same_revision=writes_stopped),
        45,
        f"members agree\n{release.describe()}",
    )
    assert release.controller_errors() == []


def test_install_with_tls_and_auth(secure: tuple[Release, Etcdctl, str]) -> None:
    release, ctl, _ = secure
    agree(release, ctl)
    assert ctl.out("put", "secure", "yes").strip() == "OK"
    anonymous = Etcdctl(release, cacert=ctl.cacert, cert=ctl.cert).run("get", "secure")
    assert anonymous.returncode != 0 and "user name is empty" in anonymous.stderr, anonymous
    wrong = Etcdctl(release, "root", "wrong", ctl.cacert, cert=ctl.cert).run("get", "secure")
    assert wrong.returncode != 0 and "authentication failed" in wrong.stderr, wrong
    no_cert = Etcdctl(release, "root", ROOT_PASSWORD, ctl.cacert).run("get", "secure")
    assert no_cert.returncode != 0  # a trusted CA is set: a client certificate is required
    plain = Etcdctl(release, "root", ROOT_PASSWORD).run("get", "secure")
    assert plain.returncode != 0  # the client port speaks only TLS


def test_kill_9_of_the_leader_under_authenticated_writes(
    secure: tuple[Release, Etcdctl, str], tmp_path: Path
) -> None:
    release, ctl, _ = secure
    agree(release, ctl)
    leader = eventually(ctl.leader_pod, 30, "a leader")
    prefix = "w/secure-kill/"
    with writing(ctl, prefix, tmp_path) as writer:
        time.sleep(1.0)
        release.kill_pod(leader)
        time.sleep(2.0)
        agree(release, ctl, writes_stopped=False)
    agree(release, ctl)
    assert writer.acked, "no authenticated write was acknowledged"
    assert lost_keys(ctl, writer.acked, prefix) == {}


def test_scale_3_to_4_to_3_as_root_over_tls(secure: tuple[Release, Etcdctl, str]) -> None:
    release, ctl, jwt_key = secure
    agree(release, ctl)
    hooks = release.upgrade(values(4, jwt_key))
    assert all(h.succeeded for h in hooks), [h.log for h in hooks]
    agree(release, ctl)
    hooks = release.upgrade(values(3, jwt_key))
    assert [h.succeeded for h in hooks] == [True], [h.log for h in hooks]
    agree(release, ctl)


def test_snapshot_and_helm_test_as_root_over_tls(secure: tuple[Release, Etcdctl, str]) -> None:
    release, ctl, _ = secure
    agree(release, ctl)
    snapshot = release.run_cronjob("snapshotter")
    assert snapshot.succeeded, snapshot.log
    assert list(release.kube.pvc_path(f"{FULLNAME}-snapshotter").glob("db-*"))
    results = release.helm_test()
    assert results and all(r.succeeded for r in results), [r.log for r in results]
