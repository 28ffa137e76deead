"""What the rendered chart must say: the names, ports, command and env of the contract, the
quorum-safe budget, no RBAC, the client-command pods, and the value sets' effects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    Manifest,
    container,
    env_of,
    find,
    one,
    parse,
    pod_spec,
    render,
    run_helm,
)
from tests.chart.value_sets import VALUE_SETS

Rendered = dict[str, list[Manifest]]
HEADLESS = f"{FULLNAME}-headless"
CLIENT_LABEL = f"{FULLNAME}-client"
MEMBER_SELECTOR = {
    "app.kubernetes.io/name": "etcdpy",
    "app.kubernetes.io/instance": "store",
    "app.kubernetes.io/component": "etcd",
}


def statefulset(manifests: list[Manifest]) -> Manifest:
    return one(manifests, "StatefulSet", FULLNAME)


def member(manifests: list[Manifest]) -> Manifest:
    return container(statefulset(manifests), "etcdpy")


def env_config(manifests: list[Manifest]) -> dict[str, str]:
    data: dict[str, str] = one(manifests, "ConfigMap", f"{FULLNAME}-env")["data"]
    return data


def client_command_pods(manifests: list[Manifest]) -> list[Manifest]:
    return [m for m in manifests if m["kind"] in ("Job", "CronJob", "Pod")]


def pod_labels(manifest: Manifest) -> dict[str, str]:
    if manifest["kind"] == "Pod":
        labels: dict[str, str] = manifest["metadata"]["labels"]
    elif manifest["kind"] == "CronJob":
        labels = manifest["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    else:
        labels = manifest["spec"]["template"]["metadata"]["labels"]
    return labels


def test_no_rbac_objects_and_no_token(rendered: Rendered) -> None:
    for name, manifests in rendered.items():
        kinds = {m["kind"] for m in manifests}
        assert not kinds & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}, name
        for manifest in [statefulset(manifests), *client_command_pods(manifests)]:
            assert pod_spec(manifest)["automountServiceAccountToken"] is False, name
            assert pod_spec(manifest)["serviceAccountName"] == FULLNAME, name
        assert one(manifests, "ServiceAccount", FULLNAME)["automountServiceAccountToken"] is False


def test_statefulset_shape(rendered: Rendered) -> None:
    sts = statefulset(rendered["default"])
    assert sts["metadata"]["namespace"] == NAMESPACE
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == HEADLESS
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate"}
    assert sts["spec"]["selector"]["matchLabels"] == MEMBER_SELECTOR
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    spec = pod_spec(sts)
    assert spec["securityContext"]["fsGroup"] == 1001
    anti = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["labelSelector"]["matchLabels"] == MEMBER_SELECTOR
    assert spec["terminationGracePeriodSeconds"] == 30


def test_member_container(rendered: Rendered) -> None:
    etcdpy = member(rendered["default"])
    assert etcdpy["image"] == "etcdpy:0.1.0"
    assert etcdpy["command"] == ["etcdpy", "k8s", "bootstrap"]
    assert "args" not in etcdpy
    assert {p["name"]: p["containerPort"] for p in etcdpy["ports"]} == {
        "client": 2379,
        "peer": 2380,
        "metrics": 9090,
    }
    env = env_of(etcdpy)
    # The member's name is the pod's name.
    assert env["ETCDPY_K8S_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["ETCDPY_K8S_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert etcdpy["envFrom"] == [{"configMapRef": {"name": f"{FULLNAME}-env"}}]
    for probe, path in [
        ("startupProbe", "/livez"),
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
    ]:
        assert etcdpy[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe
    security = etcdpy["securityContext"]
    assert security["runAsUser"] == 1001
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m["mountPath"] for m in etcdpy["volumeMounts"]}
    assert mounts == {"data": "/var/lib/etcdpy", "tmp": "/tmp"}


def test_services(rendered: Rendered) -> None:
    manifests = rendered["default"]
    headless = one(manifests, "Service", HEADLESS)["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert [(p["name"], p["port"], p["targetPort"]) for p in headless["ports"]] == [
        ("client", 2379, "client"),
        ("peer", 2380, "peer"),
    ]
    client = one(manifests, "Service", FULLNAME)["spec"]
    assert [(p["name"], p["port"], p["targetPort"]) for p in client["ports"]] == [
        ("client", 2379, "client"),
        ("metrics", 9090, "metrics"),
    ]
    assert headless["selector"] == client["selector"] == MEMBER_SELECTOR


def test_default_env_configmap(rendered: Rendered) -> None:
    assert env_config(rendered["default"]) == {
        "ETCDPY_K8S_SERVICE": HEADLESS,
        "ETCDPY_K8S_CLUSTER_DOMAIN": "cluster.local",
        "ETCDPY_K8S_REPLICAS": "3",
        "ETCDPY_K8S_INITIAL_CLUSTER_STATE": "new",
        "ETCDPY_K8S_CLIENT_SCHEME": "http",
        "ETCDPY_K8S_PEER_SCHEME": "http",
        "ETCDPY_K8S_CLIENT_PORT": "2379",
        "ETCDPY_K8S_PEER_PORT": "2380",
        "ETCDPY_K8S_METRICS_PORT": "9090",
        "ETCD_DATA_DIR": "/var/lib/etcdpy/data",
        "ETCD_INITIAL_CLUSTER_TOKEN": "etcd-cluster-k8s",
        "ETCD_LISTEN_CLIENT_URLS": "http://0.0.0.0:2379",
        "ETCD_LISTEN_PEER_URLS": "http://0.0.0.0:2380",
        "ETCD_LISTEN_METRICS_URLS": "http://0.0.0.0:9090",
        "ETCD_AUTO_COMPACTION_RETENTION": "0",
        "ETCD_LOG_LEVEL": "info",
    }


def test_upgrade_says_existing() -> None:
    assert env_config(render({}, "--is-upgrade"))["ETCDPY_K8S_INITIAL_CLUSTER_STATE"] == "existing"


def test_replica_count_changes_only_replicas_and_the_configmap(rendered: Rendered) -> None:
    """Scaling must not roll the members: the pod template is the same for 3 and 5."""
    three, five = statefulset(rendered["replicas-3"]), statefulset(rendered["replicas-5"])
    assert three["spec"]["template"] == five["spec"]["template"]
    assert five["spec"]["replicas"] == 5
    assert env_config(rendered["replicas-5"])["ETCDPY_K8S_REPLICAS"] == "5"


@pytest.mark.parametrize(
    ("name", "quorum"), [("replicas-1", 1), ("replicas-3", 2), ("replicas-5", 3)]
)
def test_pdb_keeps_quorum(rendered: Rendered, name: str, quorum: int) -> None:
    pdb = one(rendered[name], "PodDisruptionBudget", FULLNAME)["spec"]
    assert pdb == {"minAvailable": quorum, "selector": {"matchLabels": MEMBER_SELECTOR}}


def test_pdb_max_unavailable(rendered: Rendered) -> None:
    pdb = one(rendered["pdb-max-unavailable"], "PodDisruptionBudget", FULLNAME)["spec"]
    assert pdb["maxUnavailable"] == 1
    assert "minAvailable" not in pdb


def test_client_tls(rendered: Rendered) -> None:
    manifests = rendered["client-mtls"]
    env = env_config(manifests)
    assert env["ETCDPY_K8S_CLIENT_SCHEME"] == "https"
    assert env["ETCD_LISTEN_CLIENT_URLS"] == "https://0.0.0.0:2379"
    assert env["ETCD_CERT_FILE"] == "/etc/etcdpy/tls/client/tls.crt"
    assert env["ETCD_KEY_FILE"] == "/etc/etcdpy/tls/client/tls.key"
    assert env["ETCD_TRUSTED_CA_FILE"] == "/etc/etcdpy/tls/client/ca.crt"
    assert env["ETCD_CLIENT_CERT_AUTH"] == "true"
    # Metrics and probes stay plain HTTP.
    assert env["ETCD_LISTEN_METRICS_URLS"] == "http://0.0.0.0:9090"
    assert "ETCD_CLIENT_CERT_AUTH" not in env_config(rendered["client-tls"])
    mounts = {m["name"]: m for m in member(manifests)["volumeMounts"]}
    assert mounts["client-tls"]["mountPath"] == "/etc/etcdpy/tls/client"
    volumes = {v["name"]: v for v in pod_spec(statefulset(manifests))["volumes"]}
    assert volumes["client-tls"]["secret"]["secretName"] == "etcd-client-tls"
    for job in client_command_pods(manifests):
        cenv = env_of(container(job))
        assert cenv["ETCDPY_K8S_ENDPOINTS"]["value"] == (
            f"https://{FULLNAME}.{NAMESPACE}.svc.cluster.local:2379"
        )
        assert cenv["ETCDPY_K8S_CACERT"]["value"] == "/etc/etcdpy/tls/client/ca.crt"
        assert cenv["ETCDPY_K8S_CERT"]["value"] == "/etc/etcdpy/tls/client/tls.crt"
        assert cenv["ETCDPY_K8S_KEY"]["value"] == "/etc/etcdpy/tls/client/tls.key"


def test_peer_tls(rendered: Rendered) -> None:
    manifests = rendered["peer-tls"]
    env = env_config(manifests)
    assert env["ETCDPY_K8S_PEER_SCHEME"] == "https"
    assert env["ETCDPY_K8S_CLIENT_SCHEME"] == "http"
    assert env["ETCD_LISTEN_PEER_URLS"] == "https://0.0.0.0:2380"
    assert env["ETCD_PEER_CERT_FILE"] == "/etc/etcdpy/tls/peer/tls.crt"
    assert env["ETCD_PEER_TRUSTED_CA_FILE"] == "/etc/etcdpy/tls/peer/ca.crt"
    assert env["ETCD_PEER_CLIENT_CERT_AUTH"] == "true"
    mounts = {m["name"]: m["mountPath"] for m in member(manifests)["volumeMounts"]}
    assert mounts["peer-tls"] == "/etc/etcdpy/tls/peer"


def test_auto_tls(rendered: Rendered) -> None:
    env = env_config(rendered["auto-tls"])
    assert env["ETCD_AUTO_TLS"] == env["ETCD_PEER_AUTO_TLS"] == "true"
    assert env["ETCDPY_K8S_CLIENT_SCHEME"] == env["ETCDPY_K8S_PEER_SCHEME"] == "https"
    assert "ETCD_CERT_FILE" not in env


def root_password_ref(secret: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": secret, "key": key}}


def test_auth_simple(rendered: Rendered) -> None:
    manifests = rendered["auth-simple"]
    assert env_config(manifests)["ETCD_AUTH_TOKEN"] == "simple"
    secret = one(manifests, "Secret", FULLNAME)
    assert secret["data"] == {"etcd-root-password": "czNjcmV0"}  # base64 of s3cret
    ref = root_password_ref(FULLNAME, "etcd-root-password")
    assert env_of(member(manifests))["ETCDPY_K8S_ROOT_PASSWORD"]["valueFrom"] == ref
    for job in client_command_pods(manifests):
        cenv = env_of(container(job))
        assert cenv["ETCDPY_K8S_USER"]["value"] == "root"
        assert cenv["ETCDPY_K8S_PASSWORD"]["valueFrom"] == ref
    assert not find(manifests, "Secret", f"{FULLNAME}-jwt-token")


def test_auth_jwt(rendered: Rendered) -> None:
    manifests = rendered["auth-jwt"]
    assert env_config(manifests)["ETCD_AUTH_TOKEN"] == (
        "jwt,priv-key=/etc/etcdpy/jwt/jwt-token.pem,sign-method=RS256,ttl=5m"
    )
    secret = one(manifests, "Secret", f"{FULLNAME}-jwt-token")
    assert set(secret["data"]) == {"jwt-token.pem"}
    mounts = {m["name"]: m["mountPath"] for m in member(manifests)["volumeMounts"]}
    assert mounts["jwt-token"] == "/etc/etcdpy/jwt"


def test_auth_existing_secrets(rendered: Rendered) -> None:
    manifests = rendered["auth-existing-secrets"]
    assert not find(manifests, "Secret")
    ref = root_password_ref("my-root", "password")
    assert env_of(member(manifests))["ETCDPY_K8S_ROOT_PASSWORD"]["valueFrom"] == ref
    assert "priv-key=/etc/etcdpy/jwt/key.pem," in env_config(manifests)["ETCD_AUTH_TOKEN"]
    volumes = {v["name"]: v for v in pod_spec(statefulset(manifests))["volumes"]}
    assert volumes["jwt-token"]["secret"]["secretName"] == "my-jwt"


def test_no_auth_by_default(rendered: Rendered) -> None:
    manifests = rendered["default"]
    assert "ETCD_AUTH_TOKEN" not in env_config(manifests)
    assert "ETCDPY_K8S_ROOT_PASSWORD" not in env_of(member(manifests))
    assert not find(manifests, "Secret")


def test_persistence_off(rendered: Rendered) -> None:
    sts = statefulset(rendered["persistence-off"])
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_network_policy(rendered: Rendered) -> None:
    assert not find(rendered["networkpolicy-off"], "NetworkPolicy")
    external = one(rendered["default"], "NetworkPolicy", FULLNAME)["spec"]
    internal = one(rendered["networkpolicy-internal"], "NetworkPolicy", FULLNAME)["spec"]
    assert external["podSelector"]["matchLabels"] == MEMBER_SELECTOR
    by_port = {rule["ports"][0]["port"]: rule for rule in internal["ingress"]}
    assert by_port[2380]["from"] == [{"podSelector": {"matchLabels": MEMBER_SELECTOR}}]
    assert {"podSelector": {"matchLabels": {CLIENT_LABEL: "true"}}} in by_port[2379]["from"]
    assert "from" not in by_port[9090]
    external_by_port = {rule["ports"][0]["port"]: rule for rule in external["ingress"]}
    assert "from" not in external_by_port[2379]


def test_client_command_pods(rendered: Rendered) -> None:
    manifests = rendered["backups"]
    commands = {
        m["kind"] + "/" + m["metadata"]["name"]: container(m)["command"]
        for m in client_command_pods(manifests)
    }
    assert commands == {
        f"Job/{FULLNAME}-scale-in": ["etcdpy", "k8s", "scale-in"],
        f"CronJob/{FULLNAME}-snapshotter": ["etcdpy", "k8s", "snapshot"],
        f"CronJob/{FULLNAME}-defrag": ["etcdpy", "k8s", "defrag"],
        f"Pod/{FULLNAME}-test": ["etcdpy", "k8s", "check"],
    }
    for job in client_command_pods(manifests):
        labels = pod_labels(job)
        assert labels[CLIENT_LABEL] == "true"
        # The Services select members only.
        assert labels["app.kubernetes.io/component"] != "etcd"
        assert env_of(container(job))["ETCDPY_K8S_ENDPOINTS"]["value"] == (
            f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:2379"
        )
        assert container(job)["securityContext"]["readOnlyRootFilesystem"] is True


def test_scale_in_hook(rendered: Rendered) -> None:
    job = one(rendered["replicas-5"], "Job", f"{FULLNAME}-scale-in")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-upgrade,pre-rollback"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    assert env_of(container(job))["ETCDPY_K8S_REPLICAS"]["value"] == "5"
    test_pod = one(rendered["default"], "Pod", f"{FULLNAME}-test")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_snapshot_cronjob(rendered: Rendered) -> None:
    manifests = rendered["backups"]
    cron = one(manifests, "CronJob", f"{FULLNAME}-snapshotter")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert one(manifests, "CronJob", f"{FULLNAME}-defrag")["spec"]["concurrencyPolicy"] == "Forbid"
    env = env_of(container(cron))
    assert env["ETCDPY_K8S_SNAPSHOT_DIR"]["value"] == "/snapshots"
    assert env["ETCDPY_K8S_SNAPSHOT_KEEP"]["value"] == "1"
    claim = one(manifests, "PersistentVolumeClaim", f"{FULLNAME}-snapshotter")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    volumes = {v["name"]: v for v in pod_spec(cron)["volumes"]}
    assert volumes["snapshots"]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-snapshotter"

    existing = rendered["backups-existing-claim"]
    assert not find(existing, "PersistentVolumeClaim")
    cron = one(existing, "CronJob", f"{FULLNAME}-snapshotter")
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert env_of(container(cron))["ETCDPY_K8S_SNAPSHOT_KEEP"]["value"] == "7"
    volumes = {v["name"]: v for v in pod_spec(cron)["volumes"]}
    assert volumes["snapshots"]["persistentVolumeClaim"]["claimName"] == "my-snapshots"


def test_start_from_snapshot(rendered: Rendered) -> None:
    manifests = rendered["start-from-snapshot"]
    assert env_config(manifests)["ETCDPY_K8S_SNAPSHOT_FILE"] == "/init-snapshot/db-20250101T000000Z"
    mounts = {m["name"]: m for m in member(manifests)["volumeMounts"]}
    assert mounts["init-snapshot"]["mountPath"] == "/init-snapshot"
    volumes = {v["name"]: v for v in pod_spec(statefulset(manifests))["volumes"]}
    assert volumes["init-snapshot"]["persistentVolumeClaim"]["claimName"] == "old-snapshots"
    assert "ETCDPY_K8S_SNAPSHOT_FILE" not in env_config(rendered["default"])


def test_extra_env(rendered: Rendered) -> None:
    etcdpy = member(rendered["extra-env"])
    assert env_of(etcdpy)["ETCD_HEARTBEAT_INTERVAL"]["value"] == "200"
    assert etcdpy["envFrom"] == [
        {"configMapRef": {"name": f"{FULLNAME}-env"}},
        {"configMapRef": {"name": "more-env"}},
        {"secretRef": {"name": "secret-env"}},
    ]


def test_everything(rendered: Rendered) -> None:
    manifests = rendered["everything"]
    env = env_config(manifests)
    assert env["ETCD_FRONTEND_PROCESSES"] == "2"
    assert env["ETCD_AUTO_COMPACTION_MODE"] == "periodic"
    assert env["ETCD_AUTO_COMPACTION_RETENTION"] == "1h"
    assert env["ETCD_QUOTA_BACKEND_BYTES"] == "4294967296"
    assert member(manifests)["image"] == "registry.example/etcdpy:9.9.9"
    annotations = statefulset(manifests)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == "9090"
    assert one(manifests, "PodDisruptionBudget")["spec"]["minAvailable"] == 3


@pytest.mark.parametrize(
    ("release", "values", "fullname"),
    [
        ("store", {}, "store-etcdpy"),
        ("etcdpy-prod", {}, "etcdpy-prod"),
        ("store", {"fullnameOverride": "kv"}, "kv"),
        ("store", {"nameOverride": "kv"}, "store-kv"),
    ],
)
def test_fullname(release: str, values: dict[str, Any], fullname: str) -> None:
    result = run_helm("template", release, str(CHART), values=values)
    assert result.returncode == 0, result.stderr
    sts = one(parse(result.stdout), "StatefulSet")
    assert sts["metadata"]["name"] == fullname
    assert sts["spec"]["serviceName"] == f"{fullname}-headless"


def test_every_value_set_renders(rendered: Rendered) -> None:
    assert set(rendered) == set(VALUE_SETS)
