"""The same seeded random KV requests against etcdpy and real etcd 3.4: whole responses compared.

Both members advertise the same peer URL and cluster token, so even the member and cluster ids in
the response headers must agree. Key space stays small (under a dozen keys) so that sorting on a
non-unique target behaves the same in Go's small-slice sort and in Python's stable sort.
"""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess, etcd_member, etcdpy_member
from tests.external_tools import require_tool

pytestmark = pytest.mark.integration

KEYS = [b"a", b"b", b"b/1", b"b/2", b"c", b"d/x", b"d/y", b"e"]
SEEDS = [1, 2, 3]
OPS_PER_SEED = 250
# Each enum's values in number order (0, 1, ...): the draws below are the same as from numbers.
SORT_ORDERS = [pb.RangeRequest.NONE, pb.RangeRequest.ASCEND, pb.RangeRequest.DESCEND]
SORT_TARGETS = [
    pb.RangeRequest.KEY,
    pb.RangeRequest.VERSION,
    pb.RangeRequest.CREATE,
    pb.RangeRequest.MOD,
    pb.RangeRequest.VALUE,
]
COMPARE_RESULTS = [pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS, pb.Compare.NOT_EQUAL]
COMPARE_TARGETS = [
    pb.Compare.VERSION,
    pb.Compare.CREATE,
    pb.Compare.MOD,
    pb.Compare.VALUE,
    pb.Compare.LEASE,
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemberProcess, MemberProcess]]:
    require_tool("etcd")
    tmp = tmp_path_factory.mktemp("diff")
    etcd = etcd_member(tmp, name="diff")
    ours = etcdpy_member(tmp, name="diff")
    # same advertised peer URL -> same member id and cluster id
    ours.extra_args = [
        "--initial-advertise-peer-urls",
        etcd.peer_url,
        "--initial-cluster",
        f"diff={etcd.peer_url}",
    ]
    etcd.start()
    try:
        ours.start()
        try:
            yield etcd, ours
        finally:
            ours.stop()
    finally:
        etcd.stop()


def _rand_key(rng: random.Random) -> bytes:
    return rng.choice(KEYS)


def _rand_range(rng: random.Random, rev_hint: int) -> pb.RangeRequest:
    req = pb.RangeRequest(key=_rand_key(rng))
    shape = rng.random()
    if shape < 0.3:
        req.range_end = req.key[:-1] + bytes([req.key[-1] + 1])  # prefix
    elif shape < 0.45:
        req.range_end = b"\x00"  # from key
    elif shape < 0.55:
        req.key, req.range_end = b"\x00", b"\x00"  # everything
    elif shape < 0.65:
        req.range_end = _rand_key(rng)  # maybe before key: empty
    if rng.random() < 0.3:
        req.limit = rng.randint(1, 4)
    if rng.random() < 0.3:
        req.sort_order = rng.choice(SORT_ORDERS)
        req.sort_target = rng.choice(SORT_TARGETS)
    if rng.random() < 0.15:
        req.revision = rng.randint(1, rev_hint + 2)  # sometimes compacted or future
    if rng.random() < 0.1:
        req.count_only = True
    if rng.random() < 0.1:
        req.keys_only = True
    if rng.random() < 0.1:
        req.min_mod_revision = rng.randint(0, rev_hint)
        req.max_create_revision = rng.randint(0, rev_hint + 1)
    req.serializable = rng.random() < 0.3
    return req


def _rand_put(rng: random.Random) -> pb.PutRequest:
    req = pb.PutRequest(key=_rand_key(rng), value=rng.randbytes(rng.randint(0, 12)))
    req.prev_kv = rng.random() < 0.4
    if rng.random() < 0.08:
        req.ignore_value, req.value = True, b""
    if rng.random() < 0.05:
        req.lease = 777  # no such lease: both must refuse
    return req


def _rand_delete(rng: random.Random) -> pb.DeleteRangeRequest:
    req = pb.DeleteRangeRequest(key=_rand_key(rng), prev_kv=rng.random() < 0.5)
    if rng.random() < 0.3:
        req.range_end = req.key[:-1] + bytes([req.key[-1] + 1])
    return req


def _rand_compare(rng: random.Random, rev_hint: int) -> pb.Compare:
    cmp = pb.Compare(key=_rand_key(rng), result=COMPARE_RESULTS[rng.randint(0, 3)])
    target = COMPARE_TARGETS[rng.randint(0, 4)]
    cmp.target = target
    if target == pb.Compare.VERSION:
        cmp.version = rng.randint(0, 3)
    elif target == pb.Compare.CREATE:
        cmp.create_revision = rng.randint(0, rev_hint)
    elif target == pb.Compare.MOD:
        cmp.mod_revision = rng.randint(0, rev_hint)
    elif target == pb.Compare.VALUE:
        cmp.value = rng.randbytes(rng.randint(0, 2))
    else:
        cmp.lease = 0
    if rng.random() < 0.2:
        cmp.range_end = cmp.key[:-1] + bytes([cmp.key[-1] + 1])
    return cmp


