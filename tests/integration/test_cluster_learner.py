"""A real three-member cluster with a learner: what the learner refuses (etcd's interceptors),
the Cluster service's headers, and the peer round-trip histogram fed by the prober."""

from __future__ import annotations

import functools
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdpy.pb.etcdserverpb import rpc_pb2 as pb
from etcdpy.pb.etcdserverpb import rpc_pb2_grpc
from etcdpy.testing.cluster_procs import ClusterMember, ProcessCluster
from tests.external_tools import Etcdctl, eventually, require_tool

pytestmark = pytest.mark.integration

WAIT_SECONDS = 30.0
REFUSED = "etcdserver: rpc not supported for learner"


_eventually = functools.partial(eventually, timeout=WAIT_SECONDS)


class LearnerCluster:
    def __init__(self, cluster: ProcessCluster, learner: ClusterMember) -> None:
        self.cluster = cluster
        self.learner = learner
        self.voters = [m for m in cluster.members if m is not learner]


def _with_learner(cluster: ProcessCluster, tmp: Path) -> Iterator[LearnerCluster]:
    """Starts ``cluster``, adds a learner (as etcdctl does), yields once it has caught up."""
    with cluster:
        cluster.leader()
        voters = list(cluster.members)
        ctl = Etcdctl(",".join(m.endpoint for m in voters))
        ctl.out("put", "before-learner", "1")
        learner = cluster.add_member(tmp, "learner")
        # etcd refuses even a learner until every voter has been connected for 5 s
        ctl.member_add("learner", f"--peer-urls={learner.peer_url}", "--learner")
        learner.start()
        _eventually(
            lambda: (
                Etcdctl(learner.endpoint).out(
                    "get", "before-learner", "--consistency=s", "--print-value-only"
                )
                == "1\n"
            )
        )
        yield LearnerCluster(cluster, learner)


@pytest.fixture(scope="module")
def lc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LearnerCluster]:
    tmp: Path = tmp_path_factory.mktemp("learner")
    yield from _with_learner(ProcessCluster.etcdpy(tmp), tmp)


def _refused(exc: grpc.RpcError) -> bool:
    return exc.code() == grpc.StatusCode.UNAVAILABLE and exc.details() == REFUSED


def test_learner_refuses_writes_linearizable_reads_and_leases_with_etcdctl(
    lc: LearnerCluster,
) -> None:
    ctl = Etcdctl(lc.learner.endpoint)
    commands = (
        ("put", "on-learner", "x"),
        ("get", "before-learner"),
        ("lease", "grant", "60"),
        ("member", "list"),
        ("endpoint", "hashkv"),
        ("compaction", "1"),
        ("defrag",),
    )
    # At once: etcdctl retries a refused read-only call for about 2.6 s before it prints the
    # refusal, and none of these changes anything on the learner.
    with ThreadPoolExecutor(len(commands)) as pool:
        outs = list(pool.map(lambda a: ctl.run(*a, "--command-timeout=3s", check=False), commands))
    for args, out in zip(commands, outs, strict=True):
        assert out.returncode != 0, args
        assert REFUSED in out.stderr, (args, out.stderr)


def test_learner_serves_serializable_reads_and_status(lc: LearnerCluster) -> None:
    ctl = Etcdctl(lc.learner.endpoint)
    assert ctl.out("get", "before-learner", "--consistency=s", "--print-value-only") == "1\n"
    status = ctl.json("endpoint", "status")
    assert status[0]["Status"]["isLearner"] is True


