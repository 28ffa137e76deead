#!/usr/bin/env bash
# Builds etcdpy's image, starts a kind cluster (deploy/kind/cluster.yaml: 1 control plane,
# 3 workers), loads the image into it, installs the chart with three members and runs helm test.
# Needs docker (with its daemon), kind, helm and kubectl. Never run in the workplace that wrote it
# (no docker daemon, no kind there): the image is proven by `make image-check` and the chart by
# its render and harness tests instead. KIND_CLUSTER and RELEASE name the cluster and release.
set -euo pipefail
cd "$(dirname "$0")/../.."
cluster=${KIND_CLUSTER:-etcdpy}
release=${RELEASE:-store}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n 1)

make image IMAGE_TOOL=docker IMAGE="etcdpy:$version"
kind get clusters | grep -qx "$cluster" ||
    kind create cluster --name "$cluster" --config deploy/kind/cluster.yaml
kind load docker-image --name "$cluster" "etcdpy:$version"
helm upgrade --install "$release" helm/etcdpy --kube-context "kind-$cluster" \
    --set replicaCount=3 --wait --timeout 10m
helm test "$release" --kube-context "kind-$cluster" --logs --timeout 5m
kubectl --context "kind-$cluster" get pods -l "app.kubernetes.io/instance=$release" -o wide
echo "delete it with: kind delete cluster --name $cluster"
