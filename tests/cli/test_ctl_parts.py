"""etcdpyctl's pieces that need no server."""

from __future__ import annotations

import pytest

from etcdpy.cli.ctl import humanize_bytes, message_to_json, prefix_range_end
from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.mvccpb import kv_pb2


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (9, "9 B"), (10, "10 B"), (999, "999 B"), (1000, "1.0 kB"), (20480, "20 kB"),
     (1_500_000, "1.5 MB"), (2 * 1024**3, "2.1 GB")],
)  # fmt: skip
def test_humanize_bytes_like_go_humanize(size: int, text: str) -> None:
    assert humanize_bytes(size) == text


def test_prefix_range_end() -> None:
    assert prefix_range_end(b"/registry/") == b"/registry0"
    assert prefix_range_end(b"a\xff") == b"b"
    assert prefix_range_end(b"\xff\xff") == b"\x00"


def test_json_uses_proto_names_base64_and_omits_zero_values() -> None:
    response = rpc_pb2.RangeResponse(
        header=rpc_pb2.ResponseHeader(cluster_id=2**64 - 1, revision=4),
        kvs=[kv_pb2.KeyValue(key=b"foo", value=b"", create_revision=2, mod_revision=2, version=1)],
        count=1,
    )
    assert message_to_json(response) == {
        "header": {"cluster_id": 2**64 - 1, "revision": 4},
        "kvs": [{"key": "Zm9v", "create_revision": 2, "mod_revision": 2, "version": 1}],
        "count": 1,
    }
    members = rpc_pb2.MemberListResponse(
        members=[rpc_pb2.Member(ID=1, name="a", peerURLs=["http://p:1"], clientURLs=[])]
    )
    assert message_to_json(members) == {
        "members": [{"ID": 1, "name": "a", "peerURLs": ["http://p:1"]}]
    }
