"""Kubernetes objects in etcd, as a kube-apiserver stores them, and what client-go gives Go
controllers, in Python: the object store (``store.py`` sync, ``aio.py`` asyncio, both driving the
sans-IO operations of ``ops.py`` over ``etcd.py``'s gRPC client), the resources and their etcd
keys (``resources.py``), values as the API server writes them (``codec.py``), encryption at rest
(``encryption.py``), informers, work queues, leader election and controllers, the example
controllers (``controllers/``), and the kubectl-like ``etcdpy k8s`` object commands (``ctl.py``).
A client library: it works against any etcd v3 endpoint (etcd 3.4 as well as etcdpy) and never
imports the member's code.

May import: the base.
"""
