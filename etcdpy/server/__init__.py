"""The member: ``EtcdServer`` (propose and wait, linearizable reads, the seam the API calls),
the Ready loop (``raft_node``), apply (``applier``), read index, waiters, the watch sync task,
and ``cluster_runtime``, its peer side (membership at start, snapshots, publish). What the
parts around it need of the member are narrow protocols defined next to them
(``raft_node.ReadyHandler``, ``cluster_runtime.ClusterHost``, ``ops.maintenance.MaintenanceHost``,
``ops.view.ViewedMember``, ``membership.changes.MembershipHost``), so none of them imports
``etcd_server``.

May import: server.ops, membership, lease, auth, wal, peer, mvcc, raft, h2grpc, bbolt and the base.

One arrow up, argued in tests/test_layers.py: etcd_server -> corelink.replica_feed.
"""
