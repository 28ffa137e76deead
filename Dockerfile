# etcdpy's container image: `make image` builds it (docker, else podman, else buildah).
# Two stages on Debian bookworm and its own python3 (3.11, the Python the project uses): the
# builder makes wheels of etcdpy and its dependencies and installs them into a venv; the final
# stage holds python3 and that venv only (no pip, no compiler, no source tree).
# BASE_IMAGE is Debian's bookworm-slim; `make image-check` builds from a base it makes with
# mmdebstrap from Debian's packages instead (there is no registry to pull from there).
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${BASE_IMAGE} AS builder
# A CA bundle for pip, for builds behind a proxy that re-signs TLS (a path inside the build,
# e.g. mounted with `podman build -v`); unset, pip trusts its own bundle.
ARG PIP_CERT
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY etcdpy ./etcdpy
# The venv lives at the path it runs from: its scripts name /opt/etcdpy/bin/python.
RUN python3 -m venv /opt/etcdpy \
    && /opt/etcdpy/bin/pip wheel --no-cache-dir --disable-pip-version-check --wheel-dir /wheels . \
    && /opt/etcdpy/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
        --find-links /wheels etcdpy \
    && /opt/etcdpy/bin/pip uninstall --yes --disable-pip-version-check pip setuptools

FROM ${BASE_IMAGE}
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="etcdpy" \
      org.opencontainers.image.description="An etcd v3 compatible, Raft-replicated key-value store in Python" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:bookworm-slim"
# uid/gid 1001 as the Helm chart's securityContext expects; the data directory belongs to it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --system --gid 1001 etcdpy \
    && useradd --system --uid 1001 --gid 1001 --home-dir /var/lib/etcdpy --no-create-home \
        --shell /usr/sbin/nologin etcdpy \
    && install -d -o 1001 -g 1001 -m 0700 /var/lib/etcdpy /var/lib/etcdpy/data
COPY --from=builder /opt/etcdpy /opt/etcdpy
COPY deploy/image/healthcheck.py /usr/local/bin/etcdpy-healthcheck
# The root filesystem may be read-only (the chart mounts it so): nothing writes .pyc files.
ENV PATH=/opt/etcdpy/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 1001:1001
WORKDIR /var/lib/etcdpy
VOLUME ["/var/lib/etcdpy/data"]
EXPOSE 2379 2380 9090
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "/usr/local/bin/etcdpy-healthcheck"]
ENTRYPOINT ["etcdpy"]
# A one-member cluster serving every interface. The defaults are flags, not ETCD_* variables:
# etcd refuses a variable that a flag shadows, and the chart's `etcdpy k8s bootstrap` (which
# replaces this CMD and the entry point) sets its own ETCD_* variables.
CMD ["--name", "default", \
     "--data-dir", "/var/lib/etcdpy/data", \
     "--listen-client-urls", "http://0.0.0.0:2379", \
     "--advertise-client-urls", "http://127.0.0.1:2379", \
     "--listen-peer-urls", "http://0.0.0.0:2380", \
     "--listen-metrics-urls", "http://0.0.0.0:9090"]
