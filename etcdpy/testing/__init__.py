"""Test support shipped as a library: the deterministic cluster simulator (sim, cluster,
scenario, simnet, simdisk, simnode, simkv, checkers; see README.md here) and real-process
helpers (processes)."""
