"""Every gRPC service a member serves, by name: its package, descriptor and message classes.

etcd's client API (etcdserverpb: KV, Watch, Lease, Cluster, Maintenance, Auth) and the
concurrency API beside it (v3lockpb.Lock, v3electionpb.Election). The gRPC server, the core link
between front-end processes and the core, the learner guard and the JSON gateway all look
services up here, so a service added here is served by each of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from etcdpy.pb.etcdserverpb import rpc_pb2
from etcdpy.pb.v3electionpb import v3election_pb2
from etcdpy.pb.v3lockpb import v3lock_pb2


@dataclass(frozen=True, slots=True)
class Service:
    descriptor: ServiceDescriptor
    module: ModuleType  # the generated module with the service's request and response classes

    @property
    def name(self) -> str:
        return str(self.descriptor.name)

    @property
    def package(self) -> str:
        return str(self.descriptor.file.package)

    @property
    def full_name(self) -> str:  # etcdserverpb.KV, as in gRPC paths and the gRPC metrics
        return str(self.descriptor.full_name)

    def path(self, method: str) -> str:
        return f"/{self.full_name}/{method}"

    def request_type(self, method: MethodDescriptor) -> type[Message]:
        found: Any = getattr(self.module, method.input_type.name)
        return found  # type: ignore[no-any-return]

    def response_type(self, method: MethodDescriptor) -> type[Message]:
        found: Any = getattr(self.module, method.output_type.name)
        return found  # type: ignore[no-any-return]


def _services() -> dict[str, Service]:
    out: dict[str, Service] = {}
    for module in (rpc_pb2, v3lock_pb2, v3election_pb2):
        for descriptor in module.DESCRIPTOR.services_by_name.values():
            out[descriptor.name] = Service(descriptor, module)
    return out


SERVICES: dict[str, Service] = _services()
