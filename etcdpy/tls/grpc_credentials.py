"""gRPC channel credentials of etcdpy's own clients (the benchmark's workers, the ``etcdpy k8s``
commands) from PEM files, as etcd's clients take them: TLS when a CA is given or an endpoint is
https, plain text otherwise. etcdpyctl builds its own (etcdctl's extra rules: system roots,
--insecure-skip-tls-verify) in ``etcdpy.cli.ctl_security``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import grpc


def channel_credentials(
    cacert: str, cert: str, key: str, endpoints: Iterable[str]
) -> grpc.ChannelCredentials | None:
    """Credentials for a channel to ``endpoints``; None: plain text. "" means no such file."""
    if not cacert and not any(e.startswith("https://") for e in endpoints):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(cacert), private_key=_read(key), certificate_chain=_read(cert)
    )


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None
