"""etcdpyctl's error (``CtlError``), etcdctl's exit codes, and the text etcdctl prints for a
failed call. Scripts written for etcdctl read our exit codes the same way.
"""

from __future__ import annotations

import grpc

__all__ = [
    "EXIT_BAD_ARGS",
    "EXIT_BAD_CONNECTION",
    "EXIT_BAD_FEATURE",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID_INPUT",
    "CtlError",
    "rpc_message",
]

# etcdctl's exit codes (ctlv3/command/error.go).
EXIT_ERROR = 1
EXIT_BAD_CONNECTION = 2
EXIT_INVALID_INPUT = 3
EXIT_BAD_FEATURE = 4  # a valid flag with a value that is not supported
EXIT_INTERRUPTED = 5
EXIT_BAD_ARGS = 128


class CtlError(Exception):
    """Printed as ``Error: <message>`` on stderr; the process exits with ``code``."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def rpc_message(err: grpc.RpcError) -> str:
    """What etcdctl prints for a failed call: the server's text (etcd's error strings)."""
    code = err.code() if hasattr(err, "code") else None
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "context deadline exceeded"
    details = err.details() if hasattr(err, "details") else None
    return str(details or err)
