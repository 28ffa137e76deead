"""What a gRPC server allows a connection: the numbers its HTTP/2 core enforces, as one value."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdpy.h2grpc import frames as f


@dataclass(frozen=True, slots=True)
class KeepalivePolicy:
    """etcd's --grpc-keepalive-* flags, as grpc-go applies them (0 turns one off).

    ``interval``: the server pings a connection this often and closes it when an answer takes
    longer than ``timeout``. ``min_time``: a client that pings more often than this, more than
    twice between two responses of the server, gets GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
    """

    interval: float = 0.0
    timeout: float = 0.0
    min_time: float = 0.0


@dataclass(frozen=True, slots=True)
class Limits:
    """``max_receive_bytes``: the largest request message (etcd's --max-request-bytes plus
    gRPC's overhead). ``stream_window``: what a client may send on one stream before this side
    grants more; by default it holds a whole request, so a unary call never waits for a grant."""

    max_receive_bytes: int
    max_concurrent_streams: int = f.MAX_WINDOW
    keepalive: KeepalivePolicy = field(default_factory=KeepalivePolicy)
    stream_window: int = 0  # 0: derived from max_receive_bytes
    max_frame_size: int = f.DEFAULT_MAX_FRAME

    def __post_init__(self) -> None:
        # Frozen: the derived values are set once, here.
        object.__setattr__(
            self, "max_concurrent_streams", min(self.max_concurrent_streams, f.MAX_WINDOW)
        )
        if self.stream_window == 0:
            window = min(max(f.DEFAULT_WINDOW, 2 * (self.max_receive_bytes + 5)), f.MAX_WINDOW)
            object.__setattr__(self, "stream_window", window)
