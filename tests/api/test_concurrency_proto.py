"""The Lock and Election protos against etcd 3.4's own (v3lock.proto, v3election.proto): the same
package, services, methods, stream shapes, messages, fields and field numbers."""

from __future__ import annotations

import re
from types import ModuleType

import pytest
from google.protobuf.descriptor import FieldDescriptor

from etcdpy.api.services import SERVICES
from etcdpy.pb.v3electionpb import v3election_pb2
from etcdpy.pb.v3lockpb import v3lock_pb2
from tests.external_tools import require_etcd_source

PROTOS = {
    "etcdserver/api/v3lock/v3lockpb/v3lock.proto": v3lock_pb2,
    "etcdserver/api/v3election/v3electionpb/v3election.proto": v3election_pb2,
}
RPC = re.compile(
    r"rpc\s+(\w+)\s*\(\s*(stream\s+)?([\w.]+)\s*\)\s*returns\s*\(\s*(stream\s+)?([\w.]+)"
)
MESSAGE = re.compile(r"^message\s+(\w+)\s*\{(.*?)^\}", re.S | re.M)
SCALARS = {FieldDescriptor.TYPE_BYTES: "bytes", FieldDescriptor.TYPE_INT64: "int64"}
FIELD = re.compile(r"^\s*(?:repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)\s*;", re.M)


def _without_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


@pytest.mark.parametrize("relative", sorted(PROTOS))
def test_protos_match_etcds(relative: str) -> None:
    text = _without_comments(require_etcd_source(relative).read_text())
    module: ModuleType = PROTOS[relative]
    package = re.search(r"^package\s+(\w+);", text, re.M)
    assert package is not None and module.DESCRIPTOR.package == package.group(1)

    expected_rpcs = {
        m.group(1): (bool(m.group(2)), m.group(3), bool(m.group(4)), m.group(5))
        for m in RPC.finditer(text)
    }
    (service,) = module.DESCRIPTOR.services_by_name.values()
    ours = {
        method.name: (
            method.client_streaming,
            method.input_type.name,
            method.server_streaming,
            method.output_type.name,
        )
        for method in service.methods
    }
    assert ours == expected_rpcs
    assert SERVICES[service.name].descriptor is service  # served, routed, linked

    expected_messages = {
        m.group(1): {
            f.group(2): (f.group(1).split(".")[-1], int(f.group(3)))
            for f in FIELD.finditer(m.group(2))
        }
        for m in MESSAGE.finditer(text)
    }
    ours_messages = {
        name: {
            field.name: (
                field.message_type.name if field.message_type is not None else field.type,
                field.number,
            )
            for field in desc.fields
        }
        for name, desc in module.DESCRIPTOR.message_types_by_name.items()
    }
    assert set(ours_messages) == set(expected_messages)
    for name, fields in expected_messages.items():
        assert {f: n for f, (_, n) in ours_messages[name].items()} == {
            f: n for f, (_, n) in fields.items()
        }, name
        for field, (kind, _) in fields.items():
            got = ours_messages[name][field][0]
            assert (got if isinstance(got, str) else SCALARS[got]) == kind, (name, field)
