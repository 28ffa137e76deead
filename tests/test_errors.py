"""etcdpy.errors carries etcd's exact gRPC codes and messages (clients match on them)."""

from __future__ import annotations

import re

import grpc
import pytest

from etcdpy import errors
from tests.external_tools import require_etcd_source

ERROR_GO = "etcdserver/api/v3rpc/rpctypes/error.go"

# Go variable suffix -> our class name, where they differ.
RENAMED = {"RequestTooManyRequests": "TooManyRequests"}


@pytest.mark.parametrize(
    ("cls", "code", "message"),
    [
        (errors.EmptyKey, grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        (
            errors.Compacted,
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            errors.FutureRev,
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            errors.NoSpace,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "etcdserver: mvcc: database space exceeded",
        ),
        (errors.LeaseNotFound, grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found"),
        (
            errors.TooManyOps,
            grpc.StatusCode.INVALID_ARGUMENT,
            "etcdserver: too many operations in txn request",
        ),
        (
            errors.InvalidAuthToken,
            grpc.StatusCode.UNAUTHENTICATED,
            "etcdserver: invalid auth token",
        ),
        (errors.NoLeader, grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"),
        (errors.NotLeader, grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader"),
        (errors.Corrupt, grpc.StatusCode.DATA_LOSS, "etcdserver: corrupt cluster"),
        (
            errors.ClusterVersionUnavailable,
            grpc.StatusCode.UNAVAILABLE,
            "etcdserver: cluster version not found during downgrade",
        ),
    ],
)
def test_code_and_exact_message(
    cls: type[errors.EtcdError], code: grpc.StatusCode, message: str
) -> None:
    assert errors.to_grpc_status(cls()) == (code, message)
    assert str(cls()) == message


def test_every_error_is_an_etcd_error_with_a_distinct_message() -> None:
    classes = errors._all_subclasses()
    assert len(classes) >= 60
    messages = [cls.message for cls in classes]
    assert len(set(messages)) == len(messages)
    assert all(issubclass(cls, errors.EtcdError) for cls in classes)


def test_unimplemented_can_say_what() -> None:
    exc = errors.Unimplemented("etcdpy: Downgrade is not implemented")
    assert errors.to_grpc_status(exc) == (
        grpc.StatusCode.UNIMPLEMENTED,
        "etcdpy: Downgrade is not implemented",
    )
    # the override is per instance, not on the class
    assert errors.Unimplemented().message == "etcdpy: not implemented"


def test_foreign_exceptions_go_out_as_unknown() -> None:
    assert errors.to_grpc_status(ValueError("boom")) == (grpc.StatusCode.UNKNOWN, "boom")
    assert errors.to_grpc_status(RuntimeError()) == (grpc.StatusCode.UNKNOWN, "RuntimeError")


def test_from_grpc_status_round_trips() -> None:
    back = errors.from_grpc_status(grpc.StatusCode.OUT_OF_RANGE, errors.Compacted.message)
    assert type(back) is errors.Compacted
    other = errors.from_grpc_status(grpc.StatusCode.INTERNAL, "something else")
    assert type(other) is errors.EtcdError
    assert errors.to_grpc_status(other) == (grpc.StatusCode.INTERNAL, "something else")
    # the class default is untouched by the instance override
    assert errors.EtcdError.code == grpc.StatusCode.UNKNOWN


def _go_code_to_python(go_code: str) -> grpc.StatusCode:
    if go_code == "Canceled":
        return grpc.StatusCode.CANCELLED
    return grpc.StatusCode[re.sub(r"(?<!^)(?=[A-Z])", "_", go_code).upper()]


def test_table_matches_etcd_34_rpctypes() -> None:
    pattern = re.compile(r'ErrG(?:RPC|PRC)(\w+)\s*=\s*status\.New\(codes\.(\w+),\s*"([^"]+)"\)')
    found = pattern.findall(require_etcd_source(ERROR_GO).read_text())
    assert len(found) > 50
    for go_name, go_code, go_message in found:
        cls = getattr(errors, RENAMED.get(go_name, go_name))
        assert (cls.code, cls.message) == (_go_code_to_python(go_code), go_message), go_name
