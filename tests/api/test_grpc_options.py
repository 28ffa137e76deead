"""etcd's gRPC flags reach the gRPC server (and, through the core, every front-end process)."""

from __future__ import annotations

from etcdpy.api.grpc_options import GRPC_OVERHEAD_BYTES, grpc_server_options
from etcdpy.cli.flags import parse_server_args
from etcdpy.config import ServerConfig


def _options(argv: list[str]) -> dict[str, int]:
    outcome = parse_server_args(argv, {})
    assert outcome.config is not None
    return dict(grpc_server_options(outcome.config))


def test_defaults_are_etcds() -> None:
    options = _options([])
    defaults = ServerConfig()
    assert options["grpc.max_receive_message_length"] == 1572864 + GRPC_OVERHEAD_BYTES
    assert options["grpc.max_concurrent_streams"] == 2**31 - 1  # MaxUint32, capped to int32
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 5000
    assert options["grpc.keepalive_time_ms"] == int(defaults.grpc_keepalive_interval * 1000)
    assert options["grpc.keepalive_timeout_ms"] == 20000


def test_flags_change_the_server_arguments() -> None:
    options = _options(
        [
            "--max-request-bytes", "1000",
            "--max-concurrent-streams", "10",
            "--grpc-keepalive-min-time", "2s",
            "--grpc-keepalive-interval", "30s",
            "--grpc-keepalive-timeout", "3s",
        ]
    )  # fmt: skip
    assert options["grpc.max_receive_message_length"] == 1000 + GRPC_OVERHEAD_BYTES
    assert options["grpc.max_concurrent_streams"] == 10
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 2000
    assert options["grpc.keepalive_time_ms"] == 30000
    assert options["grpc.keepalive_timeout_ms"] == 3000


def test_zero_turns_server_pings_off_as_in_etcd() -> None:
    options = _options(["--grpc-keepalive-interval", "0s"])
    assert "grpc.keepalive_time_ms" not in options
    assert "grpc.keepalive_timeout_ms" not in options
