"""A member shared by the tests of one module (the ``module_etcdpy_server`` fixture of
conftest.py), emptied before each test."""

from __future__ import annotations

import grpc

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess


def wiped(member: MemberProcess) -> MemberProcess:
    """``member`` with every lease revoked and every key deleted: what a fresh member holds,
    except the revision, which goes on."""
    with grpc.insecure_channel(member.endpoint) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel)
        for held in lease.LeaseLeases(pb.LeaseLeasesRequest(), timeout=10).leases:
            lease.LeaseRevoke(pb.LeaseRevokeRequest(ID=held.ID), timeout=10)
        everything = pb.DeleteRangeRequest(key=b"\0", range_end=b"\0")
        rpc_pb2_grpc.KVStub(channel).DeleteRange(everything, timeout=10)
    return member
