"""Debian's etcdctl 3.4, unchanged, against a real etcdpy server process: one member for the
module, emptied before each test; the tests of a fresh store's revisions and of a restart have
a member of their own."""

from __future__ import annotations

import base64

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.external_tools import Etcdctl
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    return wiped(module_etcdpy_server)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_put_then_get(etcdctl: Etcdctl) -> None:
    assert etcdctl.out("put", "key1", "value1").strip() == "OK"
    assert etcdctl.out("get", "key1").splitlines() == ["key1", "value1"]


def test_revisions_start_as_etcds(own_etcdpy_server: MemberProcess) -> None:
    etcdctl = Etcdctl(own_etcdpy_server.endpoint)
    etcdctl.out("put", "a", "1")
    etcdctl.out("put", "a", "2")
    doc = etcdctl.json("get", "a")
    kv = doc["kvs"][0]
    assert kv["create_revision"] == 2  # a fresh store's first write gets revision 2
    assert kv["mod_revision"] == 3
    assert kv["version"] == 2
    assert doc["header"]["revision"] == 3
    assert doc["header"]["cluster_id"] != 0 and doc["header"]["member_id"] != 0
    assert doc["header"]["raft_term"] >= 1


def test_get_prefix_and_from_key(etcdctl: Etcdctl) -> None:
    for key in ("/pods/a", "/pods/b", "/nodes/x", "zeta"):
        etcdctl.out("put", key, "v-" + key)
    assert etcdctl.out("get", "--prefix", "", "--keys-only").split() == [
        "/nodes/x",
        "/pods/a",
        "/pods/b",
        "zeta",
    ]
    assert etcdctl.out("get", "--prefix", "/pods/", "--keys-only").split() == [
        "/pods/a",
        "/pods/b",
    ]
    assert etcdctl.out("get", "--from-key", "/pods/b", "--keys-only").split() == [
        "/pods/b",
        "zeta",
    ]
    doc = etcdctl.json("get", "--prefix", "/", "--limit", "1")
    assert doc["count"] == 3 and doc["more"] is True and len(doc["kvs"]) == 1


def test_a_large_prefix_read(etcdctl: Etcdctl, etcdpy_server: MemberProcess) -> None:
    """About 6 MB in one response: etcdctl's gRPC (grpc-go) sends flow-control (BDP) pings
    while it receives, which the server must not count as a ping flood; every key arrives."""
    import grpc

    from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
    from etcdpy.pb.etcdserverpb import rpc_pb2_grpc

    keys = 20000
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        for start in range(0, keys, 128):
            ops = [
                pb.RequestOp(request_put=pb.PutRequest(key=b"/big/%06d" % i, value=b"v" * 250))
                for i in range(start, min(start + 128, keys))
            ]
            kv.Txn(pb.TxnRequest(success=ops), timeout=30)
    out = etcdctl.run("get", "--prefix", "/big/", "--command-timeout=30s", timeout=60).stdout
    lines = out.splitlines()
    assert len(lines) == 2 * keys
    assert lines[0] == "/big/000000" and lines[-2] == f"/big/{keys - 1:06d}"


def test_sort_and_print_value_only(etcdctl: Etcdctl) -> None:
    etcdctl.out("put", "k1", "c")
    etcdctl.out("put", "k2", "a")
    etcdctl.out("put", "k3", "b")
    out = etcdctl.out("get", "--prefix", "k", "--sort-by", "VALUE", "--order", "DESCEND")
    assert out.split() == ["k1", "c", "k3", "b", "k2", "a"]
    assert etcdctl.out("get", "k2", "--print-value-only").strip() == "a"


def test_delete_with_prev_kv(etcdctl: Etcdctl) -> None:
    etcdctl.out("put", "/d/1", "x")
    etcdctl.out("put", "/d/2", "y")
    assert etcdctl.out("del", "--prefix", "/d/", "--prev-kv").split() == [
        "2",
        "/d/1",
        "x",
        "/d/2",
        "y",
    ]
    assert etcdctl.out("get", "--prefix", "/d/") == ""
    assert etcdctl.out("del", "missing").strip() == "0"


def test_txn_interactive(etcdctl: Etcdctl) -> None:
    etcdctl.out("put", "user1", "bad")
    script = 'value("user1") = "bad"\n\ndel user1\n\nput result failed\n\n'
    out = etcdctl.out("txn", "-i", input=script)
    assert out.splitlines()[-3:] == ["SUCCESS", "", "1"]
    assert etcdctl.out("get", "user1") == ""
    out = etcdctl.out("txn", "-i", input=script)
    assert out.splitlines()[-3:] == ["FAILURE", "", "OK"]
    assert etcdctl.out("get", "result", "--print-value-only").strip() == "failed"


def test_compaction_and_old_revisions(own_etcdpy_server: MemberProcess) -> None:
    etcdctl = Etcdctl(own_etcdpy_server.endpoint)
    for i in range(6):
        etcdctl.out("put", "c", str(i))  # revisions 2..7
    assert etcdctl.out("get", "c", "--rev", "3", "--print-value-only").strip() == "1"
    assert etcdctl.out("compaction", "5").strip() == "compacted revision 5"
    proc = etcdctl.run("get", "c", "--rev", "3", check=False)
    assert proc.returncode != 0
    assert "etcdserver: mvcc: required revision has been compacted" in proc.stderr
    proc = etcdctl.run("compaction", "5", check=False)
    assert "etcdserver: mvcc: required revision has been compacted" in proc.stderr
    proc = etcdctl.run("get", "c", "--rev", "100", check=False)
    assert "etcdserver: mvcc: required revision is a future revision" in proc.stderr
    assert etcdctl.out("get", "c", "--rev", "5", "--print-value-only").strip() == "3"


def test_member_list_and_endpoint_status(etcdctl: Etcdctl, etcdpy_server: MemberProcess) -> None:
    members = etcdctl.json("member", "list")["members"]
    assert len(members) == 1
    assert members[0]["name"] == etcdpy_server.name
    assert members[0]["peerURLs"] == [etcdpy_server.peer_url]
    assert members[0]["clientURLs"] == [etcdpy_server.client_url]
    etcdctl.out("put", "x", "y")
    status = etcdctl.json("endpoint", "status")[0]["Status"]
    assert status["leader"] == members[0]["ID"]
    assert status["raftIndex"] >= 2 and status["raftTerm"] >= 1
    assert status["dbSize"] > 0
    table = etcdctl.out("endpoint", "status", "-w", "table")
    assert etcdpy_server.endpoint in table and "true" in table  # IS LEADER
    assert "is healthy" in etcdctl.run("endpoint", "health").stderr + etcdctl.out(
        "endpoint", "health"
    )


def test_data_survives_restart(own_etcdpy_server: MemberProcess) -> None:
    etcdpy_server = own_etcdpy_server
    ctl = Etcdctl(etcdpy_server.endpoint)
    for i in range(20):
        ctl.out("put", f"k{i:02d}", f"v{i}")
    ctl.out("del", "k05")
    before = ctl.json("get", "--prefix", "k")
    assert etcdpy_server.stop() == 0  # SIGTERM: a clean exit
    etcdpy_server.start()
    after = ctl.json("get", "--prefix", "k")
    assert after["kvs"] == before["kvs"]
    assert after["header"]["revision"] == before["header"]["revision"]
    ctl.out("put", "k99", "new")
    assert ctl.json("get", "k99")["kvs"][0]["mod_revision"] == before["header"]["revision"] + 1
