"""Test support shipped as a library: the deterministic cluster simulator (sim, cluster,
scenario, simnet, simdisk, simnode, simkv, checkers; see README.md here) and real-process
helpers (processes).

May import: clientport, frontend, corelink, api, server, server.ops, membership, lease, auth,
wal, peer, mvcc, raft, h2grpc, bbolt and the base.
"""
