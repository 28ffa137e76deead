"""The JSON gateway driven with plain HTTP and compared with the gRPC answers. One member for
the module, emptied before each test; the tests that read a fresh store's revisions or stop the
member have one of their own."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import signal
import subprocess
import time
import urllib.request
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from etcdpy.pb.etcdserverpb import rpc_pb2, rpc_pb2_grpc
from etcdpy.testing.processes import MemberProcess
from tests.external_tools import require_tool
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    return wiped(module_etcdpy_server)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def post(member: MemberProcess, path: str, body: bytes | str, method: str = "POST") -> Any:
    conn = http.client.HTTPConnection("127.0.0.1", member.client_port, timeout=10)
    try:
        conn.request(method, path, body=body if isinstance(body, bytes) else body.encode())
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type"), resp.read()
    finally:
        conn.close()


def post_json(member: MemberProcess, path: str, payload: dict[str, Any]) -> Any:
    status, _ctype, body = post(member, path, json.dumps(payload))
    assert status == 200, body
    return json.loads(body)


def test_kv_over_http_matches_grpc(own_etcdpy_server: MemberProcess) -> None:
    etcdpy_server = own_etcdpy_server
    put = post_json(etcdpy_server, "/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})
    assert put["header"]["revision"] == "2"  # int64 as a string
    got = post_json(etcdpy_server, "/v3/kv/range", {"key": b64("foo")})
    assert got["kvs"][0]["value"] == b64("bar")
    assert got["count"] == "1"
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        via_grpc = kv.Range(rpc_pb2.RangeRequest(key=b"foo"), timeout=10)
    assert json_format.ParseDict(got, rpc_pb2.RangeResponse()) == via_grpc
    txn = post_json(
        etcdpy_server,
        "/v3/kv/txn",
        {
            "compare": [
                {"key": b64("foo"), "result": "EQUAL", "target": "VALUE", "value": b64("bar")}
            ],
            "success": [{"request_put": {"key": b64("foo"), "value": b64("baz")}}],
        },
    )
    assert txn["succeeded"] is True
    got = post_json(etcdpy_server, "/v3/kv/range", {"key": b64("foo")})
    assert got["kvs"][0]["value"] == b64("baz")
    deleted = post_json(etcdpy_server, "/v3/kv/deleterange", {"key": b64("foo")})
    assert deleted["deleted"] == "1"
    status = post_json(etcdpy_server, "/v3/maintenance/status", {})
    assert status["version"] == "3.4.23"
    members = post_json(etcdpy_server, "/v3/cluster/member/list", {})
    assert members["members"][0]["name"] == etcdpy_server.name


def test_bad_input_gets_grpc_gateway_errors(own_etcdpy_server: MemberProcess) -> None:
    etcdpy_server = own_etcdpy_server

    def error(path: str, body: str) -> tuple[int, dict[str, Any]]:
        status, ctype, raw = post(etcdpy_server, path, body)
        assert ctype == "application/json"
        return status, json.loads(raw)

    status, body = error("/v3/kv/range", '{"key":')
    assert (status, body["code"]) == (400, 3)
    status, body = error("/v3/kv/range", '{"key": 5}')
    assert (status, body["code"]) == (400, 3)
    status, body = error("/v3/kv/range", '{"no_such_field": "x"}')  # ignored, as etcd
    assert (status, body) == (
        400,
        {
            "error": "etcdserver: key is not provided",
            "message": "etcdserver: key is not provided",
            "code": 3,
        },
    )
    status, body = error("/v3/kv/range", json.dumps({"key": b64("k"), "revision": "100"}))
    assert (status, body["code"]) == (400, 11)
    assert body["error"] == "etcdserver: mvcc: required revision is a future revision"
    status, body = error("/v3/kv/put", json.dumps({"key": ""}))
    assert (status, body["error"]) == (400, "etcdserver: key is not provided")
    big = json.dumps({"key": b64("k"), "value": base64.b64encode(b"v" * 1_600_000).decode()})
    status, body = error("/v3/kv/put", big)
    assert (status, body["error"]) == (400, "etcdserver: request is too large")
    assert post(etcdpy_server, "/v3/kv/nothing", "{}")[::2] == (404, b"Not Found\n")
    assert post(etcdpy_server, "/v3/kv/range", "", method="GET")[0] == 405
    # The server is unharmed.
    assert post_json(etcdpy_server, "/v3/kv/range", {"key": b64("k")})["header"]


def test_snapshot_streams_json_lines_with_checksum(etcdpy_server: MemberProcess) -> None:
    post_json(etcdpy_server, "/v3/kv/put", {"key": b64("a"), "value": b64("1")})
    status, _ctype, raw = post(etcdpy_server, "/v3/maintenance/snapshot", "{}")
    assert status == 200
    lines = [json.loads(line) for line in raw.splitlines()]
    blobs = [base64.b64decode(line["result"].get("blob", "")) for line in lines]
    assert lines[-2]["result"].get("remaining_bytes", "0") == "0"
    assert hashlib.sha256(b"".join(blobs[:-1])).digest() == blobs[-1]


def test_watch_streams_events_as_json_lines(etcdpy_server: MemberProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", etcdpy_server.client_port, timeout=10)
    try:
        conn.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": b64("w")}}))
        resp = conn.getresponse()
        assert resp.status == 200
        created = json.loads(resp.readline())
        assert created["result"]["created"] is True
        post_json(etcdpy_server, "/v3/kv/put", {"key": b64("w"), "value": b64("1")})
        event = json.loads(resp.readline())["result"]
        assert event["events"][0]["kv"]["key"] == b64("w")
        assert event["events"][0]["kv"]["value"] == b64("1")
        assert event.get("events")[0].get("type", "PUT") == "PUT"  # zero value left out
    finally:
        conn.close()
    # The server is fine after the client went away mid-stream.
    assert post_json(etcdpy_server, "/v3/kv/range", {"key": b64("w")})["count"] == "1"


def watcher_gauge(member: MemberProcess) -> float:
    metrics = urllib.request.urlopen(member.client_url + "/metrics", timeout=10).read().decode()
    found = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", metrics, re.M)
    assert found is not None
    return float(found.group(1))


def test_watch_ends_when_the_http_client_leaves(own_etcdpy_server: MemberProcess) -> None:
    """curl killed by timeout(1) while its watch waits for events: the gateway's watches go at
    once (no put needed to find the dead connection), and SIGTERM then exits without waiting
    out the 5 s grace for them."""
    etcdpy_server = own_etcdpy_server
    curl = require_tool("curl")
    watch = [curl, "-sN", etcdpy_server.client_url + "/v3/watch", "-X", "POST"]
    body = json.dumps({"create_request": {"key": b64("foo")}})
    clients = [
        subprocess.Popen(["timeout", "1", *watch, "-d", body], stdout=subprocess.PIPE)
        for _ in range(3)
    ]
    for client in clients:
        out, _err = client.communicate(timeout=20)
        assert json.loads(out.splitlines()[0])["result"]["created"] is True
    deadline = time.monotonic() + 10
    while watcher_gauge(etcdpy_server) != 0:
        assert time.monotonic() < deadline, "the watches outlived their HTTP clients"
        time.sleep(0.1)
    proc = etcdpy_server.proc
    assert proc is not None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=4) == 0, etcdpy_server.log_tail()


def test_lease_over_http(etcdpy_server: MemberProcess) -> None:
    granted = post_json(etcdpy_server, "/v3/lease/grant", {"TTL": 30})
    lease_id = granted["ID"]
    assert granted["TTL"] == "30"
    post_json(etcdpy_server, "/v3/kv/put", {"key": b64("l"), "value": b64("v"), "lease": lease_id})
    ttl = post_json(etcdpy_server, "/v3/lease/timetolive", {"ID": lease_id, "keys": True})
    assert ttl["keys"] == [b64("l")]
    leases = post_json(etcdpy_server, "/v3/lease/leases", {})
    assert [lease["ID"] for lease in leases["leases"]] == [lease_id]
    post_json(etcdpy_server, "/v3/lease/revoke", {"ID": lease_id})
    assert "kvs" not in post_json(etcdpy_server, "/v3/kv/range", {"key": b64("l")})


def test_keepalive_ends_once_the_body_is_answered(etcdpy_server: MemberProcess) -> None:
    """Issue 15 item 3: `curl /v3/lease/keepalive -d '{"ID":N}'` prints its answer and exits, as
    with etcd (grpc-gateway half-closes the stream after the body; LeaseKeepAlive then ends).
    Patroni keeps its leader key alive exactly so."""
    curl = require_tool("curl")
    lease_id = post_json(etcdpy_server, "/v3/lease/grant", {"TTL": 30})["ID"]
    url = etcdpy_server.client_url + "/v3/lease/keepalive"
    started = time.monotonic()
    out = subprocess.run(
        [curl, "-sS", "-X", "POST", url, "-d", json.dumps({"ID": lease_id})],
        capture_output=True,
        timeout=10,
        check=True,
    ).stdout
    assert time.monotonic() - started < 5
    [line] = out.splitlines()
    assert json.loads(line)["result"]["TTL"] == "30"
    # Two requests in one body: two answers, then the end; on a kept-alive connection.
    conn = http.client.HTTPConnection("127.0.0.1", etcdpy_server.client_port, timeout=5)
    try:
        for _ in range(2):
            body = json.dumps({"ID": lease_id}) + json.dumps({"ID": lease_id})
            conn.request("POST", "/v3/lease/keepalive", body=body)
            resp = conn.getresponse()
            lines = resp.read().splitlines()
            assert [json.loads(x)["result"]["ID"] for x in lines] == [lease_id, lease_id]
    finally:
        conn.close()
    # An empty body: no request, no answer, the end.
    assert post(etcdpy_server, "/v3/lease/keepalive", b"")[::2] == (200, b"")


def test_watch_goes_on_after_the_body(etcdpy_server: MemberProcess) -> None:
    """etcd's Watch keeps serving after the client's half-close: events still arrive."""
    conn = http.client.HTTPConnection("127.0.0.1", etcdpy_server.client_port, timeout=10)
    try:
        conn.request("POST", "/v3/watch", body=json.dumps({"create_request": {"key": b64("h")}}))
        resp = conn.getresponse()
        assert json.loads(resp.readline())["result"]["created"] is True
        time.sleep(0.5)  # well after the half-close
        post_json(etcdpy_server, "/v3/kv/put", {"key": b64("h"), "value": b64("1")})
        event = json.loads(resp.readline())["result"]
        assert event["events"][0]["kv"]["key"] == b64("h")
    finally:
        conn.close()


def test_grpc_streams_on_the_clients_half_close(etcdpy_server: MemberProcess) -> None:
    """What the gateway relies on, over plain gRPC as with etcd: LeaseKeepAlive ends once the
    client half-closes and its requests are answered; a Watch goes on (events still come)."""
    with grpc.insecure_channel(etcdpy_server.endpoint) as channel:
        lease = rpc_pb2_grpc.LeaseStub(channel)
        lease_id = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=10).ID
        requests = [rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)] * 2
        answers = list(lease.LeaseKeepAlive(iter(requests), timeout=5))
        assert [(a.ID, a.TTL) for a in answers] == [(lease_id, 30)] * 2
        assert list(lease.LeaseKeepAlive(iter([]), timeout=5)) == []

        create = rpc_pb2.WatchCreateRequest(key=b"half")
        watch = rpc_pb2_grpc.WatchStub(channel).Watch(
            iter([rpc_pb2.WatchRequest(create_request=create)]), timeout=10
        )
        assert next(watch).created
        time.sleep(0.3)  # well after the half-close
        rpc_pb2_grpc.KVStub(channel).Put(rpc_pb2.PutRequest(key=b"half", value=b"1"), timeout=10)
        assert next(watch).events[0].kv.key == b"half"
        watch.cancel()
