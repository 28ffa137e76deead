"""A client that keeps writing, run in the client namespace: one new key every INTERVAL through
the given endpoints in turn, each acknowledged key appended to OUT (flushed) at once. Stops on
SIGTERM or after MAX_SECONDS. Standalone (grpc and the generated stubs only). With WRITER_CACERT
set, it speaks TLS to the endpoints, trusting that CA (and presents WRITER_CERT/WRITER_KEY).

Usage: python writer.py ENDPOINTS(comma-separated host:port) OUT PREFIX [USER:PASSWORD]
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

INTERVAL = 0.05
TIMEOUT = 1.0
MAX_SECONDS = 300.0


def main() -> None:
    endpoints, out_path, prefix = sys.argv[1].split(","), sys.argv[2], sys.argv[3]
    credentials = sys.argv[4] if len(sys.argv) > 4 else ""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    cacert = os.environ.get("WRITER_CACERT")
    if cacert:
        cert_path, key_path = os.environ.get("WRITER_CERT"), os.environ.get("WRITER_KEY")
        creds = grpc.ssl_channel_credentials(
            Path(cacert).read_bytes(),
            Path(key_path).read_bytes() if key_path else None,
            Path(cert_path).read_bytes() if cert_path else None,
        )
        channels = [grpc.secure_channel(e, creds) for e in endpoints]
    else:
        channels = [grpc.insecure_channel(e) for e in endpoints]
    tokens: dict[int, str] = {}
    started = time.monotonic()
    count = 0
    with open(out_path, "a") as out:
        while not stop.wait(INTERVAL) and time.monotonic() - started < MAX_SECONDS:
            count += 1
            index = count % len(channels)
            key = f"{prefix}{time.time_ns()}/{count}".encode()
            try:
                metadata = _metadata(channels[index], index, credentials, tokens)
                rpc_pb2_grpc.KVStub(channels[index]).Put(
                    rpc_pb2.PutRequest(key=key, value=b"v"), timeout=TIMEOUT, metadata=metadata
                )
            except grpc.RpcError:
                tokens.pop(index, None)
                continue
            out.write(key.decode() + "\n")
            out.flush()
    for channel in channels:
        channel.close()


def _metadata(
    channel: grpc.Channel, index: int, credentials: str, tokens: dict[int, str]
) -> list[tuple[str, str]]:
    if not credentials:
        return []
    if index not in tokens:
        user, password = credentials.split(":", 1)
        resp = rpc_pb2_grpc.AuthStub(channel).Authenticate(
            rpc_pb2.AuthenticateRequest(name=user, password=password), timeout=TIMEOUT
        )
        tokens[index] = resp.token
    return [("token", tokens[index])]


if __name__ == "__main__":
    main()
