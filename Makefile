# etcdpy: the targets a newcomer needs. `make run` and `make test` do all the set-up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA_DIR ?= default.etcd
SIM_SEEDS ?= 1000

.PHONY: install system-deps run test unit integration sim lint proto bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Real peers the tests run against: Debian's etcdctl and etcd 3.4, and promtool (Debian's
# prometheus package) for the shipped alert rules. Installed only as root; without root, install
# them by hand (tests fail in CI when they are missing).
SYSTEM_PACKAGES := etcd-client etcd-server prometheus
system-deps:
	@if [ "$$(id -u)" = "0" ] && { ! command -v etcdctl >/dev/null || ! command -v etcd >/dev/null || ! command -v promtool >/dev/null; }; then \
		echo "installing $(SYSTEM_PACKAGES) with apt"; \
		(apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null)); \
	fi

run: install
	$(BIN)/etcdpy --name default --data-dir $(DATA_DIR) \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379

test: install system-deps
	$(BIN)/pytest -q
	$(BIN)/python -m etcdpy.testing.sim --seeds $(SIM_SEEDS)

unit: install
	$(BIN)/pytest -q tests/unit tests/raft

integration: install system-deps
	$(BIN)/pytest -q tests/integration

sim: install
	$(BIN)/python -m etcdpy.testing.sim --seeds $(SIM_SEEDS)

lint: install
	$(BIN)/ruff check etcdpy tests bench
	$(BIN)/ruff format --check etcdpy tests bench
	$(BIN)/mypy etcdpy

# Regenerates etcdpy/pb/ (never edit it by hand) from proto/.
proto: install
	rm -rf etcdpy/pb
	$(BIN)/python -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. \
		$$(find proto -name '*.proto' | sort)
	find etcdpy/pb -type d -exec touch {}/__init__.py \;

bench: install system-deps
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