def _rand_ops(rng: random.Random, rev_hint: int, depth: int) -> list[pb.RequestOp]:
    ops = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.random()
        if kind < 0.35:
            ops.append(pb.RequestOp(request_put=_rand_put(rng)))
        elif kind < 0.65:
            ops.append(pb.RequestOp(request_range=_rand_range(rng, rev_hint)))
        elif kind < 0.85:
            ops.append(pb.RequestOp(request_delete_range=_rand_delete(rng)))
        elif depth < 2:
            ops.append(pb.RequestOp(request_txn=_rand_txn(rng, rev_hint, depth + 1)))
    return ops


def _rand_txn(rng: random.Random, rev_hint: int, depth: int = 0) -> pb.TxnRequest:
    return pb.TxnRequest(
        compare=[_rand_compare(rng, rev_hint) for _ in range(rng.randint(0, 2))],
        success=_rand_ops(rng, rev_hint, depth),
        failure=_rand_ops(rng, rev_hint, depth),
    )


def _outcome(fn: Any, req: Any) -> tuple[str, Any]:
    try:
        resp = fn(req, timeout=10)
    except grpc.RpcError as exc:
        return "error", (exc.code(), exc.details())
    return "ok", json_format.MessageToDict(resp)


@pytest.mark.parametrize("seed", SEEDS)
def test_same_requests_same_responses(pair: tuple[MemberProcess, MemberProcess], seed: int) -> None:
    etcd, ours = pair
    with grpc.insecure_channel(etcd.endpoint) as ch_a, grpc.insecure_channel(ours.endpoint) as ch_b:
        kv_a, kv_b = rpc_pb2_grpc.KVStub(ch_a), rpc_pb2_grpc.KVStub(ch_b)
        rng = random.Random(seed)
        rev_hint = int(kv_a.Range(pb.RangeRequest(key=b"a"), timeout=10).header.revision)
        outcomes: dict[tuple[str, str], int] = {}
        for step in range(OPS_PER_SEED):
            kind = rng.random()
            req: Message
            if kind < 0.35:
                method, req = "Put", _rand_put(rng)
            elif kind < 0.6:
                method, req = "Range", _rand_range(rng, rev_hint)
            elif kind < 0.72:
                method, req = "DeleteRange", _rand_delete(rng)
            elif kind < 0.98:
                method, req = "Txn", _rand_txn(rng, rev_hint)
            else:
                method, req = "Compact", pb.CompactionRequest(revision=rng.randint(1, rev_hint + 1))
            expected = _outcome(getattr(kv_a, method), req)
            actual = _outcome(getattr(kv_b, method), req)
            assert actual == expected, f"seed {seed} step {step}: {method} {req}"
            outcomes[method, expected[0]] = outcomes.get((method, expected[0]), 0) + 1
            if expected[0] == "ok":
                rev_hint = max(rev_hint, int(expected[1]["header"]["revision"]))
    # the run exercised both successes and etcd's errors, for every kind of request
    for method in ("Put", "Range", "DeleteRange", "Txn"):
        assert outcomes.get((method, "ok"), 0) > 5, outcomes
    assert sum(n for (_, kind), n in outcomes.items() if kind == "error") > 3, outcomes


def test_hashkv_is_etcds_on_the_same_history(pair: tuple[MemberProcess, MemberProcess]) -> None:
    # After the seeded runs (puts, deletes, txns, compactions), plus a key on a lease granted with
    # the same id on both: HashKV is CRC-32C over the same bytes as etcd's, at every revision.
    etcd, ours = pair
    hashes: list[list[tuple[str, Any]]] = []
    for member in (etcd, ours):
        with grpc.insecure_channel(member.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            lease = rpc_pb2_grpc.LeaseStub(channel)
            maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
            lease.LeaseGrant(pb.LeaseGrantRequest(ID=0x5EED, TTL=600), timeout=10)
            kv.Put(pb.PutRequest(key=b"leased", value=b"v", lease=0x5EED), timeout=10)
            current = int(kv.Range(pb.RangeRequest(key=b"a"), timeout=10).header.revision)
            seen = []
            for rev in (0, current, current - 1, current // 2, 1):
                outcome = _outcome(maintenance.HashKV, pb.HashKVRequest(revision=rev))
                if outcome[0] == "ok":
                    outcome[1].pop("header")
                seen.append(outcome)
            hashes.append(seen)
    assert hashes[0] == hashes[1]
    assert any(kind == "ok" and "hash" in answer for kind, answer in hashes[0])
    etcdctl = require_tool("etcdctl")
    printed = [
        json.loads(
            subprocess.run(
                [etcdctl, "--endpoints", member.endpoint, "endpoint", "hashkv", "-w", "json"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        )[0]["HashKV"]["hash"]
        for member in (etcd, ours)
    ]
    assert printed[0] == printed[1] != 0
