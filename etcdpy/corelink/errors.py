"""What a status from the core means on the front-end's side of the link.

The core answers a call with a gRPC status code and its text (etcdpy.corelink.wire); the front
end turns them back into etcd's own error (so its handlers map it exactly as the core's would),
or aborts its client's call with them. A link that is gone is ``CoreLinkLost``
(etcdpy.corelink.client), which a front-end answers with ``CORE_UNREACHABLE``.
"""

from __future__ import annotations

import grpc

from etcdpy import errors

_STATUS = {code.value[0]: code for code in grpc.StatusCode}
CORE_UNREACHABLE = "etcdpy: the core process is not reachable"


def status_code(code: int) -> grpc.StatusCode:
    """The gRPC status a code from the core stands for (UNKNOWN for a code gRPC lacks)."""
    return _STATUS.get(code, grpc.StatusCode.UNKNOWN)


def link_error(code: int, message: str) -> errors.EtcdError:
    """The error a status from the core stands for (etcd's own, when the message is one)."""
    return errors.from_grpc_status(status_code(code), message)
