"""Python client libraries we did not write (aetcd, etcd3), unchanged, against etcdpy."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence

import pytest

from etcdpy.testing.processes import MemberProcess
from tests.integration.shared_member import wiped

pytestmark = pytest.mark.integration


@pytest.fixture
def etcdpy_server(module_etcdpy_server: MemberProcess) -> MemberProcess:
    """One member for the module, emptied before each test."""
    return wiped(module_etcdpy_server)


def _run_isolated(script: str, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> str:
    """Client libraries ship their own copies of etcd's protos, which clash with ours in
    one descriptor pool: each runs in its own interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_aetcd(etcdpy_server: MemberProcess) -> None:
    script = f"""
        import asyncio
        import aetcd

        async def scenario():
            async with aetcd.Client(host="127.0.0.1", port={etcdpy_server.client_port}) as client:
                await client.put(b"/registry/pods/a", b"pod-a")
                await client.put(b"/registry/pods/b", b"pod-b")
                got = await client.get(b"/registry/pods/a")
                assert got is not None and got.value == b"pod-a", got
                listed = await client.get_prefix(b"/registry/pods/")
                keys = [kv.key for kv in listed]
                assert keys == [b"/registry/pods/a", b"/registry/pods/b"], keys
                tx = client.transactions
                ok, _ = await client.transaction(
                    compare=[tx.mod(b"/registry/pods/a") == got.mod_revision],
                    success=[tx.put(b"/registry/pods/a", b"pod-a2")],
                    failure=[],
                )
                assert ok
                ok, _ = await client.transaction(
                    compare=[tx.mod(b"/registry/pods/a") == got.mod_revision],
                    success=[tx.put(b"/registry/pods/a", b"stale")],
                    failure=[],
                )
                assert not ok  # an optimistic update with a stale revision fails
                after = await client.get(b"/registry/pods/a")
                assert after is not None and after.value == b"pod-a2"
                await client.delete(b"/registry/pods/b")
                assert await client.get(b"/registry/pods/b") is None
            print("aetcd-ok")

        asyncio.run(scenario())
        """
    assert "aetcd-ok" in _run_isolated(script)


def test_python_etcd3(etcdpy_server: MemberProcess) -> None:
    # etcd3 ships protobuf code that needs the pure-Python protobuf runtime: own process.
    script = textwrap.dedent(
        f"""
        import etcd3
        c = etcd3.client(host="127.0.0.1", port={etcdpy_server.client_port})
        c.put("/nodes/n1", "ready")
        value, meta = c.get("/nodes/n1")
        assert value == b"ready", value
        assert meta.version == 1
        c.put("/nodes/n2", "notready")
        keys = sorted(m.key for _, m in c.get_prefix("/nodes/"))
        assert keys == [b"/nodes/n1", b"/nodes/n2"], keys
        ok, _ = c.transaction(
            compare=[c.transactions.value("/nodes/n2") == "notready"],
            success=[c.transactions.put("/nodes/n2", "ready")],
            failure=[],
        )
        assert ok
        assert c.get("/nodes/n2")[0] == b"ready"
        assert c.delete_prefix("/nodes/").deleted == 2
        print("etcd3-ok")
        """
    )
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    assert "etcd3-ok" in _run_isolated(script, env)
