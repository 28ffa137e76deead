"""The ``etcdpy k8s ...`` commands that run etcdpy as a Kubernetes StatefulSet without calling
the Kubernetes API: ``bootstrap`` (the member's container: works out its name, URLs and initial
cluster from the pod's name and environment, joins, rejoins or bootstraps, then runs the
member), and the Jobs' ``scale-in``, ``snapshot``, ``defrag`` and ``check``. Each is a client of
the members' gRPC API; the decision of how a pod starts is a pure function (``decide.py``).

May import: tools, wal and the base.
"""
