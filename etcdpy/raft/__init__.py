"""The Raft consensus algorithm as a pure, deterministic library in the style of etcd's raft:
``RawNode`` with tick, step, propose and ready/advance. No asyncio, no sockets, no wall clock, no
global random: the application does disk, network and apply (etcdpy.server.raft_node).

May import: etcdpy (nothing else: a pure library).
"""
