"""A Kubernetes cluster in miniature for the chart's scenario tests (issue 18).

``helm template`` renders helm/etcdpy; the pods of the StatefulSet, its hook Jobs, CronJobs and
the ``helm test`` pod then run as local processes, each in its own network namespace on a bridge
(``network.py``), in its own mount namespace with the ConfigMaps, Secrets and PVC directories at
their mountPaths (``pod_init.py``), with the container's env (downward API included) and
command (``podspec.py``). ``cluster.py`` holds the API tests use: ``LocalKube`` (the network and
the PVCs) and ``Release`` (install, upgrade, kill or delete a pod, run a Job, ``helm test``);
``checks.py`` runs Debian's etcdctl from a client namespace and a writer that remembers what was
acknowledged.

Needs root, iproute2's ``ip``, util-linux's ``unshare`` and ``mount``, curl and etcdctl.
Everything it makes carries the prefix ``k8h`` and is removed at the end, and at the start
(leftovers of a killed run) when no other run holds the lock (``cleanup.py``).
"""
