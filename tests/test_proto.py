"""The generated protos speak etcd's wire: gRPC method paths, message and field numbers.

The method paths are hard-coded here (they are the contract with every etcd client). When
etcd 3.4's Go source is installed, every field and enum value it declares is also checked
against ours, by number.
"""

from __future__ import annotations

import re

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, EnumDescriptor

from etcdpy.pb.authpb import auth_pb2
from etcdpy.pb.etcdserverpb import etcdserver_pb2, raft_internal_pb2, rpc_pb2, rpc_pb2_grpc
from etcdpy.pb.mvccpb import kv_pb2
from tests.external_tools import require_etcd_source

EXPECTED_METHODS: dict[str, list[str]] = {
    "KV": ["Range", "Put", "DeleteRange", "Txn", "Compact"],
    "Watch": ["Watch"],
    "Lease": ["LeaseGrant", "LeaseRevoke", "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases"],
    "Cluster": ["MemberAdd", "MemberRemove", "MemberUpdate", "MemberList", "MemberPromote"],
    "Maintenance": [
        "Alarm",
        "Status",
        "Defragment",
        "Hash",
        "HashKV",
        "Snapshot",
        "MoveLeader",
        "Downgrade",
    ],
    "Auth": [
        "AuthEnable",
        "AuthDisable",
        "AuthStatus",
        "Authenticate",
        "UserAdd",
        "UserGet",
        "UserList",
        "UserDelete",
        "UserChangePassword",
        "UserGrantRole",
        "UserRevokeRole",
        "RoleAdd",
        "RoleGet",
        "RoleList",
        "RoleDelete",
        "RoleGrantPermission",
        "RoleRevokePermission",
    ],
}

STREAMING = {
    "/etcdserverpb.Watch/Watch": (True, True),
    "/etcdserverpb.Lease/LeaseKeepAlive": (True, True),
    "/etcdserverpb.Maintenance/Snapshot": (False, True),
}


def _method_paths() -> set[str]:
    paths = set()
    for service in rpc_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            paths.add(f"/{service.full_name}/{method.name}")
    return paths


def test_every_etcd_rpc_has_its_method_path() -> None:
    expected = {
        f"/etcdserverpb.{service}/{method}"
        for service, methods in EXPECTED_METHODS.items()
        for method in methods
    }
    assert _method_paths() == expected


def test_streaming_shape_of_methods() -> None:
    for service in rpc_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            path = f"/{service.full_name}/{method.name}"
            shape = (method.client_streaming, method.server_streaming)
            assert shape == STREAMING.get(path, (False, False)), path


def test_generated_stubs_exist_for_every_service() -> None:
    for service in EXPECTED_METHODS:
        assert hasattr(rpc_pb2_grpc, f"{service}Stub")
        assert hasattr(rpc_pb2_grpc, f"{service}Servicer")
        assert hasattr(rpc_pb2_grpc, f"add_{service}Servicer_to_server")


def test_packages_are_etcds() -> None:
    assert rpc_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert raft_internal_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert etcdserver_pb2.DESCRIPTOR.package == "etcdserverpb"
    assert auth_pb2.DESCRIPTOR.package == "authpb"
    assert kv_pb2.DESCRIPTOR.package == "mvccpb"


def _field_number(message: str, field: str) -> int:
    desc = descriptor_pool.Default().FindMessageTypeByName(message)
    return int(desc.fields_by_name[field].number)


@pytest.mark.parametrize(
    ("message", "field", "number"),
    [
        ("etcdserverpb.ResponseHeader", "raft_term", 4),
        ("etcdserverpb.RangeRequest", "serializable", 7),
        ("etcdserverpb.RangeRequest", "max_create_revision", 13),
        ("etcdserverpb.Compare", "mod_revision", 6),
        ("etcdserverpb.Compare", "range_end", 64),
        ("etcdserverpb.WatchResponse", "events", 11),
        ("etcdserverpb.WatchCreateRequest", "fragment", 8),
        ("etcdserverpb.LeaseCheckpoint", "remaining_TTL", 2),
        ("etcdserverpb.StatusResponse", "isLearner", 10),
        ("etcdserverpb.MemberListRequest", "linearizable", 1),
        ("etcdserverpb.AuthUserAddRequest", "hashedPassword", 4),
        ("etcdserverpb.AuthStatusResponse", "authRevision", 3),
        ("etcdserverpb.DowngradeRequest", "version", 2),
        ("etcdserverpb.InternalRaftRequest", "header", 100),
        ("etcdserverpb.InternalRaftRequest", "lease_checkpoint", 11),
        ("etcdserverpb.InternalRaftRequest", "auth_status", 1013),
        ("etcdserverpb.InternalRaftRequest", "downgrade_info_set", 1302),
        ("authpb.Permission", "range_end", 3),
        ("mvccpb.KeyValue", "lease", 6),
    ],
)
def test_hard_coded_field_numbers(message: str, field: str, number: int) -> None:
    assert _field_number(message, field) == number


