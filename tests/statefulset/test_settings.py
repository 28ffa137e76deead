"""The settings of ``etcdpy k8s``: environment, flags that win over it, clear errors."""

from __future__ import annotations

import pytest

from etcdpy.statefulset.commands import _parser, main
from etcdpy.statefulset.names import PodNameError, PodNames, split_pod_name
from etcdpy.statefulset.pod import pod_from
from etcdpy.statefulset.settings import Settings, SettingsError, from_sources

ENV = {
    "ETCDPY_K8S_POD_NAME": "my-etcdpy-2",
    "ETCDPY_K8S_NAMESPACE": "prod",
    "ETCDPY_K8S_SERVICE": "my-etcdpy-headless",
    "ETCDPY_K8S_REPLICAS": "3",
    "ETCDPY_K8S_PEER_SCHEME": "https",
}


def settings_of(argv: list[str], env: dict[str, str]) -> Settings:
    return from_sources(_parser().parse_args(argv), env)


def test_env_gives_the_pod_its_names() -> None:
    pod = pod_from(settings_of(["bootstrap"], ENV))
    assert (pod.name, pod.ordinal, pod.replicas) == ("my-etcdpy-2", 2, 3)
    assert pod.host == "my-etcdpy-2.my-etcdpy-headless.prod.svc.cluster.local"
    assert pod.peer_url == "https://my-etcdpy-2.my-etcdpy-headless.prod.svc.cluster.local:2380"
    assert pod.client_url == "http://my-etcdpy-2.my-etcdpy-headless.prod.svc.cluster.local:2379"
    assert pod.initial_state == "new"


def test_flags_win_over_the_environment() -> None:
    argv = ["bootstrap", "--replicas", "5", "--cluster-domain", "example.org.", "--peer-port", "7"]
    pod = pod_from(settings_of(argv, ENV))
    assert pod.replicas == 5
    assert pod.peer_url.endswith(".prod.svc.example.org:7")


def test_other_pods_cover_replicas_and_beyond() -> None:
    pod = pod_from(settings_of(["bootstrap", "--pod-name", "my-etcdpy-4"], ENV))
    urls = pod.other_client_urls()
    assert [u.split(".")[0].split("//")[1] for u in urls] == [
        f"my-etcdpy-{i}" for i in (0, 1, 2, 3, 5, 6)
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ETCDPY_K8S_POD_NAME": ""}, "ETCDPY_K8S_POD_NAME (or --pod-name) is required"),
        ({"ETCDPY_K8S_POD_NAME": "nodash"}, "is not <statefulset>-<ordinal>"),
        ({"ETCDPY_K8S_REPLICAS": "three"}, "ETCDPY_K8S_REPLICAS (or --replicas): 'three'"),
        ({"ETCDPY_K8S_REPLICAS": "0"}, "0 is below 1"),
        ({"ETCDPY_K8S_INITIAL_CLUSTER_STATE": "old"}, "'old' is not one of new, existing"),
        ({"ETCDPY_K8S_CLIENT_SCHEME": "unix"}, "'unix' is not one of http, https"),
        ({"ETCDPY_K8S_SERVICE": ""}, "ETCDPY_K8S_SERVICE (or --service) is required"),
    ],
)
def test_bad_settings_are_named(override: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        pod_from(settings_of(["bootstrap"], ENV | override))


def test_bad_settings_exit_2_with_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bootstrap"], run_member=lambda env: 0, environ={})
    assert code == 2
    assert "ETCDPY_K8S_POD_NAME (or --pod-name) is required" in capsys.readouterr().err


def test_jobs_need_endpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"], run_member=lambda env: 0, environ={}) == 2
    assert "ETCDPY_K8S_ENDPOINTS (or --endpoints) is required" in capsys.readouterr().err


def test_help_lists_the_verbs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"], run_member=lambda env: 0, environ={}) == 0
    out = capsys.readouterr().out
    for verb in ("bootstrap", "scale-in", "snapshot", "defrag", "check"):
        assert verb in out


def test_pod_names() -> None:
    assert split_pod_name("etcdpy-10") == ("etcdpy", 10)
    with pytest.raises(PodNameError):
        split_pod_name("etcdpy-")
    names = PodNames("s", "s-headless", "ns", "cluster.local", "http", "https", 1, 2)
    assert names.ordinal_of_url("https://s-3.s-headless.ns.svc.cluster.local:2") == 3
    assert names.ordinal_of_url("https://other-3.x:2") is None
