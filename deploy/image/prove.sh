#!/usr/bin/env bash
# Proves the container image where there is no registry and no docker daemon (`make image-check`):
#   1. a base image made with mmdebstrap from Debian's bookworm packages (minbase, without docs,
#      man pages and locales: what debian:bookworm-slim holds), imported into podman;
#   2. `make image` with podman on that base (the Dockerfile unchanged);
#   3. the image's config (user, entry point, command, ports, volume, health check, labels) and
#      contents (python3 3.11, etcdpy and etcdpyctl, every etcdpy module imports, no pip);
#   4. the image's default command started with podman in a network namespace of its own, with a
#      read-only root and no capabilities, driven with Debian's etcdctl; the HEALTHCHECK run;
#      SIGTERM stops it cleanly; started again, it still holds its data (the volume);
#   5. the chart's command, `etcdpy k8s bootstrap`, with the StatefulSet's environment (one
#      replica), when the tree has it.
# Everything it makes (namespace, container, volume, images) is removed at the end, also on
# failure; IMAGE_CHECK_KEEP=1 keeps the images. IMAGE_CHECK_IMAGE=<name> checks an image already
# built (steps 3 to 5 only) and leaves it. Needs root, podman, runc, mmdebstrap, etcdctl,
# curl and ip (`make image-deps` installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."

suffix=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)  # checked when built here
[ -z "${IMAGE_CHECK_IMAGE:-}" ] || revision=""
base="localhost/etcdpy-check-base-$suffix:bookworm"
image="${IMAGE_CHECK_IMAGE:-localhost/etcdpy-check-$suffix:$version}"
container="etcdpy-check-$suffix"
netns="etcdpyimg-$suffix"
passed=0
started=$SECONDS

# This sandbox's quirks, harmless elsewhere: crun 1.8 refuses hosts with hybrid cgroups (runc
# does not), and podman as root asks for open-file and process limits above the hard limits of
# a process without CAP_SYS_RESOURCE, so the run names limits the host can grant.
podman_cmd=(podman --runtime runc)
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)

# Podman logs that it has no systemd to time the health checks (they are run by hand below).
# Not for `run --detach` or `start`: conmon would keep the filter's pipe open.
podman_q() { "${podman_cmd[@]}" "$@" 2> >(grep -v 'systemd connection' >&2); }
fail() { echo "image-check: FAILED: $*" >&2; exit 1; }
ok() { passed=$((passed + 1)); echo "ok $passed - $*"; }
step() { echo "== $* ($((SECONDS - started))s)"; }

