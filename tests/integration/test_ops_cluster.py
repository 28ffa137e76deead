"""Operating a real 3-member cluster: HashKV agrees on every member, the leader's corruption
check compares them, peer traffic shows on /metrics, and /health turns false on the last
member when the others are killed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.cluster_procs import ProcessCluster
from etcdpy.testing.processes import MemberProcess
from tests.external_tools import Etcdctl, eventually

pytestmark = pytest.mark.integration


def hash_kv(member: MemberProcess, revision: int) -> tuple[int, int, int] | None:
    try:
        with grpc.insecure_channel(member.endpoint) as channel:
            stub = rpc_pb2_grpc.MaintenanceStub(channel)
            r = stub.HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=5)
            return r.hash, r.header.revision, r.compact_revision
    except grpc.RpcError:
        return None  # not there yet (a future revision on a member behind)


def health(member: MemberProcess) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(member.client_url + "/health", timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_hashkv_agrees_and_the_corruption_check_runs(tmp_path: Path) -> None:
    with ProcessCluster.etcdpy(
        tmp_path, extra_args=["--experimental-corrupt-check-time=300ms"]
    ) as c:
        leader = c.leader()
        with grpc.insecure_channel(leader.endpoint) as channel:
            kv = rpc_pb2_grpc.KVStub(channel)
            for i in range(30):
                kv.Put(rpc_pb2.PutRequest(key=b"k%02d" % i, value=b"v" * i), timeout=5)
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k05"), timeout=5)
            rev = kv.Range(rpc_pb2.RangeRequest(key=b"k00"), timeout=5).header.revision
        expected = hash_kv(leader, rev)
        assert expected is not None
        for m in c.members:

            def agrees(m: MemberProcess = m) -> bool:
                return hash_kv(m, rev) == expected

            eventually(agrees, 30, f"{m.name} agrees at {rev}")
        eventually(
            lambda: '"number_of_peers_checked":2' in leader.log_tail(400),
            30,
            "the leader compared hashes with both other members",
        )
        with urllib.request.urlopen(leader.client_url + "/metrics", timeout=5) as resp:
            fams = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
        sent = {s.labels["To"]: s.value for s in fams["etcd_network_peer_sent_bytes"].samples}
        received = {
            s.labels["From"]: s.value for s in fams["etcd_network_peer_received_bytes"].samples
        }
        active = [s.value for s in fams["etcd_network_active_peers"].samples]
        assert len(sent) == 2 and all(v > 0 for v in sent.values())
        assert len(received) == 2 and all(v > 0 for v in received.values())
        assert active == [1.0, 1.0]
        for m in c.members:
            with grpc.insecure_channel(m.endpoint) as channel:
                alarms = rpc_pb2_grpc.MaintenanceStub(channel).Alarm(
                    rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=5
                )
            assert list(alarms.alarms) == []


def test_health_turns_false_when_the_other_members_die(tmp_path: Path) -> None:
    with ProcessCluster.etcdpy(tmp_path) as c:
        c.leader()
        last = c.members[0]
        eventually(lambda: health(last)[0] == 200, 30, "healthy with its peers")
        assert health(last)[1] == {"health": "true"}
        for m in c.members[1:]:
            m.kill9()
        eventually(lambda: health(last)[0] == 503, 30, "/health false without a quorum")
        assert health(last)[1] == {"health": "false"}
        eventually(
            lambda: health(last)[0] == 503 and '"reason":"RAFT NO LEADER"' in last.log_tail(5),
            30,
            "no leader",
        )
        with urllib.request.urlopen(last.client_url + "/livez", timeout=5) as resp:
            assert (resp.status, resp.read()) == (200, b"ok")
        with pytest.raises(urllib.error.HTTPError) as readyz:
            urllib.request.urlopen(last.client_url + "/readyz", timeout=15)
        assert readyz.value.code == 503
        assert b"[-]linearizable_read failed" in readyz.value.read()
        [status] = Etcdctl(last.endpoint).json("endpoint", "status")
        assert status["Status"]["errors"] == ["etcdserver: no leader"]
