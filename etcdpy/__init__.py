"""etcdpy: an etcd v3 compatible, Raft-replicated key-value store."""

__version__ = "0.1.0"
# The etcd version we speak for (what Maintenance.Status reports as `version`).
ETCD_API_VERSION = "3.4.23"