def test_learner_refuses_every_stream(lc: LearnerCluster) -> None:
    with grpc.insecure_channel(lc.learner.endpoint) as channel:
        watch = rpc_pb2_grpc.WatchStub(channel).Watch(
            iter([pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k"))]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as err:
            next(iter(watch))
        assert _refused(err.value), err.value
        keepalive = rpc_pb2_grpc.LeaseStub(channel).LeaseKeepAlive(
            iter([pb.LeaseKeepAliveRequest(ID=1)]), timeout=5
        )
        with pytest.raises(grpc.RpcError) as err:
            next(iter(keepalive))
        assert _refused(err.value), err.value
        snapshot = rpc_pb2_grpc.MaintenanceStub(channel).Snapshot(pb.SnapshotRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as err:
            next(iter(snapshot))
        assert _refused(err.value), err.value


def test_voters_serve_everything_the_learner_refuses(lc: LearnerCluster) -> None:
    ctl = Etcdctl(lc.voters[0].endpoint)
    ctl.out("put", "on-voter", "y")
    assert ctl.out("get", "on-voter", "--print-value-only") == "y\n"
    assert "granted" in ctl.out("lease", "grant", "60")


def test_cluster_responses_carry_term_and_ids_but_no_revision(lc: LearnerCluster) -> None:
    voter = lc.voters[0]
    member_id, _leader, term = voter.status()
    with grpc.insecure_channel(voter.endpoint) as channel:
        resp = rpc_pb2_grpc.ClusterStub(channel).MemberList(pb.MemberListRequest(), timeout=5)
    assert resp.header.revision == 0  # etcd's ClusterServer.header has none
    assert resp.header.member_id == member_id
    assert resp.header.cluster_id != 0
    assert resp.header.raft_term == term
    assert len(resp.members) == 4


def _rtt_counts(member: ClusterMember) -> dict[str, float]:
    with urllib.request.urlopen(f"{member.client_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "etcd_network_peer_round_trip_time_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_count"):
                counts[sample.labels["To"]] = sample.value
    return counts


def test_peer_round_trip_histogram_has_every_peer(lc: LearnerCluster) -> None:
    member = lc.voters[0]
    peers = {f"{m.status()[0]:x}" for m in lc.cluster.members if m is not member}

    def every_peer_measured() -> bool:
        counts = _rtt_counts(member)
        return all(counts.get(peer, 0) > 0 for peer in peers)

    # the first report comes 5 s after a peer is added, as etcd's
    _eventually(every_peer_measured)


# What etcdctl prints against a learner, compared with etcd 3.4's learner. (watch and snapshot
# save are left out: against either server etcdctl retries them until it is killed.)
DIFFERENTIAL_COMMANDS = (
    ("put", "on-learner", "x"),
    ("get", "before-learner"),
    ("get", "before-learner", "--consistency=s", "--print-value-only"),
    ("lease", "keep-alive", "1234"),
)


def _learner_answers(learner: ClusterMember) -> list[tuple[int, str]]:
    """The commands run at once: keep-alive waits out etcdctl's first keep-alive timeout (6 s)
    and a refused get is retried for 2.6 s; none of them changes anything on a learner."""
    ctl = Etcdctl(learner.endpoint)

    def answer(args: tuple[str, ...]) -> tuple[int, str]:
        out = ctl.run(*args, "--command-timeout=3s", check=False)
        errors = [line for line in out.stderr.splitlines() if line.startswith("Error:")]
        return (out.returncode, errors[-1] if errors else out.stdout)

    with ThreadPoolExecutor(len(DIFFERENTIAL_COMMANDS)) as pool:
        return list(pool.map(answer, DIFFERENTIAL_COMMANDS))


@pytest.mark.first_pass_only(
    "most of it is etcd 3.4's own learner cluster, the reference; with front-ends the tests above "
    "assert the same refusals (etcdctl's error for put and get, the gRPC status and message of "
    "the streams) and the serializable read"
)
def test_etcdctl_sees_the_same_learner_as_etcds(
    lc: LearnerCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    require_tool("etcd")
    tmp: Path = tmp_path_factory.mktemp("etcd-learner")
    # etcdpy's learner answers while etcd's cluster starts (its learner waits 5 s to be added).
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(_learner_answers, lc.learner)
        for etcd in _with_learner(ProcessCluster.etcd(tmp), tmp):
            theirs = _learner_answers(etcd.learner)
        mine = answers.result()
    assert mine == theirs
    assert mine[0] == (1, f"Error: {REFUSED}")