cleanup() {
    podman_q rm --force --volumes "$container" >/dev/null 2>&1 || true
    ip netns delete "$netns" 2>/dev/null || true
    if [ "${IMAGE_CHECK_KEEP:-0}" != 1 ] && [ -z "${IMAGE_CHECK_IMAGE:-}" ]; then
        podman rmi --force "$image" "$base" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || fail "needs root (network namespace, podman's storage)"
for tool in podman runc mmdebstrap etcdctl curl ip python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing: run make image-deps"
done

if [ -n "${IMAGE_CHECK_IMAGE:-}" ]; then
    echo "== checking $image, already built"
else
step "base image from Debian's packages (mmdebstrap)"
mmdebstrap --quiet --variant=minbase \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    bookworm - | podman import --quiet - "$base" >/dev/null
ok "mmdebstrap bookworm minbase imported as $base"

step "make image with podman"
# Builds behind a proxy that re-signs TLS need the host's CA bundle for pip (build time only:
# it is mounted, never copied into the image). chroot isolation: no OCI runtime at build time.
build_args="--isolation chroot --layers=false --build-arg BASE_IMAGE=$base"
host_ca=/etc/ssl/certs/ca-certificates.crt
if [ -f "$host_ca" ]; then
    build_args="$build_args -v $host_ca:/run/host-ca.crt:ro --build-arg PIP_CERT=/run/host-ca.crt"
fi
make --no-print-directory image IMAGE="$image" IMAGE_TOOL=podman IMAGE_BUILD_ARGS="$build_args" \
    >"/tmp/$container-build.log" 2>&1 || { tail -n 30 "/tmp/$container-build.log"; rm -f "/tmp/$container-build.log"; fail "make image"; }
rm -f "/tmp/$container-build.log"
ok "make image built $image"
fi

step "the image's config"
podman image inspect "$image" | python3 -c '
import json, sys
image = json.load(sys.stdin)[0]
config = image["Config"]
want = {
    "User": "1001:1001",
    "Entrypoint": ["etcdpy"],
    "WorkingDir": "/var/lib/etcdpy",
    "ExposedPorts": {"2379/tcp": {}, "2380/tcp": {}, "9090/tcp": {}},
    "Volumes": {"/var/lib/etcdpy/data": {}},
}
for key, value in want.items():
    if config.get(key) != value:
        sys.exit(f"{key} is {config.get(key)!r}, want {value!r}")
cmd = config["Cmd"]
for flag, value in [("--data-dir", "/var/lib/etcdpy/data"),
                    ("--listen-client-urls", "http://0.0.0.0:2379"),
                    ("--listen-peer-urls", "http://0.0.0.0:2380"),
                    ("--listen-metrics-urls", "http://0.0.0.0:9090")]:
    if cmd[cmd.index(flag) + 1] != value:
        sys.exit(f"Cmd {cmd!r} lacks {flag} {value}")
health = image.get("Healthcheck") or config.get("Healthcheck") or {}
if health.get("Test") != ["CMD", "python3", "/usr/local/bin/etcdpy-healthcheck"]:
    sys.exit(f"HEALTHCHECK is {health!r}")
labels = config.get("Labels") or {}
if labels.get("org.opencontainers.image.version") != sys.argv[1]:
    sys.exit(f"labels {labels!r} lack the version {sys.argv[1]}")
if not labels.get("org.opencontainers.image.revision") or (
        sys.argv[2] and labels["org.opencontainers.image.revision"] != sys.argv[2]):
    sys.exit(f"labels {labels!r} lack the revision {sys.argv[2]}")
print("size", round(image["Size"] / 1e6), "MB")
' "$version" "$revision" || fail "the image's config"
ok "user 1001:1001, entry point etcdpy, default command, ports, volume, HEALTHCHECK, OCI labels"

step "the image's contents"
run_once=(run --rm --network none --read-only "${limits[@]}" --health-cmd none)
contents=$(podman_q "${run_once[@]}" --entrypoint sh "$image" -c '
    set -e
    id -u; id -g
    python3 -c "import sys; print(sys.version.split()[0])"
    etcdpy --version | head -n 1
    etcdpyctl version | head -n 1
    if python3 -m pip --version >/dev/null 2>&1; then echo "pip present"; fi
    if command -v gcc >/dev/null; then echo "gcc present"; fi
    echo "$(find /opt/etcdpy/lib/python3.11/site-packages/etcdpy -name "*.py" | wc -l) files"
    python3 -c "
import importlib, pkgutil, etcdpy
names = [m.name for m in pkgutil.walk_packages(etcdpy.__path__, \"etcdpy.\")]
for name in names:
    importlib.import_module(name)
print(len(names), \"modules import\")
"') || fail "running commands in the image"
echo "$contents"
repo_files=$(find etcdpy -name '*.py' | wc -l)
grep -qx 1001 <<<"$(sed -n 1p <<<"$contents")" || fail "uid is not 1001"
grep -qx 1001 <<<"$(sed -n 2p <<<"$contents")" || fail "gid is not 1001"
grep -q '^3\.11\.' <<<"$contents" || fail "python3 is not 3.11"
grep -q "^etcdpy Version: $version" <<<"$contents" || fail "etcdpy --version does not say $version"
grep -q "^etcdpyctl version: $version" <<<"$contents" || fail "etcdpyctl version does not say $version"
grep -q 'present' <<<"$contents" && fail "pip or gcc left in the image"
grep -qx "$repo_files files" <<<"$contents" || fail "the image's etcdpy is not the tree's ($repo_files .py files)"
grep -q ' modules import$' <<<"$contents" || fail "importing etcdpy's modules"
ok "uid/gid 1001, python3 3.11, etcdpy $version and etcdpyctl, the tree's $repo_files files, every module imports, no pip, no gcc"

step "the default command, in a network namespace of its own"
ip netns add "$netns"  # the netns and etcdctl helpers serve both runs below
ip netns exec "$netns" ip link set lo up
in_ns=(ip netns exec "$netns")
etcdctl_ns=("${in_ns[@]}" etcdctl --endpoints http://127.0.0.1:2379 --dial-timeout 2s --command-timeout 5s)
wait_healthy() {
    for _ in $(seq 60); do
        "${etcdctl_ns[@]}" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    "${podman_cmd[@]}" logs --tail 30 "$container" >&2 || true
    fail "the member did not become healthy within 30s"
}
run_log=$("${podman_cmd[@]}" run --detach --name "$container" --network "ns:/run/netns/$netns" \
    --read-only --cap-drop all --security-opt no-new-privileges "${limits[@]}" \
    --health-interval disable "$image" 2>&1) || fail "podman run: $run_log"
wait_healthy
ok "started with a read-only root and no capabilities; etcdctl endpoint health"
pid1=$("${podman_cmd[@]}" exec "$container" sh -c 'tr "\0" " " </proc/1/cmdline; echo; stat -c %u /proc/1')
grep -q '/opt/etcdpy/bin/etcdpy --name default' <<<"$pid1" || fail "PID 1 is not etcdpy: $pid1"
grep -qx 1001 <<<"$(sed -n 2p <<<"$pid1")" || fail "PID 1 does not run as 1001: $pid1"
ok "PID 1 is etcdpy, as uid 1001"
"${etcdctl_ns[@]}" put image-check "$suffix" >/dev/null
[ "$("${etcdctl_ns[@]}" get --print-value-only image-check)" = "$suffix" ] || fail "get after put"
"${etcdctl_ns[@]}" member list | grep -q ', started, default, http://localhost:2380, http://127.0.0.1:2379' ||
    fail "member list: $("${etcdctl_ns[@]}" member list)"
ok "etcdctl put, get and member list"
[ "$("${podman_cmd[@]}" exec "$container" etcdpyctl --endpoints http://127.0.0.1:2379 get --print-value-only image-check)" = "$suffix" ] ||
    fail "etcdpyctl inside the container"
ok "etcdpyctl inside the container reads the key"
metrics=$("${in_ns[@]}" curl -fsS http://127.0.0.1:9090/metrics) || fail "metrics port"
grep -qE '^etcd_server_has_leader 1(\.0)?$' <<<"$metrics" || fail "metrics port: no etcd_server_has_leader 1"
"${in_ns[@]}" curl -fsS http://127.0.0.1:2379/livez >/dev/null || fail "client port /livez"
ok "metrics on 9090, /livez on 2379"
health=$("${podman_cmd[@]}" healthcheck run "$container" 2>&1) || fail "HEALTHCHECK: $health"
ok "HEALTHCHECK passes (podman healthcheck run)"
if podman_q exec --env ETCDPY_HEALTHCHECK_URLS=http://127.0.0.1:1/livez "$container" \
    python3 /usr/local/bin/etcdpy-healthcheck 2>/dev/null; then
    fail "the health check passes with no member behind its URL"
fi
ok "the health check fails when no /livez answers"
echo "   (/livez on the metrics port answers $("${in_ns[@]}" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9090/livez))"

step "SIGTERM, then a restart on the same volume"
podman_q stop --time 20 "$container" >/dev/null
code=$("${podman_cmd[@]}" inspect --format '{{.State.ExitCode}}' "$container")
[ "$code" = 0 ] || fail "exit code $code after SIGTERM"
ok "SIGTERM stops the member with exit code 0"
run_log=$("${podman_cmd[@]}" start "$container" 2>&1) || fail "podman start: $run_log"
wait_healthy
[ "$("${etcdctl_ns[@]}" get --print-value-only image-check)" = "$suffix" ] || fail "the key is gone after the restart"
ok "restarted on its volume, the key is still there"
podman_q stop --time 20 "$container" >/dev/null

# The chart's command, as the StatefulSet runs it (one replica): the env of its ConfigMap and
# downward API, a read-only root as uid 1001, the pod's DNS name in /etc/hosts.
if grep -q '"k8s"' etcdpy/cli/server_main.py; then
    step "the chart's command: etcdpy k8s bootstrap"
    podman_q rm --force --volumes "$container" >/dev/null
    pod=etcdpy-0
    pod_dns="$pod.etcdpy-headless.default.svc.cluster.local"
    run_log=$("${podman_cmd[@]}" run --detach --name "$container" --network "ns:/run/netns/$netns" \
        --read-only --cap-drop all --security-opt no-new-privileges "${limits[@]}" \
        --health-interval disable --add-host "$pod_dns:127.0.0.1" \
        --env ETCDPY_K8S_POD_NAME=$pod --env ETCDPY_K8S_NAMESPACE=default \
        --env ETCDPY_K8S_SERVICE=etcdpy-headless --env ETCDPY_K8S_CLUSTER_DOMAIN=cluster.local \
        --env ETCDPY_K8S_REPLICAS=1 --env ETCDPY_K8S_INITIAL_CLUSTER_STATE=new \
        --env ETCD_DATA_DIR=/var/lib/etcdpy/data \
        --env ETCD_LISTEN_CLIENT_URLS=http://0.0.0.0:2379 \
        --env ETCD_LISTEN_PEER_URLS=http://0.0.0.0:2380 \
        --env ETCD_LISTEN_METRICS_URLS=http://0.0.0.0:9090 \
        --entrypoint '["etcdpy", "k8s", "bootstrap"]' "$image" 2>&1) ||
        fail "podman run etcdpy k8s bootstrap: $run_log"
    wait_healthy
    "${etcdctl_ns[@]}" member list |
        grep -q ", started, $pod, http://$pod_dns:2380, http://$pod_dns:2379" ||
        fail "member list: $("${etcdctl_ns[@]}" member list)"
    "${etcdctl_ns[@]}" put image-check "$suffix" >/dev/null
    podman_q stop --time 20 "$container" >/dev/null
    code=$("${podman_cmd[@]}" inspect --format '{{.State.ExitCode}}' "$container")
    [ "$code" = 0 ] || fail "etcdpy k8s bootstrap: exit code $code after SIGTERM"
    ok "etcdpy k8s bootstrap serves as member $pod under its DNS name; SIGTERM exits 0"
else
    echo "   (this tree has no 'etcdpy k8s' command yet: the chart's command is not checked)"
fi

size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image $image: $((size / 1000000)) MB; took $((SECONDS - started))s"
echo "image-check: $passed passed, 0 failed"