def test_internal_raft_request_round_trips() -> None:
    req = raft_internal_pb2.InternalRaftRequest(
        header=raft_internal_pb2.RequestHeader(ID=7, username="root"),
        put=rpc_pb2.PutRequest(key=b"k", value=b"v", lease=3),
    )
    back = raft_internal_pb2.InternalRaftRequest.FromString(req.SerializeToString())
    assert back == req
    assert back.HasField("put") and not back.HasField("txn")


# ---- comparison with etcd 3.4's Go protos (Debian's golang-etcd-server-dev) ----

GO_PROTOS = {
    "etcdserverpb": [
        "etcdserver/etcdserverpb/rpc.proto",
        "etcdserver/etcdserverpb/raft_internal.proto",
    ],
    "authpb": ["auth/authpb/auth.proto"],
    "mvccpb": ["mvcc/mvccpb/kv.proto"],
}
# etcd's v2 store request: deliberately absent (etcdpy serves only the v3 API).
NOT_CARRIED = {("etcdserverpb.InternalRaftRequest", "v2")}

_BLOCK = re.compile(r"^(message|enum|service|oneof)\s+(\w+)$")
_FIELD = re.compile(r"^(?:repeated\s+|optional\s+)?[\w.]+\s+(\w+)\s*=\s*(\d+)")
_ENUM_VALUE = re.compile(r"^(\w+)\s*=\s*(\d+)")


def _parse_proto(text: str, package: str) -> dict[tuple[str, str], int]:
    """(full message or enum name, field or value name) -> number, from proto source."""
    text = re.sub(r"//[^\n]*", "", text)
    numbers: dict[tuple[str, str], int] = {}
    stack: list[tuple[str, str]] = []  # (kind, name) of each open block
    for piece in re.finditer(r"[{};]|[^{};]+", text):
        token = piece.group(0)
        if token == "}":
            stack.pop()
            continue
        if token in "{;":
            continue
        statement = " ".join(token.split())
        end = text[piece.end() : piece.end() + 1]
        if end == "{":
            block = _BLOCK.match(statement)
            stack.append((block.group(1), block.group(2)) if block else ("other", ""))
            continue
        if not stack or stack[-1][0] in ("service", "other"):
            continue
        owners = [name for kind, name in stack if kind in ("message", "enum")]
        pattern = _ENUM_VALUE if stack[-1][0] == "enum" else _FIELD
        found = pattern.match(statement)
        if found and not statement.startswith(("option", "reserved")):
            numbers[(".".join([package, *owners]), found.group(1))] = int(found.group(2))
    return numbers


def _ours(owner: str, name: str) -> int | None:
    pool = descriptor_pool.Default()
    desc: Descriptor | EnumDescriptor
    try:
        desc = pool.FindMessageTypeByName(owner)
    except KeyError:
        try:
            desc = pool.FindEnumTypeByName(owner)
        except KeyError:
            return None
        value = desc.values_by_name.get(name)
        return None if value is None else int(value.number)
    field = desc.fields_by_name.get(name)
    return None if field is None else int(field.number)


@pytest.mark.parametrize("package", sorted(GO_PROTOS))
def test_numbers_match_etcd_34_go_protos(package: str) -> None:
    paths = [require_etcd_source(p) for p in GO_PROTOS[package]]
    theirs: dict[tuple[str, str], int] = {}
    for path in paths:
        theirs.update(_parse_proto(path.read_text(), package))
    assert len(theirs) > 5, "the proto parser found almost nothing"
    mismatches = {
        key: (number, _ours(*key))
        for key, number in sorted(theirs.items())
        if key not in NOT_CARRIED and _ours(*key) != number
    }
    assert mismatches == {}


def test_proto_parser_reads_nested_enums() -> None:
    text = """
    message A {
      enum E { X = 0; Y = 1; }
      repeated pkg.T t = 3; // note = 9
      oneof u {
        int64 v = 4;
      }
    }
    """
    assert _parse_proto(text, "p") == {
        ("p.A.E", "X"): 0,
        ("p.A.E", "Y"): 1,
        ("p.A", "t"): 3,
        ("p.A", "v"): 4,
    }
