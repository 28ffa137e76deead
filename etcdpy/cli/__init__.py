"""The commands: ``etcdpy`` (etcd's flags, config file and environment -> ServerConfig;
``run`` wires a member, its client port and its front-end processes together), etcdpyctl
(etcdctl's commands and output), ``etcdpy gateway``, ``etcdpy benchmark``, ``etcdpy snapshot``.
The top of the import graph: nothing imports cli.

May import: k8s, statefulset, tools, testing, clientport, frontend, corelink, api, server,
server.ops, membership, lease, auth, wal, peer, mvcc, raft, h2grpc, bbolt and the base.
"""
